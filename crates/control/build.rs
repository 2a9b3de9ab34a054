//! Generates the gRPC code of the control-plane protocol and of the etcd API
//! subset, with the protoc binary vendored by `protoc-bin-vendored`: building
//! meshgate needs nothing but the Rust toolchain.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_with_config(
            config,
            &[
                "proto/meshgate/control/v1/control.proto",
                "proto/etcd/etcdserverpb/rpc.proto",
            ],
            &["proto"],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
