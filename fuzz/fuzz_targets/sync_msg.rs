//! A connection sync datagram from the network (dpvs_fuzz::sync_msg::run).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dpvs_fuzz::sync_msg::run(data));
