// SPDX-License-Identifier: GPL-2.0
//! Reads ahead: the pages the kernel reads ahead of a fault, loaded
//! asynchronously, in batches (`async_loads=1`, the default).
//!
//! The kernel reads the faulting page itself first, synchronously, on this
//! CPU's read queue (`Rdma::load`). Then it hands over the rest of the
//! window one page at a time (`Rdma::load_async`), and returns to the task
//! without waiting. Each page waits on this CPU's list ([`Ahead`]), and a
//! work item for this CPU ([`work`], on the module's unbound
//! `WQ_MEM_RECLAIM` workqueue, so that it neither competes with the task
//! on its CPU nor holds up other work while it polls) takes the whole
//! list. It groups the pages by server and reads each group as batches of
//! up to `readahead_depth` RDMA READs, one chain per batch (one doorbell),
//! on that server's readahead queue. The readahead queue is a third queue
//! per CPU, so these reads never hold up a fault's own read (only the
//! pages of a failed batch, loaded again the usual way, use the read
//! queues). Then it completes each page. The `Readers` guard (tier.rs) is
//! held from the lookups to the last batch, so that no move frees a slot
//! we are reading.
//!
//! What can go wrong, and what happens then:
//! - A batch fails or times out. As for any request, its queue is broken
//!   and the server is reconnecting. Each page of the batch is then loaded
//!   alone, the usual way (`Core::load`), which waits for the server up to
//!   `loss_timeout_s` and fails only a page that is truly lost. So an error
//!   costs time, never a page.
//! - The list is full. The page is loaded at once, synchronously, by the
//!   faulting task.
//! - A task touches a page still in flight. It waits on the page lock,
//!   which is released when the page is completed.
//! - Unload. Swap is off, so nothing waits. The workqueue is destroyed
//!   first (`AheadWq`), which waits for a running work item, and only then
//!   does the rest of the backend go.

use crate::backend::{LoadStack, PendingLoad, SwapKey};
use crate::ffi::SpinLock;
use crate::placement::{Place, Policy};
use crate::rdma::BATCH_MAX;
use crate::server::Server;
use crate::Core;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::error::code;
use kernel::prelude::*;

/// Reads ahead waiting per CPU; past that a page is loaded at once.
pub(crate) const WAITING_MAX: usize = 64;

type Waiting = Option<(SwapKey, PendingLoad)>;

/// The reads ahead waiting for their CPU's work item.
pub(crate) struct Ahead {
    /// Per CPU (modulo the count): loads accepted and not started.
    waiting: Vec<Box<SpinLock<LoadStack<WAITING_MAX>>>>,
    /// Pages per batch: `readahead_depth`.
    depth: usize,
    /// Reads ahead loaded at once by the faulting task, their list being
    /// full (debugfs `reads_ahead_at_once`).
    pub(crate) at_once: AtomicU64,
}

impl Ahead {
    pub(crate) fn new(cpus: usize, depth: u32) -> Result<Ahead> {
        let mut waiting = Vec::new();
        waiting.try_reserve_exact(cpus.max(1))?;
        for _ in 0..cpus.max(1) {
            waiting.try_push(SpinLock::new(LoadStack::new())?)?;
        }
        Ok(Ahead {
            waiting,
            depth: (depth as usize).clamp(1, BATCH_MAX),
            at_once: AtomicU64::new(0),
        })
    }

    fn list(&self, cpu: usize) -> &SpinLock<LoadStack<WAITING_MAX>> {
        &self.waiting[cpu % self.waiting.len()]
    }

    /// Puts a load on CPU `cpu`'s list; hands it back if the list is full.
    pub(crate) fn push(&self, cpu: usize, key: SwapKey, load: PendingLoad) -> Waiting {
        self.list(cpu).with(|l| l.push((key, load)))
    }

    /// Loads still waiting, on every CPU (0 at unload).
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.iter().map(|l| l.with(|l| l.len())).sum()
    }
}

/// The work item of CPU `cpu`: loads everything on its list.
pub(crate) fn work(core: &Core, cpu: usize) {
    const NONE: Waiting = None;
    let mut items = [NONE; WAITING_MAX];
    loop {
        let n = core.ahead.list(cpu).with(|l| {
            let mut n = 0;
            while n < WAITING_MAX {
                match l.pop() {
                    Some(item) => {
                        items[n] = Some(item);
                        n += 1;
                    }
                    None => break,
                }
            }
            n
        });
        if n == 0 {
            return;
        }
        // Popped newest first: back to the kernel's order, the page next
        // to the fault first.
        items[..n].reverse();
        load(core, &mut items[..n]);
    }
}

