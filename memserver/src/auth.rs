//! Who may connect: an allowlist of client addresses and the shared
//! secret, proven by each request's HMAC (proto.rs), and the replay guard.

use crate::config::Limits;
use crate::proto::{DecodeError, Mac, Received, Request, Server, Status, DIGEST_LEN, SECRET_LEN};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::time::Instant;

/// HMAC-SHA256 keyed with the shared secret (all zero without one).
#[derive(Clone)]
pub struct Key(Hmac<Sha256>);

impl Key {
    pub fn new(secret: [u8; SECRET_LEN]) -> Key {
        Key(Hmac::new_from_slice(&secret).expect("HMAC takes a key of any length"))
    }
}

impl Mac for Key {
    fn hmac(&self, parts: &[&[u8]]) -> Option<[u8; DIGEST_LEN]> {
        let mut m = self.0.clone();
        for p in parts {
            m.update(p);
        }
        Some(m.finalize().into_bytes().into())
    }
}

/// Never prints the key.
impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<hidden>)")
    }
}

pub struct Policy {
    pub allow: Vec<Ipv4Addr>,
    pub secret: Option<[u8; SECRET_LEN]>,
    key: Key,
}

/// Never prints the secret.
impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("allow", &self.allow)
            .field("secret", &self.secret.map(|_| "<hidden>"))
            .finish()
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::new(Vec::new(), None)
    }
}

impl Policy {
    /// Without a secret, requests and replies are authenticated with the
    /// all-zero key: anyone can compute it, so only `allow` protects.
    pub fn new(allow: Vec<Ipv4Addr>, secret: Option<[u8; SECRET_LEN]>) -> Policy {
        let key = Key::new(secret.unwrap_or([0; SECRET_LEN]));
        Policy { allow, secret, key }
    }

    /// A server with neither would serve anyone: refuse to start.
    pub fn validate(&self) -> Result<(), String> {
        if self.allow.is_empty() && self.secret.is_none() {
            return Err(
                "refusing to serve anyone who asks: give a secret (--secret-file or \
             $MEMSERVER_SECRET) and/or --allow"
                    .into(),
            );
        }
        Ok(())
    }

    /// The key requests and replies are authenticated with.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The request's MAC (for us, `server`) must verify, and then the
    /// address must be allowed: so a refusal for the address is one the
    /// client can authenticate.
    pub fn check(
        &self,
        from: Option<Ipv4Addr>,
        req: &Received,
        server: &Server,
    ) -> Result<(), Status> {
        match req.authentic(server, &self.key) {
            Ok(()) => {}
            Err(DecodeError::NoHash) => return Err(Status::BadRequest),
            Err(_) => return Err(Status::BadSecret),
        }
        if !self.allow.is_empty() && !from.is_some_and(|a| self.allow.contains(&a)) {
            return Err(Status::NotAllowed);
        }
        Ok(())
    }
}

/// How far a request's time may be from our clock, in seconds.
pub const MAX_SKEW_S: u32 = 300;
/// The most requests remembered. When it is reached and none is old
/// enough to forget, requests are refused (`Busy`) rather than one being
/// forgotten early, which would let its replay through.
pub const MAX_REMEMBERED: usize = 1 << 16;

/// The replay guard: a request is admitted once. It must be dated within
/// [`MAX_SKEW_S`] of our clock and not before this server started (a
/// request captured before a restart is refused: the new process has no
/// memory of it), and its (time, node, nonce) must not have been seen.
/// Seen requests are forgotten after twice the window (by our monotonic
/// clock), once the clock check refuses them anyway.
pub struct Replays {
    started: u32,
    seen: HashSet<(u32, u64, u32)>,
    order: VecDeque<(Instant, (u32, u64, u32))>,
}

/// `a - b` in seconds on the wrapping 32-bit clock.
fn diff(a: u32, b: u32) -> i64 {
    a.wrapping_sub(b) as i32 as i64
}

