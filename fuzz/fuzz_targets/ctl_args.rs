//! dpvsctl's command line: NUL-separated words, parsed into an invocation or
//! a usage error.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let words: Vec<String> = data
        .split(|&b| b == 0)
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let _ = control::ctl::args::parse(&words);
});
