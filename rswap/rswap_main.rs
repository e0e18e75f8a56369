// SPDX-License-Identifier: GPL-2.0
//! rswap: a frontswap backend that places swapped-out pages on pluggable
//! storage backends (local DRAM, remote memory over RDMA, ...).
//!
//! The core owns the frontswap registration, remembers which backend holds
//! each page, and keeps statistics in debugfs under `rswap/`. Backends are
//! separate modules that register through `backend.rs`; they are tried in
//! the order they were loaded, so several can be stacked as tiers. A page no
//! backend accepts goes to the swap device. A page a backend accepted but
//! cannot return fails the fault (SIGBUS) instead of reading a stale slot.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel::error::code;
use kernel::prelude::*;

#[path = "backend.rs"]
mod backend;
#[path = "ffi.rs"]
mod ffi;
mod frontswap;
mod prefetch;
#[path = "trend.rs"]
mod trend;

use backend::{BackendHandle, BackendOps, BackendSlot, PendingLoad, SwapKey};
use ffi::{DebugfsDir, ModuleRef, PageRef, PerCpu, SpinLock, ValueMap, GFP_SWAPOUT, PAGE_SIZE};

module! {
    type: Rswap,
    name: b"rswap",
    author: b"rswap developers",
    description: b"Frontswap backend placing swapped pages on DRAM or remote memory backends",
    license: b"GPL",
}

/// Backends that can be registered at once (tiers).
const MAX_BACKENDS: usize = 4;
/// Swap areas the kernel supports (MAX_SWAPFILES is at most 32).
const MAX_AREAS: usize = 32;
/// Load errors logged one by one before we go quiet.
const LOAD_ERRORS_LOGGED: u64 = 10;

/// Counters, published read-only in debugfs, each kept per CPU (a store
/// or load adds to this CPU's copies only; reading sums them).
struct Stats(PerCpu<{ Stat::COUNT }>);

/// The counters of [`Stats`], in the order of their names.
#[derive(Clone, Copy)]
enum Stat {
    Stores,
    StoreRefused,
    /// Of `Stores`: subpages of a huge page (a THP swapped out whole,
    /// which frontswap hands over one subpage at a time).
    StoresHuge,
    /// Of `StoreRefused`: subpages of a huge page. One refusal sends the
    /// whole THP to the swap device (frontswap stores all or nothing).
    StoreRefusedHuge,
    Loads,
    /// Of `Loads`: readahead pages, which the kernel does not wait for.
    LoadsReadahead,
    /// Of `LoadsReadahead`: handed to a backend that loads them
    /// asynchronously (counted when started; a later failure counts in
    /// `LoadErrors`).
    LoadsAsync,
    LoadErrors,
    Invalidations,
    PagesHeld,
    BytesHeld,
}

// `COUNT` is kept by hand: it must cover the last counter.
const _: () = assert!(Stat::BytesHeld as usize + 1 == Stat::COUNT);

impl Stat {
    const COUNT: usize = 11;
    const NAMES: [&'static [u8]; Stat::COUNT] = [
        b"stores\0",
        b"store_refused\0",
        b"stores_huge\0",
        b"store_refused_huge\0",
        b"loads\0",
        b"loads_readahead\0",
        b"loads_async\0",
        b"load_errors\0",
        b"invalidations\0",
        b"pages_held\0",
        b"bytes_held\0",
    ];
}

impl Stats {
    fn new() -> Result<Stats> {
        Ok(Stats(PerCpu::new()?))
    }

    fn publish(&self, dir: &DebugfsDir) {
        for (i, name) in Stat::NAMES.iter().enumerate() {
            dir.add_percpu(name, &self.0, i);
        }
    }

    fn reset(&self) {
        self.0.zero();
    }

    fn bump(&self, c: Stat) {
        self.0.inc(c as usize);
    }

    fn stored(&self, huge: bool) {
        self.bump(Stat::Stores);
        if huge {
            self.bump(Stat::StoresHuge);
        }
        self.held(1);
    }

    fn refused(&self, huge: bool) {
        self.bump(Stat::StoreRefused);
        if huge {
            self.bump(Stat::StoreRefusedHuge);
        }
    }

    fn held(&self, delta: i64) {
        if delta > 0 {
            self.bump(Stat::PagesHeld);
            self.0.add(Stat::BytesHeld as usize, PAGE_SIZE as u64);
        } else {
            self.0.sub(Stat::PagesHeld as usize, 1);
            self.0.sub(Stat::BytesHeld as usize, PAGE_SIZE as u64);
        }
    }
}

