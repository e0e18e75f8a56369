//! pagewalker: the rswap test workload.
//!
//! Maps `--mib` MiB of anonymous memory, writes a verifiable pattern into
//! every page, then reads it back sequentially and in random passes that
//! also rewrite pages (new generation), and verifies every byte at the end.
//! `--skew K` makes the random passes Zipf-like (see `pick`). `--stride S`
//! makes the two full read passes strided: pages 0, S, 2S, ..., then 1,
//! S+1, ..., and so on (every page is still read once per pass);
//! `--shuffle` makes them follow a random permutation instead.
//! Run it in a cgroup whose memory.max is a fraction of that, and the pages
//! travel through swap. Exits 1 on any mismatch, 2 on bad usage.
//!
//! Pages found not resident (mincore) before a read are timed: that read is
//! a major fault, and the summary gives their latency percentiles and the
//! swap-in throughput (faulted bytes over the time spent in those faults).
//!
//! `--lost-ok` reads pages through /proc/self/mem instead of touching
//! them, so a page the kernel cannot bring back (a dead memory node) is
//! counted as lost instead of killing us with SIGBUS, and every other page
//! is still verified. `--pause PATH` waits after the write phase until PATH
//! exists, so a test can change the world (kill a node) between writing and
//! reading. `--compressible` makes pages compress severalfold (for
//! benchmarks against zswap); by default pages look random. `--huge` aligns
//! the buffer to 2 MiB and asks for transparent huge pages
//! (MADV_HUGEPAGE), so whole THPs go out to swap. `--lock` locks the buffer
//! in memory (mlock) instead: with `--pause` it holds that much RAM out of
//! reach of reclaim, to leave the rest of the system short of memory.

mod pattern;

use pattern::{check, diagnose, fill, percentile, Rng, PAGE, WORDS};
use std::os::unix::fs::FileExt;
use std::process::exit;
use std::time::Instant;

struct Args {
    mib: u64,
    seed: u64,
    random_passes: u32,
    skew: u32,
    stride: u64,
    shuffle: bool,
    lost_ok: bool,
    compressible: bool,
    huge: bool,
    lock: bool,
    pause: Option<String>,
}

fn usage(msg: &str) -> ! {
    eprintln!("pagewalker: {msg}");
    eprintln!(
        "usage: pagewalker --mib N [--seed S] [--random-passes R] [--skew K] [--stride S] [--shuffle] [--lost-ok] [--compressible] [--huge] [--lock] [--pause PATH]"
    );
    exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        mib: 0,
        seed: 1,
        random_passes: 2,
        skew: 0,
        stride: 1,
        shuffle: false,
        lost_ok: false,
        compressible: false,
        huge: false,
        lock: false,
        pause: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--lost-ok" {
            a.lost_ok = true;
            continue;
        }
        if k == "--compressible" {
            a.compressible = true;
            continue;
        }
        if k == "--shuffle" {
            a.shuffle = true;
            continue;
        }
        if k == "--huge" {
            a.huge = true;
            continue;
        }
        if k == "--lock" {
            a.lock = true;
            continue;
        }
        let v = it
            .next()
            .unwrap_or_else(|| usage(&format!("{k} needs a value")));
        if k == "--pause" {
            a.pause = Some(v);
            continue;
        }
        let n: u64 = v
            .parse()
            .unwrap_or_else(|_| usage(&format!("{k}: not a number: {v}")));
        match k.as_str() {
            "--mib" => a.mib = n,
            "--seed" => a.seed = n,
            "--random-passes" => a.random_passes = n as u32,
            "--skew" => a.skew = n as u32,
            "--stride" => a.stride = n,
            _ => usage(&format!("unknown option {k}")),
        }
    }
    if a.mib == 0 {
        usage("--mib must be at least 1");
    }
    if a.stride == 0 {
        usage("--stride must be at least 1");
    }
    a
}

/// The mapped buffer, page by page.
struct Buffer {
    base: *mut u64,
    pages: u64,
}

/// The size of a transparent huge page on x86_64.
const HUGE: usize = 2 << 20;

