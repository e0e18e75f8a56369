// SPDX-License-Identifier: GPL-2.0
//! Placement: which server a page goes to, which slot of its region, and
//! where that slot is.
//!
//! - [`pick`]: per page, a usable server with room is drawn at random,
//!   by the policy of `placement=`:
//!   - `capacity`: with probability proportional to its free slots, so
//!     pages spread in proportion to free capacity and a fuller server is
//!     used less;
//!   - `weighted`: by shares that follow each server's measured loaded
//!     latency, 1/latency^2 over the sum ([`rebalance`]);
//!   - `tiered`: hot pages on the fastest server, the others by weight,
//!     with background promotion and demotion (tier.rs).
//!   It keeps no chunk state; the cost is one random draw per store. When
//!   every server is full the store is refused and the swap device takes
//!   the page.
//! - [`Region`]: a server's region, checked once when it is granted; slot
//!   `i` is the page at `addr + i * PAGE_SIZE`.
//! - [`Slots`]: the free slots of a region, and its generation.
//! - [`Placement`]: swap key -> (server, slot, generation) of every page
//!   held.
//!
//! Generations: when a server's pages are declared lost (it was
//! unreachable past `loss_timeout_s`, or it came back with a new, empty
//! region), its generation goes up and all its slots are free again. An
//! entry of an older generation is a lost page: a load fails with EIO
//! (never stale data), and an invalidate frees no slot, since that slot may
//! already hold a page of the new generation.

use crate::ffi::{SpinLock, ValueMap, GFP_SWAPOUT, PAGE_SIZE};
use crate::rdma::{self, VWords};
use crate::server::Server;
use crate::slotmap::{words_for, SlotMap};
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::error::code;
use kernel::prelude::*;

/// The placement policies, `placement=` (writable at run time, so read
/// once per decision).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// In proportion to free slots: the baseline.
    Capacity,
    /// By shares from each server's measured loaded latency (see
    /// [`rebalance`]).
    Weighted,
    /// Hot pages on the fastest server, the rest by weight, pages moved
    /// between them (tier.rs).
    Tiered,
}

impl Policy {
    pub(crate) fn now() -> Policy {
        match rdma::params::placement() {
            1 => Policy::Weighted,
            2 => Policy::Tiered,
            _ => Policy::Capacity,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Policy::Capacity => "capacity",
            Policy::Weighted => "weighted",
            Policy::Tiered => "tiered",
        }
    }
}

/// A usable server with room for a new page, by `policy`, other than
/// the servers in the bit mask `not` (bit i: server i), which hold the
/// page's other copy or chunks (mirror.rs, ec.rs). None when every such
/// server is full or down: the store is refused and the page goes to the
/// swap device.
pub(crate) fn pick(servers: &[Server], policy: Policy, not: u32) -> Option<(usize, &Server)> {
    let free = |i: usize, s: &Server| {
        if not & (1 << i) != 0 {
            0
        } else {
            s.free_pages()
        }
    };
    match policy {
        Policy::Capacity => draw(servers, free),
        Policy::Weighted | Policy::Tiered => draw(servers, |i, s| {
            if free(i, s) > 0 {
                s.stats.share_ppm.load(Ordering::Relaxed)
            } else {
                0
            }
        })
        .or_else(|| draw(servers, free)),
    }
}

/// A usable server drawn at random with probability proportional to
/// `weight(index, server)`; servers of weight 0 are never drawn.
pub(crate) fn draw(
    servers: &[Server],
    weight: impl Fn(usize, &Server) -> u64,
) -> Option<(usize, &Server)> {
    let total: u64 = servers
        .iter()
        .enumerate()
        .filter(|(_, s)| s.usable())
        .map(|(i, s)| weight(i, s))
        .sum();
    if total == 0 {
        return None;
    }
    let mut r = rdma::random_below(total);
    for (i, s) in servers.iter().enumerate().filter(|(_, s)| s.usable()) {
        let w = weight(i, s);
        if r < w {
            return Some((i, s));
        }
        r -= w;
    }
    // The weights moved under us: take any server with room it weighs.
    servers
        .iter()
        .enumerate()
        .find(|&(i, s)| s.usable() && s.free_pages() > 0 && weight(i, s) > 0)
}

