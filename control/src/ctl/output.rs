//! ipvsadm's output layouts, byte for byte: `-Ln`, `-Ln --stats [--exact]`,
//! `-Ln --thresholds`, `-Lnc`, `--timeout`; plus dpip-like `addr show`,
//! `route show` and `stats` listings.
//!
//! Pure functions from `dpvs.v1` messages to text, so every layout is a golden
//! string test. Addresses are always numeric (dpvsctl never resolves names).

use std::fmt::Write;
use std::net::IpAddr;

use proto::v1 as pb;

use crate::addr::{fmt_addr_port, v4_netmask};
use crate::store::AclList;

/// What `-L` prints besides the plain table.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListFormat {
    pub stats: bool,
    pub rate: bool,
    pub exact: bool,
    pub thresholds: bool,
}

fn proto_name(p: i32) -> &'static str {
    match pb::Protocol::try_from(p) {
        Ok(pb::Protocol::Udp) => "UDP",
        Ok(pb::Protocol::Tcp) => "TCP",
        _ => "?",
    }
}

fn fwd_name(m: i32) -> &'static str {
    match pb::ForwardMode::try_from(m) {
        Ok(pb::ForwardMode::Nat) => "Masq",
        Ok(pb::ForwardMode::Fullnat) => "FullNat",
        Ok(pb::ForwardMode::Tun) => "Tunnel",
        _ => "Route",
    }
}

/// `addr:port` with IPv6 in brackets; unparsable text is shown as is.
pub(crate) fn addr_port(addr: &str, port: u32) -> String {
    match addr.parse::<IpAddr>() {
        Ok(ip) => fmt_addr_port(&ip, u16::try_from(port).unwrap_or(0)),
        Err(_) => format!("{addr}:{port}"),
    }
}

fn is_v6(addr: &str) -> bool {
    addr.parse::<IpAddr>().is_ok_and(|a| a.is_ipv6())
}

/// The weight a listing shows for a real server, as the kernel table would
/// under keepalived: 0 while a health check has it down (`inhibit`), and not
/// listed at all while down with `on_failure = remove`.
fn listed_weight(d: &pb::Dest) -> Option<u32> {
    if !d.inhibited {
        return Some(d.weight);
    }
    match &d.check {
        Some(c) if c.on_failure == "remove" => None,
        _ => Some(0),
    }
}

/// The persistence mask as a prefix length (absent: per client).
fn netmask_len(p: &pb::Persistence, v6: bool) -> u8 {
    match p.netmask_len {
        Some(l) => u8::try_from(l).unwrap_or(0),
        None if v6 => 128,
        None => 32,
    }
}

fn truncate(s: &mut String, n: usize) {
    if s.len() > n {
        s.truncate(n);
    }
}

/// ipvsadm's `print_largenum`: 9 columns, K/M/G/T above 100 million unless exact.
fn largenum(out: &mut String, i: u64, exact: bool) {
    if exact {
        let len = i.to_string().len();
        let w = if len <= 8 { 9 } else { len + 1 };
        let _ = write!(out, "{i:>w$}");
    } else if i < 100_000_000 {
        let _ = write!(out, "{i:>9}");
    } else if i < 1_000_000_000 {
        let _ = write!(out, "{:>8}K", i / 1000);
    } else if i < 100_000_000_000 {
        let _ = write!(out, "{:>8}M", i / 1_000_000);
    } else if i < 100_000_000_000_000 {
        let _ = write!(out, "{:>8}G", i / 1_000_000_000);
    } else {
        let _ = write!(out, "{:>8}T", i / 1_000_000_000_000);
    }
}

fn traffic(out: &mut String, t: Option<&pb::Traffic>, exact: bool) {
    let t = t.cloned().unwrap_or_default();
    for v in [t.conns, t.inpkts, t.outpkts, t.inbytes, t.outbytes] {
        largenum(out, v, exact);
    }
}

/// `TCP  10.0.0.100:80`: ipvsadm's service name column (an IPv4 one cut at 33).
fn service_column(key: &pb::ServiceKey, v6: bool) -> String {
    let mut name = format!(
        "{}  {}",
        proto_name(key.protocol),
        addr_port(&key.vip, key.vport)
    );
    if !v6 {
        truncate(&mut name, 33);
    }
    name
}

