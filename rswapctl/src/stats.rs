//! Reading rswap's statistics from debugfs and sysfs into a [`Snapshot`].
//!
//! The modules publish one file per counter:
//! - `<debugfs>/rswap/<counter>`: totals of the rswap core;
//! - `<debugfs>/rswap/<backend>/<counter>`: per backend (`dram`, `rdma`);
//! - `<debugfs>/rswap_rdma/server<i>-<a.b.c.d>-<port>/<counter>`: per
//!   memory server;
//! - `<sysfs>/module/rswap_rdma/parameters/placement`: the policy.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// Counters of one directory, by file name.
pub type Counters = BTreeMap<String, u64>;

/// One memory server of rswap_rdma.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub index: usize,
    /// `a.b.c.d:port`.
    pub endpoint: String,
    pub counters: Counters,
}

impl Server {
    /// A counter, 0 if absent (an older module).
    pub fn get(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

/// Everything rswapctl shows, read at one moment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    pub totals: Counters,
    pub backends: Vec<(String, Counters)>,
    pub servers: Vec<Server>,
    /// rswap_rdma's placement policy, if it is loaded.
    pub placement: Option<String>,
}

/// Why there is nothing to show.
#[derive(Debug)]
pub enum ReadError {
    /// debugfs is not mounted at the given place.
    NoDebugfs(PathBuf),
    /// rswap is not loaded (no `rswap` directory in debugfs).
    NotLoaded(PathBuf),
    Io(PathBuf, std::io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NoDebugfs(p) => write!(
                f,
                "debugfs is not mounted at {} (mount -t debugfs none /sys/kernel/debug), or we are not root",
                p.display()
            ),
            ReadError::NotLoaded(p) => write!(
                f,
                "rswap is not loaded: {} does not exist (insmod rswap.ko and a backend)",
                p.display()
            ),
            ReadError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

/// The counters in `dir`: every regular file holding one integer.
fn counters(dir: &Path) -> Result<Counters, ReadError> {
    let mut out = Counters::new();
    let entries = fs::read_dir(dir).map_err(|e| ReadError::Io(dir.to_path_buf(), e))?;
    for e in entries.flatten() {
        let path = e.path();
        if !path.is_file() {
            continue;
        }
        if let Ok(text) = fs::read_to_string(&path) {
            if let Ok(v) = text.trim().parse::<u64>() {
                out.insert(e.file_name().to_string_lossy().into_owned(), v);
            }
        }
    }
    Ok(out)
}

/// Parses `server<i>-<a.b.c.d>-<port>`.
fn server_dir(name: &str) -> Option<(usize, String)> {
    let rest = name.strip_prefix("server")?;
    let mut parts = rest.splitn(3, '-');
    let index = parts.next()?.parse().ok()?;
    let ip = parts.next()?;
    let port: u16 = parts.next()?.parse().ok()?;
    Some((index, format!("{ip}:{port}")))
}

/// Reads a snapshot from `debugfs` (normally /sys/kernel/debug) and
/// `sysfs` (normally /sys).
pub fn read(debugfs: &Path, sysfs: &Path) -> Result<Snapshot, ReadError> {
    let root = debugfs.join("rswap");
    if !root.is_dir() {
        // An empty directory is an unmounted debugfs.
        let mounted = fs::read_dir(debugfs).is_ok_and(|mut d| d.next().is_some());
        return Err(if mounted {
            ReadError::NotLoaded(root)
        } else {
            ReadError::NoDebugfs(debugfs.to_path_buf())
        });
    }
    let mut snap = Snapshot {
        totals: counters(&root)?,
        ..Snapshot::default()
    };
    let mut dirs: Vec<_> = fs::read_dir(&root)
        .map_err(|e| ReadError::Io(root.clone(), e))?
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    dirs.sort_by_key(|e| e.file_name());
    for d in dirs {
        snap.backends.push((
            d.file_name().to_string_lossy().into_owned(),
            counters(&d.path())?,
        ));
    }
    let rdma = debugfs.join("rswap_rdma");
    if let Ok(entries) = fs::read_dir(&rdma) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some((index, endpoint)) = server_dir(&name) {
                snap.servers.push(Server {
                    index,
                    endpoint,
                    counters: counters(&e.path())?,
                });
            }
        }
    }
    snap.servers.sort_by_key(|s| s.index);
    snap.placement = fs::read_to_string(sysfs.join("module/rswap_rdma/parameters/placement"))
        .ok()
        .map(|s| s.trim().to_string());
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake debugfs and sysfs under a temporary directory.
    pub(crate) fn fake_tree(tag: &str) -> PathBuf {
        let base = std::env::temp_dir().join(format!("rswapctl-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let w = |p: &str, v: &str| {
            let path = base.join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, v).unwrap();
        };
        w("debug/rswap/stores", "100\n");
        w("debug/rswap/loads", "40\n");
        w("debug/rswap/rdma/stores", "100\n");
        w("debug/rswap/rdma/pages_held", "60\n");
        for (i, ip, lat, share) in [
            (0, "10.77.1.2", "900", "800"),
            (1, "10.77.2.2", "3600", "200"),
        ] {
            let d = format!("debug/rswap_rdma/server{i}-{ip}-7471");
            w(&format!("{d}/up"), "1");
            w(&format!("{d}/pages"), "30");
            w(&format!("{d}/stores"), if i == 0 { "80" } else { "20" });
            w(&format!("{d}/read_lat_ewma_us"), lat);
            w(&format!("{d}/share_permille"), share);
            w(&format!("{d}/capacity_pages"), "4096");
            w(&format!("{d}/free_pages"), "4066");
        }
        w("sys/module/rswap_rdma/parameters/placement", "weighted\n");
        base
    }

    #[test]
    fn reads_the_tree() {
        let base = fake_tree("read");
        let s = read(&base.join("debug"), &base.join("sys")).unwrap();
        assert_eq!(s.totals["stores"], 100);
        assert_eq!(s.backends.len(), 1);
        assert_eq!(s.backends[0].0, "rdma");
        assert_eq!(s.servers.len(), 2);
        assert_eq!(s.servers[1].endpoint, "10.77.2.2:7471");
        assert_eq!(s.servers[1].get("read_lat_ewma_us"), 3600);
        assert_eq!(s.servers[1].get("missing"), 0);
        assert_eq!(s.placement.as_deref(), Some("weighted"));
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn says_why_nothing_is_there() {
        let base = std::env::temp_dir().join(format!("rswapctl-empty-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("debug")).unwrap();
        let e = read(&base.join("debug"), &base).unwrap_err();
        assert!(matches!(e, ReadError::NoDebugfs(_)), "{e}");
        fs::create_dir_all(base.join("debug/other")).unwrap();
        let e = read(&base.join("debug"), &base).unwrap_err();
        assert!(e.to_string().contains("rswap is not loaded"), "{e}");
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn parses_server_directories() {
        assert_eq!(
            server_dir("server3-10.0.0.1-7471"),
            Some((3, "10.0.0.1:7471".to_string()))
        );
        assert_eq!(server_dir("serverx-1-2"), None);
        assert_eq!(server_dir("dram"), None);
    }
}
