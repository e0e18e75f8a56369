// SPDX-License-Identifier: GPL-2.0
//! The thin FFI layer of the rswap modules.
//!
//! Every `unsafe` block of rswap, rswap_dram and the backends lives in this
//! file (and `backend.rs` for the cross-module ABI). The types here own or
//! borrow kernel objects and expose only safe methods. The modules include it
//! with `#[path]`, so each compiles the parts it uses.
#![allow(dead_code)]

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_uint, c_void};
use core::ptr;
use core::sync::atomic::AtomicU64;
use kernel::bindings;
use kernel::error::code;
use kernel::prelude::*;

/// Bytes in a page.
pub(crate) const PAGE_SIZE: usize = 1 << bindings::PAGE_SHIFT;

/// Allocation flags for the swap-out path: no direct reclaim (we are called
/// from reclaim, so that could recurse), no retries and no warnings; a
/// failure only means the page goes to the swap device. `__GFP_NOMEMALLOC`
/// keeps us out of the emergency reserves even when the caller runs with
/// PF_MEMALLOC (kswapd, direct reclaim): those reserves are for the code
/// that frees memory, and a copy of a page we could send to disk is not.
pub(crate) const GFP_SWAPOUT: bindings::gfp_t = bindings::__GFP_NORETRY
    | bindings::__GFP_NOWARN
    | bindings::__GFP_KSWAPD_RECLAIM
    // The binding has only the raw bit (`__GFP_NOMEMALLOC` is a cast
    // macro); gfp_t is that bit pattern.
    | bindings::___GFP_NOMEMALLOC as bindings::gfp_t;

/// Puts `v` on the heap, failing with ENOMEM instead of panicking.
pub(crate) fn try_box<T>(v: T) -> Result<Box<T>> {
    Box::try_new(v).map_err(|_| code::ENOMEM)
}

/// Turns a C return value (0 or -errno) into a `Result`.
pub(crate) fn to_result(ret: core::ffi::c_int) -> Result {
    if ret == 0 {
        Ok(())
    } else {
        Err(Error::from_errno(ret))
    }
}

// PageCompound() is a static inline function: rswap_glue.c wraps it (and
// exports it to the backends, which include this file too).
#[allow(improper_ctypes)]
extern "C" {
    fn rswap_page_compound(page: *mut bindings::page) -> bool;
    fn rswap_page_swap_entry(
        page: *mut bindings::page,
        swap_type: *mut core::ffi::c_uint,
        offset: *mut core::ffi::c_ulong,
    );
}

/// A page the kernel lends us for the length of a frontswap call.
pub(crate) struct PageRef(*mut bindings::page);

impl PageRef {
    /// Wraps a page pointer handed to a frontswap callback.
    ///
    /// # Safety
    ///
    /// `page` must point to a valid, locked page that stays valid and is not
    /// accessed by anyone else while the returned value lives.
    pub(crate) unsafe fn from_raw(page: *mut bindings::page) -> PageRef {
        PageRef(page)
    }

    /// The raw pointer, for passing the page on across the backend ABI.
    pub(crate) fn as_ptr(&self) -> *mut bindings::page {
        self.0
    }

    /// Is this a subpage of a compound (huge) page?
    pub(crate) fn is_compound(&self) -> bool {
        // SAFETY: `self.0` is a valid page (type invariant); the helper
        // only reads its flags.
        unsafe { rswap_page_compound(self.0) }
    }

    /// The swap area and offset of a swap-cache page.
    pub(crate) fn swap_entry(&self) -> (u32, u64) {
        let (mut swap_type, mut offset) = (0, 0);
        // SAFETY: `self.0` is a valid page (type invariant); the helper
        // reads its private word and writes the two locals.
        unsafe { rswap_page_swap_entry(self.0, &mut swap_type, &mut offset) };
        (swap_type, offset as u64)
    }

    /// Runs `f` on the page's bytes.
    pub(crate) fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        // SAFETY: `self.0` is a valid page (type invariant); kmap_local_page
        // maps it for this thread until the matching kunmap_local below.
        let addr = unsafe { bindings::kmap_local_page(self.0) };
        // SAFETY: the mapping covers PAGE_SIZE bytes and nobody writes the
        // page while we hold it (the caller holds the page lock).
        let r = f(unsafe { core::slice::from_raw_parts(addr as *const u8, PAGE_SIZE) });
        // SAFETY: `addr` came from kmap_local_page above, unmapped once.
        unsafe { bindings::kunmap_local(addr) };
        r
    }

    /// Runs `f` on the page's bytes, mutably.
    pub(crate) fn with_bytes_mut<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        // SAFETY: as in `with_bytes`.
        let addr = unsafe { bindings::kmap_local_page(self.0) };
        // SAFETY: as in `with_bytes`; `&mut self` gives us the only access.
        let r = f(unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, PAGE_SIZE) });
        // SAFETY: `addr` came from kmap_local_page above, unmapped once.
        unsafe { bindings::kunmap_local(addr) };
        r
    }
}

