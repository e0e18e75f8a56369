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
//! The session: memserver gives a node a random token (masked, in every
//! grant), and keeps the node's region for its `--grace-s` after the
//! node's last queue goes. A rebuilt queue proves the token (proto.rs);
//! the same token back means the same region with our pages in it, a
//! different one means a new region, and the old pages are declared lost.
//! Every request and reply is authenticated with HMAC-SHA256 under the
//! shared secret (`Ask::seal`, `granted`): a server that cannot prove it
//! knows the secret gets no page.

use crate::ffi::{try_box, PageRef, SpinLock, PAGE_SIZE};
use crate::params::{Params, Redundancy};
use crate::placement::{Health, Region, RegionError, Slots};
use crate::proto::{server_id, DecodeError, Reply, Request, Sealed, Status, Tag, Token, NO_TOKEN};
use crate::queue::{Class, Queue, Queues, QUEUE_DEPTH};
use crate::rdma::{
    self, Conn, ConnectError, Endpoint, Failure, HmacKey, Op, Span, BATCH_MAX, PRIVATE_MAX,
};
use crate::stats::{Count, ServerStats};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use kernel::error::code;
use kernel::prelude::*;

const MIB: u64 = 1 << 20;

/// First and longest pause between rebuild attempts of an unreachable
/// server, in ms.
const BACKOFF_MIN_MS: u32 = 250;
const BACKOFF_MAX_MS: u32 = 4000;
/// How often a waiting load looks for a working queue again, in ms.
const LOAD_RETRY_MS: u32 = 100;

/// What a connection asks of the server, and the key that authenticates
/// the request and the server's reply (proto.rs).
struct Ask {
    node_id: u64,
    mib: u32,
    key: HmacKey,
    timeout_ms: u32,
    /// The readahead queues' depth (`readahead_depth=`).
    readahead_depth: u32,
    /// `poll_us=`, for the read and write queues.
    poll_us: u32,
    /// Bytes per slot: a page, or a chunk with erasure coding (ec.rs).
    unit: u32,
}

impl Ask {
    /// A request of `kind` for queue `queue`, dated now, with a fresh
    /// nonce, proving `token` (our session, or NO_TOKEN), sealed. None:
    /// the hash failed (logged).
    fn seal(&self, ep: Endpoint, queue: u16, kind: Kind, token: &Token) -> Option<Sealed> {
        let req = Request {
            queue,
            node_id: self.node_id,
            want_mib: if kind == Kind::Queue { self.mib } else { 0 },
            release: kind == Kind::Release,
            upstream: kind == Kind::Upstream,
            time: rdma::wall_seconds(),
            nonce: rdma::random_u32(),
        };
        let sealed = req.seal(&server_id(ep.ip, ep.port), token, &self.key);
        if sealed.is_none() {
            pr_err!("server {}: HMAC-SHA256 of our request failed\n", ep);
        }
        sealed
    }
}

/// What a connection request is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A queue: the server grants (or resumes) our region.
    Queue,
    /// We leave: the server frees our region.
    Release,
    /// Where is the server's upstream (proto.rs)?
    Upstream,
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
    queues: Queues,
    ask: Ask,
    session: Box<SpinLock<Session>>,
    /// Free slots, their generation, and the server's health, under one
    /// lock (placement.rs).
    slots: Slots,
    /// Slots of the first region: the most any later region is used for.
    capacity: u32,
    /// Bytes per slot (`Ask::unit`).
    unit: u32,
    /// Stores between taking a slot and recording the page: retiring a
    /// generation waits for them (see `retire`).
    inflight: AtomicU32,
    /// Bound on an outage, in jiffies.
    loss: u64,
    /// Bound on one request, in jiffies (also `ask.timeout_ms`).
    timeout: u64,
    /// Recovery thread only: the next rebuild attempt, and the pause.
    next_try: AtomicU64,
    backoff_ms: AtomicU32,
    /// With `redundancy=mirror` or `ec:K+1`, a page is not lost with one
    /// server, only its copy or chunk there (for the log).
    redundancy: Redundancy,
    /// Boxed: debugfs holds the counters' addresses.
    pub(crate) stats: Box<ServerStats>,
}

