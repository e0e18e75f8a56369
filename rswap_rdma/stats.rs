// SPDX-License-Identifier: GPL-2.0
//! Per-server counters and their debugfs directory,
//! `rswap_rdma/server<i>-<ip>-<port>/`.
//!
//! The pure statistics (request counts and the latency histograms) are
//! per-CPU ([`Count`], [`ServerStats::counts`]): a store or a load adds to
//! its own CPU's copy, and only debugfs and the 100 ms tick sum them. What
//! placement and recovery read on the hot path (pages held, the latency
//! and occupancy averages, requests queued) stays in shared atomics
//! ([`Gauges`]).

use crate::ffi::{DebugfsDir, PerCpu};
use crate::rdma::Endpoint;
use core::fmt::Write;
use core::ops::Deref;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::prelude::*;

/// The per-CPU counters of a server, by index into [`ServerStats::counts`].
#[derive(Clone, Copy)]
pub(crate) enum Count {
    /// Pages read (faulting loads and reads ahead).
    Reads,
    /// Of `Reads`: reads of faulting pages, which sample the read latency
    /// (not reads ahead, whose batches do not): whether the latency
    /// figure is fresh.
    TimedReads,
    /// Of `Reads`: pages read ahead in batches on a readahead queue, and
    /// the batches.
    ReadsAhead,
    ReadBatches,
    Writes,
    /// Stores the placement policy sent here, and of them the hot pages
    /// (tiered policy, tier.rs).
    Stores,
    StoresHot,
    /// Probe reads of an idle server (not loads; see
    /// [`ServerStats::wants_probe`]).
    Probes,
}

const COUNTS: usize = Count::Probes as usize + 1;
/// Latency histogram buckets: power-of-two microseconds.
const BUCKETS: usize = 24;
/// Where each histogram's buckets start in the per-CPU block.
const READ_HIST: usize = COUNTS;
const WRITE_HIST: usize = COUNTS + BUCKETS;
const PER_CPU: usize = COUNTS + 2 * BUCKETS;

/// A latency: a moving average that placement reads, and p50/p99 for
/// debugfs, refreshed every tick from a per-CPU histogram in power-of-two
/// microsecond buckets (in [`ServerStats::counts`], from `hist` on).
pub(crate) struct Latency {
    hist: usize,
    p50_us: AtomicU64,
    p99_us: AtomicU64,
    /// Exponentially weighted moving average, in ns: each sample weighs
    /// 1/8, so 16 samples see 88% of a step change (with a few hundred
    /// requests a second, well under a second). 0 before the first sample.
    ewma_ns: AtomicU64,
    /// The same in us, for debugfs (refreshed every tick).
    ewma_us: AtomicU64,
}

impl Latency {
    fn new(hist: usize) -> Self {
        Latency {
            hist,
            p50_us: AtomicU64::new(0),
            p99_us: AtomicU64::new(0),
            ewma_ns: AtomicU64::new(0),
            ewma_us: AtomicU64::new(0),
        }
    }

    fn record(&self, counts: &PerCpu<PER_CPU>, ns: u64) {
        match self.ewma_ns.load(Ordering::Relaxed) {
            0 => self.ewma_ns.store(ns.max(1), Ordering::Relaxed),
            _ => {
                fold(&self.ewma_ns, ns, 8);
            }
        }
        let us = ns / 1000;
        let b = (64 - us.leading_zeros() as usize).min(BUCKETS - 1);
        counts.inc(self.hist + b);
    }

    /// Drops the moving average: the next sample starts it afresh. For a
    /// server back from an outage, whose old figure (and the requests
    /// that timed out at its end) says nothing about it now.
    pub(crate) fn forget(&self) {
        self.ewma_ns.store(0, Ordering::Relaxed);
        self.ewma_us.store(0, Ordering::Relaxed);
    }

    /// The moving average in ns; None before the first sample.
    pub(crate) fn ewma_ns(&self) -> Option<u64> {
        Some(self.ewma_ns.load(Ordering::Relaxed)).filter(|&n| n > 0)
    }

