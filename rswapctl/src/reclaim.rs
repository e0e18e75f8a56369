//! `rswapctl reclaim CGROUP`: offloaded reclaim, for the evaluation of
//! Fastswap's design (issue 10, section 4; `bench.sh reclaim`).
//!
//! Fastswap patches the kernel so that a cgroup above `memory.high` is
//! reclaimed by a dedicated CPU instead of by the faulting task. 6.1 can
//! do the same without a patch: `memory.reclaim` (since 5.19) reclaims
//! from a cgroup on behalf of whoever writes it. So this loop, pinned to
//! its own CPU, keeps the cgroup `headroom` below `memory.max`: while it
//! keeps up, the application's faults find free room and never reclaim
//! themselves (`memory.events`' `max` does not move).
//!
//! It waits for the cgroup to be populated, then runs until it is empty,
//! and prints one summary line: `rswapctl reclaim: passes=.. writes=..
//! reclaimed_kib=.. short=..` (`short`: writes that reclaimed less than
//! asked, EAGAIN).

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

pub struct Options {
    pub cgroup: PathBuf,
    pub headroom: u64,
    pub interval: Duration,
}

/// Bytes to reclaim so that `current` falls to `max - 2 * headroom`, once
/// it is within `headroom` of `max`; None while there is room (or no
/// limit).
pub fn to_reclaim(current: u64, max: Option<u64>, headroom: u64) -> Option<u64> {
    let max = max?;
    let low = max.saturating_sub(2 * headroom);
    (current + headroom > max).then(|| current.saturating_sub(low))
}

fn read_u64(p: &Path) -> Option<u64> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn populated(cg: &Path) -> bool {
    fs::read_to_string(cg.join("cgroup.events"))
        .map(|s| s.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

pub fn run(o: &Options) -> Result<String, String> {
    let events = o.cgroup.join("cgroup.events");
    if !events.exists() {
        return Err(format!("{}: not a cgroup v2 directory", o.cgroup.display()));
    }
    let mut waited = 0;
    while !populated(&o.cgroup) {
        sleep(Duration::from_millis(1));
        waited += 1;
        if waited > 60_000 {
            return Err("the cgroup stayed empty for 60 s".into());
        }
    }
    let (mut passes, mut writes, mut bytes, mut short) = (0u64, 0u64, 0u64, 0u64);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .open(o.cgroup.join("memory.reclaim"))
        .map_err(|e| format!("memory.reclaim: {e}"))?;
    while populated(&o.cgroup) {
        passes += 1;
        let current = read_u64(&o.cgroup.join("memory.current"));
        let max = read_u64(&o.cgroup.join("memory.max"));
        if let Some(n) = current.and_then(|c| to_reclaim(c, max, o.headroom)) {
            writes += 1;
            match file.write_all(n.to_string().as_bytes()) {
                Ok(()) => bytes += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.raw_os_error() == Some(11) => {
                    // Reclaimed less than asked: give it a moment.
                    short += 1;
                    sleep(o.interval);
                }
                Err(e) => return Err(format!("memory.reclaim: {e}")),
            }
            continue;
        }
        sleep(o.interval);
    }
    Ok(format!(
        "rswapctl reclaim: passes={passes} writes={writes} reclaimed_kib={} short={short}",
        bytes / 1024
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reclaims_only_near_the_limit() {
        let m = 16 << 20;
        assert_eq!(to_reclaim(8 << 20, Some(m), 1 << 20), None);
        assert_eq!(to_reclaim(m - (1 << 20), Some(m), 1 << 20), None);
        // Within the headroom: back down to max - 2 * headroom.
        assert_eq!(
            to_reclaim(m - 1000, Some(m), 1 << 20),
            Some((2 << 20) - 1000)
        );
        assert_eq!(to_reclaim(m, Some(m), 1 << 20), Some(2 << 20));
        // No limit ("max" does not parse), or a limit below the headroom.
        assert_eq!(to_reclaim(m, None, 1 << 20), None);
        assert_eq!(to_reclaim(3 << 20, Some(2 << 20), 4 << 20), Some(3 << 20));
    }
}
