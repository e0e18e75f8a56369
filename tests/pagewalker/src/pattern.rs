//! The verifiable page contents: every 8-byte word of a page is a hash of
//! (seed, page index, generation, word index), so any misplaced, stale or
//! corrupted page is detected, and the mismatch says which it was.

/// Bytes in a page.
pub const PAGE: usize = 4096;
/// 64-bit words in a page.
pub const WORDS: usize = PAGE / 8;

/// SplitMix64 finaliser: a cheap, well-mixed 64-bit hash.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The value of word `word` of page `page` at generation `gen`.
/// Seeds with this bit set make compressible pages: seven words in eight are
/// the page's base value (still unique to page and generation), so that a
/// compressing backend (zswap) sees data that compresses severalfold; every
/// eighth word stays random-looking.
pub const COMPRESSIBLE: u64 = 1 << 63;

pub fn word(seed: u64, page: u64, gen: u32, word: usize) -> u64 {
    value(seed, page_base(page, gen), word)
}

fn value(seed: u64, base: u64, w: usize) -> u64 {
    if seed & COMPRESSIBLE != 0 && !w.is_multiple_of(8) {
        base
    } else {
        mix(seed ^ (base ^ w as u64))
    }
}

fn page_base(page: u64, gen: u32) -> u64 {
    mix(page.wrapping_mul(0x1_0000_0001) ^ ((gen as u64) << 40))
}

/// Fills `buf` (one page) with generation `gen` of page `page`.
pub fn fill(buf: &mut [u64], seed: u64, page: u64, gen: u32) {
    let base = page_base(page, gen);
    for (w, v) in buf.iter_mut().enumerate() {
        *v = value(seed, base, w);
    }
}

/// The first word of `buf` that differs from generation `gen` of `page`.
pub fn check(buf: &[u64], seed: u64, page: u64, gen: u32) -> Option<Mismatch> {
    let base = page_base(page, gen);
    buf.iter().enumerate().find_map(|(w, &got)| {
        let want = value(seed, base, w);
        (got != want).then_some(Mismatch { word: w, want, got })
    })
}

/// A word that does not hold what was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    pub word: usize,
    pub want: u64,
    pub got: u64,
}

/// What a mismatching page holds instead, when it can be told: an older or
/// newer generation of the same page (stale data), another page, or zeros.
pub fn diagnose(buf: &[u64], seed: u64, page: u64, gen: u32, pages: u64) -> String {
    if buf.iter().all(|&w| w == 0) {
        return "zeros".into();
    }
    for g in gen.saturating_sub(8)..gen + 8 {
        if g != gen && check(buf, seed, page, g).is_none() {
            return format!("generation {g} of the same page (stale)");
        }
    }
    // Another page's data: find it from the first word.
    for p in 0..pages.min(1 << 20) {
        if p != page && buf[0] == word(seed, p, gen, 0) {
            return format!("page {p}'s data (misplaced)");
        }
    }
    "unrecognised data (corrupt)".into()
}

/// xorshift64*: the random page order of the random passes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(mix(seed) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in 0..n.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}

/// Percentile `p` (0..=100) of sorted `v`, by nearest rank.
pub fn percentile(sorted: &[u64], p: u32) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p as usize * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_then_check_passes() {
        let mut b = vec![0u64; WORDS];
        fill(&mut b, 7, 12, 3);
        assert_eq!(check(&b, 7, 12, 3), None);
        assert_eq!(b[5], word(7, 12, 3, 5));
    }

    #[test]
    fn every_input_changes_the_page() {
        let mut a = vec![0u64; WORDS];
        fill(&mut a, 7, 12, 3);
        assert!(check(&a, 8, 12, 3).is_some(), "seed");
        assert!(check(&a, 7, 13, 3).is_some(), "page");
        assert!(check(&a, 7, 12, 4).is_some(), "generation");
    }

    #[test]
    fn a_single_flipped_bit_is_found() {
        let mut b = vec![0u64; WORDS];
        fill(&mut b, 1, 2, 0);
        b[511] ^= 1 << 17;
        let m = check(&b, 1, 2, 0).unwrap();
        assert_eq!(m.word, 511);
        assert_eq!(m.got ^ m.want, 1 << 17);
    }

    #[test]
    fn diagnose_names_the_failure() {
        let mut b = vec![0u64; WORDS];
        assert_eq!(diagnose(&b, 1, 5, 2, 100), "zeros");
        fill(&mut b, 1, 5, 1);
        assert!(diagnose(&b, 1, 5, 2, 100).contains("stale"));
        fill(&mut b, 1, 9, 2);
        assert!(diagnose(&b, 1, 5, 2, 100).contains("page 9"));
        b[0] = 42;
        assert!(diagnose(&b, 1, 5, 2, 100).contains("corrupt"));
    }

    #[test]
    fn compressible_pages_verify_and_repeat() {
        let seed = 7 | COMPRESSIBLE;
        let mut b = vec![0u64; WORDS];
        fill(&mut b, seed, 12, 3);
        assert_eq!(check(&b, seed, 12, 3), None);
        assert_eq!(b[1], b[3]);
        assert_ne!(b[0], b[8]);
        assert!(check(&b, seed, 12, 4).is_some(), "generation still matters");
        assert!(check(&b, seed, 13, 3).is_some(), "page still matters");
        b[1] ^= 1;
        assert_eq!(check(&b, seed, 12, 3).unwrap().word, 1);
    }

    #[test]
    fn rng_covers_its_range() {
        let mut r = Rng::new(3);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            seen[r.below(10) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 99), 99);
        assert_eq!(percentile(&v, 100), 100);
        assert_eq!(percentile(&[], 50), 0);
        assert_eq!(percentile(&[4], 99), 4);
    }
}
