// SPDX-License-Identifier: GPL-2.0
//! FFI layer of rswap_rdma: kernel RDMA CM connections, protection domains
//! and one-sided RDMA READ/WRITE of a page with polled completion. Every
//! `unsafe` block of the module is here.

use crate::ffi::{try_box, PageRef, PAGE_SIZE};
use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use kernel::bindings;
use kernel::error::code;
use kernel::prelude::*;

/// Largest CM private data we keep.
pub(crate) const PRIVATE_MAX: usize = 56;

fn is_err_ptr<T>(p: *mut T) -> bool {
    (p as usize) >= (-(bindings::MAX_ERRNO as isize)) as usize
}

fn ptr_err<T>(p: *mut T) -> Error {
    Error::from_errno(p as isize as c_int)
}

/// Current jiffies.
pub(crate) fn jiffies() -> u64 {
    // SAFETY: `jiffies` is a kernel global updated by the timer; a volatile
    // read of an aligned word is how C reads it too.
    unsafe { ptr::read_volatile(ptr::addr_of!(bindings::jiffies)) as u64 }
}

pub(crate) fn ms_to_jiffies(ms: u32) -> u64 {
    // SAFETY: pure conversion.
    unsafe { bindings::__msecs_to_jiffies(ms) as u64 }
}

/// Monotonic nanoseconds.
pub(crate) fn now_ns() -> u64 {
    // SAFETY: no arguments, callable from any context.
    unsafe { bindings::ktime_get() as u64 }
}

pub(crate) fn random_u64() -> u64 {
    // SAFETY: no arguments.
    unsafe { bindings::get_random_u64() }
}

pub(crate) fn random_below(n: u64) -> u64 {
    // SAFETY: no arguments.
    let r = unsafe { bindings::get_random_u32() } as u64;
    (r * n) >> 32
}

/// Yields the CPU if something else should run.
pub(crate) fn cond_resched() {
    // SAFETY: called from process context that may sleep.
    unsafe { bindings::__cond_resched() };
}

pub(crate) fn cpu_id() -> usize {
    // SAFETY: no arguments; the result is a hint (we may migrate).
    unsafe { bindings::raw_smp_processor_id() as usize }
}

pub(crate) fn nr_cpus() -> usize {
    // SAFETY: set at boot, read-only afterwards.
    unsafe { ptr::read_volatile(ptr::addr_of!(bindings::nr_cpu_ids)) as usize }
}

/// What the CM event handler saw last. Shared between the handler (CM
/// workqueue) and the thread waiting on `done`.
pub(crate) struct CmState {
    done: UnsafeCell<bindings::completion>,
    event: AtomicU32,
    status: AtomicI32,
    private: UnsafeCell<[u8; PRIVATE_MAX]>,
    private_len: AtomicUsize,
    established: AtomicBool,
    /// Set when an established connection goes away.
    pub(crate) lost: AtomicBool,
}

// SAFETY: the completion is used through the kernel API (its own lock);
// `private` is written by the handler before complete() and read by the
// waiter after the wait returned, which orders the accesses.
unsafe impl Send for CmState {}
// SAFETY: as for Send.
unsafe impl Sync for CmState {}

/// The events rswap_rdma acts on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum CmEvent {
    AddrResolved,
    RouteResolved,
    Established,
    Rejected,
    Unreachable,
    Other(u32),
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
        other => CmEvent::Other(other),
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
        // CM serialises handler calls for one id.
        unsafe { ptr::copy_nonoverlapping(p as *const u8, (*st.private.get()).as_mut_ptr(), n) };
        st.private_len.store(n, Ordering::Release);
    }
    if cm_event(kind) == CmEvent::Established {
        st.established.store(true, Ordering::Release);
    }
    st.status.store(ev.status, Ordering::Release);
    st.event.store(kind, Ordering::Release);
    // SAFETY: initialised completion.
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
        // SAFETY: re-arm for the next step; the handler has completed.
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

/// A protection domain on a device; deallocated on drop.
pub(crate) struct Pd {
    pd: *mut bindings::ib_pd,
    device: *mut bindings::ib_device,
}

// SAFETY: verbs objects may be used from any thread.
unsafe impl Send for Pd {}
// SAFETY: as for Send; we only read `local_dma_lkey`.
unsafe impl Sync for Pd {}

impl Pd {
    fn lkey(&self) -> u32 {
        // SAFETY: valid PD until drop.
        unsafe { (*self.pd).local_dma_lkey }
    }
}

