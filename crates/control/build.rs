//! Generates the gRPC code of the control-plane protocol and of the etcd API
//! subset, with the protoc binary vendored by `protoc-bin-vendored`: building
//! meshgate needs nothing but the Rust toolchain.
//!
//! The control-plane protocol is generated twice. The first pass is the usual one
//! (messages, clients, servers). The second generates only the servers, into
//! `OUT_DIR/wire/`, with every message taken from the first pass except
//! `Snapshot`, which becomes `crate::snapshot::EncodedSnapshot`: a snapshot
//! encoded once and sent as bytes to every proxy stream, instead of being cloned
//! and re-encoded per stream (the cost that dominated pushing a 10,000-endpoint
//! snapshot to 1,000 proxies). The bytes on the wire are the same.

use std::path::PathBuf;

const CONTROL: &str = "proto/meshgate/control/v1/control.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(&protoc);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_with_config(
            config,
            &[CONTROL, "proto/etcd/etcdserverpb/rpc.proto"],
            &["proto"],
        )?;

    let wire = PathBuf::from(std::env::var("OUT_DIR")?).join("wire");
    std::fs::create_dir_all(&wire)?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(&protoc);
    config.extern_path(".meshgate.control.v1", "crate::proto::v1");
    config.extern_path(
        ".meshgate.control.v1.Snapshot",
        "crate::snapshot::EncodedSnapshot",
    );
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(false)
        .out_dir(&wire)
        .compile_with_config(config, &[CONTROL], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
