// SPDX-License-Identifier: GPL-2.0
//! The FFI layer of rswap_rdma: every `unsafe` block of the module is in
//! this file (plus the shared `../rswap/ffi.rs` and `../rswap/backend.rs`).
//!
//! - kernel services: time, random numbers, CPU ids;
//! - [`HmacKey`]: HMAC-SHA256 from the kernel crypto API, for the
//!   connection protocol;
//! - [`Mutex`]: a kernel `struct mutex` (tracked by lockdep) around a value;
//! - [`Conn`]: one RDMA CM connection with its QP and CQ, and
//!   [`Conn::transfer`], one RDMA READ or WRITE of a page with polled
//!   completion, which owns the DMA-safety rule below;
//! - [`Pd`]: a protection domain;
//! - [`Worker`]: a kernel thread that runs a function periodically, used
//!   to rebuild failed connections;
//! - [`params`]: the module parameters declared in rswap_rdma_glue.c.
//!
//! The DMA-safety rule: a page mapped for the device goes back to the
//! kernel only when the device can no longer touch it, that is when the
//! completion of its request has been reaped (successful, in error, or
//! flushed), or when the QP that carried it has been destroyed.
//! [`Conn::transfer`] never returns before one of those has happened. The
//! one request that may outlive its caller is a late-bound read
//! ([`Conn::post_late`]): it reads into the connection's own bounce page,
//! which stays mapped until the next request there reaps it
//! (`Conn::settle`) or the QP is destroyed (`Conn::teardown`).

use crate::ffi::{try_box, OwnedPage, PageRef, GFP_SWAPOUT, PAGE_SIZE};
use core::cell::UnsafeCell;
use core::ffi::{c_int, c_uint, c_void};
use core::ops::{Deref, DerefMut};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};
use kernel::bindings;
use kernel::error::code;
use kernel::prelude::*;

/// Largest CM private data we keep: a reply.
pub(crate) const PRIVATE_MAX: usize = crate::proto::REPLY_LEN;

fn is_err_ptr<T>(p: *mut T) -> bool {
    (p as usize) >= (-(bindings::MAX_ERRNO as isize)) as usize
}

fn ptr_err<T>(p: *mut T) -> Error {
    Error::from_errno(p as isize as c_int)
}

// ---------------------------------------------------------------------------
// Kernel services.

/// Current jiffies.
pub(crate) fn jiffies() -> u64 {
    // SAFETY: `jiffies` is a kernel global updated by the timer; a volatile
    // read of an aligned word is how C reads it too.
    unsafe { ptr::read_volatile(ptr::addr_of!(bindings::jiffies)) as u64 }
}

/// Jiffies `a` is after jiffies `b` (`time_after`, wrap-safe).
pub(crate) fn after(a: u64, b: u64) -> bool {
    (b.wrapping_sub(a) as i64) < 0
}

pub(crate) fn ms_to_jiffies(ms: u32) -> u64 {
    // SAFETY: a pure conversion with no preconditions.
    unsafe { bindings::__msecs_to_jiffies(ms) as u64 }
}

/// Monotonic nanoseconds.
pub(crate) fn now_ns() -> u64 {
    // SAFETY: no arguments, callable from any context.
    unsafe { bindings::ktime_get() as u64 }
}

pub(crate) fn random_u64() -> u64 {
    // SAFETY: no arguments, callable from any context.
    unsafe { bindings::get_random_u64() }
}

pub(crate) fn random_u32() -> u32 {
    // SAFETY: no arguments, callable from any context.
    unsafe { bindings::get_random_u32() }
}

/// Wall-clock seconds since 1970, mod 2^32 (the protocol's clock).
pub(crate) fn wall_seconds() -> u32 {
    // SAFETY: no arguments, callable from any context.
    unsafe { bindings::ktime_get_real_seconds() as u32 }
}

/// A random number in `0..n`.
pub(crate) fn random_below(n: u64) -> u64 {
    // SAFETY: no arguments, callable from any context.
    let r = unsafe { bindings::get_random_u32() } as u64;
    (r * n) >> 32
}

/// `j` jiffies in milliseconds.
pub(crate) fn jiffies_to_ms(j: u64) -> u64 {
    // SAFETY: a pure conversion.
    unsafe { bindings::jiffies_to_msecs(j as _) as u64 }
}

/// Sleeps `ms` milliseconds. May sleep: never under a spinlock.
pub(crate) fn sleep_ms(ms: u32) {
    // SAFETY: msleep only sleeps; callers are in process context.
    unsafe { bindings::msleep(ms) };
}

pub(crate) fn cpu_id() -> usize {
    // SAFETY: no arguments; the result is a hint (we may migrate).
    unsafe { bindings::raw_smp_processor_id() as usize }
}

pub(crate) fn nr_cpus() -> usize {
    // SAFETY: `nr_cpu_ids` is set at boot and read-only afterwards.
    unsafe { ptr::read_volatile(ptr::addr_of!(bindings::nr_cpu_ids)) as usize }
}

// ---------------------------------------------------------------------------
// HMAC-SHA256.

/// HMAC-SHA256 keyed with the shared secret, from the kernel crypto API
/// (`hmac(sha256)`, a synchronous hash).
pub(crate) struct HmacKey {
    tfm: *mut bindings::crypto_shash,
}

// SAFETY: once keyed, the transform is only read: each digest keeps its
// state in a descriptor of its own (crypto_shash_tfm_digest puts one on
// its stack), so any thread may use it, and several at once.
unsafe impl Send for HmacKey {}
// SAFETY: as above.
unsafe impl Sync for HmacKey {}

/// The longest message we authenticate: proto.rs's longest is a reply's
/// MAC input (a label, the request's MAC, 48 bytes of reply).
const HMAC_INPUT_MAX: usize = 128;
const _: () = assert!(HMAC_INPUT_MAX >= 16 + crate::proto::TAG_LEN + crate::proto::REPLY_LEN);

impl HmacKey {
    /// May sleep (it may load the algorithm): process context only.
    pub(crate) fn new(secret: &[u8]) -> Result<HmacKey> {
        // SAFETY: a NUL-terminated name; type and mask 0 take any
        // implementation of it.
        let tfm =
            unsafe { bindings::crypto_alloc_shash(b"hmac(sha256)\0".as_ptr() as *const _, 0, 0) };
        if is_err_ptr(tfm) {
            return Err(ptr_err(tfm));
        }
        // From here on, Drop frees the transform.
        let key = HmacKey { tfm };
        // SAFETY: a live transform; setkey copies the key, whose buffer
        // outlives the call.
        let r =
            unsafe { bindings::crypto_shash_setkey(key.tfm, secret.as_ptr(), secret.len() as _) };
        if r != 0 {
            return Err(Error::from_errno(r));
        }
        Ok(key)
    }
}

impl crate::proto::Mac for HmacKey {
    fn hmac(&self, parts: &[&[u8]]) -> Option<[u8; crate::proto::DIGEST_LEN]> {
        let mut buf = [0u8; HMAC_INPUT_MAX];
        let mut n: usize = 0;
        for p in parts {
            let end = n.checked_add(p.len())?;
            buf.get_mut(n..end)?.copy_from_slice(p);
            n = end;
        }
        let mut out = [0u8; crate::proto::DIGEST_LEN];
        // SAFETY: a live, keyed transform; `buf[..n]` is initialised and
        // `out` has room for a SHA-256 digest; both outlive the call.
        let r = unsafe {
            bindings::crypto_shash_tfm_digest(self.tfm, buf.as_ptr(), n as _, out.as_mut_ptr())
        };
        // The input may hold a session token: leave no copy on the stack.
        for b in buf.iter_mut() {
            // SAFETY: a valid, aligned byte of our own buffer; volatile so
            // the compiler keeps the stores.
            unsafe { ptr::write_volatile(b, 0) };
        }
        if r == 0 {
            Some(out)
        } else {
            None
        }
    }
}

impl Drop for HmacKey {
    fn drop(&mut self) {
        // SAFETY: allocated in new(), freed once here; no digest is in
        // progress (they borrow self).
        unsafe { bindings::crypto_free_shash(self.tfm) };
    }
}

// ---------------------------------------------------------------------------
// Locks.

