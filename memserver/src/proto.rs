//! The connection protocol between rswap_rdma (kernel) and memserver,
//! carried in RDMA CM private data. Little-endian, fixed layout.
//!
//! This file is the one source of the protocol. memserver compiles it as
//! its `proto` module, and the kernel module rswap_rdma includes the same
//! file (`#[path = "../memserver/src/proto.rs"] mod proto;` in
//! rswap_rdma_main.rs), so the two sides cannot drift. It therefore uses
//! `core` only (no allocation, no std), never panics on foreign input,
//! and must build with the kernel's rustc (1.63).
//!
//! Request (client -> server, in the connect request), 56 bytes (the most
//! an RDMA_PS_TCP connect request carries):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `RSWP` (0x50575352) |
//! | 4 | 2 | version (4) |
//! | 6 | 2 | queue index of this connection |
//! | 8 | 8 | node id: identifies the compute node across its queues |
//! | 16 | 4 | MiB of remote memory wanted |
//! | 20 | 4 | flags: bit 0 = release, bit 1 = session, bit 2 = upstream (see below); other bits 0 |
//! | 24 | 4 | time: the client's clock, seconds since 1970 (mod 2^32) |
//! | 28 | 4 | nonce: random, fresh for every request |
//! | 32 | 8 | session proof: `H(session label, server, token, bytes 0..32)[..8]`, zero without a session |
//! | 40 | 16 | MAC: `H(request label, server, bytes 0..40)[..16]` |
//!
//! `server` is the address the client dialled, as IPv4 then port (6
//! bytes, network order), covered by the MACs but not sent: a request
//! captured on its way to one server is worthless at another.
//!
//! Reply (server -> client, in the accept or reject), 64 bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic |
//! | 4 | 2 | version |
//! | 6 | 2 | status (see [`Status`]) |
//! | 8 | 4 | rkey of the node's region |
//! | 12 | 4 | time: the server's clock, seconds since 1970 (mod 2^32) |
//! | 16 | 8 | remote address of the region |
//! | 24 | 8 | region size in bytes |
//! | 32 | 16 | session token of the node, masked: `token ^ H(token label, request MAC)[..16]`; zero unless the status is `Ok` |
//! | 48 | 16 | MAC: `H(reply label, request MAC, bytes 0..48)[..16]` |
//!
//! Authentication: `H` is HMAC-SHA256 keyed with the shared secret (all
//! zero when none is configured), each label a distinct ASCII string, so
//! no MAC can stand for another. The secret never travels. A server
//! admits a request only if its MAC verifies; the client accepts a reply
//! only if its MAC verifies, which proves the server knows the secret and
//! that nothing in the reply (region, rkey, status, token) was changed on
//! the way. The reply's MAC covers the request's MAC, so an old reply
//! cannot answer a new request. A refusal sent before the request's MAC
//! was verified (rate limit, wrong secret) is sealed over an all-zero
//! request MAC instead: the client cannot authenticate it, and reads its
//! status only as a claim ([`Reply::claimed_status`]); so the server never
//! seals anything bound to a MAC it has not verified.
//!
//! Replay: the MAC covers the time, the nonce and the server. A server
//! refuses a request whose time is off its own clock by more than its
//! allowed skew, or earlier than its own start ([`Status::ClockSkew`]; the
//! reply's time lets the client log by how much), and remembers the
//! authenticated requests it saw within that window, refusing a second
//! request with the same time and nonce ([`Status::Replayed`]).
//!
//! Sessions: a node's first admission creates a session with a random
//! 128-bit token, sent masked in every grant to the node (its queues
//! check they joined the same session). Every later connection
//! of the node (more queues, and reconnects after a fault while the server
//! keeps the region) sets the session flag and proves the token without
//! sending it; a connection claiming a node id in use without a valid
//! proof is refused with [`Status::NodeInUse`]. A client whose proof the
//! server cannot check (the server restarted, or the grace period passed)
//! is admitted as a new session with a new token and a new, empty region:
//! a different token tells the client that whatever it kept at that
//! server is gone. The mask hides the token from whoever does not know
//! the secret; a holder of the secret that sees a grant on the wire can
//! unmask it (one secret is shared by all compute nodes).
//!
//! Release: a node that leaves for good (rswap_rdma unloading) sends one
//! more request with the release flag and its session proof. The server
//! frees the node's region at once, instead of keeping it for the grace
//! period, and rejects the connection with an `Ok` status: nothing is
//! connected.
//!
//! Upstream: a memory node may re-export the memory of an upstream
//! memory node alongside its own (the design's a-b-c chain: compute node
//! a, memory node b, upstream c). A request with the upstream flag asks
//! b where its upstream is; b rejects it with [`Status::Upstream`], the
//! upstream's IPv4 address and port in the region-address field (bytes
//! 16..22, network order, all zero when b has none). The reply is MACed
//! like any other, so nobody without the secret can redirect a node's
//! pages. The compute node then connects to c as to any server, over the
//! route its network gives, through b in a chain (b forwards the RDMA
//! packets): b keeps no copy of c's pages,
//! so a page read through b comes from c's memory itself and cannot be
//! stale, and c grants, accounts and frees the node's region as it does
//! for a direct node.
//!
//! memserver decodes requests and encodes replies; rswap_rdma and
//! rswap-probe do the other half. Each side brings its own HMAC-SHA256
//! ([`Mac`]): the kernel's crypto API in rswap_rdma, a Rust crate in
//! memserver. The transport may pad private data, so longer input is
//! accepted.

