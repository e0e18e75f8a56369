// SPDX-License-Identifier: GPL-2.0
//! Per-server counters and their debugfs directory,
//! `rswap_rdma/server<i>-<ip>-<port>/`.

use crate::ffi::DebugfsDir;
use crate::rdma::Endpoint;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

/// Latency histogram in power-of-two microsecond buckets, with p50/p99
/// refreshed every 64 samples for debugfs, and a moving average that
/// placement reads.
#[derive(Default)]
pub(crate) struct Latency {
    buckets: [AtomicU64; 24],
    samples: AtomicU64,
    p50_us: AtomicU64,
    p99_us: AtomicU64,
    /// Exponentially weighted moving average, in ns: each sample weighs
    /// 1/8, so 16 samples see 88% of a step change (with a few hundred
    /// requests a second, well under a second). 0 before the first sample.
    ewma_ns: AtomicU64,
    /// The same in us, for debugfs.
    ewma_us: AtomicU64,
}

impl Latency {
    pub(crate) fn record(&self, ns: u64) {
        let avg = match self.ewma_ns.load(Ordering::Relaxed) {
            0 => {
                self.ewma_ns.store(ns.max(1), Ordering::Relaxed);
                ns.max(1)
            }
            _ => fold(&self.ewma_ns, ns, 8),
        };
        self.ewma_us.store(avg / 1000, Ordering::Relaxed);
        let us = ns / 1000;
        let b = (64 - us.leading_zeros() as usize).min(self.buckets.len() - 1);
        self.buckets[b].fetch_add(1, Ordering::Relaxed);
        if self.samples.fetch_add(1, Ordering::Relaxed) % 64 == 63 {
            self.p50_us.store(self.percentile(50), Ordering::Relaxed);
            self.p99_us.store(self.percentile(99), Ordering::Relaxed);
        }
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

    /// Upper bound (us) of the bucket holding the p-th percentile.
    fn percentile(&self, p: u64) -> u64 {
        let counts: [u64; 24] = core::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed));
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
}

/// A server's counters. Kept in a Box by the server so their addresses,
/// which debugfs holds, do not change when the server moves.
#[derive(Default)]
pub(crate) struct ServerStats {
    pub(crate) pages: AtomicU64,
    pub(crate) reads: AtomicU64,
    /// Of `reads`: pages read ahead in batches on a readahead queue, the
    /// batches, and the pages of failed batches loaded again one by one.
    pub(crate) reads_ahead: AtomicU64,
    pub(crate) read_batches: AtomicU64,
    pub(crate) readahead_retried: AtomicU64,
    pub(crate) writes: AtomicU64,
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
    pub(crate) read_lat: Latency,
    pub(crate) write_lat: Latency,
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
    /// Reads of faulting pages, which sample `read_lat` (not reads ahead,
    /// whose batches do not): whether the latency figure is fresh.
    pub(crate) timed_reads: AtomicU64,
    last_timed_reads: AtomicU64,
    last_writes: AtomicU64,
    read_idle_ticks: AtomicU64,
    write_idle_ticks: AtomicU64,
    /// Stores the placement policy sent here.
    pub(crate) stores: AtomicU64,
    /// The weighted policy's share of new pages for this server, in parts
    /// per million (placement.rs), and the same in permille for debugfs.
    pub(crate) share_ppm: AtomicU64,
    pub(crate) share_permille: AtomicU64,
    /// Tiered policy (tier.rs): stores of hot pages placed here, pages
    /// promoted here, pages demoted from here, and bytes copied here by
    /// either.
    pub(crate) stores_hot: AtomicU64,
    pub(crate) promotions: AtomicU64,
    pub(crate) demotions: AtomicU64,
    pub(crate) moved_bytes: AtomicU64,
    /// Pages moved away from here (their reads are not loads).
    pub(crate) moved_out: AtomicU64,
    /// Probe reads of an idle server (not loads; see [`ServerStats::wants_probe`]),
    /// at the last tick, and ticks since one.
    pub(crate) probes: AtomicU64,
    last_probes: AtomicU64,
    probe_idle_ticks: AtomicU64,
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
    /// second at 100 ms).
    pub(crate) fn tick(&self, now_ns: u64, page_size: u64) {
        let mut pages = 0;
        // Every page read counts for the bandwidth; only the timed reads
        // say whether the read latency is fresh (read_idle_ticks).
        let reads = self.reads.load(Ordering::Relaxed);
        pages += reads.saturating_sub(self.last_reads.swap(reads, Ordering::Relaxed));
        for (count, last, idle, traffic) in [
            (
                &self.timed_reads,
                &self.last_timed_reads,
                &self.read_idle_ticks,
                false,
            ),
            (
                &self.writes,
                &self.last_writes,
                &self.write_idle_ticks,
                true,
            ),
            (
                &self.probes,
                &self.last_probes,
                &self.probe_idle_ticks,
                false,
            ),
        ] {
            let n = count.load(Ordering::Relaxed);
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
        (b"reads\0", &st.reads),
        (b"reads_ahead\0", &st.reads_ahead),
        (b"read_batches\0", &st.read_batches),
        (b"readahead_retried\0", &st.readahead_retried),
        (b"writes\0", &st.writes),
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
        (b"stores\0", &st.stores),
        (b"share_permille\0", &st.share_permille),
        (b"stores_hot\0", &st.stores_hot),
        (b"promotions\0", &st.promotions),
        (b"demotions\0", &st.demotions),
        (b"moved_bytes\0", &st.moved_bytes),
        (b"moved_out\0", &st.moved_out),
        (b"probes\0", &st.probes),
    ] {
        dir.add_u64(name, c);
    }
    Some(dir)
}