// rswap_rdma_glue.c: mutex_init() and (under lockdep) mutex_lock() are C
// macros, and mutex_destroy() is inline without CONFIG_DEBUG_MUTEXES.
extern "C" {
    fn rswap_rdma_read_queue_lock_init(lock: *mut bindings::mutex);
    fn rswap_rdma_write_queue_lock_init(lock: *mut bindings::mutex);
    fn rswap_rdma_readahead_queue_lock_init(lock: *mut bindings::mutex);
    fn rswap_rdma_mutex_lock(lock: *mut bindings::mutex);
    fn rswap_rdma_mutex_lock_nested(lock: *mut bindings::mutex, subclass: c_uint);
    fn rswap_rdma_mutex_destroy(lock: *mut bindings::mutex);
}

/// The lockdep class of a [`Mutex`]: one per kind of queue, so a report
/// names the kind and the two kinds may nest without a false alarm.
#[derive(Clone, Copy)]
pub(crate) enum LockClass {
    ReadQueue,
    WriteQueue,
    ReadAheadQueue,
}

/// A value behind a kernel `struct mutex`.
///
/// Why a mutex: a queue is held across a whole network round trip (post,
/// then poll for the completion, up to twice `timeout_ms`, and a late-bound
/// straggler's before that), so it must be a
/// sleeping lock, and the store/load paths run in process context where
/// sleeping is allowed (they already called cond_resched). A `struct
/// mutex` is the kernel's sleeping lock: lockdep checks its ordering
/// against every other lock (including reclaim, since stores come from
/// reclaim), DEBUG_MUTEXES checks its use, and the hung-task detector
/// sees a waiter that never gets it. The hand-made spin-yield flag it
/// replaces was invisible to all of them. It is heap-allocated because a
/// mutex must not move once initialised.
pub(crate) struct Mutex<T> {
    lock: UnsafeCell<bindings::mutex>,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex serialises every access to `data`, so the value may be
// reached from any thread if it may be sent between threads.
unsafe impl<T: Send> Send for Mutex<T> {}
// SAFETY: as for Send.
unsafe impl<T: Send> Sync for Mutex<T> {}

impl<T> Mutex<T> {
    pub(crate) fn new(data: T, class: LockClass) -> Result<Box<Mutex<T>>> {
        let m = try_box(Mutex {
            // SAFETY: zeroed storage, initialised just below before any use.
            lock: UnsafeCell::new(unsafe { core::mem::zeroed() }),
            data: UnsafeCell::new(data),
        })?;
        // SAFETY: the mutex lives in the Box and does not move from now on;
        // it is initialised once, before anyone can lock it.
        unsafe {
            match class {
                LockClass::ReadQueue => rswap_rdma_read_queue_lock_init(m.lock.get()),
                LockClass::WriteQueue => rswap_rdma_write_queue_lock_init(m.lock.get()),
                LockClass::ReadAheadQueue => rswap_rdma_readahead_queue_lock_init(m.lock.get()),
            }
        };
        Ok(m)
    }

    /// Runs `f` with the mutex held. Sleeps until the mutex is free: call
    /// only from process context.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: the mutex was initialised in `new`; callers are in
        // process context (the store/load paths).
        unsafe { rswap_rdma_mutex_lock(self.lock.get()) };
        // SAFETY: we hold the mutex, so this is the only reference to `data`.
        let r = f(unsafe { &mut *self.data.get() });
        // SAFETY: we locked it above, in this task.
        unsafe { bindings::mutex_unlock(self.lock.get()) };
        r
    }

    /// Locks the mutex until the returned guard is dropped, as the
    /// `rank`-th (from 0) of several mutexes of its class held at once.
    /// Holders of several take them in one global order (ascending server
    /// index, for late-bound reads), so no two can wait for each other;
    /// `rank` tells lockdep that this nesting is intended. Process context
    /// only, as `with`.
    pub(crate) fn lock_nested(&self, rank: u32) -> Held<'_, T> {
        // SAFETY: initialised in `new`; process context (the load path).
        unsafe { rswap_rdma_mutex_lock_nested(self.lock.get(), rank) };
        Held(self, core::marker::PhantomData)
    }
}

/// A locked [`Mutex`] (`lock_nested`); unlocked on drop, by the task that
/// locked it (the marker keeps it from moving to another thread).
pub(crate) struct Held<'a, T>(&'a Mutex<T>, core::marker::PhantomData<*mut ()>);

impl<T> Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the mutex: no one else reaches `data`.
        unsafe { &*self.0.data.get() }
    }
}

impl<T> DerefMut for Held<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` is the only guard.
        unsafe { &mut *self.0.data.get() }
    }
}

impl<T> Drop for Held<'_, T> {
    fn drop(&mut self) {
        // SAFETY: locked by `lock_nested` in this task, unlocked once.
        unsafe { bindings::mutex_unlock(self.0.lock.get()) };
    }
}

impl<T> Drop for Mutex<T> {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`; `&mut self` means nobody holds it.
        unsafe { rswap_rdma_mutex_destroy(self.lock.get()) };
    }
}

// ---------------------------------------------------------------------------
// RDMA CM events.

/// What the CM event handler saw last. Shared between the handler (CM
/// workqueue) and the thread waiting on `done`.
struct CmState {
    done: UnsafeCell<bindings::completion>,
    event: AtomicU32,
    status: AtomicI32,
    private: UnsafeCell<[u8; PRIVATE_MAX]>,
    private_len: AtomicUsize,
    established: AtomicBool,
    /// Set when an established connection goes away (or we gave up on it).
    lost: AtomicBool,
}

// SAFETY: the completion is used through the kernel API (its own lock);
// `private` is written by the handler before complete() and read by the
// waiter after the wait returned, which orders the accesses.
unsafe impl Send for CmState {}
// SAFETY: as for Send.
unsafe impl Sync for CmState {}

/// The events rswap_rdma acts on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CmEvent {
    AddrResolved,
    RouteResolved,
    Established,
    Rejected,
    Unreachable,
    Other,
}

fn cm_event(e: u32) -> CmEvent {
    match e {
        bindings::rdma_cm_event_type_RDMA_CM_EVENT_ADDR_RESOLVED => CmEvent::AddrResolved,
        bindings::rdma_cm_event_type_RDMA_CM_EVENT_ROUTE_RESOLVED => CmEvent::RouteResolved,
        bindings::rdma_cm_event_type_RDMA_CM_EVENT_ESTABLISHED => CmEvent::Established,
        bindings::rdma_cm_event_type_RDMA_CM_EVENT_REJECTED => CmEvent::Rejected,
        bindings::rdma_cm_event_type_RDMA_CM_EVENT_ADDR_ERROR
        | bindings::rdma_cm_event_type_RDMA_CM_EVENT_ROUTE_ERROR
        | bindings::rdma_cm_event_type_RDMA_CM_EVENT_UNREACHABLE
        | bindings::rdma_cm_event_type_RDMA_CM_EVENT_CONNECT_ERROR => CmEvent::Unreachable,
        _ => CmEvent::Other,
    }
}

unsafe extern "C" fn cm_handler(
    id: *mut bindings::rdma_cm_id,
    ev: *mut bindings::rdma_cm_event,
) -> c_int {
    // SAFETY: `context` is the CmState given to __rdma_create_kernel_id,
    // which lives until after rdma_destroy_id (Conn's Drop order).
    let st = unsafe { &*((*id).context as *const CmState) };
    // SAFETY: the CM passes a valid event for the duration of the call.
    let ev = unsafe { &*ev };
    let kind = ev.event;
    let is_loss = matches!(
        kind,
        bindings::rdma_cm_event_type_RDMA_CM_EVENT_DISCONNECTED
            | bindings::rdma_cm_event_type_RDMA_CM_EVENT_DEVICE_REMOVAL
            | bindings::rdma_cm_event_type_RDMA_CM_EVENT_ADDR_CHANGE
    );
    if st.established.load(Ordering::Acquire) {
        if is_loss && !st.lost.swap(true, Ordering::AcqRel) {
            pr_warn!(
                "connection lost (CM event {}, status {})\n",
                kind,
                ev.status
            );
        }
        return 0;
    }
    if kind == bindings::rdma_cm_event_type_RDMA_CM_EVENT_TIMEWAIT_EXIT {
        return 0;
    }
    if matches!(cm_event(kind), CmEvent::Established | CmEvent::Rejected) {
        // SAFETY: for connection events `conn` is the active union member
        // and `private_data` holds `private_data_len` bytes during the call.
        let (p, n) = unsafe {
            (
                ev.param.conn.private_data,
                ev.param.conn.private_data_len as usize,
            )
        };
        let n = if p.is_null() { 0 } else { n.min(PRIVATE_MAX) };
        // SAFETY: only the handler writes `private`, before complete(); the
        // CM serialises handler calls for one id; `n` fits both buffers.
        unsafe { ptr::copy_nonoverlapping(p as *const u8, (*st.private.get()).as_mut_ptr(), n) };
        st.private_len.store(n, Ordering::Release);
    }
    if cm_event(kind) == CmEvent::Established {
        st.established.store(true, Ordering::Release);
    }
    st.status.store(ev.status, Ordering::Release);
    st.event.store(kind, Ordering::Release);
    // SAFETY: the completion was initialised in CmState::new.
    unsafe { bindings::complete(st.done.get()) };
    0
}

