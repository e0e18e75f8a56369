// SPDX-License-Identifier: GPL-2.0
/*
 * EXPORT_SYMBOL_GPL is a C macro, so rswap's two exported functions, written
 * in Rust (frontswap.rs), are exported here for the backend modules.
 * PageCompound() is a static inline function, wrapped here for ffi.rs.
 */
#include <linux/export.h>
#include <linux/page-flags.h>

struct rswap_backend_ops;
int rswap_register_backend(const struct rswap_backend_ops *ops);
void rswap_unregister_backend(const struct rswap_backend_ops *ops);

EXPORT_SYMBOL_GPL(rswap_register_backend);
EXPORT_SYMBOL_GPL(rswap_unregister_backend);

bool rswap_page_compound(struct page *page);
bool rswap_page_compound(struct page *page)
{
	return PageCompound(page);
}
EXPORT_SYMBOL_GPL(rswap_page_compound);