/// ipvsadm's plain service line after the name: scheduler, flags,
/// persistence, and DPVS's extras (no newline).
fn service_flags(out: &mut String, name: &str, svc: &pb::Service, v6: bool) {
    let _ = write!(out, "{name} {}", svc.scheduler);
    if !svc.sched_flags.is_empty() {
        let _ = write!(out, " ({})", svc.sched_flags.join(","));
    }
    if let Some(p) = &svc.persistence {
        let _ = write!(out, " persistent {}", p.timeout_s);
        let len = netmask_len(p, v6);
        if !v6 && len != 32 {
            let _ = write!(out, " mask {}", v4_netmask(len));
        }
        if v6 && len != 128 {
            let _ = write!(out, " mask {len}");
        }
    }
    if svc.ops {
        out.push_str(" ops");
    }
    if let Some(t) = svc.conn_timeout_s {
        let _ = write!(out, " conn-timeout {t}");
    }
    // DPVS ipvsadm: " ppv1" / " ppv2" after the service's options.
    match pb::ProxyProtocol::try_from(svc.proxy_protocol) {
        Ok(pb::ProxyProtocol::V1) => out.push_str(" ppv1"),
        Ok(pb::ProxyProtocol::V2) => out.push_str(" ppv2"),
        _ => {}
    }
    if svc.synproxy == Some(true) {
        out.push_str(" synproxy");
    }
    if let Some(n) = svc.conn_limit.filter(|&n| n > 0) {
        let _ = write!(out, " conn-limit {n}");
    }
}

/// `ipvsadm -Ln` and its variants. `all`: the whole table (prints the version
/// line, as ipvsadm does only when no service is named).
pub fn services(resp: &pb::ListServicesResponse, all: bool, f: ListFormat) -> String {
    let mut out = String::new();
    if all {
        let _ = writeln!(
            out,
            "IP Virtual Server version 1.2.1 (size={})",
            resp.table_size
        );
    }
    if f.stats {
        let _ = write!(
            out,
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        );
    } else if f.rate {
        let _ = write!(
            out,
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        );
    } else if f.thresholds {
        let _ = write!(
            out,
            "{:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        );
    } else {
        out.push_str(
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        );
    }
    for st in &resp.services {
        let Some(svc) = &st.service else { continue };
        let key = svc.key.clone().unwrap_or_default();
        let v6 = is_v6(&key.vip);
        let name = service_column(&key, v6);
        if f.stats {
            let _ = write!(out, "{name:<33}");
            traffic(&mut out, st.traffic.as_ref(), f.exact);
            out.push('\n');
        } else if f.rate {
            let r = st.rate.unwrap_or_default();
            let _ = write!(out, "{name:<33}");
            for v in [r.cps, r.inpps, r.outpps, r.inbps, r.outbps] {
                largenum(&mut out, v, f.exact);
            }
            out.push('\n');
        } else {
            service_flags(&mut out, &name, svc, v6);
            out.push('\n');
        }
        for ds in &st.dests {
            let Some(d) = &ds.dest else { continue };
            let Some(weight) = listed_weight(d) else {
                continue;
            };
            let mut dname = addr_port(&d.addr, d.port);
            if !v6 {
                truncate(&mut dname, 28);
            }
            if f.stats {
                let _ = write!(out, "  -> {dname:<28}");
                traffic(&mut out, ds.traffic.as_ref(), f.exact);
                out.push('\n');
            } else if f.rate {
                // ipvsadm: "  -> %-28s %8u %8u %8u" then two print_largenum.
                let r = ds.rate.unwrap_or_default();
                let _ = write!(
                    out,
                    "  -> {dname:<28} {:>8} {:>8} {:>8}",
                    r.cps, r.inpps, r.outpps
                );
                largenum(&mut out, r.inbps, f.exact);
                largenum(&mut out, r.outbps, f.exact);
                out.push('\n');
            } else if f.thresholds {
                let _ = writeln!(
                    out,
                    "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                    d.u_threshold, d.l_threshold, ds.active_conns, ds.inactive_conns
                );
            } else {
                let _ = writeln!(
                    out,
                    "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                    fwd_name(d.mode),
                    weight,
                    ds.active_conns,
                    ds.inactive_conns
                );
            }
        }
    }
    out
}

/// `ipvsadm -Ln --persistent-conn`: ipvsadm's FMT_PERSISTENTCONN layout, whose
/// PersistConn column counts the persistence templates (listed among
/// connections as state `NONE`, client port 0) that point at each dest.
pub fn services_persistent(
    resp: &pb::ListServicesResponse,
    all: bool,
    conns: &[pb::Connection],
) -> String {
    let mut out = String::new();
    if all {
        let _ = writeln!(
            out,
            "IP Virtual Server version 1.2.1 (size={})",
            resp.table_size
        );
    }
    let _ = write!(
        out,
        "{:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
        "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn"
    );
    for st in &resp.services {
        let Some(svc) = &st.service else { continue };
        let key = svc.key.clone().unwrap_or_default();
        let v6 = is_v6(&key.vip);
        let name = service_column(&key, v6);
        service_flags(&mut out, &name, svc, v6);
        out.push('\n');
        for ds in &st.dests {
            let Some(d) = &ds.dest else { continue };
            let Some(weight) = listed_weight(d) else {
                continue;
            };
            let persist = conns
                .iter()
                .filter(|c| {
                    c.state == "NONE"
                        && c.client_port == 0
                        && c.protocol == key.protocol
                        && c.virtual_addr == key.vip
                        && c.virtual_port == key.vport
                        && c.dest_addr == d.addr
                        && c.dest_port == d.port
                })
                .count();
            let mut dname = addr_port(&d.addr, d.port);
            if !v6 {
                truncate(&mut dname, 28);
            }
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<9} {persist:<11} {:<10} {:<10}",
                weight, ds.active_conns, ds.inactive_conns
            );
        }
    }
    out
}

