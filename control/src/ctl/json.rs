//! `--json`: every listing as one JSON document, for scripts and orchestration.
//!
//! Exact numbers (no K/M/G), addresses as text, ipvsadm's names where it has
//! them (`"forward": "Masq"`, connection states), and `null` where a listing
//! prints nothing (a service without persistence). Services and real servers
//! come in ipvsadm's order, like the text listings.

use proto::v1 as pb;
use serde_json::{json, Value};

use crate::store::AclList;

fn proto_name(p: i32) -> &'static str {
    match pb::Protocol::try_from(p) {
        Ok(pb::Protocol::Udp) => "UDP",
        Ok(pb::Protocol::Tcp) => "TCP",
        _ => "?",
    }
}

fn forward(m: i32) -> &'static str {
    match pb::ForwardMode::try_from(m) {
        Ok(pb::ForwardMode::Nat) => "Masq",
        Ok(pb::ForwardMode::Fullnat) => "FullNat",
        Ok(pb::ForwardMode::Tun) => "Tunnel",
        _ => "Route",
    }
}

fn traffic(t: Option<&pb::Traffic>) -> Value {
    let t = t.cloned().unwrap_or_default();
    json!({
        "conns": t.conns, "inpkts": t.inpkts, "outpkts": t.outpkts,
        "inbytes": t.inbytes, "outbytes": t.outbytes,
    })
}

fn rate(r: Option<&pb::Rate>) -> Value {
    let r = r.copied().unwrap_or_default();
    json!({
        "cps": r.cps, "inpps": r.inpps, "outpps": r.outpps,
        "inbps": r.inbps, "outbps": r.outbps,
    })
}

fn service(st: &pb::ServiceStatus) -> Value {
    let svc = st.service.clone().unwrap_or_default();
    let key = svc.key.clone().unwrap_or_default();
    let v6 = key.vip.contains(':');
    let persistent = svc.persistence.map(|p| {
        json!({
            "timeout": p.timeout_s,
            "netmask": p.netmask_len.unwrap_or(if v6 { 128 } else { 32 }),
        })
    });
    let pp = match pb::ProxyProtocol::try_from(svc.proxy_protocol) {
        Ok(pb::ProxyProtocol::V1) => Some("v1"),
        Ok(pb::ProxyProtocol::V2) => Some("v2"),
        _ => None,
    };
    let dests: Vec<Value> = st
        .dests
        .iter()
        .map(|ds| {
            let d = ds.dest.clone().unwrap_or_default();
            json!({
                "addr": d.addr, "port": d.port, "forward": forward(d.mode),
                "weight": d.weight, "u_threshold": d.u_threshold,
                "l_threshold": d.l_threshold, "inhibited": d.inhibited, "sorry": d.sorry,
                "check": d.check.as_ref().map(|c| json!({
                    "type": c.r#type, "port": c.port, "path": c.path, "status": c.status,
                    "status_codes": c.status_codes,
                    "interval": c.interval_s, "timeout": c.timeout_s, "retries": c.retries,
                    "rise": c.rise, "delay_before_retry": c.delay_before_retry_s,
                    "on_failure": c.on_failure, "command": c.command,
                })),
                "active_conns": ds.active_conns, "inactive_conns": ds.inactive_conns,
                "stats": traffic(ds.traffic.as_ref()), "rate": rate(ds.rate.as_ref()),
            })
        })
        .collect();
    json!({
        "protocol": proto_name(key.protocol), "vip": key.vip, "vport": key.vport,
        "scheduler": svc.scheduler, "sched_flags": svc.sched_flags,
        "persistent": persistent, "conn_timeout": svc.conn_timeout_s, "ops": svc.ops,
        "proxy_protocol": pp,
        "sorry_server": (!svc.sorry_server.is_empty()).then_some(&svc.sorry_server),
        "passive_check": svc.passive_check,
        "synproxy": svc.synproxy.unwrap_or(false),
        "conn_limit": svc.conn_limit.unwrap_or(0),
        "quorum": svc.quorum.max(1), "hysteresis": svc.hysteresis,
        "quorum_up": (!svc.quorum_up.is_empty()).then_some(&svc.quorum_up),
        "quorum_down": (!svc.quorum_down.is_empty()).then_some(&svc.quorum_down),
        "blacklist": svc.blacklist, "whitelist": svc.whitelist,
        "blacklist_drops": st.blacklist_drops, "whitelist_drops": st.whitelist_drops,
        "conn_limit_drops": st.conn_limit_drops,
        "stats": traffic(st.traffic.as_ref()), "rate": rate(st.rate.as_ref()),
        "dests": dests,
    })
}

fn text(v: Value) -> String {
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_else(|_| "null".into());
    s.push('\n');
    s
}

/// `-L --json` (counters and rates included).
pub fn services(resp: &pb::ListServicesResponse) -> String {
    text(json!({
        "table_size": resp.table_size,
        "services": resp.services.iter().map(service).collect::<Vec<_>>(),
    }))
}

