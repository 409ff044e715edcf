//! Conversions between the `dpvs.v1` messages and the dataplane's configuration
//! and counter types.
//!
//! Incoming messages are untrusted: every conversion from the wire returns a
//! one-line error naming the field and the bad value (mapped to INVALID_ARGUMENT)
//! and applies ipvsadm's defaults (scheduler wlc, persistence 300 s, dest port =
//! virtual port, forward mode DR).

use std::net::IpAddr;

use dataplane::{
    AddrSpec, ConnEntry, DestSpec, DestStats, ForwardMode, Persistence, PortStats, Proto,
    ProxyProtocol, RouteSpec, ServiceKey, ServiceSpec, TrafficStats,
};
use std::time::Duration;

use proto::v1 as pb;

use crate::addr::{max_prefix, parse_acl_entry, parse_ip};
use crate::health::{CheckKind, CheckSpec, OnFailure, StatusCodes};
use crate::scheduler::DEFAULT_SCHEDULER;
use crate::store::{AclList, Timeouts, DEFAULT_PERSISTENCE_S};

fn ip(field: &str, s: &str) -> Result<IpAddr, String> {
    parse_ip(s).map_err(|e| format!("{field}: {e}"))
}

fn port16(field: &str, p: u32) -> Result<u16, String> {
    u16::try_from(p).map_err(|_| format!("{field}: invalid port {p}"))
}

fn len8(field: &str, l: u32, addr: &IpAddr) -> Result<u8, String> {
    match u8::try_from(l) {
        Ok(l) if l <= max_prefix(addr) => Ok(l),
        _ => Err(format!("{field}: invalid prefix length /{l} for {addr}")),
    }
}

pub fn proto_from_pb(p: i32) -> Result<Proto, String> {
    match pb::Protocol::try_from(p) {
        Ok(pb::Protocol::Tcp) => Ok(Proto::Tcp),
        Ok(pb::Protocol::Udp) => Ok(Proto::Udp),
        _ => Err(format!("protocol: unknown protocol {p} (TCP or UDP)")),
    }
}

pub fn proto_to_pb(p: Proto) -> pb::Protocol {
    match p {
        Proto::Tcp => pb::Protocol::Tcp,
        Proto::Udp => pb::Protocol::Udp,
    }
}

pub fn mode_from_pb(m: i32) -> Result<ForwardMode, String> {
    match pb::ForwardMode::try_from(m) {
        Ok(pb::ForwardMode::Unspecified) | Ok(pb::ForwardMode::Dr) => Ok(ForwardMode::Dr),
        Ok(pb::ForwardMode::Nat) => Ok(ForwardMode::Nat),
        Ok(pb::ForwardMode::Fullnat) => Ok(ForwardMode::FullNat),
        Ok(pb::ForwardMode::Tun) => Ok(ForwardMode::Tun),
        Err(_) => Err(format!("mode: unknown forward mode {m}")),
    }
}

pub fn mode_to_pb(m: ForwardMode) -> pb::ForwardMode {
    match m {
        ForwardMode::Nat => pb::ForwardMode::Nat,
        ForwardMode::FullNat => pb::ForwardMode::Fullnat,
        ForwardMode::Dr => pb::ForwardMode::Dr,
        ForwardMode::Tun => pb::ForwardMode::Tun,
    }
}

/// A message field that must be set: `FIELD: missing` otherwise.
pub fn required<'a, T>(field: &str, v: Option<&'a T>) -> Result<&'a T, String> {
    v.ok_or_else(|| format!("{field}: missing"))
}

/// A `ServiceKey` in a field called `key` (`Service.key`, `DeleteServiceRequest.key`).
pub fn key_from_pb(k: Option<&pb::ServiceKey>) -> Result<ServiceKey, String> {
    key_field("key", k)
}

/// A `ServiceKey` in the request field `field` (`service` in `DestRequest`,
/// `LocalAddr`, ...).
pub fn key_field(field: &str, k: Option<&pb::ServiceKey>) -> Result<ServiceKey, String> {
    let k = required(field, k)?;
    Ok(ServiceKey {
        proto: proto_from_pb(k.protocol)?,
        vip: ip("vip", &k.vip)?,
        vport: port16("vport", k.vport)?,
    })
}