/// A store in flight on a server, from its slot until the page is recorded
/// (or refused); dropping it lets a retirement proceed.
pub(crate) struct InFlight<'a>(&'a AtomicU32);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Logs why connecting to `ep` failed; the error for insmod. `req` is the
/// request that was refused.
fn connect_error(ep: Endpoint, e: ConnectError, ask: &Ask, req: &Sealed) -> Error {
    let timeout_ms = ask.timeout_ms;
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
        ConnectError::Rejected(p, n, cm) => {
            let p = &p[..n.min(PRIVATE_MAX)];
            let (status, how) = match Reply::open(p, &req.tag, &ask.key) {
                Ok(r) => (Some(r), ""),
                // Refused before it could verify our request (a wrong
                // secret, a flood): the status is only a claim.
                Err(DecodeError::NotAuthentic) => (
                    Reply::claimed_status(p).map(|s| Reply::refusal(s, 0)),
                    " (unauthenticated: it could not verify our request)",
                ),
                Err(DecodeError::Version(v)) => {
                    pr_err!(
                        "server {}: refused: it speaks protocol version {}, we speak {}: run matching rswap_rdma and memserver (CM status {})\n",
                        ep,
                        v,
                        crate::proto::VERSION,
                        cm
                    );
                    return Error::from_errno(-(kernel::bindings::EPROTO as i32));
                }
                Err(_) => (None, ""),
            };
            let (msg, err) = match status.map(|r| (r.status, r.time)) {
                Some((Status::BadRequest, _)) => (
                    "refused: it did not understand our request or failed to serve it (its log says which)",
                    code::EINVAL,
                ),
                Some((Status::BadSecret, _)) => ("refused: wrong secret", code::EPERM),
                Some((Status::NotAllowed, _)) => (
                    "refused: this node's address is not in its --allow list",
                    code::EPERM,
                ),
                Some((Status::NoSpace, _)) => (
                    "refused: no room (its pool is full, or a limit such as --max-nodes was reached; its log says which)",
                    code::ENOSPC,
                ),
                Some((Status::NodeInUse, _)) => (
                    "refused: our node_id is in use there by another session (two nodes with one node_id?)",
                    code::EEXIST,
                ),
                Some((Status::Busy, _)) => (
                    "refused for now: too many connection requests from our address (its --max-connects-per-s); try again later",
                    code::EAGAIN,
                ),
                Some((Status::Replayed, _)) => (
                    "refused: it took our request for a replay (same time and nonce as one it saw)",
                    code::EAGAIN,
                ),
                Some((Status::ClockSkew, time)) => {
                    pr_err!(
                        "server {}: refused: our request's time is {} s off its clock (or before it started), more than it allows: run NTP on both{} (CM status {})\n",
                        ep,
                        req.time().wrapping_sub(time) as i32,
                        how,
                        cm
                    );
                    return Error::from_errno(-(kernel::bindings::ETIME as i32));
                }
                Some((Status::Ok, _)) | Some((Status::Upstream, _)) | None => (
                    "rejected the connection (no memserver on that port?)",
                    code::ECONNREFUSED,
                ),
            };
            pr_err!("server {}: {}{} (CM status {})\n", ep, msg, how, cm);
            err
        }
        ConnectError::Setup(what, e) => {
            pr_err!("server {}: {} failed ({})\n", ep, what, e.to_errno());
            e
        }
    }
}

