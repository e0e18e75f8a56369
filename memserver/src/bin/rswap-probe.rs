//! rswap-probe: connects to a memserver the way rswap_rdma does, prints
//! what it was granted or why it was refused, and can try an RDMA READ at
//! any offset of (or past) its region. The lab uses it to check admission
//! (allowlist, secret) and that a node cannot reach outside its region.
//!
//! rswap-probe --server IP:PORT --secret HEX32 [--from IP] [--node-id N]
//!             [--want-mib N] [--read-at BYTES]
//!
//! Exit: 0 accepted (and the read, if any, succeeded), 3 refused,
//! 4 the read failed with a completion error, 1 anything else.

use memserver::proto::{parse_secret, Reply, Request, Status};
use memserver::rdma::EventChannel;
use std::process::exit;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let server = get("--server")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            eprintln!("rswap-probe: --server IP:PORT is required");
            exit(2)
        });
    let secret = get("--secret")
        .map(|s| parse_secret(&s))
        .unwrap_or(Ok([0; 16]))
        .unwrap_or_else(|e| {
            eprintln!("rswap-probe: {e}");
            exit(2)
        });
    let from = get("--from").and_then(|s| s.parse().ok());
    let node_id = get("--node-id")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9b0be);
    let want_mib = get("--want-mib").and_then(|s| s.parse().ok()).unwrap_or(8);
    let read_at: Option<u64> = get("--read-at").and_then(|s| s.parse().ok());

    let req = Request {
        queue: 0,
        node_id,
        want_mib,
        secret,
    };
    let ch = EventChannel::new().unwrap_or_else(|e| {
        eprintln!("rswap-probe: {e}");
        exit(1)
    });
    let mut c = ch
        .connect(server, from, &req.encode(), 3000)
        .unwrap_or_else(|e| {
            println!("probe: connect failed: {e}");
            exit(1)
        });
    let reply = Reply::decode(&c.reply);
    if c.rejected {
        match reply {
            Ok(r) => println!("probe: refused: {:?}", r.status),
            Err(_) => println!("probe: refused (no rswap reply)"),
        }
        exit(3);
    }
    let r = match reply {
        Ok(r) if r.status == Status::Ok => r,
        _ => {
            println!("probe: accepted without a valid reply");
            exit(1)
        }
    };
    println!(
        "probe: accepted: region {} MiB at {:#x}, rkey {:#x}",
        r.size >> 20,
        r.addr,
        r.rkey
    );
    if let Some(off) = read_at {
        match c.read(r.addr.wrapping_add(off), r.rkey, 5000) {
            Ok(None) => println!("probe: read at +{off}: ok"),
            Ok(Some(status)) => {
                println!("probe: read at +{off}: failed: {status}");
                exit(4)
            }
            Err(e) => {
                println!("probe: read at +{off}: {e}");
                exit(1)
            }
        }
    }
}
