//! Safe wrappers over the parts of librdmacm/libibverbs (and of the kernel's
//! memory calls) memserver uses. All of memserver's `unsafe` is in this file.
//!
//! Ownership is what makes the wrappers sound; each rule is enforced by the
//! types, not by the order callers happen to drop things in:
//!
//! - [`EventChannel`]: every [`Id`] created on it keeps it alive (an `Rc`),
//!   so the channel is destroyed after its last id.
//! - [`Id`]: a CM id is owned (`Rc<Id>`), never `Copy` or `Clone`; it is
//!   destroyed when its last owner goes. An event names its id only by an
//!   [`IdKey`] (a number that reaches nothing), except the new id of a
//!   connect request, whose ownership the event hands over. Events are
//!   acknowledged before [`EventChannel::next`] returns, so an id is never
//!   destroyed with an unacknowledged event (which would deadlock).
//! - [`Pd`], [`Cq`]: hold the id they were made from (the listener, bound to
//!   the device's address, or the client's own id), so librdmacm keeps the
//!   device context open while they exist.
//! - [`Qp`]: holds its id, PD and CQ; it is destroyed before all three.
//! - [`Mr`]: holds its PD and the [`Buffer`] it registers: a registration
//!   cannot outlive its memory, nor its protection domain.
//! - [`Buffer`]: the NIC reads and writes it behind the compiler's back, so
//!   it never hands out a reference (`&[u8]` or `&mut [u8]`) to its bytes.
//!   The mapping is unmapped when its last holder goes: the buffer, or the
//!   one [`PoolBytes`] handle.
//! - [`PoolBytes`]: the only way the CPU reads or writes a pool's bytes in
//!   bulk (zeroing a region after its registration is gone, volatile reads
//!   to count used pages). There is one per buffer, so those accesses are
//!   never concurrent, and it may move to another thread (memserver's
//!   chores thread), keeping the mapping alive.

use crate::sys;
use std::cell::Cell;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::raw::c_void;
use std::ptr;
use std::rc::Rc;
use std::sync::Arc;

const MIB: usize = 1 << 20;

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

/// Where librdmacm talks to the kernel; missing when no RDMA stack is loaded.
pub const RDMA_CM_DEVICE: &str = "/dev/infiniband/rdma_cm";

struct ChannelInner(*mut sys::rdma_event_channel);

impl Drop for ChannelInner {
    fn drop(&mut self) {
        // SAFETY: every id and event of the channel holds an Rc of it, so
        // this runs after the last of them is gone; destroyed once.
        unsafe { sys::rdma_destroy_event_channel(self.0) };
    }
}

/// An RDMA CM event channel; its fd is set non-blocking.
pub struct EventChannel(Rc<ChannelInner>);

/// Identifies the id an event is about, for looking it up among the ids the
/// caller owns. It cannot be used to reach the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdKey(usize);

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

/// A CM event, copied out and acknowledged.
pub struct EventInfo {
    pub kind: EventKind,
    /// librdmacm's name for it, e.g. `RDMA_CM_EVENT_DISCONNECTED`.
    pub name: String,
    pub status: i32,
    /// The id the event is about.
    pub id: IdKey,
    /// Private data (connect requests, accepts and rejects).
    pub private_data: Vec<u8>,
    /// The initiator depth a connect request asked for.
    pub initiator_depth: u8,
    /// For a connect request: the new connection's id, now the caller's.
    pub new_id: Option<Rc<Id>>,
}

