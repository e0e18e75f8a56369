// SPDX-License-Identifier: GPL-2.0
/*
 * C for what Rust cannot reach: macros and static inline functions.
 *
 * - module_param() is a C macro: rswap_rdma's parameters are declared here
 *   and read by the Rust side (params.rs), which validates them.
 *   placement= is parsed here, since it may change at run time.
 * - The reads-ahead workqueue (rdma.rs `AheadWq`): the workqueue API and
 *   per-CPU variables are macros.
 * - The queue locks (rdma.rs `Mutex`): mutex_init() is a macro that gives
 *   each call site its own static lock_class_key, mutex_lock() is a macro
 *   under lockdep (mutex_lock_nested), and mutex_destroy() is inline without
 *   CONFIG_DEBUG_MUTEXES.
 * - Completion events (rdma.rs `CqEvents`): ib_req_notify_cq() is static
 *   inline, and waiting on a wait queue takes the wait_event macros.
 * - Erasure coding's parity (rdma.rs `xor_into`): crypto_xor() is inline.
 */
#include <linux/moduleparam.h>
#include <linux/errno.h>
#include <linux/kernel.h>
#include <linux/printk.h>
#include <linux/string.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/workqueue.h>
#include <linux/slab.h>
#include <linux/wait.h>
#include <linux/delay.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <rdma/ib_verbs.h>
#include <crypto/algapi.h>

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

static unsigned int loss_timeout_s = 30;
module_param(loss_timeout_s, uint, 0444);
MODULE_PARM_DESC(loss_timeout_s, "How long a server may be unreachable before its pages are declared lost; faults on its pages wait up to this long while its queues are rebuilt, in s (1-3600, default 30)");

static bool follow_upstream;
module_param(follow_upstream, bool, 0444);
MODULE_PARM_DESC(follow_upstream, "Also use the memory each server re-exports from its upstream memory node (memserver --upstream), reached through that server (default N)");

static bool async_loads = true;
module_param(async_loads, bool, 0444);
MODULE_PARM_DESC(async_loads, "Load readahead pages asynchronously, in batches on their own queues (default Y); N reads them one by one as the fault's own page");

static unsigned int readahead_depth = 8;
module_param(readahead_depth, uint, 0444);
MODULE_PARM_DESC(readahead_depth, "Reads ahead in flight at once on a readahead queue, posted as one batch (1-32, default 8)");

static char *redundancy;
module_param(redundancy, charp, 0444);
MODULE_PARM_DESC(redundancy, "none (the default): one copy of each page; mirror: a second copy on another server; ec:K+1 (K = 2 or 4): K data chunks and their XOR parity on K+1 servers. Losing one server then loses no page");

static unsigned int repair_mib_s = 8;
module_param(repair_mib_s, uint, 0444);
MODULE_PARM_DESC(repair_mib_s, "With redundancy=mirror or ec, how fast pages that lost a copy get a new one, at most, in MiB/s (1-160, default 8); repair also takes at most 50 ms of each 100 ms recovery period");

static bool late_binding;
module_param(late_binding, bool, 0644);
MODULE_PARM_DESC(late_binding, "With redundancy=ec:K+1, a fault reads all K+1 chunks at once and rebuilds the page from the first K to arrive (Hydra's late binding); N (the default) reads the K data chunks one after another, which measured the better tail under Soft-RoCE (tests/results.md); writable at run time");

static unsigned int poll_us = 2000;
module_param(poll_us, uint, 0444);
MODULE_PARM_DESC(poll_us, "How long a task waiting for its read or write polls the completion queue before it sleeps until the completion event, in us (0-100000, default 2000)");

/*
 * placement= is writable at run time (0644), so it has its own set/get:
 * the policy is one int, read once per decision by the Rust side.
 */
static int placement;
static const char *const placement_names[] = { "capacity", "weighted", "tiered" };

static int placement_set(const char *val, const struct kernel_param *kp)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(placement_names); i++) {
		if (sysfs_streq(val, placement_names[i])) {
			WRITE_ONCE(placement, i);
			return 0;
		}
	}
	pr_err("rswap_rdma: placement=%.*s: use capacity, weighted or tiered\n",
	       (int)strcspn(val, "\n"), val);
	return -EINVAL;
}

static int placement_get(char *buf, const struct kernel_param *kp)
{
	return scnprintf(buf, PAGE_SIZE, "%s\n", placement_names[READ_ONCE(placement)]);
}

static const struct kernel_param_ops placement_ops = {
	.set = placement_set,
	.get = placement_get,
};
module_param_cb(placement, &placement_ops, NULL, 0644);
MODULE_PARM_DESC(placement, "Where new pages go: capacity (in proportion to free space, the default), weighted (by measured speed) or tiered (hot pages on the fastest server); writable at run time");

