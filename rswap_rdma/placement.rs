// SPDX-License-Identifier: GPL-2.0
//! Placement: which server a page goes to, which slot of its region, and
//! where that slot is.
//!
//! - [`pick`]: per page, a usable server is drawn at random with
//!   probability proportional to its free slots, so pages spread over all
//!   servers in proportion to their free capacity and a fuller server is
//!   used less. It keeps no chunk state and balances from the first page;
//!   the cost is one random draw per store. When every server is full the
//!   store is refused and the swap device takes the page.
//! - [`Region`]: a server's region, checked once when it is granted; slot
//!   `i` is the page at `addr + i * PAGE_SIZE`.
//! - [`Slots`]: the free slots of a region.
//! - [`Placement`]: swap key -> (server, slot) of every page held.

use crate::ffi::{SpinLock, ValueMap, GFP_SWAPOUT, PAGE_SIZE};
use crate::rdma;
use crate::server::Server;
use kernel::prelude::*;

/// A usable server with room, drawn in proportion to free capacity.
pub(crate) fn pick(servers: &[Server]) -> Option<(usize, &Server)> {
    let total: u64 = servers
        .iter()
        .filter(|s| s.usable())
        .map(|s| s.free_pages())
        .sum();
    if total == 0 {
        return None;
    }
    let mut r = rdma::random_below(total);
    for (i, s) in servers.iter().enumerate().filter(|(_, s)| s.usable()) {
        let f = s.free_pages();
        if r < f {
            return Some((i, s));
        }
        r -= f;
    }
    // The counts moved under us: take any server with room.
    servers
        .iter()
        .enumerate()
        .find(|(_, s)| s.usable() && s.free_pages() > 0)
}

/// Why a granted region is refused.
pub(crate) enum RegionError {
    /// `addr + size` does not fit in 64 bits.
    Wraps,
    /// Not even one page.
    TooSmall,
}

/// A server's region as granted, bounds-checked: every slot's address is
/// computed without overflow and lies inside `[addr, addr + size)`.
#[derive(Clone, Copy)]
pub(crate) struct Region {
    pub(crate) rkey: u32,
    addr: u64,
    end: u64,
    slots: u32,
}

impl Region {
    /// Checks the region `(addr, size)` announced by a server and keeps at
    /// most `want` bytes of it (what we asked for): `addr + size` must not
    /// overflow, and the last slot must end inside the region.
    pub(crate) fn new(
        rkey: u32,
        addr: u64,
        size: u64,
        want: u64,
    ) -> core::result::Result<Region, RegionError> {
        let end = addr.checked_add(size).ok_or(RegionError::Wraps)?;
        let page = PAGE_SIZE as u64;
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
            }),
            _ => Err(RegionError::Wraps),
        }
    }

    pub(crate) fn slots(&self) -> u32 {
        self.slots
    }

    /// Bytes of the region we use.
    pub(crate) fn bytes(&self) -> u64 {
        self.slots as u64 * PAGE_SIZE as u64
    }

    /// The remote address of `slot`, None if it is not a slot of ours.
    pub(crate) fn slot_addr(&self, slot: u32) -> Option<u64> {
        if slot >= self.slots {
            return None;
        }
        let a = self.addr.checked_add(slot as u64 * PAGE_SIZE as u64)?;
        let end = a.checked_add(PAGE_SIZE as u64)?;
        (end <= self.end).then(|| a)
    }
}

/// The free slots of a region. Taken and given back in any context
/// (invalidate may not sleep): a spinlock, never held across anything but
/// a vector push or pop.
pub(crate) struct Slots(Box<SpinLock<Vec<u32>>>);

impl Slots {
    /// All `n` slots free; slot 0 is handed out first.
    pub(crate) fn new(n: u32) -> Result<Slots> {
        let mut free = Vec::new();
        free.try_reserve_exact(n as usize)?;
        for s in (0..n).rev() {
            free.try_push(s)?;
        }
        Ok(Slots(SpinLock::new(free)?))
    }

    pub(crate) fn take(&self) -> Option<u32> {
        self.0.with(|v| v.pop())
    }

    /// Gives `slot` back; false if it could not be (never: the vector was
    /// reserved for every slot, so this does not allocate).
    pub(crate) fn put(&self, slot: u32) -> bool {
        self.0.with(|v| v.try_push(slot)).is_ok()
    }
}

/// Where each held page is: swap key -> (server index, slot).
pub(crate) struct Placement(ValueMap);

impl Placement {
    pub(crate) fn new() -> Result<Placement> {
        Ok(Placement(ValueMap::new()?))
    }

    pub(crate) fn insert(&self, key: u64, server: usize, slot: u32) -> Result {
        self.0
            .insert(key, ((server as u64) << 32) | slot as u64, GFP_SWAPOUT)
    }

    pub(crate) fn get(&self, key: u64) -> Option<(usize, u32)> {
        self.0.get(key).map(|v| ((v >> 32) as usize, v as u32))
    }

    pub(crate) fn remove(&self, key: u64) -> Option<(usize, u32)> {
        self.0.remove(key).map(|v| ((v >> 32) as usize, v as u32))
    }
}
