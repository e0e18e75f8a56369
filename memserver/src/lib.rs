//! memserver's library: the protocol, pool, admission policy, limits,
//! settings, metrics and the rdma-core wrappers, shared by the `memserver`
//! daemon and the `rswap-probe` test client.
//!
//! `unsafe` is allowed in `rdma` (the FFI and memory wrappers) and in the
//! generated bindings only.
#![deny(unsafe_code)]

pub mod auth;
pub mod chores;
pub mod config;
pub mod logger;
pub mod metrics;
pub mod notify;
pub mod pool;
pub mod proto;
#[allow(unsafe_code)]
pub mod rdma;
pub mod refusals;
pub mod server;

#[doc(hidden)]
#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    unsafe_code,
    clippy::all
)]
pub mod sys {
    include!(concat!(env!("OUT_DIR"), "/rdma_sys.rs"));
}
