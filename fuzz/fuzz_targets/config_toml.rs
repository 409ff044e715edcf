//! dpvs.toml: any text is read and validated into a config or an error.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = control::config::parse(text);
    }
});