impl Buffer {
    /// Maps `pages` pages; with `huge`, 2 MiB-aligned and MADV_HUGEPAGE.
    fn map(pages: u64, huge: bool) -> Buffer {
        let len = pages as usize * PAGE;
        // For alignment, map a huge page more and start at its boundary.
        let map_len = if huge { len + HUGE } else { len };
        // SAFETY: an anonymous private mapping; no file or address hints.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            eprintln!(
                "pagewalker: mmap of {len} bytes failed: {}",
                std::io::Error::last_os_error()
            );
            exit(3);
        }
        let mut base = p as usize;
        if huge {
            base = (base + HUGE - 1) & !(HUGE - 1);
            // SAFETY: [base, base + len) lies inside the mapping made above.
            if unsafe { libc::madvise(base as *mut libc::c_void, len, libc::MADV_HUGEPAGE) } != 0 {
                eprintln!(
                    "pagewalker: madvise(MADV_HUGEPAGE) failed: {} (is THP built in?)",
                    std::io::Error::last_os_error()
                );
                exit(3);
            }
        }
        Buffer {
            base: base as *mut u64,
            pages,
        }
    }

    fn page(&mut self, i: u64) -> &mut [u64] {
        assert!(i < self.pages);
        // SAFETY: page i lies inside the mapping, which lives as long as self.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(i as usize * WORDS), WORDS) }
    }

    /// Residency of pages first..first+out.len() (mincore).
    fn resident(&self, first: u64, out: &mut [u8]) {
        // SAFETY: the range lies inside the mapping; `out` has one byte per page.
        let r = unsafe {
            libc::mincore(
                self.base.add(first as usize * WORDS) as *mut libc::c_void,
                out.len() * PAGE,
                out.as_mut_ptr(),
            )
        };
        if r != 0 {
            out.fill(1);
        }
    }
}

#[derive(Default)]
struct Totals {
    verified: u64,
    mismatches: u64,
    rewrites: u64,
    lost: u64,
    fault_ns: Vec<u64>,
}

struct Walker {
    buf: Buffer,
    /// /proc/self/mem, for --lost-ok reads.
    mem: std::fs::File,
    gen: Vec<u32>,
    /// Pages the kernel could not bring back (--lost-ok only).
    lost: Vec<bool>,
    lost_ok: bool,
    seed: u64,
    t: Totals,
}

impl Walker {
    /// Reads page `i`, timing the read if `cold` (not resident), and
    /// verifies it against its current generation.
    fn verify(&mut self, i: u64, cold: bool) {
        if self.lost_ok {
            return self.verify_by_copy(i, cold);
        }
        let (seed, gen, pages) = (self.seed, self.gen[i as usize], self.buf.pages);
        let page = self.buf.page(i);
        if cold {
            let t0 = Instant::now();
            // SAFETY: reading the first word of a mapped page.
            let _ = unsafe { std::ptr::read_volatile(page.as_ptr()) };
            self.t.fault_ns.push(t0.elapsed().as_nanos() as u64);
        }
        verify_data(&mut self.t, page, seed, i, gen, pages);
    }

    /// Like `verify`, but reads the page through /proc/self/mem, which
    /// fails with EIO (instead of raising SIGBUS) for a page that cannot be
    /// brought back.
    fn verify_by_copy(&mut self, i: u64, cold: bool) {
        if self.lost[i as usize] {
            return;
        }
        let mut copy = vec![0u64; WORDS];
        let t0 = Instant::now();
        let addr = self.buf.page(i).as_ptr() as u64;
        let n = self.mem.read_at(bytes_of_mut(&mut copy), addr).unwrap_or(0);
        if cold {
            self.t.fault_ns.push(t0.elapsed().as_nanos() as u64);
        }
        if n != PAGE {
            self.lost[i as usize] = true;
            self.t.lost += 1;
            if self.t.lost <= 10 {
                eprintln!(
                    "LOST page {i}: the kernel could not read it back ({})",
                    std::io::Error::last_os_error()
                );
            }
            return;
        }
        let (seed, gen, pages) = (self.seed, self.gen[i as usize], self.buf.pages);
        verify_data(&mut self.t, &copy, seed, i, gen, pages);
    }

