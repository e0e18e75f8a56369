//! Safe wrappers over the parts of librdmacm/libibverbs memserver uses.
//! All of memserver's FFI `unsafe` is in this file.

use crate::sys;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::raw::c_void;
use std::ptr;

fn errno_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn sockaddr_in(addr: SocketAddrV4) -> sys::sockaddr_in {
    sys::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: addr.port().to_be(),
        sin_addr: sys::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        ..Default::default()
    }
}

/// An RDMA CM event channel; its fd is set non-blocking.
pub struct EventChannel(*mut sys::rdma_event_channel);

impl EventChannel {
    pub fn new() -> io::Result<EventChannel> {
        // SAFETY: plain constructor; NULL means failure (errno set).
        let ch = unsafe { sys::rdma_create_event_channel() };
        if ch.is_null() {
            return Err(errno_err(
                "rdma_create_event_channel (is an RDMA device up? rdma link add ...)",
            ));
        }
        // SAFETY: `ch` is valid; its fd is a plain file descriptor.
        let fd = unsafe { (*ch).fd };
        // SAFETY: fcntl on a valid fd.
        unsafe {
            libc::fcntl(
                fd,
                libc::F_SETFL,
                libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
            )
        };
        Ok(EventChannel(ch))
    }

    /// Waits up to `timeout_ms` for an event.
    pub fn next(&self, timeout_ms: i32) -> io::Result<Option<Event>> {
        // SAFETY: the channel is valid while self lives.
        let mut pfd = libc::pollfd {
            fd: unsafe { (*self.0).fd },
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if n <= 0 {
            let e = io::Error::last_os_error();
            return if n == 0 || e.kind() == io::ErrorKind::Interrupted {
                Ok(None)
            } else {
                Err(e)
            };
        }
        let mut ev = ptr::null_mut();
        // SAFETY: valid channel and out pointer.
        if unsafe { sys::rdma_get_cm_event(self.0, &mut ev) } != 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(None)
            } else {
                Err(e)
            };
        }
        Ok(Some(Event(ev)))
    }

    /// A listening id bound to `addr`.
    pub fn listen(&self, addr: SocketAddrV4, backlog: i32) -> io::Result<Listener> {
        let mut id = ptr::null_mut();
        // SAFETY: valid channel and out pointer; no context.
        if unsafe {
            sys::rdma_create_id(
                self.0,
                &mut id,
                ptr::null_mut(),
                sys::rdma_port_space_RDMA_PS_TCP,
            )
        } != 0
        {
            return Err(errno_err("rdma_create_id"));
        }
        let l = Listener(ConnId(id));
        let mut sin = sockaddr_in(addr);
        // SAFETY: `id` is valid; `sin` is a sockaddr_in of the right size.
        if unsafe { sys::rdma_bind_addr(id, &mut sin as *mut _ as *mut sys::sockaddr) } != 0 {
            return Err(errno_err(&format!(
                "rdma_bind_addr {addr} (no RDMA device on that address, or port taken)"
            )));
        }
        // SAFETY: a bound id.
        if unsafe { sys::rdma_listen(id, backlog) } != 0 {
            return Err(errno_err("rdma_listen"));
        }
        Ok(l)
    }
}

impl Drop for EventChannel {
    fn drop(&mut self) {
        // SAFETY: every id on the channel is destroyed first (owners drop
        // before the channel in Server).
        unsafe { sys::rdma_destroy_event_channel(self.0) };
    }
}

/// A CM event; acknowledged on drop.
pub struct Event(*mut sys::rdma_cm_event);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    AddrResolved,
    RouteResolved,
    Rejected,
    ConnectRequest,
    Established,
    Disconnected,
    Failed,
    DeviceRemoval,
    Other,
}

impl Event {
    fn raw(&self) -> &sys::rdma_cm_event {
        // SAFETY: valid until acked in Drop.
        unsafe { &*self.0 }
    }

