// SPDX-License-Identifier: GPL-2.0
//! rswap_rdma: an rswap backend that keeps pages in the DRAM of memory
//! servers (memserver) over RDMA.
//!
//! At load it connects to every server in `servers=`: per CPU and per
//! server one reliable connection for reads (page faults) and one for
//! writes (swap-out), each with its own polled CQ. Each server grants a
//! region of its pool; a page goes to one 4 KiB slot of one region with a
//! one-sided RDMA WRITE and comes back with an RDMA READ.
//!
//! Placement, per page: a server is drawn at random with probability
//! proportional to its free slots, so pages spread over all servers in
//! proportion to their free capacity and a fuller server is used less.
//! Per-page placement keeps no chunk state and balances from the first
//! page; the cost is one random draw per store. When every server is full,
//! stores are refused and the swap device takes the pages.
//!
//! A server that stops answering (an RDMA error, a request past the
//! timeout, or the CM reporting a disconnect) is marked down: stores skip
//! it, and loads of pages that lived only there fail with EIO, which the
//! kernel turns into SIGBUS for the task rather than stale data.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel::error::code;
use kernel::prelude::*;

#[path = "../rswap/backend.rs"]
mod backend;
#[path = "../rswap/ffi.rs"]
mod ffi;
mod rdma;

use backend::{Backend, Registration, SwapKey};
use ffi::{DebugfsDir, PageRef, SpinLock, ValueMap, GFP_SWAPOUT, PAGE_SIZE};
use rdma::{params, Conn, ConnectError, Endpoint, Pd, PRIVATE_MAX};

module! {
    type: RswapRdma,
    name: b"rswap_rdma",
    author: b"rswap developers",
    description: b"rswap backend keeping swapped pages in remote memory over RDMA",
    license: b"GPL",
}

const MAX_SERVERS: usize = 8;
/// Send queue depth of a connection; one request is in flight at a time.
const QUEUE_DEPTH: u32 = 4;
const MIB: u64 = 1 << 20;

// The connection protocol; memserver/src/proto.rs documents it.
const MAGIC: u32 = 0x5057_5352;
const VERSION: u16 = 1;
const REQUEST_LEN: usize = 40;
const REPLY_LEN: usize = 32;

struct Params {
    servers: Vec<Endpoint>,
    secret: [u8; 16],
    mib: u32,
    timeout_ms: u32,
    node_id: u64,
}

fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 {
        return None;
    }
    s.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u32)
    })
}

fn parse_endpoint(s: &[u8]) -> Option<Endpoint> {
    let colon = s.iter().position(|&c| c == b':')?;
    let port = parse_u32(&s[colon + 1..]).filter(|&p| p > 0 && p < 65536)?;
    let mut ip = [0u8; 4];
    let mut parts = s[..colon].split(|&c| c == b'.');
    for b in ip.iter_mut() {
        *b = parse_u32(parts.next()?).filter(|&v| v < 256)? as u8;
    }
    parts.next().is_none().then(|| Endpoint {
        ip,
        port: port as u16,
    })
}

fn parse_secret(s: &[u8]) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = (hex(s[2 * i])? * 16 + hex(s[2 * i + 1])?) as u8;
    }
    Some(out)
}

struct Show<'a>(&'a [u8]);

impl core::fmt::Display for Show<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(core::str::from_utf8(self.0).unwrap_or("<not UTF-8>"))
    }
}

impl core::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d] = self.ip;
        write!(f, "{}.{}.{}.{}:{}", a, b, c, d, self.port)
    }
}

