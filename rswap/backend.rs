// SPDX-License-Identifier: GPL-2.0
//! The interface between the rswap core and its storage backends.
//!
//! A backend (rswap_dram, rswap_rdma, ...) is a separate module. It
//! implements [`Backend`] and registers through [`Registration`]; rswap
//! calls it through a small C-ABI table of function pointers
//! ([`BackendOps`]), so the two sides need not be built together. Any number
//! of backends (up to the core's limit) may be registered at once: the core
//! tries them in registration order, so the first one loaded is the fastest
//! tier. Backends are registered before swapon and stay until swapoff.
#![allow(dead_code)]

use crate::ffi::{try_box, PageRef};
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::bindings;
use kernel::prelude::*;

/// Identifies one swapped-out page: swap type and offset in that area.
///
/// As an index (`raw`), the offset is in the high bits and the type in
/// the low [`TYPE_BITS`]: backends key their xarrays with it, and an
/// xarray is as deep as its largest index needs (6 bits per level). With
/// the type on top (bit 56, as before) every lookup walked 10 levels; now
/// a 1 GiB swap area (2^18 pages) needs 4, and 1 TiB of swap 6.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct SwapKey(u64);

/// Bits for the swap type: the kernel has at most 32 swap areas
/// (MAX_SWAPFILES_SHIFT is 5).
const TYPE_BITS: u32 = 5;

impl SwapKey {
    pub(crate) fn new(swap_type: u32, offset: u64) -> SwapKey {
        SwapKey((offset << TYPE_BITS) | (swap_type as u64 & ((1 << TYPE_BITS) - 1)))
    }

    /// A single integer, usable as an index.
    pub(crate) fn raw(self) -> u64 {
        self.0
    }

    pub(crate) fn offset(self) -> u64 {
        self.0 >> TYPE_BITS
    }
}

/// What a storage backend implements.
///
/// Calls come from any CPU in process context, concurrently, but never two
/// at once for the same key.
pub(crate) trait Backend: Send + Sync {
    /// Keeps a copy of `page` under `key`. An error refuses the page, which
    /// then goes to the next tier or the swap device; nothing is lost. Must
    /// not enter direct reclaim (we are called from reclaim).
    fn store(&self, key: SwapKey, page: &PageRef) -> Result;

    /// Fills `page` from the copy under `key`. An error means the page is
    /// lost: the faulting task gets SIGBUS rather than stale data.
    fn load(&self, key: SwapKey, page: &mut PageRef) -> Result;

    /// Forgets the copy under `key`. Must not sleep: the swap code calls it
    /// with a spinlock held.
    fn invalidate(&self, key: SwapKey);

    /// Whether [`Backend::load_async`] starts loads without waiting for
    /// them. Asked once, at registration. If not, rswap reads readahead
    /// pages with [`Backend::load`] like any other.
    fn loads_async(&self) -> bool {
        false
    }

    /// Starts filling the page of `load` from the copy under `key` and may
    /// return before it is filled: the kernel asks this for readahead
    /// pages, which nobody waits for yet. The backend ends the load with
    /// [`PendingLoad::complete`], from any context; until then the page
    /// stays locked, and a task that faults on it waits.
    fn load_async(&self, key: SwapKey, mut load: PendingLoad) {
        let r = self.load(key, load.page());
        load.complete(r);
    }
}

/// A load under way: a locked swap-cache page that nobody else touches
/// until it is completed. It is completed exactly once: by
/// [`PendingLoad::complete`], or, if it is dropped, as a failure (the page
/// is lost and the task gets SIGBUS), so that no page stays locked for
/// good.
pub(crate) struct PendingLoad(PageRef);

// SAFETY: the page is ours until it is unlocked, which may happen in any
// context (the kernel ends device reads from interrupts alike).
unsafe impl Send for PendingLoad {}

impl PendingLoad {
    /// # Safety
    ///
    /// `page` is a locked page handed to a frontswap `load_async` call,
    /// not yet completed, and this is the only handle on it.
    pub(crate) unsafe fn new(page: PageRef) -> PendingLoad {
        PendingLoad(page)
    }

    /// # Safety
    ///
    /// As for [`PendingLoad::new`], for a raw page pointer.
    unsafe fn from_raw(page: *mut bindings::page) -> PendingLoad {
        // SAFETY: per this function's contract.
        PendingLoad(unsafe { PageRef::from_raw(page) })
    }

    /// The page to fill.
    pub(crate) fn page(&mut self) -> &mut PageRef {
        &mut self.0
    }

    /// The page, shared (to hand a batch of them to the device).
    pub(crate) fn page_ref(&self) -> &PageRef {
        &self.0
    }

    /// Ends the load: the page is uptodate if `result` is Ok, and lost
    /// otherwise. Unlocks the page, which wakes any task waiting for it.
    pub(crate) fn complete(self, result: Result) {
        let page = self.0.as_ptr();
        core::mem::forget(self);
        let err = match result {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        };
        // SAFETY: `page` is a pending load's page, completed once: `self`
        // is consumed and its Drop skipped.
        unsafe { rswap_load_done(page, err) };
    }
}