    pub fn kind(&self) -> EventKind {
        match self.raw().event {
            sys::rdma_cm_event_type_RDMA_CM_EVENT_ADDR_RESOLVED => EventKind::AddrResolved,
            sys::rdma_cm_event_type_RDMA_CM_EVENT_ROUTE_RESOLVED => EventKind::RouteResolved,
            sys::rdma_cm_event_type_RDMA_CM_EVENT_REJECTED => EventKind::Rejected,
            sys::rdma_cm_event_type_RDMA_CM_EVENT_CONNECT_REQUEST => EventKind::ConnectRequest,
            sys::rdma_cm_event_type_RDMA_CM_EVENT_ESTABLISHED => EventKind::Established,
            sys::rdma_cm_event_type_RDMA_CM_EVENT_DISCONNECTED => EventKind::Disconnected,
            sys::rdma_cm_event_type_RDMA_CM_EVENT_CONNECT_ERROR
            | sys::rdma_cm_event_type_RDMA_CM_EVENT_UNREACHABLE
            | sys::rdma_cm_event_type_RDMA_CM_EVENT_ADDR_ERROR
            | sys::rdma_cm_event_type_RDMA_CM_EVENT_ROUTE_ERROR => EventKind::Failed,
            sys::rdma_cm_event_type_RDMA_CM_EVENT_DEVICE_REMOVAL => EventKind::DeviceRemoval,
            _ => EventKind::Other,
        }
    }

    pub fn name(&self) -> String {
        // SAFETY: rdma_event_str returns a static string.
        let s = unsafe { std::ffi::CStr::from_ptr(sys::rdma_event_str(self.raw().event)) };
        s.to_string_lossy().into_owned()
    }

    pub fn status(&self) -> i32 {
        self.raw().status
    }

    /// The connection this event is about.
    pub fn id(&self) -> ConnId {
        ConnId(self.raw().id)
    }

    /// The private data of a connect request.
    pub fn private_data(&self) -> Vec<u8> {
        // SAFETY: `conn` is the active union member for connection events.
        let c = unsafe { &self.raw().param.conn };
        if c.private_data.is_null() {
            return Vec::new();
        }
        // SAFETY: librdmacm owns `private_data_len` bytes until the ack.
        unsafe {
            std::slice::from_raw_parts(c.private_data as *const u8, c.private_data_len as usize)
        }
        .to_vec()
    }

    /// The initiator depth the client asked for (RDMA reads it may have in flight).
    pub fn initiator_depth(&self) -> u8 {
        // SAFETY: as in `private_data`.
        unsafe { self.raw().param.conn.initiator_depth }
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: each event is acked exactly once.
        unsafe { sys::rdma_ack_cm_event(self.0) };
    }
}

/// A connection's CM id (a raw handle; `destroy` frees it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(*mut sys::rdma_cm_id);

impl ConnId {
    pub fn key(&self) -> usize {
        self.0 as usize
    }

    fn raw(&self) -> &sys::rdma_cm_id {
        // SAFETY: ids are valid from their connect request until `destroy`.
        unsafe { &*self.0 }
    }