/// A page we allocated; freed on drop.
pub(crate) struct OwnedPage(ptr::NonNull<bindings::page>);

// SAFETY: a page is plain memory with no thread affinity.
unsafe impl Send for OwnedPage {}
// SAFETY: `&OwnedPage` only allows reading the page.
unsafe impl Sync for OwnedPage {}

impl OwnedPage {
    /// Allocates one page with `gfp`.
    pub(crate) fn alloc(gfp: bindings::gfp_t) -> Result<OwnedPage> {
        // SAFETY: alloc_pages may be called with any flags; order 0 is one page.
        let page = unsafe { bindings::alloc_pages(gfp, 0) };
        ptr::NonNull::new(page).map(OwnedPage).ok_or(code::ENOMEM)
    }

    /// Borrows the page as a `PageRef` for copying.
    fn borrow(&self) -> PageRef {
        PageRef(self.0.as_ptr())
    }

    /// The page as a `PageRef` that a transfer may write into (the RDMA
    /// read of a page being moved): exclusive, so no one reads it
    /// meanwhile.
    pub(crate) fn borrow_mut(&mut self) -> PageRef {
        PageRef(self.0.as_ptr())
    }

    /// Copies `src` into this page.
    pub(crate) fn copy_from(&mut self, src: &PageRef) {
        let mut dst = self.borrow();
        src.with_bytes(|s| dst.with_bytes_mut(|d| d.copy_from_slice(s)));
    }

    /// Copies this page into `dst`.
    pub(crate) fn copy_to(&self, dst: &mut PageRef) {
        self.borrow()
            .with_bytes(|s| dst.with_bytes_mut(|d| d.copy_from_slice(s)));
    }

    fn into_raw(self) -> *mut bindings::page {
        let p = self.0.as_ptr();
        core::mem::forget(self);
        p
    }

    /// # Safety
    ///
    /// `p` must come from `into_raw` and be given back only once.
    unsafe fn from_raw(p: *mut bindings::page) -> OwnedPage {
        // SAFETY: `p` is non-null: it came from a NonNull in `into_raw`.
        OwnedPage(unsafe { ptr::NonNull::new_unchecked(p) })
    }
}

impl Drop for OwnedPage {
    fn drop(&mut self) {
        // SAFETY: we own this order-0 page, allocated by alloc_pages.
        unsafe { bindings::__free_pages(self.0.as_ptr(), 0) };
    }
}

// xarray entry encoding (include/linux/xarray.h), which is all inline C.
fn xa_is_err(entry: *mut c_void) -> bool {
    let e = entry as usize;
    e & 3 == 2 && e >= ((-(bindings::MAX_ERRNO as isize)) << 2) as usize | 2
}

fn xa_check(entry: *mut c_void) -> Result<*mut c_void> {
    if xa_is_err(entry) {
        Err(Error::from_errno(
            ((entry as isize) >> 2) as core::ffi::c_int,
        ))
    } else {
        Ok(entry)
    }
}

/// XA_PRESENT in xarray.h: find any present entry.
const XA_PRESENT: bindings::xa_mark_t = 8;

/// A kernel xarray. Heap-allocated because it must not move once
/// initialised; the xarray does its own locking.
struct XArray(Box<UnsafeCell<bindings::xarray>>);

// SAFETY: the xarray API takes its internal spinlock for every update and
// RCU for lookups, so it may be used from any thread.
unsafe impl Send for XArray {}
// SAFETY: as for Send.
unsafe impl Sync for XArray {}

impl XArray {
    fn new() -> Result<XArray> {
        // SAFETY: an all-zero xarray is valid storage for xa_init_flags.
        let xa = try_box(UnsafeCell::new(unsafe { core::mem::zeroed() }))?;
        // SAFETY: `xa` is allocated and will not move (it lives in a Box).
        unsafe { bindings::xa_init_flags(xa.get(), 0) };
        Ok(XArray(xa))
    }

