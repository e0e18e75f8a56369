// SPDX-License-Identifier: GPL-2.0
//! FFI glue of the rswap core: the frontswap ops table and the exported
//! backend registration functions. Calls land in safe methods of [`Core`].

use crate::backend::{BackendHandle, BackendOps};
use crate::ffi::{to_result, PageRef};
use crate::Core;
use core::ffi::{c_int, c_uint, c_ulong};
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
    match core().map(|c| c.store(swap_type, offset, &page)) {
        Some(Ok(())) => 0,
        Some(Err(e)) => e.to_errno(),
        None => -(bindings::ENODEV as c_int),
    }
}

unsafe extern "C" fn fs_load(
    swap_type: c_uint,
    offset: c_ulong,
    page: *mut bindings::page,
) -> c_int {
    // SAFETY: frontswap passes a locked, not yet uptodate page to fill.
    let mut page = unsafe { PageRef::from_raw(page) };
    match core().map(|c| c.load(swap_type, offset, &mut page)) {
        Some(Ok(())) => 0,
        Some(Err(e)) => e.to_errno(),
        None => -(bindings::EIO as c_int),
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

static OPS: bindings::frontswap_ops = bindings::frontswap_ops {
    init: Some(fs_init),
    store: Some(fs_store),
    load: Some(fs_load),
    invalidate_page: Some(fs_invalidate_page),
    invalidate_area: Some(fs_invalidate_area),
};

/// rswap registered as the frontswap backend; unregistered on drop.
pub(crate) struct Registration {
    _core: Box<Core>,
}

impl Registration {
    pub(crate) fn new(core: Box<Core>) -> Result<Registration> {
        CORE.store(&*core as *const Core as *mut Core, Ordering::Release);
        // SAFETY: OPS is static; its callbacks are valid while registered.
        if let Err(e) = to_result(unsafe { bindings::frontswap_register_ops(&OPS) }) {
            CORE.store(ptr::null_mut(), Ordering::Release);
            return Err(e);
        }
        Ok(Registration { _core: core })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: OPS was registered in `new`. rswap holds a reference on
        // itself while any swap area is on, so no area is on here and the
        // unregistration succeeds; frontswap then calls us no more.
        let ret = unsafe { bindings::frontswap_unregister_ops(&OPS) };
        if ret != 0 {
            pr_err!(
                "frontswap_unregister_ops failed ({}): swap still on?\n",
                ret
            );
        }
        CORE.store(ptr::null_mut(), Ordering::Release);
    }
}

/// Registers a backend's ops table with the core. Exported to backends.
#[no_mangle]
pub(crate) unsafe extern "C" fn rswap_register_backend(ops: *const BackendOps) -> c_int {
    // SAFETY: the caller (backend.rs `Registration`) passes a table that
    // stays valid until it calls `rswap_unregister_backend`.
    let handle = unsafe { BackendHandle::from_raw(ops) };
    match core().map(|c| c.register_backend(handle)) {
        Some(Ok(())) => 0,
        Some(Err(e)) => e.to_errno(),
        None => -(bindings::ENODEV as c_int),
    }
}

/// Unregisters a backend's ops table. Exported to backends.
#[no_mangle]
pub(crate) unsafe extern "C" fn rswap_unregister_backend(ops: *const BackendOps) {
    if let Some(c) = core() {
        c.unregister_backend(ops);
    }
}
