//! rswapctl: what rswap is doing, per backend and per memory server.
//!
//! - `rswapctl status`: one view, totals since the modules were loaded.
//! - `rswapctl top [--interval S] [--count N]`: the same, refreshed every
//!   S seconds (default 1) with rates over each interval, N times (default:
//!   until interrupted).
//! - `rswapctl record [--interval S] [--count N]`: every S seconds, one
//!   line per memory server (`record t=... server=... stores_s=...`) for
//!   scripts and the benchmark's plots.
//!
//! - `rswapctl reclaim CGROUP [--headroom-kib N] [--interval-ms M]`:
//!   offloaded reclaim for the benchmark (see `reclaim.rs`).
//!
//! The first three take `--debugfs DIR` (default /sys/kernel/debug) and `--sysfs DIR`
//! (default /sys). Needs root (debugfs). Exit status: 0, 1 if there is
//! nothing to read (the message says why), 2 on bad usage.

mod reclaim;
mod stats;
mod view;

use std::path::PathBuf;
use std::process::exit;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Command {
    Status,
    Top,
    Record,
}

struct Args {
    cmd: Command,
    interval: f64,
    count: Option<u64>,
    debugfs: PathBuf,
    sysfs: PathBuf,
}

fn usage(msg: &str) -> ! {
    eprintln!("rswapctl: {msg}");
    eprintln!(
        "usage: rswapctl status|top|record [--interval S] [--count N] [--debugfs DIR] [--sysfs DIR]"
    );
    eprintln!("       rswapctl reclaim CGROUP [--headroom-kib N] [--interval-ms M]");
    exit(2)
}

fn parse(mut it: impl Iterator<Item = String>) -> Args {
    let cmd = match it.next().as_deref() {
        Some("status") => Command::Status,
        Some("top") => Command::Top,
        Some("record") => Command::Record,
        Some("-h" | "--help") => usage("shows rswap's statistics"),
        Some(other) => usage(&format!("unknown command {other}")),
        None => usage("a command is needed"),
    };
    let mut a = Args {
        cmd,
        interval: 1.0,
        count: None,
        debugfs: PathBuf::from("/sys/kernel/debug"),
        sysfs: PathBuf::from("/sys"),
    };
    while let Some(k) = it.next() {
        let v = it
            .next()
            .unwrap_or_else(|| usage(&format!("{k} needs a value")));
        match k.as_str() {
            "--interval" => {
                a.interval = v
                    .parse()
                    .ok()
                    .filter(|&s: &f64| (0.1..=3600.0).contains(&s))
                    .unwrap_or_else(|| usage("--interval: seconds, 0.1 to 3600"))
            }
            "--count" => {
                a.count = Some(
                    v.parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .unwrap_or_else(|| usage("--count: a positive number")),
                )
            }
            "--debugfs" => a.debugfs = PathBuf::from(v),
            "--sysfs" => a.sysfs = PathBuf::from(v),
            _ => usage(&format!("unknown option {k}")),
        }
    }
    if a.cmd == Command::Status && a.count.is_some() {
        usage("--count is for top and record");
    }
    a
}

fn snapshot(a: &Args) -> stats::Snapshot {
    stats::read(&a.debugfs, &a.sysfs).unwrap_or_else(|e| {
        eprintln!("rswapctl: {e}");
        exit(1)
    })
}

/// `reclaim CGROUP [--headroom-kib N] [--interval-ms M]`.
fn parse_reclaim(mut it: impl Iterator<Item = String>) -> reclaim::Options {
    let cgroup = it
        .next()
        .unwrap_or_else(|| usage("reclaim needs a cgroup directory"));
    let mut o = reclaim::Options {
        cgroup: PathBuf::from(cgroup),
        headroom: 1 << 20,
        interval: Duration::from_millis(2),
    };
    while let Some(k) = it.next() {
        let v: Option<u64> = it.next().and_then(|v| v.parse().ok());
        match k.as_str() {
            "--headroom-kib" => {
                let kib = v
                    .filter(|n| (64..=1 << 20).contains(n))
                    .unwrap_or_else(|| usage("--headroom-kib: 64 to 1048576"));
                o.headroom = kib << 10;
            }
            "--interval-ms" => {
                let ms = v
                    .filter(|n| (1..=1000).contains(n))
                    .unwrap_or_else(|| usage("--interval-ms: 1 to 1000"));
                o.interval = Duration::from_millis(ms);
            }
            _ => usage(&format!("unknown option {k}")),
        }
    }
    o
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("reclaim") {
        args.next();
        match reclaim::run(&parse_reclaim(args)) {
            Ok(summary) => println!("{summary}"),
            Err(e) => {
                eprintln!("rswapctl reclaim: {e}");
                exit(1)
            }
        }
        return;
    }
    let a = parse(args);
    let mut prev = snapshot(&a);
    if a.cmd == Command::Status {
        print!("{}", view::render(&prev, None));
        return;
    }
    let start = Instant::now();
    let mut t = Instant::now();
    let mut n = 0;
    loop {
        std::thread::sleep(Duration::from_secs_f64(a.interval));
        let now = snapshot(&a);
        let secs = t.elapsed().as_secs_f64();
        t = Instant::now();
        if a.cmd == Command::Top {
            // Clear the screen and home the cursor, as top does.
            print!("\x1b[2J\x1b[H{}", view::render(&now, Some((&prev, secs))));
        } else {
            let t = start.elapsed().as_secs_f64();
            print!("{}", view::record(&now, &prev, secs, t));
            use std::io::Write;
            let _ = std::io::stdout().flush();
        }
        prev = now;
        n += 1;
        if a.count.is_some_and(|c| n >= c) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Args {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn parses_commands() {
        let a = args("top --interval 0.5 --count 3 --debugfs /d");
        assert_eq!(a.cmd, Command::Top);
        assert_eq!(a.interval, 0.5);
        assert_eq!(a.count, Some(3));
        assert_eq!(a.debugfs, PathBuf::from("/d"));
        let a = args("status");
        assert!(a.cmd == Command::Status && a.count.is_none());
        let a = args("record --interval 2");
        assert_eq!((a.cmd, a.interval), (Command::Record, 2.0));
    }

    #[test]
    fn parses_reclaim() {
        let o = parse_reclaim(
            "/cg --headroom-kib 512 --interval-ms 5"
                .split_whitespace()
                .map(String::from),
        );
        assert_eq!(o.cgroup, PathBuf::from("/cg"));
        assert_eq!(
            (o.headroom, o.interval),
            (512 << 10, Duration::from_millis(5))
        );
    }
}
