//! memserver's settings: the command line (clap), an optional TOML file,
//! and the secret from a file or the environment. The command line wins
//! over the environment, which wins over the file; built-in defaults come
//! last. Everything is validated here, before anything is started.

use crate::auth::Policy;
use crate::proto::{self, SECRET_LEN};
use crate::rdma::HugePages;
use clap::{Parser, ValueEnum};
use log::{Level, LevelFilter};
use serde::Deserialize;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

/// The environment variable the secret can come from.
pub const SECRET_ENV: &str = "MEMSERVER_SECRET";

pub const MAX_POOL_MIB: u64 = 1 << 24;
pub const DEFAULT_MAX_NODES: u32 = 16;
pub const LIMIT_MAX_NODES: u32 = 4096;
pub const DEFAULT_MAX_QUEUES_PER_NODE: u32 = 256;
pub const LIMIT_MAX_QUEUES_PER_NODE: u32 = 4096;
pub const DEFAULT_MAX_PENDING: u32 = 64;
pub const LIMIT_MAX_PENDING: u32 = 1024;
/// Default and ceiling of `--max-connects-per-s`.
pub const DEFAULT_CONNECTS_PER_S: u32 = 100;
pub const LIMIT_CONNECTS_PER_S: u32 = 100_000;
/// How long a region outlives its node's last queue, by default; longer than
/// rswap_rdma's default loss_timeout_s (30 s), so a node that reconnects
/// within its bound finds its pages.
pub const DEFAULT_GRACE_S: u64 = 90;
pub const MAX_GRACE_S: u64 = 86_400;