impl Drop for PendingLoad {
    fn drop(&mut self) {
        // SAFETY: as in `complete`: a dropped load is completed here once.
        unsafe { rswap_load_done(self.0.as_ptr(), -(bindings::EIO as c_int)) };
    }
}

/// Asynchronous loads a backend accepted and has not started: a stack in
/// a fixed array of `N`, filled under a spinlock, where we must not
/// allocate.
pub(crate) struct LoadStack<const N: usize> {
    items: [Option<(SwapKey, PendingLoad)>; N],
    len: usize,
}

impl<const N: usize> LoadStack<N> {
    pub(crate) fn new() -> LoadStack<N> {
        const NONE: Option<(SwapKey, PendingLoad)> = None;
        LoadStack {
            items: [NONE; N],
            len: 0,
        }
    }

    /// Keeps a load, or hands it back if the stack is full.
    pub(crate) fn push(&mut self, item: (SwapKey, PendingLoad)) -> Option<(SwapKey, PendingLoad)> {
        if self.len == N {
            return Some(item);
        }
        self.items[self.len] = Some(item);
        self.len += 1;
        None
    }

    pub(crate) fn pop(&mut self) -> Option<(SwapKey, PendingLoad)> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        self.items[self.len].take()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// The C-ABI table a backend hands to rswap. Layout shared by all modules.
#[repr(C)]
pub(crate) struct BackendOps {
    /// NUL-terminated name, e.g. `b"dram\0"`; names the debugfs directory.
    pub(crate) name: *const u8,
    /// The backend's module, pinned by rswap while swap is on.
    pub(crate) owner: *mut bindings::module,
    ctx: *const c_void,
    store: unsafe extern "C" fn(*const c_void, u64, *mut bindings::page) -> c_int,
    load: unsafe extern "C" fn(*const c_void, u64, *mut bindings::page) -> c_int,
    invalidate: unsafe extern "C" fn(*const c_void, u64),
    /// Set if the backend loads asynchronously; takes the page over.
    load_async: Option<unsafe extern "C" fn(*const c_void, u64, *mut bindings::page)>,
}

fn errno(r: Result) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

unsafe extern "C" fn store_trampoline<B: Backend>(
    ctx: *const c_void,
    key: u64,
    page: *mut bindings::page,
) -> c_int {
    // SAFETY: `ctx` is the `B` a live `Registration<B>` registered; rswap
    // calls only between registration and unregistration.
    let b = unsafe { &*(ctx as *const B) };
    // SAFETY: rswap passes the locked page frontswap handed it.
    let page = unsafe { PageRef::from_raw(page) };
    errno(b.store(SwapKey(key), &page))
}

unsafe extern "C" fn load_trampoline<B: Backend>(
    ctx: *const c_void,
    key: u64,
    page: *mut bindings::page,
) -> c_int {
    // SAFETY: as in `store_trampoline`.
    let b = unsafe { &*(ctx as *const B) };
    // SAFETY: as in `store_trampoline`; the page is ours to fill.
    let mut page = unsafe { PageRef::from_raw(page) };
    errno(b.load(SwapKey(key), &mut page))
}

unsafe extern "C" fn load_async_trampoline<B: Backend>(
    ctx: *const c_void,
    key: u64,
    page: *mut bindings::page,
) {
    // SAFETY: as in `store_trampoline`.
    let b = unsafe { &*(ctx as *const B) };
    // SAFETY: rswap hands over a locked page of a started load, once.
    let load = unsafe { PendingLoad::from_raw(page) };
    b.load_async(SwapKey(key), load)
}

unsafe extern "C" fn invalidate_trampoline<B: Backend>(ctx: *const c_void, key: u64) {
    // SAFETY: as in `store_trampoline`.
    let b = unsafe { &*(ctx as *const B) };
    b.invalidate(SwapKey(key))
}

/// The core's view of a registered backend.
#[derive(Clone, Copy)]
pub(crate) struct BackendHandle(*const BackendOps);

// SAFETY: a registered backend is `Send + Sync` (the `Backend` bound).
unsafe impl Send for BackendHandle {}
// SAFETY: as for Send.
unsafe impl Sync for BackendHandle {}

impl BackendHandle {
    /// # Safety
    ///
    /// `ops` must be a table registered through `rswap_register_backend` and
    /// the handle must not be used after its `rswap_unregister_backend`.
    pub(crate) unsafe fn from_raw(ops: *const BackendOps) -> BackendHandle {
        BackendHandle(ops)
    }

    fn ops(&self) -> &BackendOps {
        // SAFETY: valid while registered (constructor contract).
        unsafe { &*self.0 }
    }

    /// The name without its NUL.
    pub(crate) fn name(&self) -> &[u8] {
        let p = self.ops().name;
        let mut n = 0;
        // SAFETY: `name` is NUL-terminated and static (BackendOps contract);
        // we read up to and excluding the NUL, at most 31 bytes.
        while n < 31 && unsafe { *p.add(n) } != 0 {
            n += 1;
        }
        // SAFETY: the `n` bytes read above are valid.
        unsafe { core::slice::from_raw_parts(p, n) }
    }

