// SPDX-License-Identifier: GPL-2.0
//! `redundancy=ec:K+1`: erasure coding. A page is split into K data
//! chunks of `PAGE_SIZE / K` bytes plus one parity chunk, their XOR, on
//! K+1 different servers. Any K of the K+1 chunks give the page back, so
//! losing one server loses no page, for (K+1)/K the memory: 1.5x with
//! `ec:2+1`, against 2x for mirror.
//!
//! - **A page, not a group of pages.** Each page is coded on its own, as
//!   Hydra does: a store or an invalidation touches that page's chunks
//!   only, and nothing waits for other pages to fill a group. Coding a
//!   group of K pages (a page per server, parity over the group) would
//!   move whole pages, but an invalidation would leave the parity needing
//!   the dead page's bytes (the slot is freed only once the whole group
//!   is), and a store would wait for the group or rewrite its parity.
//!   The price here: K+1 transfers per page, each of a chunk.
//! - **Parity** is the XOR of the data chunks, with the kernel's own
//!   `crypto_xor` (rdma.rs `xor_into`; lib/crypto, built in). One parity
//!   chunk only: a second needs RAID-6 syndromes (lib/raid6), which this
//!   kernel's configuration does not build (`CONFIG_RAID6_PQ` has no
//!   prompt), so `ec:K+2` is refused with that reason.
//! - **Where:** a server's slots are chunks when EC is on (`Region`'s
//!   unit). Chunk 0 is in `Core::placement`, as a page without redundancy;
//!   chunks 1..K-1 and the parity in [`Ec::chunks`], under the same key.
//! - **Store** ([`Ec::store`]): the policy picks K+1 distinct servers;
//!   the parity goes to the slowest of them to read from (by measured
//!   latency), as loads read the data chunks. Every write completes
//!   before the store succeeds, else it is refused and the page goes to
//!   the next tier or the swap device.
//! - **Load** ([`Ec::load`]): the data chunks are read into their place in
//!   the page. If one cannot be (its server down, or the read failed),
//!   the parity chunk is read into that place and the other data chunks
//!   are XORed into it: the page is rebuilt, and the task never notices.
//!   With more than one chunk missing the load retries, as a load without
//!   redundancy waits for its server, until `loss_timeout_s`; then EIO
//!   (SIGBUS for the task), never wrong data.
//! - **Repair** (repair.rs, [`Ec::repair`]): a page that lost one chunk
//!   with a retired server gets it rebuilt onto a server holding none of
//!   its chunks.
//! - **Late binding** (Hydra; `late_binding=1`, writable at run time;
//!   off by default, see below): a load posts the reads of all K+1 chunks at once, one per
//!   server, and rebuilds the page from the first K to arrive
//!   ([`Ec::load_late`]). So a slow server (or a dead one not yet noticed)
//!   costs nothing as long as the others answer, and the K reads overlap
//!   instead of following one another. Each chunk lands in its queue's
//!   bounce page, never in the task's page, because any one of them may
//!   be the straggler: the straggler is left in flight when the load
//!   returns, and the next request on its queue waits for it first
//!   (rdma.rs `Conn::settle`), but a late-bound load does without that
//!   queue's chunk instead. The price: one more read per load, and a
//!   copy of each chunk. Without late binding, or when a server is not
//!   up, the data chunks are read one after another ([`Ec::load`]).
//!   Measured under Soft-RoCE in TCG (tests/results.md, bench.sh
//!   late_binding), late binding raised the fault p99 by 7-31% in each of
//!   three rounds, with the same p50: there a read is CPU work on the
//!   CPUs that also run the task, so the third read costs what skipping
//!   the straggler saves. Hence off by default; a NIC does the extra read
//!   without the CPU, where it is worth measuring again.