const AFTER_HELP: &str = "\
Configuration file: every key is a long option without its dashes, e.g.
  listen = \"10.77.1.2:7471\"
  pool-mib = 4096
  allow = [\"10.77.1.1\"]
  secret-file = \"/etc/rswap/memserver.secret\"
Options given on the command line override the file (--allow replaces its list).

The secret (32 hex digits) comes from, in this order: --secret-file, --secret
(visible to every user in ps: avoid), $MEMSERVER_SECRET, secret-file in the
configuration file. It never travels: a connect request is admitted only if
its HMAC under the secret verifies (and only from an --allow address, when any
is given), and every reply proves the server knows it too. With neither a
secret nor --allow, memserver refuses to start.

Signals: SIGTERM/SIGINT disconnect every node and exit 0; SIGUSR1 logs the
status with the pages each region holds.
Exit status: 0 stopped by a signal, 1 runtime failure (no RDMA device, memory
cannot be locked, device removed), 2 bad command line or configuration.";

/// memserver: lends this machine's DRAM to rswap compute nodes over RDMA.
#[derive(Parser, Debug, Default)]
#[command(name = "memserver", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// TOML configuration file (keys: the long options without dashes)
    #[arg(short = 'c', long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Address and port to listen on: the IPv4 address of the RDMA device
    /// to serve [required]
    #[arg(long, value_name = "IPV4:PORT", value_parser = parse_listen)]
    pub listen: Option<SocketAddrV4>,

    /// Size of the pool, in MiB, locked in memory [required]
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=MAX_POOL_MIB))]
    pub pool_mib: Option<u64>,

    /// Largest region one node gets, in MiB [default: pool-mib / max-nodes]
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=MAX_POOL_MIB))]
    pub region_mib: Option<u64>,

    /// Compute nodes served at once [default: 16]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=LIMIT_MAX_NODES as i64))]
    pub max_nodes: Option<u32>,

    /// Queues (connections) one node may open [default: 256]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=LIMIT_MAX_QUEUES_PER_NODE as i64))]
    pub max_queues_per_node: Option<u32>,

    /// Connection requests being set up at once (also the listen backlog)
    /// [default: 64]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=LIMIT_MAX_PENDING as i64))]
    pub max_pending: Option<u32>,

    /// Connection requests admitted per second from one address; a burst
    /// of twice that, or of two nodes' worth of queues if more, passes
    /// [default: 100]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=LIMIT_CONNECTS_PER_S as i64))]
    pub max_connects_per_s: Option<u32>,

    /// Keep a node's region and its contents this long after its last
    /// queue disconnects, so it can reconnect and find its pages; longer
    /// than the kernel's loss_timeout_s (30 s) [default: 90]
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=MAX_GRACE_S))]
    pub grace_s: Option<u64>,

    /// Re-export the memory of this upstream memserver (the a-b-c chain):
    /// compute nodes that ask are pointed there, and reach it through this
    /// node, which must route between the two (IP forwarding) [none]
    #[arg(long, value_name = "IPV4:PORT", value_parser = parse_listen)]
    pub upstream: Option<SocketAddrV4>,

    /// Admit connect requests only from this address (repeatable)
    #[arg(long = "allow", value_name = "IPV4")]
    pub allow: Vec<Ipv4Addr>,

    /// File holding the shared secret (32 hex digits)
    #[arg(long, value_name = "PATH", conflicts_with = "secret")]
    pub secret_file: Option<PathBuf>,

    /// The shared secret itself. Insecure: every user sees it in ps; use
    /// --secret-file or $MEMSERVER_SECRET
    #[arg(long, value_name = "HEX32", value_parser = parse_secret_arg)]
    pub secret: Option<Secret>,

    /// Rewrite this file with the status (pool, nodes, queues) after
    /// events, at most every 0.2 s
    #[arg(long, value_name = "PATH")]
    pub status_file: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR/metrics [off; the address
    /// defaults to 127.0.0.1:9471]
    #[arg(long, value_name = "ADDR:PORT", num_args = 0..=1,
          default_missing_value = crate::metrics::DEFAULT_ADDR, value_parser = parse_metrics)]
    pub metrics: Option<SocketAddr>,

    /// Huge pages for the pool [default: auto]
    #[arg(long, value_name = "WHEN", value_enum)]
    pub huge_pages: Option<HugePagesArg>,

    /// Least severe messages logged [default: info]
    #[arg(long, value_name = "LEVEL", value_enum)]
    pub log_level: Option<LogLevelArg>,

    /// Tests only (built with the `test-faults` feature): misbehave on
    /// purpose (impostor: admit any request and answer without knowing the
    /// secret; tamper-reply: change the rkey of every grant after
    /// authenticating it)
    #[cfg(feature = "test-faults")]
    #[arg(long, value_name = "FAULT", value_enum, hide = true)]
    pub test_fault: Option<TestFault>,
}

/// Faults memserver injects for the tests of its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TestFault {
    Impostor,
    TamperReply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HugePagesArg {
    /// hugetlb pages if enough are reserved, else transparent huge pages, else 4 KiB pages
    Auto,
    /// hugetlb pages (vm.nr_hugepages), or fail
    Hugetlb,
    /// transparent huge pages, or fail
    Thp,
    /// 4 KiB pages
    Off,
}