impl Drop for Pd {
    fn drop(&mut self) {
        // SAFETY: every QP and CQ using it is destroyed first (Server drops
        // its connections before its PD).
        unsafe { bindings::ib_dealloc_pd_user(self.pd, ptr::null_mut()) };
    }
}

/// Why a connection attempt failed, for the log.
pub(crate) enum ConnectError {
    Timeout(&'static str),
    Unreachable(&'static str, i32),
    Rejected([u8; PRIVATE_MAX], usize, i32),
    Setup(&'static str, Error),
}

/// One reliable connection with its own CQ; torn down on drop.
pub(crate) struct Conn {
    id: *mut bindings::rdma_cm_id,
    cq: *mut bindings::ib_cq,
    state: Box<CmState>,
    seq: AtomicU64,
}

// SAFETY: the id, QP and CQ are used under the owning queue's busy flag.
unsafe impl Send for Conn {}
// SAFETY: as for Send.
unsafe impl Sync for Conn {}

/// An IPv4 address and port.
#[derive(Clone, Copy)]
pub(crate) struct Endpoint {
    pub(crate) ip: [u8; 4],
    pub(crate) port: u16,
}

impl Conn {
    /// Connects to `to`, sending `request` as private data. Creates the
    /// server's PD in `pd` on first use. Every step is bounded by `ms`.
    pub(crate) fn connect(
        to: Endpoint,
        pd: &mut Option<Pd>,
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
        let mut conn = Conn {
            id,
            cq: ptr::null_mut(),
            state,
            seq: AtomicU64::new(0),
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
        if pd.is_none() {
            // SAFETY: a live device; the caller name is a static string.
            let p =
                unsafe { bindings::__ib_alloc_pd(device, 0, b"rswap_rdma\0".as_ptr() as *const _) };
            if is_err_ptr(p) {
                return Err(ConnectError::Setup("ib_alloc_pd", ptr_err(p)));
            }
            *pd = Some(Pd { pd: p, device });
        }
        let pdr = pd.as_ref().unwrap();
        if pdr.device != device {
            return Err(ConnectError::Setup(
                "second device for one server",
                code::EINVAL,
            ));
        }
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
        let r = unsafe { bindings::rdma_create_qp(id, pdr.pd, &mut attr) };
        if r != 0 {
            return Err(ConnectError::Setup("rdma_create_qp", Error::from_errno(r)));
        }
        // SAFETY: zeroed is a valid rdma_conn_param to fill in.
        let mut param: bindings::rdma_conn_param = unsafe { core::mem::zeroed() };
        param.private_data = request.as_ptr() as *const c_void;
        param.private_data_len = request.len() as u8;
        param.initiator_depth = depth.min(16) as u8;
        param.responder_resources = 0;
        param.retry_count = 7;
        param.rnr_retry_count = 7;
        // SAFETY: valid id with a QP; not called from the CM handler, so
        // rdma_connect (which takes the handler mutex) is the right call.
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

    /// Has the peer gone (CM said so)?
    pub(crate) fn lost(&self) -> bool {
        self.state.lost.load(Ordering::Acquire)
    }

    /// One RDMA READ (`write == false`) or WRITE of `page` at `remote` in
    /// the server's region, waiting for its completion by polling, at most
    /// `timeout` jiffies. On timeout the QP is moved to the error state so
    /// the request is flushed before the page is given back.
    pub(crate) fn transfer(
        &self,
        pd: &Pd,
        page: &PageRef,
        write: bool,
        remote: u64,
        rkey: u32,
        timeout: u64,
    ) -> Result {
        let dir = if write {
            bindings::dma_data_direction_DMA_TO_DEVICE
        } else {
            bindings::dma_data_direction_DMA_FROM_DEVICE
        };
        // SAFETY: the page is locked by the swap code for this call; the
        // mapping is undone below in every path.
        let dma = unsafe { bindings::ib_dma_map_page(pd.device, page.as_ptr(), 0, PAGE_SIZE, dir) };
        // SAFETY: checks the address just returned.
        if unsafe { bindings::ib_dma_mapping_error(pd.device, dma) } != 0 {
            return Err(code::EIO);
        }
        let r = self.post_and_wait(pd, dma, write, remote, rkey, timeout);
        // SAFETY: unmaps what we mapped above, with the same direction, once
        // the request is complete or flushed.
        unsafe { bindings::ib_dma_unmap_page(pd.device, dma, PAGE_SIZE, dir) };
        r
    }

    fn post_and_wait(
        &self,
        pd: &Pd,
        dma: u64,
        write: bool,
        remote: u64,
        rkey: u32,
        timeout: u64,
    ) -> Result {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let mut sge = bindings::ib_sge {
            addr: dma,
            length: PAGE_SIZE as u32,
            lkey: pd.lkey(),
        };
        // SAFETY: zeroed is a valid ib_rdma_wr to fill in.
        let mut wr: bindings::ib_rdma_wr = unsafe { core::mem::zeroed() };
        wr.wr.__bindgen_anon_1.wr_id = seq;
        wr.wr.sg_list = &mut sge;
        wr.wr.num_sge = 1;
        wr.wr.opcode = if write {
            bindings::ib_wr_opcode_IB_WR_RDMA_WRITE
        } else {
            bindings::ib_wr_opcode_IB_WR_RDMA_READ
        };
        wr.wr.send_flags = bindings::ib_send_flags_IB_SEND_SIGNALED as c_int;
        wr.remote_addr = remote;
        wr.rkey = rkey;
        let mut bad = ptr::null();
        // SAFETY: the id has a QP (connect succeeded); `wr` and `sge` live
        // until the completion is reaped below.
        let r = unsafe { bindings::ib_post_send((*self.id).qp, &wr.wr, &mut bad) };
        if r != 0 {
            return Err(Error::from_errno(r));
        }
        let deadline = jiffies() + timeout;
        let mut timed_out = false;
        loop {
            // SAFETY: zeroed is a valid ib_wc for the CQ to fill.
            let mut wc: bindings::ib_wc = unsafe { core::mem::zeroed() };
            // SAFETY: our CQ, polled only by the queue's holder.
            let n = unsafe { bindings::ib_poll_cq(self.cq, 1, &mut wc) };
            if n > 0 {
                // SAFETY: we post with wr_id, so that is the member to read.
                if unsafe { wc.__bindgen_anon_1.wr_id } != seq {
                    continue; // a flushed leftover of an earlier request
                }
                if timed_out {
                    return Err(code::ETIMEDOUT);
                }
                if wc.status != bindings::ib_wc_status_IB_WC_SUCCESS {
                    pr_err!(
                        "RDMA {} failed: completion status {}\n",
                        if write { "write" } else { "read" },
                        wc.status
                    );
                    self.state.lost.store(true, Ordering::Release);
                    return Err(code::EIO);
                }
                return Ok(());
            }
            if !timed_out && jiffies() > deadline {
                pr_err!(
                    "RDMA {} timed out; flushing the queue\n",
                    if write { "write" } else { "read" }
                );
                self.state.lost.store(true, Ordering::Release);
                self.to_error_state();
                timed_out = true;
                continue;
            }
            if timed_out && jiffies() > deadline + ms_to_jiffies(5000) {
                // The flush never came: we cannot know when the device is
                // done with the page. Keep the mapping and report loudly.
                pr_err!("RDMA request never flushed; the queue is unusable\n");
                return Err(code::EIO);
            }
            cond_resched();
        }
    }

    /// Moves the QP to the error state, which flushes outstanding requests.
    fn to_error_state(&self) {
        // SAFETY: zeroed is a valid ib_qp_attr; only qp_state is used.
        let mut attr: bindings::ib_qp_attr = unsafe { core::mem::zeroed() };
        attr.qp_state = bindings::ib_qp_state_IB_QPS_ERR;
        // SAFETY: valid QP.
        unsafe {
            bindings::ib_modify_qp(
                (*self.id).qp,
                &mut attr,
                bindings::ib_qp_attr_mask_IB_QP_STATE as c_int,
            )
        };
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: tears down in reverse order of creation; rdma_destroy_id
        // waits for a running handler, after which `state` may go.
        unsafe {
            if self.state.established.load(Ordering::Acquire) {
                bindings::rdma_disconnect(self.id);
            }
            if !(*self.id).qp.is_null() {
                bindings::rdma_destroy_qp(self.id);
            }
            if !self.cq.is_null() {
                bindings::ib_free_cq(self.cq);
            }
            bindings::rdma_destroy_id(self.id);
        }
    }
}

/// The module parameters (declared in rswap_rdma_glue.c).
pub(crate) mod params {
    use core::ffi::{c_char, c_uint, c_ulong};

    extern "C" {
        fn rswap_rdma_param_servers() -> *const c_char;
        fn rswap_rdma_param_secret() -> *const c_char;
        fn rswap_rdma_param_mib_per_server() -> c_uint;
        fn rswap_rdma_param_timeout_ms() -> c_uint;
        fn rswap_rdma_param_node_id() -> c_ulong;
    }

    fn c_str(p: *const c_char) -> Option<&'static [u8]> {
        if p.is_null() {
            return None;
        }
        let mut n = 0;
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
}
