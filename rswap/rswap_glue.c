// SPDX-License-Identifier: GPL-2.0
/*
 * EXPORT_SYMBOL_GPL is a C macro, so rswap's exported functions, written in
 * Rust (frontswap.rs), are exported here for the backend modules.
 * PageCompound(), page_private() and the swap entry accessors are static
 * inline functions or macros, wrapped here for ffi.rs.
 */
#include <linux/export.h>
#include <linux/mm.h>
#include <linux/moduleparam.h>
#include <linux/string.h>
#include <linux/sysfs.h>
#include <linux/page-flags.h>
#include <linux/swap.h>
#include <linux/swapops.h>

struct rswap_backend_ops;
int rswap_register_backend(const struct rswap_backend_ops *ops);
void rswap_unregister_backend(const struct rswap_backend_ops *ops);

EXPORT_SYMBOL_GPL(rswap_register_backend);
EXPORT_SYMBOL_GPL(rswap_unregister_backend);

void rswap_load_done(struct page *page, int err);
EXPORT_SYMBOL_GPL(rswap_load_done);

bool rswap_page_compound(struct page *page);
bool rswap_page_compound(struct page *page)
{
	return PageCompound(page);
}
EXPORT_SYMBOL_GPL(rswap_page_compound);

void rswap_page_swap_entry(struct page *page, unsigned int *type,
			   unsigned long *offset);
void rswap_page_swap_entry(struct page *page, unsigned int *type,
			   unsigned long *offset)
{
	swp_entry_t entry = { .val = page_private(page) };

	*type = swp_type(entry);
	*offset = swp_offset(entry);
}
EXPORT_SYMBOL_GPL(rswap_page_swap_entry);

/*
 * prefetch=kernel|trend|off (prefetch.rs), writable at run time. Kept as
 * an int, which the fault path reads once per fault.
 */
static const char * const prefetch_modes[] = { "kernel", "trend", "off" };
static int prefetch_mode;

static int prefetch_set(const char *val, const struct kernel_param *kp)
{
	int i = sysfs_match_string(prefetch_modes, val);

	if (i < 0) {
		pr_err("rswap: prefetch=%.*s: not one of kernel, trend, off\n",
		       (int)strcspn(val, "\n"), val);
		return -EINVAL;
	}
	WRITE_ONCE(prefetch_mode, i);
	return 0;
}

static int prefetch_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", prefetch_modes[READ_ONCE(prefetch_mode)]);
}

static const struct kernel_param_ops prefetch_ops = {
	.set = prefetch_set,
	.get = prefetch_get,
};
module_param_cb(prefetch, &prefetch_ops, &prefetch_mode, 0644);
MODULE_PARM_DESC(prefetch, "What is read ahead of a swap fault: kernel (the kernel's readahead, default), trend (along the process's recent faults), off");

int rswap_param_prefetch(void);
int rswap_param_prefetch(void)
{
	return READ_ONCE(prefetch_mode);
}
