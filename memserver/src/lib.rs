//! memserver's library: the protocol, pool, admission policy and the
//! rdma-core wrappers, shared by the `memserver` daemon and the
//! `rswap-probe` test client.

pub mod auth;
pub mod pool;
pub mod proto;
pub mod rdma;
pub mod server;

#[doc(hidden)]
#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    clippy::all
)]
pub mod sys {
    include!(concat!(env!("OUT_DIR"), "/rdma_sys.rs"));
}
