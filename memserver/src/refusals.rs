//! Why connections are refused, counted per reason, and logged in a
//! summarised way: the first [`BURST`] refusals of each [`WINDOW`] get a line
//! each; the rest are counted and reported in one line when the window ends,
//! so a connect flood cannot flood the log.

use crate::proto::Status;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Refusals logged one by one per window.
pub const BURST: u32 = 10;
/// The summary window.
pub const WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Not an rswap request (bad magic, version or length).
    BadRequest,
    /// Source address not in the allowlist.
    NotAllowed,
    /// Wrong shared secret.
    BadSecret,
    /// `--max-nodes` nodes are already served.
    TooManyNodes,
    /// The node already has `--max-queues-per-node` queues.
    TooManyQueues,
    /// `--max-pending` connections are already being set up.
    TooManyPending,
    /// No free memory left in the pool.
    PoolFull,
    /// The request came in on another RDMA device than the listener's.
    WrongDevice,
    /// The server failed to set the connection up (memory registration,
    /// QP creation...): not the client's fault.
    ServerError,
    /// The node id is in use and the request did not carry its session
    /// token: a clone, or a node that reused another's id.
    NodeInUse,
    /// A request admitted before, sent again.
    Replayed,
    /// The request's time is too far from our clock.
    ClockSkew,
    /// Past `--max-connects-per-s` from one address.
    RateLimited,
}

impl Reason {
    pub const ALL: [Reason; 13] = [
        Reason::BadRequest,
        Reason::NotAllowed,
        Reason::BadSecret,
        Reason::TooManyNodes,
        Reason::TooManyQueues,
        Reason::TooManyPending,
        Reason::PoolFull,
        Reason::WrongDevice,
        Reason::ServerError,
        Reason::NodeInUse,
        Reason::Replayed,
        Reason::ClockSkew,
        Reason::RateLimited,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::BadRequest => "bad_request",
            Reason::NotAllowed => "not_allowed",
            Reason::BadSecret => "bad_secret",
            Reason::TooManyNodes => "too_many_nodes",
            Reason::TooManyQueues => "too_many_queues",
            Reason::TooManyPending => "too_many_pending",
            Reason::PoolFull => "pool_full",
            Reason::WrongDevice => "wrong_device",
            Reason::ServerError => "server_error",
            Reason::NodeInUse => "node_in_use",
            Reason::Replayed => "replayed",
            Reason::ClockSkew => "clock_skew",
            Reason::RateLimited => "rate_limited",
        }
    }

    /// The status sent to the client. The wire protocol (shared with the
    /// kernel module) has nine statuses: every capacity limit is `NoSpace`,
    /// and server-side failures are `BadRequest`; the server's log and
    /// metrics tell them apart.
    pub fn status(self) -> Status {
        match self {
            Reason::BadRequest | Reason::WrongDevice | Reason::ServerError => Status::BadRequest,
            Reason::NotAllowed => Status::NotAllowed,
            Reason::BadSecret => Status::BadSecret,
            Reason::TooManyNodes
            | Reason::TooManyQueues
            | Reason::TooManyPending
            | Reason::PoolFull => Status::NoSpace,
            Reason::NodeInUse => Status::NodeInUse,
            Reason::Replayed => Status::Replayed,
            Reason::ClockSkew => Status::ClockSkew,
            Reason::RateLimited => Status::Busy,
        }
    }

    /// Short words for the summary line.
    fn words(self) -> &'static str {
        match self {
            Reason::BadRequest => "not rswap",
            Reason::NotAllowed => "address not in --allow",
            Reason::BadSecret => "wrong secret",
            Reason::TooManyNodes => "--max-nodes reached",
            Reason::TooManyQueues => "--max-queues-per-node reached",
            Reason::TooManyPending => "--max-pending reached",
            Reason::PoolFull => "pool full",
            Reason::WrongDevice => "wrong device",
            Reason::ServerError => "server error",
            Reason::NodeInUse => "node id in use",
            Reason::Replayed => "replayed request",
            Reason::ClockSkew => "clock skew",
            Reason::RateLimited => "--max-connects-per-s reached",
        }
    }
}

/// Refusal counters and the summarised log.
#[derive(Debug)]
pub struct Refusals {
    totals: BTreeMap<Reason, u64>,
    window_start: Option<Instant>,
    logged: u32,
    held: BTreeMap<Reason, u64>,
    held_peers: BTreeMap<String, u64>,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals::new()
    }
}

impl Refusals {
    pub fn new() -> Refusals {
        Refusals {
            totals: Reason::ALL.iter().map(|&r| (r, 0)).collect(),
            window_start: None,
            logged: 0,
            held: BTreeMap::new(),
            held_peers: BTreeMap::new(),
        }
    }

    pub fn total(&self) -> u64 {
        self.totals.values().sum()
    }

    /// Every reason with its count, zeros included.
    pub fn by_reason(&self) -> Vec<(Reason, u64)> {
        self.totals.iter().map(|(&r, &n)| (r, n)).collect()
    }