    fn ptr(&self) -> *mut bindings::xarray {
        self.0.get()
    }

    fn load(&self, index: u64) -> *mut c_void {
        // SAFETY: the xarray was initialised in `new`.
        unsafe { bindings::xa_load(self.ptr(), index) }
    }

    fn store(&self, index: u64, entry: *mut c_void, gfp: bindings::gfp_t) -> Result<*mut c_void> {
        // SAFETY: the xarray was initialised; entry is a pointer or value
        // entry built by this file.
        xa_check(unsafe { bindings::xa_store(self.ptr(), index, entry, gfp) })
    }

    /// Runs `f` with the xarray's lock held, which every update
    /// (`xa_store`, `xa_erase`) also takes: nothing is removed meanwhile.
    /// `f` must not sleep nor update this xarray.
    fn locked<R>(&self, f: impl FnOnce() -> R) -> R {
        // SAFETY: the xarray was initialised in `new`, which initialised
        // its lock; xa_lock() is spin_lock() on this field.
        unsafe { bindings::spin_lock(ptr::addr_of_mut!((*self.ptr()).xa_lock)) };
        let r = f();
        // SAFETY: taken just above.
        unsafe { bindings::spin_unlock(ptr::addr_of_mut!((*self.ptr()).xa_lock)) };
        r
    }

    fn erase(&self, index: u64) -> *mut c_void {
        // SAFETY: the xarray was initialised in `new`.
        unsafe { bindings::xa_erase(self.ptr(), index) }
    }

    /// Replaces the entry at `index` by `f(entry)`, all under the
    /// xarray's lock (nothing else updates it meanwhile); `f` returning
    /// None leaves it. Returns the entry that was there (null if none, and
    /// then `f` is not called). Replacing a present entry never allocates.
    fn update(
        &self,
        index: u64,
        f: impl FnOnce(*mut c_void) -> Option<*mut c_void>,
    ) -> *mut c_void {
        self.locked(|| {
            let old = self.load(index);
            if old.is_null() {
                return old;
            }
            if let Some(new) = f(old) {
                // SAFETY: the lock is held (as __xa_store requires); the
                // index is present, so no node is allocated (and with
                // GFP_NOWAIT the lock would never be dropped to allocate).
                let r = unsafe {
                    bindings::__xa_store(self.ptr(), index, new, bindings::BINDINGS_GFP_NOWAIT)
                };
                // Cannot fail for a present index; if it ever did, report
                // the entry as absent, so no caller acts as if it changed.
                if xa_is_err(r) {
                    return ptr::null_mut();
                }
            }
            old
        })
    }

    /// Removes the entry at `index` if `keep(entry)` is false, under the
    /// xarray's lock; true if it was removed.
    fn erase_unless(&self, index: u64, keep: impl FnOnce(*mut c_void) -> bool) -> bool {
        self.locked(|| {
            let e = self.load(index);
            if e.is_null() || keep(e) {
                return false;
            }
            // SAFETY: the lock is held, as __xa_erase requires.
            unsafe { bindings::__xa_erase(self.ptr(), index) };
            true
        })
    }

    /// The first present index at or after `from`, with its entry.
    fn find(&self, from: u64) -> Option<(u64, *mut c_void)> {
        let mut index = from;
        // SAFETY: the xarray was initialised; `index` is a valid out pointer.
        let e = unsafe { bindings::xa_find(self.ptr(), &mut index, u64::MAX, XA_PRESENT) };
        if e.is_null() {
            None
        } else {
            Some((index, e))
        }
    }
}

impl Drop for XArray {
    fn drop(&mut self) {
        // SAFETY: frees the xarray's internal nodes; the owners below have
        // already released their entries.
        unsafe { bindings::xa_destroy(self.ptr()) };
    }
}

/// A map from index to an integer below 2^63, as xarray value entries.
pub(crate) struct ValueMap(XArray);

impl ValueMap {
    pub(crate) fn new() -> Result<ValueMap> {
        Ok(ValueMap(XArray::new()?))
    }

    pub(crate) fn insert(&self, index: u64, value: u64, gfp: bindings::gfp_t) -> Result {
        // xa_mk_value(): shift left and set the low bit.
        self.0
            .store(index, ((value << 1) | 1) as *mut c_void, gfp)?;
        Ok(())
    }

    pub(crate) fn get(&self, index: u64) -> Option<u64> {
        let e = self.0.load(index) as u64;
        (e & 1 == 1).then(|| e >> 1)
    }

