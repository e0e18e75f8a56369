// SPDX-License-Identifier: GPL-2.0
//! The module parameters, validated. They are declared in
//! rswap_rdma_glue.c (`module_param` is a C macro) and read raw through
//! `rdma::params`.

use crate::ffi::PAGE_SIZE;
use crate::proto::{parse_secret, SECRET_LEN};
use crate::rdma::{self, params, Endpoint, BATCH_MAX};
use kernel::error::code;
use kernel::prelude::*;

/// At most this many servers in `servers=`.
pub(crate) const MAX_SERVERS: usize = 8;

pub(crate) struct Params {
    pub(crate) servers: Vec<Endpoint>,
    pub(crate) secret: [u8; SECRET_LEN],
    /// MiB asked of each server.
    pub(crate) mib: u32,
    pub(crate) timeout_ms: u32,
    pub(crate) node_id: u64,
    /// How long a server may be unreachable before its pages are lost.
    pub(crate) loss_timeout_s: u32,
    /// Use the servers' upstreams too (memserver --upstream).
    pub(crate) follow_upstream: bool,
    /// Load readahead pages asynchronously, in batches.
    pub(crate) async_loads: bool,
    /// Reads ahead per batch, the readahead queues' depth.
    pub(crate) readahead_depth: u32,
    /// How long a waiting task polls before it sleeps until the completion.
    pub(crate) poll_us: u32,
    /// Copies of each page (`redundancy=`).
    pub(crate) redundancy: Redundancy,
    /// Repair's rate bound, in MiB/s (`redundancy=mirror`).
    pub(crate) repair_mib_s: u32,
}

/// How many servers hold each page (`redundancy=`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Redundancy {
    /// One copy: a lost server loses its pages.
    None,
    /// Two copies on two servers (mirror.rs).
    Mirror,
    /// `ec:K+1`: K data chunks and one parity chunk on K+1 servers (ec.rs).
    Ec(u32),
}

impl Redundancy {
    /// Bytes per server slot: a page, or with `ec:K+1` a chunk.
    pub(crate) fn unit(self) -> u32 {
        match self {
            Redundancy::Ec(k) => PAGE_SIZE as u32 / k,
            _ => PAGE_SIZE as u32,
        }
    }
}

/// `ec:K+R` as (K, R).
fn parse_ec(s: &[u8]) -> Option<(u32, u32)> {
    let rest = s.strip_prefix(b"ec:")?;
    let plus = rest.iter().position(|&c| c == b'+')?;
    Some((parse_u32(&rest[..plus])?, parse_u32(&rest[plus + 1..])?))
}

fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 {
        return None;
    }
    s.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u32)
    })
}

fn parse_endpoint(s: &[u8]) -> Option<Endpoint> {
    let colon = s.iter().position(|&c| c == b':')?;
    let port = parse_u32(&s[colon + 1..]).filter(|&p| p > 0 && p < 65536)?;
    let mut ip = [0u8; 4];
    let mut parts = s[..colon].split(|&c| c == b'.');
    for b in ip.iter_mut() {
        *b = parse_u32(parts.next()?).filter(|&v| v < 256)? as u8;
    }
    parts.next().is_none().then(|| Endpoint {
        ip,
        port: port as u16,
    })
}

/// Bytes shown as text in a message.
struct Show<'a>(&'a [u8]);

impl core::fmt::Display for Show<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(core::str::from_utf8(self.0).unwrap_or("<not UTF-8>"))
    }
}

