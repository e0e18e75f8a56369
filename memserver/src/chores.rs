//! The chores thread: the slow work that must not hold up connection
//! events. Zeroing a freed region (hundreds of MiB take a noticeable time),
//! the SIGUSR1 scan of every region, and rewriting the status file run
//! here, while the event loop goes on admitting and serving nodes.
//!
//! Ordering: a freed region goes back to the pool only once it is zeroed.
//! Its registration is dropped before the zeroing is queued, so no remote
//! write can land after the zeroes, and the event loop releases the
//! extent when the thread reports it done ([`Done::Zeroed`]); until then
//! nothing else can be given that memory.

use crate::pool::Extent;
use crate::rdma::PoolBytes;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Work for the thread.
pub enum Job {
    /// Zero a freed node's extent, then report it.
    Zero { node: u64, extent: Extent },
    /// Count the used pages of these (node, extent) regions.
    Scan(Vec<(u64, Extent)>),
    /// Replace the status file with this text (only the latest counts).
    Status { path: PathBuf, text: String },
}

/// What the thread reports back.
#[derive(Debug, PartialEq, Eq)]
pub enum Done {
    /// The extent is zeroed: it may go back to the pool. `zeroed` is false
    /// when the server was stopping (the mapping goes back to the kernel,
    /// which zeroes pages before anyone else gets them).
    Zeroed {
        node: u64,
        extent: Extent,
        took: Duration,
        zeroed: bool,
    },
    /// Used pages per (node, extent), in the order asked.
    Scanned(Vec<(u64, Extent, u64)>),
    /// Writing the status file failed.
    StatusFailed(String),
}

pub struct Chores {
    tx: Option<Sender<Job>>,
    rx: Receiver<Done>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Chores {
    /// Starts the thread, which owns the pool's CPU handle.
    pub fn start(mut bytes: PoolBytes) -> std::io::Result<Chores> {
        let (tx, jobs) = mpsc::channel::<Job>();
        let (done, rx) = mpsc::channel::<Done>();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let thread = std::thread::Builder::new()
            .name("memserver-chores".into())
            .spawn(move || {
                while let Ok(job) = jobs.recv() {
                    let out = match job {
                        Job::Zero { node, extent } => {
                            let t = Instant::now();
                            let zeroed = !stop.load(Ordering::SeqCst);
                            if zeroed {
                                bytes.zero(extent.offset, extent.len);
                            }
                            Some(Done::Zeroed {
                                node,
                                extent,
                                took: t.elapsed(),
                                zeroed,
                            })
                        }
                        Job::Scan(regions) => Some(Done::Scanned(
                            regions
                                .into_iter()
                                .map(|(n, e)| (n, e, bytes.count_used_pages(e.offset, e.len)))
                                .collect(),
                        )),
                        Job::Status { path, text } => write_status(&path, &text)
                            .err()
                            .map(|e| Done::StatusFailed(format!("{}: {e}", path.display()))),
                    };
                    if let Some(out) = out {
                        if done.send(out).is_err() {
                            break;
                        }
                    }
                }
            })?;
        Ok(Chores {
            tx: Some(tx),
            rx,
            stopping,
            thread: Some(thread),
        })
    }

    pub fn submit(&self, job: Job) {
        if let Some(tx) = &self.tx {
            // The thread only stops when we drop the sender.
            let _ = tx.send(job);
        }
    }

    /// What finished since the last call.
    pub fn finished(&self) -> Vec<Done> {
        self.rx.try_iter().collect()
    }

    /// Waits for the work queued so far, skipping zeroing (the server is
    /// stopping), and stops the thread; returns what it finished.
    pub fn stop(&mut self) -> Vec<Done> {
        self.stopping.store(true, Ordering::SeqCst);
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.finished()
    }
}

impl Drop for Chores {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_status(path: &PathBuf, text: &str) -> std::io::Result<()> {
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdma::Buffer;

    #[test]
    fn zeroes_scans_and_writes_off_the_caller() {
        let b = Buffer::map(4 * 4096).unwrap();
        let mut c = Chores::start(b.cpu_access().unwrap()).unwrap();
        let e = Extent {
            offset: 4096,
            len: 2 * 4096,
        };
        c.submit(Job::Scan(vec![(7, e)]));
        c.submit(Job::Zero { node: 7, extent: e });
        c.submit(Job::Scan(vec![(7, e)]));
        let dir = std::env::temp_dir().join(format!("chores-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("status");
        c.submit(Job::Status {
            path: path.clone(),
            text: "ok\n".into(),
        });
        let mut got = Vec::new();
        let t = Instant::now();
        while got.len() < 3 && t.elapsed() < Duration::from_secs(10) {
            got.extend(c.finished());
            std::thread::sleep(Duration::from_millis(5));
        }
        // (rdma.rs tests the counting itself.)
        assert_eq!(got[0], Done::Scanned(vec![(7, e, 0)]));
        assert!(matches!(
            got[1],
            Done::Zeroed {
                node: 7,
                zeroed: true,
                ..
            }
        ));
        assert_eq!(got[2], Done::Scanned(vec![(7, e, 0)]));
        assert!(c.stop().is_empty());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "ok\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stopping_server_skips_zeroing() {
        let b = Buffer::map(4096).unwrap();
        let mut c = Chores::start(b.cpu_access().unwrap()).unwrap();
        c.stopping.store(true, Ordering::SeqCst);
        let e = Extent {
            offset: 0,
            len: 4096,
        };
        c.submit(Job::Zero { node: 1, extent: e });
        let d = c.stop();
        assert!(matches!(d[..], [Done::Zeroed { zeroed: false, .. }]));
    }
}
