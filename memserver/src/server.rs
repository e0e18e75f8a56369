//! The memserver event loop: admits compute nodes within the limits, gives
//! each its own registered region of the pool and a session token, and
//! frees the region a grace period (`--grace-s`) after the node's last
//! queue disconnects. A node that reconnects within the grace period with
//! its token gets the same region, contents intact; a connection that
//! claims a node id in use without its token is refused.

use crate::auth::Key;
use crate::auth::{self as authn, RateLimit, Replays};
use crate::chores::{Chores, Done, Job};
use crate::config::{Limits, Settings, TestFault};
use crate::metrics::{self, NodeStat, Shared, Snapshot};
use crate::notify::Notifier;
use crate::pool::{Extent, Pool};
use crate::proto::{
    server_id, Received, Reply, Request, Server as ServerId, Status, Tag, Token, NO_TOKEN,
    UNVERIFIED,
};
use crate::rdma::{
    self, signals, Buffer, Cq, EventChannel, EventInfo, EventKind, Id, IdKey, Mr, Pd, Qp,
};
use crate::refusals::{Reason, Refusals};
use log::{debug, error, info, warn};
use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const MIB: u64 = 1 << 20;
/// An accepted connection not established after this long is dropped, so
/// it stops counting against `--max-pending`.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(30);

/// The status file is rewritten at most this often (a connect flood is a
/// flood of events).
pub const STATUS_EVERY: Duration = Duration::from_millis(200);

/// How long a connect request may wait for a region being zeroed.
pub const DEFER_MAX: Duration = Duration::from_secs(2);

/// A connect request waiting for a region being zeroed.
struct Deferred {
    since: Instant,
    id: Rc<Id>,
    private: Vec<u8>,
    depth: u8,
}

/// One queue of a node: an accepted connection and its QP.
struct Conn {
    qp: Qp,
    node: u64,
    queue: u16,
    established: bool,
    since: Instant,
}

struct Node {
    peer: Option<Ipv4Addr>,
    extent: Extent,
    /// Registered in the node's own protection domain, which all its QPs
    /// share: its rkey is useless on another node's queues.
    mr: Mr,
    queues: usize,
    since: Instant,
    /// The session token: only the node can unmask it, from its grants.
    token: Token,
    /// Since when the node has had no queue (its region is kept for the
    /// grace period).
    orphaned: Option<Instant>,
    /// Pages holding data at the last scan (SIGUSR1).
    pages_used: Option<u64>,
}

pub struct Server {
    cfg: Settings,
    conns: HashMap<IdKey, Conn>,
    nodes: HashMap<u64, Node>,
    pool: Pool,
    // The RDMA objects hold each other (rdma.rs): any drop order is safe.
    buf: Rc<Buffer>,
    /// Zeroing, scans and status-file writes, off the event loop.
    chores: Chores,
    /// Bytes of freed regions being zeroed (not yet back in the pool).
    zeroing: u64,
    deferred: Vec<Deferred>,
    /// The status file is written at most every [`STATUS_EVERY`]: the
    /// latest text not yet handed to the chores thread, and when it last
    /// was.
    status_due: Option<String>,
    status_sent: Instant,
    cq: Option<Rc<Cq>>,
    listener: Option<Rc<Id>>,
    channel: EventChannel,
    refusals: Refusals,
    replays: Replays,
    /// Our address as requests' MACs cover it.
    server_id: ServerId,
    rate: RateLimit,
    metrics: Option<Shared>,
    notifier: Notifier,
    started: SystemTime,
}

