// SPDX-License-Identifier: GPL-2.0
//! The repair pass that `redundancy=mirror` (mirror.rs) and `ec:K+1`
//! (ec.rs) share, on the recovery thread: once a server's pages are
//! declared lost (a slot generation moves on), a pass over every
//! redundant page finds those that lost a piece (a copy or a chunk) and
//! makes it again on another server, at most `repair_mib_s` worth of
//! pages and [`REPAIR_BUDGET_NS`] per period. What each page needs is the
//! caller's: [`Pass::run`] walks the keys and keeps the counts.

use crate::ffi::DebugfsDir;
use crate::placement::{Place, Placement};
use crate::rdma;
use crate::server::Server;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Entries looked at per recovery period at most, repaired or not (so
/// `repair_mib_s` stops at 160: 4096 pages per period).
const SCAN_PER_TICK: u32 = 4096;
/// Time spent repairing per recovery period at most (50 ms; the thread
/// then sleeps the period, 100 ms, before the next), so that
/// the thread still rebuilds connections and declares losses in time, and
/// repair never holds the link for long against the tasks' faults.
const REPAIR_BUDGET_NS: u64 = 50_000_000;

/// What a page needed, as the caller's visit found it.
pub(crate) enum Step {
    /// Nothing: every piece is live (or the page is being stored or
    /// invalidated).
    Whole,
    /// Too few pieces left to rebuild it: lost.
    Lost,
    /// A piece is missing and could not be made now (no server to take
    /// it, or the attempt failed): tried again by a later pass.
    Degraded,
    /// The missing piece was made again.
    Repaired,
    /// Stop this period (no bounce page: memory is short); the pass goes
    /// on from this page at the next.
    Stop,
}

pub(crate) struct Pass {
    /// Pages with I/O per recovery period at most.
    per_tick: u32,
    /// Pieces made again after a server's pages were lost.
    pub(crate) repaired: AtomicU64,
    /// Pages short of a piece. When a server's pages are retired, its
    /// lost pieces are added; each repair takes one off; the end of a pass
    /// sets it to what the pass found and could not repair (no other
    /// server up, or none with room).
    pub(crate) degraded: AtomicU64,
    /// Pages with too few pieces left (lost), as of the last finished pass.
    pub(crate) lost: AtomicU64,
    /// Passes finished.
    pub(crate) passes: AtomicU64,
    /// The pass's state: the sum of the servers' slot generations when the
    /// last pass began (a retirement changes it; `started` once the first
    /// period set it), the servers' lost pieces then, whether a pass is
    /// under way or another is due, its next key, and what it found.
    epoch: AtomicU64,
    started: AtomicBool,
    lost_seen: AtomicU64,
    scanning: AtomicBool,
    again: AtomicBool,
    cursor: AtomicU64,
    pass_degraded: AtomicU64,
    pass_lost: AtomicU64,
    pass_repaired: AtomicU64,
}

fn epoch(servers: &[Server]) -> u64 {
    servers.iter().map(|s| s.gen() as u64).sum()
}

impl Pass {
    /// `repair_mib_s`: the rate bound (`repair_mib_s=`).
    pub(crate) fn new(repair_mib_s: u32) -> Pass {
        Pass {
            per_tick: (repair_mib_s * 256 * crate::RECOVERY_PERIOD_MS / 1000).max(1),
            repaired: AtomicU64::new(0),
            degraded: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            passes: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            started: AtomicBool::new(false),
            lost_seen: AtomicU64::new(0),
            scanning: AtomicBool::new(false),
            again: AtomicBool::new(false),
            cursor: AtomicU64::new(0),
            pass_degraded: AtomicU64::new(0),
            pass_lost: AtomicU64::new(0),
            pass_repaired: AtomicU64::new(0),
        }
    }

    /// Every period: if a pass is under way or due, goes on over the keys
    /// of `map` (one entry per redundant page), asking `visit` what each
    /// needed (with I/O: `Degraded` after a try, or `Repaired`; an entry
    /// without I/O answers `Whole`, `Lost`, or `Degraded` through
    /// `untried`). `report(repaired, degraded, lost)` logs a finished
    /// pass that found anything.
    pub(crate) fn run(
        &self,
        servers: &[Server],
        map: &Placement,
        mut visit: impl FnMut(u64, Place, &mut bool) -> Step,
        report: impl Fn(u64, u64, u64),
    ) {
        let now = epoch(servers);
        if !self.scanning.load(Ordering::Relaxed) {
            // Before the first period, the servers as they were at load:
            // nothing to repair.
            let changed = self.epoch.swap(now, Ordering::Relaxed) != now;
            let due = self.started.swap(true, Ordering::Relaxed) && changed;
            if !due && !self.again.swap(false, Ordering::Relaxed) {
                return;
            }
            self.begin(servers);
        }
        let start = rdma::now_ns();
        let (mut seen, mut tried) = (0u32, 0u32);
        let mut key = self.cursor.load(Ordering::Relaxed);
        while seen < SCAN_PER_TICK
            && tried < self.per_tick
            && rdma::now_ns().wrapping_sub(start) < REPAIR_BUDGET_NS
        {
            let (k, p) = match map.next_from(key) {
                Some(e) => e,
                None => {
                    self.end(report);
                    return;
                }
            };
            let mut io = false;
            match visit(k, p, &mut io) {
                Step::Stop => break,
                Step::Whole => {}
                Step::Lost => {
                    self.pass_lost.fetch_add(1, Ordering::Relaxed);
                }
                Step::Degraded => {
                    self.pass_degraded.fetch_add(1, Ordering::Relaxed);
                }
                Step::Repaired => {
                    self.repaired.fetch_add(1, Ordering::Relaxed);
                    self.pass_repaired.fetch_add(1, Ordering::Relaxed);
                    let _ = self
                        .degraded
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1));
                }
            }
            key = k.wrapping_add(1);
            seen += 1;
            if io {
                tried += 1;
            }
        }
        self.cursor.store(key, Ordering::Relaxed);
    }

    /// Starts a pass; the pieces lost since the last one are counted
    /// degraded until the pass repairs them (or finds their pages gone).
    fn begin(&self, servers: &[Server]) {
        let lost: u64 = servers
            .iter()
            .map(|s| s.stats.lost_pages.load(Ordering::Relaxed))
            .sum();
        let new = lost.saturating_sub(self.lost_seen.swap(lost, Ordering::Relaxed));
        self.degraded.fetch_add(new, Ordering::Relaxed);
        self.scanning.store(true, Ordering::Relaxed);
        self.cursor.store(0, Ordering::Relaxed);
        self.pass_degraded.store(0, Ordering::Relaxed);
        self.pass_lost.store(0, Ordering::Relaxed);
        self.pass_repaired.store(0, Ordering::Relaxed);
    }

    /// A pass reached the last page: publishes what it found. Pages it
    /// could not repair (no other server up, or full) are tried again by
    /// the next pass, begun at the next period, or by the next retirement.
    fn end(&self, report: impl Fn(u64, u64, u64)) {
        let degraded = self.pass_degraded.load(Ordering::Relaxed);
        let lost = self.pass_lost.load(Ordering::Relaxed);
        let repaired = self.pass_repaired.load(Ordering::Relaxed);
        self.degraded.store(degraded, Ordering::Relaxed);
        self.lost.store(lost, Ordering::Relaxed);
        self.passes.fetch_add(1, Ordering::Relaxed);
        self.scanning.store(false, Ordering::Relaxed);
        if degraded != 0 || repaired != 0 || lost != 0 {
            report(repaired, degraded, lost);
        }
        // Another pass at the next period while pages wait for a server
        // with room; a clean pass waits for the next retirement.
        if degraded != 0 {
            self.again.store(true, Ordering::Relaxed);
        }
    }

    /// The counters, as files `<prefix>repaired` and so on in `dir`
    /// (dropped before the pass). `names`: the four file names,
    /// NUL-terminated, for repaired, degraded, lost and passes.
    pub(crate) fn publish(&self, dir: &DebugfsDir, names: [&[u8]; 4]) {
        dir.add_u64(names[0], &self.repaired);
        dir.add_u64(names[1], &self.degraded);
        dir.add_u64(names[2], &self.lost);
        dir.add_u64(names[3], &self.passes);
    }
}