fn parse_params() -> Result<Params> {
    let list = match params::servers() {
        Some(s) if !s.is_empty() => s,
        _ => {
            pr_err!("servers= is required, e.g. servers=10.77.1.2:7471,10.77.2.2:7471\n");
            return Err(code::EINVAL);
        }
    };
    let mut servers = Vec::new();
    for item in list.split(|&c| c == b',') {
        let ep = match parse_endpoint(item) {
            Some(ep) => ep,
            None => {
                pr_err!("servers=: '{}' is not IPV4:PORT\n", Show(item));
                return Err(code::EINVAL);
            }
        };
        if servers.len() == MAX_SERVERS {
            pr_err!("servers=: at most {} servers\n", MAX_SERVERS);
            return Err(code::EINVAL);
        }
        servers.try_push(ep)?;
    }
    let secret = match params::secret().and_then(parse_secret) {
        Some(s) => s,
        None => {
            pr_err!("secret= is required: 32 hex digits, the same as memserver --secret\n");
            return Err(code::EINVAL);
        }
    };
    let mib = params::mib_per_server();
    if mib == 0 {
        pr_err!("mib_per_server=0: ask each server for at least 1 MiB\n");
        return Err(code::EINVAL);
    }
    let timeout_ms = params::timeout_ms();
    if !(100..=60000).contains(&timeout_ms) {
        pr_err!("timeout_ms={} is outside 100..60000\n", timeout_ms);
        return Err(code::EINVAL);
    }
    let node_id = match params::node_id() {
        0 => rdma::random_u64() | 1,
        n => n,
    };
    Ok(Params {
        servers,
        secret,
        mib,
        timeout_ms,
        node_id,
    })
}

fn request(p: &Params, queue: u16) -> [u8; REQUEST_LEN] {
    let mut b = [0u8; REQUEST_LEN];
    b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    b[4..6].copy_from_slice(&VERSION.to_le_bytes());
    b[6..8].copy_from_slice(&queue.to_le_bytes());
    b[8..16].copy_from_slice(&p.node_id.to_le_bytes());
    b[16..20].copy_from_slice(&p.mib.to_le_bytes());
    b[24..40].copy_from_slice(&p.secret);
    b
}

/// A granted region: (status, rkey, addr, size).
fn reply(b: &[u8]) -> Option<(u16, u32, u64, u64)> {
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let u64_at = |o: usize| (u32_at(o) as u64) | ((u32_at(o + 4) as u64) << 32);
    (b.len() >= REPLY_LEN && u32_at(0) == MAGIC && u16_at(4) == VERSION)
        .then(|| (u16_at(6), u32_at(8), u64_at(16), u64_at(24)))
}

/// Latency histogram in power-of-two microsecond buckets, with p50/p99
/// refreshed every 64 samples for debugfs.
#[derive(Default)]
struct Latency {
    buckets: [AtomicU64; 24],
    samples: AtomicU64,
    p50_us: AtomicU64,
    p99_us: AtomicU64,
}

impl Latency {
    fn record(&self, ns: u64) {
        let us = ns / 1000;
        let b = (64 - us.leading_zeros() as usize).min(self.buckets.len() - 1);
        self.buckets[b].fetch_add(1, Ordering::Relaxed);
        if self.samples.fetch_add(1, Ordering::Relaxed) % 64 == 63 {
            self.p50_us.store(self.percentile(50), Ordering::Relaxed);
            self.p99_us.store(self.percentile(99), Ordering::Relaxed);
        }
    }

    /// Upper bound (us) of the bucket holding the p-th percentile.
    fn percentile(&self, p: u64) -> u64 {
        let counts: [u64; 24] = core::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed));
        let total: u64 = counts.iter().sum();
        let want = (total * p + 99) / 100;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want && total > 0 {
                return 1 << i;
            }
        }
        0
    }
}

#[derive(Default)]
struct ServerStats {
    pages: AtomicU64,
    reads: AtomicU64,
    writes: AtomicU64,
    errors: AtomicU64,
    up: AtomicU64,
    free_pages: AtomicU64,
    capacity_pages: AtomicU64,
    read_lat: Latency,
    write_lat: Latency,
}

/// A connection used by one request at a time.
struct Queue {
    busy: AtomicBool,
    conn: Conn,
}