int rswap_rdma_param_placement(void);
int rswap_rdma_param_placement(void) { return READ_ONCE(placement); }

const char *rswap_rdma_param_servers(void);
const char *rswap_rdma_param_servers(void) { return servers; }
const char *rswap_rdma_param_redundancy(void);
const char *rswap_rdma_param_redundancy(void) { return redundancy; }
const char *rswap_rdma_param_secret(void);
const char *rswap_rdma_param_secret(void) { return secret; }
unsigned int rswap_rdma_param_mib_per_server(void);
unsigned int rswap_rdma_param_mib_per_server(void) { return mib_per_server; }
unsigned int rswap_rdma_param_timeout_ms(void);
unsigned int rswap_rdma_param_timeout_ms(void) { return timeout_ms; }
unsigned long rswap_rdma_param_node_id(void);
unsigned long rswap_rdma_param_node_id(void) { return node_id; }
bool rswap_rdma_param_follow_upstream(void);
bool rswap_rdma_param_follow_upstream(void) { return follow_upstream; }
bool rswap_rdma_param_async_loads(void);
bool rswap_rdma_param_async_loads(void) { return async_loads; }
unsigned int rswap_rdma_param_readahead_depth(void);
unsigned int rswap_rdma_param_readahead_depth(void) { return readahead_depth; }
bool rswap_rdma_param_late_binding(void);
bool rswap_rdma_param_late_binding(void) { return READ_ONCE(late_binding); }
unsigned int rswap_rdma_param_poll_us(void);
unsigned int rswap_rdma_param_poll_us(void) { return poll_us; }
unsigned int rswap_rdma_param_repair_mib_s(void);
unsigned int rswap_rdma_param_repair_mib_s(void) { return repair_mib_s; }
unsigned int rswap_rdma_param_loss_timeout_s(void);
unsigned int rswap_rdma_param_loss_timeout_s(void) { return loss_timeout_s; }

/*
 * Three call sites of mutex_init(), so three lockdep classes: read queues,
 * write queues and readahead queues (lockdep names them after the
 * argument). A task never holds two queues of one kind, and the kinds are
 * never nested today; separate classes keep a report precise if that
 * changes.
 */
void rswap_rdma_read_queue_lock_init(struct mutex *rswap_rdma_read_queue);
void rswap_rdma_read_queue_lock_init(struct mutex *rswap_rdma_read_queue)
{
	mutex_init(rswap_rdma_read_queue);
}

void rswap_rdma_write_queue_lock_init(struct mutex *rswap_rdma_write_queue);
void rswap_rdma_write_queue_lock_init(struct mutex *rswap_rdma_write_queue)
{
	mutex_init(rswap_rdma_write_queue);
}

void rswap_rdma_readahead_queue_lock_init(struct mutex *rswap_rdma_readahead_queue);
void rswap_rdma_readahead_queue_lock_init(struct mutex *rswap_rdma_readahead_queue)
{
	mutex_init(rswap_rdma_readahead_queue);
}

void rswap_rdma_mutex_lock(struct mutex *lock);
void rswap_rdma_mutex_lock(struct mutex *lock)
{
	mutex_lock(lock);
}

/* Late-bound reads hold a read queue of each of several servers at once. */
void rswap_rdma_mutex_lock_nested(struct mutex *lock, unsigned int subclass);
void rswap_rdma_mutex_lock_nested(struct mutex *lock, unsigned int subclass)
{
	mutex_lock_nested(lock, subclass);
}

void rswap_rdma_mutex_destroy(struct mutex *lock);
void rswap_rdma_mutex_destroy(struct mutex *lock)
{
	mutex_destroy(lock);
}

/*
 * The reads-ahead workqueue (ahead.rs): a work item per CPU, which loads
 * what waits on that CPU's list. WQ_MEM_RECLAIM: it runs under memory
 * pressure, where a new worker may not be creatable, and a task may be
 * waiting for one of its pages. Unbound: it polls its CQ for a while, and
 * must neither take the CPU of the task it reads for nor hold up the
 * other work items of a per-CPU pool.
 */
struct rswap_rdma_ahead_work {
	struct work_struct work;
	unsigned int cpu;
};

static DEFINE_PER_CPU(struct rswap_rdma_ahead_work, rswap_rdma_ahead_works);
static struct workqueue_struct *rswap_rdma_ahead_wq;

void rswap_rdma_ahead(unsigned int cpu);

static void rswap_rdma_ahead_fn(struct work_struct *work)
{
	rswap_rdma_ahead(container_of(work, struct rswap_rdma_ahead_work, work)->cpu);
}

