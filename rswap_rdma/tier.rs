// SPDX-License-Identifier: GPL-2.0
//! The tiered policy (`placement=tiered`): hot pages on the fastest
//! server, cold pages on the slower ones, and pages moved between them in
//! the background by the recovery thread.
//!
//! - **Tiers.** The fast tier is the usable server with the lowest loaded
//!   latency (`placement::latency_ns`), chosen again every recovery period;
//!   another server takes its place only when it is at least a quarter
//!   faster (no flapping between equals). Every other server is the slow
//!   tier. A server that gets no reads (the slow tier while the fast one
//!   has room, or a fast tier that lost its place while busy) is measured
//!   by a probe read every half second (`probe_idle` in
//!   rswap_rdma_main.rs), so it wins its place back once it is faster.
//! - **Hot.** A page stored again soon after it was loaded is hot: it was
//!   faulted in, used, and is being swapped out again, so it will likely
//!   fault again. A load records the `struct page` it filled, with the
//!   time, in a small table ([`Tiers::loaded`]); a store of that same page
//!   within [`HOT_S`] finds it. A page loaded twice while it stays stored
//!   (a read fault keeps the swap slot, and a clean page is dropped and
//!   faulted in again without a new store) is hot too: the second load
//!   finds it REFERENCED in its placement entry, and if it is on the slow
//!   tier it is queued for promotion.
//! - **Stores** ([`Tiers::pick`]). A hot page goes to the fast tier while
//!   it has room. Any other page goes there too while more than
//!   [`LOW_PCT`]% of it is free (fast memory left empty is wasted), and to
//!   the slow tier by weight after that.
//! - **Demotion.** While less than [`LOW_PCT`]% of the fast tier is free,
//!   the recovery thread runs a clock over the placement map: a page on
//!   the fast tier that was loaded since the last pass loses its
//!   REFERENCED flag and stays; one that was not moves to the slow tier.
//!   It stops once [`HIGH_PCT`]% is free.
//! - **Promotion.** Queued pages move to the fast tier.
//! - **Moves** ([`Tiers::move_page`]) never expose a half-moved page: the
//!   entry is flagged MOVING; the page is read from its slot into a
//!   bounce page and written to a new slot (a normal store); the entry is
//!   then switched to the new slot, only if it is still the same page
//!   (a key invalidated and stored again meanwhile has a fresh entry
//!   without the flag, and the copy is dropped). The old slot is freed
//!   only once every load that may have looked up the old entry is done:
//!   loads register in an epoch ([`Readers`]); after a batch of moves the
//!   epoch flips, and the old slots are freed when no load of the previous
//!   epoch is left. So a load during a move reads the old slot, intact.
//!
//! The recovery thread does the moves, within a budget of 30 ms a period
//! checked between moves; a move is one read and one write, each tried
//! once, so a server failing mid-move holds the thread (and the recovery
//! of other servers) for at most about two request timeouts. The moves'
//! own transfers count in the servers' traffic and latency averages, as
//! load they are; `moved_out` tells their reads from loads.
//!
//! rswap_dram as tier 0: rswap tries its backends in the order they were
//! loaded, so rswap_dram loaded before rswap_rdma takes new pages first;
//! pages do not move between backends.

use crate::ffi::{OwnedPage, PageRef, SpinLock, GFP_SWAPOUT, PAGE_SIZE};
use crate::placement::{self, Place, Placement};
use crate::rdma;
use crate::server::Server;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use kernel::prelude::*;

/// A page stored again within this many seconds of its load is hot.
pub(crate) const HOT_S: u64 = 60;
/// Demotion starts when less than this share (%) of the fast tier is
/// free, and cold stores go to the slow tier.
pub(crate) const LOW_PCT: u64 = 10;
/// Demotion stops when this share (%) is free.
pub(crate) const HIGH_PCT: u64 = 16;
/// Entries of the load table; a collision only forgets a page's heat.
const HEAT_SLOTS: usize = 8192;
/// Moves per batch (one batch at a time, freed after its epoch drains).
const BATCH: usize = 64;
/// Placement entries the demotion clock looks at per period.
const SCAN: usize = 1024;
/// Time the recovery thread spends moving pages per period, in ns.
const BUDGET_NS: u64 = 30_000_000;
/// Pages waiting for promotion; more are dropped (they are still found
/// hot when stored again).
const PROMOTE_MAX: usize = 256;

