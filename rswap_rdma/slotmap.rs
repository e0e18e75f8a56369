// SPDX-License-Identifier: GPL-2.0
//! The free slots of one server's region: a bitmap with a summary.
//!
//! One bit per slot (set: free), and one summary bit per bitmap word (set:
//! that word has a free slot). Taking a slot scans the summary from where
//! the last one was found, so a take reads a few words, and at worst one
//! pass over the summary (1/4096 of a bit per slot). Giving one back is two
//! bit sets and refuses a slot that is already free or out of range (a
//! double free would hand one slot to two pages).
//!
//! Memory: 1 bit per slot plus 1/64 of that, 32.5 KiB per GiB served
//! (262144 slots of 4 KiB), so 32.5 MiB for 1 TiB. The vector of free slot
//! numbers it replaces took 4 bytes per slot (1 MiB per GiB) in one
//! kmalloc'd block, which krealloc refused past 4 GiB.
//!
//! Slot numbers are u32: 2^32 slots of 4 KiB is 16 TiB per server.
//!
//! Pure logic over storage the caller provides ([`Words`]): the kernel
//! module gives it vmalloc'd words, and the host crate `tests/kernel-logic`
//! runs the unit tests below on plain vectors.

/// Storage for the bitmap and the summary: a slice of words.
pub(crate) trait Words {
    fn words(&self) -> &[u64];
    fn words_mut(&mut self) -> &mut [u64];
}

/// Words needed for `capacity` slots: (bitmap, summary).
// `div_ceil` is newer than the kernel's Rust (1.63).
#[allow(clippy::manual_div_ceil)]
pub(crate) fn words_for(capacity: u32) -> (usize, usize) {
    let bits = (capacity as usize + 63) / 64;
    (bits, (bits + 63) / 64)
}

pub(crate) struct SlotMap<W: Words> {
    bits: W,
    summary: W,
    /// Slots the storage can describe.
    capacity: u32,
    /// Slots in use now: `0..slots` (at most `capacity`).
    slots: u32,
    free: u32,
    /// The summary word the last slot was found in.
    cursor: usize,
}

fn set(w: &mut [u64], i: usize) {
    w[i / 64] |= 1 << (i % 64);
}

fn clear(w: &mut [u64], i: usize) {
    w[i / 64] &= !(1 << (i % 64));
}

impl<W: Words> SlotMap<W> {
    /// A map of `capacity` slots, all free, on storage of at least
    /// [`words_for`]`(capacity)` words (any contents). None if the storage
    /// is too small.
    pub(crate) fn new(bits: W, summary: W, capacity: u32) -> Option<SlotMap<W>> {
        let (nb, ns) = words_for(capacity);
        if bits.words().len() < nb || summary.words().len() < ns {
            return None;
        }
        let mut m = SlotMap {
            bits,
            summary,
            capacity,
            slots: 0,
            free: 0,
            cursor: 0,
        };
        m.reset(capacity);
        Some(m)
    }

    /// Every slot of `0..n` free (at most the capacity), the rest not
    /// slots any more.
    pub(crate) fn reset(&mut self, n: u32) {
        let n = n.min(self.capacity);
        let (full, part) = ((n / 64) as usize, n % 64);
        let bits = self.bits.words_mut();
        for (i, w) in bits.iter_mut().enumerate() {
            *w = if i < full {
                !0
            } else if i == full && part > 0 {
                (1 << part) - 1
            } else {
                0
            };
        }
        let used = full + (part > 0) as usize;
        let summary = self.summary.words_mut();
        for w in summary.iter_mut() {
            *w = 0;
        }
        for i in 0..used {
            set(summary, i);
        }
        self.slots = n;
        self.free = n;
        self.cursor = 0;
    }

    /// Free slots.
    pub(crate) fn free(&self) -> u32 {
        self.free
    }

    /// A free slot, now taken; None if there is none.
    pub(crate) fn take(&mut self) -> Option<u32> {
        if self.free == 0 {
            return None;
        }
        let summary = self.summary.words_mut();
        let n = summary.len();
        for k in 0..n {
            let si = (self.cursor + k) % n;
            let s = summary[si];
            if s == 0 {
                continue;
            }
            let wi = si * 64 + s.trailing_zeros() as usize;
            let bits = self.bits.words_mut();
            let bit = bits[wi].trailing_zeros() as usize;
            let slot = wi * 64 + bit;
            clear(bits, slot);
            if bits[wi] == 0 {
                clear(summary, wi);
            }
            self.cursor = si;
            self.free -= 1;
            return Some(slot as u32);
        }
        // The count said there was one: a bug, but never a wrong slot.
        None
    }

