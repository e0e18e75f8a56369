// SPDX-License-Identifier: GPL-2.0
//! rswap_rdma: an rswap backend that keeps pages in the DRAM of memory
//! servers (memserver) over RDMA.
//!
//! At load it connects to every server in `servers=`: per CPU and per
//! server one reliable connection for reads (page faults), one for writes
//! (swap-out) and one for reads ahead (batches, ahead.rs), each with its
//! own polled CQ. Each server grants a
//! region of its pool; a page goes to one 4 KiB slot of one region with a
//! one-sided RDMA WRITE and comes back with an RDMA READ.
//!
//! Where a stored page goes: [`Rdma::store`] (below) picks a server by
//! the policy of `placement=` (`placement::pick`, or `Tiers::pick` for
//! `tiered`); `Server::store` takes
//! a free slot and writes the page there (`Queue::transfer` ->
//! `Conn::transfer`); then key -> (server, slot, generation) is recorded
//! (`placement::Placement`). [`Rdma::load`] looks the key up and reads the
//! slot back (`Server::read`); [`Rdma::invalidate`] frees the slot.
//!
//! The files:
//!
//! | file | what |
//! |---|---|
//! | `rswap_rdma_main.rs` | the module: init, and the rswap [`Backend`] (store, load, invalidate) |
//! | `params.rs` | the module parameters, validated |
//! | `../memserver/src/proto.rs` | the wire protocol: connect request and reply; one file, included by memserver and by this module |
//! | `server.rs` | a server: connecting, its session and region, its health (up, reconnecting, lost) and recovery, one page transfer |
//! | `placement.rs` | server choice (`placement=`), the weighted policy's shares, the region's slots and their bounds, the key -> slot map |
//! | `tier.rs` | the tiered policy: hot and cold pages, promotion and demotion, moving a page safely |
//! | `queue.rs` | queues: a connection per CPU and class (read, write, read ahead), failures, rebuilding |
//! | `ahead.rs` | reads ahead: the kernel's readahead pages, loaded asynchronously in batches by a work item per CPU |
//! | `slotmap.rs` | a region's free slots: a bitmap with a summary (pure logic, unit-tested on the host) |
//! | `stats.rs` | per-server counters and their debugfs files |
//! | `rdma.rs` | the FFI layer: CM connections, QPs, CQs, DMA mapping, post/poll, the queue mutex, the recovery thread, the reads-ahead workqueue, vmalloc'd words, parameters; every `unsafe` block |
//! | `rswap_rdma_glue.c` | C for what Rust cannot reach: `module_param`, `mutex_init`/`mutex_lock`, the workqueue and per-CPU work items |
//!
//! Shared with rswap: `../rswap/backend.rs` (the backend ABI) and
//! `../rswap/ffi.rs` (pages, xarray, debugfs, spinlock).
//!
//! A server that stops answering (an RDMA error, a request past the
//! timeout, or the CM reporting a disconnect) is reconnecting: a kernel
//! thread (`rswap_rdma`) rebuilds its queues, stores skip it, and loads of
//! its pages wait for it up to `loss_timeout_s`. Past that its pages are
//! lost: loads of them fail with EIO, which the kernel turns into SIGBUS
//! for the task rather than stale data (server.rs). A page is handed back
//! to the kernel only once the NIC can no longer touch it (see rdma.rs).

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use kernel::error::code;
use kernel::prelude::*;

mod ahead;
#[path = "../rswap/backend.rs"]
mod backend;
mod ec;
#[path = "../rswap/ffi.rs"]
mod ffi;
mod mirror;
mod params;
mod placement;
// The wire protocol has one source, shared with memserver (see its top).
// Its items are `pub` for memserver's crate; here they are crate-private.
#[allow(unreachable_pub, dead_code)]
#[path = "../memserver/src/proto.rs"]
mod proto;
mod queue;
mod rdma;
mod repair;
mod server;
mod slotmap;
mod stats;
mod tier;