impl CmState {
    fn new() -> Result<Box<CmState>> {
        let st = try_box(CmState {
            // SAFETY: zeroed storage, initialised below before use.
            done: UnsafeCell::new(unsafe { core::mem::zeroed() }),
            event: AtomicU32::new(u32::MAX),
            status: AtomicI32::new(0),
            private: UnsafeCell::new([0; PRIVATE_MAX]),
            private_len: AtomicUsize::new(0),
            established: AtomicBool::new(false),
            lost: AtomicBool::new(false),
        })?;
        // SAFETY: the completion lives in the Box and does not move.
        unsafe { bindings::init_completion(st.done.get()) };
        Ok(st)
    }

    /// Waits for the next handled event; ETIMEDOUT after `ms`.
    fn wait(&self, ms: u32) -> Result<(CmEvent, i32)> {
        // SAFETY: initialised completion; we may sleep here (module init).
        let left = unsafe {
            bindings::wait_for_completion_timeout(self.done.get(), ms_to_jiffies(ms) as _)
        };
        if left == 0 {
            return Err(code::ETIMEDOUT);
        }
        // SAFETY: re-arms the initialised completion for the next step; the
        // handler has completed it.
        unsafe { bindings::reinit_completion(self.done.get()) };
        Ok((
            cm_event(self.event.load(Ordering::Acquire)),
            self.status.load(Ordering::Acquire),
        ))
    }

    /// The private data of the last Established/Rejected event.
    fn private(&self) -> ([u8; PRIVATE_MAX], usize) {
        let n = self.private_len.load(Ordering::Acquire);
        // SAFETY: written before the completion we waited for (see Sync).
        (unsafe { *self.private.get() }, n)
    }
}

// ---------------------------------------------------------------------------
// Protection domain.

/// A protection domain on a device; deallocated on drop.
pub(crate) struct Pd {
    pd: *mut bindings::ib_pd,
    device: *mut bindings::ib_device,
}

// SAFETY: verbs objects may be used from any thread.
unsafe impl Send for Pd {}

impl Pd {
    fn lkey(&self) -> u32 {
        // SAFETY: a valid PD until drop.
        unsafe { (*self.pd).local_dma_lkey }
    }
}

impl Drop for Pd {
    fn drop(&mut self) {
        // SAFETY: every QP and CQ using it is destroyed first: it belongs
        // to one Conn, whose Drop destroys them before freeing it (and
        // before destroying the CM id that holds the device).
        unsafe { bindings::ib_dealloc_pd_user(self.pd, ptr::null_mut()) };
    }
}

// ---------------------------------------------------------------------------
// Connections.

/// An IPv4 address and port.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) ip: [u8; 4],
    pub(crate) port: u16,
}

impl core::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d] = self.ip;
        write!(f, "{}.{}.{}.{}:{}", a, b, c, d, self.port)
    }
}

/// Why a connection attempt failed, for the log.
pub(crate) enum ConnectError {
    Timeout(&'static str),
    Unreachable(&'static str, i32),
    Rejected([u8; PRIVATE_MAX], usize, i32),
    Setup(&'static str, Error),
}

/// The bytes of a page a transfer moves: all of it, or one chunk of an
/// erasure-coded page (ec.rs), `len` bytes from `offset`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) offset: u32,
    pub(crate) len: u32,
}

impl Span {
    pub(crate) const PAGE: Span = Span {
        offset: 0,
        len: PAGE_SIZE as u32,
    };

    /// Non-empty and inside the page.
    fn fits(self) -> bool {
        self.len > 0 && self.offset as usize + self.len as usize <= PAGE_SIZE
    }
}

/// XORs `src` into `dst` (the same length), with the kernel's own
/// `crypto_xor` (lib/crypto/utils.c, word at a time): erasure coding's
/// parity (ec.rs).
pub(crate) fn xor_into(dst: &mut [u8], src: &[u8]) {
    assert!(dst.len() == src.len() && dst.len() <= u32::MAX as usize);
    // SAFETY: both slices are valid for `len` bytes, and do not overlap
    // (one is borrowed mutably).
    unsafe { rswap_rdma_xor(dst.as_mut_ptr(), src.as_ptr(), dst.len() as c_uint) }
}

extern "C" {
    fn rswap_rdma_xor(dst: *mut u8, src: *const u8, len: c_uint);
}

/// The direction of a page transfer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// RDMA READ: remote slot to page (a load).
    Read,
    /// RDMA WRITE: page to remote slot (a store).
    Write,
}

impl Op {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
        }
    }

    /// The direction of the page's DMA mapping.
    fn dma_dir(self) -> bindings::dma_data_direction {
        match self {
            Op::Write => bindings::dma_data_direction_DMA_TO_DEVICE,
            Op::Read => bindings::dma_data_direction_DMA_FROM_DEVICE,
        }
    }

    /// The work request's opcode.
    fn wr_opcode(self) -> bindings::ib_wr_opcode {
        match self {
            Op::Write => bindings::ib_wr_opcode_IB_WR_RDMA_WRITE,
            Op::Read => bindings::ib_wr_opcode_IB_WR_RDMA_READ,
        }
    }
}

/// The most requests one batch posts (a bit each in `Conn::missing`).
pub(crate) const BATCH_MAX: usize = 32;

// The CQ as void: the bindings of `struct ib_cq` are not FFI-safe all the
// way down (the lint follows the pointer), and the glue takes it as is.
extern "C" {
    fn rswap_rdma_cq_events_new() -> *mut c_void;
    fn rswap_rdma_need_resched() -> bool;
    fn rswap_rdma_cq_events_free(e: *mut c_void);
    fn rswap_rdma_cq_events_attach(cq: *mut c_void, e: *mut c_void);
    fn rswap_rdma_cq_events_wait(cq: *mut c_void, e: *mut c_void, timeout: i64) -> i64;
}

/// Whether the scheduler wants this CPU for another task.
fn need_resched() -> bool {
    // SAFETY: reads this task's flag; no preconditions.
    unsafe { rswap_rdma_need_resched() }
}

/// The completion events of one CQ (rswap_rdma_glue.c): a wait queue that
/// the CQ's completion handler wakes. Freed only after its CQ.
struct CqEvents(*mut c_void);

impl CqEvents {
    fn new() -> Result<CqEvents> {
        // SAFETY: allocates and initialises the glue's struct, or fails.
        let e = unsafe { rswap_rdma_cq_events_new() };
        if e.is_null() {
            return Err(code::ENOMEM);
        }
        Ok(CqEvents(e))
    }

    /// Makes `cq`'s completion events wake our waiters.
    ///
    /// # Safety
    ///
    /// `cq` is a live CQ polled directly (IB_POLL_DIRECT), never armed
    /// before, and freed before `self` is dropped.
    unsafe fn attach(&self, cq: *mut bindings::ib_cq) {
        // SAFETY: per the function's contract.
        unsafe { rswap_rdma_cq_events_attach(cq as *mut c_void, self.0) }
    }

    /// Arms `cq` and sleeps until its next completion, at most `jiffies`:
    /// false on timeout. `cq` is the CQ `attach` was given.
    fn wait(&self, cq: *mut bindings::ib_cq, jiffies: u64) -> bool {
        // SAFETY: `cq` is live and attached to `self` (the caller holds the
        // Conn that owns both); the wait may sleep, and callers are in
        // process context.
        unsafe {
            rswap_rdma_cq_events_wait(
                cq as *mut c_void,
                self.0,
                jiffies.min(i64::MAX as u64) as i64,
            ) != 0
        }
    }
}

