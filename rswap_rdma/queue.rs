// SPDX-License-Identifier: GPL-2.0
//! Queues: a server's connections, one request at a time on each, and what
//! their completions mean.
//!
//! Per server and per CPU there is one queue for reads (page faults) and
//! one for writes (swap-out), so a fault never waits behind a swap-out. A
//! queue is a [`Conn`] behind a kernel mutex (see [`Mutex`] for why a
//! mutex); the holder posts one request and polls for its completion.
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
//!   disk) and leaves its queue unusable; it does not mark the server
//!   down (server.rs). A failed read does mark the server down, and then
//!   every page on it is lost (SIGBUS), until queues are rebuilt on
//!   failure (not done yet). A real RDMA NIC allocates nothing per packet
//!   (it DMAs from the registered page), so this is a Soft-RoCE concern. A
//!   complete fix would be an rxe patch (allocate with `__GFP_MEMALLOC`
//!   for swap QPs, treat an allocation failure as a retry). The lab test
//!   `lab_pressure` swaps at 8x memory.max while a locked hog leaves ~16
//!   MiB available system-wide (kswapd must scan), and checks nothing hangs
//!   and every byte verifies.

use crate::ffi::PageRef;
use crate::rdma::{self, Conn, Failure, LockClass, Mutex, Op, Pd};
use kernel::error::code;
use kernel::prelude::*;

/// Send queue depth of a connection; one request is in flight at a time.
pub(crate) const QUEUE_DEPTH: u32 = 4;

/// One connection, used by one request at a time.
pub(crate) struct Queue(Box<Mutex<Conn>>);

impl Queue {
    pub(crate) fn new(conn: Conn, op: Op) -> Result<Queue> {
        let class = match op {
            Op::Read => LockClass::ReadQueue,
            Op::Write => LockClass::WriteQueue,
        };
        Ok(Queue(Mutex::new(conn, class)?))
    }

    /// One page transfer, waiting for the queue and then for completion.
    /// When this returns the device is done with the page (see
    /// [`Conn::transfer`]).
    pub(crate) fn transfer(
        &self,
        pd: &Pd,
        page: &PageRef,
        op: Op,
        remote: u64,
        rkey: u32,
        timeout: u64,
    ) -> core::result::Result<(), Failure> {
        self.0.with(|c| {
            c.transfer(pd, page, op, remote, rkey, timeout)?;
            // A write is kept only if, after its successful completion, the
            // connection is still there: the server may have gone while
            // the page was on the wire (re-checked by the server, too).
            if op == Op::Write && c.lost() {
                return Err(Failure::Disconnected);
            }
            Ok(())
        })
    }
}

/// A server's queues: `read[i]` and `write[i]` for CPU `i` (modulo).
pub(crate) struct Queues {
    read: Vec<Queue>,
    write: Vec<Queue>,
}

impl Queues {
    pub(crate) fn new() -> Queues {
        Queues {
            read: Vec::new(),
            write: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, conn: Conn, op: Op) -> Result {
        let q = Queue::new(conn, op)?;
        match op {
            Op::Read => self.read.try_push(q)?,
            Op::Write => self.write.try_push(q)?,
        }
        Ok(())
    }

    /// This CPU's queue for `op`; None if there is none (never after a
    /// successful connect).
    pub(crate) fn for_cpu(&self, op: Op) -> Option<&Queue> {
        let qs = match op {
            Op::Read => &self.read,
            Op::Write => &self.write,
        };
        qs.get(rdma::cpu_id() % qs.len().max(1))
    }
}

impl Failure {
    /// The error the backend returns for it.
    pub(crate) fn errno(self) -> Error {
        match self {
            Failure::Disconnected | Failure::TornDown => code::ECONNRESET,
            Failure::Post(e) => e,
            Failure::Completion(_) => code::EIO,
            Failure::Timeout => code::ETIMEDOUT,
        }
    }

    /// Why the server is marked down, for the log.
    pub(crate) fn why(self) -> &'static str {
        match self {
            Failure::Disconnected => "disconnected",
            Failure::TornDown => "queue destroyed after a lost request",
            Failure::Post(_) | Failure::Completion(_) | Failure::Timeout => "RDMA error or timeout",
        }
    }
}