use ahead::Ahead;
use backend::{Backend, PendingLoad, Registration, SwapKey};
use ec::Ec;
use ffi::{try_box, DebugfsDir, PageRef};
use mirror::Mirror;
use placement::{Place, Placement, Policy};
use rdma::{AheadWq, Worker};
use server::Server;
use stats::Count;
use tier::Tiers;

module! {
    type: RswapRdma,
    name: b"rswap_rdma",
    author: b"rswap developers",
    description: b"rswap backend keeping swapped pages in remote memory over RDMA",
    license: b"GPL",
}

/// The backend: the servers and where each page is.
struct Rdma {
    /// The workqueue of the reads ahead (ahead.rs), `None` with
    /// `async_loads=0`. Declared first, so dropped first: its drop waits
    /// for a running work item, which uses the core.
    _ahead_wq: Option<AheadWq>,
    /// Dropped next: the files go before the counters they show, whenever
    /// the backend is dropped (also when registering it fails).
    _dirs: Vec<DebugfsDir>,
    _root: DebugfsDir,
    /// The servers and where each page is, owned by the recovery thread's
    /// Worker, which stops the thread before they go.
    core: Worker<Core>,
}

impl Drop for Rdma {
    /// Runs before the fields go: the reads-ahead work items find no core
    /// from now on, and the workqueue (dropped first) waits for one that
    /// is running. Swap is off (rswap pinned us while it was on), so no
    /// load waits.
    fn drop(&mut self) {
        CORE.store(ptr::null_mut(), Ordering::Release);
        let waiting = self.core.ctx().ahead.waiting();
        if waiting != 0 {
            pr_err!(
                "{} reads ahead still waiting at unload: this is a bug\n",
                waiting
            );
        }
    }
}

/// What the recovery thread works on, shared with the backend.
struct Core {
    servers: Vec<Server>,
    placement: Placement,
    tiers: Tiers,
    /// The placement policy it last saw, to log a change.
    policy: AtomicU32,
    /// The reads ahead waiting for their CPU's work item.
    ahead: Ahead,
    async_loads: bool,
    /// Second copies, with `redundancy=mirror` (mirror.rs).
    mirror: Option<Mirror>,
    /// The other chunks, with `redundancy=ec:K+1` (ec.rs).
    ec: Option<Ec>,
}

impl Core {
    /// Pages have copies or chunks on several servers (never moved).
    fn redundant(&self) -> bool {
        self.mirror.is_some() || self.ec.is_some()
    }