fn with_context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Server {
    /// Opens the RDMA channel, maps and locks the pool, listens, starts the
    /// metrics endpoint; then logs `listening on` and tells systemd it is
    /// ready.
    pub fn new(cfg: Settings, notifier: Notifier) -> io::Result<Server> {
        // Bind first, so a wrong address fails before the pool is locked;
        // listen last, so no request waits while it is.
        let channel = EventChannel::new()?;
        let listener = channel.bind(cfg.listen)?;
        let cq = Cq::new(&listener, 64)
            .map_err(|e| with_context(e, &format!("the device of {}", cfg.listen)))?;
        let size = cfg.pool_mib * MIB;
        let buf = Buffer::map_pool(size as usize, cfg.huge_pages)?;
        info!("pool: {} MiB, {}", cfg.pool_mib, buf.description);
        let l = &cfg.limits;
        info!(
            "limits: regions of up to {} MiB, {} nodes, {} queues per node, {} connections being set up",
            cfg.region_mib, l.max_nodes, l.max_queues_per_node, l.max_pending
        );
        let metrics = match cfg.metrics {
            Some(addr) => {
                let shared: Shared = Arc::new(Mutex::new(Snapshot::default()));
                let bound = metrics::start(addr, shared.clone())?;
                info!("metrics at http://{bound}/metrics");
                Some(shared)
            }
            None => None,
        };
        listener.listen(cfg.limits.max_pending as i32)?;
        let mut srv = Server {
            pool: Pool::new(size, MIB),
            conns: HashMap::new(),
            nodes: HashMap::new(),
            chores: Chores::start(buf.cpu_access().expect("a new pool has its handle"))?,
            zeroing: 0,
            deferred: Vec::new(),
            status_due: None,
            status_sent: Instant::now() - STATUS_EVERY,
            buf,
            cq: Some(cq),
            listener: Some(listener),
            channel,
            refusals: Refusals::new(),
            replays: Replays::new(authn::now_s()),
            server_id: server_id(cfg.listen.ip().octets(), cfg.listen.port()),
            rate: RateLimit::for_limits(&cfg.limits),
            metrics,
            notifier,
            started: SystemTime::now(),
            cfg,
        };
        srv.write_status(false);
        let cfg = &srv.cfg;
        info!(
            "listening on {} with a {} MiB pool; {} allowed addresses, secret {}",
            cfg.listen,
            cfg.pool_mib,
            cfg.policy.allow.len(),
            match &cfg.secret_source {
                Some(s) => format!("required (from {s})"),
                None =>
                    "none (requests and replies are authenticated with the all-zero key)".into(),
            }
        );
        if let Some(u) = cfg.upstream {
            info!(
                "upstream {u}: its memory is re-exported alongside ours; nodes that ask are \
                 pointed there and reach it through this node's route (no copy here)"
            );
        }
        if let Some(f) = cfg.test_fault {
            warn!("--test-fault {f:?}: misbehaving on purpose, for tests only");
        }
        if let Err(e) = srv
            .notifier
            .ready(&format!("listening on {}", srv.cfg.listen))
        {
            warn!("cannot notify systemd: {e}");
        }
        Ok(srv)
    }

    /// Serves until SIGINT/SIGTERM (Ok) or until the device is removed or
    /// the event channel fails (Err). Either way everyone is disconnected
    /// and the listener destroyed before it returns.
    pub fn run(&mut self) -> Result<(), String> {
        let result = loop {
            if signals::STOP.load(Ordering::SeqCst) {
                break Ok(());
            }
            if signals::REPORT.swap(false, Ordering::SeqCst) {
                self.scan();
            }
            self.reap_chores();
            let now = Instant::now();
            if let Some(s) = self.refusals.tick(now) {
                warn!("{s}");
            }
            self.expire_pending(now);
            self.expire_orphans(now);
            let ev = match self.channel.next(200) {
                Ok(Some(ev)) => ev,
                Ok(None) => continue,
                Err(e) => break Err(format!("the RDMA event channel failed: {e}")),
            };
            match ev.kind {
                EventKind::ConnectRequest => self.admit(ev),
                EventKind::Established => {
                    if let Some(c) = self.conns.get_mut(&ev.id) {
                        c.established = true;
                        let peer = c.qp.id().peer();
                        info!(
                            "node {:016x} queue {} connected from {}",
                            c.node,
                            c.queue,
                            fmt_peer(peer)
                        );
                    }
                }
                EventKind::Disconnected | EventKind::Failed | EventKind::Rejected => {
                    self.drop_conn(ev.id, &format!("{} (status {})", ev.name, ev.status));
                }
                EventKind::DeviceRemoval => {
                    break Err(format!(
                        "the RDMA device was removed ({}); stopping",
                        ev.name
                    ))
                }
                EventKind::AddrResolved | EventKind::RouteResolved | EventKind::Other => {
                    debug!("ignored event {}", ev.name)
                }
            }
            self.write_status(false);
        };
        if let Err(e) = &result {
            error!("{e}");
        }
        self.shutdown();
        result
    }

    /// Answers the request whose MAC is `tag` with an authenticated reply.
    fn reply(&self, tag: &Tag, reply: &Reply) -> Vec<u8> {
        let impostor;
        let key = if self.cfg.test_fault == Some(TestFault::Impostor) {
            impostor = Key::new([0xee; 16]);
            &impostor
        } else {
            self.cfg.policy.key()
        };
        let mut b = reply.seal(tag, key).map_or_else(Vec::new, |b| b.to_vec());
        if self.cfg.test_fault == Some(TestFault::TamperReply) && reply.status == Status::Ok {
            if let Some(x) = b.get_mut(8) {
                *x ^= 1;
            }
        }
        b
    }

    fn refuse(&mut self, id: &Id, tag: &Tag, reason: Reason, detail: String) {
        let peer = fmt_peer(id.peer());
        id.reject(&self.reply(tag, &Reply::refusal(reason.status(), authn::now_s())));
        let line = format!("refused connection from {peer}: {detail}");
        for l in self.refusals.record(Instant::now(), reason, &peer, line) {
            warn!("{l}");
        }
        // The caller drops the id, which destroys it.
    }

    fn pending(&self) -> usize {
        self.conns.values().filter(|c| !c.established).count()
    }

    fn admit(&mut self, ev: EventInfo) {
        let Some(id) = ev.new_id else {
            return;
        };
        self.admit_request(id, ev.private_data, ev.initiator_depth, None);
    }

    /// Connect requests that wait for a region being zeroed: retried when
    /// zeroing completes, refused (pool full) after [`DEFER_MAX`].
    fn retry_deferred(&mut self, now: Instant) {
        for d in std::mem::take(&mut self.deferred) {
            let more = self.zeroing > 0 && now.duration_since(d.since) < DEFER_MAX;
            self.admit_request(d.id, d.private, d.depth, Some((d.since, more)));
        }
    }

    /// `retry`: a deferred request (already through the replay guard):
    /// since when it waits, and whether it may wait more.
    fn admit_request(
        &mut self,
        id: Rc<Id>,
        private: Vec<u8>,
        initiator_depth: u8,
        retry: Option<(Instant, bool)>,
    ) {
        let got: Received = match Request::decode(&private) {
            Ok(r) => r,
            Err(e) => {
                return self.refuse(
                    &id,
                    &UNVERIFIED,
                    Reason::BadRequest,
                    format!("not an rswap client ({e})"),
                )
            }
        };
        let (req, tag) = (got.req, got.tag());
        // A flood is turned away before any more work is done for it; a deferred
        // request was let through already.
        if retry.is_none() && !self.rate.allow(id.peer(), Instant::now()) {
            return self.refuse(
                &id,
                &UNVERIFIED,
                Reason::RateLimited,
                format!(
                    "more than {} connection requests a second (--max-connects-per-s)",
                    self.cfg.limits.connects_per_s
                ),
            );
        }
        let who = format!("node {:016x}", req.node_id);
        let checked = match self.cfg.test_fault {
            Some(TestFault::Impostor) => Ok(()),
            _ => self.cfg.policy.check(id.peer(), &got, &self.server_id),
        };
        if let Err(st) = checked {
            // Only a request whose MAC verified gets a reply bound to it.
            let (reason, why, bound) = match st {
                Status::NotAllowed => (Reason::NotAllowed, "address not in --allow", tag),
                Status::BadRequest => (Reason::ServerError, "HMAC failed", UNVERIFIED),
                _ => (
                    Reason::BadSecret,
                    "wrong secret (the request's MAC does not verify)",
                    UNVERIFIED,
                ),
            };
            return self.refuse(&id, &bound, reason, format!("{who}: {why}"));
        }
        // Authenticated: now it may take room in the replay guard.
        let now = authn::now_s();
        if let Err(st) = match retry {
            Some(_) => Ok(()),
            None => self.replays.admit(&req, now, Instant::now()),
        } {
            let why = if st == Status::Replayed {
                (
                    Reason::Replayed,
                    "a replay of a request seen before (same time and nonce)".to_string(),
                )
            } else if st == Status::Busy {
                (
                    Reason::RateLimited,
                    format!(
                        "the replay guard is full ({} requests in {} s)",
                        authn::MAX_REMEMBERED,
                        2 * authn::MAX_SKEW_S
                    ),
                )
            } else {
                (
                    Reason::ClockSkew,
                    format!(
                        "its request is dated {} s from our clock (at most {} s, and not before we started): a replay, or check NTP on both",
                        (req.time.wrapping_sub(now) as i32),
                        authn::MAX_SKEW_S
                    ),
                )
            };
            return self.refuse(&id, &tag, why.0, format!("{who}: {}", why.1));
        }
        if req.upstream {
            // Nothing is connected: the node learns where our upstream is.
            let up = self
                .cfg
                .upstream
                .map(|u| server_id(u.ip().octets(), u.port()));
            id.reject(&self.reply(&tag, &Reply::upstream(up, now)));
            let peer = id.peer().map_or("?".into(), |p| p.to_string());
            match self.cfg.upstream {
                Some(u) => info!("{who} at {peer} asked for our upstream: pointed it to {u}"),
                None => info!("{who} at {peer} asked for our upstream: we have none"),
            }
            return;
        }
        let (Some(listener), Some(cq)) = (&self.listener, &self.cq) else {
            return;
        };
        let (listener, cq) = (listener.clone(), cq.clone());
        if id.device_key() != listener.device_key() {
            return self.refuse(
                &id,
                &tag,
                Reason::WrongDevice,
                format!("{who}: arrived on another RDMA device than --listen's"),
            );
        }
        let key = self.cfg.policy.key();
        let resumed = match session(self.nodes.get(&req.node_id).map(|n| &n.token), |t| {
            got.proves(&self.server_id, t, key)
        }) {
            Session::Clash => {
                return self.refuse(
                    &id,
                    &tag,
                    Reason::NodeInUse,
                    format!("{who}: that node id is in use and the request does not prove its session token (a clone of the node, or a reused id?)"),
                )
            }
            Session::Resume => true,
            Session::New => false,
        };
        if req.release {
            // The node leaves: nothing is connected, and a release without
            // the node's token frees nothing.
            id.reject(&self.reply(&tag, &Reply::refusal(Status::Ok, now)));
            if resumed {
                self.free_node(req.node_id, "released by the node (it unloaded)");
            }
            return;
        }
        let queues = self.nodes.get(&req.node_id).map(|n| n.queues);
        if let Err((reason, why)) =
            check_limits(&self.cfg.limits, self.pending(), self.nodes.len(), queues)
        {
            return self.refuse(&id, &tag, reason, format!("{who}: {why}"));
        }
        if queues.is_none() {
            let want = (req.want_mib as u64).min(self.cfg.region_mib).max(1);
            let Some(extent) = self.pool.alloc(want * MIB) else {
                // A freed region may be on its way back: wait for it.
                let may_wait = retry.is_none_or(|(_, more)| more);
                if self.zeroing > 0 && may_wait && self.deferred.len() < self.cfg.limits.max_pending
                {
                    let since = retry.map_or_else(Instant::now, |(t, _)| t);
                    self.deferred.push(Deferred {
                        since,
                        id,
                        private,
                        depth: initiator_depth,
                    });
                    return;
                }
                return self.refuse(
                    &id,
                    &tag,
                    Reason::PoolFull,
                    format!("{who}: the pool is full"),
                );
            };
            let mr = match Pd::new(&listener)
                .and_then(|pd| Mr::register(&pd, &self.buf, extent.offset, extent.len))
            {
                Ok(mr) => mr,
                Err(e) => {
                    self.pool.release(extent);
                    let hint = if e.kind() == io::ErrorKind::OutOfMemory {
                        format!(" ({})", rdma::memlock_advice(self.cfg.pool_mib * MIB))
                    } else {
                        String::new()
                    };
                    error!(
                        "{who}: registering its region of {} MiB with the NIC failed: {e}{hint}",
                        extent.len / MIB
                    );
                    return self.refuse(
                        &id,
                        &tag,
                        Reason::ServerError,
                        format!("{who}: server error: memory registration failed ({e})"),
                    );
                }
            };
            info!(
                "{who} from {}: region of {} MiB at pool offset {} MiB (asked {} MiB), rkey {:#x}{}",
                fmt_peer(id.peer()),
                extent.len / MIB,
                extent.offset / MIB,
                req.want_mib,
                mr.rkey(),
                if !got.session {
                    ""
                } else {
                    "; it presented a session this server does not have (restarted, or past the grace period): a new, empty region"
                }
            );
            let token = match new_token() {
                Ok(t) => t,
                Err(e) => {
                    error!("{who}: no random token: {e}");
                    self.pool.release(extent);
                    return self.refuse(
                        &id,
                        &tag,
                        Reason::ServerError,
                        format!("{who}: server error: no randomness ({e})"),
                    );
                }
            };
            self.nodes.insert(
                req.node_id,
                Node {
                    peer: id.peer(),
                    extent,
                    mr,
                    queues: 0,
                    since: Instant::now(),
                    token,
                    orphaned: None,
                    pages_used: None,
                },
            );
        }
        let node = &self.nodes[&req.node_id];
        let reply = Reply {
            status: Status::Ok,
            rkey: node.mr.rkey(),
            addr: node.mr.addr(),
            size: node.extent.len,
            token: node.token,
            time: now,
        };
        let sealed = self.reply(&tag, &reply);
        let depth = initiator_depth.clamp(1, 16);
        let qp = match Qp::create(&id, node.mr.pd(), &cq).and_then(|qp| {
            id.accept(&sealed, depth)?;
            Ok(qp)
        }) {
            Ok(qp) => qp,
            Err(e) => {
                error!(
                    "{who} queue {}: setting the connection up failed: {e}",
                    req.queue
                );
                if node.queues == 0 && node.orphaned.is_none() {
                    self.free_node(req.node_id, "its first queue failed");
                }
                return self.refuse(
                    &id,
                    &tag,
                    Reason::ServerError,
                    format!("{who}: server error: connection setup failed ({e})"),
                );
            }
        };
        if let Some(n) = self.nodes.get_mut(&req.node_id) {
            n.queues += 1;
            if let Some(t) = n.orphaned.take() {
                info!(
                    "{who} queue {}: session resumed after {:.1} s without queues; its region is as it left it",
                    req.queue,
                    t.elapsed().as_secs_f64()
                );
            } else if resumed {
                debug!("{who} queue {}: joins its session", req.queue);
            }
        }
        self.conns.insert(
            id.key(),
            Conn {
                qp,
                node: req.node_id,
                queue: req.queue,
                established: false,
                since: Instant::now(),
            },
        );
    }

    /// Drops accepted connections that never became established.
    fn expire_pending(&mut self, now: Instant) {
        let stale: Vec<IdKey> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.established && now.duration_since(c.since) > PENDING_TIMEOUT)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            if let Some(c) = self.conns.get(&k) {
                warn!(
                    "node {:016x} queue {}: not established after {} s; dropped",
                    c.node,
                    c.queue,
                    PENDING_TIMEOUT.as_secs()
                );
            }
            self.drop_conn(k, "never established");
        }
    }

    /// Frees the regions of nodes that have had no queue for the grace
    /// period.
    fn expire_orphans(&mut self, now: Instant) {
        let grace = self.cfg.grace;
        let gone: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.orphaned.is_some_and(|t| now.duration_since(t) >= grace))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.free_node(
                id,
                &format!("no queue for {} s (--grace-s)", grace.as_secs()),
            );
        }
    }

    fn drop_conn(&mut self, key: IdKey, why: &str) {
        // Dropping the Conn destroys its QP, then its id.
        let Some(conn) = self.conns.remove(&key) else {
            return;
        };
        let node_id = conn.node;
        drop(conn);
        let last = match self.nodes.get_mut(&node_id) {
            Some(n) => {
                n.queues = n.queues.saturating_sub(1);
                n.queues == 0
            }
            None => false,
        };
        if !last {
            return;
        }
        if self.cfg.grace.is_zero() {
            return self.free_node(node_id, why);
        }
        if let Some(n) = self.nodes.get_mut(&node_id) {
            n.orphaned = Some(Instant::now());
            info!(
                "node {node_id:016x} ({}): last queue gone: {why}; its region of {} MiB is kept for {} s (--grace-s)",
                fmt_peer(n.peer),
                n.extent.len / MIB,
                self.cfg.grace.as_secs()
            );
        }
    }

    fn free_node(&mut self, node_id: u64, why: &str) {
        // Its connections go with it (a release may come before their
        // disconnects), so none of them counts against a later session of
        // the same node id.
        let conns: Vec<IdKey> = self
            .conns
            .iter()
            .filter(|(_, c)| c.node == node_id)
            .map(|(k, _)| *k)
            .collect();
        for k in conns {
            if let Some(c) = self.conns.remove(&k) {
                c.qp.id().disconnect();
            }
        }
        if let Some(n) = self.nodes.remove(&node_id) {
            // Deregister first: once the MR is gone the NIC can no longer
            // write the region, so the zeroes are the last word.
            drop(n.mr);
            // The chores thread zeroes it; it goes back to the pool when
            // that is done (reap_chores).
            self.zeroing += n.extent.len;
            self.chores.submit(Job::Zero {
                node: node_id,
                extent: n.extent,
            });
            info!(
                "node {node_id:016x} ({}) gone: {why}; region of {} MiB freed after {:.0} s, zeroing it",
                fmt_peer(n.peer),
                n.extent.len / MIB,
                n.since.elapsed().as_secs_f64()
            );
        }
    }

    fn shutdown(&mut self) {
        let _ = self.notifier.stopping();
        if let Some(s) = self.refusals.flush(Instant::now()) {
            warn!("{s}");
        }
        info!(
            "shutting down: disconnecting {} queues of {} nodes",
            self.conns.len(),
            self.nodes.len()
        );
        for (_, c) in self.conns.drain() {
            c.qp.id().disconnect();
        }
        let nodes: Vec<u64> = self.nodes.keys().copied().collect();
        for n in nodes {
            self.free_node(n, "server shutdown");
        }
        // Every QP, MR and (with its node) PD is gone: the CQ goes next,
        // and with it the last holder of the listener, whose destruction
        // frees the port.
        self.cq = None;
        if let Some(l) = self.listener.take() {
            if Rc::strong_count(&l) != 1 {
                warn!("the listener is still referenced; the port may stay bound");
            }
        }
        self.write_status(false);
        self.flush_status(true);
        // Waits for the status write; zeroing is skipped: the pool goes
        // back to the kernel, which zeroes pages before reuse.
        let left = self.chores.stop();
        self.handle_chores(left);
        info!("stopped; port {} is free", self.cfg.listen.port());
    }

    /// SIGUSR1: the chores thread counts the pages each region holds; the
    /// status is logged with them when it is done.
    fn scan(&mut self) {
        let regions = self.nodes.iter().map(|(id, n)| (*id, n.extent)).collect();
        self.chores.submit(Job::Scan(regions));
    }

    /// Hands the latest status text to the chores thread, unless one went
    /// less than [`STATUS_EVERY`] ago (and `now` is false).
    fn flush_status(&mut self, now: bool) {
        if !now && self.status_sent.elapsed() < STATUS_EVERY {
            return;
        }
        if let (Some(path), Some(text)) = (&self.cfg.status_file, self.status_due.take()) {
            self.chores.submit(Job::Status {
                path: path.clone(),
                text,
            });
            self.status_sent = Instant::now();
        }
    }

    fn reap_chores(&mut self) {
        self.flush_status(false);
        let done = self.chores.finished();
        self.handle_chores(done);
        if !self.deferred.is_empty() {
            self.retry_deferred(Instant::now());
        }
    }

    fn handle_chores(&mut self, done: Vec<Done>) {
        for d in done {
            match d {
                Done::Zeroed {
                    node,
                    extent,
                    took,
                    zeroed,
                } => {
                    self.zeroing -= extent.len;
                    self.pool.release(extent);
                    if zeroed {
                        info!(
                            "node {node:016x}: its former region of {} MiB is zeroed ({} ms) and back in the pool",
                            extent.len / MIB,
                            took.as_millis()
                        );
                    }
                }
                Done::Scanned(counts) => {
                    for (id, extent, used) in counts {
                        // The node may have gone, or come back elsewhere.
                        if let Some(n) = self.nodes.get_mut(&id).filter(|n| n.extent == extent) {
                            n.pages_used = Some(used);
                        }
                    }
                    self.write_status(true);
                }
                Done::StatusFailed(e) => warn!("cannot write status file {e}"),
            }
        }
    }

    /// The operator view: one line per node, written to --status-file,
    /// published to the metrics endpoint and, after a SIGUSR1 scan
    /// (`scanned`), logged with how many of each region's pages hold data.
    fn write_status(&mut self, scanned: bool) {
        let mut ids: Vec<u64> = self.nodes.keys().copied().collect();
        ids.sort_unstable();
        let pending = self.pending();
        let mut s = format!(
            "pool_mib={} free_mib={} nodes={} queues={} refused={} pending={} zeroing_mib={}\n",
            self.pool.size() / MIB,
            self.pool.free_bytes() / MIB,
            self.nodes.len(),
            self.conns.len(),
            self.refusals.total(),
            pending,
            self.zeroing / MIB
        );
        for id in &ids {
            let n = &self.nodes[id];
            s += &format!(
                "node={id:016x} peer={} region_mib={} queues={}{}{}\n",
                fmt_peer(n.peer),
                n.extent.len / MIB,
                n.queues,
                n.orphaned
                    .map(|t| format!(" kept_s={}", t.elapsed().as_secs()))
                    .unwrap_or_default(),
                if scanned {
                    n.pages_used
                        .map(|u| format!(" pages_used={u}"))
                        .unwrap_or_default()
                } else {
                    String::new()
                }
            );
        }
        if scanned {
            for l in s.lines() {
                info!("status: {l}");
            }
        }
        if self.cfg.status_file.is_some() {
            self.status_due = Some(s);
            self.flush_status(false);
        }
        if let Some(shared) = &self.metrics {
            let snap = self.snapshot(&ids, pending);
            if let Ok(mut g) = shared.lock() {
                *g = snap;
            }
        }
        let _ = self.notifier.status(&format!(
            "serving {} nodes, {} queues; {} of {} MiB free; {} refused",
            self.nodes.len(),
            self.conns.len(),
            self.pool.free_bytes() / MIB,
            self.pool.size() / MIB,
            self.refusals.total()
        ));
    }

    fn snapshot(&self, ids: &[u64], pending: usize) -> Snapshot {
        let l = &self.cfg.limits;
        Snapshot {
            pool_bytes: self.pool.size(),
            free_bytes: self.pool.free_bytes(),
            largest_free_bytes: self.pool.largest_free(),
            queues: self.conns.len() as u64,
            pending: pending as u64,
            refusals: self.refusals.by_reason(),
            max_nodes: l.max_nodes as u64,
            max_queues_per_node: l.max_queues_per_node as u64,
            max_pending: l.max_pending as u64,
            region_max_bytes: self.cfg.region_mib * MIB,
            start_time_seconds: self
                .started
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            nodes: ids
                .iter()
                .map(|id| {
                    let n = &self.nodes[id];
                    NodeStat {
                        node: *id,
                        peer: fmt_peer(n.peer),
                        region_bytes: n.extent.len,
                        queues: n.queues as u64,
                        pages_used: n.pages_used,
                    }
                })
                .collect(),
        }
    }
}