impl Drop for CqEvents {
    fn drop(&mut self) {
        // SAFETY: ours, freed once; its CQ is freed (Conn drops us after
        // ib_free_cq), so no handler can run.
        unsafe { rswap_rdma_cq_events_free(self.0) }
    }
}

/// Why a transfer failed. In every case the device is done with the page.
#[derive(Clone, Copy)]
pub(crate) enum Failure {
    /// The CM reported the connection lost; nothing was posted, or the
    /// write completed but cannot be trusted to stay.
    Disconnected,
    /// The QP was torn down by an earlier failure; nothing was posted.
    TornDown,
    /// Refused under the queue's lock before posting: what the request
    /// was for is no longer current (the server's pages were retired).
    Stale,
    /// Not posted for a passing reason of ours (no memory for a bounce
    /// page): the queue and its server are fine.
    Busy,
    /// The page could not be mapped or the request posted; the device
    /// never saw it.
    Post(Error),
    /// The request completed with this error status (the QP is now in the
    /// error state).
    Completion(u32),
    /// No completion in time: the request was flushed, or the QP torn down.
    Timeout,
}

/// Requests to post as one chain: one per mapped page of `dma` (its bytes
/// `span`), `op` at `remotes[i]` in the region of `rkey`.
#[derive(Clone, Copy)]
struct Chain<'a> {
    lkey: u32,
    dma: &'a [u64],
    span: Span,
    op: Op,
    remotes: &'a [u64],
    rkey: u32,
}

/// One reliable connection with its own CQ; torn down on drop. Used by one
/// request at a time (it sits in a [`Mutex`]), so its methods take
/// `&mut self`.
pub(crate) struct Conn {
    peer: Endpoint,
    id: *mut bindings::rdma_cm_id,
    cq: *mut bindings::ib_cq,
    /// Our QP; null before it is created and after `teardown`.
    qp: *mut bindings::ib_qp,
    state: Box<CmState>,
    seq: u64,
    /// Requests its send queue takes at once (and a batch at most).
    depth: u32,
    /// The CQ's completion events, and how long a waiter spins on the
    /// empty CQ before it sleeps until one (`poll_us=`, see `set_poll_us`).
    /// A real NIC reads 4 KiB in a few us, so a fault's read is reaped
    /// while polling; a longer wait (Soft-RoCE, a loaded server) sleeps
    /// instead of holding the CPU.
    events: Option<CqEvents>,
    spin_ns: u64,
    /// While reaping a batch: its first wr_id, the requests still missing
    /// (bit i: `first + i`), and the first error status seen.
    first: u64,
    missing: u64,
    failed: u32,
    /// A late-bound read (`post_late`) the device may still be doing: its
    /// wr_id and the DMA address of `bounce`, which it reads into. Reaped
    /// by `poll_late`, or by `settle` before the next request here, or
    /// ended by `teardown` (the QP is gone).
    late: Option<(u64, u64)>,
    /// The page late-bound reads land in, allocated by the first.
    bounce: Option<OwnedPage>,
    /// The last late-bound read was reaped by `poll_late`, successful: the
    /// bounce page holds its bytes (`late_bytes`).
    fresh: bool,
    /// Its own PD, created once the device is known; Drop frees it after
    /// the QP and CQ that use it and before the CM id. One PD per
    /// connection: dropping a connection then releases everything it holds
    /// on its device before the id, which is what a device removal waits
    /// for.
    pd: Option<Pd>,
}

// SAFETY: the id, QP and CQ may be used from any thread; a Conn is used by
// one thread at a time (`&mut self`, behind its queue's Mutex). The CM
// handler shares only `state`, which is Sync.
unsafe impl Send for Conn {}

impl Conn {
    /// Connects to `to`, sending `request` as private data. Every step is
    /// bounded by `ms`. Returns the connection and the private data of the
    /// accept.
    pub(crate) fn connect(
        to: Endpoint,
        request: &[u8],
        ms: u32,
        depth: u32,
    ) -> core::result::Result<(Conn, [u8; PRIVATE_MAX], usize), ConnectError> {
        let state = CmState::new().map_err(|e| ConnectError::Setup("memory", e))?;
        // SAFETY: init_net is the initial namespace; the handler and its
        // context (state) outlive the id (Drop destroys the id first).
        let id = unsafe {
            bindings::__rdma_create_kernel_id(
                ptr::addr_of_mut!(bindings::init_net),
                Some(cm_handler),
                &*state as *const CmState as *mut c_void,
                bindings::rdma_ucm_port_space_RDMA_PS_TCP,
                bindings::ib_qp_type_IB_QPT_RC,
                b"rswap_rdma\0".as_ptr() as *const _,
            )
        };
        if is_err_ptr(id) {
            return Err(ConnectError::Setup("rdma_create_id", ptr_err(id)));
        }
        // From here on, Drop undoes whatever was set up if a step fails.
        let mut conn = Conn {
            peer: to,
            id,
            cq: ptr::null_mut(),
            qp: ptr::null_mut(),
            state,
            seq: 0,
            depth,
            events: None,
            spin_ns: 0,
            first: 0,
            missing: 0,
            failed: 0,
            late: None,
            bounce: None,
            fresh: false,
            pd: None,
        };
        let dst = bindings::sockaddr_in {
            sin_family: bindings::AF_INET as u16,
            sin_port: to.port.to_be(),
            sin_addr: bindings::in_addr {
                s_addr: u32::from_ne_bytes(to.ip),
            },
            __pad: [0; 8],
        };
        // SAFETY: valid id; `dst` is a sockaddr_in that outlives the call.
        let r = unsafe {
            bindings::rdma_resolve_addr(
                id,
                ptr::null_mut(),
                &dst as *const _ as *const bindings::sockaddr,
                ms as _,
            )
        };
        if r != 0 {
            return Err(ConnectError::Unreachable("resolving the address", r));
        }
        conn.expect(CmEvent::AddrResolved, ms, "address resolution")?;
        // SAFETY: valid id with a resolved address.
        let r = unsafe { bindings::rdma_resolve_route(id, ms as _) };
        if r != 0 {
            return Err(ConnectError::Unreachable("resolving the route", r));
        }
        conn.expect(CmEvent::RouteResolved, ms, "route resolution")?;
        // SAFETY: after route resolution the id is bound to a device.
        let device = unsafe { (*id).device };
        // SAFETY: a live device; the caller name is a static string.
        let pd =
            unsafe { bindings::__ib_alloc_pd(device, 0, b"rswap_rdma\0".as_ptr() as *const _) };
        if is_err_ptr(pd) {
            return Err(ConnectError::Setup("ib_alloc_pd", ptr_err(pd)));
        }
        conn.pd = Some(Pd { pd, device });
        // SAFETY: a live device; polled directly by us (IB_POLL_DIRECT).
        let cq = unsafe {
            bindings::__ib_alloc_cq(
                device,
                ptr::null_mut(),
                (2 * depth) as c_int,
                0,
                bindings::ib_poll_context_IB_POLL_DIRECT,
                b"rswap_rdma\0".as_ptr() as *const _,
            )
        };
        if is_err_ptr(cq) {
            return Err(ConnectError::Setup("ib_alloc_cq", ptr_err(cq)));
        }
        conn.cq = cq;
        let events = CqEvents::new().map_err(|e| ConnectError::Setup("memory", e))?;
        // SAFETY: our new CQ, polled directly and not yet armed; Drop frees
        // it before `events`.
        unsafe { events.attach(cq) };
        conn.events = Some(events);
        // SAFETY: zeroed is a valid ib_qp_init_attr to fill in.
        let mut attr: bindings::ib_qp_init_attr = unsafe { core::mem::zeroed() };
        attr.send_cq = cq;
        attr.recv_cq = cq;
        attr.cap.max_send_wr = depth;
        attr.cap.max_recv_wr = 1;
        attr.cap.max_send_sge = 1;
        attr.cap.max_recv_sge = 1;
        attr.sq_sig_type = bindings::ib_sig_type_IB_SIGNAL_REQ_WR;
        attr.qp_type = bindings::ib_qp_type_IB_QPT_RC;
        // SAFETY: valid id, PD and CQ on the same device.
        let r = unsafe { bindings::rdma_create_qp(id, pd, &mut attr) };
        if r != 0 {
            return Err(ConnectError::Setup("rdma_create_qp", Error::from_errno(r)));
        }
        // SAFETY: rdma_create_qp succeeded, so `id->qp` is our new QP.
        conn.qp = unsafe { (*id).qp };
        // SAFETY: zeroed is a valid rdma_conn_param to fill in.
        let mut param: bindings::rdma_conn_param = unsafe { core::mem::zeroed() };
        param.private_data = request.as_ptr() as *const c_void;
        param.private_data_len = request.len() as u8;
        param.initiator_depth = depth.min(16) as u8;
        param.responder_resources = 0;
        param.retry_count = 7;
        param.rnr_retry_count = 7;
        // SAFETY: valid id with a QP; `param` and `request` outlive the
        // call; not called from the CM handler, so rdma_connect (which takes
        // the handler mutex) is the right call.
        let r = unsafe { bindings::rdma_connect(id, &mut param) };
        if r != 0 {
            return Err(ConnectError::Unreachable("rdma_connect", r));
        }
        match conn.state.wait(ms) {
            Err(_) => Err(ConnectError::Timeout("connection")),
            Ok((CmEvent::Established, _)) => {
                let (p, n) = conn.state.private();
                Ok((conn, p, n))
            }
            Ok((CmEvent::Rejected, status)) => {
                let (p, n) = conn.state.private();
                Err(ConnectError::Rejected(p, n, status))
            }
            Ok((_, status)) => Err(ConnectError::Unreachable("connecting", status)),
        }
    }