    /// Counts a refusal. Returns the lines to log now: the summary of the
    /// previous window if it just ended, and `line` unless the window's
    /// burst is used up.
    pub fn record(
        &mut self,
        now: Instant,
        reason: Reason,
        peer: &str,
        line: String,
    ) -> Vec<String> {
        *self.totals.entry(reason).or_default() += 1;
        let mut out: Vec<String> = self.tick(now).into_iter().collect();
        if self.window_start.is_none() {
            self.window_start = Some(now);
        }
        if self.logged < BURST {
            self.logged += 1;
            out.push(line);
        } else {
            *self.held.entry(reason).or_default() += 1;
            *self.held_peers.entry(peer.to_string()).or_default() += 1;
        }
        out
    }

    /// Ends the window if it is over: returns the summary of what was not
    /// logged one by one, if anything was held back.
    pub fn tick(&mut self, now: Instant) -> Option<String> {
        let start = self.window_start?;
        if now.duration_since(start) < WINDOW {
            return None;
        }
        self.flush(now)
    }

    /// Ends the window now (at shutdown): the summary, if anything was held.
    pub fn flush(&mut self, now: Instant) -> Option<String> {
        let start = self.window_start?;
        let held: u64 = self.held.values().sum();
        let summary = (held > 0).then(|| {
            let reasons: Vec<String> = self
                .held
                .iter()
                .map(|(r, n)| format!("{} {n}", r.words()))
                .collect();
            let mut peers: Vec<(&String, &u64)> = self.held_peers.iter().collect();
            peers.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let shown: Vec<String> = peers
                .iter()
                .take(3)
                .map(|(p, n)| format!("{p} ({n})"))
                .collect();
            let more = peers.len().saturating_sub(3);
            format!(
                "refused {held} more connections in the last {} s, not logged one by one: {}; from {}{}",
                now.duration_since(start).as_secs(),
                reasons.join(", "),
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} other addresses")
                } else {
                    String::new()
                }
            )
        });
        self.window_start = None;
        self.logged = 0;
        self.held.clear();
        self.held_peers.clear();
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_logged_as_a_burst_then_one_summary() {
        let t0 = Instant::now();
        let mut r = Refusals::new();
        let mut lines = Vec::new();
        for i in 0..1000u32 {
            let peer = if i % 2 == 0 { "10.77.1.5" } else { "10.77.1.6" };
            let reason = if i < 990 {
                Reason::BadSecret
            } else {
                Reason::TooManyPending
            };
            lines.extend(r.record(
                t0 + Duration::from_millis(i as u64),
                reason,
                peer,
                format!("refused #{i}"),
            ));
        }
        assert_eq!(lines.len(), BURST as usize);
        assert_eq!(lines[0], "refused #0");
        assert_eq!(r.tick(t0 + Duration::from_secs(5)), None);
        let s = r.tick(t0 + WINDOW).unwrap();
        assert!(
            s.starts_with("refused 990 more connections in the last 10 s"),
            "{s}"
        );
        assert!(s.contains("wrong secret 980"), "{s}");
        assert!(s.contains("--max-pending reached 10"), "{s}");
        assert!(
            s.contains("10.77.1.5 (495)") && s.contains("10.77.1.6 (495)"),
            "{s}"
        );
        assert_eq!(r.total(), 1000);
        let by: BTreeMap<Reason, u64> = r.by_reason().into_iter().collect();
        assert_eq!(by[&Reason::BadSecret], 990);
        assert_eq!(by[&Reason::PoolFull], 0);
        // A new window logs again.
        let again = r.record(t0 + WINDOW * 2, Reason::NotAllowed, "10.77.1.7", "x".into());
        assert_eq!(again, vec!["x".to_string()]);
    }

    #[test]
    fn a_quiet_window_has_no_summary() {
        let t0 = Instant::now();
        let mut r = Refusals::new();
        assert_eq!(
            r.record(t0, Reason::BadSecret, "a", "one".into()),
            vec!["one"]
        );
        assert_eq!(r.tick(t0 + WINDOW), None);
        assert_eq!(r.tick(t0 + WINDOW * 3), None);
    }

    #[test]
    fn the_summary_comes_before_the_next_line() {
        let t0 = Instant::now();
        let mut r = Refusals::new();
        for i in 0..BURST + 2 {
            r.record(t0, Reason::PoolFull, "p", format!("{i}"));
        }
        let out = r.record(t0 + WINDOW, Reason::PoolFull, "p", "late".into());
        assert_eq!(out.len(), 2);
        assert!(out[0].starts_with("refused 2 more"));
        assert_eq!(out[1], "late");
        for i in 0..BURST + 1 {
            r.record(t0 + WINDOW, Reason::PoolFull, "p", format!("{i}"));
        }
        // Shutdown says what the window held back, however short it was.
        let s = r.flush(t0 + WINDOW).unwrap();
        assert!(
            s.starts_with("refused 2 more connections in the last 0 s"),
            "{s}"
        );
    }

    #[test]
    fn capacity_refusals_say_no_space_on_the_wire() {
        for r in [
            Reason::TooManyNodes,
            Reason::TooManyQueues,
            Reason::TooManyPending,
            Reason::PoolFull,
        ] {
            assert_eq!(r.status(), Status::NoSpace);
        }
        assert_eq!(Reason::BadSecret.status(), Status::BadSecret);
        assert_eq!(Reason::ServerError.status(), Status::BadRequest);
        let labels: std::collections::HashSet<_> = Reason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), Reason::ALL.len());
    }
}