impl From<HugePagesArg> for HugePages {
    fn from(h: HugePagesArg) -> HugePages {
        match h {
            HugePagesArg::Auto => HugePages::Auto,
            HugePagesArg::Hugetlb => HugePages::Hugetlb,
            HugePagesArg::Thp => HugePages::Thp,
            HugePagesArg::Off => HugePages::Off,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevelArg {
    Error,
    Warn,
    Info,
    Debug,
}

impl From<LogLevelArg> for LevelFilter {
    fn from(l: LogLevelArg) -> LevelFilter {
        match l {
            LogLevelArg::Error => LevelFilter::Error,
            LogLevelArg::Warn => LevelFilter::Warn,
            LogLevelArg::Info => LevelFilter::Info,
            LogLevelArg::Debug => LevelFilter::Debug,
        }
    }
}

/// A shared secret; its Debug form does not show it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Secret(pub [u8; SECRET_LEN]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

/// Parses a secret of 32 hex digits (surrounding white space allowed).
pub fn parse_secret(s: &str) -> Result<[u8; SECRET_LEN], String> {
    proto::parse_secret(s.as_bytes())
        .ok_or_else(|| format!("the secret must be {} hex digits", 2 * SECRET_LEN))
}

fn parse_secret_arg(s: &str) -> Result<Secret, String> {
    parse_secret(s).map(Secret)
}

/// `IPV4:PORT`, a device address: not 0.0.0.0 (memserver serves one
/// device and registers its pool there), not port 0.
pub fn parse_listen(s: &str) -> Result<SocketAddrV4, String> {
    let a: SocketAddrV4 = s
        .parse()
        .map_err(|_| format!("want IPV4:PORT, e.g. 10.77.1.2:7471, got {s:?}"))?;
    if a.ip().is_unspecified() {
        return Err(format!(
            "{s}: give the IPv4 address of the RDMA device to serve, not 0.0.0.0"
        ));
    }
    if a.port() == 0 {
        return Err(format!("{s}: port 0"));
    }
    Ok(a)
}

fn parse_metrics(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("want ADDR:PORT, e.g. 127.0.0.1:9471, got {s:?}"))
}

/// The configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub listen: Option<String>,
    pub pool_mib: Option<u64>,
    pub region_mib: Option<u64>,
    pub max_nodes: Option<u32>,
    pub max_queues_per_node: Option<u32>,
    pub max_pending: Option<u32>,
    pub max_connects_per_s: Option<u32>,
    pub grace_s: Option<u64>,
    pub upstream: Option<String>,
    pub allow: Option<Vec<String>>,
    pub secret_file: Option<PathBuf>,
    pub status_file: Option<PathBuf>,
    pub metrics: Option<String>,
    pub huge_pages: Option<HugePagesArg>,
    pub log_level: Option<LogLevelArg>,
}

impl FileConfig {
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--config {}: {e}", path.display()))?;
        FileConfig::parse(&text).map_err(|e| format!("--config {}: {e}", path.display()))
    }
}

/// Caps that keep any one client from taking the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_nodes: usize,
    pub max_queues_per_node: usize,
    pub max_pending: usize,
    /// Connection requests per second from one address.
    pub connects_per_s: u32,
}