impl EventChannel {
    pub fn new() -> io::Result<EventChannel> {
        if !std::path::Path::new(RDMA_CM_DEVICE).exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no RDMA device: {RDMA_CM_DEVICE} does not exist (load the RDMA stack: \
                     modprobe rdma_ucm, and for Soft-RoCE: modprobe rdma_rxe && \
                     rdma link add rxe0 type rxe netdev eth0)"
                ),
            ));
        }
        // SAFETY: plain constructor; NULL means failure (errno set).
        let ch = unsafe { sys::rdma_create_event_channel() };
        if ch.is_null() {
            return Err(errno_err(
                "rdma_create_event_channel (is an RDMA device up? rdma link show)",
            ));
        }
        let inner = Rc::new(ChannelInner(ch));
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
        Ok(EventChannel(inner))
    }

    fn create_id(&self) -> io::Result<Rc<Id>> {
        let mut raw = ptr::null_mut();
        // SAFETY: valid channel and out pointer; no context.
        if unsafe {
            sys::rdma_create_id(
                self.0 .0,
                &mut raw,
                ptr::null_mut(),
                sys::rdma_port_space_RDMA_PS_TCP,
            )
        } != 0
        {
            return Err(errno_err("rdma_create_id"));
        }
        Ok(Rc::new(Id {
            raw,
            has_qp: Cell::new(false),
            _channel: self.0.clone(),
        }))
    }

    /// Waits up to `timeout_ms` for an event, and acknowledges it.
    pub fn next(&self, timeout_ms: i32) -> io::Result<Option<EventInfo>> {
        // SAFETY: the channel is valid while self lives.
        let mut pfd = libc::pollfd {
            fd: unsafe { (*self.0 .0).fd },
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
        let mut ev: *mut sys::rdma_cm_event = ptr::null_mut();
        // SAFETY: valid channel and out pointer.
        if unsafe { sys::rdma_get_cm_event(self.0 .0, &mut ev) } != 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(None)
            } else {
                Err(e)
            };
        }
        // SAFETY: `ev` is valid until acked below; nothing of it is kept
        // past the ack but copies.
        let raw = unsafe { &*ev };
        let kind = match raw.event {
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
        };
        // SAFETY: rdma_event_str returns a static string.
        let name = unsafe { std::ffi::CStr::from_ptr(sys::rdma_event_str(raw.event)) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: `conn` is the union member of connection events (for the
        // others it is zeroed or unused; only read when non-NULL).
        let conn = unsafe { &raw.param.conn };
        let private_data = if conn.private_data.is_null() {
            Vec::new()
        } else {
            // SAFETY: librdmacm owns `private_data_len` bytes until the ack.
            unsafe {
                std::slice::from_raw_parts(
                    conn.private_data as *const u8,
                    conn.private_data_len as usize,
                )
            }
            .to_vec()
        };
        let info = EventInfo {
            kind,
            name,
            status: raw.status,
            id: IdKey(raw.id as usize),
            private_data,
            initiator_depth: conn.initiator_depth,
            new_id: None,
        };
        let new_raw = raw.id;
        // SAFETY: each event is acked exactly once, here; `raw` and `conn`
        // are not used after this.
        unsafe { sys::rdma_ack_cm_event(ev) };
        Ok(Some(EventInfo {
            // A connect request's id is new and ours to destroy (after a
            // reject too); it is wrapped only now that its event is acked.
            new_id: (kind == EventKind::ConnectRequest).then(|| {
                Rc::new(Id {
                    raw: new_raw,
                    has_qp: Cell::new(false),
                    _channel: self.0.clone(),
                })
            }),
            ..info
        }))
    }

    /// An id bound to `addr`, the address of an RDMA device (the future
    /// listener): the device is known from here on, [`Id::listen`] follows.
    pub fn bind(&self, addr: SocketAddrV4) -> io::Result<Rc<Id>> {
        let id = self.create_id()?;
        let mut sin = sockaddr_in(addr);
        // SAFETY: `id` is valid; `sin` is a sockaddr_in of the right size.
        if unsafe { sys::rdma_bind_addr(id.raw, &mut sin as *mut _ as *mut sys::sockaddr) } != 0 {
            return Err(errno_err(&format!(
                "rdma_bind_addr {addr} (no RDMA device has that address, or the port is taken; \
                 see rdma link show and ip addr)"
            )));
        }
        if id.device_key() == 0 {
            return Err(io::Error::other(format!(
                "{addr} is not the address of an RDMA device (rdma link show)"
            )));
        }
        Ok(id)
    }
}

/// A CM id: the listener, or one connection. Destroyed when dropped (the
/// last `Rc`); a [`Qp`] on it holds it, so its QP is always gone first.
pub struct Id {
    raw: *mut sys::rdma_cm_id,
    has_qp: Cell<bool>,
    _channel: Rc<ChannelInner>,
}

impl Id {
    pub fn key(&self) -> IdKey {
        IdKey(self.raw as usize)
    }