int rswap_rdma_ahead_wq_create(void);
int rswap_rdma_ahead_wq_create(void)
{
	unsigned int cpu;

	for_each_possible_cpu(cpu) {
		struct rswap_rdma_ahead_work *w = per_cpu_ptr(&rswap_rdma_ahead_works, cpu);

		INIT_WORK(&w->work, rswap_rdma_ahead_fn);
		w->cpu = cpu;
	}
	rswap_rdma_ahead_wq = alloc_workqueue("rswap_rdma_ahead", WQ_UNBOUND | WQ_MEM_RECLAIM, 0);
	return rswap_rdma_ahead_wq ? 0 : -ENOMEM;
}

void rswap_rdma_ahead_kick(unsigned int cpu);
void rswap_rdma_ahead_kick(unsigned int cpu)
{
	if (cpu >= nr_cpu_ids)
		cpu = raw_smp_processor_id();
	queue_work_on(cpu, rswap_rdma_ahead_wq, &per_cpu_ptr(&rswap_rdma_ahead_works, cpu)->work);
}

/* Runs what is queued, waits for what runs, then frees the workqueue. */
void rswap_rdma_ahead_wq_destroy(void);
void rswap_rdma_ahead_wq_destroy(void)
{
	if (rswap_rdma_ahead_wq) {
		destroy_workqueue(rswap_rdma_ahead_wq);
		rswap_rdma_ahead_wq = NULL;
	}
}

/*
 * Completion events of a CQ that is otherwise polled directly: a waiter
 * that found the CQ empty arms it and sleeps until the device signals the
 * next completion, instead of polling or yielding while it holds a queue.
 * The CQ is allocated with IB_POLL_DIRECT, whose own handler only warns
 * (nobody should arm such a CQ); rswap_rdma_cq_events_attach() installs
 * ours before the CQ is first armed.
 */
struct rswap_rdma_cq_events {
	wait_queue_head_t wq;
	atomic_t events;
	struct rcu_head rcu;
};

static void rswap_rdma_cq_event(struct ib_cq *cq, void *ctx)
{
	struct rswap_rdma_cq_events *e = ctx;

	atomic_inc(&e->events);
	wake_up(&e->wq);
}

struct rswap_rdma_cq_events *rswap_rdma_cq_events_new(void);
struct rswap_rdma_cq_events *rswap_rdma_cq_events_new(void)
{
	struct rswap_rdma_cq_events *e = kzalloc(sizeof(*e), GFP_KERNEL);

	if (e)
		init_waitqueue_head(&e->wq);
	return e;
}

/*
 * After the CQ is freed. A handler may still be finishing: rxe calls it
 * from a tasklet that destroy_cq does not wait for. A tasklet runs with
 * bottom halves off, an RCU read-side section, so freeing after a grace
 * period is freeing after it.
 */
void rswap_rdma_cq_events_free(struct rswap_rdma_cq_events *e);
void rswap_rdma_cq_events_free(struct rswap_rdma_cq_events *e)
{
	kfree_rcu(e, rcu);
}

bool rswap_rdma_need_resched(void);
bool rswap_rdma_need_resched(void)
{
	return need_resched();
}

/* Before the CQ is first armed. */
void rswap_rdma_cq_events_attach(struct ib_cq *cq, struct rswap_rdma_cq_events *e);
void rswap_rdma_cq_events_attach(struct ib_cq *cq, struct rswap_rdma_cq_events *e)
{
	cq->cq_context = e;
	cq->comp_handler = rswap_rdma_cq_event;
}

/*
 * Arms the CQ for its next completion and sleeps until it comes, for at
 * most @timeout jiffies. Returns nonzero if the CQ may have completions to
 * poll (an event came, or one was missed between the caller's last poll
 * and the arming, or arming failed and polling must go on), 0 on timeout.
 */
long rswap_rdma_cq_events_wait(struct ib_cq *cq, struct rswap_rdma_cq_events *e, long timeout);
long rswap_rdma_cq_events_wait(struct ib_cq *cq, struct rswap_rdma_cq_events *e, long timeout)
{
	int seen = atomic_read(&e->events);
	int r = ib_req_notify_cq(cq, IB_CQ_NEXT_COMP | IB_CQ_REPORT_MISSED_EVENTS);

	if (r > 0)
		return 1;
	if (r < 0) {
		/* No events: poll again, but not in a tight loop. */
		usleep_range(20, 60);
		return 1;
	}
	return wait_event_timeout(e->wq, atomic_read(&e->events) != seen, timeout);
}

/*
 * Erasure coding's parity (rdma.rs `xor_into`, ec.rs): crypto_xor() is
 * static inline; its __crypto_xor is built in (CONFIG_CRYPTO_LIB_UTILS).
 */
void rswap_rdma_xor(u8 *dst, const u8 *src, unsigned int len);
void rswap_rdma_xor(u8 *dst, const u8 *src, unsigned int len)
{
	crypto_xor(dst, src, len);
}
