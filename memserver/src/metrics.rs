//! A Prometheus text endpoint: `GET /metrics` over plain HTTP, served by one
//! thread from a snapshot the event loop publishes after every event. The
//! thread never touches RDMA objects or the pool.

use crate::refusals::Reason;
use log::{debug, warn};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where `--metrics` without an address listens.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9471";

/// What the endpoint reports; the event loop fills it in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub pool_bytes: u64,
    pub free_bytes: u64,
    pub largest_free_bytes: u64,
    pub queues: u64,
    pub pending: u64,
    pub refusals: Vec<(Reason, u64)>,
    pub max_nodes: u64,
    pub max_queues_per_node: u64,
    pub max_pending: u64,
    pub region_max_bytes: u64,
    pub start_time_seconds: u64,
    pub nodes: Vec<NodeStat>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStat {
    pub node: u64,
    pub peer: String,
    pub region_bytes: u64,
    pub queues: u64,
    /// Pages holding data, as of the last scan (SIGUSR1); None before one.
    pub pages_used: Option<u64>,
}

pub type Shared = Arc<Mutex<Snapshot>>;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The snapshot in the Prometheus text exposition format (0.0.4).
pub fn render(s: &Snapshot) -> String {
    let mut o = String::new();
    let gauges: [(&str, &str, u64); 10] = [
        (
            "memserver_pool_bytes",
            "Size of the memory pool.",
            s.pool_bytes,
        ),
        (
            "memserver_free_bytes",
            "Bytes of the pool not given to any node.",
            s.free_bytes,
        ),
        (
            "memserver_largest_free_bytes",
            "Largest free extent of the pool: the biggest region a new node can get.",
            s.largest_free_bytes,
        ),
        (
            "memserver_nodes",
            "Compute nodes holding a region.",
            s.nodes.len() as u64,
        ),
        (
            "memserver_queues",
            "Queues (RDMA connections) of all nodes, established or being set up.",
            s.queues,
        ),
        (
            "memserver_pending_connections",
            "Accepted connections not yet established.",
            s.pending,
        ),
        (
            "memserver_max_nodes",
            "Limit on nodes (--max-nodes).",
            s.max_nodes,
        ),
        (
            "memserver_max_queues_per_node",
            "Limit on queues per node (--max-queues-per-node).",
            s.max_queues_per_node,
        ),
        (
            "memserver_max_pending_connections",
            "Limit on connections being set up (--max-pending).",
            s.max_pending,
        ),
        (
            "memserver_region_max_bytes",
            "Largest region one node gets (--region-mib).",
            s.region_max_bytes,
        ),
    ];
    for (name, help, v) in gauges {
        family(&mut o, name, "gauge", help);
        let _ = writeln!(o, "{name} {v}");
    }
    family(
        &mut o,
        "memserver_refusals_total",
        "counter",
        "Connection requests refused, by reason.",
    );
    for (r, n) in &s.refusals {
        let _ = writeln!(
            o,
            "memserver_refusals_total{{reason=\"{}\"}} {n}",
            r.label()
        );
    }
    family(
        &mut o,
        "memserver_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
    );
    let _ = writeln!(o, "memserver_start_time_seconds {}", s.start_time_seconds);
    family(
        &mut o,
        "memserver_build_info",
        "gauge",
        "memserver's version, as a label.",
    );
    let _ = writeln!(
        o,
        "memserver_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let labels = |n: &NodeStat| format!("node=\"{:016x}\",peer=\"{}\"", n.node, escape(&n.peer));
    type Family = (&'static str, &'static str, fn(&NodeStat) -> Option<u64>);
    let per_node: [Family; 4] = [
        (
            "memserver_node_region_bytes",
            "Size of the node's region.",
            |n| Some(n.region_bytes),
        ),
        (
            "memserver_node_region_pages",
            "Pages (4 KiB) of the node's region.",
            |n| Some(n.region_bytes / 4096),
        ),
        (
            "memserver_node_pages_used",
            "Pages of the node's region holding data, as of the last scan (SIGUSR1).",
            |n| n.pages_used,
        ),
        (
            "memserver_node_queues",
            "Queues (RDMA connections) of the node.",
            |n| Some(n.queues),
        ),
    ];
    for (name, help, get) in per_node {
        family(&mut o, name, "gauge", help);
        for n in &s.nodes {
            if let Some(v) = get(n) {
                let _ = writeln!(o, "{name}{{{}}} {v}", labels(n));
            }
        }
    }
    o
}

/// The answer to one request head: status line, extra headers, body.
pub fn respond(head: &str, snapshot: impl FnOnce() -> Snapshot) -> (String, String, String) {
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let text = "text/plain; charset=utf-8";
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK".into(),
            "text/plain; version=0.0.4; charset=utf-8".into(),
            render(&snapshot()),
        ),
        ("GET" | "HEAD", "/") => (
            "200 OK".into(),
            text.into(),
            "memserver: metrics at /metrics\n".into(),
        ),
        ("GET" | "HEAD", _) => ("404 Not Found".into(), text.into(), "not found\n".into()),
        _ => (
            "405 Method Not Allowed".into(),
            text.into(),
            "only GET and HEAD\n".into(),
        ),
    }
}

