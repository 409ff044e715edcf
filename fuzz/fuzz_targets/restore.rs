//! `dpvsctl -R`: any text is read into changes or a line error.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = control::ctl::rules::parse(text);
    }
});
