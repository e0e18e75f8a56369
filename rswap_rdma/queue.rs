// SPDX-License-Identifier: GPL-2.0
//! Queues: a server's connections, what they carry, and what their
//! completions mean.
//!
//! Per server and per CPU there are three queues, one per [`Class`]: reads
//! of faulting pages, reads ahead (the pages the kernel reads ahead of a
//! fault, loaded without the task waiting for them), and writes
//! (swap-out). So a fault never waits behind a swap-out, nor behind the
//! readahead of an earlier fault. A queue is a [`Conn`] behind a kernel
//! mutex (see [`Mutex`] for why a mutex); the holder posts its requests
//! and polls for their completions: one request at a time on the read
//! and write queues, a batch of up to `readahead_depth` on a readahead
//! queue, posted as one chain (one doorbell).
//!
//! ## Soft-RoCE (rxe) under memory reclaim
//!
//! Swap-out runs under reclaim, so the transport must make progress when
//! memory is short. NBD and NFS swap call `sk_set_memalloc()` on their
//! sockets; rxe needs no such call, and it would not help. Read in 6.1.192:
//! - rxe sends through a per-QP kernel UDP socket only as `skb->sk` and a
//!   route cache; it never calls sendmsg. Each packet is
//!   `alloc_skb(..., GFP_ATOMIC)` (rxe_net.c `rxe_init_packet`), with the
//!   page copied in: a 4 KiB page is four 1024-byte RoCE packets. The
//!   socket's `sk_allocation` is never read, so `SOCK_MEMALLOC` changes
//!   nothing on transmit.
//! - `ib_post_send` on a kernel QP only queues the request and schedules
//!   rxe's requester tasklet; `__do_softirq` clears `PF_MEMALLOC`
//!   (kernel/softirq.c), so the reclaimer's access to the reserves never
//!   reaches rxe. Below about half the min watermark the allocation fails
//!   at once, and rxe then errors the QP ("Failed allocating skb",
//!   `IB_WC_LOC_QP_OP_ERR`) instead of retrying.
//! - On receive, rxe is a UDP encapsulation socket: `encap_rcv` runs before
//!   `sk_filter_trim_cap`, which is where pfmemalloc skbs are dropped for
//!   non-memalloc sockets, so rxe accepts them anyway. virtio-net's receive
//!   buffers never come from the reserves either way.
//! - So the risk is not a hang (every wait here is bounded) but a failed
//!   request, and an errored QP, when the machine is nearly out of memory.
//!   A failed write only refuses that store (the page goes to the swap
//!   disk); a failed read is retried on another queue. Either way the
//!   queue is rebuilt by the recovery thread and its server is
//!   reconnecting meanwhile (server.rs): stores skip it for a moment, and
//!   no page is lost unless the server stays unreachable for
//!   `loss_timeout_s`. A real RDMA NIC allocates nothing per packet
//!   (it DMAs from the registered page), so this is a Soft-RoCE concern. A
//!   complete fix would be an rxe patch (allocate with `__GFP_MEMALLOC`
//!   for swap QPs, treat an allocation failure as a retry). The lab test
//!   `lab_pressure` swaps at 8x memory.max while a locked hog leaves ~16
//!   MiB available system-wide (kswapd must scan), and checks nothing hangs
//!   and every byte verifies.

use crate::ffi::PageRef;
use crate::rdma::{self, Conn, Failure, Held, LockClass, Mutex, Op, Span, BATCH_MAX};
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::error::code;
use kernel::prelude::*;

/// Send queue depth of a read or write connection; one request is in
/// flight at a time.
pub(crate) const QUEUE_DEPTH: u32 = 4;

/// What a queue carries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Reads of faulting pages: the task waits.
    Read,
    /// Writes of pages swapped out.
    Write,
    /// Reads ahead, in batches; nobody waits for them yet.
    ReadAhead,
}

impl Class {
    /// Queue `q` of a server: reads, writes and reads ahead in turn.
    pub(crate) fn of_queue(q: usize) -> Class {
        match q % 3 {
            0 => Class::Read,
            1 => Class::Write,
            _ => Class::ReadAhead,
        }
    }

