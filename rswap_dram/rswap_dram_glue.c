// SPDX-License-Identifier: GPL-2.0
/*
 * What Rust cannot reach in rswap_dram: module_param() and the workqueue
 * API are C macros. The parameters are declared here and read by the Rust
 * side (rswap_dram_main.rs), which validates them. The workqueue ends the
 * asynchronous loads: its work calls rswap_dram_complete_pending() in Rust.
 */
#include <linux/errno.h>
#include <linux/moduleparam.h>
#include <linux/workqueue.h>

static unsigned long capacity_mb = 64;
module_param(capacity_mb, ulong, 0444);
MODULE_PARM_DESC(capacity_mb, "Most swapped data kept in DRAM, in MiB (1 to the size of RAM; default 64)");

static bool async_loads = true;
module_param(async_loads, bool, 0444);
MODULE_PARM_DESC(async_loads, "Load readahead pages asynchronously, completed from a workqueue (default 1); 0 loads them synchronously");

unsigned long rswap_dram_capacity_mb(void);
unsigned long rswap_dram_capacity_mb(void)
{
	return capacity_mb;
}

bool rswap_dram_async_loads(void);
bool rswap_dram_async_loads(void)
{
	return async_loads;
}

void rswap_dram_complete_pending(void);

static void rswap_dram_work_fn(struct work_struct *work)
{
	rswap_dram_complete_pending();
}

static struct workqueue_struct *rswap_dram_wq;
static DECLARE_WORK(rswap_dram_work, rswap_dram_work_fn);

/*
 * The loads complete on a workqueue of our own that may run under memory
 * pressure (WQ_MEM_RECLAIM): a task waiting for a readahead page must not
 * wait for a worker that cannot be created.
 */
int rswap_dram_wq_create(void);
int rswap_dram_wq_create(void)
{
	rswap_dram_wq = alloc_workqueue("rswap_dram", WQ_MEM_RECLAIM | WQ_HIGHPRI, 0);
	return rswap_dram_wq ? 0 : -ENOMEM;
}

void rswap_dram_wq_kick(void);
void rswap_dram_wq_kick(void)
{
	queue_work(rswap_dram_wq, &rswap_dram_work);
}

/* Waits for the work to finish, then frees the workqueue. */
void rswap_dram_wq_destroy(void);
void rswap_dram_wq_destroy(void)
{
	if (rswap_dram_wq) {
		flush_work(&rswap_dram_work);
		destroy_workqueue(rswap_dram_wq);
		rswap_dram_wq = NULL;
	}
}