    pub(crate) fn owner(&self) -> *mut bindings::module {
        self.ops().owner
    }

    pub(crate) fn store(&self, key: SwapKey, page: &PageRef) -> Result {
        let o = self.ops();
        // SAFETY: the trampoline's contract: a registered ctx and a locked page.
        crate::ffi::to_result(unsafe { (o.store)(o.ctx, key.raw(), page.as_ptr()) })
    }

    pub(crate) fn load(&self, key: SwapKey, page: &mut PageRef) -> Result {
        let o = self.ops();
        // SAFETY: as in `store`.
        crate::ffi::to_result(unsafe { (o.load)(o.ctx, key.raw(), page.as_ptr()) })
    }

    /// Starts loading the page of `load`; the backend completes it, now
    /// or later. A backend without asynchronous loads loads it here.
    pub(crate) fn load_async(&self, key: SwapKey, mut load: PendingLoad) {
        let o = self.ops();
        match o.load_async {
            Some(f) => {
                let page = load.page().as_ptr();
                core::mem::forget(load);
                // SAFETY: a registered ctx; the backend takes the pending
                // load over (its trampoline rebuilds it from `page`).
                unsafe { f(o.ctx, key.raw(), page) }
            }
            None => {
                let r = self.load(key, load.page());
                load.complete(r);
            }
        }
    }

    /// Does the backend load asynchronously?
    pub(crate) fn loads_async(&self) -> bool {
        self.ops().load_async.is_some()
    }

    pub(crate) fn invalidate(&self, key: SwapKey) {
        let o = self.ops();
        // SAFETY: a registered ctx.
        unsafe { (o.invalidate)(o.ctx, key.raw()) }
    }
}

/// The core's place for one registered backend.
#[derive(Default)]
pub(crate) struct BackendSlot(AtomicPtr<BackendOps>);

impl BackendSlot {
    pub(crate) fn get(&self) -> Option<BackendHandle> {
        let p = self.0.load(Ordering::Acquire);
        // SAFETY: only tables handed to `rswap_register_backend` are put in
        // a slot, and the core empties the slot in `rswap_unregister_backend`
        // before the backend frees its table.
        (!p.is_null()).then(|| unsafe { BackendHandle::from_raw(p) })
    }

    pub(crate) fn set(&self, handle: BackendHandle) {
        self.0.store(handle.0 as *mut BackendOps, Ordering::Release);
    }

    pub(crate) fn holds(&self, ops: *const BackendOps) -> bool {
        self.0.load(Ordering::Acquire) as *const BackendOps == ops
    }

    pub(crate) fn clear(&self) {
        self.0.store(core::ptr::null_mut(), Ordering::Release);
    }
}

// `BackendOps` reaches `struct module`, whose lock_class_key is empty
// without lockdep; we only pass pointers, so the lint does not apply.
#[allow(improper_ctypes)]
extern "C" {
    fn rswap_register_backend(ops: *const BackendOps) -> c_int;
    fn rswap_unregister_backend(ops: *const BackendOps);
    fn rswap_load_done(page: *mut bindings::page, err: c_int);
}

/// A backend registered with rswap; unregistered on drop.
pub(crate) struct Registration<B: Backend> {
    ops: Box<BackendOps>,
    backend: Box<B>,
}

// SAFETY: `B: Send + Sync`; the ops table only points at `backend`.
unsafe impl<B: Backend> Send for Registration<B> {}
// SAFETY: as for Send.
unsafe impl<B: Backend> Sync for Registration<B> {}

impl<B: Backend> Registration<B> {
    /// Registers `backend` as `name` (NUL-terminated).
    pub(crate) fn new(
        name: &'static [u8],
        module: &'static ThisModule,
        backend: B,
    ) -> Result<Registration<B>> {
        assert!(name.last() == Some(&0));
        let backend = try_box(backend)?;
        let ops = try_box(BackendOps {
            name: name.as_ptr(),
            owner: module.as_ptr(),
            ctx: &*backend as *const B as *const c_void,
            store: store_trampoline::<B>,
            load: load_trampoline::<B>,
            invalidate: invalidate_trampoline::<B>,
            load_async: if backend.loads_async() {
                Some(load_async_trampoline::<B>)
            } else {
                None
            },
        })?;
        // SAFETY: `ops` and `backend` are heap-allocated and outlive the
        // registration: Drop unregisters before freeing them.
        crate::ffi::to_result(unsafe { rswap_register_backend(&*ops) })?;
        Ok(Registration { ops, backend })
    }

    pub(crate) fn backend(&self) -> &B {
        &self.backend
    }
}

impl<B: Backend> Drop for Registration<B> {
    fn drop(&mut self) {
        // SAFETY: `ops` was registered in `new`; rswap makes no call after
        // this returns.
        unsafe { rswap_unregister_backend(&*self.ops) };
    }
}
