//! Pure logic of the kernel modules, compiled for the host so that
//! `cargo test` runs its unit tests. The sources are the modules' own
//! files: one copy, compiled twice.

// Only their tests use them here.
#[allow(dead_code)]
#[path = "../../../rswap/trend.rs"]
mod trend;

#[allow(dead_code)]
#[path = "../../../rswap_rdma/slotmap.rs"]
mod slotmap;