/// The session granted in an accept's private data, answering the request
/// whose MAC is `tag`, authenticated and checked; a bad reply is logged,
/// naming the server, and refused.
fn granted(ep: Endpoint, private: &[u8], tag: &Tag, ask: &Ask) -> Result<Session> {
    let want = ask.mib as u64 * MIB;
    let r = match Reply::open(private, tag, &ask.key) {
        Ok(r) if r.status == Status::Ok && r.token != NO_TOKEN => r,
        Err(DecodeError::NotAuthentic) => {
            pr_err!(
                "server {}: accepted us, but its reply does not authenticate: it does not know our secret (an impostor?), or the reply was changed on the way; not using it\n",
                ep
            );
            return Err(code::EPERM);
        }
        Err(DecodeError::Version(v)) => {
            pr_err!(
                "server {}: accepted us, but speaks protocol version {}, we speak {}: run matching rswap_rdma and memserver\n",
                ep,
                v,
                crate::proto::VERSION
            );
            return Err(code::EINVAL);
        }
        _ => {
            pr_err!(
                "server {}: accepted without a usable region; is it an rswap memserver?\n",
                ep
            );
            return Err(code::EINVAL);
        }
    };
    match Region::new(r.rkey, r.addr, r.size, want, ask.unit) {
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
fn open(ep: Endpoint, ask: &Ask, q: usize, token: Token, quiet: bool) -> Result<(Conn, Session)> {
    let req = ask
        .seal(ep, q as u16, Kind::Queue, &token)
        .ok_or(code::EIO)?;
    let class = Class::of_queue(q);
    let (mut conn, priv_data, n) = match Conn::connect(
        ep,
        &req.bytes,
        ask.timeout_ms,
        class.depth(ask.readahead_depth),
    ) {
        Ok(c) => c,
        Err(_) if quiet => return Err(code::EHOSTUNREACH),
        Err(e) => return Err(connect_error(ep, e, ask, &req)),
    };
    // A task waits on reads and writes: they poll a while. Nobody waits on
    // a read ahead: its waits sleep at once, not to hog a CPU.
    if class != Class::ReadAhead {
        conn.set_poll_us(ask.poll_us);
    }
    // An accept that does not authenticate is logged even when quiet: an
    // impostor at a server's address is worth a line per attempt.
    let session = granted(ep, &priv_data[..n.min(PRIVATE_MAX)], &req.tag, ask)?;
    Ok((conn, session))
}

impl Server {
    /// Connects `3 * cpus` queues (a read, a write and a readahead queue
    /// per CPU) to
    /// `ep` and checks the region it grants. Any failure is logged and
    /// undoes what was set up (Drop order).
    pub(crate) fn connect(ep: Endpoint, p: &Params, cpus: usize) -> Result<Server> {
        let key = HmacKey::new(&p.secret).map_err(|e| {
            pr_err!(
                "HMAC-SHA256 from the kernel crypto API failed ({}): are CONFIG_CRYPTO_HMAC and CONFIG_CRYPTO_SHA256 set?\n",
                e.to_errno()
            );
            e
        })?;
        let ask = Ask {
            node_id: p.node_id,
            mib: p.mib,
            key,
            timeout_ms: p.timeout_ms,
            readahead_depth: p.readahead_depth,
            poll_us: p.poll_us,
            unit: p.redundancy.unit(),
        };
        let mut queues = Queues::new();
        let mut first: Option<Session> = None;
        for q in 0..3 * cpus {
            let token = first.map_or(NO_TOKEN, |s| s.token);
            let (conn, session) = open(ep, &ask, q, token, false)?;
            match first {
                None => first = Some(session),
                Some(s) if s.raw != session.raw || s.token != session.token => {
                    pr_err!("server {}: queues got different regions\n", ep);
                    return Err(code::EINVAL);
                }
                Some(_) => {}
            }
            queues.push(Queue::new(conn, q, Class::of_queue(q))?)?;
        }
        let session = first.ok_or(code::EINVAL)?;
        let region = session.region;
        let slots = Slots::new(region.slots())?;
        let stats = try_box(ServerStats::new()?)?;
        stats.up.store(1, Ordering::Relaxed);
        stats
            .free_pages
            .store(region.slots() as u64, Ordering::Relaxed);
        stats
            .capacity_pages
            .store(region.slots() as u64, Ordering::Relaxed);
        pr_info!(
            "server {}: {} queues connected, region of {} MiB (rkey {:#x}), free-slot map {} KiB\n",
            ep,
            3 * cpus,
            region.bytes() / MIB,
            region.rkey,
            (Slots::map_bytes(region.slots()) + 1023) / 1024
        );
        Ok(Server {
            ep,
            queues,
            ask,
            session: SpinLock::new(session)?,
            slots,
            capacity: region.slots(),
            unit: p.redundancy.unit(),
            inflight: AtomicU32::new(0),
            loss: rdma::ms_to_jiffies(p.loss_timeout_s.saturating_mul(1000)),
            timeout: rdma::ms_to_jiffies(p.timeout_ms),
            next_try: AtomicU64::new(0),
            backoff_ms: AtomicU32::new(BACKOFF_MIN_MS),
            redundancy: p.redundancy,
            stats,
        })
    }

    /// The upstream memory node whose memory the server re-exports
    /// (memserver --upstream), asked with one more connection request,
    /// which the server rejects with the answer: None if it has none, or
    /// did not answer in a way we can trust (logged).
    pub(crate) fn upstream(&self) -> Option<Endpoint> {
        let token = self.session.with(|s| s.token);
        let req = self.ask.seal(self.ep, 0, Kind::Upstream, &token)?;
        let reply = match Conn::connect(self.ep, &req.bytes, self.ask.timeout_ms, QUEUE_DEPTH) {
            Err(ConnectError::Rejected(p, n, _)) => {
                Reply::open(&p[..n.min(PRIVATE_MAX)], &req.tag, &self.ask.key).ok()
            }
            _ => None,
        };
        match reply {
            Some(r) if r.status == Status::Upstream => {
                let s = r.upstream_server()?;
                Some(Endpoint {
                    ip: [s[0], s[1], s[2], s[3]],
                    port: u16::from_be_bytes([s[4], s[5]]),
                })
            }
            _ => {
                pr_warn!(
                    "server {}: no answer we can trust about its upstream (refused, timed out or not authentic; its log says which); using it alone\n",
                    self.ep
                );
                None
            }
        }
    }

    /// Up: stores may use it.
    pub(crate) fn usable(&self) -> bool {
        self.slots.health() == Health::Up
    }

    /// Slots of its current region that we use.
    pub(crate) fn capacity_pages(&self) -> u64 {
        self.stats.capacity_pages.load(Ordering::Relaxed)
    }

    pub(crate) fn free_pages(&self) -> u64 {
        self.stats.free_pages.load(Ordering::Relaxed)
    }

    /// How long, in jiffies, it may be unreachable before its pages are
    /// lost (`loss_timeout_s`).
    pub(crate) fn loss(&self) -> u64 {
        self.loss
    }

    /// The slot generation of the pages it holds now.
    pub(crate) fn gen(&self) -> u32 {
        self.slots.gen()
    }

    /// Gives back `slot` of generation `gen`; false if that generation was
    /// retired (its slots were all freed then).
    pub(crate) fn put_slot(&self, slot: u32, gen: u32) -> bool {
        self.slots.put(slot, gen, &self.stats.free_pages, None)
    }

    /// Frees the slot of a page counted in `pages` ([`Server::count_page`])
    /// and counts it out, both only if generation `gen` is current (a
    /// retired one's pages were counted lost).
    pub(crate) fn free_page(&self, slot: u32, gen: u32) {
        self.slots
            .put(slot, gen, &self.stats.free_pages, Some(&self.stats.pages));
    }

    /// Counts a page stored in generation `gen` into `pages`, or (`!add`)
    /// out of it without freeing its slot (a page moved away, whose slot
    /// goes back later); false if the generation was retired, when the
    /// page is lost and nothing is counted.
    pub(crate) fn count_page(&self, gen: u32, add: bool) -> bool {
        self.slots.count(gen, &self.stats.pages, add)
    }

    /// Stores `page` in a free slot with an RDMA WRITE on this CPU's write
    /// queue; returns the slot, its generation, and the in-flight mark the
    /// caller drops once it has recorded the page. Ok only if the write
    /// completed successfully and, checked after its completion, the
    /// slot's generation is still current. Never retried: a refused store
    /// loses nothing (the page goes to the next tier or the swap device).
    ///
    /// A slot whose write failed is not given back: a packet of that write
    /// may still be on the wire. It comes back when the generation is
    /// retired.
    pub(crate) fn store(&self, page: &PageRef) -> Result<(u32, u32, InFlight<'_>)> {
        self.store_span(page, self.whole()?)
    }

    /// The span of a whole page: EINVAL if this server's slots are chunks
    /// (erasure coding stores and loads chunks only, ec.rs).
    fn whole(&self) -> Result<Span> {
        match self.unit {
            u if u as usize == PAGE_SIZE => Ok(Span::PAGE),
            _ => Err(code::EINVAL),
        }
    }

    /// As [`Server::store`], for the bytes `span` of `page` (a slot's
    /// worth: `span.len` is the unit).
    pub(crate) fn store_span(
        &self,
        page: &PageRef,
        span: Span,
    ) -> Result<(u32, u32, InFlight<'_>)> {
        if span.len != self.unit {
            return Err(code::EINVAL);
        }
        // Counted before the slot is taken (SeqCst on both sides): a
        // retirement either sees this store, or this store sees the server
        // lost and takes no slot.
        self.inflight.fetch_add(1, Ordering::SeqCst);
        let mark = InFlight(&self.inflight);
        let (slot, gen) = self
            .slots
            .take(&self.stats.free_pages)
            .ok_or(code::ENOSPC)?;
        match self.write(page, span, slot, gen) {
            Ok(()) => Ok((slot, gen, mark)),
            Err(e) if e == code::ECONNRESET => {
                self.put_slot(slot, gen);
                Err(e)
            }
            Err(e) => {
                self.stats.quarantined.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Writes `page` to `slot`: ECONNRESET if nothing was sent (the queue
    /// is broken) or the generation moved on; another error if the write
    /// itself failed.
    fn write(&self, page: &PageRef, span: Span, slot: u32, gen: u32) -> Result {
        let (remote, rkey) = self.target(slot).ok_or(code::ECONNRESET)?;
        let q = self.queues.for_cpu(Class::Write).ok_or(code::ECONNRESET)?;
        if q.broken() {
            return Err(code::ECONNRESET);
        }
        let _busy = self.stats.busy();
        let t0 = rdma::now_ns();
        // Re-checked under the queue's lock: a store that waited for the
        // queue while the server's pages were retired must not post (its
        // slot may hold a newer page by then).
        let current = || self.slots.state() == (gen, Health::Up);
        match q.transfer(page, span, Op::Write, remote, rkey, self.timeout, current) {
            Ok(()) => {
                self.stats.count(Count::Writes, 1);
                self.stats.write_took(rdma::now_ns().saturating_sub(t0));
            }
            Err(Failure::Stale) => return Err(code::ECONNRESET),
            Err(f @ (Failure::Disconnected | Failure::TornDown)) => {
                // Nothing was posted, or the write completed and the
                // connection was found lost after it: no packet of it can
                // land later, so its slot may be reused.
                self.trouble(f);
                return Err(code::ECONNRESET);
            }
            Err(f) => {
                self.trouble(f);
                return Err(f.errno());
            }
        }
        if self.slots.gen() != gen {
            return Err(code::ECONNRESET);
        }
        Ok(())
    }

    /// Reads `slot` of generation `gen` into `page`. While the server is
    /// reconnecting this tries its other read queues and waits for rebuilt
    /// ones, up to `loss_timeout_s` after the outage began and never longer
    /// than that after this load's first failure; EIO once the page is
    /// lost. Without `wait` (a page being moved between servers), one
    /// attempt only: EAGAIN if it failed, and the page is left as it is.
    pub(crate) fn read(&self, page: &PageRef, slot: u32, gen: u32, wait: bool) -> Result {
        self.read_span(page, self.whole()?, slot, gen, wait)
    }

    /// As [`Server::read`], into the bytes `span` of `page` (a slot's
    /// worth).
    pub(crate) fn read_span(
        &self,
        page: &PageRef,
        span: Span,
        slot: u32,
        gen: u32,
        wait: bool,
    ) -> Result {
        if span.len != self.unit {
            return Err(code::EINVAL);
        }
        let mut deadline = None;
        let mut retried = false;
        loop {
            let (now_gen, health) = self.slots.state();
            if now_gen != gen || health == Health::Lost {
                return Err(code::EIO);
            }
            let (remote, rkey) = self.target(slot).ok_or(code::EIO)?;
            let (tried, t0) = self.read_remote(page, span, remote, rkey);
            match tried {
                Some(Ok(())) => {
                    // A new generation may mean a new region: what we read
                    // is then not our page.
                    if self.slots.gen() != gen {
                        return Err(code::EIO);
                    }
                    self.stats.count(Count::Reads, 1);
                    self.stats.count(Count::TimedReads, 1);
                    self.stats.read_took(rdma::now_ns().saturating_sub(t0));
                    if retried {
                        self.stats.loads_recovered.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(());
                }
                Some(Err(f)) => self.trouble(f),
                None => {}
            }
            if !wait {
                return Err(code::EAGAIN);
            }
            if !retried {
                retried = true;
                self.stats.loads_waited.fetch_add(1, Ordering::Relaxed);
            }
            let deadline = *deadline.get_or_insert(rdma::jiffies().wrapping_add(self.loss));
            if self.past_bound() || rdma::after(rdma::jiffies(), deadline) {
                self.retire(gen, "unreachable for longer than loss_timeout_s", None);
                return Err(code::EIO);
            }
            rdma::sleep_ms(LOAD_RETRY_MS);
        }
    }

    /// Reads ahead: `pages[i]` from `slots[i]`, all of generation `gen`,
    /// as one batch on a readahead queue (this CPU's, or the first that
    /// works). One attempt: EAGAIN if it failed or the server is not up
    /// (EINVAL for a bad batch), and the caller loads each page with
    /// [`Server::read`], which waits for a reconnecting server and says
    /// when a page is lost. The pages' bytes are then not to be trusted.
    /// Counted in `reads` (and `reads_ahead`), but not timed: a batch's
    /// time is not one read's latency.
    pub(crate) fn read_ahead(&self, pages: &[&PageRef], slots: &[u32], gen: u32) -> Result {
        let n = pages.len();
        if n == 0 || n > BATCH_MAX || slots.len() != n {
            return Err(code::EINVAL);
        }
        let (now_gen, health) = self.slots.state();
        if now_gen != gen || health != Health::Up {
            return Err(code::EAGAIN);
        }
        // Every address from one session, so one region and one rkey.
        let mut remotes = [0u64; BATCH_MAX];
        let rkey = self
            .session
            .with(|s| {
                for (i, &slot) in slots.iter().enumerate() {
                    remotes[i] = s.region.slot_addr(slot)?;
                }
                Some(s.region.rkey)
            })
            .ok_or(code::EAGAIN)?;
        let busy = self.stats.busy();
        let tried = self.queues.first_working(Class::ReadAhead, |q| {
            q.read_batch(pages, &remotes[..n], rkey, self.timeout)
        });
        drop(busy);
        match tried {
            // A new generation may mean a new region: what we read is
            // then not our pages.
            Some(Ok(())) if self.slots.gen() == gen => {
                self.stats.count(Count::Reads, n as u64);
                self.stats.count(Count::ReadsAhead, n as u64);
                self.stats.count(Count::ReadBatches, 1);
                Ok(())
            }
            Some(Ok(())) | None => Err(code::EAGAIN),
            Some(Err(f)) => {
                self.trouble(f);
                Err(code::EAGAIN)
            }
        }
    }

    /// Late binding (ec.rs): this CPU's read queue, if the server is up
    /// in generation `gen` and the queue is not known broken.
    pub(crate) fn late_queue(&self, gen: u32) -> Option<&Queue> {
        if self.slots.state() != (gen, Health::Up) {
            return None;
        }
        self.queues.for_cpu(Class::Read).filter(|q| !q.broken())
    }

    /// Posts a late-bound read of `slot` (generation `gen`, a slot's
    /// worth) on `conn`, the connection of the queue `late_queue` gave,
    /// which the caller holds. Refused (`Stale`) if the server's pages
    /// were retired meanwhile.
    pub(crate) fn post_late(
        &self,
        conn: &mut Option<Conn>,
        slot: u32,
        gen: u32,
    ) -> core::result::Result<(), Failure> {
        let c = conn.as_mut().ok_or(Failure::TornDown)?;
        if self.slots.state() != (gen, Health::Up) {
            return Err(Failure::Stale);
        }
        let (remote, rkey) = self.target(slot).ok_or(Failure::Stale)?;
        c.post_late(self.unit, remote, rkey, self.timeout)
    }

    /// A late-bound read on queue `q` ended with `r`, `ns` after it was
    /// posted: counted, or its failure handled as any request's (the queue
    /// is rebuilt, the server reconnecting). True if what it read is
    /// slot's of generation `gen` (a new generation may mean a new region).
    pub(crate) fn end_late(
        &self,
        q: &Queue,
        r: core::result::Result<(), Failure>,
        gen: u32,
        ns: u64,
    ) -> bool {
        match r {
            Ok(()) => {
                self.stats.count(Count::Reads, 1);
                self.stats.count(Count::TimedReads, 1);
                self.stats.read_took(ns);
                self.slots.gen() == gen
            }
            Err(Failure::Stale | Failure::Busy) => false,
            Err(f) => {
                q.set_broken();
                self.trouble(f);
                false
            }
        }
    }

    /// The bound on one request, in jiffies (`timeout_ms`).
    pub(crate) fn timeout(&self) -> u64 {
        self.timeout
    }

    /// Measures the server's loaded read latency with one RDMA READ of
    /// the first slot of our region into `page`, a bounce page (the bytes
    /// are not used), counted in `probes`, not in `reads`. A failure is
    /// handled as any request's: the server is reconnecting.
    pub(crate) fn probe(&self, page: &PageRef) {
        if !self.usable() {
            return;
        }
        let (remote, rkey) = match self.target(0) {
            Some(t) => t,
            None => return,
        };
        let probe = Span {
            offset: 0,
            len: self.unit,
        };
        let (tried, t0) = self.read_remote(page, probe, remote, rkey);
        match tried {
            Some(Ok(())) => {
                self.stats.count(Count::Probes, 1);
                self.stats.read_took(rdma::now_ns().saturating_sub(t0));
            }
            Some(Err(f)) => self.trouble(f),
            None => {}
        }
    }

    /// One RDMA READ of `remote` into `page` on the first working read
    /// queue, counted as queued while it runs: what it gave (None: no
    /// working queue) and when it started, for the caller's latency.
    fn read_remote(
        &self,
        page: &PageRef,
        span: Span,
        remote: u64,
        rkey: u32,
    ) -> (Option<core::result::Result<(), Failure>>, u64) {
        let busy = self.stats.busy();
        let t0 = rdma::now_ns();
        let tried = self.queues.first_working(Class::Read, |q| {
            q.transfer(page, span, Op::Read, remote, rkey, self.timeout, || true)
        });
        drop(busy);
        (tried, t0)
    }

    /// The remote address and rkey of `slot` in the current session.
    fn target(&self, slot: u32) -> Option<(u64, u32)> {
        self.session
            .with(|s| s.region.slot_addr(slot).map(|a| (a, s.region.rkey)))
    }

    /// A request failed: the server is reconnecting (if it was up).
    fn trouble(&self, f: Failure) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        if self.slots.trouble(rdma::jiffies()) {
            self.next_try.store(rdma::jiffies(), Ordering::Relaxed);
            self.backoff_ms.store(BACKOFF_MIN_MS, Ordering::Relaxed);
            self.stats.up.store(0, Ordering::Relaxed);
            self.stats.outages.fetch_add(1, Ordering::Relaxed);
            let pages = self.stats.pages.load(Ordering::Relaxed);
            let bound = rdma::jiffies_to_ms(self.loss);
            if let Redundancy::Ec(k) = self.redundancy {
                pr_warn!(
                    "server {}: {}; reconnecting: new pages go elsewhere, faults on pages with one of its {} chunks rebuild it from the other {} (ec:{}+1); it has {} ms to come back\n",
                    self.ep,
                    f.why(),
                    pages,
                    k,
                    k,
                    bound
                );
            } else if self.redundancy == Redundancy::Mirror {
                pr_warn!(
                    "server {}: {}; reconnecting: new pages go elsewhere, faults on its {} page copies read the other copies; it has {} ms to come back\n",
                    self.ep,
                    f.why(),
                    pages,
                    bound
                );
            } else {
                pr_warn!(
                    "server {}: {}; reconnecting: new pages go elsewhere, faults on its {} pages wait up to {} ms\n",
                    self.ep,
                    f.why(),
                    pages,
                    bound
                );
            }
        }
    }

    /// Reconnecting for longer than the bound.
    /// A load that waited `loss_timeout_s` for its piece of generation
    /// `gen` here (a mirror copy, an EC chunk) gives up: if the server is
    /// still unreachable, its pages are declared lost now, as a load
    /// without redundancy does, rather than at the recovery thread's next
    /// try.
    pub(crate) fn give_up(&self, gen: u32) {
        if matches!(self.slots.health(), Health::Reconnecting(_)) {
            self.retire(gen, "unreachable for longer than loss_timeout_s", None);
        }
    }

    /// Bytes per slot: a page, or an erasure-coded chunk.
    pub(crate) fn unit(&self) -> u32 {
        self.unit
    }

    fn past_bound(&self) -> bool {
        match self.slots.health() {
            Health::Reconnecting(since) => {
                rdma::after(rdma::jiffies(), since.wrapping_add(self.loss))
            }
            _ => false,
        }
    }

    /// The pages of generation `from` are gone: stop using the server,
    /// wait for the stores in flight (each bounded by the request
    /// timeout), then start a new generation with every slot free (of the
    /// region of `region`'s slots, or the current one). Loads of the old
    /// pages then fail. Only the first caller for a generation does it.
    fn retire(&self, from: u32, why: &str, slots: Option<u32>) {
        if !self.slots.begin_retire(from) {
            return;
        }
        self.stats.up.store(0, Ordering::Relaxed);
        // A store that took a slot before the server was marked lost may
        // still be writing it: reusing the slot now could let that write
        // land on a newer page. Each is bounded (post, then a flush or a
        // teardown, each within the timeout).
        let limit = rdma::jiffies().wrapping_add(3 * self.timeout + rdma::ms_to_jiffies(1000));
        while self.inflight.load(Ordering::SeqCst) != 0 {
            if rdma::after(rdma::jiffies(), limit) {
                pr_err!(
                    "server {}: stores still in flight after 3 timeouts; retiring anyway\n",
                    self.ep
                );
                break;
            }
            rdma::sleep_ms(1);
        }
        let n = slots
            .unwrap_or_else(|| self.session.with(|s| s.region.slots()))
            .min(self.capacity);
        let lost = self
            .slots
            .reset(from, n, &self.stats.free_pages, &self.stats.pages);
        self.stats.lost_pages.fetch_add(lost, Ordering::Relaxed);
        if let Redundancy::Ec(k) = self.redundancy {
            pr_err!(
                "server {}: {}: its {} chunks are gone; faults rebuild them from the other {} chunks of each page, and repair makes new ones (ec:{}+1); new pages go elsewhere until it is back\n",
                self.ep,
                why,
                lost,
                k,
                k
            );
            return;
        }
        if self.redundancy == Redundancy::Mirror {
            pr_err!(
                "server {}: {}: its {} page copies are gone; the other copies serve them, and repair makes new ones (mirror); new pages go elsewhere until it is back\n",
                self.ep,
                why,
                lost
            );
            return;
        }
        pr_err!(
            "server {}: {}: its {} pages are lost (a fault on one gets SIGBUS, never stale data); new pages go elsewhere until it is back\n",
            self.ep,
            why,
            lost
        );
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
        // Drop every broken connection first, at once, so a device being
        // removed gets all of ours back (it waits for them); then rebuild,
        // with backoff.
        for q in self.queues.iter() {
            q.discard_if_broken();
        }
        let now = rdma::jiffies();
        if !rdma::after(now, self.next_try.load(Ordering::Relaxed)) {
            return;
        }
        if self.past_bound() {
            self.retire(
                self.slots.gen(),
                "unreachable for longer than loss_timeout_s",
                None,
            );
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
        let was = match self.slots.up() {
            Some(h) => h,
            None => return, // A retirement is under way; up on a later pass.
        };
        self.stats.up.store(1, Ordering::Relaxed);
        let outcome = match was {
            Health::Up => return,
            Health::Lost => "its earlier pages stay lost, new pages go there again",
            Health::Reconnecting(_) => "no page was lost",
        };
        // Measured afresh: until then placement gives it the mean weight
        // (placement.rs), not the figure of its last, failing requests.
        self.stats.read_lat.forget();
        self.stats.write_lat.forget();
        pr_info!(
            "server {}: back, every queue rebuilt; {}\n",
            self.ep,
            outcome
        );
    }

    /// A new connection for queue `q`, presenting our token. A reply with
    /// another token (or region) is a new session: the old pages are
    /// gone, so they are retired, the new region is used from now on, and
    /// every queue is rebuilt into it (this one is refused, to be redone).
    fn reopen(&self, q: usize) -> Result<Conn> {
        let cur = self.session.with(|s| *s);
        let (conn, new) = open(self.ep, &self.ask, q, cur.token, true)?;
        if new.token == cur.token && new.raw == cur.raw {
            return Ok(conn);
        }
        // Retire first, so a load that raced with us sees the new
        // generation before the new region exists (read() re-checks).
        // When the pages were already retired (the bound passed), the
        // free slots are refitted to the new region all the same.
        let gen = self.slots.gen();
        if self.slots.health() == Health::Lost {
            self.slots.refit(
                new.region.slots().min(self.capacity),
                &self.stats.free_pages,
            );
        } else {
            self.retire(
                gen,
                "it has a new session (memserver restarted, or dropped our region)",
                Some(new.region.slots()),
            );
        }
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
    /// Disconnects our queues, then tells the server that this node
    /// leaves, so it frees our region now instead of keeping it for its
    /// grace period: one more connection request, with the release flag
    /// and our token, which it rejects. Best effort, and bounded like any
    /// connection attempt.
    fn drop(&mut self) {
        // Our queues go first, so the server frees no region that a
        // connection of ours still uses.
        drop(core::mem::replace(&mut self.queues, Queues::new()));
        let token = self.session.with(|s| s.token);
        let req = match self.ask.seal(self.ep, 0, Kind::Release, &token) {
            Some(r) => r,
            None => return,
        };
        match Conn::connect(self.ep, &req.bytes, self.ask.timeout_ms, QUEUE_DEPTH) {
            Err(ConnectError::Rejected(p, n, _))
                if Reply::open(&p[..n.min(PRIVATE_MAX)], &req.tag, &self.ask.key)
                    .map(|r| r.status)
                    == Ok(Status::Ok) =>
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