    fn expect(
        &self,
        want: CmEvent,
        ms: u32,
        step: &'static str,
    ) -> core::result::Result<(), ConnectError> {
        match self.state.wait(ms) {
            Err(_) => Err(ConnectError::Timeout(step)),
            Ok((e, _)) if e == want => Ok(()),
            Ok((_, status)) => Err(ConnectError::Unreachable(step, status)),
        }
    }

    /// Makes its waits poll an empty CQ for `us` before they sleep until
    /// the completion event. 0 (the default) sleeps at once: for a queue
    /// no task waits on (the reads ahead), where polling would only take
    /// the CPU from the tasks (and, under Soft-RoCE, from the softirqs that
    /// make the completions).
    pub(crate) fn set_poll_us(&mut self, us: u32) {
        self.spin_ns = us as u64 * 1000;
    }

    /// Has the peer gone (the CM said so, or a request failed)?
    pub(crate) fn lost(&self) -> bool {
        self.state.lost.load(Ordering::Acquire)
    }

    /// One RDMA READ or WRITE of the bytes `span` of `page` at `remote` in
    /// the server's region, waiting for its completion by polling, at most
    /// `timeout` jiffies.
    ///
    /// When this returns, in every case, the device no longer accesses the
    /// page: the DMA mapping is undone and the page may go back to the
    /// kernel. See `post_and_wait` for how each path ensures it.
    pub(crate) fn transfer(
        &mut self,
        page: &PageRef,
        span: Span,
        op: Op,
        remote: u64,
        rkey: u32,
        timeout: u64,
    ) -> core::result::Result<(), Failure> {
        self.transfer_batch::<1>(&[page], span, op, &[remote], rkey, timeout)
    }

    /// RDMA READs or WRITEs of `pages[i]` at `remotes[i]`, at most `N`
    /// (at most [`BATCH_MAX`]; the request arrays are `N` long, on the
    /// stack) and at most the queue's depth: posted as one chain of
    /// requests (one doorbell), then reaped together, at most `timeout`
    /// jiffies. Ok only if every one succeeded; a failure of any fails the
    /// batch, and the caller retries its pages one by one elsewhere.
    ///
    /// When this returns, in every case, the device no longer accesses any
    /// of the pages, and their DMA mappings are undone, as for `transfer`.
    /// Each page moves its bytes `span`.
    pub(crate) fn transfer_batch<const N: usize>(
        &mut self,
        pages: &[&PageRef],
        span: Span,
        op: Op,
        remotes: &[u64],
        rkey: u32,
        timeout: u64,
    ) -> core::result::Result<(), Failure> {
        let n = pages.len();
        if n == 0
            || n > N
            || N > BATCH_MAX
            || n > self.depth as usize
            || remotes.len() != n
            || !span.fits()
        {
            return Err(Failure::Post(code::EINVAL));
        }
        let (device, lkey) = match &self.pd {
            Some(pd) if !self.qp.is_null() => (pd.device, pd.lkey()),
            _ => return Err(Failure::TornDown),
        };
        if self.lost() {
            return Err(Failure::Disconnected);
        }
        self.settle(timeout)?;
        let dir = op.dma_dir();
        let mut dma = [0u64; N];
        let mut mapped = 0;
        let mut r = Ok(());
        for (i, page) in pages.iter().enumerate() {
            // SAFETY: each page is locked by the swap code for this call
            // and outlives it; `device` is the device of our QP and PD. The
            // mapping is undone below on every path.
            dma[i] = unsafe { bindings::ib_dma_map_page(device, page.as_ptr(), 0, PAGE_SIZE, dir) };
            // SAFETY: checks the address just returned, on the same device.
            if unsafe { bindings::ib_dma_mapping_error(device, dma[i]) } != 0 {
                r = Err(Failure::Post(code::EIO));
                break;
            }
            mapped += 1;
        }
        if r.is_ok() {
            let chain = Chain {
                lkey,
                dma: &dma[..n],
                span,
                op,
                remotes,
                rkey,
            };
            r = self.post_and_wait::<N>(&chain, timeout);
        }
        for &d in &dma[..mapped] {
            // SAFETY: unmaps what we mapped above, with the same device,
            // size and direction. post_and_wait returned (or was never
            // called), so the device is done with the pages: their
            // completions were reaped or the QP destroyed.
            unsafe { bindings::ib_dma_unmap_page(device, d, PAGE_SIZE, dir) };
        }
        r
    }

    /// Posts one request per mapped page of `dma` as one chain and returns
    /// only once the device cannot touch any of the pages any more:
    ///
    /// - the post failed: the device never saw the requests from the one
    ///   it refused on; those before it were posted and are reaped (or
    ///   flushed) as below before this returns;
    /// - every completion was reaped, successful or in error (an error
    ///   moves the QP to the error state, which flushes the rest; each
    ///   request is then finished);
    /// - not all completions within `timeout`: the QP is moved to the error
    ///   state (`to_error_state`, result checked) and the flush completions
    ///   of the missing requests (their wr_ids) are awaited for another
    ///   `timeout`; if moving to error fails or they are not all seen in
    ///   time, the QP is destroyed (`teardown`), which waits for the device
    ///   to stop using it. The connection is then refused for good.
    fn post_and_wait<const N: usize>(
        &mut self,
        chain: &Chain<'_>,
        timeout: u64,
    ) -> core::result::Result<(), Failure> {
        let op = chain.op;
        let (first, posted, refused) = self.post_chain::<N>(chain);
        if posted == 0 {
            return Err(refused.unwrap_or(Failure::Post(code::EIO)));
        }
        if let Some(status) = self.reap(first, posted, jiffies() + timeout) {
            if status == bindings::ib_wc_status_IB_WC_SUCCESS {
                return refused.map_or(Ok(()), Err);
            }
            return Err(self.failed(op, status));
        }
        // The requests are still the device's: flush them before the pages go.
        self.flush(op, timeout);
        Err(Failure::Timeout)
    }