/// Everything memserver runs with, validated.
#[derive(Debug)]
pub struct Settings {
    pub listen: SocketAddrV4,
    pub pool_mib: u64,
    pub region_mib: u64,
    /// How long a node's region outlives its last queue.
    pub grace: std::time::Duration,
    /// The memserver whose memory this one re-exports (see proto.rs).
    pub upstream: Option<SocketAddrV4>,
    pub limits: Limits,
    pub policy: Policy,
    /// Where the secret came from, for the log.
    pub secret_source: Option<String>,
    pub status_file: Option<PathBuf>,
    pub metrics: Option<SocketAddr>,
    pub huge_pages: HugePages,
    pub log_level: LevelFilter,
    /// Messages to log once logging is up (warnings about the settings).
    pub notes: Vec<(Level, String)>,
    /// Tests only.
    pub test_fault: Option<TestFault>,
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    key: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<T, String> {
    if v < lo || v > hi {
        return Err(format!("{key}: {v} is not in {lo}..={hi}"));
    }
    Ok(v)
}

/// Reads a secret file: 32 hex digits, surrounding white space ignored.
/// Returns the secret and, if other users can read the file, a warning.
pub fn read_secret_file(path: &Path) -> Result<([u8; SECRET_LEN], Option<String>), String> {
    use std::os::unix::fs::PermissionsExt;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let secret = parse_secret(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    let warning = (mode & 0o077 != 0).then(|| {
        format!(
            "secret file {} can be read by other users (mode {:o}): chmod 600 it",
            path.display(),
            mode & 0o777
        )
    });
    Ok((secret, warning))
}

impl Settings {
    /// Merges the command line, the secret from the environment (`env_secret`,
    /// the value of [`SECRET_ENV`]) and the configuration file it names.
    pub fn resolve(cli: Cli, env_secret: Option<String>) -> Result<Settings, String> {
        let (file, fname) = match &cli.config {
            Some(p) => (FileConfig::load(p)?, format!("{}", p.display())),
            None => (FileConfig::default(), String::new()),
        };
        let fkey = |key: &str| format!("--config {fname}: {key}");
        let mut notes = Vec::new();

        let listen = match (cli.listen, &file.listen) {
            (Some(l), _) => l,
            (None, Some(s)) => parse_listen(s).map_err(|e| format!("{}: {e}", fkey("listen")))?,
            (None, None) => {
                return Err(
                    "--listen IPV4:PORT is required (or listen = \"IPV4:PORT\" in --config)".into(),
                )
            }
        };
        let upstream = match (cli.upstream, &file.upstream) {
            (Some(u), _) => Some(u),
            (None, Some(s)) => {
                Some(parse_listen(s).map_err(|e| format!("{}: {e}", fkey("upstream")))?)
            }
            (None, None) => None,
        };
        if upstream == Some(listen) {
            return Err(format!(
                "--upstream {listen} is this memserver itself: name another memory node"
            ));
        }
        let pool_mib = match (cli.pool_mib, file.pool_mib) {
            (Some(p), _) => p,
            (None, Some(p)) => in_range(&fkey("pool-mib"), p, 1, MAX_POOL_MIB)?,
            (None, None) => {
                return Err("--pool-mib MIB is required (or pool-mib = N in --config)".into())
            }
        };
        let max_nodes = match (cli.max_nodes, file.max_nodes) {
            (Some(n), _) => n,
            (None, Some(n)) => in_range(&fkey("max-nodes"), n, 1, LIMIT_MAX_NODES)?,
            (None, None) => DEFAULT_MAX_NODES,
        };
        let max_queues_per_node = match (cli.max_queues_per_node, file.max_queues_per_node) {
            (Some(n), _) => n,
            (None, Some(n)) => in_range(
                &fkey("max-queues-per-node"),
                n,
                1,
                LIMIT_MAX_QUEUES_PER_NODE,
            )?,
            (None, None) => DEFAULT_MAX_QUEUES_PER_NODE,
        };
        let max_pending = match (cli.max_pending, file.max_pending) {
            (Some(n), _) => n,
            (None, Some(n)) => in_range(&fkey("max-pending"), n, 1, LIMIT_MAX_PENDING)?,
            (None, None) => DEFAULT_MAX_PENDING,
        };
        let connects_per_s = match (cli.max_connects_per_s, file.max_connects_per_s) {
            (Some(n), _) => n,
            (None, Some(n)) => in_range(&fkey("max-connects-per-s"), n, 1, LIMIT_CONNECTS_PER_S)?,
            (None, None) => DEFAULT_CONNECTS_PER_S,
        };
        let grace_s = match (cli.grace_s, file.grace_s) {
            (Some(g), _) => g,
            (None, Some(g)) => in_range(&fkey("grace-s"), g, 0, MAX_GRACE_S)?,
            (None, None) => DEFAULT_GRACE_S,
        };
        let region_mib = match (cli.region_mib, file.region_mib) {
            (Some(r), _) => Some(r),
            (None, Some(r)) => Some(in_range(&fkey("region-mib"), r, 1, MAX_POOL_MIB)?),
            (None, None) => None,
        };
        let region_mib = match region_mib {
            Some(r) if r > pool_mib => {
                return Err(format!(
                    "--region-mib {r} is larger than the pool (--pool-mib {pool_mib})"
                ))
            }
            Some(r) => {
                if r.saturating_mul(max_nodes as u64) > pool_mib {
                    notes.push((
                        Level::Warn,
                        format!(
                            "regions of up to {r} MiB for up to {max_nodes} nodes overcommit the \
                             {pool_mib} MiB pool: later nodes get what is left, or are refused \
                             once it is full"
                        ),
                    ));
                }
                r
            }
            // A fair share: every node up to --max-nodes gets its region.
            None => (pool_mib / max_nodes as u64).max(1),
        };

        let allow = if !cli.allow.is_empty() {
            cli.allow
        } else {
            file.allow
                .unwrap_or_default()
                .iter()
                .map(|a| {
                    a.parse::<Ipv4Addr>()
                        .map_err(|_| format!("{}: not an IPv4 address: {a:?}", fkey("allow")))
                })
                .collect::<Result<_, _>>()?
        };

        let env_secret = env_secret.filter(|s| !s.trim().is_empty());
        let (secret, secret_source) = if let Some(p) = &cli.secret_file {
            let (s, w) = read_secret_file(p).map_err(|e| format!("--secret-file {e}"))?;
            notes.extend(w.map(|w| (Level::Warn, w)));
            (Some(s), Some(format!("--secret-file {}", p.display())))
        } else if let Some(s) = cli.secret {
            notes.push((
                Level::Warn,
                "--secret on the command line is visible to every user of this machine \
                 (ps, /proc/PID/cmdline): use --secret-file or $MEMSERVER_SECRET"
                    .into(),
            ));
            (Some(s.0), Some("--secret (insecure)".into()))
        } else if let Some(s) = env_secret {
            let s = parse_secret(&s).map_err(|e| format!("${SECRET_ENV}: {e}"))?;
            (Some(s), Some(format!("${SECRET_ENV}")))
        } else if let Some(p) = &file.secret_file {
            let (s, w) = read_secret_file(p).map_err(|e| format!("{} {e}", fkey("secret-file")))?;
            notes.extend(w.map(|w| (Level::Warn, w)));
            (Some(s), Some(format!("secret-file {}", p.display())))
        } else {
            (None, None)
        };
        let policy = Policy::new(allow, secret);
        policy.validate()?;

        let metrics = match (cli.metrics, &file.metrics) {
            (Some(m), _) => Some(m),
            (None, Some(s)) => {
                Some(parse_metrics(s).map_err(|e| format!("{}: {e}", fkey("metrics")))?)
            }
            (None, None) => None,
        };

        Ok(Settings {
            listen,
            pool_mib,
            region_mib,
            grace: std::time::Duration::from_secs(grace_s),
            upstream,
            limits: Limits {
                max_nodes: max_nodes as usize,
                max_queues_per_node: max_queues_per_node as usize,
                max_pending: max_pending as usize,
                connects_per_s,
            },
            policy,
            secret_source,
            status_file: cli.status_file.or(file.status_file),
            metrics,
            huge_pages: cli
                .huge_pages
                .or(file.huge_pages)
                .unwrap_or(HugePagesArg::Auto)
                .into(),
            log_level: cli
                .log_level
                .or(file.log_level)
                .unwrap_or(LogLevelArg::Info)
                .into(),
            notes,
            #[cfg(feature = "test-faults")]
            test_fault: cli.test_fault,
            #[cfg(not(feature = "test-faults"))]
            test_fault: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    const S: &str = "000102030405060708090a0b0c0d0e0f";

    fn cli(s: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("memserver").chain(s.split_whitespace()))
    }

    fn settings(s: &str) -> Result<Settings, String> {
        Settings::resolve(cli(s).map_err(|e| e.to_string())?, None)
    }

    fn tmp(name: &str, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("memserver-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn an_upstream_is_another_memserver() {
        let c = settings(
            "--listen 10.77.2.2:7471 --pool-mib 8 --allow 10.77.2.1 --upstream 10.77.3.2:7471",
        )
        .unwrap();
        assert_eq!(c.upstream, Some("10.77.3.2:7471".parse().unwrap()));
        assert_eq!(
            settings("--listen 10.77.2.2:7471 --pool-mib 8 --allow 10.77.2.1")
                .unwrap()
                .upstream,
            None
        );
        let e = settings(
            "--listen 10.77.2.2:7471 --pool-mib 8 --allow 10.77.2.1 --upstream 10.77.2.2:7471",
        )
        .unwrap_err();
        assert!(e.contains("this memserver itself"), "{e}");
        let f = tmp(
            "up.toml",
            "listen = \"10.77.2.2:7471\"\npool-mib = 8\nupstream = \"nowhere\"\n",
            0o600,
        );
        let e = settings(&format!("--config {}", f.display())).unwrap_err();
        assert!(e.contains("upstream") && e.contains("IPV4:PORT"), "{e}");
    }

    #[test]
    fn a_full_command_line_parses() {
        let c = settings(&format!(
            "--listen 10.77.1.2:7471 --pool-mib 256 --region-mib 64 --secret {S} \
             --allow 10.77.1.1 --allow 10.77.1.3 --max-nodes 8 --max-queues-per-node 32 \
             --max-pending 16 --metrics --huge-pages off --log-level debug"
        ))
        .unwrap();
        assert_eq!(c.listen.port(), 7471);
        assert_eq!((c.pool_mib, c.region_mib), (256, 64));
        assert_eq!(c.policy.allow.len(), 2);
        assert_eq!(c.policy.secret.unwrap()[15], 15);
        assert_eq!(
            c.limits,
            Limits {
                max_nodes: 8,
                max_queues_per_node: 32,
                max_pending: 16,
                connects_per_s: 100,
            }
        );
        assert_eq!(c.metrics, Some("127.0.0.1:9471".parse().unwrap()));
        assert_eq!(c.huge_pages, HugePages::Off);
        assert_eq!(c.log_level, LevelFilter::Debug);
        // --secret on the command line works, loudly.
        assert!(c
            .notes
            .iter()
            .any(|(l, m)| *l == Level::Warn && m.contains("visible to every user")));
    }

    #[test]
    fn defaults_are_safe() {
        let c = settings("--listen 10.77.1.2:7471 --pool-mib 160 --allow 10.77.1.1").unwrap();
        // One node cannot take the pool: a fair share of 16 nodes.
        assert_eq!(c.region_mib, 10);
        assert_eq!(c.limits.max_nodes, 16);
        assert_eq!(c.limits.max_queues_per_node, 256);
        assert_eq!(c.limits.max_pending, 64);
        assert_eq!(c.metrics, None);
        assert_eq!(c.huge_pages, HugePages::Auto);
        assert_eq!(c.log_level, LevelFilter::Info);
        assert!(c.notes.is_empty());
        // A pool smaller than --max-nodes MiB still gives 1 MiB regions.
        let c = settings("--listen 10.77.1.2:7471 --pool-mib 8 --allow 10.77.1.1").unwrap();
        assert_eq!(c.region_mib, 1);
        let c = settings("--listen 10.77.1.2:7471 --pool-mib 160 --max-nodes 4 --allow 1.2.3.4")
            .unwrap();
        assert_eq!(c.region_mib, 40);
    }

    #[test]
    fn bad_flags_are_named_and_exit_2() {
        for (args, kind, words) in [
            ("--pool-mib", ErrorKind::InvalidValue, "--pool-mib"),
            ("--help-me", ErrorKind::UnknownArgument, "--help-me"),
            ("--pool-mib x", ErrorKind::ValueValidation, "--pool-mib"),
            ("--pool-mib 0", ErrorKind::ValueValidation, "--pool-mib"),
            ("--listen nowhere", ErrorKind::ValueValidation, "IPV4:PORT"),
            (
                "--listen 0.0.0.0:7471",
                ErrorKind::ValueValidation,
                "not 0.0.0.0",
            ),
            ("--allow 10.77.1", ErrorKind::ValueValidation, "--allow"),
            ("--secret abc", ErrorKind::ValueValidation, "32 hex digits"),
            ("--max-nodes 0", ErrorKind::ValueValidation, "--max-nodes"),
            (
                "--huge-pages sometimes",
                ErrorKind::InvalidValue,
                "--huge-pages",
            ),
            (
                "--metrics localhost",
                ErrorKind::ValueValidation,
                "--metrics",
            ),
            (
                "--secret-file /x --secret 000102030405060708090a0b0c0d0e0f",
                ErrorKind::ArgumentConflict,
                "--secret",
            ),
        ] {
            let e = cli(args).unwrap_err();
            assert_eq!(e.kind(), kind, "{args}: {e}");
            assert!(e.to_string().contains(words), "{args}: {e}");
            assert_eq!(e.exit_code(), 2, "{args}");
        }
        // --help and --version are not errors.
        assert_eq!(cli("--help").unwrap_err().exit_code(), 0);
        assert_eq!(cli("--version").unwrap_err().exit_code(), 0);
    }

    #[test]
    fn missing_and_inconsistent_settings_say_why() {
        let e = settings(&format!("--pool-mib 1 --secret {S}")).unwrap_err();
        assert!(e.contains("--listen"), "{e}");
        let e = settings(&format!("--listen 1.2.3.4:5 --secret {S}")).unwrap_err();
        assert!(e.contains("--pool-mib"), "{e}");
        let e = settings("--listen 1.2.3.4:5 --pool-mib 8").unwrap_err();
        assert!(e.contains("refusing"), "{e}");
        let e =
            settings("--listen 1.2.3.4:5 --pool-mib 8 --region-mib 9 --allow 1.2.3.4").unwrap_err();
        assert!(e.contains("larger than the pool"), "{e}");
        let c = settings(
            "--listen 1.2.3.4:5 --pool-mib 160 --region-mib 128 --max-nodes 4 --allow 1.2.3.4",
        )
        .unwrap();
        assert!(c.notes.iter().any(|(_, m)| m.contains("overcommit")));
    }

    #[test]
    fn the_secret_comes_from_a_file_or_the_environment() {
        let f = tmp("secret", &format!("{S}\n"), 0o600);
        let c = settings(&format!(
            "--listen 1.2.3.4:5 --pool-mib 8 --secret-file {}",
            f.display()
        ))
        .unwrap();
        assert_eq!(c.policy.secret.unwrap()[1], 1);
        assert!(c.notes.is_empty(), "{:?}", c.notes);
        let open = tmp("open-secret", S, 0o644);
        let c = settings(&format!(
            "--listen 1.2.3.4:5 --pool-mib 8 --secret-file {}",
            open.display()
        ))
        .unwrap();
        assert!(c.notes.iter().any(|(_, m)| m.contains("chmod 600")));
        let e =
            settings("--listen 1.2.3.4:5 --pool-mib 8 --secret-file /nonexistent/s").unwrap_err();
        assert!(e.contains("/nonexistent/s"), "{e}");
        let bad = tmp("bad-secret", "xyz", 0o600);
        let e = settings(&format!(
            "--listen 1.2.3.4:5 --pool-mib 8 --secret-file {}",
            bad.display()
        ))
        .unwrap_err();
        assert!(e.contains("32 hex digits"), "{e}");

        let base = cli("--listen 1.2.3.4:5 --pool-mib 8").unwrap();
        let c = Settings::resolve(base, Some(format!(" {S}\n"))).unwrap();
        assert_eq!(c.secret_source.as_deref(), Some("$MEMSERVER_SECRET"));
        assert!(c.notes.is_empty());
        let base = cli("--listen 1.2.3.4:5 --pool-mib 8").unwrap();
        let e = Settings::resolve(base, Some("nothex".into())).unwrap_err();
        assert!(e.contains("MEMSERVER_SECRET"), "{e}");
        // An empty variable is no secret.
        let base = cli("--listen 1.2.3.4:5 --pool-mib 8").unwrap();
        assert!(Settings::resolve(base, Some(String::new())).is_err());
    }

    #[test]
    fn the_config_file_is_read_and_overridden() {
        let secret = tmp("file-secret", S, 0o600);
        let f = tmp(
            "memserver.toml",
            &format!(
                "listen = \"10.77.1.2:7471\"\npool-mib = 160\nregion-mib = 128\nmax-nodes = 4\n\
                 allow = [\"10.77.1.1\"]\nsecret-file = \"{}\"\nstatus-file = \"/run/m/status\"\n\
                 metrics = \"127.0.0.1:9999\"\nhuge-pages = \"thp\"\nlog-level = \"warn\"\n",
                secret.display()
            ),
            0o644,
        );
        let c = settings(&format!("--config {}", f.display())).unwrap();
        assert_eq!(c.listen, "10.77.1.2:7471".parse().unwrap());
        assert_eq!(
            (c.pool_mib, c.region_mib, c.limits.max_nodes),
            (160, 128, 4)
        );
        assert_eq!(c.policy.allow, vec![Ipv4Addr::new(10, 77, 1, 1)]);
        assert!(c.policy.secret.is_some());
        assert_eq!(c.status_file, Some(PathBuf::from("/run/m/status")));
        assert_eq!(c.metrics, Some("127.0.0.1:9999".parse().unwrap()));
        assert_eq!(c.huge_pages, HugePages::Thp);
        assert_eq!(c.log_level, LevelFilter::Warn);
        // The command line wins; --allow replaces the file's list.
        let c = settings(&format!(
            "-c {} --pool-mib 200 --allow 10.77.9.9 --allow 10.77.9.8",
            f.display()
        ))
        .unwrap();
        assert_eq!(c.pool_mib, 200);
        assert_eq!(c.policy.allow.len(), 2);
        assert_eq!(c.policy.allow[0], Ipv4Addr::new(10, 77, 9, 9));
    }

    #[test]
    fn bad_config_files_name_the_key() {
        let f = tmp("typo.toml", "listen = \"1.2.3.4:5\"\npool_mib = 8\n", 0o644);
        let e = settings(&format!("--config {}", f.display())).unwrap_err();
        assert!(e.contains("pool_mib") && e.contains("typo.toml"), "{e}");
        let f = tmp(
            "type.toml",
            "listen = \"1.2.3.4:5\"\npool-mib = \"big\"\n",
            0o644,
        );
        let e = settings(&format!("--config {}", f.display())).unwrap_err();
        assert!(e.contains("pool-mib"), "{e}");
        let f = tmp(
            "range.toml",
            "listen = \"1.2.3.4:5\"\npool-mib = 0\n",
            0o644,
        );
        let e = settings(&format!("--config {}", f.display())).unwrap_err();
        assert!(e.contains("pool-mib: 0 is not in"), "{e}");
        let f = tmp("addr.toml", "listen = \"0.0.0.0:5\"\npool-mib = 8\n", 0o644);
        let e = settings(&format!("--config {}", f.display())).unwrap_err();
        assert!(e.contains("listen") && e.contains("0.0.0.0"), "{e}");
        let f = tmp(
            "allow.toml",
            "listen = \"1.2.3.4:5\"\npool-mib = 8\nallow = [\"x\"]\n",
            0o644,
        );
        let e = settings(&format!("--config {}", f.display())).unwrap_err();
        assert!(e.contains("allow: not an IPv4 address"), "{e}");
        let e = settings("--config /nonexistent/memserver.toml").unwrap_err();
        assert!(e.contains("/nonexistent/memserver.toml"), "{e}");
    }

    #[test]
    fn the_shipped_example_config_parses() {
        let text = include_str!("../memserver.toml");
        let f = FileConfig::parse(text).unwrap();
        assert!(f.listen.is_some() && f.pool_mib.is_some());
        parse_listen(f.listen.as_deref().unwrap()).unwrap();
    }
}