    pub fn peer(&self) -> Option<Ipv4Addr> {
        // SAFETY: dst_sin is the IPv4 view of the peer address union.
        let sin = unsafe { self.raw().route.addr.__bindgen_anon_2.dst_sin };
        (sin.sin_family == libc::AF_INET as u16)
            .then(|| Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
    }

    /// Identifies the device the connection arrived on.
    pub fn device_key(&self) -> usize {
        self.raw().verbs as usize
    }

    pub fn create_qp(&self, pd: &Pd, cq: &Cq) -> io::Result<()> {
        let mut attr = sys::ibv_qp_init_attr {
            send_cq: cq.0,
            recv_cq: cq.0,
            cap: sys::ibv_qp_cap {
                max_send_wr: 1,
                max_recv_wr: 1,
                max_send_sge: 1,
                max_recv_sge: 1,
                max_inline_data: 0,
            },
            qp_type: sys::ibv_qp_type_IBV_QPT_RC,
            ..Default::default()
        };
        // SAFETY: valid id, pd and cq of the id's device.
        if unsafe { sys::rdma_create_qp(self.0, pd.0, &mut attr) } != 0 {
            return Err(errno_err("rdma_create_qp"));
        }
        Ok(())
    }

    pub fn accept(&self, reply: &[u8], responder_resources: u8) -> io::Result<()> {
        let mut p = sys::rdma_conn_param {
            private_data: reply.as_ptr() as *const c_void,
            private_data_len: reply.len() as u8,
            responder_resources,
            initiator_depth: 0,
            rnr_retry_count: 7,
            ..Default::default()
        };
        // SAFETY: valid id with a QP; `reply` outlives the call.
        if unsafe { sys::rdma_accept(self.0, &mut p) } != 0 {
            return Err(errno_err("rdma_accept"));
        }
        Ok(())
    }

    pub fn reject(&self, reply: &[u8]) {
        // SAFETY: valid id; `reply` outlives the call.
        unsafe { sys::rdma_reject(self.0, reply.as_ptr() as *const c_void, reply.len() as u8) };
    }

    pub fn disconnect(&self) {
        // SAFETY: valid id; harmless if not connected.
        unsafe { sys::rdma_disconnect(self.0) };
    }

    /// Frees the QP (if any) and the id. Its events must all be acked.
    pub fn destroy(self) {
        // SAFETY: valid id, used no more after this.
        unsafe {
            if !self.raw().qp.is_null() {
                sys::rdma_destroy_qp(self.0);
            }
            sys::rdma_destroy_id(self.0);
        }
    }
}

/// The listening id; destroyed on drop, which frees the port.
pub struct Listener(ConnId);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.destroy();
    }
}

pub struct Pd(*mut sys::ibv_pd);

impl Pd {
    /// A PD on the device of `id`.
    pub fn new(id: &ConnId) -> io::Result<Pd> {
        // SAFETY: the id's device context is live while the id is.
        let pd = unsafe { sys::ibv_alloc_pd(id.raw().verbs) };
        if pd.is_null() {
            return Err(errno_err("ibv_alloc_pd"));
        }
        Ok(Pd(pd))
    }
}

impl Drop for Pd {
    fn drop(&mut self) {
        // SAFETY: all QPs and MRs of this PD are gone (dropped first).
        unsafe { sys::ibv_dealloc_pd(self.0) };
    }
}

pub struct Cq(*mut sys::ibv_cq);

impl Cq {
    /// A CQ on the device of `id`.
    pub fn new(id: &ConnId, entries: i32) -> io::Result<Cq> {
        // SAFETY: live context of a live id; no completion channel.
        let cq = unsafe {
            sys::ibv_create_cq(id.raw().verbs, entries, ptr::null_mut(), ptr::null_mut(), 0)
        };
        if cq.is_null() {
            return Err(errno_err("ibv_create_cq"));
        }
        Ok(Cq(cq))
    }
}

impl Drop for Cq {
    fn drop(&mut self) {
        // SAFETY: no QP uses it any more.
        unsafe { sys::ibv_destroy_cq(self.0) };
    }
}

/// A region of the pool registered for remote read and write.
pub struct Mr(*mut sys::ibv_mr);

impl Mr {
    pub fn register(pd: &Pd, mem: &mut [u8]) -> io::Result<Mr> {
        let access = sys::ibv_access_flags_IBV_ACCESS_LOCAL_WRITE
            | sys::ibv_access_flags_IBV_ACCESS_REMOTE_WRITE
            | sys::ibv_access_flags_IBV_ACCESS_REMOTE_READ;
        // SAFETY: `mem` is valid for its length and outlives the MR (the
        // pool buffer lives as long as the server).
        let mr = unsafe {
            sys::ibv_reg_mr(
                pd.0,
                mem.as_mut_ptr() as *mut c_void,
                mem.len(),
                access as i32,
            )
        };
        if mr.is_null() {
            return Err(errno_err("ibv_reg_mr"));
        }
        Ok(Mr(mr))
    }

    pub fn rkey(&self) -> u32 {
        // SAFETY: valid until dropped.
        unsafe { (*self.0).rkey }
    }

    pub fn lkey(&self) -> u32 {
        // SAFETY: valid until dropped.
        unsafe { (*self.0).lkey }
    }

    pub fn addr(&self) -> u64 {
        // SAFETY: valid until dropped.
        unsafe { (*self.0).addr as u64 }
    }
}