/// One backend position. The slot itself lives as long as the core, so
/// the hot path can use it without locks; only `ops` changes, and only
/// while no swap area is on.
struct Slot {
    ops: BackendSlot,
    stats: Stats,
}

impl Slot {
    fn new() -> Result<Slot> {
        Ok(Slot {
            ops: BackendSlot::default(),
            stats: Stats::new()?,
        })
    }

    fn backend(&self) -> Option<BackendHandle> {
        self.ops.get()
    }
}

/// State changed by swapon/swapoff and backend (un)registration.
#[derive(Default)]
struct Control {
    areas_on: u32,
    /// References on every backend, held while any area is on, so that no
    /// backend with pages in it can be unloaded. (Frontswap itself holds
    /// rswap while an area uses it.)
    pins: Vec<ModuleRef>,
    /// debugfs directories of the backends, by slot.
    dirs: [Option<DebugfsDir>; MAX_BACKENDS],
}

/// The rswap core.
pub(crate) struct Core {
    /// Declared first, so dropped first: the debugfs files go before the
    /// counters they read (the per-CPU blocks are freed when dropped).
    control: Box<SpinLock<Control>>,
    /// After the directories that live under it (in `control`).
    root: DebugfsDir,
    slots: [Slot; MAX_BACKENDS],
    /// Per swap area: which slot holds each offset.
    placement: Vec<ValueMap>,
    area_on: [AtomicBool; MAX_AREAS],
    total: Stats,
    load_errors_logged: AtomicU64,
    prefetch: prefetch::Prefetcher,
}

impl Core {
    fn new() -> Result<Box<Core>> {
        let mut placement = Vec::new();
        for _ in 0..MAX_AREAS {
            placement.try_push(ValueMap::new()?)?;
        }
        let core = ffi::try_box(Core {
            slots: [Slot::new()?, Slot::new()?, Slot::new()?, Slot::new()?],
            placement,
            area_on: Default::default(),
            total: Stats::new()?,
            load_errors_logged: AtomicU64::new(0),
            prefetch: prefetch::Prefetcher::new()?,
            control: SpinLock::new(Control::default())?,
            root: DebugfsDir::new(b"rswap\0", None),
        })?;
        core.total.publish(&core.root);
        core.prefetch.publish(&core.root);
        Ok(core)
    }

    fn area(&self, swap_type: u32) -> Option<&ValueMap> {
        let t = swap_type as usize;
        (t < MAX_AREAS && self.area_on[t].load(Ordering::Acquire)).then(|| &self.placement[t])
    }

    /// swapon of `swap_type`: start taking its pages.
    pub(crate) fn init_area(&self, swap_type: u32) {
        let t = swap_type as usize;
        if t >= MAX_AREAS {
            pr_err!("swap area {} out of range, not used\n", swap_type);
            return;
        }
        // Allocate outside the spinlock: the pins are only moved in there.
        let mut pins = Vec::new();
        if pins.try_reserve_exact(MAX_BACKENDS).is_err() {
            pr_err!(
                "swap area {}: out of memory, rswap stays off for it\n",
                swap_type
            );
            return;
        }
        let pinned = self.control.with(|c| {
            if c.areas_on == 0 {
                // First area on: pin every backend.
                let owners = self
                    .slots
                    .iter()
                    .filter_map(|s| s.backend().map(|b| b.owner()));
                for m in owners {
                    match ModuleRef::get(m) {
                        // Within capacity (one per slot): no allocation.
                        Ok(r) => {
                            if pins.try_push(r).is_err() {
                                return false;
                            }
                        }
                        Err(_) => return false,
                    }
                }
                c.pins = core::mem::take(&mut pins);
            }
            c.areas_on += 1;
            true
        });
        // Refs taken before a failure are released here, outside the lock.
        drop(pins);
        if !pinned {
            pr_err!(
                "swap area {}: cannot pin modules, rswap stays off for it\n",
                swap_type
            );
            return;
        }
        self.area_on[t].store(true, Ordering::Release);
        pr_info!("swap area {} on: rswap takes its pages\n", swap_type);
    }