pub fn key_to_pb(k: &ServiceKey) -> pb::ServiceKey {
    pb::ServiceKey {
        protocol: proto_to_pb(k.proto) as i32,
        vip: k.vip.to_string(),
        vport: u32::from(k.vport),
    }
}

/// A dest for service `key`: port 0 becomes the virtual port.
pub fn dest_from_pb(key: &ServiceKey, d: Option<&pb::Dest>) -> Result<DestSpec, String> {
    let d = required("dest", d)?;
    let port = port16("port", d.port)?;
    Ok(DestSpec {
        addr: ip("addr", &d.addr)?,
        port: if port == 0 { key.vport } else { port },
        weight: d.weight,
        mode: mode_from_pb(d.mode)?,
        u_threshold: d.u_threshold,
        l_threshold: d.l_threshold,
        inhibited: false,
    })
}

pub fn dest_to_pb(d: &DestSpec) -> pb::Dest {
    pb::Dest {
        addr: d.addr.to_string(),
        port: u32::from(d.port),
        weight: d.weight,
        mode: mode_to_pb(d.mode) as i32,
        u_threshold: d.u_threshold,
        l_threshold: d.l_threshold,
        inhibited: d.inhibited,
        // The store keeps checks beside the spec; callers that know fill it in.
        check: None,
        sorry: false,
    }
}

/// A health check from its message; errors name the field.
pub fn check_from_pb(c: &pb::HealthCheck) -> Result<CheckSpec, String> {
    let secs =
        |v: u32, default: u64| Duration::from_secs(if v == 0 { default } else { u64::from(v) });
    let kind = match c.r#type.as_str() {
        "tcp" => CheckKind::Tcp,
        "http" | "https" => CheckKind::Http {
            path: if c.path.is_empty() {
                "/".into()
            } else {
                c.path.clone()
            },
            status: match (c.status, c.status_codes.trim()) {
                (0, "") => StatusCodes::default(),
                (n, "") => {
                    let n = u16::try_from(n)
                        .map_err(|_| format!("check status {n}: not an HTTP status (100-599)"))?;
                    StatusCodes::from_ranges(&[(n, n)])?
                }
                (0, codes) => StatusCodes::parse(codes)?,
                _ => return Err("check status and status_codes: give one of them".into()),
            },
            digest: (!c.digest.is_empty()).then(|| c.digest.clone()),
            tls: c.r#type == "https",
        },
        "udp" => CheckKind::Udp {
            payload: c.payload.clone(),
        },
        "misc" => CheckKind::Misc {
            command: c.command.clone(),
        },
        other => {
            return Err(format!(
                "check type \"{other}\": one of tcp, http, https, udp, misc"
            ))
        }
    };
    let d = CheckSpec::new(kind);
    let spec = CheckSpec {
        port: match port16("check port", c.port)? {
            0 => None,
            p => Some(p),
        },
        interval: secs(c.interval_s, d.interval.as_secs()),
        timeout: secs(c.timeout_s, d.timeout.as_secs()),
        retries: if c.retries == 0 { d.retries } else { c.retries },
        rise: if c.rise == 0 { d.rise } else { c.rise },
        delay_before_retry: secs(c.delay_before_retry_s, d.delay_before_retry.as_secs()),
        on_failure: match c.on_failure.as_str() {
            "" | "inhibit" => OnFailure::Inhibit,
            "remove" => OnFailure::Remove,
            other => return Err(format!("check on_failure \"{other}\": inhibit or remove")),
        },
        kind: d.kind,
    };
    spec.validate()?;
    Ok(spec)
}

pub fn check_to_pb(c: &CheckSpec) -> pb::HealthCheck {
    let mut out = pb::HealthCheck {
        r#type: c.type_name().into(),
        port: c.port.map_or(0, u32::from),
        interval_s: c.interval.as_secs() as u32,
        timeout_s: c.timeout.as_secs() as u32,
        retries: c.retries,
        rise: c.rise,
        delay_before_retry_s: c.delay_before_retry.as_secs() as u32,
        on_failure: match c.on_failure {
            OnFailure::Inhibit => "inhibit",
            OnFailure::Remove => "remove",
        }
        .into(),
        ..Default::default()
    };
    match &c.kind {
        CheckKind::Tcp => {}
        CheckKind::Http {
            path,
            status,
            digest,
            ..
        } => {
            out.path = path.clone();
            out.status = status.single().map_or(0, u32::from);
            out.status_codes = status.to_string();
            out.digest = digest.clone().unwrap_or_default();
        }
        CheckKind::Udp { payload } => out.payload = payload.clone(),
        CheckKind::Misc { command } => out.command = command.clone(),
    }
    out
}

