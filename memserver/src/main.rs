//! memserver: serves a pool of this machine's DRAM to rswap compute nodes
//! over RDMA (rdma-core: librdmacm + libibverbs, so Soft-RoCE and real NICs
//! alike). Each compute node gets its own registered region and rkey.
//!
//! memserver --listen 10.77.1.2:7471 --pool-mib 4096 --secret-file PATH [--allow 10.77.1.1]...
//! memserver --config /etc/rswap/memserver.toml
//!
//! Exit status: 0 stopped by SIGTERM/SIGINT, 1 runtime failure, 2 bad
//! command line or configuration.

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use log::error;
use memserver::config::{Cli, Settings, SECRET_ENV};
use memserver::notify::Notifier;
use memserver::rdma::signals;
use memserver::{logger, server};
use std::process::exit;

fn main() {
    let cli = Cli::parse();
    let env_secret = std::env::var(SECRET_ENV).ok();
    // Nothing we start needs it; keep it out of /proc/PID/environ's
    // successors. Single-threaded here, so this is race-free.
    std::env::remove_var(SECRET_ENV);
    let settings = Settings::resolve(cli, env_secret)
        .unwrap_or_else(|e| Cli::command().error(ErrorKind::ValueValidation, e).exit());
    logger::init(settings.log_level);
    for (level, msg) in &settings.notes {
        log::log!(*level, "{msg}");
    }
    signals::install();
    let mut srv = server::Server::new(settings, Notifier::from_env()).unwrap_or_else(|e| {
        error!("{e}");
        exit(1)
    });
    if srv.run().is_err() {
        // run() logged why.
        exit(1);
    }
}
