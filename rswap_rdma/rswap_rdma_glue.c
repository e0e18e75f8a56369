// SPDX-License-Identifier: GPL-2.0
/*
 * module_param() is a C macro: rswap_rdma's parameters are declared here and
 * read by the Rust side (rswap_rdma_main.rs), which validates them.
 */
#include <linux/moduleparam.h>

static char *servers;
module_param(servers, charp, 0444);
MODULE_PARM_DESC(servers, "Memory servers, comma-separated IPV4:PORT (required, at most 8)");

static char *secret;
module_param(secret, charp, 0);
MODULE_PARM_DESC(secret, "Shared secret, 32 hex digits, as given to memserver --secret (required)");

static unsigned int mib_per_server = 256;
module_param(mib_per_server, uint, 0444);
MODULE_PARM_DESC(mib_per_server, "Remote memory asked of each server, in MiB (default 256)");

static unsigned int timeout_ms = 3000;
module_param(timeout_ms, uint, 0444);
MODULE_PARM_DESC(timeout_ms, "Bound on each connection step and each RDMA operation, in ms (100-60000, default 3000)");

static unsigned long node_id;
module_param(node_id, ulong, 0444);
MODULE_PARM_DESC(node_id, "This compute node's id at the servers (default: random)");

const char *rswap_rdma_param_servers(void);
const char *rswap_rdma_param_servers(void) { return servers; }
const char *rswap_rdma_param_secret(void);
const char *rswap_rdma_param_secret(void) { return secret; }
unsigned int rswap_rdma_param_mib_per_server(void);
unsigned int rswap_rdma_param_mib_per_server(void) { return mib_per_server; }
unsigned int rswap_rdma_param_timeout_ms(void);
unsigned int rswap_rdma_param_timeout_ms(void) { return timeout_ms; }
unsigned long rswap_rdma_param_node_id(void);
unsigned long rswap_rdma_param_node_id(void) { return node_id; }