impl Drop for Mr {
    fn drop(&mut self) {
        // SAFETY: registered in `register`, deregistered once.
        unsafe { sys::ibv_dereg_mr(self.0) };
    }
}

/// The pool's memory: an anonymous mapping.
pub struct Buffer {
    base: *mut u8,
    len: usize,
}

impl Buffer {
    pub fn map(len: usize) -> io::Result<Buffer> {
        // SAFETY: anonymous private mapping, no address hint.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(errno_err(&format!("mmap of a {} MiB pool", len >> 20)));
        }
        Ok(Buffer {
            base: p as *mut u8,
            len,
        })
    }

    pub fn slice_mut(&mut self, offset: u64, len: u64) -> &mut [u8] {
        assert!(offset + len <= self.len as u64);
        // SAFETY: in bounds of the mapping, borrowed mutably from self.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(offset as usize), len as usize) }
    }

    /// Zeroes a range (a freed region must not leak to the next node).
    pub fn zero(&mut self, offset: u64, len: u64) {
        self.slice_mut(offset, len).fill(0);
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: our mapping, unmapped once.
        unsafe { libc::munmap(self.base as *mut c_void, self.len) };
    }
}

/// Installs SIGINT/SIGTERM/SIGUSR1 handlers that only set flags.
pub mod signals {
    use std::sync::atomic::{AtomicBool, Ordering};

    pub static STOP: AtomicBool = AtomicBool::new(false);
    pub static REPORT: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_signal(sig: libc::c_int) {
        if sig == libc::SIGUSR1 {
            REPORT.store(true, Ordering::SeqCst);
        } else {
            STOP.store(true, Ordering::SeqCst);
        }
    }

    pub fn install() {
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1] {
            // SAFETY: the handler only stores to atomics (async-signal-safe).
            unsafe {
                libc::signal(
                    sig,
                    on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
                )
            };
        }
    }
}

/// A user-space client connection (the probe tool): one RC QP that can
/// issue RDMA READs against a granted region.
pub struct Client {
    // Drop order: the id (with its QP) before the MR, CQ and PD.
    id: Option<ConnId>,
    mr: Mr,
    buf: Buffer,
    cq: Cq,
    _pd: Pd,
    /// The server's reply (accept or reject private data).
    pub reply: Vec<u8>,
    pub rejected: bool,
}