    fn raw(&self) -> &sys::rdma_cm_id {
        // SAFETY: valid from creation until Drop.
        unsafe { &*self.raw }
    }

    pub fn peer(&self) -> Option<Ipv4Addr> {
        // SAFETY: dst_sin is the IPv4 view of the peer address union.
        let sin = unsafe { self.raw().route.addr.__bindgen_anon_2.dst_sin };
        (sin.sin_family == libc::AF_INET as u16)
            .then(|| Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
    }

    /// Identifies the device the id is bound to (0: none).
    pub fn device_key(&self) -> usize {
        self.raw().verbs as usize
    }

    /// Starts listening on a bound id.
    pub fn listen(&self, backlog: i32) -> io::Result<()> {
        // SAFETY: a valid id (bound by the caller; librdmacm checks).
        if unsafe { sys::rdma_listen(self.raw, backlog) } != 0 {
            return Err(errno_err("rdma_listen"));
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
        // SAFETY: valid id; `reply` outlives the call.
        if unsafe { sys::rdma_accept(self.raw, &mut p) } != 0 {
            return Err(errno_err("rdma_accept"));
        }
        Ok(())
    }

    pub fn reject(&self, reply: &[u8]) {
        // SAFETY: valid id; `reply` outlives the call.
        unsafe { sys::rdma_reject(self.raw, reply.as_ptr() as *const c_void, reply.len() as u8) };
    }

    pub fn disconnect(&self) {
        // SAFETY: valid id; harmless if not connected.
        unsafe { sys::rdma_disconnect(self.raw) };
    }
}

impl Drop for Id {
    fn drop(&mut self) {
        // SAFETY: the last owner is gone: no Qp (it holds an Rc), no
        // unacked event (acked in `next`). Destroyed once.
        unsafe { sys::rdma_destroy_id(self.raw) };
    }
}

/// A protection domain on the device of the id it was made from.
pub struct Pd {
    raw: *mut sys::ibv_pd,
    _dev: Rc<Id>,
}

impl Pd {
    pub fn new(dev: &Rc<Id>) -> io::Result<Rc<Pd>> {
        let ctx = dev.raw().verbs;
        if ctx.is_null() {
            return Err(io::Error::other("the id is bound to no RDMA device"));
        }
        // SAFETY: the context of a live id, kept open while `_dev` lives.
        let pd = unsafe { sys::ibv_alloc_pd(ctx) };
        if pd.is_null() {
            return Err(errno_err("ibv_alloc_pd"));
        }
        Ok(Rc::new(Pd {
            raw: pd,
            _dev: dev.clone(),
        }))
    }
}

impl Drop for Pd {
    fn drop(&mut self) {
        // SAFETY: every QP and MR of this PD holds an Rc of it: all gone.
        unsafe { sys::ibv_dealloc_pd(self.raw) };
    }
}

/// A completion queue on the device of the id it was made from.
pub struct Cq {
    raw: *mut sys::ibv_cq,
    _dev: Rc<Id>,
}

impl Cq {
    pub fn new(dev: &Rc<Id>, entries: i32) -> io::Result<Rc<Cq>> {
        let ctx = dev.raw().verbs;
        if ctx.is_null() {
            return Err(io::Error::other("the id is bound to no RDMA device"));
        }
        // SAFETY: live context (held by `_dev`); no completion channel.
        let cq = unsafe { sys::ibv_create_cq(ctx, entries, ptr::null_mut(), ptr::null_mut(), 0) };
        if cq.is_null() {
            return Err(errno_err("ibv_create_cq"));
        }
        Ok(Rc::new(Cq {
            raw: cq,
            _dev: dev.clone(),
        }))
    }
}

impl Drop for Cq {
    fn drop(&mut self) {
        // SAFETY: every QP using it holds an Rc of it: all gone.
        unsafe { sys::ibv_destroy_cq(self.raw) };
    }
}

/// The reliable-connection QP of a CM id; destroyed before its id, PD and CQ.
pub struct Qp {
    id: Rc<Id>,
    cq: Rc<Cq>,
    _pd: Rc<Pd>,
}

impl Qp {
    pub fn create(id: &Rc<Id>, pd: &Rc<Pd>, cq: &Rc<Cq>) -> io::Result<Qp> {
        if id.has_qp.get() {
            return Err(io::Error::other("the connection already has a QP"));
        }
        let mut attr = sys::ibv_qp_init_attr {
            send_cq: cq.raw,
            recv_cq: cq.raw,
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
        // SAFETY: valid id, PD and CQ (librdmacm checks they share the
        // id's device); the id has no QP yet.
        if unsafe { sys::rdma_create_qp(id.raw, pd.raw, &mut attr) } != 0 {
            return Err(errno_err("rdma_create_qp"));
        }
        id.has_qp.set(true);
        Ok(Qp {
            id: id.clone(),
            cq: cq.clone(),
            _pd: pd.clone(),
        })
    }

    pub fn id(&self) -> &Rc<Id> {
        &self.id
    }
}

impl Drop for Qp {
    fn drop(&mut self) {
        // SAFETY: the id's QP, created in `create`, destroyed once, while
        // the id, PD and CQ are still alive (held by self).
        unsafe { sys::rdma_destroy_qp(self.id.raw) };
        self.id.has_qp.set(false);
    }
}

/// A range of a [`Buffer`] registered for remote read and write.
pub struct Mr {
    raw: *mut sys::ibv_mr,
    pd: Rc<Pd>,
    _mem: Rc<Buffer>,
}

impl Mr {
    /// Registers `len` bytes of `mem` at `offset`.
    pub fn register(pd: &Rc<Pd>, mem: &Rc<Buffer>, offset: u64, len: u64) -> io::Result<Mr> {
        if len == 0
            || offset
                .checked_add(len)
                .is_none_or(|end| end > mem.len as u64)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "registering {len} bytes at {offset}: outside the {}-byte buffer",
                    mem.len
                ),
            ));
        }
        let access = sys::ibv_access_flags_IBV_ACCESS_LOCAL_WRITE
            | sys::ibv_access_flags_IBV_ACCESS_REMOTE_WRITE
            | sys::ibv_access_flags_IBV_ACCESS_REMOTE_READ;
        // SAFETY: the range is inside the mapping (checked above), which
        // stays mapped while the MR lives (it holds an Rc of the buffer).
        let mr = unsafe {
            sys::ibv_reg_mr(
                pd.raw,
                mem.base.add(offset as usize) as *mut c_void,
                len as usize,
                access as i32,
            )
        };
        if mr.is_null() {
            return Err(errno_err(&format!(
                "ibv_reg_mr of {} MiB",
                len.div_ceil(MIB as u64)
            )));
        }
        Ok(Mr {
            raw: mr,
            pd: pd.clone(),
            _mem: mem.clone(),
        })
    }

    /// The protection domain the range is registered in.
    pub fn pd(&self) -> &Rc<Pd> {
        &self.pd
    }

    pub fn rkey(&self) -> u32 {
        // SAFETY: valid until dropped.
        unsafe { (*self.raw).rkey }
    }

    pub fn lkey(&self) -> u32 {
        // SAFETY: valid until dropped.
        unsafe { (*self.raw).lkey }
    }

    /// The virtual address remote peers use.
    pub fn addr(&self) -> u64 {
        // SAFETY: valid until dropped.
        unsafe { (*self.raw).addr as u64 }
    }
}