    /// Posts `chain` (at most `N` requests): the first wr_id, how many
    /// were posted (those before the one the device refused, if it refused
    /// one), and why the rest were not.
    fn post_chain<const N: usize>(&mut self, chain: &Chain<'_>) -> (u64, usize, Option<Failure>) {
        let Chain {
            lkey,
            dma,
            span,
            op,
            remotes,
            rkey,
        } = *chain;
        let n = dma.len().min(N);
        let first = self.seq.wrapping_add(1);
        self.seq = self.seq.wrapping_add(n as u64);
        // SAFETY: zeroed is a valid ib_sge and ib_rdma_wr to fill in.
        let mut sge: [bindings::ib_sge; N] = unsafe { core::mem::zeroed() };
        // SAFETY: as above.
        let mut wr: [bindings::ib_rdma_wr; N] = unsafe { core::mem::zeroed() };
        for i in 0..n {
            sge[i] = bindings::ib_sge {
                addr: dma[i] + span.offset as u64,
                length: span.len,
                lkey,
            };
        }
        for i in (0..n).rev() {
            let next: *mut bindings::ib_send_wr = if i + 1 < n {
                &mut wr[i + 1].wr
            } else {
                ptr::null_mut()
            };
            let w = &mut wr[i];
            w.wr.__bindgen_anon_1.wr_id = first.wrapping_add(i as u64);
            w.wr.next = next;
            w.wr.sg_list = &mut sge[i];
            w.wr.num_sge = 1;
            w.wr.opcode = op.wr_opcode();
            w.wr.send_flags = bindings::ib_send_flags_IB_SEND_SIGNALED as c_int;
            w.remote_addr = remotes[i];
            w.rkey = rkey;
        }
        let mut bad: *const bindings::ib_send_wr = ptr::null();
        // SAFETY: `self.qp` is our live QP (checked non-null by the caller);
        // the chain in `wr` and `sge` is only read during the call (kernel
        // verbs copy each request into the send queue).
        let r = unsafe { bindings::ib_post_send(self.qp, &wr[0].wr, &mut bad) };
        if r == 0 {
            return (first, n, None);
        }
        // The refused request and those after it were not posted. A `bad`
        // that names none of ours: assume all were, so that they are reaped
        // or flushed before the pages go.
        let posted = (0..n)
            .find(|&i| ptr::eq(&wr[i].wr as *const bindings::ib_send_wr, bad))
            .unwrap_or(n);
        (first, posted, Some(Failure::Post(Error::from_errno(r))))
    }

    /// A request completed with error `status`: the QP is in the error
    /// state, so the connection is lost.
    fn failed(&mut self, op: Op, status: u32) -> Failure {
        pr_err!(
            "server {}: RDMA {} failed: completion status {}\n",
            self.peer,
            op.name(),
            status
        );
        self.state.lost.store(true, Ordering::Release);
        Failure::Completion(status)
    }

    /// The requests in `self.missing` did not complete in time: flushes
    /// them (the QP to the error state, then their flush completions
    /// awaited for another `timeout`), or destroys the QP if that fails.
    /// Either way the device is then done with them, and the connection
    /// is lost.
    fn flush(&mut self, op: Op, timeout: u64) {
        pr_err!(
            "server {}: RDMA {} timed out; flushing the queue\n",
            self.peer,
            op.name()
        );
        self.state.lost.store(true, Ordering::Release);
        if let Err(e) = self.to_error_state() {
            pr_err!(
                "server {}: moving the queue to the error state failed ({}); destroying it\n",
                self.peer,
                e.to_errno()
            );
            self.teardown();
        } else if self.reap_missing(jiffies() + timeout).is_none() {
            pr_err!(
                "server {}: RDMA {} not flushed in time; destroying the queue\n",
                self.peer,
                op.name()
            );
            self.teardown();
        }
    }

    /// Before a new request: waits for a late-bound read left in flight
    /// (the straggler of a late-bound load, see `post_late`), at most
    /// `timeout`, so that its send-queue entry and the bounce page are
    /// free. Past that the queue is flushed, as for any request, and the
    /// new request refused; if it failed, the queue is lost.
    fn settle(&mut self, timeout: u64) -> core::result::Result<(), Failure> {
        self.fresh = false;
        let (id, _) = match self.late {
            Some(l) => l,
            None => return Ok(()),
        };
        let r = match self.reap(id, 1, jiffies() + timeout) {
            Some(status) if status == bindings::ib_wc_status_IB_WC_SUCCESS => Ok(()),
            Some(status) => Err(self.failed(Op::Read, status)),
            None => {
                self.flush(Op::Read, timeout);
                Err(Failure::Timeout)
            }
        };
        self.end_late();
        r
    }

    /// Unmaps the bounce page of the late-bound read, once the device is
    /// done with it: its completion was reaped, or the QP destroyed.
    fn end_late(&mut self) {
        if let (Some((_, dma)), Some(pd)) = (self.late.take(), &self.pd) {
            // SAFETY: mapped by `post_late` on this device with this size
            // and direction, unmapped once (`late` is now None); the
            // caller saw its completion or destroyed the QP.
            unsafe { bindings::ib_dma_unmap_page(pd.device, dma, PAGE_SIZE, Op::Read.dma_dir()) };
        }
    }

    /// Late binding (ec.rs): posts one RDMA READ of `len` bytes at
    /// `remote` into this queue's bounce page, and returns without waiting
    /// for it. `poll_late` reaps it, and `late_bytes` then gives what it
    /// read. Its caller may also leave it in flight and release the queue
    /// (it had enough chunks from other servers): the next request here
    /// waits for it first (`settle`), and `teardown` ends it.
    pub(crate) fn post_late(
        &mut self,
        len: u32,
        remote: u64,
        rkey: u32,
        timeout: u64,
    ) -> core::result::Result<(), Failure> {
        let (device, lkey) = match &self.pd {
            Some(pd) if !self.qp.is_null() => (pd.device, pd.lkey()),
            _ => return Err(Failure::TornDown),
        };
        if self.lost() {
            return Err(Failure::Disconnected);
        }
        if len as usize > PAGE_SIZE {
            return Err(Failure::Post(code::EINVAL));
        }
        self.settle(timeout)?;
        if self.bounce.is_none() {
            // Memory is short: not the server's fault, so not a failure.
            self.bounce = Some(OwnedPage::alloc(GFP_SWAPOUT).map_err(|_| Failure::Busy)?);
        }
        let page = match self.bounce.as_mut() {
            Some(b) => b.borrow_mut(),
            None => return Err(Failure::Busy),
        };
        let dir = Op::Read.dma_dir();
        // SAFETY: the bounce page is ours and lives as long as the Conn;
        // `device` is the device of our QP and PD. Unmapped by `end_late`
        // once the device is done with it.
        let dma = unsafe { bindings::ib_dma_map_page(device, page.as_ptr(), 0, PAGE_SIZE, dir) };
        // SAFETY: checks the address just returned, on the same device.
        if unsafe { bindings::ib_dma_mapping_error(device, dma) } != 0 {
            return Err(Failure::Post(code::EIO));
        }
        let chain = Chain {
            lkey,
            dma: &[dma],
            span: Span { offset: 0, len },
            op: Op::Read,
            remotes: &[remote],
            rkey,
        };
        let (first, posted, refused) = self.post_chain::<1>(&chain);
        if posted == 0 {
            // SAFETY: the device never saw the request: unmap what we
            // mapped above, with the same size and direction.
            unsafe { bindings::ib_dma_unmap_page(device, dma, PAGE_SIZE, dir) };
            return Err(refused.unwrap_or(Failure::Post(code::EIO)));
        }
        self.late = Some((first, dma));
        self.first = first;
        self.missing = 1;
        self.failed = bindings::ib_wc_status_IB_WC_SUCCESS;
        Ok(())
    }

    /// Polls the CQ once for the late-bound read, without waiting: None
    /// while it is in flight (or there is none), Some(Ok) once it read its
    /// bytes (`late_bytes`), Some(Err) if it failed (the queue is lost).
    pub(crate) fn poll_late(&mut self) -> Option<core::result::Result<(), Failure>> {
        self.late?;
        // A deadline already past: reaps what the CQ holds, then returns.
        let status = self.reap_missing(jiffies().wrapping_sub(1))?;
        self.end_late();
        if status == bindings::ib_wc_status_IB_WC_SUCCESS {
            self.fresh = true;
            Some(Ok(()))
        } else {
            Some(Err(self.failed(Op::Read, status)))
        }
    }

    /// Sleeps until this queue's next completion, at most `jiffies`: for a
    /// late-bound load waiting on several queues.
    pub(crate) fn wait_late(&self, jiffies: u64) {
        if let (Some(events), false) = (&self.events, self.cq.is_null()) {
            events.wait(self.cq, jiffies);
        }
    }

