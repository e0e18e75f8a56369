//! rswap-probe: connects to a memserver the way rswap_rdma does, prints
//! what it was granted or why it was refused, and can try an RDMA READ at
//! any offset of (or past) its region. The lab uses it to check admission
//! (allowlist, secret), limits, and that a node cannot reach outside its
//! region.
//!
//! It also plays the attacker for the tests: it can replay its own
//! request byte for byte, date it off the server's clock, or claim a
//! session it does not have.
//!
//! Exit: 0 accepted (and the read, if any, succeeded), 3 refused,
//! 4 the read failed with a completion error, 5 accepted but the server's
//! reply did not authenticate, 1 anything else, 2 bad command line.

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use memserver::auth::{now_s, Key};
use memserver::config::parse_secret;
use memserver::config::{parse_listen, read_secret_file, SECRET_ENV};
use memserver::proto::{server_id, DecodeError, Reply, Request, Sealed, Status, Token, NO_TOKEN};
use memserver::rdma::{Client, EventChannel};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::exit;

/// rswap-probe: a user-space rswap client for testing a memserver.
#[derive(Parser, Debug)]
#[command(
    name = "rswap-probe",
    version,
    after_help = "\
The secret comes from --secret, --secret-file or $MEMSERVER_SECRET; one is
required (give --secret 00000000000000000000000000000000 to send none).
Exit status: 0 accepted (and the read, if any, succeeded), 3 refused,
4 the read failed with a completion error, 5 accepted but the server's reply
did not authenticate (it does not know our secret, or the reply was
changed), 1 any other failure, 2 bad command line."
)]
struct Args {
    /// The memserver to connect to
    #[arg(long, value_name = "IPV4:PORT", value_parser = parse_listen)]
    server: SocketAddrV4,
    /// The shared secret (32 hex digits)
    #[arg(long, value_name = "HEX32", value_parser = parse_secret, conflicts_with = "secret_file")]
    secret: Option<[u8; 16]>,
    /// File holding the shared secret
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,
    /// Local address to connect from
    #[arg(long, value_name = "IPV4")]
    from: Option<Ipv4Addr>,
    /// Node id to claim (decimal, or hex with 0x)
    #[arg(long, value_name = "N", default_value = "0x9b0be", value_parser = parse_u64)]
    node_id: u64,
    /// Queue index to claim
    #[arg(long, value_name = "N", default_value_t = 0)]
    queue: u16,
    /// MiB of remote memory to ask for
    #[arg(long, value_name = "MIB", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..))]
    want_mib: u32,
    /// After admission, RDMA READ one page at this byte offset of the region
    /// (wraps around: 2^64-4096 is the page before it)
    #[arg(long, value_name = "BYTES", value_parser = parse_u64)]
    read_at: Option<u64>,
    /// After admission, RDMA READ one page at ADDR with RKEY, another
    /// node's grant, on this node's queue: every node has its own
    /// protection domain, so this must fail (exit 4)
    #[arg(long, value_name = "RKEY:ADDR", value_parser = parse_grant)]
    read_with: Option<(u32, u64)>,
    /// Open this many queues in one session: the first gets the session
    /// token, the others present it, as rswap_rdma's queues do
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    queues: u16,
    /// After admission, stay connected this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    hold: u64,
    /// After admission, send the first request again, byte for byte (an
    /// attacker replaying a captured request): the server must refuse it
    #[arg(long)]
    replay: bool,
    /// Date the requests this many seconds off our clock
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    clock_offset_s: i64,
    /// Claim a session with a made-up token (a clone that guesses)
    #[arg(long)]
    fake_session: bool,
    /// Instead of one connection, make N connection attempts as fast as
    /// possible, each as a new node (released at once when admitted), and
    /// print how they were answered
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    flood: Option<u32>,
    /// Timeout of each connection step, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 3000,
          value_parser = clap::value_parser!(i32).range(1..))]
    timeout_ms: i32,
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("not a number (decimal, or hex with 0x): {s:?}"))
}