    /// Refreshes the debugfs figures: p50, p99 and the average in us.
    fn refresh(&self, counts: &PerCpu<PER_CPU>) {
        let c: [u64; BUCKETS] = core::array::from_fn(|i| counts.sum(self.hist + i));
        self.p50_us.store(percentile(&c, 50), Ordering::Relaxed);
        self.p99_us.store(percentile(&c, 99), Ordering::Relaxed);
        self.ewma_us.store(
            self.ewma_ns.load(Ordering::Relaxed) / 1000,
            Ordering::Relaxed,
        );
    }
}

/// Upper bound (us) of the bucket of histogram `counts` holding the p-th
/// percentile; 0 without samples.
fn percentile(counts: &[u64], p: u64) -> u64 {
    let total: u64 = counts.iter().sum();
    let want = (total * p + 99) / 100;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= want && total > 0 {
            return 1 << i;
        }
    }
    0
}

/// A server's counters. Kept in a Box by the server so their addresses,
/// which debugfs holds, do not change when the server moves.
pub(crate) struct ServerStats {
    gauges: Gauges,
    /// [`Count`]s and the two latency histograms, per CPU.
    counts: PerCpu<PER_CPU>,
    pub(crate) read_lat: Latency,
    pub(crate) write_lat: Latency,
}

/// A server's shared figures, read through [`ServerStats`] (`Deref`).
#[derive(Default)]
pub(crate) struct Gauges {
    pub(crate) pages: AtomicU64,
    /// Pages of failed read-ahead batches loaded again one by one.
    pub(crate) readahead_retried: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) up: AtomicU64,
    pub(crate) free_pages: AtomicU64,
    pub(crate) capacity_pages: AtomicU64,
    /// Times the server went from up to reconnecting.
    pub(crate) outages: AtomicU64,
    /// Queues rebuilt.
    pub(crate) reconnects: AtomicU64,
    /// Loads that found no working queue at first and waited or retried,
    /// and those of them that then succeeded.
    pub(crate) loads_waited: AtomicU64,
    pub(crate) loads_recovered: AtomicU64,
    /// Pages declared lost (the server unreachable past the bound, or
    /// back with a new session).
    pub(crate) lost_pages: AtomicU64,
    /// Slots set aside after a failed write (a packet of it may still be
    /// on the wire) until the generation is retired.
    pub(crate) quarantined: AtomicU64,
    /// Requests waiting for or on one of its queues now, and its moving
    /// average as seen by each arriving request, x100.
    pub(crate) queued: AtomicU64,
    pub(crate) occupancy_x100: AtomicU64,
    /// Bytes read and written per second, a moving average over about a
    /// second (see [`ServerStats::tick`]).
    pub(crate) bw_kib_s: AtomicU64,
    /// When the last tick was (ns).
    last_ns: AtomicU64,
    /// Reads and writes at the last tick, and for how many ticks each has
    /// not moved: an average without fresh samples is not trusted.
    last_reads: AtomicU64,
    last_timed_reads: AtomicU64,
    last_writes: AtomicU64,
    read_idle_ticks: AtomicU64,
    write_idle_ticks: AtomicU64,
    /// The weighted policy's share of new pages for this server, in parts
    /// per million (placement.rs), and the same in permille for debugfs.
    pub(crate) share_ppm: AtomicU64,
    pub(crate) share_permille: AtomicU64,
    /// Tiered policy (tier.rs): pages promoted here, pages demoted from
    /// here, and bytes copied here by either.
    pub(crate) promotions: AtomicU64,
    pub(crate) demotions: AtomicU64,
    pub(crate) moved_bytes: AtomicU64,
    /// Pages moved away from here (their reads are not loads).
    pub(crate) moved_out: AtomicU64,
    /// Probe reads at the last tick, and ticks since one.
    last_probes: AtomicU64,
    probe_idle_ticks: AtomicU64,
}

impl ServerStats {
    pub(crate) fn new() -> Result<Self> {
        Ok(ServerStats {
            gauges: Gauges::default(),
            counts: PerCpu::new()?,
            read_lat: Latency::new(READ_HIST),
            write_lat: Latency::new(WRITE_HIST),
        })
    }

