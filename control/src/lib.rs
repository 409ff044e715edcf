//! The control plane of the director: `dpvsd` (configuration, gRPC server, the
//! dataplane's owner) and `dpvsctl` (ipvsadm-compatible CLI).
//!
//! Layout by concern: [`config`] reads `dpvs.toml`; [`store`] holds the
//! configuration with IPVS semantics and validation; [`server`] is the gRPC
//! service that applies store changes to a [`backend::Backend`]; [`ctl`] is the
//! CLI (argument parsing, client, ipvsadm's output layouts); [`metrics`] is the
//! Prometheus endpoint; [`tls`] reads the mutual TLS files of the API on TCP.
//! No packet ever passes through here.

#![forbid(unsafe_code)]

pub mod addr;
pub mod announce;
pub mod backend;
pub mod config;
pub mod convert;
pub mod ctl;
pub mod health;
pub mod kni;
pub mod metrics;
pub mod ops;
pub mod rate;
pub mod scheduler;
pub mod server;
pub mod state;
pub mod store;
pub mod sync;
pub mod tls;
pub mod zero;

pub use backend::{Backend, FakeBackend};