/// `ipvsadm -Lnc`. When any connection has a FULLNAT local address, a `local`
/// column (DPVS) is added before `destination`, `-` for the others; with
/// `worker`, a last column names the worker that owns each connection.
pub fn connections(conns: &[pb::Connection], worker: bool) -> String {
    let with_local = conns.iter().any(|c| !c.local_addr.is_empty());
    let mut out = String::from("IPVS connection entries\n");
    let _ = write!(
        out,
        "pro expire {:<11} {:<18} {:<18} ",
        "state", "source", "virtual"
    );
    if with_local {
        let _ = write!(out, "{:<18} ", "local");
    }
    if worker {
        let _ = writeln!(out, "{:<18} worker", "destination");
    } else {
        out.push_str("destination\n");
    }
    for c in conns {
        let expire = format!("{:02}:{:02}", c.expires_s / 60, c.expires_s % 60);
        let src = addr_port(&c.client_addr, c.client_port);
        let virt = addr_port(&c.virtual_addr, c.virtual_port);
        let dst = addr_port(&c.dest_addr, c.dest_port);
        let proto = proto_name(c.protocol);
        let _ = write!(
            out,
            "{proto:<3} {expire:<6} {:<11} {src:<18} {virt:<18} ",
            c.state
        );
        if with_local {
            let local = if c.local_addr.is_empty() {
                "-".to_string()
            } else {
                addr_port(&c.local_addr, c.local_port)
            };
            let _ = write!(out, "{local:<18} ");
        }
        if worker {
            let _ = writeln!(out, "{dst:<18} {}", c.worker);
        } else {
            let _ = writeln!(out, "{dst}");
        }
    }
    out
}

/// `ipvsadm -L --timeout`.
pub fn timeouts(t: &pb::Timeouts) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        t.tcp_s, t.tcp_fin_s, t.udp_s
    )
}

/// `-L --daemon`: one line per sync daemon, as ipvsadm prints them:
/// `master sync daemon (mcast=dpdk0, syncid=1)`.
pub fn daemons(r: &pb::ListDaemonsResponse) -> String {
    let mut out = String::new();
    for d in &r.daemons {
        if let Ok(spec) = crate::convert::daemon_from_pb(d) {
            let _ = writeln!(out, "{}", spec.describe());
        }
    }
    out
}

fn family(addr: &str) -> &'static str {
    if is_v6(addr) {
        "inet6"
    } else {
        "inet"
    }
}

/// `dpvsctl addr show`: `inet 10.0.0.1/24 dev dpdk0`, one per line.
pub fn addrs(resp: &pb::ListAddrsResponse) -> String {
    let mut out = String::new();
    for a in &resp.addrs {
        let _ = writeln!(
            out,
            "{} {}/{} dev {}",
            family(&a.addr),
            a.addr,
            a.prefix_len,
            a.port
        );
    }
    out
}