    pub(crate) fn remove(&self, index: u64) -> Option<u64> {
        let e = self.0.erase(index) as u64;
        (e & 1 == 1).then(|| e >> 1)
    }

    /// Replaces the value at `index` by `f(value)` atomically (None from
    /// `f` leaves it); returns the value that was there.
    pub(crate) fn update(&self, index: u64, f: impl FnOnce(u64) -> Option<u64>) -> Option<u64> {
        let old = self.0.update(index, |e| {
            let v = e as u64;
            if v & 1 == 0 {
                return None;
            }
            f(v >> 1).map(|n| ((n << 1) | 1) as *mut c_void)
        }) as u64;
        (old & 1 == 1).then(|| old >> 1)
    }

    /// Removes the value at `index` if `matches(value)`; true if removed.
    pub(crate) fn remove_if(&self, index: u64, matches: impl FnOnce(u64) -> bool) -> bool {
        self.0
            .erase_unless(index, |e| e as u64 & 1 == 0 || !matches(e as u64 >> 1))
    }

    /// The first entry at or after `from`.
    pub(crate) fn next_from(&self, from: u64) -> Option<(u64, u64)> {
        let (index, e) = self.0.find(from)?;
        let v = e as u64;
        (v & 1 == 1).then(|| (index, v >> 1))
    }

    /// Removes and returns the first entry at or after `from`.
    pub(crate) fn pop_from(&self, from: u64) -> Option<(u64, u64)> {
        let (index, _) = self.0.find(from)?;
        self.remove(index).map(|v| (index, v))
    }
}

/// A map from index to pages we own.
pub(crate) struct PageMap(XArray);

impl PageMap {
    pub(crate) fn new() -> Result<PageMap> {
        Ok(PageMap(XArray::new()?))
    }

    /// Inserts `page` at `index`; gives the page back if it could not be
    /// stored. A page already at `index` is freed.
    pub(crate) fn insert(
        &self,
        index: u64,
        page: OwnedPage,
        gfp: bindings::gfp_t,
    ) -> core::result::Result<(), OwnedPage> {
        let raw = page.into_raw();
        match self.0.store(index, raw as *mut c_void, gfp) {
            Ok(old) => {
                if !old.is_null() {
                    // SAFETY: every entry of a PageMap is an OwnedPage's raw
                    // pointer, and the store above removed it from the map.
                    drop(unsafe { OwnedPage::from_raw(old as *mut bindings::page) });
                }
                Ok(())
            }
            // SAFETY: `raw` was not stored, so we still own it.
            Err(_) => Err(unsafe { OwnedPage::from_raw(raw) }),
        }
    }

    /// Runs `f` on the page at `index`, if any, with the map locked: `f`
    /// must be short, must not sleep (a page copy is fine) and must not
    /// update this map (that would deadlock on the lock).
    ///
    /// The lock matters. On a swap device with SWP_SYNCHRONOUS_IO the
    /// kernel reads a page without the swap cache, so two threads faulting
    /// on one entry can both load it while the first to finish frees the
    /// entry, which removes and frees our copy; without the lock the other
    /// thread would be reading freed memory.
    pub(crate) fn with<R>(&self, index: u64, f: impl FnOnce(&OwnedPage) -> R) -> Option<R> {
        self.0.locked(|| {
            let e = self.0.load(index) as *mut bindings::page;
            if e.is_null() {
                return None;
            }
            // SAFETY: the entry is an OwnedPage's raw pointer; it stays in
            // the map, so alive, while we hold the lock that `remove` and
            // `insert` need. ManuallyDrop keeps us from freeing it.
            let page = core::mem::ManuallyDrop::new(unsafe { OwnedPage::from_raw(e) });
            Some(f(&page))
        })
    }

    pub(crate) fn remove(&self, index: u64) -> Option<OwnedPage> {
        let e = self.0.erase(index) as *mut bindings::page;
        // SAFETY: every entry is an OwnedPage's raw pointer, now out of the map.
        (!e.is_null()).then(|| unsafe { OwnedPage::from_raw(e) })
    }

    /// Removes and frees every page; returns how many there were.
    pub(crate) fn clear(&self) -> u64 {
        let mut n = 0;
        while let Some((index, _)) = self.0.find(0) {
            drop(self.remove(index));
            n += 1;
        }
        n
    }
}

impl Drop for PageMap {
    fn drop(&mut self) {
        self.clear();
    }
}