/// `RKEY:ADDR`, each decimal or 0x hex, as printed by an accepted probe.
fn parse_grant(s: &str) -> Result<(u32, u64), String> {
    let (k, a) = s
        .split_once(':')
        .ok_or_else(|| format!("expected RKEY:ADDR, got {s:?}"))?;
    let k = parse_u64(k)?;
    let k = u32::try_from(k).map_err(|_| format!("an rkey has 32 bits: {k:#x}"))?;
    Ok((k, parse_u64(a)?))
}

fn main() {
    let a = Args::parse();
    let secret = if let Some(s) = a.secret {
        s
    } else if let Some(p) = &a.secret_file {
        read_secret_file(p)
            .map(|(s, _)| s)
            .unwrap_or_else(|e| Args::command().error(ErrorKind::ValueValidation, e).exit())
    } else if let Ok(v) = std::env::var(SECRET_ENV) {
        parse_secret(&v).unwrap_or_else(|e| {
            Args::command()
                .error(ErrorKind::ValueValidation, format!("${SECRET_ENV}: {e}"))
                .exit()
        })
    } else {
        Args::command()
            .error(
                ErrorKind::MissingRequiredArgument,
                "give the secret: --secret, --secret-file or $MEMSERVER_SECRET",
            )
            .exit()
    };
    let key = Key::new(secret);
    let ch = EventChannel::new().unwrap_or_else(|e| {
        eprintln!("rswap-probe: {e}");
        exit(1)
    });
    let p = Probe {
        a: &a,
        ch: &ch,
        key,
    };
    if let Some(n) = a.flood {
        p.flood(n);
        exit(0);
    }
    let req = Request {
        queue: a.queue,
        node_id: a.node_id,
        want_mib: a.want_mib,
        release: false,
        upstream: false,
        time: 0,
        nonce: 0,
    };
    // A probe has a session only when it fakes one: with a node id in use
    // it is refused as a clone (NodeInUse).
    let fake = if a.fake_session { [0x5a; 16] } else { NO_TOKEN };
    let first = p.seal(req, &fake);
    let (mut c, r) = match p.ask(&first, "") {
        Answer::Admitted(c, r) => (c, r),
        Answer::Refused => exit(3),
        Answer::NotAuthentic => exit(5),
        Answer::Failed => exit(1),
    };
    println!(
        "probe: accepted: region {} MiB at {:#x}, rkey {:#x} (grant {:#x}:{:#x})",
        r.size >> 20,
        r.addr,
        r.rkey,
        r.rkey,
        r.addr
    );
    // The exit status; whatever happens, the region is released first.
    let mut status = 0;
    let mut reads = Vec::new();
    if let Some(off) = a.read_at {
        reads.push((r.addr.wrapping_add(off), r.rkey, format!("at +{off}")));
    }
    if let Some((rkey, addr)) = a.read_with {
        reads.push((addr, rkey, format!("with rkey {rkey:#x} at {addr:#x}")));
    }
    // A failed read puts the QP in error: stop at the first.
    for (addr, rkey, what) in reads {
        match c.read(addr, rkey, 5000) {
            Ok(None) => println!("probe: read {what}: ok"),
            Ok(Some(st)) => {
                println!("probe: read {what}: failed: {st}");
                status = 4;
            }
            Err(e) => {
                println!("probe: read {what}: {e}");
                status = 1;
            }
        }
        if status != 0 {
            break;
        }
    }
    let mut more = Vec::new();
    let mut refused = false;
    // The last request admitted: --replay sends it again.
    let mut last = first;
    for i in 1..a.queues {
        if status != 0 || refused {
            break;
        }
        let q = Request {
            queue: a.queue.wrapping_add(i),
            ..req
        };
        let sealed = p.seal(q, &r.token);
        match p.ask(&sealed, &format!("queue {} ", q.queue)) {
            Answer::Admitted(c, _) => {
                more.push(c);
                last = sealed;
            }
            Answer::Refused => refused = true,
            Answer::NotAuthentic => status = 5,
            Answer::Failed => status = 1,
        }
    }
    if !refused && a.queues > 1 {
        println!("probe: {} queues in one session", a.queues);
    }
    if a.replay && status == 0 && !refused {
        match p.ask(&last, "the replayed request ") {
            Answer::Admitted(c, _) => {
                println!("probe: the replayed request was admitted");
                more.push(c);
            }
            Answer::Refused => refused = true,
            Answer::NotAuthentic => status = 5,
            Answer::Failed => status = 1,
        }
    }
    if a.hold > 0 {
        std::thread::sleep(std::time::Duration::from_secs(a.hold));
    }
    drop(more);
    drop(c);
    // Leave as rswap_rdma does on unload: release the region now rather
    // than leave it to the server's grace period.
    if p.release(req, &r.token) {
        println!("probe: released the region")
    } else {
        println!("probe: could not release the region (the server frees it after its grace period)")
    }
    if refused && status == 0 {
        status = 3;
    }
    exit(status)
}

