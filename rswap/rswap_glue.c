// SPDX-License-Identifier: GPL-2.0
/*
 * EXPORT_SYMBOL_GPL is a C macro, so rswap's two exported functions, written
 * in Rust (frontswap.rs), are exported here for the backend modules.
 */
#include <linux/export.h>

struct rswap_backend_ops;
int rswap_register_backend(const struct rswap_backend_ops *ops);
void rswap_unregister_backend(const struct rswap_backend_ops *ops);

EXPORT_SYMBOL_GPL(rswap_register_backend);
EXPORT_SYMBOL_GPL(rswap_unregister_backend);