fn handle(mut s: TcpStream, shared: &Shared) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let (status, ctype, body) = respond(&head, || {
        shared.lock().map(|g| g.clone()).unwrap_or_default()
    });
    let is_head = head.starts_with("HEAD ");
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        resp += "Allow: GET, HEAD\r\n";
    }
    resp += "\r\n";
    if !is_head {
        resp += &body;
    }
    s.write_all(resp.as_bytes())
}

/// Binds the endpoint (so a taken port fails at startup) and serves it on
/// a thread, one request at a time with short timeouts.
pub fn start(addr: SocketAddr, shared: Shared) -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind(addr).map_err(|e| {
        std::io::Error::new(e.kind(), format!("--metrics {addr}: cannot listen: {e}"))
    })?;
    let bound = l.local_addr()?;
    if !bound.ip().is_loopback() {
        warn!("metrics on {bound}, which is not a loopback address: anyone who reaches it sees node ids and addresses");
    }
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for s in l.incoming() {
                match s {
                    Ok(s) => {
                        if let Err(e) = handle(s, &shared) {
                            debug!("metrics request: {e}");
                        }
                    }
                    Err(e) => {
                        debug!("metrics accept: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        Snapshot {
            pool_bytes: 160 << 20,
            free_bytes: 32 << 20,
            largest_free_bytes: 32 << 20,
            queues: 4,
            pending: 1,
            refusals: vec![(Reason::BadSecret, 3), (Reason::PoolFull, 0)],
            max_nodes: 4,
            max_queues_per_node: 256,
            max_pending: 64,
            region_max_bytes: 128 << 20,
            start_time_seconds: 1_700_000_000,
            nodes: vec![NodeStat {
                node: 0xabc,
                peer: "10.77.1.1".into(),
                region_bytes: 128 << 20,
                queues: 4,
                pages_used: Some(1234),
            }],
        }
    }

    #[test]
    fn the_text_format_has_help_type_and_samples() {
        let t = render(&snap());
        for l in [
            "# HELP memserver_pool_bytes Size of the memory pool.",
            "# TYPE memserver_pool_bytes gauge",
            "memserver_pool_bytes 167772160",
            "memserver_free_bytes 33554432",
            "memserver_nodes 1",
            "memserver_queues 4",
            "memserver_pending_connections 1",
            "# TYPE memserver_refusals_total counter",
            "memserver_refusals_total{reason=\"bad_secret\"} 3",
            "memserver_refusals_total{reason=\"pool_full\"} 0",
            "memserver_node_region_pages{node=\"0000000000000abc\",peer=\"10.77.1.1\"} 32768",
            "memserver_node_pages_used{node=\"0000000000000abc\",peer=\"10.77.1.1\"} 1234",
            "memserver_node_queues{node=\"0000000000000abc\",peer=\"10.77.1.1\"} 4",
        ] {
            assert!(t.lines().any(|x| x == l), "missing {l:?} in\n{t}");
        }
        // Every sample belongs to a family declared just before it, and
        // every line is a comment or `name[{labels}] value`.
        let mut declared = std::collections::HashSet::new();
        for l in t.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_string());
            } else if !l.starts_with("# HELP ") {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "{l}: no TYPE for {name}");
                let value = l.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{l}: bad value");
            }
        }
        assert!(t.ends_with('\n'));
    }

    #[test]
    fn pages_used_appear_only_once_scanned() {
        let mut s = snap();
        s.nodes[0].pages_used = None;
        let t = render(&s);
        assert!(t.contains("# TYPE memserver_node_pages_used gauge"));
        assert!(!t.contains("memserver_node_pages_used{"));
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn requests_are_routed() {
        let r = respond("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", snap);
        assert_eq!(r.0, "200 OK");
        assert!(r.1.contains("version=0.0.4"));
        assert!(r.2.contains("memserver_nodes 1"));
        assert_eq!(
            respond("GET /metrics?x=1 HTTP/1.0\r\n\r\n", snap).0,
            "200 OK"
        );
        assert_eq!(
            respond("GET /nope HTTP/1.1\r\n\r\n", snap).0,
            "404 Not Found"
        );
        assert_eq!(
            respond("POST /metrics HTTP/1.1\r\n\r\n", snap).0,
            "405 Method Not Allowed"
        );
        assert_eq!(respond("", snap).0, "405 Method Not Allowed");
    }

    #[test]
    fn the_endpoint_serves_over_tcp() {
        let shared: Shared = Arc::new(Mutex::new(snap()));
        let addr = start("127.0.0.1:0".parse().unwrap(), shared.clone()).unwrap();
        shared.lock().unwrap().queues = 7;
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("\r\nmemserver_queues 7\n") || out.contains("\nmemserver_queues 7\n"));
        let body = out.split("\r\n\r\n").nth(1).unwrap();
        let len: usize = out
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(body.len(), len);
    }
}