/// Shares are in parts per million.
const PPM: u64 = 1_000_000;
/// No usable server with room gets less than this share: each keeps
/// getting a few pages, so its latency estimate stays current and a
/// server that got faster is noticed.
const MIN_SHARE_PPM: u64 = 30_000;

const MAX_LATENCY_NS: u64 = 10_000_000_000;

/// The latency the weighted policy works from: the mean of a server's
/// read and write moving averages (loaded: they include the wait for a
/// queue), or whichever has had samples in the last two seconds.
pub(crate) fn latency_ns(s: &Server) -> Option<u64> {
    // Fresh averages only, unless neither is fresh (an idle server keeps
    // its last estimate).
    let l = match s.stats.fresh_latency() {
        (None, None) => (s.stats.read_lat.ewma_ns(), s.stats.write_lat.ewma_ns()),
        fresh => fresh,
    };
    let l = match l {
        (Some(r), Some(w)) => Some((r + w) / 2),
        (r, w) => r.or(w),
    };
    // At most 10 s: a bound for debugfs and the tiered policy's
    // comparisons.
    l.map(|l| l.min(MAX_LATENCY_NS))
}

/// The weighted policy's shares, refreshed every recovery period.
///
/// A server's service rate is what one of its queues completes per second
/// at its measured loaded latency, 1/latency (Little's law). Each page
/// placed on a server is then also read back at that latency by the task
/// that faults on it, so a server's weight is its rate times its speed,
/// 1/latency^2, and its target share is its weight over the sum. A server
/// whose latency rises under load (its queues fill, or its node gets busy
/// with its own work) loses share quickly, which moves toward equal loaded
/// latency (Colloid's goal, SOSP'24), and a server that stays slower
/// however little it carries keeps a share that falls with the square of
/// its gap instead of none. (With 1/latency alone, a 4:1 pair measured
/// about 2:1 in latency under TCG and got 65/35; see tests/results.md.)
///
/// Shares move half way to the target per period, so a change is followed
/// within a second. A usable server with room gets at least about
/// [`MIN_SHARE_PPM`], so its latency keeps being measured and a server that
/// got faster is noticed. Servers that are down or full get none (capacity
/// bounds the share: the others take the full one's part); one without
/// samples yet gets the mean weight. The target is computed afresh each
/// period from the current estimates, so nothing accumulates: a stale
/// estimate (an idle or full server) holds its last value, no more.
pub(crate) fn rebalance(servers: &[Server]) {
    let eligible = |s: &Server| s.usable() && s.free_pages() > 0;
    // 2^62 / latency_ns^2 in ns, not whole us, so that 1.0 and 1.9 us
    // differ on a real NIC; latency at least 100 ns: at most 2^62 / 10^4
    // each.
    let weight = |s: &Server| {
        latency_ns(s).map(|l| {
            let ns = l.max(100);
            (WEIGHT_SCALE / ns / ns).max(1)
        })
    };
    let (mut known, mut sum) = (0u64, 0u64);
    for s in servers.iter().filter(|s| eligible(s)) {
        if let Some(w) = weight(s) {
            known += 1;
            sum += w;
        }
    }
    let mean = if known > 0 { sum / known } else { 1 };
    let mut w = [0u64; crate::params::MAX_SERVERS];
    for (i, s) in servers.iter().enumerate().filter(|(_, s)| eligible(s)) {
        w[i] = weight(s).unwrap_or(mean).max(1);
    }
    // Scaled down until weight x PPM fits in 64 bits (at most 8 servers of
    // 2^62 / 10^4 each: a few shifts).
    let mut total: u64 = w.iter().sum();
    while total >= 1 << 44 {
        w.iter_mut().for_each(|x| *x >>= 1);
        total = w.iter().sum();
    }
    let mut next = [0u64; crate::params::MAX_SERVERS];
    for (i, s) in servers.iter().enumerate() {
        if !eligible(s) {
            continue;
        }
        let target = (w[i] * PPM / total.max(1)).max(MIN_SHARE_PPM);
        let old = s.stats.share_ppm.load(Ordering::Relaxed);
        next[i] = (old + target) / 2;
    }
    let sum: u64 = next.iter().sum();
    for (i, s) in servers.iter().enumerate() {
        let v = next[i] * PPM / sum.max(1);
        s.stats.share_ppm.store(v, Ordering::Relaxed);
        s.stats.share_permille.store(v / 1000, Ordering::Relaxed);
    }
}