/// `dpvsctl route show`, `ip route` style; connected routes say `scope link`.
pub fn routes(resp: &pb::ListRoutesResponse) -> String {
    let mut out = String::new();
    for r in &resp.routes {
        let _ = write!(out, "{} {}/{}", family(&r.prefix), r.prefix, r.prefix_len);
        if !r.via.is_empty() {
            let _ = write!(out, " via {}", r.via);
        }
        let _ = write!(out, " dev {}", r.port);
        if r.connected {
            out.push_str(" scope link");
        }
        out.push('\n');
    }
    out
}

/// `dpvsctl stats`: one `name value` per line.
pub fn stats(s: &pb::StatsResponse) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "rx_packets {}", s.rx_packets);
    let _ = writeln!(out, "tx_packets {}", s.tx_packets);
    for d in &s.drops {
        let _ = writeln!(out, "{} {}", d.reason, d.packets);
    }
    for e in &s.events {
        let _ = writeln!(out, "{} {}", e.name, e.count);
    }
    for w in &s.workers {
        let i = w.worker;
        for (k, v) in [
            ("rx_packets", w.rx_packets),
            ("tx_packets", w.tx_packets),
            ("drops", w.drops),
            ("handed_over", w.handed_over),
            ("handover_in", w.handover_in),
            ("conns", w.conns),
        ] {
            let _ = writeln!(out, "worker.{i}.{k} {v}");
        }
    }
    for p in &s.ports {
        let n = &p.name;
        let _ = writeln!(out, "port.{n}.link_up {}", u8::from(p.link_up));
        let _ = writeln!(out, "port.{n}.mac {}", p.mac);
        for (k, v) in [
            ("rx_packets", p.rx_packets),
            ("tx_packets", p.tx_packets),
            ("rx_bytes", p.rx_bytes),
            ("tx_bytes", p.tx_bytes),
            ("rx_missed", p.rx_missed),
            ("rx_errors", p.rx_errors),
            ("tx_errors", p.tx_errors),
        ] {
            let _ = writeln!(out, "port.{n}.{k} {v}");
        }
    }
    out
}

/// DPVS `ipvsadm -G`: local addresses per service.
pub fn laddrs(ls: &[pb::LocalAddr]) -> String {
    let mut out = format!(
        "{:<20} {:<8} {:<20} {:<10} {:<10}\n",
        "VIP:VPORT", "TOTAL", "SNAT_IP", "CONFLICTS", "CONNS"
    );
    let mut i = 0;
    while i < ls.len() {
        let k = ls[i].service.clone().unwrap_or_default();
        let group: Vec<&pb::LocalAddr> = ls[i..]
            .iter()
            .take_while(|l| l.service.as_ref() == Some(&k))
            .collect();
        i += group.len().max(1);
        out.push_str(&format!(
            "{:<20} {:<8}\n",
            addr_port(&k.vip, k.vport),
            group.len()
        ));
        for l in group {
            out.push_str(&format!(
                "{:<30} {:<20} {:<10} {:<10}\n",
                "", l.addr, l.conflicts, l.conns
            ));
        }
    }
    out
}

/// The entries of `list` in a listed service.
pub(crate) fn acl_entries(svc: &pb::Service, list: AclList) -> &[String] {
    match list {
        AclList::Blacklist => &svc.blacklist,
        AclList::Whitelist => &svc.whitelist,
    }
}

/// DPVS `ipvsadm -B` / `-W`: a title, then one line per entry (`%-8s %-30s
/// %-30s`, as DPVS prints them, trailing blanks included).
pub fn acl(resp: &pb::ListServicesResponse, list: AclList) -> String {
    let title = match list {
        AclList::Blacklist => "BLACKLIST",
        AclList::Whitelist => "WHITELIST",
    };
    let mut out = format!("{:<8} {:<30} {:<30}\n", "PROTO", "VIP:VPORT", title);
    for st in &resp.services {
        let Some(svc) = &st.service else { continue };
        let key = svc.key.clone().unwrap_or_default();
        let vip_port = addr_port(&key.vip, key.vport);
        for e in acl_entries(svc, list) {
            let _ = writeln!(
                out,
                "{:<8} {vip_port:<30} {e:<30}",
                proto_name(key.protocol)
            );
        }
    }
    out
}

/// `apply -f`: the running configuration's lines that go (`- `) and come (`+ `).
pub fn config_diff(r: &pb::ApplyConfigResponse) -> String {
    let mut out = String::new();
    for l in &r.removed {
        let _ = writeln!(out, "- {l}");
    }
    for l in &r.added {
        let _ = writeln!(out, "+ {l}");
    }
    out
}