pub fn service_from_pb(s: Option<&pb::Service>) -> Result<ServiceSpec, String> {
    let s = required("service", s)?;
    let key = key_from_pb(s.key.as_ref())?;
    let persistence = match &s.persistence {
        None => None,
        Some(p) => Some(Persistence {
            timeout_s: if p.timeout_s == 0 {
                DEFAULT_PERSISTENCE_S
            } else {
                p.timeout_s
            },
            netmask_len: match p.netmask_len {
                None => max_prefix(&key.vip),
                Some(len) => len8("netmask_len", len, &key.vip)?,
            },
        }),
    };
    let dests = s
        .dests
        .iter()
        .enumerate()
        .map(|(j, d)| dest_from_pb(&key, Some(d)).map_err(|e| format!("dests[{j}].{e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ServiceSpec {
        key,
        scheduler: if s.scheduler.is_empty() {
            DEFAULT_SCHEDULER.to_string()
        } else {
            s.scheduler.clone()
        },
        sched_flags: s.sched_flags.clone(),
        persistence,
        conn_timeout_s: s.conn_timeout_s,
        ops: s.ops,
        dests,
    })
}

/// `Service.proxy_protocol`: `None` = not given (AddService: off; EditService:
/// keep), `Some(None)` = off, `Some(Some(v))` = version `v`.
#[allow(clippy::option_option)]
pub fn proxy_protocol_from_pb(p: i32) -> Result<Option<Option<ProxyProtocol>>, String> {
    match pb::ProxyProtocol::try_from(p) {
        Ok(pb::ProxyProtocol::Unspecified) => Ok(None),
        Ok(pb::ProxyProtocol::None) => Ok(Some(None)),
        Ok(pb::ProxyProtocol::V1) => Ok(Some(Some(ProxyProtocol::V1))),
        Ok(pb::ProxyProtocol::V2) => Ok(Some(Some(ProxyProtocol::V2))),
        Err(_) => Err(format!(
            "proxy_protocol: unknown value {p} (NONE, V1 or V2)"
        )),
    }
}

pub fn proxy_protocol_to_pb(p: Option<ProxyProtocol>) -> pb::ProxyProtocol {
    match p {
        None => pb::ProxyProtocol::None,
        Some(ProxyProtocol::V1) => pb::ProxyProtocol::V1,
        Some(ProxyProtocol::V2) => pb::ProxyProtocol::V2,
    }
}

/// Service attributes without dests (they travel in `ServiceStatus.dests`).
pub fn service_to_pb(s: &ServiceSpec, with_dests: bool) -> pb::Service {
    pb::Service {
        key: Some(key_to_pb(&s.key)),
        scheduler: s.scheduler.clone(),
        sched_flags: s.sched_flags.clone(),
        persistence: s.persistence.map(|p| pb::Persistence {
            timeout_s: p.timeout_s,
            netmask_len: Some(u32::from(p.netmask_len)),
        }),
        conn_timeout_s: s.conn_timeout_s,
        ops: s.ops,
        // The store keeps these beside the spec; callers that know fill them in.
        proxy_protocol: pb::ProxyProtocol::Unspecified as i32,
        sorry_server: String::new(),
        passive_check: false,
        synproxy: None,
        conn_limit: None,
        quorum: 0,
        hysteresis: 0,
        quorum_up: String::new(),
        quorum_down: String::new(),
        blacklist: Vec::new(),
        whitelist: Vec::new(),
        dests: if with_dests {
            s.dests.iter().map(dest_to_pb).collect()
        } else {
            Vec::new()
        },
    }
}

pub fn traffic_to_pb(t: &TrafficStats) -> pb::Traffic {
    pb::Traffic {
        conns: t.conns,
        inpkts: t.inpkts,
        outpkts: t.outpkts,
        inbytes: t.inbytes,
        outbytes: t.outbytes,
    }
}

/// Configured service merged with its counters (zeros when the dataplane has none).
pub fn service_status(
    s: &ServiceSpec,
    stats: Option<&dataplane::ServiceStats>,
) -> pb::ServiceStatus {
    let mut dests: Vec<&DestSpec> = s.dests.iter().collect();
    dests.sort_by_key(|d| (d.addr, d.port));
    let find = |d: &DestSpec| -> Option<&DestStats> {
        stats.and_then(|st| {
            st.dests
                .iter()
                .find(|x| x.addr == d.addr && x.port == d.port)
        })
    };
    pb::ServiceStatus {
        service: Some(service_to_pb(s, false)),
        traffic: Some(traffic_to_pb(
            &stats.map(|st| st.traffic).unwrap_or_default(),
        )),
        dests: dests
            .into_iter()
            .map(|d| {
                let ds = find(d);
                pb::DestStatus {
                    dest: Some(dest_to_pb(d)),
                    active_conns: ds.map(|x| x.active_conns).unwrap_or(0),
                    inactive_conns: ds.map(|x| x.inactive_conns).unwrap_or(0),
                    traffic: Some(traffic_to_pb(&ds.map(|x| x.traffic).unwrap_or_default())),
                    rate: None,
                }
            })
            .collect(),
        // The server's estimator fills it in (`--rate`).
        rate: None,
        blacklist_drops: stats.map_or(0, |st| st.acl_drops.blacklist),
        whitelist_drops: stats.map_or(0, |st| st.acl_drops.whitelist),
        conn_limit_drops: stats.map_or(0, |st| st.conn_limit_drops),
    }
}

pub fn addr_from_pb(a: Option<&pb::Addr>) -> Result<AddrSpec, String> {
    let a = required("addr", a)?;
    let addr = ip("addr", &a.addr)?;
    Ok(AddrSpec {
        port: a.port.clone(),
        addr,
        prefix_len: if a.prefix_len == 0 {
            max_prefix(&addr)
        } else {
            len8("prefix_len", a.prefix_len, &addr)?
        },
    })
}

pub fn addr_to_pb(a: &AddrSpec) -> pb::Addr {
    pb::Addr {
        port: a.port.clone(),
        addr: a.addr.to_string(),
        prefix_len: u32::from(a.prefix_len),
    }
}

pub fn route_from_pb(r: Option<&pb::Route>) -> Result<RouteSpec, String> {
    let r = required("route", r)?;
    let prefix = ip("prefix", &r.prefix)?;
    Ok(RouteSpec {
        prefix,
        prefix_len: len8("prefix_len", r.prefix_len, &prefix)?,
        via: if r.via.is_empty() {
            None
        } else {
            Some(ip("via", &r.via)?)
        },
        port: r.port.clone(),
    })
}

pub fn route_to_pb(r: &RouteSpec, connected: bool) -> pb::Route {
    pb::Route {
        prefix: r.prefix.to_string(),
        prefix_len: u32::from(r.prefix_len),
        via: r.via.map(|v| v.to_string()).unwrap_or_default(),
        port: r.port.clone(),
        connected,
    }
}

pub fn conn_to_pb(c: &ConnEntry) -> pb::Connection {
    pb::Connection {
        protocol: proto_to_pb(c.proto) as i32,
        client_addr: c.client.0.to_string(),
        client_port: u32::from(c.client.1),
        virtual_addr: c.virt.0.to_string(),
        virtual_port: u32::from(c.virt.1),
        local_addr: c.local.map(|l| l.0.to_string()).unwrap_or_default(),
        local_port: c.local.map(|l| u32::from(l.1)).unwrap_or(0),
        dest_addr: c.dest.0.to_string(),
        dest_port: u32::from(c.dest.1),
        state: c.state.clone(),
        expires_s: c.expires_s,
        worker: c.worker,
    }
}

pub fn port_stats_to_pb(p: &PortStats) -> pb::PortStats {
    let m = p.mac;
    pb::PortStats {
        name: p.name.clone(),
        mac: format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        ),
        link_up: p.link_up,
        rx_packets: p.rx_packets,
        tx_packets: p.tx_packets,
        rx_bytes: p.rx_bytes,
        tx_bytes: p.tx_bytes,
        rx_missed: p.rx_missed,
        rx_errors: p.rx_errors,
        tx_errors: p.tx_errors,
    }
}