/// The weights' scale, 2^62: a 1 us server weighs 4.6 x 10^12, a 10 ms
/// one 46116, anything past about 2 s the minimum, 1.
const WEIGHT_SCALE: u64 = 1 << 62;

/// Why a granted region is refused.
pub(crate) enum RegionError {
    /// `addr + size` does not fit in 64 bits.
    Wraps,
    /// Not even one page.
    TooSmall,
}

/// A server's region as granted, bounds-checked: every slot's address is
/// computed without overflow and lies inside `[addr, addr + size)`. A slot
/// is a page, or with erasure coding a chunk of one (`unit` bytes, ec.rs).
#[derive(Clone, Copy)]
pub(crate) struct Region {
    pub(crate) rkey: u32,
    addr: u64,
    end: u64,
    slots: u32,
    unit: u32,
}

impl Region {
    /// Checks the region `(addr, size)` announced by a server and keeps at
    /// most `want` bytes of it (what we asked for), in slots of `unit`
    /// bytes (a power of two, at most a page): `addr + size` must not
    /// overflow, and the last slot must end inside the region.
    pub(crate) fn new(
        rkey: u32,
        addr: u64,
        size: u64,
        want: u64,
        unit: u32,
    ) -> core::result::Result<Region, RegionError> {
        let end = addr.checked_add(size).ok_or(RegionError::Wraps)?;
        let page = unit as u64;
        if page == 0 || page > PAGE_SIZE as u64 {
            return Err(RegionError::TooSmall);
        }
        let slots = (size.min(want) / page).min(u32::MAX as u64) as u32;
        if slots == 0 {
            return Err(RegionError::TooSmall);
        }
        // The end of the last slot; cannot fail given the lines above, but
        // the check is what guarantees `slot_addr` below.
        match addr.checked_add(slots as u64 * page) {
            Some(last_end) if last_end <= end => Ok(Region {
                rkey,
                addr,
                end,
                slots,
                unit,
            }),
            _ => Err(RegionError::Wraps),
        }
    }

    pub(crate) fn slots(&self) -> u32 {
        self.slots
    }

    /// Bytes of the region we use.
    pub(crate) fn bytes(&self) -> u64 {
        self.slots as u64 * self.unit as u64
    }

    /// The remote address of `slot`, None if it is not a slot of ours.
    pub(crate) fn slot_addr(&self, slot: u32) -> Option<u64> {
        if slot >= self.slots {
            return None;
        }
        let a = self.addr.checked_add(slot as u64 * self.unit as u64)?;
        let end = a.checked_add(self.unit as u64)?;
        (end <= self.end).then(|| a)
    }
}

/// Generations are kept in 25 bits of a placement entry: 33 million
/// retirements of one server before one wraps.
pub(crate) const GEN_MASK: u32 = (1 << 25) - 1;

/// A server's health (see server.rs), kept under the same lock as its
/// slots and their generation, so a state change and a generation change
/// are seen together.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    Up,
    /// Since these jiffies.
    Reconnecting(u64),
    Lost,
}

struct Inner {
    free: SlotMap<VWords>,
    gen: u32,
    health: Health,
    /// Between `begin_retire` and `reset`: the stores in flight are being
    /// waited for; nothing may take a slot or bring the server up.
    retiring: bool,
}

