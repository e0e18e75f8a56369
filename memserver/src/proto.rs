//! The connection protocol between rswap_rdma (kernel) and memserver,
//! carried in RDMA CM private data. Little-endian, fixed layout; the
//! kernel module (rswap_rdma) encodes and decodes the same bytes.
//!
//! Request (client -> server, in the connect request), 40 bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `RSWP` (0x50575352) |
//! | 4 | 2 | version (1) |
//! | 6 | 2 | queue index of this connection |
//! | 8 | 8 | node id: identifies the compute node across its queues |
//! | 16 | 4 | MiB of remote memory wanted |
//! | 20 | 4 | reserved, 0 |
//! | 24 | 16 | shared secret |
//!
//! Reply (server -> client, in the accept or reject), 32 bytes:
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
//!
//! memserver decodes requests and encodes replies; rswap-probe does the
//! other half, as rswap_rdma does in the kernel.

pub const MAGIC: u32 = 0x5057_5352;
pub const VERSION: u16 = 1;
pub const REQUEST_LEN: usize = 40;
pub const REPLY_LEN: usize = 32;
pub const SECRET_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub queue: u16,
    pub node_id: u64,
    pub want_mib: u32,
    pub secret: [u8; SECRET_LEN],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Status {
    Ok = 0,
    BadRequest = 1,
    BadSecret = 2,
    NotAllowed = 3,
    NoSpace = 4,
}

impl Status {
    pub fn from_u16(v: u16) -> Option<Status> {
        Some(match v {
            0 => Status::Ok,
            1 => Status::BadRequest,
            2 => Status::BadSecret,
            3 => Status::NotAllowed,
            4 => Status::NoSpace,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: Status,
    pub rkey: u32,
    pub addr: u64,
    pub size: u64,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

impl Request {
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&VERSION.to_le_bytes());
        b[6..8].copy_from_slice(&self.queue.to_le_bytes());
        b[8..16].copy_from_slice(&self.node_id.to_le_bytes());
        b[16..20].copy_from_slice(&self.want_mib.to_le_bytes());
        b[24..40].copy_from_slice(&self.secret);
        b
    }

    /// Decodes private data; the transport may pad it, so longer is fine.
    pub fn decode(b: &[u8]) -> Result<Request, String> {
        if b.len() < REQUEST_LEN {
            return Err(format!(
                "private data is {} bytes, want {REQUEST_LEN}",
                b.len()
            ));
        }
        if u32_at(b, 0) != MAGIC {
            return Err(format!("bad magic {:#x}", u32_at(b, 0)));
        }
        if u16_at(b, 4) != VERSION {
            return Err(format!("protocol version {}, want {VERSION}", u16_at(b, 4)));
        }
        Ok(Request {
            queue: u16_at(b, 6),
            node_id: u64_at(b, 8),
            want_mib: u32_at(b, 16),
            secret: b[24..40].try_into().unwrap(),
        })
    }
}

impl Reply {
    pub fn refusal(status: Status) -> Reply {
        Reply {
            status,
            rkey: 0,
            addr: 0,
            size: 0,
        }
    }

    pub fn encode(&self) -> [u8; REPLY_LEN] {
        let mut b = [0u8; REPLY_LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&VERSION.to_le_bytes());
        b[6..8].copy_from_slice(&(self.status as u16).to_le_bytes());
        b[8..12].copy_from_slice(&self.rkey.to_le_bytes());
        b[16..24].copy_from_slice(&self.addr.to_le_bytes());
        b[24..32].copy_from_slice(&self.size.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Reply, String> {
        if b.len() < REPLY_LEN || u32_at(b, 0) != MAGIC || u16_at(b, 4) != VERSION {
            return Err("not an rswap reply".into());
        }
        let status = Status::from_u16(u16_at(b, 6)).ok_or("unknown status")?;
        Ok(Reply {
            status,
            rkey: u32_at(b, 8),
            addr: u64_at(b, 16),
            size: u64_at(b, 24),
        })
    }
}

/// Parses a secret given as 32 hex digits.
pub fn parse_secret(hex: &str) -> Result<[u8; SECRET_LEN], String> {
    let hex = hex.trim();
    if hex.len() != 2 * SECRET_LEN || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("the secret must be {} hex digits", 2 * SECRET_LEN));
    }
    let mut s = [0u8; SECRET_LEN];
    for (i, byte) in s.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    Ok(s)
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
        }
    }

    #[test]
    fn request_round_trips() {
        let b = req().encode();
        assert_eq!(&b[0..4], b"RSWP");
        assert_eq!(Request::decode(&b).unwrap(), req());
    }

    #[test]
    fn padded_private_data_is_accepted() {
        let mut v = req().encode().to_vec();
        v.resize(56, 0);
        assert_eq!(Request::decode(&v).unwrap(), req());
    }

    #[test]
    fn bad_requests_are_named() {
        let b = req().encode();
        assert!(Request::decode(&b[..20]).unwrap_err().contains("bytes"));
        let mut m = b;
        m[0] = 0;
        assert!(Request::decode(&m).unwrap_err().contains("magic"));
        let mut v = b;
        v[4] = 9;
        assert!(Request::decode(&v).unwrap_err().contains("version"));
    }

    #[test]
    fn reply_round_trips() {
        let r = Reply {
            status: Status::Ok,
            rkey: 0x1234,
            addr: 0x7f00_0000_1000,
            size: 1 << 28,
        };
        assert_eq!(Reply::decode(&r.encode()).unwrap(), r);
        let n = Reply::refusal(Status::NoSpace);
        assert_eq!(Reply::decode(&n.encode()).unwrap().status, Status::NoSpace);
    }

    #[test]
    fn secrets_parse_and_compare() {
        let s = parse_secret("000102030405060708090a0b0c0d0e0f").unwrap();
        assert_eq!(s[15], 15);
        assert!(parse_secret("abc").is_err());
        assert!(parse_secret("zz0102030405060708090a0b0c0d0e0f").is_err());
        assert!(secret_eq(&s, &s));
        let mut t = s;
        t[9] ^= 1;
        assert!(!secret_eq(&s, &t));
    }
}