    /// Reads the page of `key` into `page`, waiting for its server if it
    /// is reconnecting; EIO if the page is lost.
    fn load(&self, key: SwapKey, page: &mut PageRef) -> Result {
        // Registered before the lookup: a page being moved keeps its old
        // slot until this load is done (tier.rs).
        let reading = self.tiers.readers.enter();
        let (p, moving) = self.placement.get_moving(key.raw()).ok_or(code::EIO)?;
        if moving {
            self.tiers.loads_during_move.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(ec) = &self.ec {
            // Never moved either.
            return ec.load(&self.servers, key.raw(), p, page);
        }
        if let Some(m) = &self.mirror {
            // Never moved (mirror.rs), so no referenced mark to keep.
            return m
                .load(&self.servers, key.raw(), p, page)
                .unwrap_or_else(|| self.read(p, page));
        }
        self.read(p, page)?;
        drop(reading);
        if Policy::now() == Policy::Tiered {
            self.tiers
                .loaded(&self.servers, &self.placement, key.raw(), p, page);
        }
        Ok(())
    }

    /// Reads the copy at `p` into `page`; EIO if it is lost.
    fn read(&self, p: Place, page: &PageRef) -> Result {
        let s = self.servers.get(p.server).ok_or(code::EIO)?;
        s.read(page, p.slot, p.gen, true).map_err(|_| code::EIO)
    }
}

/// The live core, for the reads-ahead work items (ahead.rs): set before
/// the backend registers, cleared when the backend is dropped, just
/// before its workqueue (whose drop waits for a running work item).
static CORE: AtomicPtr<Core> = AtomicPtr::new(ptr::null_mut());

/// The reads-ahead work item of CPU `cpu` (called by rswap_rdma_glue.c).
#[no_mangle]
pub extern "C" fn rswap_rdma_ahead(cpu: core::ffi::c_uint) {
    let p = CORE.load(Ordering::Acquire);
    if p.is_null() {
        return;
    }
    // SAFETY: non-null `CORE` points at the core the backend owns, which
    // outlives the workqueue that runs us (`Rdma::_ahead_wq`).
    ahead::work(unsafe { &*p }, cpu as usize);
}

/// The recovery thread's work, every [`RECOVERY_PERIOD_MS`]: rebuilds
/// what broke, refreshes each server's measurements, steers the weighted
/// policy's shares, and moves pages between tiers.
fn tick(core: &Core) {
    let now = rdma::now_ns();
    for s in core.servers.iter() {
        s.recover();
        s.stats.tick(now, s.unit() as u64);
    }
    let policy = Policy::now();
    if core.policy.swap(policy as u32, Ordering::Relaxed) != policy as u32 {
        pr_info!("placement is now {}\n", policy.name());
    }
    probe_idle(&core.servers);
    placement::rebalance(&core.servers);
    // Mirrored or coded pages are never moved (mirror.rs).
    let moves = policy == Policy::Tiered && !core.redundant();
    core.tiers.tick(&core.servers, &core.placement, moves);
    if let Some(m) = &core.mirror {
        m.repair(&core.servers, &core.placement);
    }
    if let Some(ec) = &core.ec {
        ec.repair(&core.servers, &core.placement);
    }
}

pub(crate) const RECOVERY_PERIOD_MS: u32 = 100;

/// While the node swaps, measures the servers that get no reads (one
/// probe read each, every half second at most: `ServerStats::wants_probe`),
/// so every policy compares live figures. Nothing while the node is idle.
fn probe_idle(servers: &[Server]) {
    if !servers.iter().any(|s| s.stats.active()) {
        return;
    }
    let mut bounce = None;
    for s in servers
        .iter()
        .filter(|s| s.usable() && s.stats.wants_probe())
    {
        if bounce.is_none() {
            // Without a page (memory is short) nothing is probed now.
            bounce = match ffi::OwnedPage::alloc(ffi::GFP_SWAPOUT) {
                Ok(p) => Some(p),
                Err(_) => return,
            };
        }
        if let Some(b) = bounce.as_mut() {
            s.probe(&b.borrow_mut());
        }
    }
}

impl Backend for Rdma {
    fn store(&self, key: SwapKey, page: &PageRef) -> Result {
        let core = self.core.ctx();
        let servers = &core.servers;
        if let Some(ec) = &core.ec {
            return ec.store(servers, &core.placement, key.raw(), page);
        }
        let (server, s, hot) = match Policy::now() {
            Policy::Tiered if core.mirror.is_none() => core.tiers.pick(servers, page),
            p => placement::pick(servers, p, 0).map(|(i, s)| (i, s, false)),
        }
        .ok_or(code::ENOSPC)?;
        // `_inflight` holds off a retirement of the server's pages until
        // the page is recorded (or refused) below.
        let (slot, gen, _inflight) = s.store(page)?;
        let place = Place { server, slot, gen };
        // With mirror, the second copy is written and recorded before the
        // first is: a store succeeds only with both. `_copy_inflight` holds
        // off a retirement of the second copy's server until both
        // generations are checked below.
        let (second, _copy_inflight) = match &core.mirror {
            Some(m) => match m.store_copy(servers, key.raw(), server, page) {
                Ok((p, mark)) => (Some(p), Some(mark)),
                Err(e) => {
                    s.put_slot(slot, gen);
                    return Err(e);
                }
            },
            None => (None, None),
        };
        let refuse = |e| {
            if let Some(m) = &core.mirror {
                m.invalidate(servers, key.raw());
            }
            Err(e)
        };
        if let Err(e) = core.placement.insert(key.raw(), place, hot) {
            s.put_slot(slot, gen);
            return refuse(e);
        }
        // The server's pages may have been declared lost since the write:
        // then this one is too, so refuse the store (the page goes to the
        // next tier or the swap device) rather than keep it. So too if the
        // second copy's server's were (mirror: two copies or none).
        // Counted only if its generation is current, in one step with
        // that check (a retirement counts the pages it loses).
        let second_gone = second.map_or(false, |c| !mirror::live(servers, c));
        if second_gone || !s.count_page(gen, true) {
            if core.placement.remove_if(key.raw(), place) {
                // Only the second copy's server was retired: the first
                // copy's slot is current and goes back (else a no-op).
                s.put_slot(slot, gen);
                return refuse(code::ECONNRESET);
            }
            // The tiered policy moved it to another server meanwhile,
            // which holds (and counts) it.
            return Ok(());
        }
        s.stats.count(Count::Stores, 1);
        if hot {
            s.stats.count(Count::StoresHot, 1);
        }
        Ok(())
    }

