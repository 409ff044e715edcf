//! The wire parsers and rewriters alone: `[selector][frame ...]`
//! (dpvs_fuzz::wire::run).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dpvs_fuzz::wire::run(data));
