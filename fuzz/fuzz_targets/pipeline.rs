//! One frame (any bytes) through a fresh LVS core configured with every mode:
//! `[options][frame selector][frame ...]` (dpvs_fuzz::pipeline).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dpvs_fuzz::pipeline(data));