/// A debugfs directory, removed with everything in it on drop.
pub(crate) struct DebugfsDir(*mut bindings::dentry);

// SAFETY: debugfs dentries may be used and removed from any thread.
unsafe impl Send for DebugfsDir {}
// SAFETY: as for Send; `&DebugfsDir` only creates files.
unsafe impl Sync for DebugfsDir {}

impl DebugfsDir {
    /// Creates `name` (NUL-terminated) under `parent`, or at the debugfs root.
    ///
    /// debugfs failures are not fatal: the files are then simply missing,
    /// as the debugfs API intends.
    pub(crate) fn new(name: &[u8], parent: Option<&DebugfsDir>) -> DebugfsDir {
        assert!(name.last() == Some(&0));
        let parent = parent.map_or(ptr::null_mut(), |p| p.0);
        // SAFETY: `name` is NUL-terminated; `parent` is null or our dentry
        // (possibly an ERR_PTR, which debugfs accepts).
        DebugfsDir(unsafe { bindings::debugfs_create_dir(name.as_ptr() as *const c_char, parent) })
    }

    /// Publishes `counter` read-only as `name` (NUL-terminated).
    ///
    /// The counter must outlive this directory: owners drop the directory
    /// first (see `Counters`).
    pub(crate) fn add_u64(&self, name: &[u8], counter: &AtomicU64) {
        self.add_u64_mode(name, counter, 0o444);
    }

    /// Like `add_u64`, but root may also write the value.
    pub(crate) fn add_u64_writable(&self, name: &[u8], counter: &AtomicU64) {
        self.add_u64_mode(name, counter, 0o644);
    }

    fn add_u64_mode(&self, name: &[u8], counter: &AtomicU64, mode: u16) {
        assert!(name.last() == Some(&0));
        // SAFETY: `name` is NUL-terminated; AtomicU64 has the layout of a
        // u64, which debugfs reads and writes with single aligned 64-bit
        // accesses; the counter outlives the file.
        unsafe {
            bindings::debugfs_create_u64(
                name.as_ptr() as *const c_char,
                mode,
                self.0,
                counter as *const AtomicU64 as *mut u64,
            )
        };
    }
}

impl DebugfsDir {
    /// Publishes counter `i` of `counters` read-only as `name`
    /// (NUL-terminated): reading it sums the CPUs.
    ///
    /// The counters must outlive this directory, as for `add_u64`.
    pub(crate) fn add_percpu<const N: usize>(&self, name: &[u8], counters: &PerCpu<N>, i: usize) {
        assert!(name.last() == Some(&0) && i < N);
        // SAFETY: `name` is NUL-terminated; `i` is within the block, which
        // outlives the file (the owner drops the directory first).
        unsafe {
            rswap_pcpu_debugfs(
                name.as_ptr() as *const c_char,
                self.0 as *mut c_void,
                counters.0,
                i as c_uint,
            )
        }
    }
}

impl Drop for DebugfsDir {
    fn drop(&mut self) {
        // SAFETY: removes the directory we created (and its files); debugfs
        // accepts NULL and ERR_PTR values.
        unsafe { bindings::debugfs_remove(self.0) };
    }
}

// rswap_glue.c (exported by rswap for the backends too).
extern "C" {
    fn rswap_pcpu_alloc(n: c_uint) -> *mut u64;
    fn rswap_pcpu_free(p: *mut u64);
    fn rswap_pcpu_add(p: *mut u64, i: c_uint, v: u64);
    fn rswap_pcpu_sum(p: *mut u64, i: c_uint) -> u64;
    fn rswap_pcpu_zero(p: *mut u64, n: c_uint);
    // The dentry as void: its type's bindings are not FFI-safe all the way
    // down (the lint follows the pointer), and C only passes it on.
    fn rswap_pcpu_debugfs(name: *const c_char, dir: *mut c_void, p: *mut u64, i: c_uint);
}

/// `N` counters kept per CPU: adding to one touches only this CPU's copy,
/// so the store and load paths of several CPUs share no cache line for
/// their statistics; reading sums the copies. Counters are indexed by the
/// owner's constants (an index past `N` panics).
pub(crate) struct PerCpu<const N: usize>(*mut u64);

// SAFETY: the block is per-CPU memory, which any thread may add to (each
// to its own CPU's copy) and sum; freed only on drop.
unsafe impl<const N: usize> Send for PerCpu<N> {}
// SAFETY: as for Send: `&PerCpu` only adds and sums.
unsafe impl<const N: usize> Sync for PerCpu<N> {}