    fn rewrite(&mut self, i: u64) {
        if self.lost[i as usize] {
            return;
        }
        self.gen[i as usize] += 1;
        let (seed, gen) = (self.seed, self.gen[i as usize]);
        fill(self.buf.page(i), seed, i, gen);
        self.t.rewrites += 1;
    }

    fn sequential_verify(&mut self) {
        let mut res = [0u8; 64];
        let mut i = 0;
        while i < self.buf.pages {
            let n = (self.buf.pages - i).min(res.len() as u64) as usize;
            self.buf.resident(i, &mut res[..n]);
            for (k, r) in res[..n].iter().enumerate() {
                self.verify(i + k as u64, r & 1 == 0);
            }
            i += n as u64;
        }
    }

    /// A full pass in a random permutation (see `--shuffle`).
    fn shuffled_verify(&mut self, rng: &mut Rng) {
        let n = self.buf.pages;
        let mut order: Vec<u64> = (0..n).collect();
        for i in (1..n as usize).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for i in order {
            let mut r = [0u8; 1];
            self.buf.resident(i, &mut r);
            self.verify(i, r[0] & 1 == 0);
        }
    }

    /// A full pass in stride order (see `--stride`); 1 is sequential.
    fn strided_verify(&mut self, stride: u64) {
        if stride == 1 {
            return self.sequential_verify();
        }
        for start in 0..stride.min(self.buf.pages) {
            let mut i = start;
            while i < self.buf.pages {
                let mut r = [0u8; 1];
                self.buf.resident(i, &mut r);
                self.verify(i, r[0] & 1 == 0);
                i += stride;
            }
        }
    }

    fn random_pass(&mut self, rng: &mut Rng, skew: u32) {
        for _ in 0..self.buf.pages {
            let i = pick(rng, self.buf.pages, skew);
            let mut r = [0u8; 1];
            self.buf.resident(i, &mut r);
            self.verify(i, r[0] & 1 == 0);
            if rng.next() & 1 == 0 {
                self.rewrite(i);
            }
        }
    }
}

/// A page index: uniform, or with `skew` K > 0 the page at
/// `pages * u^K` for uniform u, so low pages are hot: with K = 3 the
/// first quarter of the pages gets 63% of the accesses, the first
/// 1/64 gets a quarter (a Zipf-like popularity curve).
fn pick(rng: &mut Rng, pages: u64, skew: u32) -> u64 {
    if skew == 0 {
        return rng.below(pages);
    }
    let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
    ((pages as f64 * u.powi(skew as i32)) as u64).min(pages - 1)
}

/// Checks one page's contents and counts (and reports) a mismatch.
fn verify_data(t: &mut Totals, data: &[u64], seed: u64, i: u64, gen: u32, pages: u64) {
    t.verified += 1;
    if let Some(m) = check(data, seed, i, gen) {
        t.mismatches += 1;
        if t.mismatches <= 10 {
            eprintln!(
                "MISMATCH page {i} gen {gen} word {}: want {:#018x} got {:#018x}: holds {}",
                m.word,
                m.want,
                m.got,
                diagnose(data, seed, i, gen, pages)
            );
        }
    }
}

fn bytes_of_mut(words: &mut [u64]) -> &mut [u8] {
    // SAFETY: u64 has no invalid bit patterns and stricter alignment than u8.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, words.len() * 8) }
}

fn phase(name: &str, w: &mut Walker, f: impl FnOnce(&mut Walker)) {
    let faults_before = w.t.fault_ns.len();
    let t0 = Instant::now();
    f(w);
    println!(
        "pagewalker: phase={name} seconds={:.2} faults={} mismatches={}",
        t0.elapsed().as_secs_f64(),
        w.t.fault_ns.len() - faults_before,
        w.t.mismatches
    );
}