/// `-Lc --json`.
pub fn connections(conns: &[pb::Connection]) -> String {
    let list: Vec<Value> = conns
        .iter()
        .map(|c| {
            json!({
                "protocol": proto_name(c.protocol),
                "client_addr": c.client_addr, "client_port": c.client_port,
                "virtual_addr": c.virtual_addr, "virtual_port": c.virtual_port,
                "local_addr": (!c.local_addr.is_empty()).then_some(&c.local_addr),
                "local_port": (!c.local_addr.is_empty()).then_some(c.local_port),
                "dest_addr": c.dest_addr, "dest_port": c.dest_port,
                "state": c.state, "expires": c.expires_s, "worker": c.worker,
            })
        })
        .collect();
    text(json!({ "connections": list }))
}

/// `-L --timeout --json`.
pub fn timeouts(t: &pb::Timeouts) -> String {
    text(json!({ "tcp": t.tcp_s, "tcpfin": t.tcp_fin_s, "udp": t.udp_s }))
}

/// `-L --daemon --json`: the sync daemons and what they did.
pub fn daemons(r: &pb::ListDaemonsResponse) -> String {
    let list: Vec<Value> = r
        .daemons
        .iter()
        .map(|d| {
            json!({
                "state": d.state, "mcast_interface": d.mcast_interface,
                "syncid": d.syncid, "mcast_group": d.mcast_group, "mcast_port": d.mcast_port,
            })
        })
        .collect();
    let counters: serde_json::Map<String, Value> = r
        .counters
        .iter()
        .map(|c| (c.name.clone(), json!(c.count)))
        .collect();
    text(json!({ "daemons": list, "counters": counters }))
}

/// `addr show --json`.
pub fn addrs(r: &pb::ListAddrsResponse) -> String {
    let list: Vec<Value> = r
        .addrs
        .iter()
        .map(|a| json!({ "port": a.port, "addr": a.addr, "prefix_len": a.prefix_len }))
        .collect();
    text(json!({ "ports": r.ports, "addrs": list }))
}

/// `route show --json`.
pub fn routes(r: &pb::ListRoutesResponse) -> String {
    let list: Vec<Value> = r
        .routes
        .iter()
        .map(|x| {
            json!({
                "prefix": x.prefix, "prefix_len": x.prefix_len,
                "via": (!x.via.is_empty()).then_some(&x.via),
                "port": x.port, "connected": x.connected,
            })
        })
        .collect();
    text(json!({ "routes": list }))
}

/// `-G --json`.
pub fn laddrs(ls: &[pb::LocalAddr]) -> String {
    let list: Vec<Value> = ls
        .iter()
        .map(|l| {
            let k = l.service.clone().unwrap_or_default();
            json!({
                "protocol": proto_name(k.protocol), "vip": k.vip, "vport": k.vport,
                "addr": l.addr, "port": l.port, "conns": l.conns, "conflicts": l.conflicts,
            })
        })
        .collect();
    text(json!({ "laddrs": list }))
}

/// `-B --json`, `-W --json`: `{"blacklist": [{protocol, vip, vport, addr}]}`.
pub fn acl(resp: &pb::ListServicesResponse, list: AclList) -> String {
    let mut entries = Vec::new();
    for st in &resp.services {
        let Some(svc) = &st.service else { continue };
        let k = svc.key.clone().unwrap_or_default();
        for e in super::output::acl_entries(svc, list) {
            entries.push(json!({
                "protocol": proto_name(k.protocol), "vip": k.vip, "vport": k.vport, "addr": e,
            }));
        }
    }
    text(json!({ list.name(): entries }))
}

/// `stats --json`.
pub fn stats(s: &pb::StatsResponse) -> String {
    let drops: serde_json::Map<String, Value> = s
        .drops
        .iter()
        .map(|d| (d.reason.clone(), json!(d.packets)))
        .collect();
    let events: serde_json::Map<String, Value> = s
        .events
        .iter()
        .map(|e| (e.name.clone(), json!(e.count)))
        .collect();
    let ports: Vec<Value> = s
        .ports
        .iter()
        .map(|p| {
            json!({
                "name": p.name, "mac": p.mac, "link_up": p.link_up,
                "rx_packets": p.rx_packets, "tx_packets": p.tx_packets,
                "rx_bytes": p.rx_bytes, "tx_bytes": p.tx_bytes,
                "rx_missed": p.rx_missed, "rx_errors": p.rx_errors, "tx_errors": p.tx_errors,
            })
        })
        .collect();
    let workers: Vec<Value> = s
        .workers
        .iter()
        .map(|w| {
            json!({
                "worker": w.worker, "rx_packets": w.rx_packets, "tx_packets": w.tx_packets,
                "drops": w.drops, "handed_over": w.handed_over,
                "handover_in": w.handover_in, "conns": w.conns,
            })
        })
        .collect();
    text(json!({
        "rx_packets": s.rx_packets, "tx_packets": s.tx_packets,
        "drops": drops, "events": events, "ports": ports, "workers": workers,
        "services": s.services.iter().map(service).collect::<Vec<_>>(),
    }))
}