/// What a request's token means for its node id.
#[derive(Debug, PartialEq, Eq)]
pub enum Session {
    /// The node id is not served: a new session (whatever token came).
    New,
    /// The node's own token: same session, same region.
    Resume,
    /// The node id is served, and this is not its token.
    Clash,
}

/// Whether the request proves (`proves`) the token of the node id's
/// session, if it has one.
pub fn session(existing: Option<&Token>, proves: impl Fn(&Token) -> bool) -> Session {
    match existing {
        None => Session::New,
        Some(t) if proves(t) => Session::Resume,
        Some(_) => Session::Clash,
    }
}

/// A fresh random session token.
fn new_token() -> io::Result<Token> {
    use std::io::Read;
    let mut t = NO_TOKEN;
    std::fs::File::open("/dev/urandom")?.read_exact(&mut t)?;
    Ok(t)
}

fn fmt_peer(p: Option<Ipv4Addr>) -> String {
    p.map_or_else(|| "?".into(), |a| a.to_string())
}

/// Whether one more connection fits the caps: `pending` connections are
/// being set up, `nodes` nodes are served, and the requesting node has
/// `queues` queues (None: it is a new node). Err: why not.
pub fn check_limits(
    limits: &Limits,
    pending: usize,
    nodes: usize,
    queues: Option<usize>,
) -> Result<(), (Reason, String)> {
    if pending >= limits.max_pending {
        return Err((
            Reason::TooManyPending,
            format!(
                "{pending} connections already being set up (--max-pending {})",
                limits.max_pending
            ),
        ));
    }
    match queues {
        Some(q) if q >= limits.max_queues_per_node => Err((
            Reason::TooManyQueues,
            format!(
                "already has {q} queues (--max-queues-per-node {})",
                limits.max_queues_per_node
            ),
        )),
        Some(_) => Ok(()),
        None if nodes >= limits.max_nodes => Err((
            Reason::TooManyNodes,
            format!(
                "already serving {nodes} nodes (--max-nodes {})",
                limits.max_nodes
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        max_nodes: 2,
        max_queues_per_node: 4,
        max_pending: 3,
        connects_per_s: 10,
    };

    #[test]
    fn only_a_proof_of_the_token_resumes_a_session() {
        use crate::auth::Key;
        const S: ServerId = [10, 77, 1, 2, 0x1d, 0x3f];
        let key = Key::new([1; 16]);
        let t = [5u8; 16];
        let asks = |token: &Token| {
            let req = Request {
                queue: 1,
                node_id: 9,
                want_mib: 1,
                release: false,
                upstream: false,
                time: 1,
                nonce: 2,
            };
            Request::decode(&req.seal(&S, token, &key).unwrap().bytes).unwrap()
        };
        let (none, own) = (asks(&NO_TOKEN), asks(&t));
        assert_eq!(session(None, |x| none.proves(&S, x, &key)), Session::New);
        // A token from a session this server no longer has: a new one.
        assert_eq!(session(None, |x| own.proves(&S, x, &key)), Session::New);
        assert_eq!(
            session(Some(&t), |x| own.proves(&S, x, &key)),
            Session::Resume
        );
        // A clone with the node id but no token, or a wrong one.
        assert_eq!(
            session(Some(&t), |x| none.proves(&S, x, &key)),
            Session::Clash
        );
        let mut u = t;
        u[15] ^= 1;
        let wrong = asks(&u);
        assert_eq!(
            session(Some(&t), |x| wrong.proves(&S, x, &key)),
            Session::Clash
        );
    }

    #[test]
    fn tokens_are_random() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_ne!(a, NO_TOKEN);
        assert_ne!(a, b);
    }

    #[test]
    fn connections_within_the_caps_are_admitted() {
        assert_eq!(check_limits(&L, 0, 0, None), Ok(()));
        assert_eq!(check_limits(&L, 2, 1, None), Ok(()));
        assert_eq!(check_limits(&L, 2, 2, Some(3)), Ok(()));
    }

    #[test]
    fn each_cap_refuses_with_its_reason_and_flag() {
        let (r, why) = check_limits(&L, 0, 2, None).unwrap_err();
        assert_eq!(r, Reason::TooManyNodes);
        assert_eq!(why, "already serving 2 nodes (--max-nodes 2)");
        // A known node may add queues even when the node cap is reached...
        assert_eq!(check_limits(&L, 0, 2, Some(1)), Ok(()));
        // ...up to its own cap.
        let (r, why) = check_limits(&L, 0, 1, Some(4)).unwrap_err();
        assert_eq!(r, Reason::TooManyQueues);
        assert!(why.contains("--max-queues-per-node 4"), "{why}");
        // Too many set-ups in flight refuses everyone, known nodes too.
        let (r, why) = check_limits(&L, 3, 0, Some(0)).unwrap_err();
        assert_eq!(r, Reason::TooManyPending);
        assert!(why.contains("--max-pending 3"), "{why}");
        assert_eq!(
            check_limits(&L, 3, 0, None).unwrap_err().0,
            Reason::TooManyPending
        );
    }
}
