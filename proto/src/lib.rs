//! The `dpvs.v1` gRPC API: protobuf messages and the tonic client and server
//! generated from `dpvs.proto`.
//!
//! Only generated code and tiny helpers live here; validation and the mapping to
//! the dataplane's configuration types belong to `control`.

#![allow(clippy::all)]

/// Generated from `proto/dpvs.proto` (package `dpvs.v1`).
pub mod v1 {
    tonic::include_proto!("dpvs.v1");
}

pub use v1::*;

/// The encoded `FileDescriptorSet` of `dpvs.proto` (package `dpvs.v1`): what
/// gRPC server reflection serves, so clients such as grpcurl need no .proto file.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("dpvs_v1_descriptor");