impl Drop for Mr {
    fn drop(&mut self) {
        // SAFETY: registered in `register`, deregistered once, before the
        // PD and buffer it holds.
        unsafe { sys::ibv_dereg_mr(self.raw) };
    }
}

/// How the pool asks for huge pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HugePages {
    /// hugetlb pages if enough are reserved, else transparent huge pages
    /// if the kernel has them on, else 4 KiB pages.
    Auto,
    /// hugetlb pages (reserved with vm.nr_hugepages), or fail.
    Hugetlb,
    /// Transparent huge pages (MADV_HUGEPAGE), or fail if they are off.
    Thp,
    /// 4 KiB pages.
    Off,
}

/// An anonymous mapping, unmapped when its last holder goes.
struct Mapping {
    base: *mut c_void,
    len: usize,
}

// SAFETY: only an address and a length: nothing reads or writes the bytes
// through a Mapping, and munmap may run on any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above; a shared Mapping gives no access at all.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our mapping, unmapped once, when its last holder (a
        // Buffer, whose every Mr holds an Rc of it, or its PoolBytes) goes.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// Memory the NIC reads and writes: an anonymous mapping, reached only
/// through raw pointers (see the module documentation).
pub struct Buffer {
    base: *mut u8,
    len: usize,
    map: Arc<Mapping>,
    /// Whether the one [`PoolBytes`] was handed out.
    cpu_taken: Cell<bool>,
    /// What the pool got, for the log: page size and whether it is locked.
    pub description: String,
}