    /// The send queue depth of its connections: a readahead queue takes a
    /// batch of `readahead_depth` (at most [`BATCH_MAX`]).
    pub(crate) fn depth(self, readahead_depth: u32) -> u32 {
        match self {
            Class::ReadAhead => readahead_depth.clamp(1, BATCH_MAX as u32),
            _ => QUEUE_DEPTH,
        }
    }
}

/// One connection, used by one request at a time, and whether it is
/// broken (a request on it failed, or the CM said it is gone) and waits
/// to be rebuilt. A broken connection is discarded before it is rebuilt
/// (None in between).
pub(crate) struct Queue {
    conn: Box<Mutex<Option<Conn>>>,
    /// Its index among the server's queues, sent when (re)connecting.
    index: usize,
    broken: AtomicBool,
}

impl Queue {
    pub(crate) fn new(conn: Conn, index: usize, class: Class) -> Result<Queue> {
        let class = match class {
            Class::Read => LockClass::ReadQueue,
            Class::Write => LockClass::WriteQueue,
            Class::ReadAhead => LockClass::ReadAheadQueue,
        };
        Ok(Queue {
            conn: Mutex::new(Some(conn), class)?,
            index,
            broken: AtomicBool::new(false),
        })
    }

    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Known broken: not worth a request until rebuilt.
    pub(crate) fn broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// One page transfer (of its bytes `span`), waiting for the queue and
    /// then for completion.
    /// `current` is asked under the queue's lock, just before posting:
    /// false refuses the request (`Failure::Stale`) with nothing posted.
    /// When this returns the device is done with the page (see
    /// [`Conn::transfer`]). A failure (but a stale one) marks the queue
    /// broken.
    pub(crate) fn transfer(
        &self,
        page: &PageRef,
        span: Span,
        op: Op,
        remote: u64,
        rkey: u32,
        timeout: u64,
        current: impl FnOnce() -> bool,
    ) -> core::result::Result<(), Failure> {
        let r = self.conn.with(|c| {
            let c = c.as_mut().ok_or(Failure::TornDown)?;
            if !current() {
                return Err(Failure::Stale);
            }
            c.transfer(page, span, op, remote, rkey, timeout)?;
            // A write is kept only if, after its successful completion, the
            // connection is still there: the server may have gone while
            // the page was on the wire (re-checked by the server, too).
            if op == Op::Write && c.lost() {
                return Err(Failure::Disconnected);
            }
            Ok(())
        });
        if matches!(r, Err(f) if !matches!(f, Failure::Stale)) {
            self.broken.store(true, Ordering::Release);
        }
        r
    }

    /// RDMA READs of `pages[i]` from `remotes[i]`, one batch (see
    /// [`Conn::transfer_batch`]); when this returns the device is done
    /// with every page. A failure marks the queue broken.
    pub(crate) fn read_batch(
        &self,
        pages: &[&PageRef],
        remotes: &[u64],
        rkey: u32,
        timeout: u64,
    ) -> core::result::Result<(), Failure> {
        let r = self.conn.with(|c| {
            let c = c.as_mut().ok_or(Failure::TornDown)?;
            c.transfer_batch::<BATCH_MAX>(pages, Span::PAGE, Op::Read, remotes, rkey, timeout)
        });
        if r.is_err() {
            self.broken.store(true, Ordering::Release);
        }
        r
    }

