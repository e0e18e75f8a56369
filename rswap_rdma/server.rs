// SPDX-License-Identifier: GPL-2.0
//! A memory server: connecting to it, its region and free slots, its
//! health, and moving one page to or from it.
//!
//! Health: a server is up until one of its requests fails (an RDMA error,
//! a request past the timeout, or the CM reporting a disconnect). It is
//! then marked down for good: stores skip it, and loads of pages that lived
//! there fail with EIO, which the kernel turns into SIGBUS for the task
//! rather than stale data. (Reconnecting would go here.)

use crate::ffi::{try_box, PageRef};
use crate::params::Params;
use crate::placement::{Region, RegionError, Slots};
use crate::proto::{Reply, Request, Status};
use crate::queue::{Queues, QUEUE_DEPTH};
use crate::rdma::{self, Conn, ConnectError, Endpoint, Failure, Op, Pd, PRIVATE_MAX};
use crate::stats::ServerStats;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::error::code;
use kernel::prelude::*;

const MIB: u64 = 1 << 20;

pub(crate) struct Server {
    pub(crate) ep: Endpoint,
    // The queues are declared (so dropped) before the PD they use.
    queues: Queues,
    pd: Pd,
    region: Region,
    slots: Slots,
    down: AtomicBool,
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
                Some(Status::Ok) | None => (
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

/// The region granted in an accept's private data, checked; a bad reply
/// is logged, naming the server.
fn granted(ep: Endpoint, private: &[u8], want: u64) -> Result<(Region, (u32, u64, u64))> {
    let r = match Reply::decode(private).ok() {
        Some(r) if r.status == Status::Ok => r,
        _ => {
            pr_err!(
                "server {}: accepted without a usable region; is it an rswap memserver?\n",
                ep
            );
            return Err(code::EINVAL);
        }
    };
    match Region::new(r.rkey, r.addr, r.size, want) {
        Ok(region) => Ok((region, (r.rkey, r.addr, r.size))),
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

impl Server {
    /// Connects `2 * cpus` queues (a read and a write queue per CPU) to
    /// `ep` and checks the region it grants. Any failure is logged and
    /// undoes what was set up (Drop order).
    pub(crate) fn connect(ep: Endpoint, p: &Params, cpus: usize) -> Result<Server> {
        // Declared first, so dropped after the connections made with it.
        let mut pd = None;
        let mut queues = Queues::new();
        let mut first: Option<(Region, (u32, u64, u64))> = None;
        let want = p.mib as u64 * MIB;
        for q in 0..2 * cpus {
            let req = Request {
                queue: q as u16,
                node_id: p.node_id,
                want_mib: p.mib,
                secret: p.secret,
            };
            let (conn, priv_data, n) =
                Conn::connect(ep, &mut pd, &req.encode(), p.timeout_ms, QUEUE_DEPTH)
                    .map_err(|e| connect_error(ep, e, p.timeout_ms))?;
            let (region, raw) = granted(ep, &priv_data[..n.min(PRIVATE_MAX)], want)?;
            match first {
                None => first = Some((region, raw)),
                Some((_, r)) if r != raw => {
                    pr_err!("server {}: queues got different regions\n", ep);
                    return Err(code::EINVAL);
                }
                Some(_) => {}
            }
            queues.push(conn, if q % 2 == 0 { Op::Read } else { Op::Write })?;
        }
        let (region, _) = first.ok_or(code::EINVAL)?;
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
            region,
            slots,
            down: AtomicBool::new(false),
            stats,
        })
    }

    /// Up, as far as we know.
    pub(crate) fn usable(&self) -> bool {
        !self.down.load(Ordering::Acquire)
    }

    pub(crate) fn mark_down(&self, why: &str) {
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

    pub(crate) fn free_pages(&self) -> u64 {
        self.stats.free_pages.load(Ordering::Relaxed)
    }

    pub(crate) fn take_slot(&self) -> Option<u32> {
        let s = self.slots.take()?;
        self.stats.free_pages.fetch_sub(1, Ordering::Relaxed);
        Some(s)
    }

    pub(crate) fn put_slot(&self, slot: u32) {
        if self.slots.put(slot) {
            self.stats.free_pages.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes `page` to `slot`. Ok only if the write completed successfully
    /// and, checked after its completion, the server is still up: a store
    /// that raced with the server's failure is refused (the page then goes
    /// to the swap device) rather than kept where it cannot be read back.
    pub(crate) fn write(&self, page: &PageRef, slot: u32, timeout: u64) -> Result {
        self.transfer(page, Op::Write, slot, timeout)?;
        if !self.usable() {
            return Err(code::ECONNRESET);
        }
        Ok(())
    }

    /// Reads `slot` into `page`.
    pub(crate) fn read(&self, page: &PageRef, slot: u32, timeout: u64) -> Result {
        self.transfer(page, Op::Read, slot, timeout)
    }

    /// One page transfer on this CPU's queue for `op`; a failure marks the
    /// server down.
    fn transfer(&self, page: &PageRef, op: Op, slot: u32, timeout: u64) -> Result {
        let remote = self.region.slot_addr(slot).ok_or(code::EINVAL)?;
        let q = self.queues.for_cpu(op).ok_or(code::EIO)?;
        let t0 = rdma::now_ns();
        let r = q.transfer(&self.pd, page, op, remote, self.region.rkey, timeout);
        let dt = rdma::now_ns().saturating_sub(t0);
        match r {
            Ok(()) if op == Op::Write => {
                self.stats.writes.fetch_add(1, Ordering::Relaxed);
                self.stats.write_lat.record(dt);
                Ok(())
            }
            Ok(()) => {
                self.stats.reads.fetch_add(1, Ordering::Relaxed);
                self.stats.read_lat.record(dt);
                Ok(())
            }
            Err(f) if op == Op::Write => {
                // A failed write loses nothing: the store is refused and
                // the page goes to the next tier or the swap disk. It says
                // little about the server either: on Soft-RoCE one failed
                // GFP_ATOMIC packet allocation errors the QP (see
                // queue.rs). So it does not mark the server down, which
                // would lose every page on it; this queue stays unusable
                // (its stores are refused) until queues are rebuilt. A
                // server that is really gone is marked down by its first
                // failed read.
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                Err(f.errno())
            }
            Err(f) => {
                self.fail(f);
                Err(f.errno())
            }
        }
    }

    fn fail(&self, f: Failure) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        self.mark_down(f.why());
    }
}
