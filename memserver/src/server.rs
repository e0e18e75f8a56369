//! The memserver event loop: admits compute nodes, gives each its own
//! registered region of the pool, and frees the region when the node's
//! last queue disconnects.

use crate::auth::Policy;
use crate::pool::{Extent, Pool};
use crate::proto::{Reply, Request, Status};
use crate::rdma::{signals, Buffer, ConnId, Cq, EventChannel, EventKind, Mr, Pd};
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::time::Instant;

#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddrV4,
    pub pool_mib: u64,
    /// Largest region one node gets (MiB); 0: what it asks for.
    pub region_mib: u64,
    pub policy: Policy,
    pub status_file: Option<String>,
}

const MIB: u64 = 1 << 20;

macro_rules! log {
    ($($a:tt)*) => { eprintln!("memserver: {}", format!($($a)*)) };
}

struct Node {
    peer: Option<Ipv4Addr>,
    extent: Extent,
    mr: Mr,
    queues: usize,
    since: Instant,
}

struct Device {
    ctx: usize,
    // Field order is drop order: the CQ before the PD.
    cq: Cq,
    pd: Pd,
}

pub struct Server {
    cfg: Config,
    // Drop order matters: connections and MRs go before the device, the
    // listener before the channel.
    conns: HashMap<usize, (ConnId, u64)>,
    nodes: HashMap<u64, Node>,
    device: Option<Device>,
    pool: Pool,
    buf: Buffer,
    listener: Option<crate::rdma::Listener>,
    channel: EventChannel,
    refused: u64,
}

impl Server {
    pub fn new(cfg: Config) -> io::Result<Server> {
        let channel = EventChannel::new()?;
        let size = cfg.pool_mib * MIB;
        let buf = Buffer::map(size as usize)?;
        let listener = channel.listen(cfg.listen, 64)?;
        log!(
            "listening on {} with a {} MiB pool; {} allowed addresses, secret {}",
            cfg.listen,
            cfg.pool_mib,
            cfg.policy.allow.len(),
            if cfg.policy.secret.is_some() {
                "required"
            } else {
                "not used"
            }
        );
        Ok(Server {
            pool: Pool::new(size, MIB),
            cfg,
            conns: HashMap::new(),
            nodes: HashMap::new(),
            device: None,
            buf,
            listener: Some(listener),
            channel,
            refused: 0,
        })
    }

    pub fn run(&mut self) -> io::Result<()> {
        self.write_status(false);
        while !signals::STOP.load(Ordering::SeqCst) {
            if signals::REPORT.swap(false, Ordering::SeqCst) {
                self.write_status(true);
            }
            let ev = match self.channel.next(200)? {
                Some(ev) => ev,
                None => continue,
            };
            let (kind, id, status) = (ev.kind(), ev.id(), ev.status());
            match kind {
                EventKind::ConnectRequest => {
                    let (data, depth) = (ev.private_data(), ev.initiator_depth());
                    drop(ev);
                    self.admit(id, &data, depth);
                }
                EventKind::Established => {
                    drop(ev);
                    if let Some((_, node)) = self.conns.get(&id.key()) {
                        log!(
                            "node {node:016x} queue connected from {}",
                            fmt_peer(id.peer())
                        );
                    }
                }
                EventKind::Disconnected | EventKind::Failed | EventKind::Rejected => {
                    let name = ev.name();
                    drop(ev);
                    self.drop_conn(id, &name, status);
                }
                EventKind::DeviceRemoval => {
                    drop(ev);
                    log!("the RDMA device went away; shutting down");
                    break;
                }
                EventKind::AddrResolved | EventKind::RouteResolved | EventKind::Other => {}
            }
            self.write_status(false);
        }
        self.shutdown();
        Ok(())
    }

    fn refuse(&mut self, id: ConnId, status: Status, why: &str) {
        log!("refused connection from {}: {why}", fmt_peer(id.peer()));
        id.reject(&Reply::refusal(status).encode());
        id.destroy();
        self.refused += 1;
    }