/// The one handle through which the CPU zeroes and scans a [`Buffer`]'s
/// bytes; see the module documentation.
pub struct PoolBytes {
    base: *mut u8,
    len: usize,
    _map: Arc<Mapping>,
}

// SAFETY: the handle is unique (Buffer::cpu_access gives out one) and its
// methods take `&mut self`, so the bytes it touches are touched by one
// thread at a time; it keeps the mapping alive wherever it goes.
unsafe impl Send for PoolBytes {}

fn meminfo_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether transparent huge pages can be had with MADV_HUGEPAGE.
fn thp_enabled() -> Option<String> {
    let s = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    (!s.contains("[never]")).then(|| s.trim().to_string())
}

/// Whether the effective capabilities include CAP_IPC_LOCK (bit 14), which
/// lifts RLIMIT_MEMLOCK.
fn has_cap_ipc_lock() -> bool {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    s.lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 14) != 0)
}

/// RLIMIT_MEMLOCK's soft limit in bytes; None when unlimited.
pub fn memlock_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0 {
        return None;
    }
    (r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur)
}

fn fmt_bytes(b: u64) -> String {
    if b >= MIB as u64 {
        format!("{} MiB", b / MIB as u64)
    } else {
        format!("{} KiB", b / 1024)
    }
}

/// What to do about a too-low RLIMIT_MEMLOCK, for error messages.
pub fn memlock_advice(len: u64) -> String {
    let limit = memlock_limit().map_or("unlimited".into(), fmt_bytes);
    if memlock_limit().is_none() || has_cap_ipc_lock() {
        return format!(
            "RLIMIT_MEMLOCK ({limit}) does not limit memserver here: is there {} of free memory?",
            fmt_bytes(len)
        );
    }
    format!(
        "the {} pool must be locked in memory (and registered with the NIC), but \
         RLIMIT_MEMLOCK is {limit} and memserver lacks CAP_IPC_LOCK: raise the limit to at \
         least {} (systemd: LimitMEMLOCK=infinity; a shell: ulimit -l unlimited; \
         /etc/security/limits.conf: memlock), or give memserver CAP_IPC_LOCK (root has it)",
        fmt_bytes(len),
        fmt_bytes(len)
    )
}

fn mmap_anon(len: usize, extra_flags: i32) -> io::Result<*mut c_void> {
    // SAFETY: anonymous private mapping, no address hint.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra_flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p)
}

impl Buffer {
    /// A plain anonymous mapping of `len` bytes (the probe's page).
    pub fn map(len: usize) -> io::Result<Rc<Buffer>> {
        let p = mmap_anon(len, 0)
            .map_err(|e| io::Error::new(e.kind(), format!("mmap of {len} bytes: {e}")))?;
        Ok(Rc::new(Buffer {
            base: p as *mut u8,
            len,
            map: Arc::new(Mapping { base: p, len }),
            cpu_taken: Cell::new(false),
            description: "4 KiB pages, not locked".into(),
        }))
    }