fn major_faults() -> i64 {
    // SAFETY: getrusage fills the zeroed struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid out pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_majflt
}

fn main() {
    let a = parse_args();
    let pages = a.mib * (1 << 20) / PAGE as u64;
    let gen = vec![0; pages as usize];
    let lost = vec![false; pages as usize];
    let mut t = Totals::default();
    if a.lost_ok {
        // Our own bookkeeping must survive the loss of remote memory, or a
        // lost page of it would kill us: allocate it all now and lock it,
        // before mapping the buffer (which stays swappable).
        t.fault_ns
            .reserve(pages as usize * (3 + a.random_passes as usize));
        // SAFETY: plain syscall; locks the pages mapped so far.
        if unsafe { libc::mlockall(libc::MCL_CURRENT) } != 0 {
            eprintln!("pagewalker: mlockall: {}", std::io::Error::last_os_error());
            exit(3);
        }
    }
    let mem = std::fs::File::open("/proc/self/mem").unwrap_or_else(|e| {
        eprintln!("pagewalker: /proc/self/mem: {e}");
        exit(3)
    });
    let mut w = Walker {
        buf: Buffer::map(pages, a.huge),
        mem,
        gen,
        lost,
        lost_ok: a.lost_ok,
        seed: if a.compressible {
            a.seed | pattern::COMPRESSIBLE
        } else {
            a.seed & !pattern::COMPRESSIBLE
        },
        t,
    };
    if a.lock {
        let len = w.buf.pages as usize * PAGE;
        // SAFETY: locks our own mapping, which lives until exit.
        if unsafe { libc::mlock(w.buf.base as *const libc::c_void, len) } != 0 {
            eprintln!(
                "pagewalker: mlock of {len} bytes failed: {}",
                std::io::Error::last_os_error()
            );
            exit(3);
        }
    }
    let t0 = Instant::now();
    let majflt0 = major_faults();
    phase("write", &mut w, |w| {
        for i in 0..w.buf.pages {
            let seed = w.seed;
            fill(w.buf.page(i), seed, i, 0);
        }
    });
    if let Some(path) = &a.pause {
        println!("pagewalker: paused until {path} exists");
        let t = Instant::now();
        while !std::path::Path::new(path).exists() && t.elapsed().as_secs() < 600 {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    let mut rng = Rng::new(a.seed ^ 0x5eed);
    let full_pass = |w: &mut Walker, rng: &mut Rng| {
        if a.shuffle {
            w.shuffled_verify(rng)
        } else {
            w.strided_verify(a.stride)
        }
    };
    phase("verify", &mut w, |w| full_pass(w, &mut rng));
    for p in 0..a.random_passes {
        phase(&format!("random{p}"), &mut w, |w| {
            w.random_pass(&mut rng, a.skew)
        });
    }
    phase("final", &mut w, |w| full_pass(w, &mut rng));

    let mut lat = std::mem::take(&mut w.t.fault_ns);
    lat.sort_unstable();
    let fault_secs = lat.iter().sum::<u64>() as f64 / 1e9;
    let swapin_mib = lat.len() as f64 * PAGE as f64 / (1 << 20) as f64;
    let t = &w.t;
    println!(
        "pagewalker: result={} mib={} huge={} pages={} verified={} mismatches={} lost={} rewrites={} \
         swapin_pages={} swapin_mib_s={:.1} fault_p50_us={:.1} fault_p99_us={:.1} \
         majflt={} seconds={:.2}",
        if t.mismatches == 0 { "OK" } else { "CORRUPT" },
        a.mib,
        a.huge as u8,
        pages,
        t.verified,
        t.mismatches,
        t.lost,
        t.rewrites,
        lat.len(),
        if fault_secs > 0.0 {
            swapin_mib / fault_secs
        } else {
            0.0
        },
        percentile(&lat, 50) as f64 / 1e3,
        percentile(&lat, 99) as f64 / 1e3,
        major_faults() - majflt0,
        t0.elapsed().as_secs_f64()
    );
    exit(if t.mismatches == 0 { 0 } else { 1 });
}