/// Loads in flight, by epoch: a hand-rolled sleepable RCU for slot reuse.
pub(crate) struct Readers {
    epoch: AtomicUsize,
    count: [AtomicUsize; 2],
}

/// A load registered in an epoch, until dropped.
pub(crate) struct Reading<'a>(&'a AtomicUsize);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Readers {
    fn new() -> Readers {
        Readers {
            epoch: AtomicUsize::new(0),
            count: [AtomicUsize::new(0), AtomicUsize::new(0)],
        }
    }

    /// Registers a load in the current epoch, before it looks up its page.
    pub(crate) fn enter(&self) -> Reading<'_> {
        loop {
            let e = self.epoch.load(Ordering::SeqCst) & 1;
            self.count[e].fetch_add(1, Ordering::SeqCst);
            // Counted in the epoch that is still current: a flip after
            // this sees us.
            if self.epoch.load(Ordering::SeqCst) & 1 == e {
                return Reading(&self.count[e]);
            }
            self.count[e].fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Starts a new epoch; returns the old one's index.
    fn flip(&self) -> usize {
        self.epoch.fetch_add(1, Ordering::SeqCst) & 1
    }

    fn drained(&self, idx: usize) -> bool {
        self.count[idx].load(Ordering::SeqCst) == 0
    }
}

/// The tiered policy's state.
pub(crate) struct Tiers {
    pub(crate) readers: Readers,
    /// (struct page address / 64) << 24 | load time in s, by a hash of it.
    heat: Vec<AtomicU64>,
    promote: Box<SpinLock<Vec<u64>>>,
    /// Old slots of the last batch of moves (`Place::pack`), and the epoch
    /// their loads were in. Only the recovery thread touches them.
    pending: [AtomicU64; BATCH],
    pending_len: AtomicUsize,
    pending_epoch: AtomicUsize,
    /// The fast tier's server index (usize::MAX: none yet).
    fast: AtomicUsize,
    cursor: AtomicU64,
    demoting: AtomicBool,
    /// Loads that found their page being moved (they read the old slot),
    /// and periods in which freeing a batch's old slots waited for loads
    /// still reading them: the races the moves are built for, counted.
    pub(crate) loads_during_move: AtomicU64,
    pub(crate) frees_waited: AtomicU64,
}

fn now_s() -> u64 {
    rdma::now_ns() / 1_000_000_000
}

/// The load table's slot for `page`, and the tag that identifies it.
fn heat_slot(page: &PageRef) -> (usize, u64) {
    let a = page.as_ptr() as usize as u64 >> 6;
    let h = a.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 51;
    (h as usize % HEAT_SLOTS, a & ((1 << 40) - 1))
}

/// Is more than `pct`% of `s`'s capacity free?
fn more_free_than(s: &Server, pct: u64) -> bool {
    s.free_pages() * 100 > s.capacity_pages() * pct
}

/// A server of the slow tier (any usable one but `fast`) with room, drawn
/// by the weighted policy's shares (one without a share yet still
/// counts).
fn slow_tier(servers: &[Server], fast: usize) -> Option<(usize, &Server)> {
    placement::draw(servers, |i, s| {
        if i != fast && s.free_pages() > 0 {
            s.stats.share_ppm.load(Ordering::Relaxed).max(1)
        } else {
            0
        }
    })
}

impl Tiers {
    pub(crate) fn new() -> Result<Tiers> {
        let mut heat = Vec::new();
        heat.try_reserve_exact(HEAT_SLOTS)?;
        for _ in 0..HEAT_SLOTS {
            heat.try_push(AtomicU64::new(0))?;
        }
        let mut q = Vec::new();
        q.try_reserve_exact(PROMOTE_MAX)?;
        Ok(Tiers {
            readers: Readers::new(),
            heat,
            promote: SpinLock::new(q)?,
            pending: core::array::from_fn(|_| AtomicU64::new(0)),
            pending_len: AtomicUsize::new(0),
            pending_epoch: AtomicUsize::new(0),
            fast: AtomicUsize::new(usize::MAX),
            cursor: AtomicU64::new(0),
            demoting: AtomicBool::new(false),
            loads_during_move: AtomicU64::new(0),
            frees_waited: AtomicU64::new(0),
        })
    }

