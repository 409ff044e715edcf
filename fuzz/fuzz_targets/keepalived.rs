//! `dpvsctl import keepalived`: a keepalived.conf and one file it may include
//! (`[main] NUL [included]`, read as keepalived reads bytes) are mapped into a
//! plan or an error at FILE:LINE. A plan's preview, written as `-S` lines,
//! reads back with `-R`.
#![no_main]

use std::path::{Path, PathBuf};

use control::ctl::keepalived::{self, parse::MemFiles};
use control::ctl::rules;

const MAIN: &str = "/etc/keepalived/keepalived.conf";

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == 0);
    let main = parts.next().unwrap_or_default();
    let inc = parts.next().unwrap_or_default();
    let mut files = MemFiles::default();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    files.0.insert(PathBuf::from(MAIN), text(main));
    files
        .0
        .insert(PathBuf::from("/etc/keepalived/conf.d/a.conf"), text(inc));
    let Ok(plan) = keepalived::load_from(Path::new(MAIN), &files) else {
        return;
    };
    let (services, laddrs) = keepalived::preview(&plan);
    let saved = rules::save(&services, &laddrs);
    if let Err(e) = rules::parse(&saved) {
        panic!("-S output of an import does not read back: {e}\n{saved}");
    }
});
