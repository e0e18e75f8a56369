//! The status view: the rswap core, each backend, and each memory server
//! with its pages, measured latency and bandwidth, placement share and
//! moves. With an earlier snapshot, rates are over the interval between
//! the two (the live view); without, totals since the module was loaded.

use crate::stats::{Counters, Server, Snapshot};
use std::fmt::Write;

const MIB: f64 = 1024.0 * 1024.0;
const PAGE: f64 = 4096.0;

fn c(m: &Counters, k: &str) -> u64 {
    m.get(k).copied().unwrap_or(0)
}

/// `new - old` of counter `k` per second, or the total when there is no
/// earlier snapshot.
struct Delta<'a> {
    secs: f64,
    old: Option<&'a Counters>,
}

impl Delta<'_> {
    fn of(&self, m: &Counters, k: &str) -> String {
        match self.old {
            Some(o) => format!(
                "{:.0}/s",
                c(m, k).saturating_sub(c(o, k)) as f64 / self.secs.max(0.001)
            ),
            None => c(m, k).to_string(),
        }
    }
}

fn server_before<'a>(prev: Option<&'a Snapshot>, s: &Server) -> Option<&'a Counters> {
    prev?
        .servers
        .iter()
        .find(|p| p.index == s.index)
        .map(|p| &p.counters)
}

/// Renders `now`, with rates since `prev` (taken `secs` earlier) if given.
pub fn render(now: &Snapshot, prev: Option<(&Snapshot, f64)>) -> String {
    let mut out = String::new();
    let secs = prev.map_or(0.0, |p| p.1);
    let prev = prev.map(|p| p.0);
    let d = Delta {
        secs,
        old: prev.map(|p| &p.totals),
    };
    let t = &now.totals;
    let _ = writeln!(
        out,
        "rswap: {} pages held ({:.1} MiB); stores {} (refused {}, huge {}), loads {} (errors {}), invalidations {}",
        c(t, "pages_held"),
        c(t, "pages_held") as f64 * PAGE / MIB,
        d.of(t, "stores"),
        d.of(t, "store_refused"),
        d.of(t, "stores_huge"),
        d.of(t, "loads"),
        c(t, "load_errors"),
        d.of(t, "invalidations"),
    );
    for (name, m) in &now.backends {
        let old = prev.and_then(|p| p.backends.iter().find(|(n, _)| n == name).map(|(_, m)| m));
        let d = Delta { secs, old };
        let _ = writeln!(
            out,
            "  backend {name}: {} pages held; stores {} (refused {}), loads {} (errors {})",
            c(m, "pages_held"),
            d.of(m, "stores"),
            d.of(m, "store_refused"),
            d.of(m, "loads"),
            c(m, "load_errors"),
        );
    }
    if now.servers.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "rswap_rdma: placement {}, {} memory servers",
        now.placement.as_deref().unwrap_or("?"),
        now.servers.len()
    );
    // The share of new pages each server got: over the interval, or since
    // load.
    let placed = |s: &Server| {
        c(&s.counters, "stores")
            .saturating_sub(server_before(prev, s).map_or(0, |o| c(o, "stores")))
    };
    let all: u64 = now.servers.iter().map(placed).sum();
    // Loads: reads, without those of pages moved away (tiered).
    let loads = |m: &Counters| c(m, "reads").saturating_sub(c(m, "moved_out"));
    let reads =
        |s: &Server| loads(&s.counters).saturating_sub(server_before(prev, s).map_or(0, loads));
    let all_reads: u64 = now.servers.iter().map(reads).sum();
    let _ = writeln!(
        out,
        "{:<3} {:<21} {:<5} {:>7} {:>12} {:>13} {:>13} {:>7} {:>6} {:>6} {:>7} {:>6} {:>9} {:>7} {:>7} {:>9} {:>6} {:>6}",
        "#",
        "server",
        "state",
        "pages",
        "free/cap MiB",
        "lat r/w us",
        "p99 r/w us",
        "KiB/s",
        "occ",
        "share",
        "placed",
        "loads",
        "stores",
        "promo",
        "demo",
        "moved MiB",
        "errors",
        "lost",
    );
    for s in &now.servers {
        let g = |k: &str| s.get(k);
        let d = Delta {
            secs,
            old: server_before(prev, s),
        };
        let pct = |a: u64, b: u64| {
            if b == 0 {
                "-".to_string()
            } else {
                format!("{:.0}%", 100.0 * a as f64 / b as f64)
            }
        };
        let _ = writeln!(
            out,
            "{:<3} {:<21} {:<5} {:>7} {:>12} {:>13} {:>13} {:>7} {:>6} {:>6} {:>7} {:>6} {:>9} {:>7} {:>7} {:>9.1} {:>6} {:>6}",
            s.index + 1,
            s.endpoint,
            if g("up") == 1 { "up" } else { "DOWN" },
            g("pages"),
            format!(
                "{:.1}/{:.1}",
                g("free_pages") as f64 * PAGE / MIB,
                g("capacity_pages") as f64 * PAGE / MIB
            ),
            format!("{}/{}", g("read_lat_ewma_us"), g("write_lat_ewma_us")),
            format!("{}/{}", g("read_lat_p99_us"), g("write_lat_p99_us")),
            g("bw_kib_s"),
            format!("{:.2}", g("occupancy_x100") as f64 / 100.0),
            format!("{:.0}%", g("share_permille") as f64 / 10.0),
            pct(placed(s), all),
            pct(reads(s), all_reads),
            d.of(&s.counters, "stores"),
            g("promotions"),
            g("demotions"),
            g("moved_bytes") as f64 / MIB,
            g("errors"),
            g("lost_pages"),
        );
    }
    // Probe reads measure servers that get no reads; they are not loads.
    let probes: Vec<String> = now
        .servers
        .iter()
        .filter(|s| s.get("probes") > 0)
        .map(|s| {
            let d = Delta {
                secs,
                old: server_before(prev, s),
            };
            format!("{} {}", s.index + 1, d.of(&s.counters, "probes"))
        })
        .collect();
    if !probes.is_empty() {
        let _ = writeln!(
            out,
            "probe reads of idle servers (not loads): {}",
            probes.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "(lat: moving averages under load; share: the weighted policy's target; placed, loads: where new pages went and where loads were served{})",
        if prev.is_some() {
            ", over the last interval"
        } else {
            ", since load"
        }
    );
    out
}

