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
//! | 4 | 2 | version (1) |
//! | 6 | 2 | queue index of this connection |
//! | 8 | 8 | node id: identifies the compute node across its queues |
//! | 16 | 4 | MiB of remote memory wanted |
//! | 20 | 4 | flags: bit 0 = release (see below); other bits 0 |
//! | 24 | 16 | shared secret |
//! | 40 | 16 | session token: zero on the node's first connection, then the one its server gave it |
//!
//! Reply (server -> client, in the accept or reject), 48 bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic |
//! | 4 | 2 | version |
//! | 6 | 2 | status (see [`Status`]) |
//! | 8 | 4 | rkey of the node's region |
//! | 12 | 4 | reserved, 0 |
//! | 16 | 8 | remote address of the region |
//! | 24 | 8 | region size in bytes |
//! | 32 | 16 | session token of the node (zero in a refusal) |
//!
//! Sessions: a node's first admission creates a session with a random
//! token, returned only in that reply. Every later connection of the node
//! (more queues, and reconnects after a fault while the server keeps the
//! region) must present it; a connection claiming a node id in use without
//! it is refused with [`Status::NodeInUse`]. A client that presents a
//! token the server does not know (the server restarted, or the grace
//! period passed) is admitted as a new session with a new token and a new,
//! empty region: a different token tells the client that whatever it kept
//! at that server is gone.
//!
//! Release: a node that leaves for good (rswap_rdma unloading) sends one
//! more request with the release flag and its token. The server frees the
//! node's region at once, instead of keeping it for the grace period, and
//! rejects the connection with an `Ok` status: nothing is connected.
//!
//! memserver decodes requests and encodes replies; rswap_rdma and
//! rswap-probe do the other half. The transport may pad private data, so
//! longer input is accepted.

/// The first four bytes of every request and reply: `RSWP`.
pub const MAGIC: u32 = 0x5057_5352;
/// The protocol version this file speaks.
pub const VERSION: u16 = 2;
/// Bytes in an encoded request.
pub const REQUEST_LEN: usize = 56;
/// Bytes in an encoded reply.
pub const REPLY_LEN: usize = 48;
/// Bytes in the shared secret.
pub const SECRET_LEN: usize = 16;
/// Bytes in a session token.
pub const TOKEN_LEN: usize = 16;
/// A node's session at a server; all zero means none yet.
pub type Token = [u8; TOKEN_LEN];
/// The token of a node that has no session yet.
pub const NO_TOKEN: Token = [0; TOKEN_LEN];

/// What a compute node asks of a server, once per queue.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// Index of this connection among the node's queues.
    pub queue: u16,
    /// The compute node, the same on all its queues.
    pub node_id: u64,
    /// Remote memory wanted, in MiB.
    pub want_mib: u32,
    /// The shared secret.
    pub secret: [u8; SECRET_LEN],
    /// The node's session token, [`NO_TOKEN`] on its first connection.
    pub token: Token,
    /// The node leaves: free its region now (no queue is opened).
    pub release: bool,
}

// Never print the secret or the token.
impl core::fmt::Debug for Request {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Request")
            .field("queue", &self.queue)
            .field("node_id", &self.node_id)
            .field("want_mib", &self.want_mib)
            .field("has_token", &(self.token != NO_TOKEN))
            .field("release", &self.release)
            .finish_non_exhaustive()
    }
}

/// The server's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Status {
    /// Admitted: the reply carries the region.
    Ok = 0,
    /// The request was malformed, or the server failed to serve it.
    BadRequest = 1,
    /// The secret did not match.
    BadSecret = 2,
    /// The source address is not in the server's allow list.
    NotAllowed = 3,
    /// No room: the pool is full or a limit was reached.
    NoSpace = 4,
    /// The node id is in use by a session whose token was not presented.
    NodeInUse = 5,
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
}

// Never print the token.
impl core::fmt::Debug for Reply {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("rkey", &self.rkey)
            .field("addr", &self.addr)
            .field("size", &self.size)
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

impl Request {
    /// The request's bytes.
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        put_header(&mut b);
        b[6..8].copy_from_slice(&self.queue.to_le_bytes());
        b[8..16].copy_from_slice(&self.node_id.to_le_bytes());
        b[16..20].copy_from_slice(&self.want_mib.to_le_bytes());
        b[20..24].copy_from_slice(&(self.release as u32).to_le_bytes());
        b[24..40].copy_from_slice(&self.secret);
        b[40..56].copy_from_slice(&self.token);
        b
    }