    /// The fast tier now, if it is up.
    fn fast<'a>(&self, servers: &'a [Server]) -> Option<(usize, &'a Server)> {
        let f = self.fast.load(Ordering::Relaxed);
        servers.get(f).filter(|s| s.usable()).map(|s| (f, s))
    }

    /// A load of `key` (at `p`) filled `page`: remembers the page, marks
    /// the entry referenced, and queues a second load of a page on the
    /// slow tier for promotion.
    pub(crate) fn loaded(
        &self,
        servers: &[Server],
        map: &Placement,
        key: u64,
        p: Place,
        page: &PageRef,
    ) {
        let (i, tag) = heat_slot(page);
        self.heat[i].store(tag << 24 | (now_s() & 0xff_ffff), Ordering::Relaxed);
        let again = map.touch(key);
        let on_slow = self.fast(servers).map_or(false, |(f, _)| f != p.server);
        if again && on_slow {
            self.promote.with(|q| {
                if q.len() < PROMOTE_MAX {
                    // Within the reserved capacity: cannot fail.
                    let _ = q.try_push(key);
                }
            });
        }
    }

    /// Was `page` loaded within the last [`HOT_S`] seconds?
    fn hot(&self, page: &PageRef) -> bool {
        let (i, tag) = heat_slot(page);
        let e = self.heat[i].load(Ordering::Relaxed);
        e >> 24 == tag && now_s().wrapping_sub(e) & 0xff_ffff <= HOT_S
    }