/// The first four bytes of every request and reply: `RSWP`.
pub const MAGIC: u32 = 0x5057_5352;
/// The protocol version this file speaks.
pub const VERSION: u16 = 4;
/// Bytes in an encoded request.
pub const REQUEST_LEN: usize = 56;
/// Bytes in an encoded reply.
pub const REPLY_LEN: usize = 64;
/// Bytes in the shared secret.
pub const SECRET_LEN: usize = 16;
/// Bytes in a session token.
pub const TOKEN_LEN: usize = 16;
/// A node's session at a server; all zero means none yet.
pub type Token = [u8; TOKEN_LEN];
/// The token of a node that has no session yet.
pub const NO_TOKEN: Token = [0; TOKEN_LEN];
/// Bytes in an HMAC-SHA256 digest.
pub const DIGEST_LEN: usize = 32;
/// Bytes of a MAC on the wire (the digest, truncated).
pub const TAG_LEN: usize = 16;
/// A request's or reply's MAC.
pub type Tag = [u8; TAG_LEN];
/// Bytes of a session proof.
pub const PROOF_LEN: usize = 8;
/// The server a request is meant for: IPv4 address then port, network
/// order.
pub type Server = [u8; 6];
/// The request MAC a refusal is sealed over when the request's own MAC
/// was not verified.
pub const UNVERIFIED: Tag = [0; TAG_LEN];

/// `server` as the MACs cover it.
pub fn server_id(ip: [u8; 4], port: u16) -> Server {
    let p = port.to_be_bytes();
    [ip[0], ip[1], ip[2], ip[3], p[0], p[1]]
}

const LABEL_REQUEST: &[u8] = b"rswap v3 request";
const LABEL_SESSION: &[u8] = b"rswap v3 session";
const LABEL_TOKEN: &[u8] = b"rswap v3 token";
const LABEL_REPLY: &[u8] = b"rswap v3 reply";

const FLAG_RELEASE: u32 = 1;
const FLAG_SESSION: u32 = 2;
const FLAG_UPSTREAM: u32 = 4;

/// HMAC-SHA256 keyed with the shared secret, over the concatenation of
/// `parts`; `None` if the hash could not be computed (the caller then
/// refuses). Each side implements it with its own crypto.
pub trait Mac {
    /// The digest of `parts`, concatenated.
    fn hmac(&self, parts: &[&[u8]]) -> Option<[u8; DIGEST_LEN]>;
}

