// SPDX-License-Identifier: GPL-2.0
//! Per-server counters and their debugfs directory,
//! `rswap_rdma/server<i>-<ip>-<port>/`.

use crate::ffi::DebugfsDir;
use crate::rdma::Endpoint;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

/// Latency histogram in power-of-two microsecond buckets, with p50/p99
/// refreshed every 64 samples for debugfs.
#[derive(Default)]
pub(crate) struct Latency {
    buckets: [AtomicU64; 24],
    samples: AtomicU64,
    p50_us: AtomicU64,
    p99_us: AtomicU64,
}

impl Latency {
    pub(crate) fn record(&self, ns: u64) {
        let us = ns / 1000;
        let b = (64 - us.leading_zeros() as usize).min(self.buckets.len() - 1);
        self.buckets[b].fetch_add(1, Ordering::Relaxed);
        if self.samples.fetch_add(1, Ordering::Relaxed) % 64 == 63 {
            self.p50_us.store(self.percentile(50), Ordering::Relaxed);
            self.p99_us.store(self.percentile(99), Ordering::Relaxed);
        }
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
    ] {
        dir.add_u64(name, c);
    }
    Some(dir)
}
