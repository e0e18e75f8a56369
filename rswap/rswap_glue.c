// SPDX-License-Identifier: GPL-2.0
/*
 * EXPORT_SYMBOL_GPL is a C macro, so rswap's exported functions, written in
 * Rust (frontswap.rs), are exported here for the backend modules.
 * PageCompound(), page_private() and the swap entry accessors are static
 * inline functions or macros, wrapped here for ffi.rs.
 * Per-CPU counters (ffi.rs `PerCpu`) are macros too (this_cpu_add,
 * per_cpu_ptr); their helpers are exported for the backends as well.
 */
#include <linux/debugfs.h>
#include <linux/export.h>
#include <linux/percpu.h>
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
 * Per-CPU counters: a block of @n u64 per CPU. Adding touches only this
 * CPU's copy (this_cpu_add, safe with preemption on); a read sums the
 * copies of every possible CPU. A counter that goes down (pages held)
 * adds the two's complement: the sum wraps back to the right value.
 */
u64 __percpu *rswap_pcpu_alloc(unsigned int n);
u64 __percpu *rswap_pcpu_alloc(unsigned int n)
{
	return __alloc_percpu(n * sizeof(u64), sizeof(u64));
}
EXPORT_SYMBOL_GPL(rswap_pcpu_alloc);

void rswap_pcpu_free(u64 __percpu *p);
void rswap_pcpu_free(u64 __percpu *p)
{
	free_percpu(p);
}
EXPORT_SYMBOL_GPL(rswap_pcpu_free);

void rswap_pcpu_add(u64 __percpu *p, unsigned int i, u64 v);
void rswap_pcpu_add(u64 __percpu *p, unsigned int i, u64 v)
{
	this_cpu_add(p[i], v);
}
EXPORT_SYMBOL_GPL(rswap_pcpu_add);

u64 rswap_pcpu_sum(u64 __percpu *p, unsigned int i);
u64 rswap_pcpu_sum(u64 __percpu *p, unsigned int i)
{
	s64 sum = 0;
	int cpu;

	/*
	 * Not a snapshot: a page counted up on one CPU and down on another
	 * meanwhile may make a gauge dip below 0 for a moment; show 0 then
	 * (as percpu_counter_sum_positive does).
	 */
	for_each_possible_cpu(cpu)
		sum += *per_cpu_ptr(p + i, cpu);
	return sum < 0 ? 0 : sum;
}
EXPORT_SYMBOL_GPL(rswap_pcpu_sum);

void rswap_pcpu_zero(u64 __percpu *p, unsigned int n);
void rswap_pcpu_zero(u64 __percpu *p, unsigned int n)
{
	int cpu;

	for_each_possible_cpu(cpu)
		memset(per_cpu_ptr(p, cpu), 0, n * sizeof(u64));
}
EXPORT_SYMBOL_GPL(rswap_pcpu_zero);

/* A debugfs file reads one counter's sum; its data is the counter. */
static int rswap_pcpu_get(void *data, u64 *val)
{
	*val = rswap_pcpu_sum((u64 __percpu __force *)data, 0);
	return 0;
}
DEFINE_DEBUGFS_ATTRIBUTE(rswap_pcpu_fops, rswap_pcpu_get, NULL, "%llu\n");

void rswap_pcpu_debugfs(const char *name, struct dentry *dir, u64 __percpu *p, unsigned int i);
void rswap_pcpu_debugfs(const char *name, struct dentry *dir, u64 __percpu *p, unsigned int i)
{
	debugfs_create_file_unsafe(name, 0444, dir, (void __force *)(p + i), &rswap_pcpu_fops);
}
EXPORT_SYMBOL_GPL(rswap_pcpu_debugfs);

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