/// How a connection request was answered.
enum Answer {
    Admitted(Client, Reply),
    Refused,
    NotAuthentic,
    Failed,
}

struct Probe<'a> {
    a: &'a Args,
    ch: &'a EventChannel,
    key: Key,
}

impl Probe<'_> {
    /// Leaves as rswap_rdma does on unload: asks the server to free the
    /// region of `req`'s node now (its session `token` proves it is ours).
    /// Whether the server said it did.
    fn release(&self, req: Request, token: &Token) -> bool {
        let a = self.a;
        let bye = self.seal(
            Request {
                release: true,
                upstream: false,
                ..req
            },
            token,
        );
        match self.ch.connect(a.server, a.from, &bye.bytes, a.timeout_ms) {
            Ok(c) => {
                c.rejected
                    && Reply::open(&c.reply, &bye.tag, &self.key).map(|r| r.status)
                        == Ok(Status::Ok)
            }
            Err(_) => false,
        }
    }

    /// `n` connection attempts, each from a new random node id; prints a
    /// summary of the answers.
    fn flood(&self, n: u32) {
        let t = std::time::Instant::now();
        let mut answers: std::collections::BTreeMap<String, u32> = Default::default();
        for _ in 0..n {
            let req = Request {
                queue: 0,
                node_id: (random_u32() as u64) << 32 | random_u32() as u64,
                want_mib: self.a.want_mib,
                release: false,
                upstream: false,
                time: 0,
                nonce: 0,
            };
            let sealed = self.seal(req, &NO_TOKEN);
            let a = self.a;
            let what = match self
                .ch
                .connect(a.server, a.from, &sealed.bytes, a.timeout_ms)
            {
                Err(_) => "failed".to_string(),
                Ok(c) => match Reply::open(&c.reply, &sealed.tag, &self.key) {
                    Ok(r) if !c.rejected && r.status == Status::Ok => {
                        drop(c);
                        self.release(req, &r.token);
                        "admitted".to_string()
                    }
                    Ok(r) => format!("{:?}", r.status),
                    // Refusals sent before the request was verified are
                    // unauthenticated: counted by the status they claim.
                    Err(DecodeError::NotAuthentic) if c.rejected => Reply::claimed_status(&c.reply)
                        .map_or("?".to_string(), |s| format!("{s:?}")),
                    Err(DecodeError::NotAuthentic) => "accepted, not authentic".to_string(),
                    Err(e) => format!("bad reply ({e})"),
                },
            };
            *answers.entry(what).or_default() += 1;
        }
        let secs = t.elapsed().as_secs_f64();
        let list: Vec<String> = answers.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!(
            "probe: flood: {n} attempts in {secs:.1} s ({:.0}/s): {}",
            n as f64 / secs.max(1e-3),
            list.join(", ")
        );
    }

    /// Dates `req` (with --clock-offset-s), gives it a fresh nonce and seals it.
    fn seal(&self, req: Request, token: &Token) -> Sealed {
        let req = Request {
            time: (now_s() as i64).wrapping_add(self.a.clock_offset_s) as u32,
            nonce: random_u32(),
            ..req
        };
        let a = self.a;
        req.seal(
            &server_id(a.server.ip().octets(), a.server.port()),
            token,
            &self.key,
        )
        .expect("HMAC-SHA256 in user space cannot fail")
    }

    /// Sends a sealed request; `what` names it in the output.
    fn ask(&self, req: &Sealed, what: &str) -> Answer {
        let a = self.a;
        let t = std::time::Instant::now();
        let c = match self.ch.connect(a.server, a.from, &req.bytes, a.timeout_ms) {
            Ok(c) => c,
            Err(e) => {
                println!("probe: {what}connect failed: {e}");
                return Answer::Failed;
            }
        };
        match Reply::open(&c.reply, &req.tag, &self.key) {
            Ok(r) if c.rejected => {
                let skew = if r.status == Status::ClockSkew {
                    format!(
                        " (the server's clock is {} s from our request's)",
                        r.time.wrapping_sub(req.time()) as i32
                    )
                } else {
                    String::new()
                };
                println!("probe: {what}refused: {:?}{skew}", r.status);
                Answer::Refused
            }
            Ok(r) if r.status == Status::Ok => {
                println!(
                    "probe: {what}connected in {:.1} ms",
                    t.elapsed().as_secs_f64() * 1e3
                );
                Answer::Admitted(c, r)
            }
            Ok(r) => {
                println!("probe: {what}accepted with status {:?}", r.status);
                Answer::Failed
            }
            // A refusal the server sent before it could verify our
            // request (a wrong secret, a flood) cannot be authenticated:
            // its status is only a claim.
            Err(DecodeError::NotAuthentic) if c.rejected => {
                println!(
                    "probe: {what}refused: {} (unauthenticated: the server could not verify our request, or does not know our secret)",
                    Reply::claimed_status(&c.reply).map_or("?".to_string(), |s| format!("{s:?}"))
                );
                Answer::Refused
            }
            Err(DecodeError::NotAuthentic) => {
                println!(
                    "probe: {what}accepted, but the reply does not authenticate: the server does not know our secret, or the reply was changed"
                );
                Answer::NotAuthentic
            }
            Err(e) if c.rejected => {
                println!("probe: {what}refused (no rswap reply: {e})");
                Answer::Refused
            }
            Err(e) => {
                println!("probe: {what}accepted without a valid reply: {e}");
                Answer::Failed
            }
        }
    }
}