    /// swapoff of `swap_type`: every page has been read back; drop leftovers.
    pub(crate) fn invalidate_area(&self, swap_type: u32) {
        let t = swap_type as usize;
        if t >= MAX_AREAS || !self.area_on[t].swap(false, Ordering::AcqRel) {
            return;
        }
        let mut dropped = 0u64;
        let mut next = 0;
        while let Some((offset, slot)) = self.placement[t].pop_from(next) {
            self.release(swap_type, offset, slot as usize);
            dropped += 1;
            next = offset + 1;
        }
        let pins = self.control.with(|c| {
            c.areas_on -= 1;
            if c.areas_on == 0 {
                core::mem::take(&mut c.pins)
            } else {
                Vec::new()
            }
        });
        drop(pins);
        pr_info!(
            "swap area {} off: {} leftover pages dropped\n",
            swap_type,
            dropped
        );
    }

    /// Tells the backend in `slot` to forget a page and updates the counters.
    fn release(&self, swap_type: u32, offset: u64, slot: usize) {
        let s = match self.slots.get(slot) {
            Some(s) => s,
            None => return,
        };
        if let Some(b) = s.backend() {
            b.invalidate(SwapKey::new(swap_type, offset));
        }
        s.stats.bump(Stat::Invalidations);
        s.stats.held(-1);
        self.total.bump(Stat::Invalidations);
        self.total.held(-1);
    }

    pub(crate) fn store(&self, swap_type: u32, offset: u64, page: &PageRef) -> Result {
        let map = match self.area(swap_type) {
            Some(m) => m,
            None => {
                self.total.refused(page.is_compound());
                return Err(code::ENODEV);
            }
        };
        let key = SwapKey::new(swap_type, offset);
        let huge = page.is_compound();
        for (i, s) in self.slots.iter().enumerate() {
            let b = match s.backend() {
                Some(b) => b,
                None => continue,
            };
            if b.store(key, page).is_err() {
                s.stats.refused(huge);
                continue;
            }
            if map.insert(offset, i as u64, GFP_SWAPOUT).is_err() {
                // No memory to remember the placement: give the page back.
                b.invalidate(key);
                s.stats.refused(huge);
                break;
            }
            s.stats.stored(huge);
            self.total.stored(huge);
            return Ok(());
        }
        self.total.refused(huge);
        Err(code::ENOSPC)
    }

    /// The slot holding a page, if any.
    fn holder(&self, swap_type: u32, offset: u64) -> Option<&Slot> {
        let slot = self.area(swap_type).and_then(|m| m.get(offset))?;
        self.slots.get(slot as usize)
    }

    pub(crate) fn load(&self, swap_type: u32, offset: u64, page: &mut PageRef) -> Result {
        let s = self.holder(swap_type, offset);
        let result = match s.and_then(|s| s.backend()) {
            Some(b) => b.load(SwapKey::new(swap_type, offset), page),
            None => Err(code::EIO),
        };
        match (result, s) {
            (Ok(()), Some(s)) => {
                s.stats.bump(Stat::Loads);
                self.total.bump(Stat::Loads);
                Ok(())
            }
            (r, s) => {
                if let Some(s) = s {
                    s.stats.bump(Stat::LoadErrors);
                }
                self.load_failed(swap_type, offset, r.err().map_or(0, |e| e.to_errno()));
                // frontswap accepted this page: it must not read the stale
                // device slot, which -EIO tells it.
                Err(code::EIO)
            }
        }
    }

    /// A readahead page: the backend may fill it after we return, and then
    /// completes it through `rswap_load_done`. An error means nothing was
    /// started (the page is lost: -EIO, as for `load`).
    pub(crate) fn load_async(&self, swap_type: u32, offset: u64, page: PageRef) -> Result {
        let s = self.holder(swap_type, offset);
        let (s, b) = match s.and_then(|s| Some((s, s.backend()?))) {
            Some(sb) => sb,
            None => {
                if let Some(s) = s {
                    s.stats.bump(Stat::LoadErrors);
                }
                self.load_failed(swap_type, offset, code::EIO.to_errno());
                return Err(code::EIO);
            }
        };
        for stats in [&s.stats, &self.total] {
            stats.bump(Stat::Loads);
            stats.bump(Stat::LoadsReadahead);
            if b.loads_async() {
                stats.bump(Stat::LoadsAsync);
            }
        }
        // SAFETY: frontswap handed us this locked page to fill and leaves
        // it to us from here on: the backend completes it, once.
        let load = unsafe { PendingLoad::new(page) };
        b.load_async(SwapKey::new(swap_type, offset), load);
        Ok(())
    }

