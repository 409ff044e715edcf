//! Generates the dpvs.v1 messages and the tonic client/server from `dpvs.proto`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=dpvs.proto");
    println!("cargo:rerun-if-env-changed=PROTOC");

    let protoc = std::env::var_os("PROTOC")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("protoc"));
    if Command::new(&protoc).arg("--version").output().is_err() {
        eprintln!(
            "error: protoc ({}) not found: install it with `apt-get install protobuf-compiler` \
             or point PROTOC at a protoc binary",
            protoc.display()
        );
        std::process::exit(1);
    }

    if let Err(e) = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["dpvs.proto"], &["."])
    {
        eprintln!("error: compiling dpvs.proto: {e}");
        std::process::exit(1);
    }
}