fn random_u32() -> u32 {
    use std::io::Read;
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .unwrap_or_else(|e| {
            eprintln!("rswap-probe: /dev/urandom: {e}");
            exit(1)
        });
    u32::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("rswap-probe").chain(s.split_whitespace()))
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn good_values_parse() {
        let a = parse(
            "--server 10.77.1.2:7471 --secret 000102030405060708090a0b0c0d0e0f --node-id 0x10 \
             --want-mib 64 --read-at 18446744073709547520 --hold 3",
        )
        .unwrap();
        assert_eq!(a.node_id, 16);
        assert_eq!(a.want_mib, 64);
        assert_eq!(a.read_at, Some(u64::MAX - 4095));
        assert_eq!(a.hold, 3);
        assert_eq!(parse("--server 1.2.3.4:5").unwrap().node_id, 0x9b0be);
        assert_eq!(
            parse("--server 1.2.3.4:5 --read-with 0x1f2:0x7f0000001000")
                .unwrap()
                .read_with,
            Some((0x1f2, 0x7f00_0000_1000))
        );
    }

    #[test]
    fn bad_values_are_refused_not_defaulted() {
        for args in [
            "",
            "--server nowhere",
            "--server 1.2.3.4:5 --node-id twelve",
            "--server 1.2.3.4:5 --want-mib 0",
            "--server 1.2.3.4:5 --want-mib -1",
            "--server 1.2.3.4:5 --read-at 1k",
            "--server 1.2.3.4:5 --from 10.77.1",
            "--server 1.2.3.4:5 --secret 1234",
            "--server 1.2.3.4:5 --bogus",
            "--server 1.2.3.4:5 --read-with 0x10",
            "--server 1.2.3.4:5 --read-with 0x100000000:0x1000",
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args}: {e}");
        }
    }
}