    fn load(&self, key: SwapKey, page: &mut PageRef) -> Result {
        self.core.ctx().load(key, page)
    }

    fn loads_async(&self) -> bool {
        self.core.ctx().async_loads
    }

    /// A page read ahead: waits on this CPU's list for its work item
    /// (ahead.rs), or, if the list is full, is loaded now.
    fn load_async(&self, key: SwapKey, load: PendingLoad) {
        let core = self.core.ctx();
        let waiting = match &self._ahead_wq {
            Some(wq) => {
                let cpu = rdma::cpu_id();
                let back = core.ahead.push(cpu, key, load);
                if back.is_none() {
                    wq.kick(cpu);
                }
                back
            }
            // Not asynchronous (rswap then never asks this).
            None => Some((key, load)),
        };
        if let Some((key, mut load)) = waiting {
            core.ahead.at_once.fetch_add(1, Ordering::Relaxed);
            let r = core.load(key, load.page());
            load.complete(r);
        }
    }

    fn invalidate(&self, key: SwapKey) {
        let core = self.core.ctx();
        if let Some(p) = core.placement.remove(key.raw()) {
            // Nothing for a page of a retired generation: it was counted
            // as lost, and its slot may hold a newer page.
            mirror::free(&core.servers, p);
        }
        if let Some(m) = &core.mirror {
            m.invalidate(&core.servers, key.raw());
        }
        if let Some(ec) = &core.ec {
            ec.invalidate(&core.servers, key.raw());
        }
    }
}

/// With `follow_upstream=1`: adds the upstream of every server (and
/// theirs in turn), as servers like the others, up to
/// [`params::MAX_SERVERS`]. Their pages travel through the server that
/// named them, by the route the network gives (proto.rs). An upstream
/// that cannot be reached is logged and left out: the servers we were
/// given still serve.
fn add_upstreams(servers: &mut Vec<Server>, p: &params::Params, cpus: usize) -> Result {
    let mut i = 0;
    while i < servers.len() {
        let via = servers[i].ep;
        i += 1;
        let up = match servers[i - 1].upstream() {
            Some(up) => up,
            None => continue,
        };
        if servers.iter().any(|s| s.ep == up) {
            pr_info!(
                "server {}: its upstream {} is one of ours already\n",
                via,
                up
            );
            continue;
        }
        if servers.len() == params::MAX_SERVERS {
            pr_warn!(
                "server {}: not using its upstream {}: at most {} servers\n",
                via,
                up,
                params::MAX_SERVERS
            );
            continue;
        }
        match Server::connect(up, p, cpus) {
            Ok(s) => {
                pr_info!("server {}: using its upstream {} too\n", via, up);
                servers.try_push(s)?;
            }
            Err(_) => pr_warn!(
                "server {}: its upstream {} is unreachable (logged above); not using it\n",
                via,
                up
            ),
        }
    }
    Ok(())
}

struct RswapRdma {
    _registration: Registration<Rdma>,
}

impl kernel::Module for RswapRdma {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let p = params::parse()?;
        let cpus = rdma::nr_cpus().max(1);
        let mut servers = Vec::new();
        for ep in p.servers.iter() {
            servers.try_push(Server::connect(*ep, &p, cpus)?)?;
        }
        if p.follow_upstream {
            add_upstreams(&mut servers, &p, cpus)?;
        }
        let servers_len = servers.len();
        if p.redundancy == params::Redundancy::Mirror && servers_len < 2 {
            pr_err!("redundancy=mirror needs two servers; only one could be used\n");
            return Err(code::EINVAL);
        }
        if let params::Redundancy::Ec(k) = p.redundancy {
            if servers_len < k as usize + 1 {
                pr_err!(
                    "redundancy=ec:{}+1 needs {} servers; only {} could be used\n",
                    k,
                    k + 1,
                    servers_len
                );
                return Err(code::EINVAL);
            }
        }
        let (mirror, ec) = match p.redundancy {
            params::Redundancy::Mirror => (Some(Mirror::new(p.repair_mib_s)?), None),
            params::Redundancy::Ec(k) => (None, Some(Ec::new(k, p.repair_mib_s, cpus)?)),
            params::Redundancy::None => (None, None),
        };
        let placement = Placement::new()?;
        // debugfs failures are not fatal (the files are then missing). The
        // counters are boxed in each server, so they stay where debugfs
        // points when the servers move into the backend; declared after the
        // servers, the directories are dropped before them on any error.
        let root = DebugfsDir::new(b"rswap_rdma\0", None);
        let mut dirs = Vec::new();
        for (i, s) in servers.iter().enumerate() {
            if let Some(d) = stats::publish(&root, i, s.ep, &s.stats) {
                dirs.try_push(d)?;
            }
        }
        let policy = Policy::now();
        let core = Worker::start(
            b"rswap_rdma\0",
            try_box(Core {
                servers,
                placement,
                tiers: Tiers::new()?,
                policy: AtomicU32::new(policy as u32),
                ahead: Ahead::new(cpus, p.readahead_depth)?,
                async_loads: p.async_loads,
                mirror,
                ec,
            })?,
            tick,
            RECOVERY_PERIOD_MS,
        )?;
        // The core stays where it is (boxed in the Worker) from here on.
        CORE.store(core.ctx() as *const Core as *mut Core, Ordering::Release);
        let ahead_wq = if p.async_loads {
            match AheadWq::new() {
                Ok(wq) => Some(wq),
                Err(e) => {
                    CORE.store(ptr::null_mut(), Ordering::Release);
                    return Err(e);
                }
            }
        } else {
            None
        };
        // The moves' races, counted (tier.rs); the backend drops the
        // directory before the counters.
        let tiers = &core.ctx().tiers;
        root.add_u64(b"loads_during_move\0", &tiers.loads_during_move);
        root.add_u64(b"frees_waited\0", &tiers.frees_waited);
        root.add_u64(b"reads_ahead_at_once\0", &core.ctx().ahead.at_once);
        if let Some(m) = &core.ctx().mirror {
            mirror::publish(&root, m);
        }
        if let Some(ec) = &core.ctx().ec {
            ec::publish(&root, ec);
        }
        let backend = Rdma {
            _ahead_wq: ahead_wq,
            _dirs: dirs,
            _root: root,
            core,
        };
        // Last: once registered, rswap may call us at once, and nothing
        // above can fail after it.
        let registration = Registration::new(b"rdma\0", module, backend)?;
        pr_info!(
            "node {:#x}: {} servers, {} queues each, {} MiB asked of each, placement {}; an unreachable server's pages wait {} s before they are lost; reads ahead {}\n",
            p.node_id,
            servers_len,
            3 * cpus,
            p.mib,
            policy.name(),
            p.loss_timeout_s,
            if p.async_loads {
                "asynchronous, in batches"
            } else {
                "synchronous"
            }
        );
        Ok(RswapRdma {
            _registration: registration,
        })
    }
}
