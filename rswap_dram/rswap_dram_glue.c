// SPDX-License-Identifier: GPL-2.0
/*
 * module_param() is a C macro: rswap_dram's parameter is declared here and
 * read by the Rust side (rswap_dram_main.rs), which validates it.
 */
#include <linux/moduleparam.h>

static unsigned long capacity_mb = 64;
module_param(capacity_mb, ulong, 0444);
MODULE_PARM_DESC(capacity_mb, "Most swapped data kept in DRAM, in MiB (1 to the size of RAM; default 64)");

unsigned long rswap_dram_capacity_mb(void);
unsigned long rswap_dram_capacity_mb(void)
{
	return capacity_mb;
}
