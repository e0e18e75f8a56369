// SPDX-License-Identifier: GPL-2.0
//! What is read ahead of a swap fault: `prefetch=kernel|trend|off`.
//!
//! - `kernel` (default) leaves it to the kernel's readahead (VMA-based or
//!   cluster, as `/sys/kernel/mm/swap/vma_ra_enabled` says).
//! - `trend` reads ahead along the trend of the faulting process's recent
//!   faults ([`crate::trend`]), and nothing when there is none.
//! - `off` reads the faulting page alone.
//!
//! The parameter is writable at run time: each fault reads it once, and
//! every mode is safe at any moment (a window only names pages to read).
//!
//! The history is kept per process (per `mm`), not per cgroup or for the
//! whole machine as Leap did: a trend is a property of one access
//! stream, and two processes faulting at once interleave theirs, which
//! hides both. Threads of one process share it, as they share the
//! address space. The kernel names the faulting `mm` (swapoff's faults
//! count for the process whose pages it reads back). Histories live in a
//! fixed table of [`SLOTS`] indexed by a hash of the `mm` pointer, which
//! is never dereferenced: a process
//! whose slot another took over starts a new history (it loses its trend
//! for a few faults, never correctness). No allocation on the fault path.
//!
//! Counters (debugfs, rswap's root): `swapin_misses` (faults that had to
//! read their page), `swapin_hits` (faults that found it in memory),
//! `prefetch_hits` (of those, pages read ahead and used for the first
//! time), `trend_found`/`trend_none` (misses in `trend` mode with and
//! without a trend). Pages read ahead from rswap's backends are
//! `loads_readahead`. Accuracy is prefetch_hits / loads_readahead;
//! coverage is prefetch_hits / (prefetch_hits + swapin_misses).

use crate::ffi::{DebugfsDir, PerCpu, SpinLock};
use crate::trend::History;
use kernel::prelude::*;

/// Histories kept at once: 2^SLOT_BITS.
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;

extern "C" {
    /// The `prefetch` module parameter: 0 kernel, 1 trend, 2 off
    /// (rswap_glue.c parses the names).
    fn rswap_param_prefetch() -> core::ffi::c_int;
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Kernel,
    Trend,
    Off,
}

fn mode() -> Mode {
    // SAFETY: reads an int module parameter.
    match unsafe { rswap_param_prefetch() } {
        1 => Mode::Trend,
        2 => Mode::Off,
        _ => Mode::Kernel,
    }
}

/// One process's history, and whose it is.
struct Slot {
    mm: usize,
    history: History,
}

/// The fault counters, kept per CPU (bumped on every swap fault).
const SWAPIN_MISSES: usize = 0;
const SWAPIN_HITS: usize = 1;
const PREFETCH_HITS: usize = 2;
const TREND_FOUND: usize = 3;
const TREND_NONE: usize = 4;
const COUNTER_NAMES: [&[u8]; 5] = [
    b"swapin_misses\0",
    b"swapin_hits\0",
    b"prefetch_hits\0",
    b"trend_found\0",
    b"trend_none\0",
];

pub(crate) struct Prefetcher {
    slots: Vec<Box<SpinLock<Slot>>>,
    counters: PerCpu<5>,
}

impl Prefetcher {
    pub(crate) fn new() -> Result<Prefetcher> {
        let mut slots = Vec::new();
        slots.try_reserve_exact(SLOTS)?;
        for _ in 0..SLOTS {
            slots.try_push(SpinLock::new(Slot {
                mm: 0,
                history: History::new(),
            })?)?;
        }
        Ok(Prefetcher {
            slots,
            counters: PerCpu::new()?,
        })
    }

    pub(crate) fn publish(&self, dir: &DebugfsDir) {
        for (i, name) in COUNTER_NAMES.iter().enumerate() {
            dir.add_percpu(name, &self.counters, i);
        }
    }

    /// Runs `f` on the history of address space `mm` (the faulting
    /// process's, a number never dereferenced), a fresh one if its slot
    /// held another's.
    fn with_history<R>(&self, mm: usize, f: impl FnOnce(&mut History) -> R) -> R {
        // Fibonacci hashing: the top bits of the product.
        let h = (mm as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let i = (h >> (64 - SLOT_BITS)) as usize;
        self.slots[i].with(|s| {
            if s.mm != mm {
                s.mm = mm;
                s.history = History::new();
            }
            f(&mut s.history)
        })
    }

    /// A fault that must read `offset`: the offsets to read ahead, as
    /// `Some(n)` filled in `window`, or None for the kernel's readahead.
    pub(crate) fn readahead(&self, mm: usize, offset: u64, window: &mut [u64]) -> Option<usize> {
        self.counters.inc(SWAPIN_MISSES);
        match mode() {
            Mode::Kernel => None,
            Mode::Off => Some(0),
            Mode::Trend => {
                let n = self.with_history(mm, |h| h.miss(offset, window));
                self.counters
                    .inc(if n > 0 { TREND_FOUND } else { TREND_NONE });
                Some(n)
            }
        }
    }

    /// A fault that found `offset` in memory; `readahead`: read ahead and
    /// used for the first time.
    pub(crate) fn hit(&self, mm: usize, offset: u64, readahead: bool) {
        self.counters.inc(SWAPIN_HITS);
        if readahead {
            self.counters.inc(PREFETCH_HITS);
        }
        if mode() == Mode::Trend {
            self.with_history(mm, |h| h.hit(offset, readahead));
        }
    }
}