    /// Adds `n` to counter `c` (this CPU's copy).
    pub(crate) fn count(&self, c: Count, n: u64) {
        self.counts.add(c as usize, n);
    }

    /// Counter `c`, summed over the CPUs.
    pub(crate) fn total(&self, c: Count) -> u64 {
        self.counts.sum(c as usize)
    }

    /// A read's (or probe's) latency, `ns`.
    pub(crate) fn read_took(&self, ns: u64) {
        self.read_lat.record(&self.counts, ns);
    }

    /// A write's latency, `ns`.
    pub(crate) fn write_took(&self, ns: u64) {
        self.write_lat.record(&self.counts, ns);
    }
}

impl Deref for ServerStats {
    type Target = Gauges;

    fn deref(&self) -> &Gauges {
        &self.gauges
    }
}

/// Folds `sample` into the moving average in `avg` with weight 1/`k`;
/// returns the new average. Unlocked: a racing update may be lost, which
/// an average can afford.
fn fold(avg: &AtomicU64, sample: u64, k: u64) -> u64 {
    let old = avg.load(Ordering::Relaxed);
    let new = old - old / k + sample / k;
    avg.store(new, Ordering::Relaxed);
    new
}

/// Ticks without a new sample after which a latency average is stale (2 s
/// at the 100 ms period).
const STALE_TICKS: u64 = 20;
/// Ticks without a read (and without a probe) after which a server is
/// probed while the node swaps to others: 0.5 s at the 100 ms period.
const PROBE_TICKS: u64 = 5;

impl ServerStats {
    /// The read and write latency averages, each None if it has no
    /// samples or none in the last two seconds (a stale one would keep
    /// a server looking slow, or fast, after its link changed).
    pub(crate) fn fresh_latency(&self) -> (Option<u64>, Option<u64>) {
        let recent = |idle: &AtomicU64| idle.load(Ordering::Relaxed) < STALE_TICKS;
        (
            self.read_lat
                .ewma_ns()
                .filter(|_| recent(&self.read_idle_ticks) || recent(&self.probe_idle_ticks)),
            self.write_lat
                .ewma_ns()
                .filter(|_| recent(&self.write_idle_ticks)),
        )
    }

    /// Whether it had reads or writes (not probes) in the last two seconds.
    pub(crate) fn active(&self) -> bool {
        self.read_idle_ticks.load(Ordering::Relaxed) < STALE_TICKS
            || self.write_idle_ticks.load(Ordering::Relaxed) < STALE_TICKS
    }

    /// Whether its read latency should be measured with a probe: no read
    /// nor probe for [`PROBE_TICKS`]. A server no policy sends pages to
    /// (the tiered policy's slow tier while the fast one has room, a
    /// server a busy spell made look slow) would otherwise keep the
    /// figure of its last requests for good, and never be chosen again.
    pub(crate) fn wants_probe(&self) -> bool {
        self.read_idle_ticks.load(Ordering::Relaxed) >= PROBE_TICKS
            && self.probe_idle_ticks.load(Ordering::Relaxed) >= PROBE_TICKS
    }
}

/// A request on a server's queues, counted from arrival (before it waits
/// for a queue) to completion.
pub(crate) struct Busy<'a>(&'a ServerStats);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ServerStats {
    /// Counts a request from now until the guard goes, and samples the
    /// occupancy it found (itself included) into the moving average.
    pub(crate) fn busy(&self) -> Busy<'_> {
        let n = self.queued.fetch_add(1, Ordering::Relaxed) + 1;
        fold(&self.occupancy_x100, n * 100, 16);
        Busy(self)
    }

    /// Called every recovery period: folds the pages moved since the last
    /// call into the bandwidth average (weight 1/8 per call, so about a
    /// second at 100 ms), and refreshes the latency figures of debugfs.
    pub(crate) fn tick(&self, now_ns: u64, page_size: u64) {
        self.read_lat.refresh(&self.counts);
        self.write_lat.refresh(&self.counts);
        let mut pages = 0;
        // Every page read counts for the bandwidth; only the timed reads
        // say whether the read latency is fresh (read_idle_ticks).
        let reads = self.total(Count::Reads);
        pages += reads.saturating_sub(self.last_reads.swap(reads, Ordering::Relaxed));
        for (count, last, idle, traffic) in [
            (
                Count::TimedReads,
                &self.last_timed_reads,
                &self.read_idle_ticks,
                false,
            ),
            (
                Count::Writes,
                &self.last_writes,
                &self.write_idle_ticks,
                true,
            ),
            (
                Count::Probes,
                &self.last_probes,
                &self.probe_idle_ticks,
                false,
            ),
        ] {
            let n = self.total(count);
            let before = last.swap(n, Ordering::Relaxed);
            if before == n {
                idle.fetch_add(1, Ordering::Relaxed);
            } else {
                idle.store(0, Ordering::Relaxed);
            }
            if traffic {
                pages += n.saturating_sub(before);
            }
        }
        let then = self.last_ns.swap(now_ns, Ordering::Relaxed);
        let dt = now_ns.saturating_sub(then);
        if then == 0 || dt == 0 {
            return;
        }
        fold(
            &self.bw_kib_s,
            pages * (page_size / 1024) * 1_000_000_000 / dt,
            8,
        );
    }
}