    /// A fault in address space `mm` must read `offset`: what to read
    /// ahead with it, or None for the kernel's readahead (`prefetch=`).
    pub(crate) fn readahead(
        &self,
        swap_type: u32,
        offset: u64,
        mm: usize,
        window: &mut [u64],
    ) -> Option<usize> {
        self.area(swap_type)?;
        self.prefetch.readahead(mm, offset, window)
    }

    /// A fault in `mm` found `offset` in memory.
    pub(crate) fn swapin_hit(&self, swap_type: u32, offset: u64, mm: usize, readahead: bool) {
        if self.area(swap_type).is_some() {
            self.prefetch.hit(mm, offset, readahead);
        }
    }

    /// An asynchronous load failed after it was started: the page is lost.
    pub(crate) fn async_load_failed(&self, page: &PageRef, err: i32) {
        let (swap_type, offset) = page.swap_entry();
        if let Some(s) = self.holder(swap_type, offset) {
            s.stats.bump(Stat::LoadErrors);
        }
        self.load_failed(swap_type, offset, err);
    }

    fn load_failed(&self, swap_type: u32, offset: u64, err: i32) {
        self.total.bump(Stat::LoadErrors);
        if self.load_errors_logged.fetch_add(1, Ordering::Relaxed) < LOAD_ERRORS_LOGGED {
            pr_err!(
                "load of swap area {} offset {} failed (error {}): page lost\n",
                swap_type,
                offset,
                err
            );
        }
    }

    pub(crate) fn invalidate_page(&self, swap_type: u32, offset: u64) {
        if let Some(slot) = self.area(swap_type).and_then(|m| m.remove(offset)) {
            self.release(swap_type, offset, slot as usize);
        }
    }

    pub(crate) fn register_backend(&self, handle: BackendHandle) -> Result {
        let name = handle.name();
        // debugfs may sleep: make the directory before taking the lock.
        let mut dir_name = [0u8; 32];
        dir_name[..name.len()].copy_from_slice(name);
        let dir = DebugfsDir::new(&dir_name[..name.len() + 1], Some(&self.root));
        let r = self.control.with(|c| {
            if c.areas_on > 0 {
                return Err(code::EBUSY);
            }
            if self
                .slots
                .iter()
                .any(|s| s.backend().map_or(false, |b| b.name() == name))
            {
                return Err(code::EEXIST);
            }
            let i = self
                .slots
                .iter()
                .position(|s| s.backend().is_none())
                .ok_or(code::ENOSPC)?;
            self.slots[i].stats.reset();
            self.slots[i].ops.set(handle);
            Ok(i)
        });
        let name = core::str::from_utf8(name).unwrap_or("?");
        match r {
            Ok(i) => {
                self.slots[i].stats.publish(&dir);
                let old = self.control.with(|c| c.dirs[i].replace(dir));
                drop(old);
                pr_info!("backend {} registered as tier {}\n", name, i);
                Ok(())
            }
            Err(e) => {
                match e.to_errno() {
                    x if x == code::EBUSY.to_errno() => pr_err!(
                        "backend {} refused: swap is on; load backends before swapon\n",
                        name
                    ),
                    x if x == code::EEXIST.to_errno() => {
                        pr_err!(
                            "backend {} refused: a backend of that name is registered\n",
                            name
                        )
                    }
                    _ => pr_err!(
                        "backend {} refused: all {} tiers taken\n",
                        name,
                        MAX_BACKENDS
                    ),
                }
                Err(e)
            }
        }
    }

    pub(crate) fn unregister_backend(&self, ops: *const BackendOps) {
        let dir = self.control.with(|c| {
            let i = self.slots.iter().position(|s| s.ops.holds(ops))?;
            // Backends are pinned while any area is on, so none is on here
            // and no call into this backend is in flight.
            if c.areas_on > 0 {
                pr_err!("backend unregistering while swap is on\n");
            }
            self.slots[i].ops.clear();
            Some(c.dirs[i].take())
        });
        if dir.is_some() {
            pr_info!("backend unregistered\n");
        }
    }
}

struct Rswap {
    _registration: frontswap::Registration,
}

impl kernel::Module for Rswap {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let core = Core::new()?;
        let registration = frontswap::Registration::new(core, module).map_err(|e| {
            pr_err!(
                "cannot register with frontswap ({}): another backend (zswap.enabled=1?) owns it, or swap is already on; load rswap before swapon\n",
                e.to_errno()
            );
            e
        })?;
        pr_info!("registered as the frontswap backend\n");
        Ok(Rswap {
            _registration: registration,
        })
    }
}
