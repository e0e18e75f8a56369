// SPDX-License-Identifier: GPL-2.0
//! rswap_dram: an rswap backend that keeps pages in local DRAM.
//!
//! It is the fastest tier and the reference backend for tests. It holds at
//! most `capacity_mb` MiB of pages; past that it refuses stores, and the
//! next tier or the swap device takes them.

use core::sync::atomic::{AtomicU64, Ordering};
use kernel::error::code;
use kernel::prelude::*;

#[path = "../rswap/backend.rs"]
mod backend;
#[path = "../rswap/ffi.rs"]
mod ffi;

use backend::{Backend, Registration, SwapKey};
use ffi::{DebugfsDir, OwnedPage, PageMap, PageRef, GFP_SWAPOUT, PAGE_SIZE};

module! {
    type: RswapDram,
    name: b"rswap_dram",
    author: b"rswap developers",
    description: b"rswap backend keeping swapped pages in local DRAM",
    license: b"GPL",
}

extern "C" {
    /// The `capacity_mb` module parameter (rswap_dram_glue.c).
    fn rswap_dram_capacity_mb() -> core::ffi::c_ulong;
}

fn capacity_mb_param() -> u64 {
    // SAFETY: reads a module parameter; no arguments, no side effects.
    unsafe { rswap_dram_capacity_mb() }
}

struct Dram {
    pages: PageMap,
    capacity_pages: u64,
    used_pages: AtomicU64,
    /// Fault injection for tests (debugfs `fail_loads`, writable): that
    /// many loads fail as if the page were lost, so the kernel's handling of
    /// a lost page (SIGBUS, never stale data) can be checked without a
    /// remote node to kill.
    fail_loads: AtomicU64,
}

impl Backend for Dram {
    fn store(&self, key: SwapKey, page: &PageRef) -> Result {
        // Reserve room first so that concurrent stores never exceed capacity.
        if self.used_pages.fetch_add(1, Ordering::AcqRel) >= self.capacity_pages {
            self.used_pages.fetch_sub(1, Ordering::AcqRel);
            return Err(code::ENOSPC);
        }
        let stored = OwnedPage::alloc(GFP_SWAPOUT).and_then(|mut copy| {
            copy.copy_from(page);
            self.pages
                .insert(key.raw(), copy, GFP_SWAPOUT)
                .map_err(|_| code::ENOMEM)
        });
        if stored.is_err() {
            self.used_pages.fetch_sub(1, Ordering::AcqRel);
        }
        stored
    }

    fn load(&self, key: SwapKey, page: &mut PageRef) -> Result {
        let inject = self
            .fail_loads
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if inject.is_ok() {
            pr_warn!(
                "fail_loads: failing the load of swap offset {}\n",
                key.offset()
            );
            return Err(code::EIO);
        }
        self.pages
            .with(key.raw(), |copy| copy.copy_to(page))
            .ok_or(code::EIO)
    }

    fn invalidate(&self, key: SwapKey) {
        if self.pages.remove(key.raw()).is_some() {
            self.used_pages.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

struct RswapDram {
    /// Extra counters; declared first so it is dropped before `registration`
    /// frees what they point at.
    _dir: DebugfsDir,
    registration: Registration<Dram>,
}

impl kernel::Module for RswapDram {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let mb = capacity_mb_param();
        let ram_mb = ffi::total_ram_bytes() >> 20;
        if mb == 0 {
            pr_err!("capacity_mb=0: the pool needs at least 1 MiB\n");
            return Err(code::EINVAL);
        }
        if mb > ram_mb {
            pr_err!(
                "capacity_mb={} exceeds this machine's RAM ({} MiB)\n",
                mb,
                ram_mb
            );
            return Err(code::EINVAL);
        }
        let dram = Dram {
            pages: PageMap::new()?,
            capacity_pages: mb * (1 << 20) / PAGE_SIZE as u64,
            used_pages: AtomicU64::new(0),
            fail_loads: AtomicU64::new(0),
        };
        let registration = Registration::new(b"dram\0", module, dram)?;
        let dir = DebugfsDir::new(b"rswap_dram\0", None);
        dir.add_u64(b"used_pages\0", &registration.backend().used_pages);
        dir.add_u64_writable(b"fail_loads\0", &registration.backend().fail_loads);
        pr_info!("keeping up to {} MiB of swapped pages in DRAM\n", mb);
        Ok(RswapDram {
            _dir: dir,
            registration,
        })
    }
}

impl Drop for RswapDram {
    fn drop(&mut self) {
        let left = self
            .registration
            .backend()
            .used_pages
            .load(Ordering::Acquire);
        if left != 0 {
            pr_warn!("{} pages still held at unload, freeing them\n", left);
        }
    }
}
