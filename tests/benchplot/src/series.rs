//! Parsing `rswapctl record` samples out of a console log.
//!
//! The benchmark's guest scripts tag each sample with its run:
//! `RSWAP-TS run=<tag> record t=<s> server=<n> ... stores_s=<x> loads_s=<y> ...`.

use std::collections::BTreeMap;

/// One server's samples in one run.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Series {
    pub t: Vec<f64>,
    pub stores_s: Vec<f64>,
    pub loads_s: Vec<f64>,
}

/// One run: its tag and each server's series, by server number.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Run {
    pub tag: String,
    pub servers: BTreeMap<u32, Series>,
}

impl Run {
    /// Each server's share of all loads in the run, by server number.
    pub fn load_shares(&self) -> Vec<(u32, f64)> {
        let sum = |s: &Series| s.loads_s.iter().sum::<f64>();
        let all: f64 = self.servers.values().map(sum).sum();
        self.servers
            .iter()
            .map(|(n, s)| (*n, if all > 0.0 { sum(s) / all } else { 0.0 }))
            .collect()
    }
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// The runs in `text`, in the order they first appear.
pub fn parse(text: &str) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for line in text.lines() {
        let Some(at) = line.find("RSWAP-TS ") else {
            continue;
        };
        let line = &line[at..];
        let (Some(tag), Some(t), Some(n), Some(st), Some(ld)) = (
            field(line, "run"),
            field(line, "t").and_then(|v| v.parse().ok()),
            field(line, "server").and_then(|v| v.parse().ok()),
            field(line, "stores_s").and_then(|v| v.parse().ok()),
            field(line, "loads_s").and_then(|v| v.parse().ok()),
        ) else {
            continue;
        };
        let i = match runs.iter().position(|r| r.tag == tag) {
            Some(i) => i,
            None => {
                runs.push(Run {
                    tag: tag.to_string(),
                    ..Default::default()
                });
                runs.len() - 1
            }
        };
        let s = runs[i].servers.entry(n).or_default();
        s.t.push(t);
        s.stores_s.push(st);
        s.loads_s.push(ld);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_samples_by_run_and_server() {
        let text = "\
noise\n\
RSWAP-TS run=capacity record t=1.0 server=1 endpoint=a up=1 pages=3 stores_s=10 loads_s=30 read_lat_us=5\n\
[  1.0] RSWAP-TS run=capacity record t=1.0 server=2 endpoint=b up=1 pages=3 stores_s=20 loads_s=10\n\
RSWAP-TS run=capacity record t=2.0 server=1 stores_s=5 loads_s=30\n\
RSWAP-TS run=tiered record t=1.0 server=1 stores_s=1 loads_s=2\n\
RSWAP-TS run=tiered record t=x server=1 stores_s=1 loads_s=2\n";
        let runs = parse(text);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].tag, "capacity");
        let s1 = &runs[0].servers[&1];
        assert_eq!(s1.t, vec![1.0, 2.0]);
        assert_eq!(s1.loads_s, vec![30.0, 30.0]);
        assert_eq!(runs[0].servers[&2].stores_s, vec![20.0]);
        let shares = runs[0].load_shares();
        assert!((shares[0].1 - 60.0 / 70.0).abs() < 1e-9, "{shares:?}");
        assert_eq!(runs[1].servers[&1].t.len(), 1, "a bad sample is skipped");
    }
}