    /// Where a new page goes, and whether it is hot.
    pub(crate) fn pick<'a>(
        &self,
        servers: &'a [Server],
        page: &PageRef,
    ) -> Option<(usize, &'a Server, bool)> {
        let hot = self.hot(page);
        let fast = self.fast(servers);
        if let Some((f, s)) = fast {
            if s.free_pages() > 0 && (hot || more_free_than(s, LOW_PCT)) {
                return Some((f, s, hot));
            }
        }
        slow_tier(servers, fast.map_or(usize::MAX, |(f, _)| f))
            .or_else(|| placement::draw(servers, |_, s| s.free_pages()))
            .map(|(i, s)| (i, s, hot))
    }

    /// The recovery thread's part, every period: frees the old slots of
    /// the last batch once its loads are done; under the tiered policy,
    /// chooses the fast tier, then promotes and demotes a batch.
    pub(crate) fn tick(&self, servers: &[Server], map: &Placement, tiered: bool) {
        if !self.free_pending(servers) {
            return;
        }
        if !tiered {
            self.promote.with(|q| q.clear());
            self.fast.store(usize::MAX, Ordering::Relaxed);
            return;
        }
        let fast = match self.choose_fast(servers) {
            Some(f) => f,
            None => return,
        };
        let start = rdma::now_ns();
        let in_budget = || rdma::now_ns().wrapping_sub(start) < BUDGET_NS;
        let f = &servers[fast];
        let cap = f.capacity_pages();
        let free = f.free_pages() * 100;
        if free < cap * LOW_PCT {
            self.demoting.store(true, Ordering::Relaxed);
        } else if free >= cap * HIGH_PCT {
            self.demoting.store(false, Ordering::Relaxed);
        }
        let demoting = self.demoting.load(Ordering::Relaxed);
        if !demoting && self.promote.with(|q| q.is_empty()) {
            return;
        }
        // The bounce page is ours alone for this period; without one
        // (memory is short) nothing moves now.
        let mut bounce = match OwnedPage::alloc(GFP_SWAPOUT) {
            Ok(p) => p,
            Err(_) => return,
        };
        let page = bounce.borrow_mut();
        // Promotions, while more than LOW_PCT of the fast tier is free (so
        // they never fight the demotions, which start below that).
        while self.pending_len.load(Ordering::Relaxed) < BATCH
            && in_budget()
            && more_free_than(f, LOW_PCT)
        {
            let key = match self.promote.with(|q| q.pop()) {
                Some(k) => k,
                None => break,
            };
            if let Some(p) = map.get(key).filter(|p| p.server != fast) {
                self.move_page(servers, map, &page, key, p, fast, true);
            }
        }
        let mut scanned = 0;
        while demoting
            && scanned < SCAN
            && self.pending_len.load(Ordering::Relaxed) < BATCH
            && in_budget()
        {
            let from = self.cursor.load(Ordering::Relaxed);
            let (key, p) = match map.next_from(from) {
                Some(e) => e,
                None => {
                    self.cursor.store(0, Ordering::Relaxed);
                    break;
                }
            };
            self.cursor.store(key + 1, Ordering::Relaxed);
            scanned += 1;
            // Second chance: a page loaded since the last pass stays.
            if p.server != fast || map.second_chance(key, p) != Some(false) {
                continue;
            }
            match slow_tier(servers, fast) {
                Some((t, _)) => {
                    self.move_page(servers, map, &page, key, p, t, false);
                }
                None => break,
            }
        }
        if self.pending_len.load(Ordering::Relaxed) > 0 {
            self.pending_epoch
                .store(self.readers.flip(), Ordering::Relaxed);
        }
    }

    /// Chooses the fast tier: the usable server with the lowest latency,
    /// unless the current one is within a third of it.
    fn choose_fast(&self, servers: &[Server]) -> Option<usize> {
        let lat = |s: &Server| placement::latency_ns(s).filter(|_| s.usable());
        let (best, best_lat) = servers
            .iter()
            .enumerate()
            .filter_map(|(i, s)| lat(s).map(|l| (i, l)))
            .min_by_key(|&(_, l)| l)?;
        let cur = self.fast.load(Ordering::Relaxed);
        let keep = servers
            .get(cur)
            .and_then(|s| lat(s))
            .map_or(false, |l| l * 3 <= best_lat * 4);
        if keep {
            return Some(cur);
        }
        self.fast.store(best, Ordering::Relaxed);
        pr_info!(
            "tiered: the fast tier is now server {} ({} us loaded latency)\n",
            servers[best].ep,
            best_lat / 1000
        );
        Some(best)
    }

    /// Moves the page at `key` from `from` to server `to` (see the top of
    /// this file); true if it moved. Any failure leaves it where it was.
    #[allow(clippy::too_many_arguments)]
    fn move_page(
        &self,
        servers: &[Server],
        map: &Placement,
        page: &PageRef,
        key: u64,
        from: Place,
        to: usize,
        promote: bool,
    ) -> bool {
        let (src, dst) = match (servers.get(from.server), servers.get(to)) {
            (Some(a), Some(b)) if a.usable() && b.usable() => (a, b),
            _ => return false,
        };
        if !map.begin_move(key, from) {
            return false;
        }
        // One attempt each: the recovery thread must not wait here for a
        // server it should be reconnecting.
        let copied = src
            .read(page, from.slot, from.gen, false)
            .and_then(|()| dst.store(page));
        // `_inflight` holds off a retirement of dst until the entry points
        // at the copy (as for any store).
        let (slot, gen, _inflight) = match copied {
            Ok(c) => c,
            Err(_) => {
                map.end_move(key, from, None, false);
                return false;
            }
        };
        let to_place = Place {
            server: to,
            slot,
            gen,
        };
        if !map.end_move(key, from, Some(to_place), promote) {
            dst.put_slot(slot, gen);
            return false;
        }
        // dst's pages were retired anyway (a retirement that gave up
        // waiting for us): the copy is lost, the original is not.
        if !dst.count_page(gen, true) && map.revert_move(key, to_place, from) {
            return false;
        }
        let n = self.pending_len.load(Ordering::Relaxed);
        self.pending[n].store(from.pack(), Ordering::Relaxed);
        self.pending_len.store(n + 1, Ordering::Relaxed);
        src.count_page(from.gen, false);
        dst.stats
            .moved_bytes
            .fetch_add(PAGE_SIZE as u64, Ordering::Relaxed);
        src.stats.moved_out.fetch_add(1, Ordering::Relaxed);
        if promote {
            dst.stats.promotions.fetch_add(1, Ordering::Relaxed);
        } else {
            src.stats.demotions.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Frees the old slots of the last batch once no load that may have
    /// looked them up is left; true if none is pending now.
    fn free_pending(&self, servers: &[Server]) -> bool {
        let n = self.pending_len.load(Ordering::Relaxed);
        if n == 0 {
            return true;
        }
        if !self
            .readers
            .drained(self.pending_epoch.load(Ordering::Relaxed))
        {
            self.frees_waited.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        for e in self.pending[..n].iter() {
            let p = Place::unpack(e.load(Ordering::Relaxed));
            if let Some(s) = servers.get(p.server) {
                // A retired generation's slots were all freed already.
                s.put_slot(p.slot, p.gen);
            }
        }
        self.pending_len.store(0, Ordering::Relaxed);
        true
    }
}