use crate::ffi::{self, DebugfsDir, OwnedPage, PageRef, SpinLock};
use crate::mirror::{free, live};
use crate::placement::{self, Place, Placement, Policy};
use crate::queue::Queue;
use crate::rdma::{self, params, Conn, Held, Span};
use crate::repair::{Pass, Step};
use crate::server::{InFlight, Server};
use crate::stats::Count;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::bindings;
use kernel::error::code;
use kernel::prelude::*;

/// Chunks per page at most: K = 4 data chunks and the parity.
const MAX_CHUNKS: usize = 5;
/// How often a load missing more than one chunk tries again.
const RETRY_MS: u32 = 100;

pub(crate) struct Ec {
    /// Data chunks per page.
    k: usize,
    /// Bytes per chunk.
    unit: usize,
    /// Key -> where chunk `j` is, for j in 1..=k (`chunks[j - 1]`; chunk
    /// `k` is the parity).
    chunks: Vec<Placement>,
    /// Loads read the ordinary way that rebuilt a data chunk from the
    /// parity (a chunk unreachable); late-bound loads that used the parity
    /// are in `late_parity`.
    pub(crate) rebuilt: AtomicU64,
    /// Stores refused because K+1 servers could not take the chunks.
    pub(crate) refused: AtomicU64,
    /// Late binding: loads served from the first K chunks to arrive; of
    /// them, those where the parity came before a data chunk (which was
    /// then rebuilt from it); loads that could not be late-bound (a server
    /// not up, too few chunks in time) and were read the ordinary way.
    pub(crate) late: AtomicU64,
    pub(crate) late_parity: AtomicU64,
    pub(crate) late_fallback: AtomicU64,
    /// Repair: chunks made again, pages one chunk short, pages lost.
    pub(crate) pass: Pass,
    /// Spare pages for the parity, two per CPU, allocated at load: a store
    /// under memory pressure should not depend on allocating one. A store
    /// that finds none allocates (refused only if that fails).
    spares: Box<SpinLock<Vec<OwnedPage>>>,
}

/// The chunks of one page: where each is, and which are read.
type Places = [Place; MAX_CHUNKS];

impl Ec {
    pub(crate) fn new(k: u32, repair_mib_s: u32, cpus: usize) -> Result<Ec> {
        let k = k as usize;
        if !(2..MAX_CHUNKS).contains(&k) || ffi::PAGE_SIZE % k != 0 {
            return Err(code::EINVAL);
        }
        let mut spares = Vec::new();
        spares.try_reserve_exact(2 * cpus)?;
        for _ in 0..2 * cpus {
            spares.try_push(OwnedPage::alloc(bindings::GFP_KERNEL)?)?;
        }
        let mut chunks = Vec::new();
        for _ in 0..k {
            chunks.try_push(Placement::new()?)?;
        }
        Ok(Ec {
            k,
            unit: ffi::PAGE_SIZE / k,
            chunks,
            rebuilt: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            late: AtomicU64::new(0),
            late_parity: AtomicU64::new(0),
            late_fallback: AtomicU64::new(0),
            pass: Pass::new(repair_mib_s),
            spares: SpinLock::new(spares)?,
        })
    }

    /// A page for a store's parity: a spare, or a new one.
    fn take_spare(&self) -> Result<OwnedPage> {
        match self.spares.with(|v| v.pop()) {
            Some(p) => Ok(p),
            None => OwnedPage::alloc(ffi::GFP_SWAPOUT),
        }
    }

    /// Gives a parity page back to the spares, or frees it if they are full.
    fn put_spare(&self, p: OwnedPage) {
        self.spares.with(|v| {
            if v.len() < v.capacity() {
                // Within the capacity: does not allocate, cannot fail.
                let _ = v.try_push(p);
            }
        });
    }

    fn span(&self, j: usize) -> Span {
        Span {
            offset: (j * self.unit) as u32,
            len: self.unit as u32,
        }
    }