impl Queue {
    fn with<R>(&self, f: impl FnOnce(&Conn) -> R) -> R {
        while self.busy.swap(true, Ordering::Acquire) {
            rdma::cond_resched();
        }
        let r = f(&self.conn);
        self.busy.store(false, Ordering::Release);
        r
    }
}

struct Server {
    ep: Endpoint,
    // Connections are declared (so dropped) before the PD they use.
    read_q: Vec<Queue>,
    write_q: Vec<Queue>,
    pd: Pd,
    addr: u64,
    rkey: u32,
    free: Box<SpinLock<Vec<u32>>>,
    down: AtomicBool,
    stats: ServerStats,
}

fn connect_error(ep: Endpoint, e: ConnectError, timeout_ms: u32) -> Error {
    match e {
        ConnectError::Timeout(step) => {
            pr_err!(
                "server {}: {} timed out after {} ms: is it up and reachable?\n",
                ep,
                step,
                timeout_ms
            );
            code::ETIMEDOUT
        }
        ConnectError::Unreachable(step, status) => {
            pr_err!(
                "server {}: {} failed (status {}): unreachable, or no memserver there\n",
                ep,
                step,
                status
            );
            code::EHOSTUNREACH
        }
        ConnectError::Rejected(p, n, status) => {
            let (msg, err) = match reply(&p[..n.min(PRIVATE_MAX)]).map(|r| r.0) {
                Some(1) => ("refused: it does not understand our request", code::EINVAL),
                Some(2) => ("refused: wrong secret", code::EPERM),
                Some(3) => (
                    "refused: this node's address is not in its --allow list",
                    code::EPERM,
                ),
                Some(4) => ("refused: its pool is full", code::ENOSPC),
                _ => (
                    "rejected the connection (no memserver on that port?)",
                    code::ECONNREFUSED,
                ),
            };
            pr_err!("server {}: {} (CM status {})\n", ep, msg, status);
            err
        }
        ConnectError::Setup(what, e) => {
            pr_err!("server {}: {} failed ({})\n", ep, what, e.to_errno());
            e
        }
    }
}

impl Server {
    fn connect(ep: Endpoint, p: &Params, cpus: usize) -> Result<Server> {
        let mut pd = None;
        let mut read_q = Vec::new();
        let mut write_q = Vec::new();
        let mut region: Option<(u32, u64, u64)> = None;
        for q in 0..2 * cpus {
            let req = request(p, q as u16);
            let (conn, priv_data, n) = Conn::connect(ep, &mut pd, &req, p.timeout_ms, QUEUE_DEPTH)
                .map_err(|e| connect_error(ep, e, p.timeout_ms))?;
            let (rkey, addr, size) = match reply(&priv_data[..n]) {
                Some((0, rkey, addr, size)) if size >= PAGE_SIZE as u64 => (rkey, addr, size),
                _ => {
                    pr_err!(
                        "server {}: accepted without a usable region; is it an rswap memserver?\n",
                        ep
                    );
                    return Err(code::EINVAL);
                }
            };
            match region {
                None => region = Some((rkey, addr, size)),
                Some(r) if r != (rkey, addr, size) => {
                    pr_err!("server {}: queues got different regions\n", ep);
                    return Err(code::EINVAL);
                }
                Some(_) => {}
            }
            let queue = Queue {
                busy: AtomicBool::new(false),
                conn,
            };
            if q % 2 == 0 {
                read_q.try_push(queue)?
            } else {
                write_q.try_push(queue)?
            }
        }
        let (rkey, addr, size) = region.ok_or(code::EINVAL)?;
        let slots = (size / PAGE_SIZE as u64).min(u32::MAX as u64) as u32;
        let mut free = Vec::new();
        free.try_reserve_exact(slots as usize)?;
        for s in (0..slots).rev() {
            free.try_push(s)?;
        }
        let stats = ServerStats::default();
        stats.up.store(1, Ordering::Relaxed);
        stats.free_pages.store(slots as u64, Ordering::Relaxed);
        stats.capacity_pages.store(slots as u64, Ordering::Relaxed);
        pr_info!(
            "server {}: {} queues connected, region of {} MiB (rkey {:#x})\n",
            ep,
            2 * cpus,
            size / MIB,
            rkey
        );
        Ok(Server {
            ep,
            read_q,
            write_q,
            pd: pd.ok_or(code::EINVAL)?,
            addr,
            rkey,
            free: SpinLock::new(free)?,
            down: AtomicBool::new(false),
            stats,
        })
    }

