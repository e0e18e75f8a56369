// SPDX-License-Identifier: GPL-2.0
//! Trend prefetching (`prefetch=trend`): which swap offsets to read ahead
//! of a fault, found by a majority vote over the recent faults' offset
//! deltas, after Leap (ATC'20) and its `find_trend`.
//!
//! Pure logic on plain integers, with no kernel dependency: the rswap
//! module compiles it in (prefetch.rs keeps one [`History`] per process),
//! and the host crate `tests/kernel-logic` runs its unit tests with `cargo test`.
//!
//! - Every swap fault of the process is recorded, whether it had to read
//!   the page (a miss) or found it in memory (a hit): the trend is that of
//!   the access stream, and prefetching must not hide it.
//! - On a miss, the majority delta is looked for over the last 4, 8, 16
//!   and 32 deltas, the shortest window first, so a new trend is followed
//!   quickly and an old one still found through noise. A delta is the
//!   majority of a window if it is more than half of it (Boyer-Moore
//!   vote, then a count). No majority, or a majority of 0, is no trend:
//!   nothing is read ahead.
//! - The window follows the trend: offset + d, offset + 2d, ... for
//!   `depth` pages. The depth is set at each miss from the hits since the
//!   previous one, as the kernel sizes its own readahead: with no hit 2
//!   pages (a probe), else the power of two at or above hits + 2 (at least
//!   4), at most [`MAX_DEPTH`], and never below half the previous depth,
//!   so one miss does not undo a long run.

/// Deltas kept per process.
pub(crate) const HISTORY: usize = 32;
/// The most pages read ahead of one fault.
pub(crate) const MAX_DEPTH: usize = 32;
/// The shortest window the vote looks at.
const MIN_WINDOW: usize = 4;

/// One process's recent swap faults.
#[derive(Clone, Copy)]
pub(crate) struct History {
    deltas: [i64; HISTORY],
    /// Where the next delta goes.
    head: usize,
    /// Deltas recorded, at most HISTORY.
    len: usize,
    /// The last fault's offset, once there was one.
    last: Option<u64>,
    /// Pages read ahead at the last miss.
    depth: usize,
    /// Faults on pages read ahead since the last miss.
    hits: usize,
}

impl History {
    pub(crate) const fn new() -> History {
        History {
            deltas: [0; HISTORY],
            head: 0,
            len: 0,
            last: None,
            depth: 0,
            hits: 0,
        }
    }

    fn record(&mut self, offset: u64) {
        if let Some(last) = self.last {
            self.deltas[self.head] = offset.wrapping_sub(last) as i64;
            self.head = (self.head + 1) % HISTORY;
            self.len = (self.len + 1).min(HISTORY);
        }
        self.last = Some(offset);
    }

    /// The `i`-th most recent delta (0: the newest).
    fn recent(&self, i: usize) -> i64 {
        self.deltas[(self.head + HISTORY - 1 - i) % HISTORY]
    }

    /// The majority delta of the last `size` deltas, if one has more than
    /// half of them.
    fn majority(&self, size: usize) -> Option<i64> {
        let mut candidate = self.recent(0);
        let mut votes = 0usize;
        for i in 0..size {
            let d = self.recent(i);
            if votes == 0 {
                candidate = d;
                votes = 1;
            } else if d == candidate {
                votes += 1;
            } else {
                votes -= 1;
            }
        }
        let count = (0..size).filter(|&i| self.recent(i) == candidate).count();
        (count > size / 2).then_some(candidate)
    }

    /// The current trend: the majority delta of the shortest window that
    /// has one, if it is not 0.
    pub(crate) fn trend(&self) -> Option<i64> {
        let mut size = MIN_WINDOW;
        while size <= self.len {
            if let Some(d) = self.majority(size) {
                return (d != 0).then_some(d);
            }
            size *= 2;
        }
        None
    }

    /// A fault that found its page in memory; `readahead`: the page was
    /// read ahead and this is its first use.
    pub(crate) fn hit(&mut self, offset: u64, readahead: bool) {
        self.record(offset);
        if readahead {
            self.hits += 1;
        }
    }

    /// A fault that must read its page. Fills `window` with the offsets to
    /// read ahead and returns how many: none without a trend.
    pub(crate) fn miss(&mut self, offset: u64, window: &mut [u64]) -> usize {
        self.record(offset);
        self.depth = next_depth(self.depth, self.hits);
        self.hits = 0;
        let delta = match self.trend() {
            Some(d) => d,
            None => return 0,
        };
        let mut n = 0;
        let mut next = offset;
        while n < self.depth.min(window.len()) {
            next = match next.checked_add_signed_(delta) {
                Some(o) => o,
                None => break,
            };
            window[n] = next;
            n += 1;
        }
        n
    }
}

/// `u64::checked_add_signed` is newer than the kernel's Rust (1.63).
trait AddSigned: Sized {
    fn checked_add_signed_(self, d: i64) -> Option<Self>;
}

impl AddSigned for u64 {
    fn checked_add_signed_(self, d: i64) -> Option<u64> {
        if d >= 0 {
            self.checked_add(d as u64)
        } else {
            self.checked_sub(d.unsigned_abs())
        }
    }
}