pub fn timeouts_to_pb(t: Timeouts) -> pb::Timeouts {
    pb::Timeouts {
        tcp_s: t.tcp_s,
        tcp_fin_s: t.tcp_fin_s,
        udp_s: t.udp_s,
    }
}

pub fn timeouts_from_pb(t: &pb::Timeouts) -> Timeouts {
    Timeouts {
        tcp_s: t.tcp_s,
        tcp_fin_s: t.tcp_fin_s,
        udp_s: t.udp_s,
    }
}

pub fn laddr_from_pb(l: Option<&pb::LocalAddr>) -> Result<dataplane::LocalAddrSpec, String> {
    let l = required("laddr", l)?;
    let service = key_field("service", l.service.as_ref())?;
    let addr = ip("addr", &l.addr)?;
    if l.port.is_empty() {
        return Err("port: missing (the port that owns the local address, dpvsctl -F)".into());
    }
    Ok(dataplane::LocalAddrSpec {
        service,
        addr,
        port: l.port.clone(),
    })
}

pub fn laddr_to_pb(l: &dataplane::LocalAddrSpec, conns: u64) -> pb::LocalAddr {
    pb::LocalAddr {
        service: Some(key_to_pb(&l.service)),
        addr: l.addr.to_string(),
        port: l.port.clone(),
        conns,
        conflicts: 0,
    }
}

