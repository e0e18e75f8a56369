// SPDX-License-Identifier: GPL-2.0
//! FFI glue of the rswap core: the frontswap ops table and the exported
//! backend registration functions. Calls land in safe methods of [`Core`].

use crate::backend::{BackendHandle, BackendOps};
use crate::ffi::{to_result, try_box, PageRef};
use crate::Core;
use core::ffi::{c_int, c_uint, c_ulong};
use core::mem::ManuallyDrop;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::bindings;
use kernel::prelude::*;

/// The live core. Set before frontswap can call us and cleared only after
/// frontswap_unregister_ops() returned, so every callback sees a valid core.
static CORE: AtomicPtr<Core> = AtomicPtr::new(ptr::null_mut());

fn core() -> Option<&'static Core> {
    let p = CORE.load(Ordering::Acquire);
    // SAFETY: non-null `CORE` points to the core owned by the live
    // `Registration`, which clears it before freeing the core.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// A callback's return: 0, the error, or `none` (an errno) if the core is
/// gone.
fn ret(r: Option<Result>, none: u32) -> c_int {
    match r {
        Some(Ok(())) => 0,
        Some(Err(e)) => e.to_errno(),
        None => -(none as c_int),
    }
}

unsafe extern "C" fn fs_init(swap_type: c_uint) {
    if let Some(c) = core() {
        c.init_area(swap_type);
    }
}

unsafe extern "C" fn fs_store(
    swap_type: c_uint,
    offset: c_ulong,
    page: *mut bindings::page,
) -> c_int {
    // SAFETY: frontswap passes a locked page under writeback.
    let page = unsafe { PageRef::from_raw(page) };
    ret(
        core().map(|c| c.store(swap_type, offset, &page)),
        bindings::ENODEV,
    )
}

unsafe extern "C" fn fs_load(
    swap_type: c_uint,
    offset: c_ulong,
    page: *mut bindings::page,
) -> c_int {
    // SAFETY: frontswap passes a locked, not yet uptodate page to fill.
    let mut page = unsafe { PageRef::from_raw(page) };
    ret(
        core().map(|c| c.load(swap_type, offset, &mut page)),
        bindings::EIO,
    )
}

unsafe extern "C" fn fs_load_async(
    swap_type: c_uint,
    offset: c_ulong,
    page: *mut bindings::page,
) -> c_int {
    // SAFETY: frontswap passes a locked, not yet uptodate page to fill; on
    // success it is ours until completed (`rswap_load_done`).
    let page = unsafe { PageRef::from_raw(page) };
    ret(
        core().map(|c| c.load_async(swap_type, offset, page)),
        bindings::EIO,
    )
}

// The window is the kernel's `pgoff_t` array, used as u64s.
const _: () = assert!(core::mem::size_of::<c_ulong>() == core::mem::size_of::<u64>());

unsafe extern "C" fn fs_readahead(
    swap_type: c_uint,
    offset: c_ulong,
    mm: *mut bindings::mm_struct,
    window: *mut c_ulong,
    max: c_uint,
) -> c_int {
    let c = match core() {
        Some(c) => c,
        None => return -1,
    };
    // SAFETY: frontswap passes an initialised array of `max` offsets for us
    // to fill, ours for this call; c_ulong is u64 here (asserted above).
    let window = unsafe { core::slice::from_raw_parts_mut(window as *mut u64, max as usize) };
    match c.readahead(swap_type, offset, mm as usize, window) {
        Some(n) => n as c_int,
        None => -1,
    }
}

unsafe extern "C" fn fs_swapin_hit(
    swap_type: c_uint,
    offset: c_ulong,
    mm: *mut bindings::mm_struct,
    readahead: bool,
) {
    if let Some(c) = core() {
        c.swapin_hit(swap_type, offset, mm as usize, readahead);
    }
}

unsafe extern "C" fn fs_invalidate_page(swap_type: c_uint, offset: c_ulong) {
    if let Some(c) = core() {
        c.invalidate_page(swap_type, offset);
    }
}

unsafe extern "C" fn fs_invalidate_area(swap_type: c_uint) {
    if let Some(c) = core() {
        c.invalidate_area(swap_type);
    }
}

