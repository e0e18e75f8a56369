//! The memory pool: one contiguous buffer split into per-node regions,
//! first fit, with freed regions merged back.

/// A region of the pool: byte offset and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
}

#[derive(Debug)]
pub struct Pool {
    size: u64,
    align: u64,
    /// Free extents, sorted by offset, never adjacent.
    free: Vec<Extent>,
}

impl Pool {
    pub fn new(size: u64, align: u64) -> Pool {
        let size = size / align * align;
        Pool {
            size,
            align,
            free: vec![Extent {
                offset: 0,
                len: size,
            }],
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|e| e.len).sum()
    }

    pub fn largest_free(&self) -> u64 {
        self.free.iter().map(|e| e.len).max().unwrap_or(0)
    }

    /// Allocates `want` bytes (rounded up to the alignment), or the largest
    /// free extent if less is left. None when the pool is full.
    pub fn alloc(&mut self, want: u64) -> Option<Extent> {
        let want = want.div_ceil(self.align).max(1) * self.align;
        let i = match self.free.iter().position(|e| e.len >= want) {
            Some(i) => i,
            None => (0..self.free.len()).max_by_key(|&i| self.free[i].len)?,
        };
        let e = &mut self.free[i];
        let got = Extent {
            offset: e.offset,
            len: want.min(e.len),
        };
        e.offset += got.len;
        e.len -= got.len;
        if e.len == 0 {
            self.free.remove(i);
        }
        Some(got)
    }

    /// Returns an extent from `alloc`.
    pub fn release(&mut self, x: Extent) {
        let i = self.free.partition_point(|e| e.offset < x.offset);
        self.free.insert(i, x);
        // Merge with the next, then the previous neighbour.
        if i + 1 < self.free.len()
            && self.free[i].offset + self.free[i].len == self.free[i + 1].offset
        {
            self.free[i].len += self.free[i + 1].len;
            self.free.remove(i + 1);
        }
        if i > 0 && self.free[i - 1].offset + self.free[i - 1].len == self.free[i].offset {
            self.free[i - 1].len += self.free[i].len;
            self.free.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const M: u64 = 1 << 20;

    #[test]
    fn allocations_do_not_overlap_and_round_up() {
        let mut p = Pool::new(64 * M, M);
        let a = p.alloc(10 * M).unwrap();
        let b = p.alloc(M / 2).unwrap();
        assert_eq!(
            a,
            Extent {
                offset: 0,
                len: 10 * M
            }
        );
        assert_eq!(
            b,
            Extent {
                offset: 10 * M,
                len: M
            }
        );
        assert_eq!(p.free_bytes(), 53 * M);
    }

    #[test]
    fn a_full_pool_gives_what_is_left_then_nothing() {
        let mut p = Pool::new(8 * M, M);
        assert_eq!(p.alloc(6 * M).unwrap().len, 6 * M);
        assert_eq!(p.alloc(6 * M).unwrap().len, 2 * M);
        assert_eq!(p.alloc(M), None);
    }

    #[test]
    fn released_extents_merge_back() {
        let mut p = Pool::new(8 * M, M);
        let a = p.alloc(2 * M).unwrap();
        let b = p.alloc(2 * M).unwrap();
        let c = p.alloc(2 * M).unwrap();
        p.release(a);
        p.release(c);
        assert_eq!(p.largest_free(), 4 * M);
        p.release(b);
        assert_eq!(p.largest_free(), 8 * M);
        assert_eq!(p.free.len(), 1);
    }

    #[test]
    fn size_is_rounded_to_alignment() {
        let p = Pool::new(10 * M + 5, M);
        assert_eq!(p.size(), 10 * M);
    }
}