pub fn acl_list_from_pb(l: i32) -> Result<AclList, String> {
    match pb::AclList::try_from(l) {
        Ok(pb::AclList::Blacklist) => Ok(AclList::Blacklist),
        Ok(pb::AclList::Whitelist) => Ok(AclList::Whitelist),
        _ => Err(format!(
            "list: unknown access list {l} (BLACKLIST or WHITELIST)"
        )),
    }
}

pub fn acl_list_to_pb(l: AclList) -> pb::AclList {
    match l {
        AclList::Blacklist => pb::AclList::Blacklist,
        AclList::Whitelist => pb::AclList::Whitelist,
    }
}

/// An access-list entry of a request: the service, the list, the prefix.
pub fn acl_entry_from_pb(
    e: Option<&pb::AclEntry>,
) -> Result<(ServiceKey, AclList, IpAddr, u8), String> {
    let e = required("entry", e)?;
    let key = key_field("service", e.service.as_ref())?;
    let list = acl_list_from_pb(e.list)?;
    let (addr, len) = parse_acl_entry(&e.addr).map_err(|m| format!("addr: {m}"))?;
    Ok((key, list, addr, len))
}

/// A sync daemon from the API: every field checked, named in the error.
pub fn daemon_from_pb(d: &pb::SyncDaemon) -> Result<crate::sync::DaemonSpec, String> {
    let role = crate::sync::Role::parse(&d.state)?;
    if d.mcast_interface.is_empty() {
        return Err("mcast_interface: the sync daemon needs an interface".into());
    }
    let syncid =
        u8::try_from(d.syncid).map_err(|_| format!("syncid {}: expected 0-255", d.syncid))?;
    let group = match d.mcast_group.as_str() {
        "" => crate::sync::GROUP,
        g => {
            let a: std::net::Ipv4Addr = g
                .parse()
                .map_err(|_| format!("mcast_group '{g}': expected an IPv4 multicast address"))?;
            if !a.is_multicast() {
                return Err(format!("mcast_group {a}: not a multicast address"));
            }
            a
        }
    };
    let port = match d.mcast_port {
        0 => crate::sync::PORT,
        p => u16::try_from(p).map_err(|_| format!("mcast_port {p}: expected 1-65535"))?,
    };
    Ok(crate::sync::DaemonSpec {
        role,
        mcast_interface: d.mcast_interface.clone(),
        syncid,
        group,
        port,
    })
}

pub fn daemon_to_pb(d: &crate::sync::DaemonSpec) -> pb::SyncDaemon {
    pb::SyncDaemon {
        state: d.role.name().to_string(),
        mcast_interface: d.mcast_interface.clone(),
        syncid: u32::from(d.syncid),
        mcast_group: d.group.to_string(),
        mcast_port: u32::from(d.port),
    }
}