    fn admit(&mut self, id: ConnId, data: &[u8], depth: u8) {
        let req = match Request::decode(data) {
            Ok(r) => r,
            Err(e) => {
                return self.refuse(
                    id,
                    Status::BadRequest,
                    &format!("not an rswap client ({e})"),
                )
            }
        };
        if let Err(st) = self.cfg.policy.check(id.peer(), &req) {
            let why = match st {
                Status::NotAllowed => "address not in --allow",
                _ => "wrong secret",
            };
            return self.refuse(id, st, &format!("node {:016x}: {why}", req.node_id));
        }
        if self.device.is_none() {
            match Pd::new(&id).and_then(|pd| Ok((Cq::new(&id, 64)?, pd))) {
                Ok((cq, pd)) => {
                    self.device = Some(Device {
                        ctx: id.device_key(),
                        cq,
                        pd,
                    })
                }
                Err(e) => {
                    return self.refuse(id, Status::BadRequest, &format!("device setup: {e}"))
                }
            }
        }
        let dev = self.device.as_ref().unwrap();
        if dev.ctx != id.device_key() {
            return self.refuse(
                id,
                Status::BadRequest,
                "arrived on a second RDMA device; one is supported",
            );
        }
        if !self.nodes.contains_key(&req.node_id) {
            let want = if self.cfg.region_mib > 0 {
                (req.want_mib as u64).min(self.cfg.region_mib)
            } else {
                req.want_mib as u64
            };
            let extent = match self.pool.alloc(want.max(1) * MIB) {
                Some(x) => x,
                None => return self.refuse(id, Status::NoSpace, "the pool is full"),
            };
            let mr = match Mr::register(&dev.pd, self.buf.slice_mut(extent.offset, extent.len)) {
                Ok(mr) => mr,
                Err(e) => {
                    self.pool.release(extent);
                    return self.refuse(
                        id,
                        Status::NoSpace,
                        &format!("registering the region: {e}"),
                    );
                }
            };
            log!(
                "node {:016x} from {}: region of {} MiB at pool offset {} MiB (asked {} MiB), rkey {:#x}",
                req.node_id,
                fmt_peer(id.peer()),
                extent.len / MIB,
                extent.offset / MIB,
                req.want_mib,
                mr.rkey()
            );
            let node = Node {
                peer: id.peer(),
                extent,
                mr,
                queues: 0,
                since: Instant::now(),
            };
            self.nodes.insert(req.node_id, node);
        }
        let dev = self.device.as_ref().unwrap();
        let node = self.nodes.get_mut(&req.node_id).unwrap();
        let reply = Reply {
            status: Status::Ok,
            rkey: node.mr.rkey(),
            addr: node.mr.addr(),
            size: node.extent.len,
        };
        if let Err(e) = id
            .create_qp(&dev.pd, &dev.cq)
            .and_then(|_| id.accept(&reply.encode(), depth.clamp(1, 16)))
        {
            log!("node {:016x} queue {}: {e}", req.node_id, req.queue);
            id.destroy();
            if node.queues == 0 {
                self.free_node(req.node_id, "its first queue failed");
            }
            return;
        }
        node.queues += 1;
        self.conns.insert(id.key(), (id, req.node_id));
    }

    fn drop_conn(&mut self, id: ConnId, event: &str, status: i32) {
        let Some((id, node_id)) = self.conns.remove(&id.key()) else {
            return;
        };
        id.destroy();
        let last = match self.nodes.get_mut(&node_id) {
            Some(n) => {
                n.queues -= 1;
                n.queues == 0
            }
            None => false,
        };
        if last {
            self.free_node(node_id, &format!("{event} (status {status})"));
        }
    }

    fn free_node(&mut self, node_id: u64, why: &str) {
        if let Some(n) = self.nodes.remove(&node_id) {
            drop(n.mr);
            self.buf.zero(n.extent.offset, n.extent.len);
            self.pool.release(n.extent);
            log!(
                "node {node_id:016x} ({}) disconnected: {why}; region of {} MiB freed after {:.0} s",
                fmt_peer(n.peer),
                n.extent.len / MIB,
                n.since.elapsed().as_secs_f64()
            );
        }
    }

    fn shutdown(&mut self) {
        log!(
            "shutting down: disconnecting {} queues of {} nodes",
            self.conns.len(),
            self.nodes.len()
        );
        for (_, (id, _)) in self.conns.drain() {
            id.disconnect();
            id.destroy();
        }
        let nodes: Vec<u64> = self.nodes.keys().copied().collect();
        for n in nodes {
            self.free_node(n, "server shutdown");
        }
        self.listener = None;
        self.device = None;
        self.write_status(false);
        log!("stopped; port {} is free", self.cfg.listen.port());
    }

    /// The operator view: one line per node, written to --status-file and,
    /// on SIGUSR1, logged with how many of each region's pages hold data.
    fn write_status(&mut self, scan: bool) {
        let mut s = format!(
            "pool_mib={} free_mib={} nodes={} queues={} refused={}\n",
            self.pool.size() / MIB,
            self.pool.free_bytes() / MIB,
            self.nodes.len(),
            self.conns.len(),
            self.refused
        );
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            let n = &self.nodes[&id];
            let (peer, ext, queues) = (n.peer, n.extent, n.queues);
            let used = if scan {
                Some(count_used_pages(self.buf.slice_mut(ext.offset, ext.len)))
            } else {
                None
            };
            s += &format!(
                "node={id:016x} peer={} region_mib={} queues={queues}{}\n",
                fmt_peer(peer),
                ext.len / MIB,
                used.map(|u| format!(" pages_used={u}")).unwrap_or_default()
            );
        }
        if scan {
            for l in s.lines() {
                log!("status: {l}");
            }
        }
        if let Some(path) = &self.cfg.status_file {
            let tmp = format!("{path}.tmp");
            if std::fs::write(&tmp, &s)
                .and_then(|_| std::fs::rename(&tmp, path))
                .is_err()
            {
                log!("cannot write status file {path}");
            }
        }
    }
}

/// Pages of a region that are not all zeros: what the node has stored.
fn count_used_pages(mem: &[u8]) -> usize {
    mem.chunks(4096)
        .filter(|p| p.iter().any(|&b| b != 0))
        .count()
}

fn fmt_peer(p: Option<Ipv4Addr>) -> String {
    p.map_or_else(|| "?".into(), |a| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_pages_are_the_non_zero_ones() {
        let mut m = vec![0u8; 4096 * 4];
        m[4096 + 17] = 1;
        m[3 * 4096] = 9;
        assert_eq!(count_used_pages(&m), 2);
    }
}