    /// Gives `slot` back; false (and nothing changes) if it is not a slot
    /// or already free.
    pub(crate) fn put(&mut self, slot: u32) -> bool {
        if slot >= self.slots {
            return false;
        }
        let s = slot as usize;
        let bits = self.bits.words_mut();
        if bits[s / 64] & (1 << (s % 64)) != 0 {
            return false;
        }
        set(bits, s);
        set(self.summary.words_mut(), s / 64);
        self.free += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Words for Vec<u64> {
        fn words(&self) -> &[u64] {
            self
        }
        fn words_mut(&mut self) -> &mut [u64] {
            self
        }
    }

    fn map(capacity: u32) -> SlotMap<Vec<u64>> {
        let (b, s) = words_for(capacity);
        // Garbage in the storage: `new` must not trust it.
        SlotMap::new(vec![0xdead_beef; b], vec![0x5555; s], capacity).unwrap()
    }

    #[test]
    fn takes_every_slot_once_then_none() {
        for cap in [1u32, 63, 64, 65, 4095, 4096, 4097, 10_000] {
            let mut m = map(cap);
            let mut seen = vec![false; cap as usize];
            for _ in 0..cap {
                let s = m.take().expect("a free slot");
                assert!(s < cap);
                assert!(!seen[s as usize], "slot {} twice", s);
                seen[s as usize] = true;
            }
            assert_eq!(m.take(), None);
            assert_eq!(m.free(), 0);
        }
    }

    #[test]
    fn slot_zero_first() {
        let mut m = map(100);
        assert_eq!(m.take(), Some(0));
        assert_eq!(m.take(), Some(1));
    }

    #[test]
    fn put_refuses_double_free_and_strangers() {
        let mut m = map(130);
        let a = m.take().unwrap();
        assert!(m.put(a));
        assert!(!m.put(a), "double free");
        assert!(!m.put(130), "out of range");
        assert!(!m.put(u32::MAX));
        assert_eq!(m.free(), 130);
    }

    #[test]
    fn freed_slots_come_back_after_wrapping() {
        let mut m = map(64 * 64 * 3);
        let all: Vec<u32> = (0..64 * 64 * 3).map(|_| m.take().unwrap()).collect();
        // Free a few scattered ones, behind and ahead of the cursor.
        for &s in &[5u32, 4096, 12000, 64 * 64 * 3 - 1] {
            assert!(m.put(all[s as usize]));
        }
        let mut got: Vec<u32> = (0..4).map(|_| m.take().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, vec![5, 4096, 12000, 64 * 64 * 3 - 1]);
        assert_eq!(m.take(), None);
    }

    #[test]
    fn reset_shrinks_and_frees_all() {
        let mut m = map(1000);
        for _ in 0..700 {
            m.take();
        }
        m.reset(300);
        assert_eq!(m.free(), 300);
        assert!(!m.put(300), "beyond the refitted region");
        let n = (0..1000).filter_map(|_| m.take()).count();
        assert_eq!(n, 300);
        m.reset(5000);
        assert_eq!(m.free(), 1000, "at most the capacity");
    }

    #[test]
    fn storage_too_small_is_refused() {
        assert!(SlotMap::new(vec![0; 1], vec![0; 1], 65).is_none());
        assert!(SlotMap::new(vec![0; 2], vec![0; 1], 65).is_some());
    }

    /// Beyond the old 4 GiB limit: 1 TiB of 4 KiB slots (2^28), the
    /// largest region the module accepts, in 32.5 MiB of map.
    #[test]
    fn one_tib_of_slots() {
        let cap = 1u32 << 28;
        let (b, s) = words_for(cap);
        assert_eq!((b + s) * 8, (32 << 20) + (512 << 10));
        let mut m = map(cap);
        assert_eq!(m.free(), cap);
        // Take the first 5 GiB worth and check the last one is past 4 GiB.
        let five_gib = 5 * (1u32 << 18);
        let mut last = 0;
        for _ in 0..five_gib {
            last = m.take().unwrap();
        }
        assert_eq!(last, five_gib - 1);
        assert!(last as u64 * 4096 > 4 << 30);
        // Free a slot past 4 GiB and one at the very end; both come back.
        assert!(m.put(five_gib - 10));
        assert_eq!(m.take(), Some(five_gib - 10));
        assert_eq!(m.free(), cap - five_gib);
    }

    /// The summary stays exact under a random mix of takes and puts.
    #[test]
    fn random_mix_matches_a_model() {
        let cap = 5000u32;
        let mut m = map(cap);
        let mut held = Vec::new();
        let mut x = 99u64;
        for _ in 0..200_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if !(x >> 33).is_multiple_of(3) {
                if let Some(s) = m.take() {
                    held.push(s);
                } else {
                    assert_eq!(held.len(), cap as usize);
                }
            } else if !held.is_empty() {
                let i = (x >> 20) as usize % held.len();
                assert!(m.put(held.swap_remove(i)));
            }
            assert_eq!(m.free() as usize, cap as usize - held.len());
        }
        let mut sorted = held.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), held.len(), "a slot was handed out twice");
    }
}