impl Replays {
    /// A guard for a server started at `started` (seconds since 1970).
    pub fn new(started: u32) -> Replays {
        Replays {
            started,
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Admits `req` at time `now` (seconds since 1970, mod 2^32; `at` on
    /// the monotonic clock), or says why not. Only authenticated requests
    /// may reach it: otherwise anyone could fill it.
    pub fn admit(&mut self, req: &Request, now: u32, at: Instant) -> Result<(), Status> {
        // One second of slack: clocks tick in whole seconds.
        if diff(req.time, now).abs() > MAX_SKEW_S as i64 || diff(req.time, self.started) < -1 {
            return Err(Status::ClockSkew);
        }
        let keep = std::time::Duration::from_secs(2 * MAX_SKEW_S as u64);
        while let Some((t, k)) = self.order.front() {
            if at.saturating_duration_since(*t) < keep {
                break;
            }
            self.seen.remove(k);
            self.order.pop_front();
        }
        let key = (req.time, req.node_id, req.nonce);
        if self.seen.contains(&key) {
            return Err(Status::Replayed);
        }
        if self.seen.len() >= MAX_REMEMBERED {
            return Err(Status::Busy);
        }
        self.seen.insert(key);
        self.order.push_back((at, key));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Connection requests per source address: a token bucket per address,
/// refilled at `rate` a second up to `burst`.
pub struct RateLimit {
    rate: f64,
    burst: f64,
    buckets: HashMap<Option<Ipv4Addr>, (f64, Instant)>,
}

/// Addresses tracked before idle (full) buckets are forgotten.
const MAX_TRACKED: usize = 4096;

impl RateLimit {
    pub fn new(rate: u32, burst: u32) -> RateLimit {
        RateLimit {
            rate: rate as f64,
            burst: burst.max(1) as f64,
            buckets: HashMap::new(),
        }
    }

    /// `--max-connects-per-s` a second, in bursts of twice that, or of two
    /// nodes' worth of queues if more (a node connects all its queues at
    /// once, and again after a fault).
    pub fn for_limits(l: &Limits) -> RateLimit {
        let burst = (2 * l.connects_per_s as usize).max(2 * l.max_queues_per_node);
        RateLimit::new(l.connects_per_s, burst.min(u32::MAX as usize) as u32)
    }

    /// Whether a request from `from` may go on now.
    pub fn allow(&mut self, from: Option<Ipv4Addr>, now: Instant) -> bool {
        let (rate, burst) = (self.rate, self.burst);
        let level = |(tokens, at): (f64, Instant)| {
            (tokens + now.saturating_duration_since(at).as_secs_f64() * rate).min(burst)
        };
        if self.buckets.len() >= MAX_TRACKED {
            self.buckets.retain(|_, b| level(*b) < burst);
        }
        let b = self.buckets.entry(from).or_insert((burst, now));
        let tokens = level(*b);
        if tokens >= 1.0 {
            *b = (tokens - 1.0, now);
            true
        } else {
            *b = (tokens, now);
            false
        }
    }
}

/// Seconds since 1970, mod 2^32: the protocol's clock.
pub fn now_s() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::NO_TOKEN;

    const NOW: u32 = 1_790_000_000;

    fn req(node: u64, time: u32, nonce: u32) -> Request {
        Request {
            queue: 0,
            node_id: node,
            want_mib: 1,
            release: false,
            upstream: false,
            time,
            nonce,
        }
    }

    const S: Server = [10, 77, 1, 2, 0x1d, 0x3f];

    fn received(secret: u8) -> Received {
        let s = req(1, NOW, 5)
            .seal(&S, &NO_TOKEN, &Key::new([secret; 16]))
            .unwrap();
        Request::decode(&s.bytes).unwrap()
    }

    const A: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);

    #[test]
    fn an_open_policy_is_refused() {
        assert!(Policy::default().validate().is_err());
    }

    #[test]
    fn debug_hides_the_secret() {
        let p = Policy::new(vec![A], Some([0xab; 16]));
        let d = format!("{p:?} {:?}", p.key());
        assert!(d.contains("<hidden>") && !d.contains("171"), "{d}");
    }

    #[test]
    fn allowlist_and_secret_are_both_enforced() {
        let p = Policy::new(vec![A], Some([5; 16]));
        assert!(p.validate().is_ok());
        assert_eq!(p.check(Some(A), &received(5), &S), Ok(()));
        assert_eq!(p.check(Some(B), &received(5), &S), Err(Status::NotAllowed));
        assert_eq!(p.check(None, &received(5), &S), Err(Status::NotAllowed));
        assert_eq!(p.check(Some(A), &received(6), &S), Err(Status::BadSecret));
        // The secret is checked first: a stranger learns nothing more.
        assert_eq!(p.check(Some(B), &received(6), &S), Err(Status::BadSecret));
    }

    #[test]
    fn secret_only_admits_any_address() {
        let p = Policy::new(vec![], Some([5; 16]));
        assert_eq!(p.check(Some(B), &received(5), &S), Ok(()));
        assert_eq!(p.check(Some(B), &received(4), &S), Err(Status::BadSecret));
    }

    #[test]
    fn without_a_secret_the_zero_key_is_used() {
        let p = Policy::new(vec![A], None);
        assert_eq!(p.check(Some(A), &received(0), &S), Ok(()));
        assert_eq!(p.check(Some(A), &received(5), &S), Err(Status::BadSecret));
    }

    #[test]
    fn connects_are_limited_per_address() {
        let t = Instant::now();
        let mut r = RateLimit::new(10, 20);
        assert!((0..20).all(|_| r.allow(Some(A), t)));
        assert!(!r.allow(Some(A), t));
        // Another address has its own bucket.
        assert!(r.allow(Some(B), t));
        // A tenth of a second refills one.
        let later = t + std::time::Duration::from_millis(100);
        assert!(r.allow(Some(A), later));
        assert!(!r.allow(Some(A), later));
        // A node's queues always fit in a burst.
        let l = Limits {
            max_nodes: 1,
            max_queues_per_node: 256,
            max_pending: 1,
            connects_per_s: 5,
        };
        let mut r = RateLimit::for_limits(&l);
        assert!((0..512).all(|_| r.allow(Some(A), t)));
        assert!(!r.allow(Some(A), t));
    }

    #[test]
    fn a_request_is_admitted_once() {
        let at = Instant::now();
        let mut r = Replays::new(NOW - 1000);
        assert_eq!(r.admit(&req(1, NOW, 7), NOW, at), Ok(()));
        assert_eq!(
            r.admit(&req(1, NOW, 7), NOW + 10, at),
            Err(Status::Replayed)
        );
        // Another nonce, node or time is another request.
        assert_eq!(r.admit(&req(1, NOW, 8), NOW, at), Ok(()));
        assert_eq!(r.admit(&req(2, NOW, 7), NOW, at), Ok(()));
        assert_eq!(r.admit(&req(1, NOW + 1, 7), NOW, at), Ok(()));
        assert_eq!(r.seen.len(), 4);
    }

    #[test]
    fn the_clock_bounds_what_is_remembered() {
        let at = Instant::now();
        let mut r = Replays::new(NOW - 1000);
        assert_eq!(
            r.admit(&req(1, NOW - 301, 1), NOW, at),
            Err(Status::ClockSkew)
        );
        assert_eq!(
            r.admit(&req(1, NOW + 301, 1), NOW, at),
            Err(Status::ClockSkew)
        );
        assert_eq!(r.admit(&req(1, NOW - 300, 1), NOW, at), Ok(()));
        assert_eq!(r.admit(&req(1, NOW + 300, 1), NOW, at), Ok(()));
        // Forgotten after twice the window; the clock refuses it by then.
        let later = at + std::time::Duration::from_secs(601);
        assert_eq!(r.admit(&req(2, NOW + 601, 1), NOW + 601, later), Ok(()));
        assert_eq!(r.seen.len(), 1);
        assert_eq!(
            r.admit(&req(1, NOW + 300, 1), NOW + 601, later),
            Err(Status::ClockSkew)
        );
        // Across the wrap of the 32-bit clock.
        let mut w = Replays::new(u32::MAX - 10);
        assert_eq!(w.admit(&req(1, u32::MAX, 1), 3, at), Ok(()));
        assert_eq!(w.admit(&req(1, u32::MAX, 1), 4, at), Err(Status::Replayed));
    }

    #[test]
    fn a_request_from_before_a_restart_is_refused() {
        let at = Instant::now();
        let mut r = Replays::new(NOW);
        assert_eq!(
            r.admit(&req(1, NOW - 2, 1), NOW + 5, at),
            Err(Status::ClockSkew)
        );
        assert_eq!(r.admit(&req(1, NOW - 1, 1), NOW + 5, at), Ok(()));
    }

    #[test]
    fn a_full_guard_refuses_rather_than_forgets() {
        let at = Instant::now();
        let mut r = Replays::new(NOW - 1000);
        for n in 0..MAX_REMEMBERED as u32 {
            assert_eq!(r.admit(&req(1, NOW, n), NOW, at), Ok(()));
        }
        assert_eq!(r.admit(&req(2, NOW, 0), NOW, at), Err(Status::Busy));
        assert_eq!(r.admit(&req(1, NOW, 0), NOW, at), Err(Status::Replayed));
    }
}
