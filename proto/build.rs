//! Generates the dpvs.v1 messages, the tonic client/server and the encoded file
//! descriptor set (for server reflection) from `dpvs.proto`.

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

    // The encoded descriptors of dpvs.proto, for gRPC server reflection.
    let Some(out_dir) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        eprintln!("error: OUT_DIR is not set (run through cargo)");
        std::process::exit(1);
    };
    if let Err(e) = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .file_descriptor_set_path(out_dir.join("dpvs_v1_descriptor.bin"))
        .compile_protos(&["dpvs.proto"], &["."])
    {
        eprintln!("error: compiling dpvs.proto: {e}");
        std::process::exit(1);
    }
}
