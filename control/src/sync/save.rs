//! A restart that keeps the connections (docs/ha.md "Restarting without
//! losing connections"): dpvsd writes every connection and persistence
//! template to `[control] conns_file` when it stops, and the next dpvsd
//! installs them before it serves, as a backup installs what its master
//! sends. The file is the sync protocol's messages one after the other
//! (each says its size), after a one-line header.

use std::path::Path;

use dataplane::sync::SyncConn;

use super::wire;

const HEADER: &[u8] = b"dpvs-conns 1\n";
/// Messages as large as their 16-bit size field allows (no MTU here).
const MESSAGE: usize = 65_000;

/// Writes `conns` to `path` atomically; returns how many.
pub fn save(path: &Path, conns: &[SyncConn]) -> std::io::Result<usize> {
    let mut data = HEADER.to_vec();
    for m in wire::encode(0, conns, MESSAGE) {
        data.extend_from_slice(&m);
    }
    crate::state::write_atomic(path, data)?;
    Ok(conns.len())
}

/// Reads a file [`save`] wrote. An error names what is wrong with it.
pub fn load(path: &Path) -> Result<Vec<SyncConn>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut rest = data
        .strip_prefix(HEADER)
        .ok_or_else(|| format!("{}: not a dpvs connections file", path.display()))?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let size = match rest {
            [_, _, hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
            _ => 0,
        };
        let Some(msg) = rest.get(..size).filter(|_| size > 0) else {
            return Err(format!("{}: cut short", path.display()));
        };
        let d = wire::decode(msg, 0)
            .map_err(|e| format!("{}: a bad message ({})", path.display(), e.name()))?;
        out.extend(d.conns);
        rest = &rest[size..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use conntrack::TcpState;
    use dataplane::sync::ConnExt;
    use dataplane::ForwardMode;

    #[test]
    fn saved_connections_read_back() {
        let dir = std::env::temp_dir().join(format!("dpvs-conns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("conns");
        let conns: Vec<SyncConn> = (0..1000u16)
            .map(|i| SyncConn {
                proto: conntrack::PROTO_TCP,
                mode: ForwardMode::FullNat,
                state: TcpState::Established,
                client: ("10.0.0.2".parse().unwrap(), 10_000 + i),
                vip: ("10.0.0.100".parse().unwrap(), 80),
                dest: ("192.168.0.11".parse().unwrap(), 8080),
                local: Some(("192.168.0.200".parse().unwrap(), 20_000 + i)),
                timeout_s: 900,
                ext: ConnExt {
                    user: u64::from(i),
                    user32: 0,
                    flags: 1,
                },
                template: false,
            })
            .collect();
        assert_eq!(save(&path, &conns).unwrap(), 1000);
        assert_eq!(load(&path).unwrap(), conns);
        let data = std::fs::read(&path).unwrap();
        std::fs::write(&path, &data[..data.len() - 3]).unwrap();
        assert!(load(&path).unwrap_err().ends_with("cut short"));
        std::fs::write(&path, b"hello").unwrap();
        assert!(load(&path)
            .unwrap_err()
            .ends_with("not a dpvs connections file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