    /// The server's pool: `len` bytes locked in memory (so the memory node
    /// never swaps it out), on huge pages when `huge` allows and the
    /// kernel has them. A too-low RLIMIT_MEMLOCK is an error that says so.
    pub fn map_pool(len: usize, huge: HugePages) -> io::Result<Rc<Buffer>> {
        if memlock_limit().is_some_and(|l| l < len as u64) && !has_cap_ipc_lock() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                memlock_advice(len as u64),
            ));
        }
        let mut buf = None;
        if matches!(huge, HugePages::Auto | HugePages::Hugetlb) {
            let page = meminfo_kib("Hugepagesize").unwrap_or(2048) as usize * 1024;
            let need = len.div_ceil(page);
            let free = meminfo_kib("HugePages_Free").unwrap_or(0) as usize;
            if free >= need {
                let map_len = need * page;
                match mmap_anon(map_len, libc::MAP_HUGETLB) {
                    Ok(p) => {
                        buf = Some(Buffer {
                            base: p as *mut u8,
                            len,
                            map: Arc::new(Mapping {
                                base: p,
                                len: map_len,
                            }),
                            cpu_taken: Cell::new(false),
                            description: format!("{} hugetlb pages", fmt_bytes(page as u64)),
                        })
                    }
                    Err(e) if huge == HugePages::Hugetlb => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("mmap of {need} hugetlb pages for the pool: {e}"),
                        ))
                    }
                    Err(_) => {}
                }
            } else if huge == HugePages::Hugetlb {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    format!(
                        "--huge-pages hugetlb: the pool needs {need} huge pages of {}, {free} \
                         are free: reserve them (sysctl vm.nr_hugepages, or hugepages= on the \
                         kernel command line), or use --huge-pages auto",
                        fmt_bytes(page as u64)
                    ),
                ));
            }
        }
        let buf = match buf {
            Some(b) => b,
            None => {
                let thp = if matches!(huge, HugePages::Auto | HugePages::Thp) {
                    thp_enabled()
                } else {
                    None
                };
                if huge == HugePages::Thp && thp.is_none() {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "--huge-pages thp: transparent huge pages are off \
                         (/sys/kernel/mm/transparent_hugepage/enabled); use --huge-pages auto",
                    ));
                }
                // 2 MiB alignment lets the kernel back the pool with whole
                // huge pages: map one more, trim the ends.
                const ALIGN: usize = 2 * MIB;
                let map_len = len + ALIGN;
                let p = mmap_anon(map_len, 0).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("mmap of a {} pool: {e}", fmt_bytes(len as u64)),
                    )
                })?;
                let start = (p as usize).next_multiple_of(ALIGN);
                let head = start - p as usize;
                let tail = map_len - head - len;
                // SAFETY: unmapping the unused head and tail of our own
                // mapping; [start, start + len) stays mapped.
                unsafe {
                    if head > 0 {
                        libc::munmap(p, head);
                    }
                    if tail > 0 {
                        libc::munmap((start + len) as *mut c_void, tail);
                    }
                }
                let mut description = "4 KiB pages".to_string();
                if thp.is_some() {
                    // SAFETY: advice on our own mapping.
                    if unsafe { libc::madvise(start as *mut c_void, len, libc::MADV_HUGEPAGE) } == 0
                    {
                        description = "transparent huge pages (MADV_HUGEPAGE)".into();
                    }
                }
                Buffer {
                    base: start as *mut u8,
                    len,
                    map: Arc::new(Mapping {
                        base: start as *mut c_void,
                        len,
                    }),
                    cpu_taken: Cell::new(false),
                    description,
                }
            }
        };
        // SAFETY: locking our own mapping; this also faults it all in.
        if unsafe { libc::mlock(buf.map.base, buf.map.len) } != 0 {
            let e = io::Error::last_os_error();
            let why = match e.raw_os_error() {
                Some(libc::ENOMEM) | Some(libc::EPERM) => memlock_advice(len as u64),
                Some(libc::EAGAIN) => format!(
                    "not all of the {} pool could be locked: is there that much free memory?",
                    fmt_bytes(len as u64)
                ),
                _ => format!("locking the {} pool", fmt_bytes(len as u64)),
            };
            return Err(io::Error::new(e.kind(), format!("mlock: {e}: {why}")));
        }
        let mut buf = buf;
        buf.description = format!("locked in memory, {}", buf.description);
        Ok(Rc::new(buf))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The one handle for zeroing and scanning the bytes from the CPU;
    /// None once it was taken.
    pub fn cpu_access(&self) -> Option<PoolBytes> {
        if self.cpu_taken.replace(true) {
            return None;
        }
        Some(PoolBytes {
            base: self.base,
            len: self.len,
            _map: self.map.clone(),
        })
    }

    fn ptr(&self, offset: usize) -> *mut u8 {
        assert!(offset <= self.len);
        // SAFETY: in bounds of the mapping.
        unsafe { self.base.add(offset) }
    }
}

