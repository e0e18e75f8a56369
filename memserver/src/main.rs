//! memserver: serves a pool of this machine's DRAM to rswap compute nodes
//! over RDMA (rdma-core: librdmacm + libibverbs, so Soft-RoCE and real NICs
//! alike). Each compute node gets its own registered region and rkey.
//!
//! memserver --listen 10.77.1.2:7471 --pool-mib 256 --secret <32 hex> [--allow 10.77.1.1]...

use memserver::{auth, proto, rdma, server};
use std::process::exit;

const USAGE: &str = "usage: memserver --listen ADDR:PORT --pool-mib N [--region-mib N] \
[--secret HEX32 | --secret-file PATH] [--allow IPV4]... [--status-file PATH]";

fn parse(args: &[String]) -> Result<server::Config, String> {
    let mut listen = None;
    let mut pool_mib = 0u64;
    let mut region_mib = 0u64;
    let mut policy = auth::Policy::default();
    let mut status_file = None;
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        let num = || {
            v.parse::<u64>()
                .map_err(|_| format!("{k}: not a number: {v}"))
        };
        match k.as_str() {
            "--listen" => {
                listen = Some(
                    v.parse()
                        .map_err(|_| format!("--listen: want IPV4:PORT, got {v}"))?,
                )
            }
            "--pool-mib" => pool_mib = num()?,
            "--region-mib" => region_mib = num()?,
            "--secret" => policy.secret = Some(proto::parse_secret(v)?),
            "--secret-file" => {
                let s =
                    std::fs::read_to_string(v).map_err(|e| format!("--secret-file {v}: {e}"))?;
                policy.secret = Some(proto::parse_secret(&s)?);
            }
            "--allow" => policy.allow.push(
                v.parse()
                    .map_err(|_| format!("--allow: not an IPv4 address: {v}"))?,
            ),
            "--status-file" => status_file = Some(v.clone()),
            _ => return Err(format!("unknown option {k}")),
        }
    }
    let listen = listen.ok_or("--listen is required")?;
    if pool_mib == 0 {
        return Err("--pool-mib must be at least 1".into());
    }
    policy.validate()?;
    Ok(server::Config {
        listen,
        pool_mib,
        region_mib,
        policy,
        status_file,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = parse(&args).unwrap_or_else(|e| {
        eprintln!("memserver: {e}\n{USAGE}");
        exit(2)
    });
    rdma::signals::install();
    let mut srv = server::Server::new(cfg).unwrap_or_else(|e| {
        eprintln!("memserver: {e}");
        exit(1)
    });
    if let Err(e) = srv.run() {
        eprintln!("memserver: event loop failed: {e}");
        exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn a_full_command_line_parses() {
        let c = parse(&args(
            "--listen 10.77.1.2:7471 --pool-mib 256 --region-mib 64 --secret 000102030405060708090a0b0c0d0e0f --allow 10.77.1.1",
        ))
        .unwrap();
        assert_eq!(c.listen.port(), 7471);
        assert_eq!((c.pool_mib, c.region_mib), (256, 64));
        assert_eq!(c.policy.allow.len(), 1);
    }

    #[test]
    fn bad_command_lines_say_why() {
        assert!(parse(&args(
            "--pool-mib 1 --secret 000102030405060708090a0b0c0d0e0f"
        ))
        .unwrap_err()
        .contains("--listen"));
        assert!(
            parse(&args("--listen 1.2.3.4:5 --pool-mib 0 --allow 1.2.3.4"))
                .unwrap_err()
                .contains("at least 1")
        );
        assert!(parse(&args("--listen 1.2.3.4:5 --pool-mib 8"))
            .unwrap_err()
            .contains("refusing"));
        assert!(parse(&args("--listen nowhere --pool-mib 8"))
            .unwrap_err()
            .contains("IPV4:PORT"));
        assert!(parse(&args("--listen 1.2.3.4:5 --pool-mib x"))
            .unwrap_err()
            .contains("not a number"));
        assert!(parse(&args("--bogus 1"))
            .unwrap_err()
            .contains("unknown option"));
    }
}