/// The depth for the next window, from the previous one and the hits it
/// had (see the module documentation).
fn next_depth(prev: usize, hits: usize) -> usize {
    let pages = if hits == 0 {
        2
    } else {
        (hits + 2).next_power_of_two().max(4)
    };
    pages.min(MAX_DEPTH).max(prev / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Faults on `offsets` in order, each a miss unless it was read ahead
    /// by an earlier miss (then a hit); returns (misses, pages read ahead,
    /// hits).
    fn run(offsets: &[u64]) -> (usize, usize, usize) {
        let mut h = History::new();
        let mut cached = std::collections::HashSet::new();
        let (mut misses, mut prefetched, mut hits) = (0, 0, 0);
        for &o in offsets {
            if cached.remove(&o) {
                h.hit(o, true);
                hits += 1;
            } else {
                misses += 1;
                let mut w = [0u64; MAX_DEPTH];
                let n = h.miss(o, &mut w);
                prefetched += n;
                cached.extend(w[..n].iter().copied());
            }
        }
        (misses, prefetched, hits)
    }

    fn feed(h: &mut History, offsets: impl IntoIterator<Item = u64>) {
        for o in offsets {
            h.hit(o, false);
        }
    }

    #[test]
    fn no_history_no_trend() {
        let mut h = History::new();
        assert_eq!(h.trend(), None);
        let mut w = [0; MAX_DEPTH];
        assert_eq!(h.miss(100, &mut w), 0);
        feed(&mut h, [101, 102]);
        assert_eq!(h.trend(), None, "fewer deltas than the shortest window");
    }

    #[test]
    fn sequential_is_a_trend_of_one() {
        let mut h = History::new();
        feed(&mut h, 1000..1005);
        assert_eq!(h.trend(), Some(1));
        let mut w = [0; MAX_DEPTH];
        let n = h.miss(1005, &mut w);
        assert_eq!(&w[..n], &[1006, 1007]);
    }

    #[test]
    fn strides_and_backwards() {
        for stride in [3i64, 7, 10, -1, -5] {
            let mut h = History::new();
            let start = 10_000u64;
            feed(&mut h, (0..6).map(|i| (start as i64 + i * stride) as u64));
            assert_eq!(h.trend(), Some(stride), "stride {}", stride);
            let mut w = [0; MAX_DEPTH];
            let o = (start as i64 + 6 * stride) as u64;
            let n = h.miss(o, &mut w);
            assert_eq!(n, 2);
            assert_eq!(w[0], (o as i64 + stride) as u64);
            assert_eq!(w[1], (o as i64 + 2 * stride) as u64);
        }
    }

    #[test]
    fn majority_through_noise() {
        let mut h = History::new();
        // Stride 4 with every third delta off the trend: 2/3 of deltas.
        let mut o = 5000u64;
        for i in 0..30 {
            o += if i % 3 == 2 { 917 } else { 4 };
            h.hit(o, false);
        }
        assert_eq!(h.trend(), Some(4));
    }

    #[test]
    fn random_has_no_trend() {
        let mut h = History::new();
        let mut x = 12345u64;
        let mut found = 0;
        for _ in 0..1000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut w = [0; MAX_DEPTH];
            if h.miss((x >> 40) % 100_000 + 1, &mut w) > 0 {
                found += 1;
            }
        }
        assert!(found < 10, "random offsets gave {} trends", found);
    }

    #[test]
    fn repeated_page_is_no_trend() {
        let mut h = History::new();
        feed(&mut h, [7, 7, 7, 7, 7, 7]);
        assert_eq!(h.trend(), None);
    }

    #[test]
    fn trend_change_is_followed() {
        let mut h = History::new();
        feed(&mut h, (0..33).map(|i| 1000 + i));
        assert_eq!(h.trend(), Some(1));
        // A new stride of 5: the shortest window sees it after 3 deltas.
        let mut o = 1032u64;
        for _ in 0..3 {
            o += 5;
            h.hit(o, false);
        }
        assert_eq!(h.trend(), Some(5));
    }

    #[test]
    fn depth_grows_with_hits_and_shrinks_slowly() {
        assert_eq!(next_depth(0, 0), 2);
        assert_eq!(next_depth(2, 2), 4);
        assert_eq!(next_depth(4, 4), 8);
        assert_eq!(next_depth(16, 16), 32);
        assert_eq!(next_depth(32, 40), MAX_DEPTH);
        assert_eq!(next_depth(32, 0), 16, "one miss halves it at most");
        assert_eq!(next_depth(16, 0), 8);
    }

    #[test]
    fn strided_walk_is_mostly_hits() {
        for stride in [1u64, 3, 5, 10] {
            let offsets: Vec<u64> = (0..4000).map(|i| 100 + i * stride).collect();
            let (misses, prefetched, hits) = run(&offsets);
            assert_eq!(misses + hits, offsets.len());
            // Depth reaches 32: about one miss per 33 faults after the start.
            assert!(
                misses < offsets.len() / 20,
                "stride {}: {} misses",
                stride,
                misses
            );
            // Accuracy: read-ahead pages that were used.
            assert!(
                hits * 100 / prefetched >= 95,
                "stride {}: {} of {}",
                stride,
                hits,
                prefetched
            );
        }
    }

    #[test]
    fn window_stops_at_offset_zero() {
        let mut h = History::new();
        feed(&mut h, [20, 15, 10, 5, 4, 3, 2]);
        let mut w = [0; MAX_DEPTH];
        // Trend -1 found in the last 4 deltas; from 1 the window cannot go
        // below 0.
        let n = h.miss(1, &mut w);
        assert_eq!(&w[..n], &[0]);
    }

    #[test]
    fn window_never_exceeds_the_buffer() {
        let mut h = History::new();
        let offsets: Vec<u64> = (1..200).collect();
        for &o in &offsets {
            h.hit(o, true);
            let mut w = [0; 3];
            assert!(h.miss(o + 1000, &mut w) <= 3);
        }
    }
}