/// The free slots of a server's region, their generation, and the
/// server's health. Taken and given back in any context (invalidate may
/// not sleep): a spinlock, held for a few bit operations (a whole-map
/// reset when a server's pages are retired: 32 KiB per GiB of region).
pub(crate) struct Slots(Box<SpinLock<Inner>>);

impl Slots {
    /// All `n` slots free, generation 0, up; slot 0 is handed out first.
    /// The map takes 32.5 KiB per GiB of region (slotmap.rs).
    pub(crate) fn new(n: u32) -> Result<Slots> {
        let (bits, summary) = words_for(n);
        let free =
            SlotMap::new(VWords::new(bits)?, VWords::new(summary)?, n).ok_or(code::EINVAL)?;
        let f = Inner {
            free,
            gen: 0,
            health: Health::Up,
            retiring: false,
        };
        Ok(Slots(SpinLock::new(f)?))
    }

    /// Bytes of the free-slot map of `n` slots.
    pub(crate) fn map_bytes(n: u32) -> u64 {
        let (bits, summary) = words_for(n);
        (bits + summary) as u64 * 8
    }

    /// A free slot and its generation, only while the server is up.
    /// `free` (the server's counter) is set to how many are left, under
    /// the lock, so racing updates cannot leave it stale; likewise below.
    pub(crate) fn take(&self, free: &AtomicU64) -> Option<(u32, u32)> {
        self.0.with(|f| {
            if f.health != Health::Up || f.retiring {
                return None;
            }
            let s = f.free.take().map(|s| (s, f.gen));
            free.store(f.free.free() as u64, Ordering::Relaxed);
            s
        })
    }

    /// Gives back `slot` of generation `gen`, and counts its page out of
    /// `pages` (the server's gauge) if given, in the same step; false if
    /// the generation has moved on (every slot was freed then, and the
    /// pages counted lost), or if the slot is already free (a bug, logged:
    /// the map refuses to hand a slot out twice). Never allocates.
    pub(crate) fn put(
        &self,
        slot: u32,
        gen: u32,
        free: &AtomicU64,
        pages: Option<&AtomicU64>,
    ) -> bool {
        let (ok, double) = self.0.with(|f| {
            if f.gen != gen {
                return (false, false);
            }
            let ok = f.free.put(slot);
            free.store(f.free.free() as u64, Ordering::Relaxed);
            if let (true, Some(p)) = (ok, pages) {
                p.fetch_sub(1, Ordering::Relaxed);
            }
            (ok, !ok)
        });
        if double {
            pr_err!(
                "slot {} given back twice or not ours: this is a bug\n",
                slot
            );
        }
        ok
    }

    pub(crate) fn gen(&self) -> u32 {
        self.0.with(|f| f.gen)
    }

    /// Counts a page of generation `gen` into `pages` (the server's
    /// gauge), or out of it if `!add`; false, counting nothing, if that
    /// generation was retired (its pages were counted lost then). Under
    /// the lock that [`Slots::reset`] takes the count under, so the two
    /// cannot interleave and leave the gauge off.
    pub(crate) fn count(&self, gen: u32, pages: &AtomicU64, add: bool) -> bool {
        self.0.with(|f| {
            if f.gen != gen {
                return false;
            }
            match add {
                true => pages.fetch_add(1, Ordering::Relaxed),
                false => pages.fetch_sub(1, Ordering::Relaxed),
            };
            true
        })
    }

    pub(crate) fn health(&self) -> Health {
        self.0.with(|f| f.health)
    }

    /// The generation and health, read together.
    pub(crate) fn state(&self) -> (u32, Health) {
        self.0.with(|f| (f.gen, f.health))
    }

    /// Up -> Reconnecting since `now`; true if this call changed it.
    pub(crate) fn trouble(&self, now: u64) -> bool {
        self.0.with(|f| {
            let up = f.health == Health::Up;
            if up {
                f.health = Health::Reconnecting(now);
            }
            up
        })
    }

    /// Back up; returns the health it had, or None (and changes nothing)
    /// while a retirement is under way.
    pub(crate) fn up(&self) -> Option<Health> {
        self.0.with(|f| {
            if f.retiring {
                return None;
            }
            Some(core::mem::replace(&mut f.health, Health::Up))
        })
    }

