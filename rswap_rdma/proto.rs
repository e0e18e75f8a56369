// SPDX-License-Identifier: GPL-2.0
//! The connection protocol between rswap_rdma and memserver, carried in RDMA
//! CM private data: the request in the connect request, the reply in the
//! accept or reject. Little-endian, fixed layout, byte for byte the one
//! `memserver/src/proto.rs` documents and encodes:
//!
//! Request (client -> server), 40 bytes:
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
//! Reply (server -> client), 32 bytes:
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
//! Decoding never panics: short or foreign private data is `None`. The
//! reply's region is only decoded here; placement.rs checks its bounds.

pub(crate) const MAGIC: u32 = 0x5057_5352;
pub(crate) const VERSION: u16 = 1;
pub(crate) const REQUEST_LEN: usize = 40;
pub(crate) const REPLY_LEN: usize = 32;
pub(crate) const SECRET_LEN: usize = 16;

/// What a compute node asks of a server, once per queue.
pub(crate) struct Request {
    pub(crate) queue: u16,
    pub(crate) node_id: u64,
    pub(crate) want_mib: u32,
    pub(crate) secret: [u8; SECRET_LEN],
}

impl Request {
    pub(crate) fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&VERSION.to_le_bytes());
        b[6..8].copy_from_slice(&self.queue.to_le_bytes());
        b[8..16].copy_from_slice(&self.node_id.to_le_bytes());
        b[16..20].copy_from_slice(&self.want_mib.to_le_bytes());
        b[24..40].copy_from_slice(&self.secret);
        b
    }
}

/// The server's answer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Ok,
    BadRequest,
    BadSecret,
    NotAllowed,
    NoSpace,
}

impl Status {
    fn from_u16(v: u16) -> Option<Status> {
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

/// A decoded reply: the status and, when admitted, the granted region.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) status: Status,
    pub(crate) rkey: u32,
    pub(crate) addr: u64,
    pub(crate) size: u64,
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

impl Reply {
    /// Decodes private data; the transport may pad it, so longer is fine.
    pub(crate) fn decode(b: &[u8]) -> Option<Reply> {
        if b.len() < REPLY_LEN || u32_at(b, 0)? != MAGIC || u16_at(b, 4)? != VERSION {
            return None;
        }
        Some(Reply {
            status: Status::from_u16(u16_at(b, 6)?)?,
            rkey: u32_at(b, 8)?,
            addr: u64_at(b, 16)?,
            size: u64_at(b, 24)?,
        })
    }
}
