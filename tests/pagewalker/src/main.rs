//! pagewalker: the rswap test workload.
//!
//! Maps `--mib` MiB of anonymous memory, writes a verifiable pattern into
//! every page, then reads it back sequentially and in random passes that
//! also rewrite pages (new generation), and verifies every byte at the end.
//! Run it in a cgroup whose memory.max is a fraction of that, and the pages
//! travel through swap. Exits 1 on any mismatch, 2 on bad usage.
//!
//! Pages found not resident (mincore) before a read are timed: that read is
//! a major fault, and the summary gives their latency percentiles and the
//! swap-in throughput (faulted bytes over the time spent in those faults).

mod pattern;

use pattern::{check, diagnose, fill, percentile, Rng, PAGE, WORDS};
use std::process::exit;
use std::time::Instant;

struct Args {
    mib: u64,
    seed: u64,
    random_passes: u32,
}

fn usage(msg: &str) -> ! {
    eprintln!("pagewalker: {msg}");
    eprintln!("usage: pagewalker --mib N [--seed S] [--random-passes R]");
    exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        mib: 0,
        seed: 1,
        random_passes: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it
            .next()
            .unwrap_or_else(|| usage(&format!("{k} needs a value")));
        let n: u64 = v
            .parse()
            .unwrap_or_else(|_| usage(&format!("{k}: not a number: {v}")));
        match k.as_str() {
            "--mib" => a.mib = n,
            "--seed" => a.seed = n,
            "--random-passes" => a.random_passes = n as u32,
            _ => usage(&format!("unknown option {k}")),
        }
    }
    if a.mib == 0 {
        usage("--mib must be at least 1");
    }
    a
}

/// The mapped buffer, page by page.
struct Buffer {
    base: *mut u64,
    pages: u64,
}

impl Buffer {
    fn map(pages: u64) -> Buffer {
        let len = pages as usize * PAGE;
        // SAFETY: an anonymous private mapping; no file or address hints.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
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
        Buffer {
            base: p as *mut u64,
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
    fault_ns: Vec<u64>,
}

struct Walker {
    buf: Buffer,
    gen: Vec<u32>,
    seed: u64,
    t: Totals,
}

impl Walker {
    /// Reads page `i`, timing the read if `cold` (not resident), and
    /// verifies it against its current generation.
    fn verify(&mut self, i: u64, cold: bool) {
        let (seed, gen, pages) = (self.seed, self.gen[i as usize], self.buf.pages);
        let page = self.buf.page(i);
        if cold {
            let t0 = Instant::now();
            // SAFETY: reading the first word of a mapped page.
            let _ = unsafe { std::ptr::read_volatile(page.as_ptr()) };
            self.t.fault_ns.push(t0.elapsed().as_nanos() as u64);
        }
        self.t.verified += 1;
        if let Some(m) = check(page, seed, i, gen) {
            self.t.mismatches += 1;
            if self.t.mismatches <= 10 {
                eprintln!(
                    "MISMATCH page {i} gen {gen} word {}: want {:#018x} got {:#018x}: holds {}",
                    m.word,
                    m.want,
                    m.got,
                    diagnose(page, seed, i, gen, pages)
                );
            }
        }
    }

    fn rewrite(&mut self, i: u64) {
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

    fn random_pass(&mut self, rng: &mut Rng) {
        for _ in 0..self.buf.pages {
            let i = rng.below(self.buf.pages);
            let mut r = [0u8; 1];
            self.buf.resident(i, &mut r);
            self.verify(i, r[0] & 1 == 0);
            if rng.next() & 1 == 0 {
                self.rewrite(i);
            }
        }
    }
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
    let mut w = Walker {
        buf: Buffer::map(pages),
        gen: vec![0; pages as usize],
        seed: a.seed,
        t: Totals::default(),
    };
    let t0 = Instant::now();
    let majflt0 = major_faults();
    phase("write", &mut w, |w| {
        for i in 0..w.buf.pages {
            let seed = w.seed;
            fill(w.buf.page(i), seed, i, 0);
        }
    });
    phase("verify", &mut w, Walker::sequential_verify);
    let mut rng = Rng::new(a.seed ^ 0x5eed);
    for p in 0..a.random_passes {
        phase(&format!("random{p}"), &mut w, |w| w.random_pass(&mut rng));
    }
    phase("final", &mut w, Walker::sequential_verify);

    let mut lat = std::mem::take(&mut w.t.fault_ns);
    lat.sort_unstable();
    let fault_secs = lat.iter().sum::<u64>() as f64 / 1e9;
    let swapin_mib = lat.len() as f64 * PAGE as f64 / (1 << 20) as f64;
    let t = &w.t;
    println!(
        "pagewalker: result={} mib={} pages={} verified={} mismatches={} rewrites={} \
         swapin_pages={} swapin_mib_s={:.1} fault_p50_us={:.1} fault_p99_us={:.1} \
         majflt={} seconds={:.2}",
        if t.mismatches == 0 { "OK" } else { "CORRUPT" },
        a.mib,
        pages,
        t.verified,
        t.mismatches,
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