    fn usable(&self) -> bool {
        !self.down.load(Ordering::Acquire)
    }

    fn mark_down(&self, why: &str) {
        if !self.down.swap(true, Ordering::AcqRel) {
            self.stats.up.store(0, Ordering::Relaxed);
            pr_err!(
                "server {} is down ({}): new pages go elsewhere, its {} pages are lost\n",
                self.ep,
                why,
                self.stats.pages.load(Ordering::Relaxed)
            );
        }
    }

    fn free_pages(&self) -> u64 {
        self.stats.free_pages.load(Ordering::Relaxed)
    }

    fn take_slot(&self) -> Option<u32> {
        let s = self.free.with(|v| v.pop())?;
        self.stats.free_pages.fetch_sub(1, Ordering::Relaxed);
        Some(s)
    }

    fn put_slot(&self, slot: u32) {
        // The vector was reserved for every slot: this never allocates.
        if self.free.with(|v| v.try_push(slot)).is_ok() {
            self.stats.free_pages.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One page transfer on this CPU's queue of the right kind.
    fn transfer(&self, page: &PageRef, write: bool, slot: u32, timeout: u64) -> Result {
        let queues = if write { &self.write_q } else { &self.read_q };
        let q = &queues[rdma::cpu_id() % queues.len()];
        let remote = self.addr + slot as u64 * PAGE_SIZE as u64;
        let t0 = rdma::now_ns();
        let r = q.with(|c| {
            if c.lost() {
                return Err(code::ECONNRESET);
            }
            c.transfer(&self.pd, page, write, remote, self.rkey, timeout)
        });
        let dt = rdma::now_ns().saturating_sub(t0);
        match r {
            Ok(()) if write => {
                self.stats.writes.fetch_add(1, Ordering::Relaxed);
                self.stats.write_lat.record(dt);
            }
            Ok(()) => {
                self.stats.reads.fetch_add(1, Ordering::Relaxed);
                self.stats.read_lat.record(dt);
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.mark_down(if e == code::ECONNRESET {
                    "disconnected"
                } else {
                    "RDMA error or timeout"
                });
            }
        }
        r
    }
}

struct Rdma {
    servers: Vec<Server>,
    /// Swap key -> (server << 32 | slot).
    placement: ValueMap,
    timeout: u64,
}

impl Rdma {
    /// A usable server with room, drawn in proportion to free capacity.
    fn pick(&self) -> Option<(usize, &Server)> {
        let total: u64 = self
            .servers
            .iter()
            .filter(|s| s.usable())
            .map(|s| s.free_pages())
            .sum();
        if total == 0 {
            return None;
        }
        let mut r = rdma::random_below(total);
        for (i, s) in self.servers.iter().enumerate().filter(|(_, s)| s.usable()) {
            let f = s.free_pages();
            if r < f {
                return Some((i, s));
            }
            r -= f;
        }
        self.servers
            .iter()
            .enumerate()
            .find(|(_, s)| s.usable() && s.free_pages() > 0)
    }
}

impl Backend for Rdma {
    fn store(&self, key: SwapKey, page: &PageRef) -> Result {
        let (i, s) = self.pick().ok_or(code::ENOSPC)?;
        let slot = s.take_slot().ok_or(code::ENOSPC)?;
        if let Err(e) = s.transfer(page, true, slot, self.timeout) {
            s.put_slot(slot);
            return Err(e);
        }
        if let Err(e) =
            self.placement
                .insert(key.raw(), ((i as u64) << 32) | slot as u64, GFP_SWAPOUT)
        {
            s.put_slot(slot);
            return Err(e);
        }
        s.stats.pages.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn load(&self, key: SwapKey, page: &mut PageRef) -> Result {
        let v = self.placement.get(key.raw()).ok_or(code::EIO)?;
        let s = self.servers.get((v >> 32) as usize).ok_or(code::EIO)?;
        if !s.usable() {
            return Err(code::EIO);
        }
        s.transfer(page, false, v as u32, self.timeout)
            .map_err(|_| code::EIO)
    }

    fn invalidate(&self, key: SwapKey) {
        if let Some(v) = self.placement.remove(key.raw()) {
            if let Some(s) = self.servers.get((v >> 32) as usize) {
                s.put_slot(v as u32);
                s.stats.pages.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// A small formatter into a fixed buffer, for debugfs names.
struct Name {
    buf: [u8; 48],
    len: usize,
}

impl Write for Name {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let b = s.as_bytes();
        if self.len + b.len() >= self.buf.len() {
            return Err(core::fmt::Error);
        }
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
        Ok(())
    }
}

fn publish(root: &DebugfsDir, i: usize, s: &Server) -> Result<DebugfsDir> {
    let mut n = Name {
        buf: [0; 48],
        len: 0,
    };
    let [a, b, c, d] = s.ep.ip;
    write!(n, "server{}-{}.{}.{}.{}-{}", i, a, b, c, d, s.ep.port).map_err(|_| code::EINVAL)?;
    let dir = DebugfsDir::new(&n.buf[..n.len + 1], Some(root));
    let st = &s.stats;
    for (name, c) in [
        (&b"pages\0"[..], &st.pages),
        (b"reads\0", &st.reads),
        (b"writes\0", &st.writes),
        (b"errors\0", &st.errors),
        (b"up\0", &st.up),
        (b"free_pages\0", &st.free_pages),
        (b"capacity_pages\0", &st.capacity_pages),
        (b"read_lat_p50_us\0", &st.read_lat.p50_us),
        (b"read_lat_p99_us\0", &st.read_lat.p99_us),
        (b"write_lat_p50_us\0", &st.write_lat.p50_us),
        (b"write_lat_p99_us\0", &st.write_lat.p99_us),
    ] {
        dir.add_u64(name, c);
    }
    Ok(dir)
}

struct RswapRdma {
    /// Declared first: the files go before the counters they show.
    _dirs: Vec<DebugfsDir>,
    _root: DebugfsDir,
    _registration: Registration<Rdma>,
}

impl kernel::Module for RswapRdma {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let p = parse_params()?;
        let cpus = rdma::nr_cpus().max(1);
        let mut servers = Vec::new();
        for ep in p.servers.iter() {
            servers.try_push(Server::connect(*ep, &p, cpus)?)?;
        }
        let backend = Rdma {
            servers,
            placement: ValueMap::new()?,
            timeout: rdma::ms_to_jiffies(p.timeout_ms),
        };
        let registration = Registration::new(b"rdma\0", module, backend)?;
        let root = DebugfsDir::new(b"rswap_rdma\0", None);
        let mut dirs = Vec::new();
        for (i, s) in registration.backend().servers.iter().enumerate() {
            dirs.try_push(publish(&root, i, s)?)?;
        }
        pr_info!(
            "node {:#x}: {} servers, {} queues each, {} MiB asked of each\n",
            p.node_id,
            p.servers.len(),
            2 * cpus,
            p.mib
        );
        Ok(RswapRdma {
            _dirs: dirs,
            _root: root,
            _registration: registration,
        })
    }
}