/// A small formatter into a fixed buffer, for debugfs names.
struct Name {
    buf: [u8; 48],
    len: usize,
}

impl Write for Name {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let b = s.as_bytes();
        if self.len + b.len() >= self.buf.len() {
            return Err(core::fmt::Error);
        }
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
        Ok(())
    }
}

/// Publishes server `i`'s counters under `root`. The counters must outlive
/// the directory: its owner drops the directory first. Like every debugfs
/// failure, a name that does not fit (it always does) only means no files.
pub(crate) fn publish(
    root: &DebugfsDir,
    i: usize,
    ep: Endpoint,
    st: &ServerStats,
) -> Option<DebugfsDir> {
    let mut n = Name {
        buf: [0; 48],
        len: 0,
    };
    let [a, b, c, d] = ep.ip;
    write!(n, "server{}-{}.{}.{}.{}-{}", i, a, b, c, d, ep.port).ok()?;
    let dir = DebugfsDir::new(&n.buf[..n.len + 1], Some(root));
    for (name, c) in [
        (&b"pages\0"[..], &st.pages),
        (b"readahead_retried\0", &st.readahead_retried),
        (b"errors\0", &st.errors),
        (b"up\0", &st.up),
        (b"free_pages\0", &st.free_pages),
        (b"capacity_pages\0", &st.capacity_pages),
        (b"outages\0", &st.outages),
        (b"reconnects\0", &st.reconnects),
        (b"loads_waited\0", &st.loads_waited),
        (b"loads_recovered\0", &st.loads_recovered),
        (b"lost_pages\0", &st.lost_pages),
        (b"quarantined\0", &st.quarantined),
        (b"read_lat_p50_us\0", &st.read_lat.p50_us),
        (b"read_lat_p99_us\0", &st.read_lat.p99_us),
        (b"write_lat_p50_us\0", &st.write_lat.p50_us),
        (b"write_lat_p99_us\0", &st.write_lat.p99_us),
        (b"read_lat_ewma_us\0", &st.read_lat.ewma_us),
        (b"write_lat_ewma_us\0", &st.write_lat.ewma_us),
        (b"queued\0", &st.queued),
        (b"occupancy_x100\0", &st.occupancy_x100),
        (b"bw_kib_s\0", &st.bw_kib_s),
        (b"share_permille\0", &st.share_permille),
        (b"promotions\0", &st.promotions),
        (b"demotions\0", &st.demotions),
        (b"moved_bytes\0", &st.moved_bytes),
        (b"moved_out\0", &st.moved_out),
    ] {
        dir.add_u64(name, c);
    }
    for (name, c) in [
        (&b"reads\0"[..], Count::Reads),
        (b"reads_ahead\0", Count::ReadsAhead),
        (b"read_batches\0", Count::ReadBatches),
        (b"writes\0", Count::Writes),
        (b"stores\0", Count::Stores),
        (b"stores_hot\0", Count::StoresHot),
        (b"probes\0", Count::Probes),
    ] {
        dir.add_percpu(name, &st.counts, c as usize);
    }
    Some(dir)
}