/// One machine-readable line per server for the interval since `prev`
/// (`secs` long), ending `t` seconds into the recording: what `rswapctl
/// record` prints and the benchmark's plots read. Rates are pages per
/// second; loads exclude the reads of pages moved away.
pub fn record(now: &Snapshot, prev: &Snapshot, secs: f64, t: f64) -> String {
    let mut out = String::new();
    let loads = |m: &Counters| c(m, "reads").saturating_sub(c(m, "moved_out"));
    for s in &now.servers {
        let old = server_before(Some(prev), s);
        let rate = |v: u64, o: u64| v.saturating_sub(o) as f64 / secs.max(0.001);
        let _ = writeln!(
            out,
            "record t={t:.1} server={} endpoint={} up={} pages={} stores_s={:.0} loads_s={:.0} \
             read_lat_us={} write_lat_us={} placement={}",
            s.index + 1,
            s.endpoint,
            s.get("up"),
            s.get("pages"),
            rate(s.get("stores"), old.map_or(0, |o| c(o, "stores"))),
            rate(loads(&s.counters), old.map_or(0, loads)),
            s.get("read_lat_ewma_us"),
            s.get("write_lat_ewma_us"),
            now.placement.as_deref().unwrap_or("-"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(stores: [u64; 2]) -> Snapshot {
        let mut s = Snapshot {
            placement: Some("tiered".into()),
            ..Default::default()
        };
        s.totals.insert("stores".into(), stores[0] + stores[1]);
        s.totals.insert("pages_held".into(), 256);
        for (i, n) in stores.iter().enumerate() {
            let mut m = Counters::new();
            m.insert("stores".into(), *n);
            m.insert("up".into(), (i == 0) as u64);
            m.insert("moved_bytes".into(), 3 << 20);
            s.servers.push(Server {
                index: i,
                endpoint: format!("10.77.{}.2:7471", i + 1),
                counters: m,
            });
        }
        s
    }

    #[test]
    fn totals_since_load() {
        let out = render(&snap([75, 25]), None);
        assert!(
            out.contains("rswap: 256 pages held (1.0 MiB); stores 100"),
            "{out}"
        );
        assert!(out.contains("placement tiered, 2 memory servers"), "{out}");
        let line1 = out.lines().find(|l| l.starts_with("1 ")).unwrap();
        assert!(
            line1.contains(" up ") && line1.contains("75%") && line1.contains("3.0"),
            "{line1}"
        );
        let line2 = out.lines().find(|l| l.starts_with("2 ")).unwrap();
        assert!(line2.contains("DOWN") && line2.contains("25%"), "{line2}");
        assert!(!out.contains("probe reads"), "{out}");
        let mut probed = snap([75, 25]);
        probed.servers[1].counters.insert("probes".into(), 40);
        let out = render(&probed, None);
        assert!(
            out.contains("probe reads of idle servers (not loads): 2 40"),
            "{out}"
        );
    }

    #[test]
    fn rates_over_an_interval() {
        let out = render(&snap([175, 25]), Some((&snap([75, 25]), 2.0)));
        assert!(out.contains("stores 50/s"), "{out}");
        let line1 = out.lines().find(|l| l.starts_with("1 ")).unwrap();
        assert!(line1.contains("100%") && line1.contains("50/s"), "{line1}");
        assert!(out.contains("over the last interval"), "{out}");
    }

    #[test]
    fn records_rates_per_server() {
        let out = record(&snap([175, 25]), &snap([75, 25]), 2.0, 4.0);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(
            lines[0].starts_with("record t=4.0 server=1 endpoint=10.77.1.2:7471 up=1")
                && lines[0].contains(" stores_s=50 ")
                && lines[0].ends_with("placement=tiered"),
            "{out}"
        );
        assert!(
            lines[1].contains(" up=0 ") && lines[1].contains(" stores_s=0 "),
            "{out}"
        );
    }
}