/// Loads `items`: looks each page up, reads them in batches per server,
/// completes them. Pages of a failed batch (and any other left) are
/// loaded again one by one.
fn load(core: &Core, items: &mut [Waiting]) {
    let n = items.len();
    let mut places: [Option<Place>; WAITING_MAX] = [None; WAITING_MAX];
    // Registered before the lookups: a page being moved keeps its old slot
    // until we are done with it (tier.rs).
    let reading = core.tiers.readers.enter();
    for i in 0..n {
        let key = match &items[i] {
            Some((key, _)) => *key,
            None => continue,
        };
        match core.placement.get_moving(key.raw()) {
            Some((p, moving)) => {
                if moving {
                    core.tiers.loads_during_move.fetch_add(1, Ordering::Relaxed);
                }
                places[i] = Some(p);
            }
            // Not held: lost, as for a synchronous load.
            None => {
                if let Some((_, load)) = items[i].take() {
                    load.complete(Err(code::EIO));
                }
            }
        }
    }
    // Erasure-coded pages are read chunk by chunk (ec.rs), not in
    // batches of whole pages: each is loaded alone below.
    let servers: &[Server] = if core.ec.is_some() {
        &[]
    } else {
        &core.servers
    };
    for (si, server) in servers.iter().enumerate() {
        let gen = server.gen();
        let mut batch = [0usize; BATCH_MAX];
        let mut k = 0;
        for i in 0..n {
            match places[i] {
                Some(p) if p.server == si => {
                    // A page of a retired generation goes the usual way,
                    // which says it is lost.
                    if p.gen != gen {
                        continue;
                    }
                    batch[k] = i;
                    k += 1;
                    if k == core.ahead.depth {
                        read_batch(core, si, gen, &batch[..k], items, &places);
                        k = 0;
                    }
                }
                _ => {}
            }
        }
        if k > 0 {
            read_batch(core, si, gen, &batch[..k], items, &places);
        }
    }
    drop(reading);
    // The pages of failed batches, and any not read above, loaded alone:
    // this waits for a reconnecting server and fails only pages that are
    // truly lost.
    for i in 0..n {
        if let Some((key, mut load)) = items[i].take() {
            let r = core.load(key, load.page());
            load.complete(r);
        }
    }
}

/// Reads the pages `batch` (indices into `items`) of server `si`, all of
/// generation `gen`, as one batch, and completes them; if the batch
/// failed, leaves them waiting in `items` (loaded again one by one).
fn read_batch(
    core: &Core,
    si: usize,
    gen: u32,
    batch: &[usize],
    items: &mut [Waiting],
    places: &[Option<Place>; WAITING_MAX],
) {
    let server = &core.servers[si];
    let m = batch.len();
    let r = {
        // Every page of a batch is still waiting (only pages without a
        // place were completed before).
        let first = match &items[batch[0]] {
            Some((_, load)) => load.page_ref(),
            None => return,
        };
        let mut pages = [first; BATCH_MAX];
        let mut slots = [0u32; BATCH_MAX];
        let mut whole = true;
        for (j, &i) in batch.iter().enumerate() {
            match (&items[i], places[i]) {
                (Some((_, load)), Some(p)) => {
                    pages[j] = load.page_ref();
                    slots[j] = p.slot;
                }
                _ => whole = false,
            }
        }
        if whole {
            server.read_ahead(&pages[..m], &slots[..m], gen)
        } else {
            Err(code::EINVAL)
        }
    };
    if r.is_err() {
        server
            .stats
            .readahead_retried
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        return;
    }
    // Mirrored pages are never moved (mirror.rs): no heat to keep.
    let tiered = Policy::now() == Policy::Tiered && core.mirror.is_none();
    for &i in batch {
        if let (Some((key, load)), Some(p)) = (items[i].take(), places[i]) {
            if tiered {
                core.tiers.loaded(
                    &core.servers,
                    &core.placement,
                    key.raw(),
                    p,
                    load.page_ref(),
                );
            }
            load.complete(Ok(()));
        }
    }
}
