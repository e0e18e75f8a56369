// SPDX-License-Identifier: GPL-2.0
//! A memory server: connecting to it, its session and region, its health,
//! and moving one page to or from it.
//!
//! ## Health, reconnecting, and when pages are lost
//!
//! A server is in one of three states:
//!
//! - **Up**: stores and loads use it.
//! - **Reconnecting**: one of its requests failed (an RDMA error, a
//!   request past `timeout_ms`, or the CM reporting a disconnect). The
//!   failed queue is marked broken, and the recovery thread
//!   (`Server::recover`, run by rswap_rdma_main.rs) rebuilds broken queues
//!   with backoff. Stores skip the server. A load of one of its pages goes
//!   through any of its read queues that still works, or waits for a
//!   rebuilt one, up to `loss_timeout_s` after the first failure (the
//!   model is the NVMe-oF host's controller-loss timeout). When every
//!   queue works again the server is Up.
//! - **Lost**: it stayed unreachable past `loss_timeout_s`, or it came back
//!   with a new session (memserver restarted, or dropped our region after
//!   its `--grace-s`), so the pages it held are gone. Their slot
//!   generation is retired (placement.rs): loads of them fail with EIO,
//!   which the kernel turns into SIGBUS for the task, never stale data.
//!   The recovery thread keeps reconnecting; once every queue is back, new
//!   pages go to the server again, in the new generation.
//!
//! The session: memserver gives a node a random token in its first reply,
//! and keeps the node's region for its `--grace-s` after the node's last
//! queue goes. A rebuilt queue presents the token; the same token back
//! means the same region with our pages in it, a different one means a new
//! region, and the old pages are declared lost.

use crate::ffi::{try_box, PageRef, SpinLock};
use crate::params::Params;
use crate::placement::{Region, RegionError, Slots};
use crate::proto::{Reply, Request, Status, Token, NO_TOKEN, SECRET_LEN};
use crate::queue::{Queue, Queues, QUEUE_DEPTH};
use crate::rdma::{self, Conn, ConnectError, Endpoint, Failure, Op, Pd, PdRef, PRIVATE_MAX};
use crate::stats::ServerStats;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use kernel::error::code;
use kernel::prelude::*;

const MIB: u64 = 1 << 20;

const UP: u8 = 0;
const RECONNECTING: u8 = 1;
const LOST: u8 = 2;

/// First and longest pause between rebuild attempts of an unreachable
/// server, in ms.
const BACKOFF_MIN_MS: u32 = 250;
const BACKOFF_MAX_MS: u32 = 4000;
/// How often a waiting load looks for a working queue again, in ms.
const LOAD_RETRY_MS: u32 = 100;

/// What a connection asks of the server.
struct Ask {
    node_id: u64,
    mib: u32,
    secret: [u8; SECRET_LEN],
    timeout_ms: u32,
}

/// The node's session at the server: the region it grants and the token
/// that proves the region is ours.
#[derive(Clone, Copy)]
struct Session {
    region: Region,
    raw: (u32, u64, u64),
    token: Token,
}

pub(crate) struct Server {
    pub(crate) ep: Endpoint,
    // The queues are declared (so dropped) before the PD they use.
    queues: Queues,
    pd: Pd,
    ask: Ask,
    session: Box<SpinLock<Session>>,
    slots: Slots,
    /// Slots of the first region: the most any later region is used for.
    capacity: u32,
    state: AtomicU8,
    /// Jiffies when the server last left Up.
    since: AtomicU64,
    /// Bound on an outage, in jiffies.
    loss: u64,
    /// Recovery thread only: the next rebuild attempt, and the pause.
    next_try: AtomicU64,
    backoff_ms: AtomicU32,
    /// Boxed: debugfs holds the counters' addresses.
    pub(crate) stats: Box<ServerStats>,
}

