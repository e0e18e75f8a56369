//! Generates Rust declarations for rdma-core (librdmacm + libibverbs) from
//! the system headers (Debian: librdmacm-dev, libibverbs-dev), so memserver
//! binds exactly the ABI it links against.
use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/rdma.h");
    println!("cargo:rustc-link-lib=rdmacm");
    println!("cargo:rustc-link-lib=ibverbs");
    let bindings = bindgen::Builder::default()
        .header("src/rdma.h")
        .allowlist_function("rdma_.*|ibv_.*")
        .allowlist_type("rdma_.*|ibv_.*|sockaddr_in")
        .allowlist_var("IBV_.*|RDMA_.*")
        .derive_default(true)
        .layout_tests(false)
        .generate()
        .expect("bindgen over rdma-core headers failed: apt-get install clang librdmacm-dev libibverbs-dev");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("rdma_sys.rs");
    bindings
        .write_to_file(out)
        .expect("writing the rdma-core bindings");
}