    /// Holds the queue for a late-bound read (ec.rs), as the `rank`-th of
    /// the read queues one load holds at once, taken in ascending server
    /// order (see [`Mutex::lock_nested`]). The holder posts with
    /// [`Conn::post_late`] and may release the queue with the read still
    /// in flight.
    pub(crate) fn hold(&self, rank: u32) -> Held<'_, Option<Conn>> {
        self.conn.lock_nested(rank)
    }

    /// A request on it failed outside [`Queue::transfer`] (a late-bound
    /// read): it is rebuilt before its next use.
    pub(crate) fn set_broken(&self) {
        self.broken.store(true, Ordering::Release);
    }

    /// Marks the queue broken if the CM reported its connection lost
    /// while it was idle (the server went away between requests). True
    /// if it is broken.
    pub(crate) fn check(&self) -> bool {
        if !self.broken() && self.conn.with(|c| c.as_ref().map_or(true, |c| c.lost())) {
            self.broken.store(true, Ordering::Release);
        }
        self.broken()
    }

    /// Drops the connection if it is broken or the CM reported it lost:
    /// everything it holds on its device is released (a device being
    /// removed waits for that). True if the queue is broken.
    pub(crate) fn discard_if_broken(&self) -> bool {
        if !self.check() {
            return false;
        }
        let old = self.conn.with(|c| c.take());
        // Torn down outside the lock: teardown waits for the device.
        drop(old);
        true
    }

    /// Replaces a broken connection with `open()`. Ok(true): rebuilt;
    /// Ok(false): it was fine.
    ///
    /// No queue lock is held while connecting: connecting allocates
    /// (GFP_KERNEL), reclaim may then store a page, and a store takes a
    /// write queue's lock. The new connection is put in under the lock, so
    /// no request runs on it before it is complete.
    pub(crate) fn rebuild(&self, open: impl FnOnce() -> Result<Conn>) -> Result<bool> {
        if !self.discard_if_broken() {
            return Ok(false);
        }
        let new = open()?;
        let old = self.conn.with(|c| {
            let old = c.replace(new);
            self.broken.store(false, Ordering::Release);
            old
        });
        drop(old);
        Ok(true)
    }
}

/// A server's queues: for CPU `i` (modulo), `read[i]`, `write[i]` and
/// `ahead[i]`.
pub(crate) struct Queues {
    read: Vec<Queue>,
    write: Vec<Queue>,
    ahead: Vec<Queue>,
}

impl Queues {
    pub(crate) fn new() -> Queues {
        Queues {
            read: Vec::new(),
            write: Vec::new(),
            ahead: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, q: Queue) -> Result {
        match Class::of_queue(q.index) {
            Class::Read => self.read.try_push(q)?,
            Class::Write => self.write.try_push(q)?,
            Class::ReadAhead => self.ahead.try_push(q)?,
        }
        Ok(())
    }

    fn of(&self, class: Class) -> &[Queue] {
        match class {
            Class::Read => &self.read,
            Class::Write => &self.write,
            Class::ReadAhead => &self.ahead,
        }
    }

    /// This CPU's queue of `class`; None if there is none (never after a
    /// successful connect).
    pub(crate) fn for_cpu(&self, class: Class) -> Option<&Queue> {
        let qs = self.of(class);
        qs.get(rdma::cpu_id() % qs.len().max(1))
    }

    /// Runs `f` on the first queue of `class` not known broken, starting
    /// with this CPU's; None if every one is broken.
    pub(crate) fn first_working<R>(&self, class: Class, f: impl FnOnce(&Queue) -> R) -> Option<R> {
        let qs = self.of(class);
        let n = qs.len();
        let start = rdma::cpu_id() % n.max(1);
        (0..n)
            .map(|i| &qs[(start + i) % n])
            .find(|q| !q.broken())
            .map(f)
    }

    /// Every queue.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Queue> {
        self.read
            .iter()
            .chain(self.write.iter())
            .chain(self.ahead.iter())
    }

    /// Whether any queue is broken, checking each with [`Queue::check`].
    pub(crate) fn any_broken(&self) -> bool {
        self.iter().fold(false, |any, q| q.check() || any)
    }

    /// Marks every queue for a rebuild (the session changed).
    pub(crate) fn mark_all_broken(&self) {
        for q in self.iter() {
            q.broken.store(true, Ordering::Release);
        }
    }
}

impl Failure {
    /// The error the backend returns for it.
    pub(crate) fn errno(self) -> Error {
        match self {
            Failure::Disconnected | Failure::TornDown | Failure::Stale => code::ECONNRESET,
            Failure::Busy => code::EAGAIN,
            Failure::Post(e) => e,
            Failure::Completion(_) => code::EIO,
            Failure::Timeout => code::ETIMEDOUT,
        }
    }

    /// What went wrong, for the log.
    pub(crate) fn why(self) -> &'static str {
        match self {
            Failure::Disconnected => "a queue was disconnected",
            Failure::TornDown => "a queue was destroyed after a lost request",
            Failure::Stale => "a request was no longer current",
            Failure::Busy => "no memory for a bounce page",
            Failure::Post(_) => "posting a request failed",
            Failure::Completion(_) => "an RDMA request failed",
            Failure::Timeout => "an RDMA request timed out",
        }
    }
}
