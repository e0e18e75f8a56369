//! rswapctl: what rswap is doing, per backend and per memory server.
//!
//! - `rswapctl status`: one view, totals since the modules were loaded.
//! - `rswapctl top [--interval S] [--count N]`: the same, refreshed every
//!   S seconds (default 1) with rates over each interval, N times (default:
//!   until interrupted).
//!
//! Both take `--debugfs DIR` (default /sys/kernel/debug) and `--sysfs DIR`
//! (default /sys). Needs root (debugfs). Exit status: 0, 1 if there is
//! nothing to read (the message says why), 2 on bad usage.

mod stats;
mod view;

use std::path::PathBuf;
use std::process::exit;
use std::time::{Duration, Instant};

struct Args {
    top: bool,
    interval: f64,
    count: Option<u64>,
    debugfs: PathBuf,
    sysfs: PathBuf,
}

fn usage(msg: &str) -> ! {
    eprintln!("rswapctl: {msg}");
    eprintln!(
        "usage: rswapctl status|top [--interval S] [--count N] [--debugfs DIR] [--sysfs DIR]"
    );
    exit(2)
}

fn parse(mut it: impl Iterator<Item = String>) -> Args {
    let top = match it.next().as_deref() {
        Some("status") => false,
        Some("top") => true,
        Some("-h" | "--help") => usage("shows rswap's statistics"),
        Some(other) => usage(&format!("unknown command {other}")),
        None => usage("a command is needed"),
    };
    let mut a = Args {
        top,
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
    if !a.top && a.count.is_some() {
        usage("--count is for top");
    }
    a
}

fn snapshot(a: &Args) -> stats::Snapshot {
    stats::read(&a.debugfs, &a.sysfs).unwrap_or_else(|e| {
        eprintln!("rswapctl: {e}");
        exit(1)
    })
}

fn main() {
    let a = parse(std::env::args().skip(1));
    let mut prev = snapshot(&a);
    if !a.top {
        print!("{}", view::render(&prev, None));
        return;
    }
    let mut t = Instant::now();
    let mut n = 0;
    loop {
        std::thread::sleep(Duration::from_secs_f64(a.interval));
        let now = snapshot(&a);
        let secs = t.elapsed().as_secs_f64();
        t = Instant::now();
        // Clear the screen and home the cursor, as top does.
        print!("\x1b[2J\x1b[H{}", view::render(&now, Some((&prev, secs))));
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
        assert!(a.top);
        assert_eq!(a.interval, 0.5);
        assert_eq!(a.count, Some(3));
        assert_eq!(a.debugfs, PathBuf::from("/d"));
        let a = args("status");
        assert!(!a.top && a.count.is_none());
    }
}