impl EventChannel {
    fn expect(&self, want: EventKind, ms: i32, step: &str) -> io::Result<Event> {
        let ev = self.next(ms)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{step}: no answer in {ms} ms"),
            )
        })?;
        if ev.kind() != want {
            return Err(io::Error::other(format!(
                "{step}: got {} (status {})",
                ev.name(),
                ev.status()
            )));
        }
        Ok(ev)
    }

    /// Connects to `to` (from `from`, if given) sending `request`.
    pub fn connect(
        &self,
        to: SocketAddrV4,
        from: Option<Ipv4Addr>,
        request: &[u8],
        ms: i32,
    ) -> io::Result<Client> {
        let mut raw = ptr::null_mut();
        // SAFETY: valid channel and out pointer.
        if unsafe {
            sys::rdma_create_id(
                self.0,
                &mut raw,
                ptr::null_mut(),
                sys::rdma_port_space_RDMA_PS_TCP,
            )
        } != 0
        {
            return Err(errno_err("rdma_create_id"));
        }
        let id = ConnId(raw);
        let fail = |e: io::Error| {
            id.destroy();
            e
        };
        let mut src = from.map(|a| sockaddr_in(SocketAddrV4::new(a, 0)));
        let mut dst = sockaddr_in(to);
        let srcp = src
            .as_mut()
            .map_or(ptr::null_mut(), |s| s as *mut _ as *mut sys::sockaddr);
        // SAFETY: valid id; the addresses outlive the call.
        if unsafe {
            sys::rdma_resolve_addr(raw, srcp, &mut dst as *mut _ as *mut sys::sockaddr, ms)
        } != 0
        {
            return Err(fail(errno_err("rdma_resolve_addr")));
        }
        drop(
            self.expect(EventKind::AddrResolved, ms, "address resolution")
                .map_err(fail)?,
        );
        // SAFETY: valid id with a resolved address.
        if unsafe { sys::rdma_resolve_route(raw, ms) } != 0 {
            return Err(fail(errno_err("rdma_resolve_route")));
        }
        drop(
            self.expect(EventKind::RouteResolved, ms, "route resolution")
                .map_err(fail)?,
        );
        let pd = Pd::new(&id).map_err(fail)?;
        let cq = Cq::new(&id, 16).map_err(fail)?;
        let mut buf = Buffer::map(4096).map_err(fail)?;
        let mr = Mr::register(&pd, buf.slice_mut(0, 4096)).map_err(fail)?;
        id.create_qp(&pd, &cq).map_err(fail)?;
        let mut p = sys::rdma_conn_param {
            private_data: request.as_ptr() as *const c_void,
            private_data_len: request.len() as u8,
            responder_resources: 1,
            initiator_depth: 1,
            retry_count: 7,
            rnr_retry_count: 7,
            ..Default::default()
        };
        // SAFETY: valid id with a QP; `request` outlives the call.
        if unsafe { sys::rdma_connect(raw, &mut p) } != 0 {
            return Err(fail(errno_err("rdma_connect")));
        }
        let ev = self.next(ms)?.ok_or_else(|| {
            fail(io::Error::new(
                io::ErrorKind::TimedOut,
                "no answer to the connect request",
            ))
        })?;
        let (kind, reply) = (ev.kind(), ev.private_data());
        let name = ev.name();
        drop(ev);
        let rejected = match kind {
            EventKind::Established => false,
            EventKind::Rejected => true,
            _ => return Err(fail(io::Error::other(format!("connect: got {name}")))),
        };
        Ok(Client {
            id: Some(id),
            mr,
            buf,
            cq,
            _pd: pd,
            reply,
            rejected,
        })
    }
}

impl Client {
    /// RDMA READ of one page at `remote` with `rkey`. Ok(None) on success,
    /// Ok(Some(status)) when the request completed with an error.
    pub fn read(&mut self, remote: u64, rkey: u32, ms: u64) -> io::Result<Option<String>> {
        let id = self.id.expect("connected");
        let mut sge = sys::ibv_sge {
            addr: self.buf.slice_mut(0, 4096).as_mut_ptr() as u64,
            length: 4096,
            lkey: self.mr.lkey(),
        };
        let mut wr = sys::ibv_send_wr {
            wr_id: 1,
            sg_list: &mut sge,
            num_sge: 1,
            opcode: sys::ibv_wr_opcode_IBV_WR_RDMA_READ,
            send_flags: sys::ibv_send_flags_IBV_SEND_SIGNALED,
            ..Default::default()
        };
        wr.wr.rdma = sys::ibv_send_wr__bindgen_ty_2__bindgen_ty_1 {
            remote_addr: remote,
            rkey,
        };
        let qp = id.raw().qp;
        let mut bad = ptr::null_mut();
        // SAFETY: ibv_post_send is an inline call through the context's ops
        // table; qp, wr and sge are valid for the call and until completion.
        let r =
            unsafe { ((*(*qp).context).ops.post_send.expect("post_send"))(qp, &mut wr, &mut bad) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        let t = std::time::Instant::now();
        loop {
            let mut wc = sys::ibv_wc::default();
            // SAFETY: ibv_poll_cq, inline: through the ops table of our CQ.
            let n = unsafe {
                ((*(*self.cq.0).context).ops.poll_cq.expect("poll_cq"))(self.cq.0, 1, &mut wc)
            };
            if n > 0 {
                if wc.status == sys::ibv_wc_status_IBV_WC_SUCCESS {
                    return Ok(None);
                }
                // SAFETY: returns a static string.
                let s = unsafe { std::ffi::CStr::from_ptr(sys::ibv_wc_status_str(wc.status)) };
                return Ok(Some(s.to_string_lossy().into_owned()));
            }
            if t.elapsed().as_millis() as u64 > ms {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no completion"));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            id.disconnect();
            id.destroy();
        }
    }
}