    /// Decodes a request from private data.
    pub fn decode(b: &[u8]) -> Result<Request, DecodeError> {
        check_header(b, REQUEST_LEN)?;
        let mut secret = [0u8; SECRET_LEN];
        secret.copy_from_slice(&b[24..40]);
        let mut token = NO_TOKEN;
        token.copy_from_slice(&b[40..56]);
        Ok(Request {
            queue: u16_at(b, 6),
            node_id: u64_at(b, 8),
            want_mib: u32_at(b, 16),
            secret,
            token,
            release: u32_at(b, 20) & 1 == 1,
        })
    }
}

impl Reply {
    /// A refusal with `status` and no region.
    pub fn refusal(status: Status) -> Reply {
        Reply {
            status,
            rkey: 0,
            addr: 0,
            size: 0,
            token: NO_TOKEN,
        }
    }

    /// The reply's bytes.
    pub fn encode(&self) -> [u8; REPLY_LEN] {
        let mut b = [0u8; REPLY_LEN];
        put_header(&mut b);
        b[6..8].copy_from_slice(&(self.status as u16).to_le_bytes());
        b[8..12].copy_from_slice(&self.rkey.to_le_bytes());
        b[16..24].copy_from_slice(&self.addr.to_le_bytes());
        b[24..32].copy_from_slice(&self.size.to_le_bytes());
        b[32..48].copy_from_slice(&self.token);
        b
    }

    /// Decodes a reply from private data. The region is not checked here:
    /// a client must check that it does not overflow before using it.
    pub fn decode(b: &[u8]) -> Result<Reply, DecodeError> {
        check_header(b, REPLY_LEN)?;
        let status = Status::from_u16(u16_at(b, 6)).ok_or(DecodeError::Status(u16_at(b, 6)))?;
        let mut token = NO_TOKEN;
        token.copy_from_slice(&b[32..48]);
        Ok(Reply {
            status,
            rkey: u32_at(b, 8),
            addr: u64_at(b, 16),
            size: u64_at(b, 24),
            token,
        })
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

/// Compares secrets without an early exit on the first differing byte.
pub fn secret_eq(a: &[u8; SECRET_LEN], b: &[u8; SECRET_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> Request {
        Request {
            queue: 3,
            node_id: 0xdead_beef_0001,
            want_mib: 256,
            secret: [7; 16],
            token: [9; 16],
            release: false,
        }
    }

    #[test]
    fn request_round_trips() {
        let b = req().encode();
        assert_eq!(&b[0..4], b"RSWP");
        assert_eq!(Request::decode(&b).unwrap(), req());
        let r = Request {
            release: true,
            ..req()
        };
        assert!(Request::decode(&r.encode()).unwrap().release);
    }

    #[test]
    fn padded_private_data_is_accepted() {
        let mut v = req().encode().to_vec();
        v.resize(64, 0);
        assert_eq!(Request::decode(&v).unwrap(), req());
    }

    #[test]
    fn bad_requests_are_named() {
        let b = req().encode();
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

    #[test]
    fn reply_round_trips() {
        let r = Reply {
            status: Status::Ok,
            rkey: 0x1234,
            addr: 0x7f00_0000_1000,
            size: 1 << 28,
            token: [3; 16],
        };
        assert_eq!(Reply::decode(&r.encode()).unwrap(), r);
        assert!(!format!("{:?}", r).contains("3, 3"));
        let n = Reply::refusal(Status::NoSpace);
        assert_eq!(Reply::decode(&n.encode()).unwrap().status, Status::NoSpace);
        let mut u = n.encode();
        u[6] = 99;
        assert_eq!(Reply::decode(&u), Err(DecodeError::Status(99)));
        assert!(Reply::decode(&[0u8; 3]).is_err());
    }

    #[test]
    fn secrets_parse_and_compare() {
        let s = parse_secret(b"000102030405060708090a0b0c0d0e0f\n").unwrap();
        assert_eq!(s[15], 15);
        assert!(parse_secret(b"abc").is_none());
        assert!(parse_secret(b"zz0102030405060708090a0b0c0d0e0f").is_none());
        assert!(secret_eq(&s, &s));
        let mut t = s;
        t[9] ^= 1;
        assert!(!secret_eq(&s, &t));
    }

    #[test]
    fn the_secret_is_never_printed() {
        assert!(!format!("{:?}", req()).contains("7, 7"));
        assert!(!format!("{:?}", req()).contains("9, 9"));
    }
}