impl PoolBytes {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, offset: u64, len: u64) {
        assert!(
            offset
                .checked_add(len)
                .is_some_and(|end| end <= self.len as u64),
            "range {offset}+{len} outside the buffer"
        );
    }

    /// Zeroes a range, so a freed region cannot leak to the next node.
    /// Call it after the range's [`Mr`] is dropped: no remote write can
    /// then land after the zeroes.
    pub fn zero(&mut self, offset: u64, len: u64) {
        self.check(offset, len);
        // SAFETY: in bounds (checked); no reference to these bytes exists
        // anywhere (the buffer hands none out).
        unsafe { ptr::write_bytes(self.base.add(offset as usize), 0, len as usize) };
    }

    /// Pages (of 4 KiB) of a range that are not all zeros: what a node has
    /// stored. Volatile reads, as the NIC may write them meanwhile.
    pub fn count_used_pages(&mut self, offset: u64, len: u64) -> u64 {
        self.check(offset, len);
        const PAGE: usize = 4096;
        const WORDS: usize = PAGE / 8;
        let mut used = 0;
        let start = self.base as usize + offset as usize;
        let pages = len as usize / PAGE;
        for p in 0..pages {
            let page = (start + p * PAGE) as *const u64;
            // SAFETY: in bounds (checked), 8-byte aligned (the mapping and
            // `offset` are page aligned in use; read_volatile needs only
            // alignment of u64); volatile, since a DMA write may race.
            if (0..WORDS).any(|w| unsafe { ptr::read_volatile(page.add(w)) } != 0) {
                used += 1;
            }
        }
        used
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
    qp: Qp,
    mr: Mr,
    buf: Rc<Buffer>,
    /// The server's reply (accept or reject private data).
    pub reply: Vec<u8>,
    pub rejected: bool,
}

impl EventChannel {
    fn expect(&self, want: EventKind, ms: i32, step: &str) -> io::Result<EventInfo> {
        let ev = self.next(ms)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{step}: no answer in {ms} ms"),
            )
        })?;
        if ev.kind != want {
            return Err(io::Error::other(format!(
                "{step}: got {} (status {})",
                ev.name, ev.status
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
        // On any error below, the Rc-held objects drop in a safe order.
        let id = self.create_id()?;
        let mut src = from.map(|a| sockaddr_in(SocketAddrV4::new(a, 0)));
        let mut dst = sockaddr_in(to);
        let srcp = src
            .as_mut()
            .map_or(ptr::null_mut(), |s| s as *mut _ as *mut sys::sockaddr);
        // SAFETY: valid id; the addresses outlive the call.
        if unsafe {
            sys::rdma_resolve_addr(id.raw, srcp, &mut dst as *mut _ as *mut sys::sockaddr, ms)
        } != 0
        {
            return Err(errno_err("rdma_resolve_addr"));
        }
        self.expect(EventKind::AddrResolved, ms, "address resolution")?;
        // SAFETY: valid id with a resolved address.
        if unsafe { sys::rdma_resolve_route(id.raw, ms) } != 0 {
            return Err(errno_err("rdma_resolve_route"));
        }
        self.expect(EventKind::RouteResolved, ms, "route resolution")?;
        let pd = Pd::new(&id)?;
        let cq = Cq::new(&id, 16)?;
        let buf = Buffer::map(4096)?;
        let mr = Mr::register(&pd, &buf, 0, 4096)?;
        let qp = Qp::create(&id, &pd, &cq)?;
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
        if unsafe { sys::rdma_connect(id.raw, &mut p) } != 0 {
            return Err(errno_err("rdma_connect"));
        }
        let ev = self.next(ms)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::TimedOut, "no answer to the connect request")
        })?;
        let rejected = match ev.kind {
            EventKind::Established => false,
            EventKind::Rejected => true,
            _ => return Err(io::Error::other(format!("connect: got {}", ev.name))),
        };
        Ok(Client {
            qp,
            mr,
            buf,
            reply: ev.private_data,
            rejected,
        })
    }
}

