// SPDX-License-Identifier: GPL-2.0
//! rswap_dram: an rswap backend that keeps pages in local DRAM.
//!
//! It is the fastest tier and the reference backend for tests. It holds at
//! most `capacity_mb` MiB of pages; past that it refuses stores, and the
//! next tier or the swap device takes them.
//!
//! With `async_loads=1` (the default) it loads readahead pages
//! asynchronously, like a remote backend: the load is queued and a
//! workqueue fills and completes the page, so the kernel's asynchronous
//! swap-in path can be tested without RDMA. `async_loads=0` makes it a
//! backend without asynchronous loads.

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use kernel::error::code;
use kernel::prelude::*;

#[path = "../rswap/backend.rs"]
mod backend;
#[path = "../rswap/ffi.rs"]
mod ffi;

use backend::{Backend, LoadStack, PendingLoad, Registration, SwapKey};
use ffi::{DebugfsDir, OwnedPage, PageMap, PageRef, SpinLock, GFP_SWAPOUT, PAGE_SIZE};

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
    /// The `async_loads` module parameter.
    fn rswap_dram_async_loads() -> bool;
    fn rswap_dram_wq_create() -> core::ffi::c_int;
    fn rswap_dram_wq_kick();
    fn rswap_dram_wq_destroy();
}

fn capacity_mb_param() -> u64 {
    // SAFETY: reads a module parameter; no arguments, no side effects.
    unsafe { rswap_dram_capacity_mb() }
}

fn async_loads_param() -> bool {
    // SAFETY: as in `capacity_mb_param`.
    unsafe { rswap_dram_async_loads() }
}

/// The workqueue that completes asynchronous loads (rswap_dram_glue.c);
/// its one work item runs [`rswap_dram_complete_pending`].
struct CompletionWq;

impl CompletionWq {
    fn new() -> Result<CompletionWq> {
        // SAFETY: no arguments; creates the glue's workqueue.
        ffi::to_result(unsafe { rswap_dram_wq_create() })?;
        Ok(CompletionWq)
    }

    /// Runs the work soon, unless it is already queued.
    fn kick(&self) {
        // SAFETY: the workqueue exists while `self` does.
        unsafe { rswap_dram_wq_kick() }
    }
}

impl Drop for CompletionWq {
    fn drop(&mut self) {
        // SAFETY: waits for the work, then frees the workqueue created in
        // `new`; nothing kicks it any more (no `CompletionWq` is left).
        unsafe { rswap_dram_wq_destroy() }
    }
}

/// Loads queued for the workqueue at most; past that they complete at once.
const PENDING_MAX: usize = 64;

/// The live backend, for the workqueue's work. Set once registered and
/// cleared, after the workqueue is gone, before it is freed.
static DRAM: AtomicPtr<Dram> = AtomicPtr::new(ptr::null_mut());

/// The work: completes every queued load. Called by the glue's work
/// function.
#[no_mangle]
pub extern "C" fn rswap_dram_complete_pending() {
    let p = DRAM.load(Ordering::Acquire);
    if p.is_null() {
        return;
    }
    // SAFETY: non-null `DRAM` points at the registered backend, which
    // outlives the workqueue (`RswapDram::drop`).
    let dram = unsafe { &*p };
    while let Some((key, load)) = dram.pending.with(|q| q.pop()) {
        Dram::bump(&dram.loads_deferred);
        if Dram::take_one(&dram.fail_async_loads) {
            pr_warn!(
                "fail_async_loads: failing the asynchronous load of swap offset {}\n",
                key.offset()
            );
            load.complete(Err(code::EIO));
            continue;
        }
        dram.complete(key, load);
    }
}

struct Dram {
    /// Asynchronous loads: `None` when `async_loads=0`. Declared first so
    /// that it is dropped first: its drop waits for the work, which uses
    /// the other fields.
    wq: Option<CompletionWq>,
    pages: PageMap,
    capacity_pages: u64,
    used_pages: AtomicU64,
    /// Fault injection for tests (debugfs `fail_loads`, writable): that
    /// many loads fail as if the page were lost, so the kernel's handling of
    /// a lost page (SIGBUS, never stale data) can be checked without a
    /// remote node to kill.
    fail_loads: AtomicU64,
    /// The same for asynchronous loads only (debugfs `fail_async_loads`):
    /// fails a readahead page after its load was started.
    fail_async_loads: AtomicU64,
    pending: Box<SpinLock<LoadStack<PENDING_MAX>>>,
    /// Asynchronous loads completed by the workqueue.
    loads_deferred: AtomicU64,
    /// Asynchronous loads completed at once, the queue being full.
    loads_inline: AtomicU64,
}

impl Dram {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one from a fault-injection count; true if there was one.
    fn take_one(c: &AtomicU64) -> bool {
        c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    fn complete(&self, key: SwapKey, mut load: PendingLoad) {
        let r = self.load(key, load.page());
        load.complete(r);
    }
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
        if Dram::take_one(&self.fail_loads) {
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

    fn loads_async(&self) -> bool {
        self.wq.is_some()
    }

    fn load_async(&self, key: SwapKey, load: PendingLoad) {
        let wq = match &self.wq {
            Some(wq) => wq,
            None => return self.complete(key, load),
        };
        match self.pending.with(|q| q.push((key, load))) {
            None => wq.kick(),
            Some((key, load)) => {
                self.complete(key, load);
                Dram::bump(&self.loads_inline);
            }
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
            wq: if async_loads_param() {
                Some(CompletionWq::new()?)
            } else {
                None
            },
            pages: PageMap::new()?,
            capacity_pages: mb * (1 << 20) / PAGE_SIZE as u64,
            used_pages: AtomicU64::new(0),
            fail_loads: AtomicU64::new(0),
            fail_async_loads: AtomicU64::new(0),
            pending: SpinLock::new(LoadStack::new())?,
            loads_deferred: AtomicU64::new(0),
            loads_inline: AtomicU64::new(0),
        };
        let registration = Registration::new(b"dram\0", module, dram)?;
        let b = registration.backend();
        DRAM.store(b as *const Dram as *mut Dram, Ordering::Release);
        let dir = DebugfsDir::new(b"rswap_dram\0", None);
        dir.add_u64(b"used_pages\0", &b.used_pages);
        dir.add_u64_writable(b"fail_loads\0", &b.fail_loads);
        dir.add_u64_writable(b"fail_async_loads\0", &b.fail_async_loads);
        dir.add_u64(b"loads_deferred\0", &b.loads_deferred);
        dir.add_u64(b"loads_inline\0", &b.loads_inline);
        pr_info!(
            "keeping up to {} MiB of swapped pages in DRAM; readahead loads {}\n",
            mb,
            if b.wq.is_some() {
                "asynchronous"
            } else {
                "synchronous"
            }
        );
        Ok(RswapDram {
            _dir: dir,
            registration,
        })
    }
}

impl Drop for RswapDram {
    fn drop(&mut self) {
        // Swap is off (rswap pinned us while it was on), so no load is
        // queued; the work may still be returning. `Dram::wq`, dropped
        // first with the backend, waits for it.
        let b = self.registration.backend();
        let queued = b.pending.with(|q| q.len());
        if queued != 0 {
            pr_err!("{} loads still queued at unload: this is a bug\n", queued);
        }
        DRAM.store(ptr::null_mut(), Ordering::Release);
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