/// Logs why connecting to `ep` failed; the error for insmod.
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
            let (msg, err) = match Reply::decode(&p[..n.min(PRIVATE_MAX)]).ok().map(|r| r.status) {
                Some(Status::BadRequest) => (
                    "refused: it did not understand our request or failed to serve it (its log says which)",
                    code::EINVAL,
                ),
                Some(Status::BadSecret) => ("refused: wrong secret", code::EPERM),
                Some(Status::NotAllowed) => (
                    "refused: this node's address is not in its --allow list",
                    code::EPERM,
                ),
                Some(Status::NoSpace) => (
                    "refused: no room (its pool is full, or a limit such as --max-nodes was reached; its log says which)",
                    code::ENOSPC,
                ),
                Some(Status::NodeInUse) => (
                    "refused: our node_id is in use there by another session (two nodes with one node_id?)",
                    code::EEXIST,
                ),
                Some(Status::Ok) | None => (
                    "rejected the connection (no memserver on that port, or an older protocol?)",
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

/// The session granted in an accept's private data, checked; a bad reply
/// is logged, naming the server.
fn granted(ep: Endpoint, private: &[u8], want: u64) -> Result<Session> {
    let r = match Reply::decode(private).ok() {
        Some(r) if r.status == Status::Ok && r.token != NO_TOKEN => r,
        _ => {
            pr_err!(
                "server {}: accepted without a usable region; is it an rswap memserver?\n",
                ep
            );
            return Err(code::EINVAL);
        }
    };
    match Region::new(r.rkey, r.addr, r.size, want) {
        Ok(region) => Ok(Session {
            region,
            raw: (r.rkey, r.addr, r.size),
            token: r.token,
        }),
        Err(RegionError::TooSmall) => {
            pr_err!(
                "server {}: accepted without a usable region; is it an rswap memserver?\n",
                ep
            );
            Err(code::EINVAL)
        }
        Err(RegionError::Wraps) => {
            pr_err!(
                "server {}: refused its reply: region at {:#x} of {} bytes runs past the end of the address space\n",
                ep,
                r.addr,
                r.size
            );
            Err(code::EINVAL)
        }
    }
}

/// Opens queue `q` to `ep` presenting `token`. With `quiet`, failures are
/// not logged (a rebuild during an outage fails again and again).
fn open(
    ep: Endpoint,
    ask: &Ask,
    pd: PdRef<'_>,
    q: usize,
    token: Token,
    quiet: bool,
) -> Result<(Conn, Session)> {
    let req = Request {
        queue: q as u16,
        node_id: ask.node_id,
        want_mib: ask.mib,
        secret: ask.secret,
        token,
        release: false,
    };
    let (conn, priv_data, n) =
        match Conn::connect(ep, pd, &req.encode(), ask.timeout_ms, QUEUE_DEPTH) {
            Ok(c) => c,
            Err(_) if quiet => return Err(code::EHOSTUNREACH),
            Err(e) => return Err(connect_error(ep, e, ask.timeout_ms)),
        };
    let session = granted(ep, &priv_data[..n.min(PRIVATE_MAX)], ask.mib as u64 * MIB)?;
    Ok((conn, session))
}

impl Server {
    /// Connects `2 * cpus` queues (a read and a write queue per CPU) to
    /// `ep` and checks the region it grants. Any failure is logged and
    /// undoes what was set up (Drop order).
    pub(crate) fn connect(ep: Endpoint, p: &Params, cpus: usize) -> Result<Server> {
        let ask = Ask {
            node_id: p.node_id,
            mib: p.mib,
            secret: p.secret,
            timeout_ms: p.timeout_ms,
        };
        // Declared first, so dropped after the connections made with it.
        let mut pd = None;
        let mut queues = Queues::new();
        let mut first: Option<Session> = None;
        for q in 0..2 * cpus {
            let token = first.map_or(NO_TOKEN, |s| s.token);
            let (conn, session) = open(ep, &ask, PdRef::Create(&mut pd), q, token, false)?;
            match first {
                None => first = Some(session),
                Some(s) if s.raw != session.raw || s.token != session.token => {
                    pr_err!("server {}: queues got different regions\n", ep);
                    return Err(code::EINVAL);
                }
                Some(_) => {}
            }
            queues.push(Queue::new(conn, q, Op::of_queue(q))?)?;
        }
        let session = first.ok_or(code::EINVAL)?;
        let region = session.region;
        let slots = Slots::new(region.slots())?;
        let stats = try_box(ServerStats::default())?;
        stats.up.store(1, Ordering::Relaxed);
        stats
            .free_pages
            .store(region.slots() as u64, Ordering::Relaxed);
        stats
            .capacity_pages
            .store(region.slots() as u64, Ordering::Relaxed);
        pr_info!(
            "server {}: {} queues connected, region of {} MiB (rkey {:#x})\n",
            ep,
            2 * cpus,
            region.bytes() / MIB,
            region.rkey
        );
        Ok(Server {
            ep,
            queues,
            pd: pd.ok_or(code::EINVAL)?,
            ask,
            session: SpinLock::new(session)?,
            slots,
            capacity: region.slots(),
            state: AtomicU8::new(UP),
            since: AtomicU64::new(0),
            loss: rdma::ms_to_jiffies(p.loss_timeout_s.saturating_mul(1000)),
            next_try: AtomicU64::new(0),
            backoff_ms: AtomicU32::new(BACKOFF_MIN_MS),
            stats,
        })
    }

    /// Up: stores may use it.
    pub(crate) fn usable(&self) -> bool {
        self.state.load(Ordering::Acquire) == UP
    }

    pub(crate) fn free_pages(&self) -> u64 {
        self.stats.free_pages.load(Ordering::Relaxed)
    }

    /// The slot generation of the pages it holds now.
    pub(crate) fn gen(&self) -> u32 {
        self.slots.gen()
    }

    /// Gives back `slot` of generation `gen` (nothing if that generation
    /// was retired: its slots were all freed then).
    pub(crate) fn put_slot(&self, slot: u32, gen: u32) -> bool {
        let freed = self.slots.put(slot, gen);
        if freed {
            self.stats.free_pages.fetch_add(1, Ordering::Relaxed);
        }
        freed
    }

    /// Stores `page` in a free slot with an RDMA WRITE on this CPU's write
    /// queue; returns the slot and its generation. Ok only if the write
    /// completed successfully and, checked after its completion, the slot's
    /// generation and the session are still the ones it was written in.
    /// Never retried: a failed store loses nothing (the page goes to the
    /// next tier or the swap device).
    pub(crate) fn store(&self, page: &PageRef, timeout: u64) -> Result<(u32, u32)> {
        if !self.usable() {
            return Err(code::EAGAIN);
        }
        let (slot, gen) = self.slots.take().ok_or(code::ENOSPC)?;
        self.stats.free_pages.fetch_sub(1, Ordering::Relaxed);
        let r = self.write(page, slot, gen, timeout);
        if r.is_err() {
            self.put_slot(slot, gen);
        }
        r.map(|()| (slot, gen))
    }

    fn write(&self, page: &PageRef, slot: u32, gen: u32, timeout: u64) -> Result {
        let (remote, rkey) = self.target(slot).ok_or(code::EINVAL)?;
        let q = self.queues.for_cpu(Op::Write).ok_or(code::EIO)?;
        if q.broken() {
            return Err(code::EAGAIN);
        }
        let t0 = rdma::now_ns();
        match q.transfer(&self.pd, page, Op::Write, remote, rkey, timeout) {
            Ok(()) => {
                self.stats.writes.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .write_lat
                    .record(rdma::now_ns().saturating_sub(t0));
            }
            Err(f) => {
                self.trouble(f);
                return Err(f.errno());
            }
        }
        if self.slots.gen() != gen || self.target(slot).map(|t| t.1) != Some(rkey) {
            return Err(code::ECONNRESET);
        }
        Ok(())
    }

    /// Reads `slot` of generation `gen` into `page`. While the server is
    /// reconnecting this tries its other read queues and waits for rebuilt
    /// ones, up to `loss_timeout_s` after the outage began; EIO once the
    /// page is lost.
    pub(crate) fn read(&self, page: &PageRef, slot: u32, gen: u32, timeout: u64) -> Result {
        let mut retried = false;
        loop {
            if self.slots.gen() != gen || self.state.load(Ordering::Acquire) == LOST {
                return Err(code::EIO);
            }
            let (remote, rkey) = self.target(slot).ok_or(code::EIO)?;
            let t0 = rdma::now_ns();
            let tried = self.queues.first_working(Op::Read, |q| {
                q.transfer(&self.pd, page, Op::Read, remote, rkey, timeout)
            });
            match tried {
                Some(Ok(())) => {
                    // A new generation may mean a new region: what we read
                    // is then not our page.
                    if self.slots.gen() != gen {
                        return Err(code::EIO);
                    }
                    self.stats.reads.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .read_lat
                        .record(rdma::now_ns().saturating_sub(t0));
                    if retried {
                        self.stats.loads_recovered.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(());
                }
                Some(Err(f)) => self.trouble(f),
                None => {}
            }
            if !retried {
                retried = true;
                self.stats.loads_waited.fetch_add(1, Ordering::Relaxed);
            }
            if self.past_bound() {
                self.declare_lost("unreachable for longer than loss_timeout_s");
                return Err(code::EIO);
            }
            rdma::sleep_ms(LOAD_RETRY_MS);
        }
    }

    /// The remote address and rkey of `slot` in the current session.
    fn target(&self, slot: u32) -> Option<(u64, u32)> {
        self.session
            .with(|s| s.region.slot_addr(slot).map(|a| (a, s.region.rkey)))
    }

    /// A request failed: the server is reconnecting (if it was up).
    fn trouble(&self, f: Failure) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        if self
            .state
            .compare_exchange(UP, RECONNECTING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.since.store(rdma::jiffies(), Ordering::Release);
            self.next_try.store(0, Ordering::Relaxed);
            self.backoff_ms.store(BACKOFF_MIN_MS, Ordering::Relaxed);
            self.stats.up.store(0, Ordering::Relaxed);
            self.stats.outages.fetch_add(1, Ordering::Relaxed);
            pr_warn!(
                "server {}: {}; reconnecting: new pages go elsewhere, faults on its {} pages wait up to {} ms\n",
                self.ep,
                f.why(),
                self.stats.pages.load(Ordering::Relaxed),
                rdma::jiffies_to_ms(self.loss)
            );
        }
    }

    /// Reconnecting for longer than the bound.
    fn past_bound(&self) -> bool {
        self.state.load(Ordering::Acquire) == RECONNECTING
            && rdma::jiffies().wrapping_sub(self.since.load(Ordering::Acquire)) as i64
                > self.loss as i64
    }

    /// The pages held are gone: retire their generation (every slot is
    /// free again, and loads of them fail) and stop using the server
    /// until it is back. `slots` is how many slots the region has now.
    fn retire_pages(&self, why: &str, slots: u32) {
        let prev = self.state.swap(LOST, Ordering::AcqRel);
        if prev == UP {
            self.since.store(rdma::jiffies(), Ordering::Release);
        }
        self.slots.reset(slots.min(self.capacity));
        let lost = self.stats.pages.swap(0, Ordering::Relaxed);
        self.stats.lost_pages.fetch_add(lost, Ordering::Relaxed);
        self.stats
            .free_pages
            .store(slots.min(self.capacity) as u64, Ordering::Relaxed);
        self.stats.up.store(0, Ordering::Relaxed);
        pr_err!(
            "server {}: {}: its {} pages are lost (a fault on one gets SIGBUS, never stale data); new pages go elsewhere until it is back\n",
            self.ep,
            why,
            lost
        );
    }

    fn declare_lost(&self, why: &str) {
        if self.state.load(Ordering::Acquire) == RECONNECTING {
            let slots = self.session.with(|s| s.region.slots());
            self.retire_pages(why, slots);
        }
    }

    /// Called by the recovery thread, periodically: rebuilds the broken
    /// queues of a server that is not up, with backoff, declares its pages
    /// lost past the bound, and brings it back up once every queue works.
    pub(crate) fn recover(&self) {
        if self.usable() {
            if !self.queues.any_broken() {
                return;
            }
            // A queue the CM found disconnected while idle.
            self.trouble(Failure::Disconnected);
        }
        let now = rdma::jiffies();
        if (now.wrapping_sub(self.next_try.load(Ordering::Relaxed)) as i64) < 0 {
            return;
        }
        if self.past_bound() {
            self.declare_lost("unreachable for longer than loss_timeout_s");
        }
        let mut all = true;
        for q in self.queues.iter() {
            match q.rebuild(|| self.reopen(q.index())) {
                Ok(true) => {
                    self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) => {}
                Err(_) => {
                    all = false;
                    break;
                }
            }
        }
        if !all {
            let b = self.backoff_ms.load(Ordering::Relaxed);
            self.backoff_ms
                .store((b * 2).min(BACKOFF_MAX_MS), Ordering::Relaxed);
            self.next_try
                .store(now.wrapping_add(rdma::ms_to_jiffies(b)), Ordering::Relaxed);
            return;
        }
        self.backoff_ms.store(BACKOFF_MIN_MS, Ordering::Relaxed);
        let prev = self.state.swap(UP, Ordering::AcqRel);
        if prev != UP {
            self.stats.up.store(1, Ordering::Relaxed);
            let ms = rdma::jiffies_to_ms(
                rdma::jiffies().wrapping_sub(self.since.load(Ordering::Acquire)),
            );
            pr_info!(
                "server {}: back after {} ms, every queue rebuilt; {}\n",
                self.ep,
                ms,
                if prev == LOST {
                    "its earlier pages stay lost, new pages go there again"
                } else {
                    "no page was lost"
                }
            );
        }
    }

    /// A new connection for queue `q`, presenting our token. A reply with
    /// another token (or region) is a new session: the old pages are
    /// gone, so they are retired, the new region is used from now on, and
    /// every queue is rebuilt into it (this one is refused, to be redone).
    fn reopen(&self, q: usize) -> Result<Conn> {
        let cur = self.session.with(|s| *s);
        let (conn, new) = open(self.ep, &self.ask, PdRef::Use(&self.pd), q, cur.token, true)?;
        if new.token == cur.token && new.raw == cur.raw {
            return Ok(conn);
        }
        // Retire first, so a load that raced with us sees the new
        // generation before the new region exists (server.read re-checks).
        self.retire_pages(
            "it has a new session (memserver restarted, or dropped our region)",
            new.region.slots(),
        );
        self.session.with(|s| *s = new);
        self.stats.capacity_pages.store(
            new.region.slots().min(self.capacity) as u64,
            Ordering::Relaxed,
        );
        self.queues.mark_all_broken();
        Err(code::EAGAIN)
    }
}

impl Drop for Server {
    /// Tells the server that this node leaves, so it frees our region now
    /// instead of keeping it for its grace period: one more connection
    /// request, with the release flag and our token, which it rejects.
    /// Best effort, and bounded like any connection attempt; the queues are
    /// dropped (disconnected) after this.
    fn drop(&mut self) {
        let req = Request {
            queue: 0,
            node_id: self.ask.node_id,
            want_mib: 0,
            secret: self.ask.secret,
            token: self.session.with(|s| s.token),
            release: true,
        };
        match Conn::connect(
            self.ep,
            PdRef::Use(&self.pd),
            &req.encode(),
            self.ask.timeout_ms,
            QUEUE_DEPTH,
        ) {
            Err(ConnectError::Rejected(p, n, _))
                if Reply::decode(&p[..n.min(PRIVATE_MAX)]).map(|r| r.status) == Ok(Status::Ok) =>
            {
                pr_info!("server {}: released our region\n", self.ep)
            }
            _ => pr_warn!(
                "server {}: could not release our region; it frees it after its grace period\n",
                self.ep
            ),
        }
    }
}