    /// Starts retiring generation `from`: marks the server lost, so no
    /// slot is taken any more. True if the caller must now wait for the
    /// stores in flight and then call [`Slots::reset`]; false if `from`
    /// is already retired, or being retired by someone else.
    pub(crate) fn begin_retire(&self, from: u32) -> bool {
        self.0.with(|f| {
            if f.gen != from || f.health == Health::Lost || f.retiring {
                return false;
            }
            f.health = Health::Lost;
            f.retiring = true;
            true
        })
    }

    /// Refits the free slots of a server whose pages are already lost
    /// (and retired) to a new region of `n` slots (at most as many as at
    /// creation), in a new generation. Nothing while a retirement is
    /// under way (it refits when it ends).
    pub(crate) fn refit(&self, n: u32, free: &AtomicU64) {
        self.0.with(|f| {
            if f.health == Health::Lost && !f.retiring {
                f.gen = (f.gen + 1) & GEN_MASK;
                f.free.reset(n);
            }
            free.store(f.free.free() as u64, Ordering::Relaxed);
        })
    }

    /// Ends the retirement of `from` with the first `n` slots free (at
    /// most as many as at creation) in a new generation: every page of
    /// older ones is lost. Returns how many: `pages`, which it zeroes.
    pub(crate) fn reset(&self, from: u32, n: u32, free: &AtomicU64, pages: &AtomicU64) -> u64 {
        self.0.with(|f| {
            let mut lost = 0;
            if f.gen == from && f.retiring {
                f.gen = (f.gen + 1) & GEN_MASK;
                f.free.reset(n);
                f.retiring = false;
                lost = pages.swap(0, Ordering::Relaxed);
            }
            free.store(f.free.free() as u64, Ordering::Relaxed);
            lost
        })
    }
}

/// Where a held page is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    pub(crate) server: usize,
    pub(crate) slot: u32,
    /// The server's slot generation when the page was stored.
    pub(crate) gen: u32,
}

impl Place {
    // An xarray value holds 63 bits: the MOVING and REFERENCED flags in
    // 62 and 61, gen in 36..61, server in 32..36 (MAX_SERVERS is 8), slot
    // in 0..32.
    fn encode(self) -> u64 {
        ((self.gen & GEN_MASK) as u64) << 36 | ((self.server as u64) & 0xf) << 32 | self.slot as u64
    }

    fn decode(v: u64) -> Place {
        Place {
            server: ((v >> 32) & 0xf) as usize,
            slot: v as u32,
            gen: (v >> 36) as u32 & GEN_MASK,
        }
    }

    /// The place as one integer, to keep in an atomic.
    pub(crate) fn pack(self) -> u64 {
        self.encode()
    }

    pub(crate) fn unpack(v: u64) -> Place {
        Place::decode(v & PLACE)
    }
}

/// Set by a load (tiered policy): the page was read since it was stored,
/// or since the demotion scan last passed it.
const REFERENCED: u64 = 1 << 61;
/// Set while the page is being copied to another server (tier.rs); a
/// fresh entry (the key invalidated and stored again) lacks it, so a move
/// never completes over a newer page.
const MOVING: u64 = 1 << 62;
const PLACE: u64 = REFERENCED - 1;

// The server index has 4 bits in an entry.
const _: () = assert!(crate::params::MAX_SERVERS <= 16);

/// Where each held page is: swap key -> [`Place`].
pub(crate) struct Placement(ValueMap);

impl Placement {
    pub(crate) fn new() -> Result<Placement> {
        Ok(Placement(ValueMap::new()?))
    }

    /// Records a new page at `key`; `referenced` marks it hot already.
    pub(crate) fn insert(&self, key: u64, p: Place, referenced: bool) -> Result {
        let flag = if referenced { REFERENCED } else { 0 };
        self.0.insert(key, p.encode() | flag, GFP_SWAPOUT)
    }

    pub(crate) fn get(&self, key: u64) -> Option<Place> {
        self.0.get(key).map(|v| Place::decode(v & PLACE))
    }