    /// Whether a late-bound read from an earlier load is still in flight
    /// here (polled once, without waiting): a load then does without this
    /// queue rather than wait for it.
    pub(crate) fn straggling(&mut self) -> bool {
        if self.late.is_none() {
            return false;
        }
        let ended = self.poll_late().is_some();
        self.fresh = false;
        !ended
    }

    /// Whether a waiter that began at `since` (`now_ns`) should still spin
    /// on the CQs rather than sleep (`poll_us`, see `reap_missing`).
    pub(crate) fn spins(&self, since: u64) -> bool {
        self.spin_ns > 0 && !need_resched() && now_ns().saturating_sub(since) < self.spin_ns
    }

    /// Runs `f` on the first `len` bytes the late-bound read brought, once
    /// `poll_late` said it did.
    pub(crate) fn late_bytes<R>(&mut self, len: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        if !self.fresh {
            return None;
        }
        let page = self.bounce.as_mut()?.borrow_mut();
        Some(page.with_bytes(|b| f(&b[..len.min(PAGE_SIZE)])))
    }

    /// Polls the CQ until the completions of the `count` requests from
    /// `first` on were all seen: Some(status), the first error's, or
    /// success if none failed; None once jiffies pass `deadline` (the ones
    /// still missing stay in `self.missing`).
    fn reap(&mut self, first: u64, count: usize, deadline: u64) -> Option<u32> {
        self.missing = if count >= 64 {
            u64::MAX
        } else {
            (1u64 << count) - 1
        };
        self.first = first;
        self.failed = bindings::ib_wc_status_IB_WC_SUCCESS;
        self.reap_missing(deadline)
    }

    /// Polls until every request in `self.missing` completed (see `reap`).
    /// An empty CQ is polled for `spin_ns`, then the waiter sleeps until
    /// the device signals a completion: it never yields the CPU while
    /// holding the queue only to poll again later.
    fn reap_missing(&mut self, deadline: u64) -> Option<u32> {
        let mut spin_from = 0u64;
        let mut empty = 0u32;
        while self.missing != 0 {
            // SAFETY: zeroed is a valid ib_wc for the CQ to fill.
            let mut wc: bindings::ib_wc = unsafe { core::mem::zeroed() };
            // SAFETY: our live CQ (a QP exists, so the CQ does), polled only
            // by the holder of `&mut self`; room for one entry.
            let n = unsafe { bindings::ib_poll_cq(self.cq, 1, &mut wc) };
            if n > 0 {
                // SAFETY: we post with wr_id, so that is the member to read.
                let id = unsafe { wc.__bindgen_anon_1.wr_id };
                let i = id.wrapping_sub(self.first);
                // Not ours (nothing else should be outstanding: every
                // batch, and a late-bound straggler, is reaped or its QP
                // destroyed before the next): skip it.
                if i < 64 && self.missing & (1 << i) != 0 {
                    self.missing &= !(1 << i);
                    if wc.status != bindings::ib_wc_status_IB_WC_SUCCESS
                        && self.failed == bindings::ib_wc_status_IB_WC_SUCCESS
                    {
                        self.failed = wc.status;
                    }
                }
                spin_from = 0;
                empty = 0;
                continue;
            }
            // Jiffies left, read once: a deadline that passes between two
            // reads must not turn into an unbounded wait.
            let left = deadline.wrapping_sub(jiffies()) as i64;
            if left <= 0 {
                return None;
            }
            // Spin, reading the clock (an emulated HPET under TCG is an
            // expensive read) once every 32 empty polls, and only until
            // something else wants this CPU (a non-preemptible kernel
            // would not take it from us).
            empty += 1;
            if self.spin_ns > 0 && !need_resched() {
                if spin_from == 0 {
                    spin_from = now_ns();
                }
                if empty % 32 != 0 || now_ns() - spin_from < self.spin_ns {
                    core::hint::spin_loop();
                    continue;
                }
            }
            if let Some(events) = &self.events {
                events.wait(self.cq, left as u64);
            }
        }
        Some(self.failed)
    }

    /// Moves the QP to the error state, which flushes outstanding requests.
    fn to_error_state(&mut self) -> Result {
        // SAFETY: zeroed is a valid ib_qp_attr; only qp_state is used.
        let mut attr: bindings::ib_qp_attr = unsafe { core::mem::zeroed() };
        attr.qp_state = bindings::ib_qp_state_IB_QPS_ERR;
        // SAFETY: our live QP (callers hold `&mut self` and checked it);
        // `attr` outlives the call.
        let r = unsafe {
            bindings::ib_modify_qp(
                self.qp,
                &mut attr,
                bindings::ib_qp_attr_mask_IB_QP_STATE as c_int,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(Error::from_errno(r))
        }
    }

    /// Destroys the QP. rdma_destroy_qp returns once the device has stopped
    /// using it, so pages its requests referenced may then be unmapped.
    /// Idempotent: later transfers are refused and Drop skips the QP.
    fn teardown(&mut self) {
        if self.qp.is_null() {
            return;
        }
        self.state.lost.store(true, Ordering::Release);
        // SAFETY: the id carries our QP, destroyed once (qp is then null);
        // rdma_destroy_qp takes the CM's qp_mutex, so the CM (which checks
        // for a null QP under it) never touches the QP after this.
        unsafe { bindings::rdma_destroy_qp(self.id) };
        self.qp = ptr::null_mut();
        // The device no longer reads into the bounce page.
        self.end_late();
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.state.established.load(Ordering::Acquire) {
            // SAFETY: a connected id; the CM copes with a destroyed QP.
            unsafe { bindings::rdma_disconnect(self.id) };
        }
        self.teardown();
        if !self.cq.is_null() {
            // SAFETY: our CQ; the QP using it is destroyed just above.
            unsafe { bindings::ib_free_cq(self.cq) };
        }
        // After the CQ: no completion handler can run now.
        drop(self.events.take());
        // The PD before the id: a device being removed waits only for its
        // CM ids, and then frees everything; nothing of ours may be left
        // on it by then.
        drop(self.pd.take());
        // SAFETY: our id, destroyed once; rdma_destroy_id waits for a
        // running handler, after which `state` (dropped after us) may go.
        unsafe { bindings::rdma_destroy_id(self.id) };
    }
}

// ---------------------------------------------------------------------------
// The reads-ahead workqueue.

extern "C" {
    fn rswap_rdma_ahead_wq_create() -> c_int;
    fn rswap_rdma_ahead_kick(cpu: core::ffi::c_uint);
    fn rswap_rdma_ahead_wq_destroy();
}

/// The workqueue of the reads ahead (rswap_rdma_glue.c): one work item
/// per CPU, which calls `rswap_rdma_ahead(cpu)` (ahead.rs). One at a time
/// exists (the glue's workqueue is a static).
pub(crate) struct AheadWq(());

impl AheadWq {
    pub(crate) fn new() -> Result<AheadWq> {
        // SAFETY: no arguments; creates the glue's workqueue.
        let r = unsafe { rswap_rdma_ahead_wq_create() };
        if r != 0 {
            return Err(Error::from_errno(r));
        }
        Ok(AheadWq(()))
    }

