//! The running configuration kept across restarts (`[control] state_file`).
//!
//! dpvsd writes it after every change that reaches the dataplane, and reads it
//! back on start. The format is dpvsctl's restore input (see
//! [`crate::ctl::rules`]): `addr add` and `route add` lines for the operator's
//! addresses and routes, `--set` for timeouts that differ from IPVS's, then the
//! services as `dpvsctl -S -n` writes them. An operator can read it, diff it, or
//! feed it to `dpvsctl -R` on another director.
//!
//! The file is replaced atomically: written to `PATH.tmp`, flushed, renamed
//! over `PATH`, so a crash leaves either the old or the new file, never half.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use proto::v1 as pb;

use crate::ctl::rules;
use crate::store::{Store, Timeouts};

const HEADER: &str = "\
# dpvsd running configuration (dpvsctl -R format), written after every change.
# Restored when dpvsd starts; edits here are read only then.
";

/// The configuration of `store` as restore input.
pub fn render(store: &Store) -> String {
    let mut out = String::from(HEADER);
    for a in store.own_addrs() {
        let _ = writeln!(out, "addr add {}/{} dev {}", a.addr, a.prefix_len, a.port);
    }
    for r in store.routes() {
        let _ = write!(out, "route add {}/{}", r.prefix, r.prefix_len);
        if let Some(v) = r.via {
            let _ = write!(out, " via {v}");
        }
        let _ = writeln!(out, " dev {}", r.port);
    }
    let t = store.timeouts();
    if t != Timeouts::default() {
        let _ = writeln!(out, "--set {} {} {}", t.tcp_s, t.tcp_fin_s, t.udp_s);
    }
    let services = pb::ListServicesResponse {
        services: store
            .services()
            .map(|s| crate::server::service_status(store, s, None))
            .collect(),
        table_size: 0,
    };
    let laddrs: Vec<pb::LocalAddr> = store
        .laddrs()
        .iter()
        .map(|l| crate::convert::laddr_to_pb(l, 0))
        .collect();
    out.push_str(&rules::save(&services, &laddrs));
    out
}

/// Rebuilds a configuration from `text` on a store with `ports` and nothing
/// else. Errors name the line.
pub fn load(ports: &[String], text: &str) -> Result<Store, String> {
    load_into(Store::new(ports.to_vec()), text)
}

/// [`load`] onto `store` (empty, with its settings: `claim_vips`).
pub fn load_into(mut store: Store, text: &str) -> Result<Store, String> {
    for (line, op) in rules::parse(text).map_err(|e| e.to_string())? {
        crate::ops::apply(&mut store, &op).map_err(|e| format!("line {line}: {}", e.message()))?;
    }
    store.update_quorum();
    Ok(store)
}

/// Replaces `path` with `text` atomically (temporary file, fsync, rename).
pub fn write_atomic(path: &Path, text: impl AsRef<[u8]>) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_ref())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured() -> Store {
        let cfg = crate::config::parse(
            r#"
[workers]
cores = [1]
[[port]]
name = "dpdk0"
device = "net_null0"
addresses = ["10.0.0.1/24", "2001:db8::1/64"]
[[port]]
name = "dpdk1"
device = "net_null1"
addresses = ["192.168.0.1/24"]
[[route]]
prefix = "172.16.0.0/16"
via = "10.0.0.254"
port = "dpdk0"
[timeouts]
tcp = 600
[[service]]
proto = "tcp"
vip = "10.0.0.100"
vport = 80
scheduler = "sh"
sched_flags = ["sh-port"]
persistent = 120
netmask = "255.255.0.0"
proxy_protocol = "v1"
dest = [
  { addr = "192.168.0.11", mode = "fullnat", weight = 0 },
  { addr = "192.168.0.12", port = 8080, mode = "nat", u_threshold = 10 },
]
laddr = [{ addr = "192.168.0.200", port = "dpdk1" }]
blacklist = ["10.9.0.0/16", "192.0.2.7"]
whitelist = ["10.0.0.0/8"]
[[service]]
proto = "udp"
vip = "2001:db8::53"
vport = 53
dest = [{ addr = "2001:db8::10" }]
"#,
        )
        .unwrap();
        cfg.store
    }

    #[test]
    fn render_then_load_gives_the_same_configuration() {
        let store = configured();
        let text = render(&store);
        assert!(text.contains("addr add 10.0.0.1/24 dev dpdk0\n"), "{text}");
        assert!(
            !text.contains("10.0.0.100/32"),
            "VIPs come back with their services: {text}"
        );
        assert!(text.contains("route add 172.16.0.0/16 via 10.0.0.254 dev dpdk0\n"));
        assert!(text.contains("--set 600 120 300\n"));
        assert!(text.contains(
            "-A -t 10.0.0.100:80 -s sh -p 120 -M 255.255.0.0 -b sh-port --proxy-protocol v1\n"
        ));
        assert!(text.contains("-P -t 10.0.0.100:80 -z 192.168.0.200 -F dpdk1\n"));
        assert!(text.contains(
            "-P -t 10.0.0.100:80 -z 192.168.0.200 -F dpdk1\n\
             -U -t 10.0.0.100:80 -k 10.9.0.0/16\n\
             -U -t 10.0.0.100:80 -k 192.0.2.7\n\
             -O -t 10.0.0.100:80 -2 10.0.0.0/8\n"
        ));
        let back = load(store.ports(), &text).unwrap();
        assert_eq!(back.desc(), store.desc());
        assert_eq!(back.ext(), store.ext());
        assert_eq!(back.timeouts(), store.timeouts());
        assert_eq!(render(&back), text);
    }

    #[test]
    fn load_names_the_line_that_fails() {
        let ports = vec!["dpdk0".to_string()];
        let e = load(
            &ports,
            "addr add 10.0.0.1/24 dev dpdk0\naddr add 10.0.0.2/24 dev dpdk9\n",
        )
        .unwrap_err();
        assert_eq!(e, "line 2: port: unknown port \"dpdk9\"");
        let e = load(&ports, "-A -t 10.0.0.1:80 -s nosuch\n").unwrap_err();
        assert!(
            e.starts_with("line 1: scheduler: unknown scheduler \"nosuch\""),
            "{e}"
        );
    }

    #[test]
    fn write_atomic_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/state");
        write_atomic(&p, "one\n").unwrap();
        write_atomic(&p, "two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two\n");
        assert!(!dir.path().join("sub/state.tmp").exists());
    }
}