/// Reads and checks every parameter; a bad one is logged, saying how to
/// fix it.
pub(crate) fn parse() -> Result<Params> {
    let list = match params::servers() {
        Some(s) if !s.is_empty() => s,
        _ => {
            pr_err!("servers= is required, e.g. servers=10.77.1.2:7471,10.77.2.2:7471\n");
            return Err(code::EINVAL);
        }
    };
    let mut servers = Vec::new();
    for item in list.split(|&c| c == b',') {
        let ep = match parse_endpoint(item) {
            Some(ep) => ep,
            None => {
                pr_err!("servers=: '{}' is not IPV4:PORT\n", Show(item));
                return Err(code::EINVAL);
            }
        };
        if servers.len() == MAX_SERVERS {
            pr_err!("servers=: at most {} servers\n", MAX_SERVERS);
            return Err(code::EINVAL);
        }
        servers.try_push(ep)?;
    }
    let secret = match params::secret().and_then(parse_secret) {
        Some(s) => s,
        None => {
            pr_err!("secret= is required: 32 hex digits, the same as memserver --secret\n");
            return Err(code::EINVAL);
        }
    };
    let mib = params::mib_per_server();
    if mib == 0 {
        pr_err!("mib_per_server=0: ask each server for at least 1 MiB\n");
        return Err(code::EINVAL);
    }
    let timeout_ms = params::timeout_ms();
    if !(100..=60000).contains(&timeout_ms) {
        pr_err!("timeout_ms={} is outside 100..60000\n", timeout_ms);
        return Err(code::EINVAL);
    }
    let loss_timeout_s = params::loss_timeout_s();
    if !(1..=3600).contains(&loss_timeout_s) {
        pr_err!("loss_timeout_s={} is outside 1..3600\n", loss_timeout_s);
        return Err(code::EINVAL);
    }
    // One request may take two timeouts (its own and its flush): a shorter
    // bound would declare pages lost on a single slow request.
    if loss_timeout_s as u64 * 1000 <= 2 * timeout_ms as u64 {
        pr_err!(
            "loss_timeout_s={} must be longer than two timeouts (timeout_ms={})\n",
            loss_timeout_s,
            timeout_ms
        );
        return Err(code::EINVAL);
    }
    let readahead_depth = params::readahead_depth();
    if !(1..=BATCH_MAX as u32).contains(&readahead_depth) {
        pr_err!(
            "readahead_depth={} is outside 1..{}\n",
            readahead_depth,
            BATCH_MAX
        );
        return Err(code::EINVAL);
    }
    let poll_us = params::poll_us();
    if poll_us > 100_000 {
        pr_err!("poll_us={} is outside 0..100000\n", poll_us);
        return Err(code::EINVAL);
    }
    let redundancy = match params::redundancy() {
        None | Some(b"none") => Redundancy::None,
        Some(b"mirror") => Redundancy::Mirror,
        Some(s) if s.starts_with(b"ec:") => match parse_ec(s) {
            Some((k, 1)) if [2, 4].contains(&k) => Redundancy::Ec(k),
            Some((k, r)) if r > 1 && [2, 4].contains(&k) => {
                pr_err!(
                    "redundancy={}: more than one parity chunk needs RAID-6 syndromes (lib/raid6, CONFIG_RAID6_PQ), which this kernel does not build; use ec:{}+1\n",
                    Show(s),
                    k
                );
                return Err(code::EINVAL);
            }
            _ => {
                pr_err!(
                    "redundancy={}: use ec:K+1 with K data chunks per page, K = 2 or 4 (for two whole copies, mirror)\n",
                    Show(s)
                );
                return Err(code::EINVAL);
            }
        },
        Some(other) => {
            pr_err!(
                "redundancy={}: use none (one copy), mirror (two copies on two servers) or ec:K+1 (K chunks and a parity chunk on K+1 servers)\n",
                Show(other)
            );
            return Err(code::EINVAL);
        }
    };
    if let Redundancy::Ec(k) = redundancy {
        if servers.len() < k as usize + 1 && !params::follow_upstream() {
            pr_err!(
                "redundancy=ec:{}+1 needs at least {} servers in servers= (it has {})\n",
                k,
                k + 1,
                servers.len()
            );
            return Err(code::EINVAL);
        }
    }
    if redundancy == Redundancy::Mirror && servers.len() < 2 && !params::follow_upstream() {
        pr_err!(
            "redundancy=mirror needs at least two servers in servers= (it has {})\n",
            servers.len()
        );
        return Err(code::EINVAL);
    }
    let repair_mib_s = params::repair_mib_s();
    if !(1..=160).contains(&repair_mib_s) {
        pr_err!("repair_mib_s={} is outside 1..160\n", repair_mib_s);
        return Err(code::EINVAL);
    }
    let node_id = match params::node_id() {
        0 => rdma::random_u64() | 1,
        n => n,
    };
    Ok(Params {
        servers,
        secret,
        mib,
        timeout_ms,
        node_id,
        loss_timeout_s,
        follow_upstream: params::follow_upstream(),
        async_loads: params::async_loads(),
        readahead_depth,
        poll_us,
        redundancy,
        repair_mib_s,
    })
}