    /// The page at `key`, and whether it is being moved.
    pub(crate) fn get_moving(&self, key: u64) -> Option<(Place, bool)> {
        self.0
            .get(key)
            .map(|v| (Place::decode(v & PLACE), v & MOVING != 0))
    }

    pub(crate) fn remove(&self, key: u64) -> Option<Place> {
        self.0.remove(key).map(|v| Place::decode(v & PLACE))
    }

    /// Removes the page at `key` only if it is still at `p` (it was not
    /// moved meanwhile; a move under way then fails and drops its copy);
    /// true if removed.
    pub(crate) fn remove_if(&self, key: u64, p: Place) -> bool {
        self.0.remove_if(key, |v| v & PLACE == p.encode())
    }

    /// Marks the page at `key` referenced; whether it already was. The
    /// entry is written only when the flag changes.
    pub(crate) fn touch(&self, key: u64) -> bool {
        self.0
            .update(key, |v| (v & REFERENCED == 0).then(|| v | REFERENCED))
            .map_or(false, |v| v & REFERENCED != 0)
    }

    /// The demotion scan's second chance: clears the referenced flag of
    /// the page at `key` if it is still at `p` and not moving. Some(true)
    /// if it was referenced, Some(false) if it is a candidate to demote,
    /// None if it is not at `p` any more.
    pub(crate) fn second_chance(&self, key: u64, p: Place) -> Option<bool> {
        let old = self.0.update(key, |v| {
            (v & (PLACE | MOVING) == p.encode() && v & REFERENCED != 0).then(|| v & !REFERENCED)
        })?;
        (old & (PLACE | MOVING) == p.encode()).then(|| old & REFERENCED != 0)
    }

    /// The first page at or after key `from`: its key and place.
    pub(crate) fn next_from(&self, from: u64) -> Option<(u64, Place)> {
        self.0
            .next_from(from)
            .map(|(k, v)| (k, Place::decode(v & PLACE)))
    }

    /// Starts moving the page at `key` from `p`: false if it is not there
    /// (invalidated, or moved) or already moving.
    pub(crate) fn begin_move(&self, key: u64, p: Place) -> bool {
        let old = self.0.update(key, |v| {
            (v & (PLACE | MOVING) == p.encode()).then(|| v | MOVING)
        });
        old.map_or(false, |v| v & (PLACE | MOVING) == p.encode())
    }

    /// Puts back a finished move of `key` from `to` to `from` (the copy's
    /// server was retired before the move was done with it); false if the
    /// key is no longer at `to`.
    pub(crate) fn revert_move(&self, key: u64, to: Place, from: Place) -> bool {
        self.replace(key, to, from)
    }

    /// Points `key` at `new` if it is at `old` and not moving (keeping
    /// its referenced flag); false if it is not.
    pub(crate) fn replace(&self, key: u64, old: Place, new: Place) -> bool {
        let was = self.0.update(key, |v| {
            (v & (PLACE | MOVING) == old.encode()).then(|| new.encode() | (v & REFERENCED))
        });
        was.map_or(false, |v| v & (PLACE | MOVING) == old.encode())
    }

    /// Ends a move of `key` from `from`: with `to`, points the key at its
    /// copy (keeping the referenced flag, or setting it when `referenced`);
    /// with None, leaves it at `from`. False if the key no longer is the
    /// page whose move began (it was invalidated, maybe stored again):
    /// then nothing changed and the copy must be freed.
    pub(crate) fn end_move(
        &self,
        key: u64,
        from: Place,
        to: Option<Place>,
        referenced: bool,
    ) -> bool {
        let want = from.encode() | MOVING;
        let old = self.0.update(key, |v| {
            (v & (PLACE | MOVING) == want).then(|| match to {
                Some(t) => t.encode() | (v & REFERENCED) | if referenced { REFERENCED } else { 0 },
                None => v & !MOVING,
            })
        });
        old.map_or(false, |v| v & (PLACE | MOVING) == want)
    }
}