/// What a compute node asks of a server, once per queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Index of this connection among the node's queues.
    pub queue: u16,
    /// The compute node, the same on all its queues.
    pub node_id: u64,
    /// Remote memory wanted, in MiB.
    pub want_mib: u32,
    /// The node leaves: free its region now (no queue is opened).
    pub release: bool,
    /// The node asks where the server's upstream is (no queue is opened).
    pub upstream: bool,
    /// The client's clock when it made the request, seconds since 1970.
    pub time: u32,
    /// Random, fresh for every request.
    pub nonce: u32,
}

/// The server's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Status {
    /// Admitted: the reply carries the region.
    Ok = 0,
    /// The request was malformed, or the server failed to serve it.
    BadRequest = 1,
    /// The request's MAC did not verify: another secret.
    BadSecret = 2,
    /// The source address is not in the server's allow list.
    NotAllowed = 3,
    /// No room: the pool is full or a limit was reached.
    NoSpace = 4,
    /// The node id is in use by a session whose token was not proven.
    NodeInUse = 5,
    /// The same request (time and nonce) was admitted before: a replay.
    Replayed = 6,
    /// The request's time is too far from the server's clock.
    ClockSkew = 7,
    /// Too many connection requests from the client's address: retry
    /// later.
    Busy = 8,
    /// The answer to an upstream request: the reply names the server's
    /// upstream ([`Reply::upstream_server`]).
    Upstream = 9,
}

impl Status {
    /// The status with wire value `v`, if there is one.
    pub fn from_u16(v: u16) -> Option<Status> {
        Some(match v {
            0 => Status::Ok,
            1 => Status::BadRequest,
            2 => Status::BadSecret,
            3 => Status::NotAllowed,
            4 => Status::NoSpace,
            5 => Status::NodeInUse,
            6 => Status::Replayed,
            7 => Status::ClockSkew,
            8 => Status::Busy,
            9 => Status::Upstream,
            _ => return None,
        })
    }
}

/// The server's reply: a status and, when admitted, the granted region
/// and the node's session token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Admitted or why not.
    pub status: Status,
    /// rkey of the node's region.
    pub rkey: u32,
    /// Remote address of the region.
    pub addr: u64,
    /// Size of the region in bytes.
    pub size: u64,
    /// The node's session token ([`NO_TOKEN`] in a refusal).
    pub token: Token,
    /// The server's clock, seconds since 1970.
    pub time: u32,
}

// Never print the token.
impl core::fmt::Debug for Reply {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("rkey", &self.rkey)
            .field("addr", &self.addr)
            .field("size", &self.size)
            .field("time", &self.time)
            .finish_non_exhaustive()
    }
}

/// Why private data is not a valid request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the message needs.
    Short {
        /// Bytes received.
        len: usize,
        /// Bytes needed.
        want: usize,
    },
    /// Not the rswap magic.
    Magic(u32),
    /// Another protocol version.
    Version(u16),
    /// A status this version does not know.
    Status(u16),
    /// The MAC does not verify: the sender has another secret, or the
    /// message was changed on the way.
    NotAuthentic,
    /// The MAC could not be computed (our hash failed).
    NoHash,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            DecodeError::Short { len, want } => {
                write!(f, "private data is {} bytes, want {}", len, want)
            }
            DecodeError::Magic(m) => write!(f, "bad magic {:#x}", m),
            DecodeError::Version(v) => write!(f, "protocol version {}, want {}", v, VERSION),
            DecodeError::Status(s) => write!(f, "unknown status {}", s),
            DecodeError::NotAuthentic => write!(
                f,
                "MAC does not verify (another secret, or changed on the way)"
            ),
            DecodeError::NoHash => write!(f, "HMAC-SHA256 failed"),
        }
    }
}