impl<const N: usize> PerCpu<N> {
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: allocates a zeroed block of N u64 per CPU, or fails.
        let p = unsafe { rswap_pcpu_alloc(N as c_uint) };
        if p.is_null() {
            return Err(code::ENOMEM);
        }
        Ok(PerCpu(p))
    }

    /// Adds `v` to counter `i` (wrapping: `sub` adds the complement).
    pub(crate) fn add(&self, i: usize, v: u64) {
        assert!(i < N);
        // SAFETY: a live block of N counters; `i < N`.
        unsafe { rswap_pcpu_add(self.0, i as c_uint, v) }
    }

    pub(crate) fn inc(&self, i: usize) {
        self.add(i, 1);
    }

    pub(crate) fn sub(&self, i: usize, v: u64) {
        self.add(i, v.wrapping_neg());
    }

    /// Counter `i`, summed over the CPUs.
    pub(crate) fn sum(&self, i: usize) -> u64 {
        assert!(i < N);
        // SAFETY: a live block of N counters; `i < N`.
        unsafe { rswap_pcpu_sum(self.0, i as c_uint) }
    }

    /// Sets every counter to 0 (while nobody adds: a backend's slot, before
    /// it is used again).
    pub(crate) fn zero(&self) {
        // SAFETY: a live block of N counters.
        unsafe { rswap_pcpu_zero(self.0, N as c_uint) }
    }
}

impl<const N: usize> Drop for PerCpu<N> {
    fn drop(&mut self) {
        // SAFETY: ours, freed once; no debugfs file reads it any more (its
        // owner drops the directories first).
        unsafe { rswap_pcpu_free(self.0) }
    }
}

/// A counted reference on a module, which keeps it from being unloaded.
pub(crate) struct ModuleRef(*mut bindings::module);

// SAFETY: module references may be dropped from any thread.
unsafe impl Send for ModuleRef {}
// SAFETY: `&ModuleRef` allows nothing.
unsafe impl Sync for ModuleRef {}

impl ModuleRef {
    /// Takes a reference; fails if the module is being unloaded.
    pub(crate) fn get(module: *mut bindings::module) -> Result<ModuleRef> {
        // SAFETY: `module` is a live module's THIS_MODULE (or NULL for
        // built-in code, which try_module_get accepts).
        if unsafe { bindings::try_module_get(module) } {
            Ok(ModuleRef(module))
        } else {
            Err(code::ENODEV)
        }
    }
}

impl Drop for ModuleRef {
    fn drop(&mut self) {
        // SAFETY: we hold one reference, taken in `get`.
        unsafe { bindings::module_put(self.0) };
    }
}

/// A spinlock-protected value. Heap-allocate it: the lock must not move.
pub(crate) struct SpinLock<T> {
    lock: UnsafeCell<bindings::spinlock_t>,
    data: UnsafeCell<T>,
}

// SAFETY: the lock serialises every access to `data`.
unsafe impl<T: Send> Send for SpinLock<T> {}
// SAFETY: as for Send.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub(crate) fn new(data: T) -> Result<Box<SpinLock<T>>> {
        let l = try_box(SpinLock {
            // SAFETY: zeroed storage, initialised just below.
            lock: UnsafeCell::new(unsafe { core::mem::zeroed() }),
            data: UnsafeCell::new(data),
        })?;
        // SAFETY: the lock lives in the Box and does not move from now on.
        unsafe { bindings::spin_lock_init(l.lock.get()) };
        Ok(l)
    }

    /// Runs `f` with the lock held. `f` must not sleep.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: the lock was initialised in `new`.
        unsafe { bindings::spin_lock(self.lock.get()) };
        // SAFETY: we hold the lock, so this is the only reference to `data`.
        let r = f(unsafe { &mut *self.data.get() });
        // SAFETY: we took the lock above.
        unsafe { bindings::spin_unlock(self.lock.get()) };
        r
    }
}

/// Total RAM of this machine, in bytes.
pub(crate) fn total_ram_bytes() -> u64 {
    // SAFETY: si_meminfo fills the zeroed struct we pass.
    let mut info: bindings::sysinfo = unsafe { core::mem::zeroed() };
    // SAFETY: `info` is a valid, writable sysinfo.
    unsafe { bindings::si_meminfo(&mut info) };
    info.totalram as u64 * info.mem_unit as u64
}
