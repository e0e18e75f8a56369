// SPDX-License-Identifier: GPL-2.0
//! `redundancy=mirror`: every page has two copies, on two servers, so
//! that losing one server loses no page.
//!
//! - **Store** ([`Mirror::store_copy`]): after the first copy is written
//!   where the policy says (`Rdma::store`), the second goes to another
//!   server, picked by the same policy. Both writes complete before the
//!   store succeeds; if the second cannot be made, the store is refused
//!   and the page goes to the next tier or the swap device.
//! - **Where:** the first copy is in `Core::placement`, as without
//!   redundancy; the second in [`Mirror::copies`], under the same key.
//! - **Load** ([`Mirror::load`]): one copy is read, from the server with
//!   the lower measured latency. If that read fails, the other copy is
//!   read at once, without waiting for the first server to come back;
//!   only if both fail does the load retry both, every
//!   [`RETRY_MS`], until one answers, both copies are lost, or
//!   `loss_timeout_s` passed (as a load without redundancy waits for its
//!   server); then it fails with EIO.
//! - **Invalidation** frees both copies.
//! - **Repair** ([`Mirror::repair`], on the recovery thread): once a
//!   server's pages are declared lost (its slot generation moves on), a
//!   pass over every page finds those with one copy left and makes a new
//!   second copy on another server, at most `repair_mib_s` worth of pages
//!   and a time budget per period (repair.rs). A page whose two copies are both
//!   gone is lost: its loads fail with EIO (SIGBUS for the task), never
//!   with wrong data.
//!
//! Pages are not moved between servers under mirror (a move could put
//! both copies on one server): `placement=tiered` then places new pages
//! by the weighted policy's shares, and promotes and demotes nothing.

use crate::ffi::{self, DebugfsDir, OwnedPage, PageRef};
use crate::placement::{self, Place, Placement, Policy};
use crate::rdma;
use crate::repair::{Pass, Step};
use crate::server::{InFlight, Server};
use crate::stats::Count;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::error::code;
use kernel::prelude::*;

/// How often a load whose two copies both failed tries them again.
const RETRY_MS: u32 = 100;

pub(crate) struct Mirror {
    /// Key -> where the page's second copy is.
    copies: Placement,
    /// Loads served by one copy while the other's server was down or its
    /// read failed.
    pub(crate) failovers: AtomicU64,
    /// Stores refused because no second server could take the copy.
    pub(crate) refused: AtomicU64,
    /// Repair: second copies made again, pages with one copy left, with
    /// none (repair.rs).
    pub(crate) pass: Pass,
}

/// Is `p` a live copy (its server has not retired its generation)?
pub(crate) fn live(servers: &[Server], p: Place) -> bool {
    servers.get(p.server).map_or(false, |s| s.gen() == p.gen)
}

impl Mirror {
    /// `repair_mib_s`: repair's rate bound (`repair_mib_s=`).
    pub(crate) fn new(repair_mib_s: u32) -> Result<Mirror> {
        Ok(Mirror {
            copies: Placement::new()?,
            failovers: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            pass: Pass::new(repair_mib_s),
        })
    }