    /// Stores `page` under `key`: K data chunks and the parity on K+1
    /// servers, all written before anything is recorded; chunk 0 goes in
    /// `first`, the map of pages without redundancy. Err: refused (the
    /// page goes elsewhere), with nothing recorded or held.
    pub(crate) fn store(
        &self,
        servers: &[Server],
        first: &Placement,
        key: u64,
        page: &PageRef,
    ) -> Result {
        let r = self.try_store(servers, first, key, page);
        if r.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn try_store(&self, servers: &[Server], first: &Placement, key: u64, page: &PageRef) -> Result {
        // The parity, in a page of its own.
        let mut parity = self.take_spare()?;
        let r = self.write_chunks(servers, first, key, page, &mut parity);
        self.put_spare(parity);
        r
    }

    fn write_chunks(
        &self,
        servers: &[Server],
        first: &Placement,
        key: u64,
        page: &PageRef,
        parity: &mut OwnedPage,
    ) -> Result {
        let (k, u) = (self.k, self.unit);
        let mut pbuf = parity.borrow_mut();
        page.with_bytes(|src| {
            pbuf.with_bytes_mut(|p| {
                p[..u].copy_from_slice(&src[..u]);
                for j in 1..k {
                    rdma::xor_into(&mut p[..u], &src[j * u..(j + 1) * u]);
                }
            })
        });
        // K+1 servers by the policy, the slowest to read from (by its
        // measured latency) for the parity, which is read only when a
        // data chunk is missing.
        let mut picked = [0usize; MAX_CHUNKS];
        let mut used = 0u32;
        for i in picked[..=k].iter_mut() {
            *i = placement::pick(servers, Policy::now(), used)
                .ok_or(code::ENOSPC)?
                .0;
            used |= 1 << *i;
        }
        let lat = |i: usize| servers.get(i).and_then(placement::latency_ns).unwrap_or(0);
        if let Some(slow) = (0..=k).max_by_key(|&j| lat(picked[j])) {
            picked.swap(slow, k);
        }
        // Each chunk written; the in-flight marks hold off those servers'
        // retirements until the chunks are counted below.
        let mut places: [Option<Place>; MAX_CHUNKS] = [None; MAX_CHUNKS];
        let mut marks: [Option<InFlight<'_>>; MAX_CHUNKS] = Default::default();
        let mut failed = None;
        for j in 0..=k {
            let (src, span) = match j < k {
                true => (page, self.span(j)),
                false => (&pbuf, self.span(0)),
            };
            let i = picked[j];
            let written = servers
                .get(i)
                .ok_or(code::ENOSPC)
                .and_then(|s| s.store_span(src, span));
            match written {
                Ok((slot, gen, mark)) => {
                    places[j] = Some(Place {
                        server: i,
                        slot,
                        gen,
                    });
                    marks[j] = Some(mark);
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let give_back = |places: &[Option<Place>]| {
            for p in places.iter().flatten() {
                if let Some(s) = servers.get(p.server) {
                    s.put_slot(p.slot, p.gen);
                }
            }
        };
        if let Some(e) = failed {
            give_back(&places);
            return Err(e);
        }
        // Recorded: chunks 1..=k first, chunk 0 last (the repair pass
        // skips a page until its chunk 0 is recorded).
        let mut recorded = 0;
        let mut r = Ok(());
        for j in 1..=k {
            if let Some(p) = places[j] {
                r = self.chunks[j - 1].insert(key, p, false);
                if r.is_err() {
                    break;
                }
                recorded = j;
            }
        }
        if r.is_ok() {
            if let Some(p) = places[0] {
                r = first.insert(key, p, false);
            }
        }
        if let Err(e) = r {
            for j in 1..=recorded {
                self.chunks[j - 1].remove(key);
            }
            give_back(&places);
            return Err(e);
        }
        // Counted, each only if its server's generation is still current
        // (in one step with that check); if one was retired meanwhile (a
        // retirement that gave up waiting for us), the page is refused.
        let mut counted = [false; MAX_CHUNKS];
        for j in 0..=k {
            if let Some(p) = places[j] {
                counted[j] = servers
                    .get(p.server)
                    .map_or(false, |s| s.count_page(p.gen, true));
            }
        }
        if counted[..=k].iter().all(|&c| c) {
            for p in places.iter().flatten() {
                if let Some(s) = servers.get(p.server) {
                    s.stats.count(Count::Stores, 1);
                }
            }
            return Ok(());
        }
        for j in 0..=k {
            if let Some(p) = places[j] {
                let map = if j == 0 { first } else { &self.chunks[j - 1] };
                // Whatever the key holds: our chunk, or one repair made in
                // place of ours (which was then on a retired server, so
                // nothing of ours is left to give back).
                match map.remove(key) {
                    Some(q) if q == p && !counted[j] => give_back(&[Some(q)]),
                    Some(q) => free(servers, q),
                    None => {}
                }
            }
        }
        drop(marks);
        Err(code::ECONNRESET)
    }

    /// Frees the chunks 1..=K of `key` (chunk 0 is the caller's).
    pub(crate) fn invalidate(&self, servers: &[Server], key: u64) {
        for map in self.chunks.iter() {
            if let Some(p) = map.remove(key) {
                free(servers, p);
            }
        }
    }

    /// The places of `key`'s chunks, chunk 0 at `first`; None if one is
    /// not recorded (being stored or invalidated).
    fn places(&self, key: u64, first: Place) -> Option<Places> {
        let mut places = [first; MAX_CHUNKS];
        for j in 1..=self.k {
            places[j] = self.chunks[j - 1].get(key)?;
        }
        Some(places)
    }

    /// Reads chunk `j` (at `p`) into the bytes `span` of `page`, once,
    /// without waiting for a reconnecting server: Ok, EIO if the chunk is
    /// lost (its generation retired), another error if it may come back.
    fn read(&self, servers: &[Server], p: Place, page: &PageRef, span: Span) -> Result {
        let s = servers.get(p.server).ok_or(code::EIO)?;
        if !live(servers, p) {
            return Err(code::EIO);
        }
        if !s.usable() {
            return Err(code::EAGAIN);
        }
        s.read_span(page, span, p.slot, p.gen, false)
    }

    /// Makes data chunk `m` of `b` (a page whose other data chunks are in
    /// place, and whose chunk `m` holds the parity) the XOR of the parity
    /// and the other data chunks: the lost chunk.
    fn rebuild_in(&self, b: &mut [u8], m: usize) {
        let u = self.unit;
        for j in (0..self.k).filter(|&j| j != m) {
            if j < m {
                let (lo, hi) = b.split_at_mut(m * u);
                rdma::xor_into(&mut hi[..u], &lo[j * u..(j + 1) * u]);
            } else {
                let (lo, hi) = b.split_at_mut(j * u);
                rdma::xor_into(&mut lo[m * u..(m + 1) * u], &hi[..u]);
            }
        }
    }

    /// Reads the page of `key`, whose chunk 0 is at `first`, into `page`:
    /// the data chunks, and if one is missing, the parity in its place.
    pub(crate) fn load(
        &self,
        servers: &[Server],
        key: u64,
        first: Place,
        page: &mut PageRef,
    ) -> Result {
        let k = self.k;
        let places = self.places(key, first).ok_or(code::EIO)?;
        if params::late_binding() {
            if self.load_late(servers, &places, page) {
                return Ok(());
            }
            self.late_fallback.fetch_add(1, Ordering::Relaxed);
        }
        let bound = servers.get(first.server).map_or(0, |s| s.loss());
        let deadline = rdma::jiffies().wrapping_add(bound);
        let mut have = [false; MAX_CHUNKS];
        loop {
            // Whether a missing chunk may still come back (its server is
            // reconnecting), rather than being lost.
            let mut waiting = false;
            let mut missing = None;
            let mut short = 0;
            for j in 0..k {
                if have[j] {
                    continue;
                }
                match self.read(servers, places[j], page, self.span(j)) {
                    Ok(()) => have[j] = true,
                    Err(e) => {
                        waiting |= e != code::EIO;
                        missing = Some(j);
                        short += 1;
                    }
                }
            }
            let m = match (short, missing) {
                (0, _) | (_, None) => return Ok(()),
                (_, Some(m)) => m,
            };
            if short == 1 {
                match self.read(servers, places[k], page, self.span(m)) {
                    Ok(()) => {
                        page.with_bytes_mut(|b| self.rebuild_in(b, m));
                        self.rebuilt.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    Err(e) => waiting |= e != code::EIO,
                }
            }
            if !waiting {
                return Err(code::EIO);
            }
            if rdma::after(rdma::jiffies(), deadline) {
                // As a load without redundancy does: the servers still
                // unreachable past the bound have their pages declared
                // lost, so the counts say why this page failed.
                for (j, p) in places[..=k].iter().enumerate() {
                    if j == k || !have[j] {
                        if let Some(s) = servers.get(p.server) {
                            s.give_up(p.gen);
                        }
                    }
                }
                return Err(code::EIO);
            }
            rdma::sleep_ms(RETRY_MS);
        }
    }

    /// Late binding: posts the reads of all K+1 chunks at once, one on
    /// each server's read queue for this CPU (held together, taken in
    /// ascending server order), and rebuilds `page` from the first K to
    /// arrive. Each chunk lands in its queue's bounce page and is copied
    /// into `page`: the straggler, left in flight, never writes into it.
    /// A read that fails is handled as any (its server reconnecting).
    /// A queue where an earlier load's straggler is still in flight is
    /// done without. false if the page could not be had this way (a
    /// server not up, a queue broken, fewer than K chunks posted or
    /// arrived within `timeout_ms`): the caller
    /// then reads it the ordinary way, which waits for reconnecting
    /// servers and says when a page is lost.
    fn load_late(&self, servers: &[Server], places: &Places, page: &mut PageRef) -> bool {
        let (k, n, u) = (self.k, self.k + 1, self.unit);
        let mut queues: [Option<&Queue>; MAX_CHUNKS] = [None; MAX_CHUNKS];
        for j in 0..n {
            let p = places[j];
            match servers.get(p.server).and_then(|s| s.late_queue(p.gen)) {
                Some(q) if live(servers, p) => queues[j] = Some(q),
                _ => return false,
            }
        }
        let timeout = servers[places[0].server].timeout();
        let mut order = [0, 1, 2, 3, 4];
        order[..n].sort_unstable_by_key(|&j| places[j].server);
        // Distinct servers, as store and repair place them; two chunks on
        // one would lock its queue twice.
        if order[..n]
            .windows(2)
            .any(|w| places[w[0]].server == places[w[1]].server)
        {
            return false;
        }
        let mut held: [Option<Held<'_, Option<Conn>>>; MAX_CHUNKS] = Default::default();
        for (rank, &j) in order[..n].iter().enumerate() {
            held[j] = queues[j].map(|q| q.hold(rank as u32));
        }
        // Per chunk: posted, and when; how it ended (None while in flight)
        // and how long it took.
        let mut posted = [false; MAX_CHUNKS];
        let mut sent = [0u64; MAX_CHUNKS];
        let mut ended = [None; MAX_CHUNKS];
        let mut took = [0u64; MAX_CHUNKS];
        for j in 0..n {
            let p = places[j];
            if let Some(h) = held[j].as_mut() {
                // An earlier load's straggler still in flight there: do
                // without this chunk rather than wait for it.
                if h.as_mut().map_or(false, |c| c.straggling()) {
                    continue;
                }
                sent[j] = rdma::now_ns();
                match servers[p.server].post_late(h, p.slot, p.gen) {
                    Ok(()) => posted[j] = true,
                    Err(f) => ended[j] = Some(Err(f)),
                }
            }
        }
        let t0 = rdma::now_ns();
        let deadline = rdma::jiffies().wrapping_add(timeout);
        let got = loop {
            let (mut got, mut flying, mut wait_on) = (0, 0, None);
            for j in 0..n {
                if posted[j] && ended[j].is_none() {
                    if let Some(c) = held[j].as_mut().and_then(|h| h.as_mut()) {
                        if let Some(r) = c.poll_late() {
                            ended[j] = Some(r);
                            took[j] = rdma::now_ns().saturating_sub(sent[j]);
                        }
                    }
                }
                match ended[j] {
                    Some(Ok(())) => got += 1,
                    None if posted[j] => {
                        flying += 1;
                        wait_on = wait_on.or(Some(j));
                    }
                    _ => {}
                }
            }
            // Done, or K can no longer come, or too late.
            if got >= k || got + flying < k || rdma::after(rdma::jiffies(), deadline) {
                break got;
            }
            // Spin over the CQs for `poll_us`, as a lone read does; then
            // sleep until one of them completes, a jiffy at most, and poll
            // them all again.
            if let Some(c) = wait_on
                .and_then(|j| held[j].as_ref())
                .and_then(|h| h.as_ref())
            {
                if c.spins(t0) {
                    core::hint::spin_loop();
                } else {
                    c.wait_late(1);
                }
            }
        };
        let arrived = |j: usize| matches!(ended[j], Some(Ok(())));
        // The data chunk that did not come in time, if one did not.
        let missing = (0..k).find(|&j| !arrived(j));
        let mut whole = got >= k;
        if whole {
            page.with_bytes_mut(|b| {
                for j in (0..k).filter(|&j| arrived(j)) {
                    let c = held[j].as_mut().and_then(|h| h.as_mut());
                    whole &= c
                        .and_then(|c| {
                            c.late_bytes(u, |src| b[j * u..(j + 1) * u].copy_from_slice(src))
                        })
                        .is_some();
                }
                if let Some(m) = missing {
                    let c = held[k].as_mut().and_then(|h| h.as_mut());
                    whole &= c
                        .and_then(|c| {
                            c.late_bytes(u, |src| b[m * u..(m + 1) * u].copy_from_slice(src))
                        })
                        .is_some();
                    self.rebuild_in(b, m);
                }
            });
        }
        // Stragglers stay in flight into their bounce pages.
        drop(held);
        for j in 0..n {
            let p = places[j];
            if let (Some(r), Some(q)) = (ended[j], queues[j]) {
                // Every read that ended is counted (or its failure handled);
                // one used whose generation moved on spoils the page.
                let current = servers[p.server].end_late(q, r, p.gen, took[j]);
                let used = j < k && arrived(j) || j == k && missing.is_some();
                whole &= current || !used;
            }
        }
        if whole {
            self.late.fetch_add(1, Ordering::Relaxed);
            if missing.is_some() {
                self.late_parity.fetch_add(1, Ordering::Relaxed);
            }
        }
        whole
    }

    /// The recovery thread's part, every period: once a server's pages
    /// were declared lost, gives every page that lost one chunk a new one,
    /// rebuilt from the others, on a server holding none of its chunks;
    /// `first` is the map of chunks 0.
    pub(crate) fn repair(&self, servers: &[Server], first: &Placement) {
        let k = self.k;
        let mut bounce: Option<OwnedPage> = None;
        let visit = |key: u64, _chunk1: Place, io: &mut bool| {
            let p0 = match first.get(key) {
                Some(p) => p,
                // Being stored (chunk 0 is recorded last) or invalidated.
                None => return Step::Whole,
            };
            let places = match self.places(key, p0) {
                Some(p) => p,
                None => return Step::Whole,
            };
            let mut dead = None;
            let mut n_dead = 0;
            let mut holders = 0u32;
            for (j, p) in places[..=k].iter().enumerate() {
                if live(servers, *p) {
                    holders |= 1 << p.server;
                } else {
                    dead = Some(j);
                    n_dead += 1;
                }
            }
            let d = match (n_dead, dead) {
                (0, _) | (_, None) => return Step::Whole,
                (1, Some(d)) => d,
                _ => return Step::Lost,
            };
            // No server to take the chunk: nothing to try (and no I/O).
            if placement::pick(servers, Policy::now(), holders).is_none() {
                return Step::Degraded;
            }
            if bounce.is_none() {
                // Without a page (memory is short) the pass waits.
                match OwnedPage::alloc(ffi::GFP_SWAPOUT) {
                    Ok(b) => bounce = Some(b),
                    Err(_) => return Step::Stop,
                }
            }
            let mut buf = match bounce.as_mut() {
                Some(b) => b.borrow_mut(),
                None => return Step::Stop,
            };
            *io = true;
            match self.rebuild(servers, first, key, &places, d, holders, &mut buf) {
                Ok(()) => Step::Repaired,
                Err(_) => Step::Degraded,
            }
        };
        let map = match self.chunks.first() {
            Some(m) => m,
            None => return,
        };
        self.pass.run(servers, map, visit, |repaired, degraded, lost| {
            pr_info!(
                "ec: repair pass done: {} pages given their lost chunk again, {} still one chunk short, {} with too few (lost)\n",
                repaired,
                degraded,
                lost
            );
        });
    }

    /// Makes chunk `d` of `key` (at `places[d]`, gone) again: reads the
    /// other chunks into `buf`, computes chunk `d`, writes it to a server
    /// not in `holders`, and records it in place of the dead one only if
    /// the key still has it (else the key was invalidated meanwhile, and
    /// the new chunk is freed).
    #[allow(clippy::too_many_arguments)]
    fn rebuild(
        &self,
        servers: &[Server],
        first: &Placement,
        key: u64,
        places: &Places,
        d: usize,
        holders: u32,
        buf: &mut PageRef,
    ) -> Result {
        let k = self.k;
        // The data chunks in place (the lost one, if data, from the
        // parity); the new chunk is then at `span`.
        for j in (0..k).filter(|&j| j != d) {
            self.read(servers, places[j], buf, self.span(j))?;
        }
        let span = if d < k {
            self.read(servers, places[k], buf, self.span(d))?;
            buf.with_bytes_mut(|b| self.rebuild_in(b, d));
            self.span(d)
        } else {
            // The parity, into chunk 0's place (its bytes are not needed
            // any more).
            let u = self.unit;
            buf.with_bytes_mut(|b| {
                for j in 1..k {
                    let (lo, hi) = b.split_at_mut(j * u);
                    rdma::xor_into(&mut lo[..u], &hi[..u]);
                }
            });
            self.span(0)
        };
        let (i, s) = placement::pick(servers, Policy::now(), holders).ok_or(code::ENOSPC)?;
        let (slot, gen, _mark) = s.store_span(buf, span)?;
        let new = Place {
            server: i,
            slot,
            gen,
        };
        if !s.count_page(gen, true) {
            return Err(code::ECONNRESET);
        }
        let map = if d == 0 { first } else { &self.chunks[d - 1] };
        if !map.replace(key, places[d], new) {
            free(servers, new);
            return Err(code::EAGAIN);
        }
        s.stats.count(Count::Stores, 1);
        Ok(())
    }
}

/// The counters, as files `ec_*` in `dir` (dropped before `ec`).
pub(crate) fn publish(dir: &DebugfsDir, ec: &Ec) {
    dir.add_u64(b"ec_rebuilt\0", &ec.rebuilt);
    dir.add_u64(b"ec_refused\0", &ec.refused);
    dir.add_u64(b"ec_late\0", &ec.late);
    dir.add_u64(b"ec_late_parity\0", &ec.late_parity);
    dir.add_u64(b"ec_late_fallback\0", &ec.late_fallback);
    ec.pass.publish(
        dir,
        [
            b"ec_repaired\0",
            b"ec_degraded\0",
            b"ec_lost\0",
            b"ec_passes\0",
        ],
    );
}
