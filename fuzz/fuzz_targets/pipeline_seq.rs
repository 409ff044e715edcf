//! Frames in bursts through one LVS core, the clock moving between them, so
//! connections, FULLNAT sequence state, TOA / Proxy Protocol and ICMP error
//! translation are reached with state (dpvs_fuzz::pipeline_seq).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dpvs_fuzz::pipeline_seq(data));