    /// Runs CPU `cpu`'s work item soon, unless it is already queued.
    pub(crate) fn kick(&self, cpu: usize) {
        // SAFETY: the workqueue exists while `self` does; the glue queues
        // the work on that CPU, or, offline, wherever it may run.
        unsafe { rswap_rdma_ahead_kick(cpu as core::ffi::c_uint) }
    }
}

impl Drop for AheadWq {
    fn drop(&mut self) {
        // SAFETY: destroys the workqueue created in `new`, after running
        // what is queued and waiting for what runs; nobody kicks it any
        // more (`self` is going).
        unsafe { rswap_rdma_ahead_wq_destroy() }
    }
}

// ---------------------------------------------------------------------------
// Words in vmalloc'd memory.

/// Zeroed words from vmalloc, for the free-slot map (slotmap.rs), which is
/// 32 MiB for a 1 TiB region: too big for kmalloc.
pub(crate) struct VWords {
    ptr: *mut u64,
    len: usize,
}

// SAFETY: plain memory owned by this value; used as `&[u64]`/`&mut [u64]`.
unsafe impl Send for VWords {}
// SAFETY: as for Send.
unsafe impl Sync for VWords {}

impl VWords {
    pub(crate) fn new(len: usize) -> Result<VWords> {
        let bytes = len.max(1).checked_mul(8).ok_or(code::ENOMEM)?;
        // SAFETY: allocates zeroed memory, freed in Drop.
        let ptr = unsafe { bindings::vzalloc(bytes as _) } as *mut u64;
        if ptr.is_null() {
            return Err(code::ENOMEM);
        }
        Ok(VWords { ptr, len })
    }
}

impl crate::slotmap::Words for VWords {
    fn words(&self) -> &[u64] {
        // SAFETY: `len` words allocated (and zeroed) in `new`, ours.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn words_mut(&mut self) -> &mut [u64] {
        // SAFETY: as above; `&mut self` makes this the only reference.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for VWords {
    fn drop(&mut self) {
        // SAFETY: allocated by vzalloc in `new`, freed once.
        unsafe { bindings::vfree(self.ptr as *const c_void) };
    }
}

// ---------------------------------------------------------------------------
// A periodic kernel thread.

struct WorkerInner<T> {
    ctx: Box<T>,
    work: fn(&T),
    period: u64,
}

/// A kernel thread that calls `work(ctx)` every `period_ms` until the
/// Worker is dropped. The Worker owns `ctx`; drop stops the thread (and
/// waits for a running `work` to return) before `ctx` goes, so the thread
/// never sees it freed.
pub(crate) struct Worker<T: Sync> {
    task: *mut bindings::task_struct,
    inner: Box<WorkerInner<T>>,
}

// SAFETY: the task pointer is only passed to kthread_stop, from any thread;
// `ctx` is shared with the thread by reference only (Sync) and dropped by
// whichever thread drops the Worker (Send).
unsafe impl<T: Send + Sync> Send for Worker<T> {}
// SAFETY: as for Send: through `&Worker` only `ctx` is reachable, as `&T`.
unsafe impl<T: Send + Sync> Sync for Worker<T> {}

unsafe extern "C" fn worker_main<T: Sync>(data: *mut c_void) -> c_int {
    // SAFETY: `data` is the WorkerInner given to kthread_create_on_node; it
    // outlives the thread (Worker's drop stops the thread first).
    let w = unsafe { &*(data as *const WorkerInner<T>) };
    // SAFETY: called on this kthread.
    while !unsafe { bindings::kthread_should_stop() } {
        (w.work)(&w.ctx);
        // SAFETY: sleeps interruptibly (not counted as hung); kthread_stop
        // wakes us.
        unsafe { bindings::schedule_timeout_interruptible(w.period as _) };
    }
    0
}

impl<T: Sync> Worker<T> {
    /// Starts the thread, named `name` (NUL-terminated).
    pub(crate) fn start(
        name: &'static [u8],
        ctx: Box<T>,
        work: fn(&T),
        period_ms: u32,
    ) -> Result<Worker<T>> {
        if name.last() != Some(&0) {
            return Err(code::EINVAL);
        }
        let inner = try_box(WorkerInner {
            ctx,
            work,
            period: ms_to_jiffies(period_ms),
        })?;
        // SAFETY: `inner` is boxed, so its address is stable, and it lives
        // until after kthread_stop (Drop); `name` is a NUL-terminated
        // format without conversions.
        let task = unsafe {
            bindings::kthread_create_on_node(
                Some(worker_main::<T>),
                &*inner as *const WorkerInner<T> as *mut c_void,
                bindings::NUMA_NO_NODE,
                name.as_ptr() as *const _,
            )
        };
        if is_err_ptr(task) {
            return Err(ptr_err(task));
        }
        // SAFETY: a thread just created and not yet woken.
        unsafe { bindings::wake_up_process(task) };
        Ok(Worker { task, inner })
    }

    /// The context the thread works on.
    pub(crate) fn ctx(&self) -> &T {
        &self.inner.ctx
    }
}

impl<T: Sync> Drop for Worker<T> {
    fn drop(&mut self) {
        // SAFETY: our thread, which runs until kthread_stop (it never
        // returns by itself); kthread_stop waits for it to exit, after
        // which `inner` may be freed.
        unsafe { bindings::kthread_stop(self.task) };
    }
}

// ---------------------------------------------------------------------------
// Module parameters.

/// The module parameters (declared in rswap_rdma_glue.c), read as raw
/// values; params.rs validates them.
pub(crate) mod params {
    use core::ffi::{c_char, c_int, c_uint, c_ulong};

    extern "C" {
        fn rswap_rdma_param_servers() -> *const c_char;
        fn rswap_rdma_param_secret() -> *const c_char;
        fn rswap_rdma_param_redundancy() -> *const c_char;
        fn rswap_rdma_param_mib_per_server() -> c_uint;
        fn rswap_rdma_param_timeout_ms() -> c_uint;
        fn rswap_rdma_param_node_id() -> c_ulong;
        fn rswap_rdma_param_loss_timeout_s() -> c_uint;
        fn rswap_rdma_param_placement() -> c_int;
        fn rswap_rdma_param_follow_upstream() -> bool;
        fn rswap_rdma_param_async_loads() -> bool;
        fn rswap_rdma_param_readahead_depth() -> c_uint;
        fn rswap_rdma_param_poll_us() -> c_uint;
        fn rswap_rdma_param_late_binding() -> bool;
        fn rswap_rdma_param_repair_mib_s() -> c_uint;
    }

    fn c_str(p: *const c_char) -> Option<&'static [u8]> {
        if p.is_null() {
            return None;
        }
        let mut n: usize = 0;
        // SAFETY: a charp module parameter is NUL-terminated and lives as
        // long as the module; we stop at the NUL (or 4 KiB).
        while n < 4096 && unsafe { *p.add(n) } != 0 {
            n += 1;
        }
        // SAFETY: the `n` bytes checked above.
        Some(unsafe { core::slice::from_raw_parts(p as *const u8, n) })
    }

    pub(crate) fn servers() -> Option<&'static [u8]> {
        // SAFETY: reads a parameter pointer; no side effects.
        c_str(unsafe { rswap_rdma_param_servers() })
    }

    pub(crate) fn secret() -> Option<&'static [u8]> {
        // SAFETY: as above.
        c_str(unsafe { rswap_rdma_param_secret() })
    }

    pub(crate) fn redundancy() -> Option<&'static [u8]> {
        // SAFETY: as above.
        c_str(unsafe { rswap_rdma_param_redundancy() })
    }

    pub(crate) fn mib_per_server() -> u32 {
        // SAFETY: as above.
        unsafe { rswap_rdma_param_mib_per_server() }
    }

    pub(crate) fn timeout_ms() -> u32 {
        // SAFETY: as above.
        unsafe { rswap_rdma_param_timeout_ms() }
    }

    pub(crate) fn node_id() -> u64 {
        // SAFETY: as above.
        unsafe { rswap_rdma_param_node_id() as u64 }
    }

    pub(crate) fn follow_upstream() -> bool {
        // SAFETY: as above.
        unsafe { rswap_rdma_param_follow_upstream() }
    }

    pub(crate) fn async_loads() -> bool {
        // SAFETY: as above.
        unsafe { rswap_rdma_param_async_loads() }
    }

    /// `late_binding=`, writable at run time: read at each load.
    pub(crate) fn late_binding() -> bool {
        // SAFETY: reads a module parameter (READ_ONCE in the glue).
        unsafe { rswap_rdma_param_late_binding() }
    }

    pub(crate) fn poll_us() -> u32 {
        // SAFETY: reads a module parameter.
        unsafe { rswap_rdma_param_poll_us() }
    }

    pub(crate) fn readahead_depth() -> u32 {
        // SAFETY: as above.
        unsafe { rswap_rdma_param_readahead_depth() }
    }

    pub(crate) fn repair_mib_s() -> u32 {
        // SAFETY: as above.
        unsafe { rswap_rdma_param_repair_mib_s() }
    }

    pub(crate) fn loss_timeout_s() -> u32 {
        // SAFETY: as above.
        unsafe { rswap_rdma_param_loss_timeout_s() }
    }

    /// The placement policy's index (0, 1 or 2); it may change at any
    /// time (the parameter is writable).
    pub(crate) fn placement() -> u32 {
        // SAFETY: as above (a READ_ONCE of an int).
        unsafe { rswap_rdma_param_placement() as u32 }
    }
}
