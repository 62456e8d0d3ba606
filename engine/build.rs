//! Compiles the etcd v3 wire definitions in `proto/` with protox (pure Rust, no `protoc`)
//! and generates prost messages plus tonic clients and servers. madsim-tonic-build writes
//! the real-network code to `OUT_DIR` and the simulated code to `OUT_DIR/sim`; the
//! `include_proto!` in `src/pb.rs` picks the right one for the build.
//!
//! From the same descriptors, pbjson-build writes serde impls (`<package>.serde.rs`) in
//! the proto3 JSON mapping with the proto field names, which the HTTP gateway speaks.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/kv.proto",
    "proto/auth.proto",
    "proto/rpc.proto",
    "proto/v3lock.proto",
    "proto/v3election.proto",
    "proto/health.proto",
    "proto/peer.proto",
];

/// Packages that get serde impls (etcd's client API; not the peer protocol).
const JSON_PACKAGES: &[&str] = &[
    ".mvccpb",
    ".authpb",
    ".etcdserverpb",
    ".v3lockpb",
    ".v3electionpb",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("detcd_descriptor.bin");
    std::fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .compile_protos(PROTOS, &["proto"])?;
    let descriptor_bytes = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .out_dir(&out_dir)
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(JSON_PACKAGES)?;
    Ok(())
}