/// rswap registered as the frontswap backend; unregistered on drop.
///
/// The ops table names rswap's module as its owner: frontswap holds a
/// reference on it from swapon of an area until that area's
/// `invalidate_area` has returned (kernel patch 0015), so rswap cannot be
/// unloaded while frontswap may call it, and the unregistration in `drop`
/// cannot be refused.
pub(crate) struct Registration {
    // Dropped by hand in `drop`, and only once frontswap let go of them.
    ops: ManuallyDrop<Box<Ops>>,
    core: ManuallyDrop<Box<Core>>,
}

/// The ops table; its one raw pointer is the owner module's.
struct Ops(bindings::frontswap_ops);

// SAFETY: the table is written once before registration and only read
// afterwards; `owner` points at our own module, which outlives it.
unsafe impl Send for Ops {}
// SAFETY: as for Send.
unsafe impl Sync for Ops {}

impl Registration {
    pub(crate) fn new(core: Box<Core>, module: &'static ThisModule) -> Result<Registration> {
        let ops = try_box(Ops(bindings::frontswap_ops {
            owner: module.as_ptr(),
            init: Some(fs_init),
            store: Some(fs_store),
            load: Some(fs_load),
            invalidate_page: Some(fs_invalidate_page),
            invalidate_area: Some(fs_invalidate_area),
            load_async: Some(fs_load_async),
            readahead: Some(fs_readahead),
            swapin_hit: Some(fs_swapin_hit),
        }))?;
        CORE.store(&*core as *const Core as *mut Core, Ordering::Release);
        // SAFETY: `ops` is heap-allocated and outlives the registration
        // (dropped after the unregistration in `drop`); its callbacks are
        // valid while registered.
        if let Err(e) = to_result(unsafe { bindings::frontswap_register_ops(&ops.0) }) {
            CORE.store(ptr::null_mut(), Ordering::Release);
            return Err(e);
        }
        Ok(Registration {
            ops: ManuallyDrop::new(ops),
            core: ManuallyDrop::new(core),
        })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: `ops` was registered in `new`. Module exit runs only once
        // frontswap dropped its last reference on rswap, i.e. no swap area
        // uses rswap any more, so the unregistration succeeds and frontswap
        // calls us no more.
        let ret = unsafe { bindings::frontswap_unregister_ops(&self.ops.0) };
        if ret != 0 {
            // Cannot happen (see above). If it did, frontswap could still
            // call us: leak the ops and the core rather than free them.
            pr_err!(
                "frontswap_unregister_ops failed ({}): this is a bug; leaking rswap's state\n",
                ret
            );
            return;
        }
        CORE.store(ptr::null_mut(), Ordering::Release);
        // SAFETY: frontswap no longer knows the ops nor calls into the
        // core; each is dropped once, here.
        unsafe {
            ManuallyDrop::drop(&mut self.core);
            ManuallyDrop::drop(&mut self.ops);
        }
    }
}

/// Registers a backend's ops table with the core. Exported to backends.
#[no_mangle]
pub(crate) unsafe extern "C" fn rswap_register_backend(ops: *const BackendOps) -> c_int {
    // SAFETY: the caller (backend.rs `Registration`) passes a table that
    // stays valid until it calls `rswap_unregister_backend`.
    let handle = unsafe { BackendHandle::from_raw(ops) };
    ret(core().map(|c| c.register_backend(handle)), bindings::ENODEV)
}

/// Unregisters a backend's ops table. Exported to backends.
#[no_mangle]
pub(crate) unsafe extern "C" fn rswap_unregister_backend(ops: *const BackendOps) {
    if let Some(c) = core() {
        c.unregister_backend(ops);
    }
}

/// Ends an asynchronous load (`PendingLoad`): counts a failure, then has
/// frontswap mark the page uptodate (or lost) and unlock it. Exported to
/// backends; callable from any context.
#[no_mangle]
pub(crate) unsafe extern "C" fn rswap_load_done(page: *mut bindings::page, err: c_int) {
    if err != 0 {
        if let Some(c) = core() {
            // SAFETY: the caller's page is a valid pending load's page.
            c.async_load_failed(unsafe { &PageRef::from_raw(page) }, err);
        }
    }
    // SAFETY: `page` is the locked page of a load frontswap started with
    // `fs_load_async`, completed once (the `PendingLoad` contract).
    unsafe { bindings::frontswap_load_done(page, err) };
}