    /// Writes the second copy of `page`, whose first is on server
    /// `first`, and records it under `key`; returns it with the in-flight
    /// mark that holds off its server's retirement, which the caller keeps
    /// until it has checked the copy's generation once the first copy is
    /// recorded. Err: no other server took it (the caller frees the first
    /// copy and refuses the store).
    pub(crate) fn store_copy<'a>(
        &self,
        servers: &'a [Server],
        key: u64,
        first: usize,
        page: &PageRef,
    ) -> Result<(Place, InFlight<'a>)> {
        let r = self.copy_to(servers, first, page, |p| self.copies.insert(key, p, false));
        if r.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Writes `page` to a server other than `not`, picked by the policy,
    /// and records it with `record`; the copy is counted in that server's
    /// pages. On any failure nothing is recorded and the slot is freed.
    fn copy_to<'a>(
        &self,
        servers: &'a [Server],
        not: usize,
        page: &PageRef,
        record: impl FnOnce(Place) -> Result,
    ) -> Result<(Place, InFlight<'a>)> {
        let (server, s) = placement::pick(servers, Policy::now(), 1 << not).ok_or(code::ENOSPC)?;
        let (slot, gen, inflight) = s.store(page)?;
        let place = Place { server, slot, gen };
        // Counted before it is recorded: an invalidation may free it as
        // soon as it is, and must find it counted. Not if the server's
        // pages were retired since the write: the copy is lost already.
        if !s.count_page(gen, true) {
            return Err(code::ECONNRESET);
        }
        if let Err(e) = record(place) {
            s.free_page(slot, gen);
            return Err(e);
        }
        s.stats.count(Count::Stores, 1);
        Ok((place, inflight))
    }

    /// Frees the second copy of `key`, if it has one.
    pub(crate) fn invalidate(&self, servers: &[Server], key: u64) {
        if let Some(p) = self.copies.remove(key) {
            free(servers, p);
        }
    }

    /// Reads the page of `key`, whose first copy is at `first`, into
    /// `page`: from the faster server, else from the other; None if the
    /// page has no second copy (the caller reads `first` as usual).
    pub(crate) fn load(
        &self,
        servers: &[Server],
        key: u64,
        first: Place,
        page: &PageRef,
    ) -> Option<Result> {
        let second = self.copies.get(key)?;
        let mut order = [first, second];
        if faster(servers, second.server, first.server) {
            order.swap(0, 1);
        }
        // Each copy once, without waiting for a reconnecting server: the
        // other copy is there for that. A load served while the other
        // copy's server is down, or after its read failed, is a failover.
        let usable = |p: &Place| servers.get(p.server).map_or(false, |s| s.usable());
        for (i, p) in order.iter().enumerate() {
            if let Some(s) = servers.get(p.server) {
                if s.usable() && s.read(page, p.slot, p.gen, false).is_ok() {
                    if i > 0 || !usable(&order[1]) {
                        self.failovers.fetch_add(1, Ordering::Relaxed);
                    }
                    return Some(Ok(()));
                }
            }
        }
        // Neither answered now: try both again while either may come
        // back, as a load of a single copy waits for its server (a read of
        // a lost copy fails at once with EIO; the recovery thread declares
        // a server's pages lost past the bound).
        let bound = servers.get(first.server).map_or(0, |s| s.loss());
        let deadline = rdma::jiffies().wrapping_add(bound);
        loop {
            let mut waiting = false;
            for p in order.iter() {
                let s = match servers.get(p.server) {
                    Some(s) => s,
                    None => continue,
                };
                match s.read(page, p.slot, p.gen, false) {
                    Ok(()) => {
                        self.failovers.fetch_add(1, Ordering::Relaxed);
                        return Some(Ok(()));
                    }
                    Err(e) if e == code::EIO => {}
                    Err(_) => waiting = true,
                }
            }
            if !waiting {
                return Some(Err(code::EIO));
            }
            if rdma::after(rdma::jiffies(), deadline) {
                // Both servers unreachable past the bound: their pages are
                // declared lost now (Server::give_up).
                for p in order.iter() {
                    if let Some(s) = servers.get(p.server) {
                        s.give_up(p.gen);
                    }
                }
                return Some(Err(code::EIO));
            }
            rdma::sleep_ms(RETRY_MS);
        }
    }

    /// The recovery thread's part, every period: once a server's pages
    /// were declared lost, passes over every mirrored page and gives those
    /// with one copy left a new second copy; `first` is the map of first
    /// copies.
    pub(crate) fn repair(&self, servers: &[Server], first: &Placement) {
        let mut bounce: Option<OwnedPage> = None;
        let visit = |k: u64, second: Place, io: &mut bool| {
            let p = match first.get(k) {
                Some(p) => p,
                // Being invalidated, or stored: the first copy is recorded
                // after the second, and the store holds off the second's
                // retirement until it has checked both (`Rdma::store`), so
                // a retirement after that begins a pass that sees it.
                None => return Step::Whole,
            };
            let (a, b) = (live(servers, p), live(servers, second));
            if a && b {
                return Step::Whole;
            }
            if !a && !b {
                return Step::Lost;
            }
            if bounce.is_none() {
                // Without a page (memory is short) the pass waits.
                match OwnedPage::alloc(ffi::GFP_SWAPOUT) {
                    Ok(b) => bounce = Some(b),
                    Err(_) => return Step::Stop,
                }
            }
            let buf = match bounce.as_mut() {
                Some(b) => b.borrow_mut(),
                None => return Step::Stop,
            };
            let (from, stale, map) = if a {
                (p, second, &self.copies)
            } else {
                (second, p, first)
            };
            // No server to take a copy: nothing to try (and no I/O).
            if placement::pick(servers, Policy::now(), 1 << from.server).is_none() {
                return Step::Degraded;
            }
            *io = true;
            match self.rebuild(servers, k, from, stale, map, &buf) {
                Ok(()) => Step::Repaired,
                Err(_) => Step::Degraded,
            }
        };
        self.pass
            .run(servers, &self.copies, visit, |repaired, degraded, lost| {
                pr_info!(
                    "mirror: repair pass done: {} pages given a second copy, {} still with one copy, {} with none (lost)\n",
                    repaired,
                    degraded,
                    lost
                );
            });
    }

    /// Gives `key`, whose copy at `from` is live and whose copy at
    /// `stale` (recorded in `map`) is gone, a new copy: read into `buf`,
    /// written to a server other than `from`'s, then recorded in place of
    /// `stale` only if `key` is still at `stale` (else the key was
    /// invalidated meanwhile, and the new copy is freed).
    fn rebuild(
        &self,
        servers: &[Server],
        key: u64,
        from: Place,
        stale: Place,
        map: &Placement,
        buf: &PageRef,
    ) -> Result {
        let s = servers.get(from.server).ok_or(code::EIO)?;
        s.read(buf, from.slot, from.gen, false)?;
        self.copy_to(servers, from.server, buf, |new| {
            if map.replace(key, stale, new) {
                Ok(())
            } else {
                Err(code::EAGAIN)
            }
        })?;
        Ok(())
    }
}

/// The counters, as files `mirror_*` in `dir` (dropped before `m`).
pub(crate) fn publish(dir: &DebugfsDir, m: &Mirror) {
    dir.add_u64(b"mirror_failovers\0", &m.failovers);
    dir.add_u64(b"mirror_refused\0", &m.refused);
    m.pass.publish(
        dir,
        [
            b"mirror_repaired\0",
            b"mirror_degraded\0",
            b"mirror_lost\0",
            b"mirror_passes\0",
        ],
    );
}

/// Frees the slot of copy `p`, counted out of its server's pages (unless
/// its generation was retired, when it was counted lost).
pub(crate) fn free(servers: &[Server], p: Place) {
    if let Some(s) = servers.get(p.server) {
        s.free_page(p.slot, p.gen);
    }
}

/// Is server `a` faster to read from than server `b`? Only a usable
/// server with a measured latency is; an unmeasured one is not.
fn faster(servers: &[Server], a: usize, b: usize) -> bool {
    let lat = |i: usize| {
        servers
            .get(i)
            .filter(|s| s.usable())
            .and_then(placement::latency_ns)
            .unwrap_or(u64::MAX)
    };
    lat(a) < lat(b)
}