impl Client {
    /// RDMA READ of one page at `remote` with `rkey` into the client's own
    /// page (never looked at). Ok(None) on success, Ok(Some(status)) when
    /// the request completed with an error.
    pub fn read(&mut self, remote: u64, rkey: u32, ms: u64) -> io::Result<Option<String>> {
        let mut sge = sys::ibv_sge {
            addr: self.buf.ptr(0) as u64,
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
        let qp = self.qp.id.raw().qp;
        let cq = self.qp.cq.raw;
        let mut bad = ptr::null_mut();
        // SAFETY: ibv_post_send is an inline call through the context's ops
        // table; qp, wr and sge are valid for the call, and the target page
        // (self.buf, registered by self.mr) until completion or until the
        // QP is destroyed (self.qp drops before the buffer is unmapped:
        // the MR holds the buffer).
        let r =
            unsafe { ((*(*qp).context).ops.post_send.expect("post_send"))(qp, &mut wr, &mut bad) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        let t = std::time::Instant::now();
        loop {
            let mut wc = sys::ibv_wc::default();
            // SAFETY: ibv_poll_cq, inline: through the ops table of our CQ.
            let n = unsafe { ((*(*cq).context).ops.poll_cq.expect("poll_cq"))(cq, 1, &mut wc) };
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
        self.qp.id.disconnect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_zeroes_and_counts_without_references() {
        let b = Buffer::map(4 * 4096).unwrap();
        let mut c = b.cpu_access().unwrap();
        assert!(b.cpu_access().is_none(), "one handle only");
        assert_eq!(c.count_used_pages(0, 4 * 4096), 0);
        // SAFETY: test-only writes inside the mapping, no NIC involved.
        unsafe {
            *b.ptr(4096 + 17) = 1;
            *b.ptr(3 * 4096 + 4095) = 9;
        }
        assert_eq!(c.count_used_pages(0, 4 * 4096), 2);
        assert_eq!(c.count_used_pages(4096, 4096), 1);
        c.zero(4096, 4096);
        assert_eq!(c.count_used_pages(0, 4 * 4096), 1);
        // The handle keeps the mapping alive on its own, on another thread.
        drop(b);
        let t = std::thread::spawn(move || {
            c.zero(0, 4 * 4096);
            c.count_used_pages(0, 4 * 4096)
        });
        assert_eq!(t.join().unwrap(), 0);
    }

    #[test]
    #[should_panic(expected = "outside the buffer")]
    fn out_of_range_zeroing_panics() {
        Buffer::map(4096)
            .unwrap()
            .cpu_access()
            .unwrap()
            .zero(4096, 1);
    }

    #[test]
    fn a_small_pool_is_locked() {
        // 2 MiB fits the default 8 MiB RLIMIT_MEMLOCK of a non-root user.
        let b = Buffer::map_pool(2 * MIB, HugePages::Auto).unwrap();
        assert_eq!(b.len(), 2 * MIB);
        assert!(
            b.description.starts_with("locked in memory"),
            "{}",
            b.description
        );
        assert_eq!(
            b.cpu_access().unwrap().count_used_pages(0, 2 * MIB as u64),
            0
        );
    }

    #[test]
    fn a_pool_over_rlimit_memlock_is_refused_with_the_fix() {
        // Only meaningful without CAP_IPC_LOCK (e.g. under
        // `setpriv --bounding-set -ipc_lock` with `ulimit -l 8192`).
        let Some(limit) = memlock_limit() else {
            return;
        };
        if has_cap_ipc_lock() {
            return;
        }
        let len = (limit as usize + 4 * MIB).next_multiple_of(MIB);
        let e = Buffer::map_pool(len, HugePages::Off)
            .err()
            .expect("must fail");
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        let m = e.to_string();
        assert!(
            m.contains("RLIMIT_MEMLOCK") && m.contains("LimitMEMLOCK=infinity"),
            "{m}"
        );
    }

    #[test]
    fn memlock_advice_names_the_limit_and_the_fix() {
        if memlock_limit().is_none() || has_cap_ipc_lock() {
            assert!(memlock_advice(MIB as u64).contains("free memory"));
            return;
        }
        let a = memlock_advice(160 * MIB as u64);
        assert!(a.contains("RLIMIT_MEMLOCK"));
        assert!(a.contains("LimitMEMLOCK=infinity"));
        assert!(a.contains("160 MiB"));
    }
}