// Readers of little-endian fields; callers check the length first, and
// these return 0 rather than panic if they did not.
fn u16_at(b: &[u8], o: usize) -> u16 {
    b.get(o..o + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    b.get(o..o + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    b.get(o..o + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Checks length, magic and version of a message of `want` bytes.
fn check_header(b: &[u8], want: usize) -> Result<(), DecodeError> {
    if b.len() < want {
        return Err(DecodeError::Short { len: b.len(), want });
    }
    if u32_at(b, 0) != MAGIC {
        return Err(DecodeError::Magic(u32_at(b, 0)));
    }
    if u16_at(b, 4) != VERSION {
        return Err(DecodeError::Version(u16_at(b, 4)));
    }
    Ok(())
}

fn put_header(b: &mut [u8]) {
    b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    b[4..6].copy_from_slice(&VERSION.to_le_bytes());
}

/// The first `N` bytes of `H(parts)`.
fn hmac_prefix<const N: usize>(mac: &dyn Mac, parts: &[&[u8]]) -> Option<[u8; N]> {
    let d = mac.hmac(parts)?;
    let mut out = [0u8; N];
    out.copy_from_slice(&d[..N]);
    Some(out)
}

/// A request as sent: its bytes, and its MAC, which the reply answers.
#[derive(Clone, Copy)]
pub struct Sealed {
    /// The private data of the connect request.
    pub bytes: [u8; REQUEST_LEN],
    /// The request's MAC, to open the reply with.
    pub tag: Tag,
}

impl Sealed {
    /// The time the request carries (the client's clock when sealed).
    pub fn time(&self) -> u32 {
        u32_at(&self.bytes, 24)
    }
}

/// A request as received, decoded but not yet authenticated: the fields
/// name the node for the log, [`Received::authentic`] says whether to
/// believe them.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// The request's fields, as claimed.
    pub req: Request,
    /// The client claims a session (and proves it, see [`Received::proves`]).
    pub session: bool,
    bytes: [u8; REQUEST_LEN],
}

impl Request {
    /// Encodes and authenticates the request for `server`; `token` is the
    /// node's session token there ([`NO_TOKEN`] for none: no session
    /// proof).
    pub fn seal(&self, server: &Server, token: &Token, mac: &dyn Mac) -> Option<Sealed> {
        let mut b = [0u8; REQUEST_LEN];
        put_header(&mut b);
        b[6..8].copy_from_slice(&self.queue.to_le_bytes());
        b[8..16].copy_from_slice(&self.node_id.to_le_bytes());
        b[16..20].copy_from_slice(&self.want_mib.to_le_bytes());
        let session = *token != NO_TOKEN;
        let flags = if self.release { FLAG_RELEASE } else { 0 }
            | if session { FLAG_SESSION } else { 0 }
            | if self.upstream { FLAG_UPSTREAM } else { 0 };
        b[20..24].copy_from_slice(&flags.to_le_bytes());
        b[24..28].copy_from_slice(&self.time.to_le_bytes());
        b[28..32].copy_from_slice(&self.nonce.to_le_bytes());
        if session {
            let proof: [u8; PROOF_LEN] =
                hmac_prefix(mac, &[LABEL_SESSION, server, token, &b[..32]])?;
            b[32..40].copy_from_slice(&proof);
        }
        let tag: Tag = hmac_prefix(mac, &[LABEL_REQUEST, server, &b[..40]])?;
        b[40..56].copy_from_slice(&tag);
        Some(Sealed { bytes: b, tag })
    }

    /// Decodes a request from private data (not authenticated yet).
    pub fn decode(b: &[u8]) -> Result<Received, DecodeError> {
        check_header(b, REQUEST_LEN)?;
        let mut bytes = [0u8; REQUEST_LEN];
        bytes.copy_from_slice(&b[..REQUEST_LEN]);
        let flags = u32_at(b, 20);
        Ok(Received {
            req: Request {
                queue: u16_at(b, 6),
                node_id: u64_at(b, 8),
                want_mib: u32_at(b, 16),
                release: flags & FLAG_RELEASE != 0,
                upstream: flags & FLAG_UPSTREAM != 0,
                time: u32_at(b, 24),
                nonce: u32_at(b, 28),
            },
            session: flags & FLAG_SESSION != 0,
            bytes,
        })
    }
}

impl Received {
    /// Whether the request's MAC, for us (`server`), verifies under our
    /// secret.
    pub fn authentic(&self, server: &Server, mac: &dyn Mac) -> Result<(), DecodeError> {
        let want: Tag = hmac_prefix(mac, &[LABEL_REQUEST, server, &self.bytes[..40]])
            .ok_or(DecodeError::NoHash)?;
        if ct_eq(&want, &self.bytes[40..56]) {
            Ok(())
        } else {
            Err(DecodeError::NotAuthentic)
        }
    }

    /// Whether the request proves the session `token` at `server`.
    pub fn proves(&self, server: &Server, token: &Token, mac: &dyn Mac) -> bool {
        if !self.session || *token == NO_TOKEN {
            return false;
        }
        let want: Option<[u8; PROOF_LEN]> =
            hmac_prefix(mac, &[LABEL_SESSION, server, token, &self.bytes[..32]]);
        // Not is_some_and: newer than the kernel's rustc.
        match want {
            Some(w) => ct_eq(&w, &self.bytes[32..40]),
            None => false,
        }
    }

    /// The request's MAC: the reply must answer it.
    pub fn tag(&self) -> Tag {
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(&self.bytes[40..56]);
        t
    }
}

impl Reply {
    /// A refusal with `status` and no region.
    pub fn refusal(status: Status, time: u32) -> Reply {
        Reply {
            status,
            rkey: 0,
            addr: 0,
            size: 0,
            token: NO_TOKEN,
            time,
        }
    }

    /// The answer to an upstream request: `up` is the upstream server,
    /// `None` if there is none.
    pub fn upstream(up: Option<Server>, time: u32) -> Reply {
        let mut a = [0u8; 8];
        if let Some(s) = up {
            a[..6].copy_from_slice(&s);
        }
        Reply {
            addr: u64::from_le_bytes(a),
            ..Reply::refusal(Status::Upstream, time)
        }
    }

    /// The upstream server an upstream answer names, if any.
    pub fn upstream_server(&self) -> Option<Server> {
        let a = self.addr.to_le_bytes();
        let mut s = [0u8; 6];
        s.copy_from_slice(&a[..6]);
        (self.status == Status::Upstream && s != [0; 6]).then_some(s)
    }

    /// Encodes and authenticates the reply to the request whose MAC is
    /// `request` ([`UNVERIFIED`] unless that MAC verified). Only a grant
    /// carries the token; a refusal carries zeros there.
    pub fn seal(&self, request: &Tag, mac: &dyn Mac) -> Option<[u8; REPLY_LEN]> {
        let mut b = [0u8; REPLY_LEN];
        put_header(&mut b);
        b[6..8].copy_from_slice(&(self.status as u16).to_le_bytes());
        b[8..12].copy_from_slice(&self.rkey.to_le_bytes());
        b[12..16].copy_from_slice(&self.time.to_le_bytes());
        b[16..24].copy_from_slice(&self.addr.to_le_bytes());
        b[24..32].copy_from_slice(&self.size.to_le_bytes());
        if self.status == Status::Ok {
            let mask: Token = hmac_prefix(mac, &[LABEL_TOKEN, request])?;
            for (i, (t, m)) in self.token.iter().zip(mask.iter()).enumerate() {
                b[32 + i] = t ^ m;
            }
        }
        let tag: Tag = hmac_prefix(mac, &[LABEL_REPLY, request, &b[..48]])?;
        b[48..64].copy_from_slice(&tag);
        Some(b)
    }

    /// Opens the reply to our request whose MAC is `request`. The region is
    /// not checked here: a client must check that it does not overflow
    /// before using it.
    pub fn open(b: &[u8], request: &Tag, mac: &dyn Mac) -> Result<Reply, DecodeError> {
        check_header(b, REPLY_LEN)?;
        let want: Tag =
            hmac_prefix(mac, &[LABEL_REPLY, request, &b[..48]]).ok_or(DecodeError::NoHash)?;
        if !ct_eq(&want, &b[48..64]) {
            return Err(DecodeError::NotAuthentic);
        }
        let status = Status::from_u16(u16_at(b, 6)).ok_or(DecodeError::Status(u16_at(b, 6)))?;
        let mut token = NO_TOKEN;
        if status == Status::Ok {
            let mask: Token =
                hmac_prefix(mac, &[LABEL_TOKEN, request]).ok_or(DecodeError::NoHash)?;
            for (i, t) in token.iter_mut().enumerate() {
                *t = b[32 + i] ^ mask[i];
            }
        }
        Ok(Reply {
            status,
            rkey: u32_at(b, 8),
            addr: u64_at(b, 16),
            size: u64_at(b, 24),
            token,
            time: u32_at(b, 12),
        })
    }

    /// The status a reply claims, without authenticating it: for the log
    /// of a client whose reply did not verify ("the server says ...").
    pub fn claimed_status(b: &[u8]) -> Option<Status> {
        check_header(b, REPLY_LEN).ok()?;
        Status::from_u16(u16_at(b, 6))
    }
}

/// Parses a secret given as 32 hex digits (surrounding white space and a
/// trailing newline allowed, as in a secret file).
pub fn parse_secret(hex: &[u8]) -> Option<[u8; SECRET_LEN]> {
    // Trim by hand: `<[u8]>::trim_ascii` is newer than the kernel's rustc.
    let start = hex
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(hex.len());
    let end = hex
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    let hex = &hex[start..end];
    if hex.len() != 2 * SECRET_LEN {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16);
    let mut s = [0u8; SECRET_LEN];
    for (i, byte) in s.iter_mut().enumerate() {
        *byte = (digit(hex[2 * i])? * 16 + digit(hex[2 * i + 1])?) as u8;
    }
    Some(s)
}

/// Compares secrets or MACs without an early exit on the first differing
/// byte; slices of different lengths are unequal.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Key;

    const NOW: u32 = 1_790_000_000;
    const S: Server = [10, 77, 1, 2, 0x1d, 0x3f];

    fn req() -> Request {
        Request {
            queue: 3,
            node_id: 0xdead_beef_0001,
            want_mib: 256,
            release: false,
            upstream: false,
            time: NOW,
            nonce: 0x1234_5678,
        }
    }

    fn key(b: u8) -> Key {
        Key::new([b; SECRET_LEN])
    }

    #[test]
    fn request_round_trips_and_authenticates() {
        let k = key(7);
        let s = req().seal(&S, &NO_TOKEN, &k).unwrap();
        assert_eq!(&s.bytes[0..4], b"RSWP");
        let r = Request::decode(&s.bytes).unwrap();
        assert_eq!(r.req, req());
        assert!(!r.session);
        assert_eq!(r.authentic(&S, &k), Ok(()));
        assert_eq!(r.tag(), s.tag);
        let rel = Request {
            release: true,
            ..req()
        };
        assert!(
            Request::decode(&rel.seal(&S, &NO_TOKEN, &k).unwrap().bytes)
                .unwrap()
                .req
                .release
        );
    }

    #[test]
    fn the_secret_never_travels() {
        let s = req().seal(&S, &[9; 16], &key(7)).unwrap();
        assert!(!s.bytes.windows(4).any(|w| w == [7; 4]));
        assert!(!s.bytes.windows(4).any(|w| w == [9; 4]));
    }

    #[test]
    fn another_secret_or_any_changed_byte_is_refused() {
        let s = req().seal(&S, &NO_TOKEN, &key(7)).unwrap();
        let r = Request::decode(&s.bytes).unwrap();
        assert_eq!(r.authentic(&S, &key(8)), Err(DecodeError::NotAuthentic));
        for i in 6..REQUEST_LEN {
            let mut b = s.bytes;
            b[i] ^= 0x10;
            let r = Request::decode(&b).unwrap();
            assert_eq!(
                r.authentic(&S, &key(7)),
                Err(DecodeError::NotAuthentic),
                "byte {i}"
            );
        }
    }

    #[test]
    fn a_session_is_proven_only_with_its_token() {
        let k = key(7);
        let token = [9; 16];
        let r = Request::decode(&req().seal(&S, &token, &k).unwrap().bytes).unwrap();
        assert!(r.session);
        assert_eq!(r.authentic(&S, &k), Ok(()));
        assert!(r.proves(&S, &token, &k));
        assert!(!r.proves(&S, &[8; 16], &k));
        assert!(!r.proves(&S, &token, &key(8)));
        assert!(!r.proves(&S, &NO_TOKEN, &k));
        let none = Request::decode(&req().seal(&S, &NO_TOKEN, &k).unwrap().bytes).unwrap();
        assert!(!none.proves(&S, &token, &k));
    }

    #[test]
    fn a_request_is_bound_to_its_server() {
        let k = key(7);
        let token = [9; 16];
        let r = Request::decode(&req().seal(&S, &token, &k).unwrap().bytes).unwrap();
        let other = server_id([10, 77, 2, 2], 7471);
        assert_eq!(server_id([10, 77, 1, 2], 0x1d3f), S);
        assert_eq!(r.authentic(&other, &k), Err(DecodeError::NotAuthentic));
        assert!(!r.proves(&other, &token, &k));
    }

    #[test]
    fn padded_private_data_is_accepted() {
        let k = key(7);
        let mut v = req().seal(&S, &NO_TOKEN, &k).unwrap().bytes.to_vec();
        v.resize(64, 0);
        let r = Request::decode(&v).unwrap();
        assert_eq!(r.req, req());
        assert_eq!(r.authentic(&S, &k), Ok(()));
    }

    #[test]
    fn bad_requests_are_named() {
        let b = req().seal(&S, &NO_TOKEN, &key(7)).unwrap().bytes;
        assert!(Request::decode(&b[..20])
            .unwrap_err()
            .to_string()
            .contains("bytes"));
        let mut m = b;
        m[0] = 0;
        assert!(Request::decode(&m)
            .unwrap_err()
            .to_string()
            .contains("magic"));
        let mut v = b;
        v[4] = 9;
        assert!(Request::decode(&v)
            .unwrap_err()
            .to_string()
            .contains("version"));
    }

    fn grant() -> Reply {
        Reply {
            status: Status::Ok,
            rkey: 0x1234,
            addr: 0x7f00_0000_1000,
            size: 1 << 28,
            token: [3; 16],
            time: NOW + 1,
        }
    }

    #[test]
    fn reply_round_trips_and_authenticates() {
        let k = key(7);
        let tag = req().seal(&S, &NO_TOKEN, &k).unwrap().tag;
        let b = grant().seal(&tag, &k).unwrap();
        assert_eq!(Reply::open(&b, &tag, &k).unwrap(), grant());
        assert!(!format!("{:?}", grant()).contains("3, 3"));
        // The token is masked on the wire.
        assert!(!b.windows(4).any(|w| w == [3; 4]));
        let n = Reply::refusal(Status::NoSpace, NOW);
        let nb = n.seal(&tag, &k).unwrap();
        let opened = Reply::open(&nb, &tag, &k).unwrap();
        assert_eq!(opened.status, Status::NoSpace);
        // A refusal carries no token, and no mask either.
        assert_eq!(opened.token, NO_TOKEN);
        assert_eq!(&nb[32..48], &[0; 16]);
        let with_token = Reply {
            token: [3; 16],
            ..n
        };
        assert_eq!(&with_token.seal(&tag, &k).unwrap()[32..48], &[0; 16]);
        // Sealed over an unverified request: the client cannot open it,
        // and reads the status only as a claim.
        let u = n.seal(&UNVERIFIED, &k).unwrap();
        assert_eq!(Reply::open(&u, &tag, &k), Err(DecodeError::NotAuthentic));
        assert_eq!(Reply::claimed_status(&u), Some(Status::NoSpace));
        assert_eq!(Reply::claimed_status(&nb), Some(Status::NoSpace));
        assert!(Reply::open(&[0u8; 3], &tag, &k).is_err());
    }

    #[test]
    fn a_tampered_impostors_or_old_reply_is_refused() {
        let k = key(7);
        let tag = req().seal(&S, &NO_TOKEN, &k).unwrap().tag;
        let b = grant().seal(&tag, &k).unwrap();
        for i in 6..REPLY_LEN {
            let mut t = b;
            t[i] ^= 1;
            assert_eq!(
                Reply::open(&t, &tag, &k),
                Err(DecodeError::NotAuthentic),
                "byte {i}"
            );
        }
        // A server without our secret.
        let imp = grant().seal(&tag, &key(8)).unwrap();
        assert_eq!(Reply::open(&imp, &tag, &k), Err(DecodeError::NotAuthentic));
        // A reply to another request (a replayed reply).
        let other = Request { nonce: 1, ..req() };
        let tag2 = other.seal(&S, &NO_TOKEN, &k).unwrap().tag;
        assert_eq!(Reply::open(&b, &tag2, &k), Err(DecodeError::NotAuthentic));
    }

    #[test]
    fn the_upstream_question_and_answer_round_trip() {
        let k = key(7);
        let ask = Request {
            upstream: true,
            ..req()
        };
        let s = ask.seal(&S, &NO_TOKEN, &k).unwrap();
        let r = Request::decode(&s.bytes).unwrap();
        assert!(r.req.upstream && !r.req.release);
        assert_eq!(r.authentic(&S, &k), Ok(()));
        let c = server_id([10, 77, 3, 2], 7471);
        let b = Reply::upstream(Some(c), NOW).seal(&s.tag, &k).unwrap();
        let got = Reply::open(&b, &s.tag, &k).unwrap();
        assert_eq!(got.status, Status::Upstream);
        assert_eq!(got.upstream_server(), Some(c));
        assert_eq!(got.token, NO_TOKEN);
        let none = Reply::upstream(None, NOW).seal(&s.tag, &k).unwrap();
        assert_eq!(
            Reply::open(&none, &s.tag, &k).unwrap().upstream_server(),
            None
        );
        // Only an upstream answer names one.
        let g = Reply::open(&grant().seal(&s.tag, &k).unwrap(), &s.tag, &k).unwrap();
        assert_eq!(g.upstream_server(), None);
        // Nobody on the way can point the node elsewhere.
        let mut t = b;
        t[16] ^= 1;
        assert_eq!(Reply::open(&t, &s.tag, &k), Err(DecodeError::NotAuthentic));
    }

    #[test]
    fn secrets_parse_and_compare() {
        let s = parse_secret(b"000102030405060708090a0b0c0d0e0f\n").unwrap();
        assert_eq!(s[15], 15);
        assert!(parse_secret(b"abc").is_none());
        assert!(parse_secret(b"zz0102030405060708090a0b0c0d0e0f").is_none());
        assert!(ct_eq(&s, &s));
        let mut t = s;
        t[9] ^= 1;
        assert!(!ct_eq(&s, &t));
        assert!(!ct_eq(&s, &s[..15]));
    }
}
