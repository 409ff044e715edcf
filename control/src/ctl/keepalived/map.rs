//! keepalived.conf's statements as the changes keepalived would make to
//! kernel IPVS (and DPVS's keepalived to DPVS), in dpvsctl's model: services,
//! real servers with their health checks, FULLNAT local addresses.
//!
//! The defaults are keepalived 2.2's (check_parser.c, check_data.c,
//! check_*.c, validate_check_config):
//! - no `protocol`: UDP (keepalived warns and sets UDP: the kernel's default);
//! - no `lb_algo`/`lvs_sched`: wlc; no `lb_kind`/`lvs_method`: NAT;
//! - `persistence_timeout` without a value, `persistence_granularity` alone,
//!   or a virtual port 0: persistent, 360 s;
//! - DR/TUN real servers take the virtual port (keepalived resets a
//!   different one); NAT/FNAT real servers without a port take it too;
//! - real server weight: the virtual server's `weight`, else 1;
//! - a real server without a checker is never checked (always up);
//! - `inhibit_on_failure`: a failing real server keeps weight 0; without it
//!   keepalived removes it from IPVS (dpvsctl's `--on-failure remove`);
//! - a virtual server without real servers is not configured at all.
//!
//! Checker timing, each taken from the checker, else its real server, else
//! its virtual server: `delay_loop` (60 s) is the interval; `connect_timeout`
//! (5 s) the timeout (MISC_CHECK: `misc_timeout`, else the virtual server's
//! `delay_loop`); `delay_before_retry` (HTTP_GET 3 s, others 1 s).
//!
//! Retries: keepalived counts `retry` (`nb_get_retry`: the same, deprecated)
//! as *additional* attempts. In check_tcp.c's `tcp_epilog` (and likewise for
//! HTTP, UDP, MISC) a failed probe of an up server is retried after
//! `delay_before_retry` while `retry_it < retry`; the failure that finds
//! `retry_it >= retry` takes the server down. So a server goes down on the
//! (`retry` + 1)-th failure in a row: dpvsctl's `retries` (failures in a row
//! before down) is `retry + 1`. keepalived's default `retry` is 1 (MISC_CHECK
//! 0), so `retries` 2 (MISC 1). One success brings a server back (`rise` 1).
//!
//! Anything keepalived would do that dpvsd cannot is an error naming its
//! line, never dropped; keywords of other keepalived processes (VRRP, BFD,
//! global settings) are skipped with a note.

use std::collections::HashMap;
use std::net::IpAddr;

use proto::v1 as pb;

use super::parse::{Error, Loc, Stmt};
use crate::addr::{max_prefix, parse_ip, parse_netmask};
use crate::scheduler::{check_sched_flags, check_scheduler};

/// What an import does: the changes in order, each with where it was
/// written, and what it notes on the way.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub ops: Vec<(Loc, pb::op::Op)>,
    /// `FILE:LINE: text`, in file order.
    pub notes: Vec<String>,
}

/// keepalived's defaults (see the module doc).
const DEFAULT_DELAY_LOOP: u32 = 60;
const DEFAULT_CONNECT_TIMEOUT: u32 = 5;
const DEFAULT_PERSISTENCE: u32 = 360;
const DEFAULT_SCHEDULER: &str = "wlc";
/// Timers above a day are surely a mistake (dpvsctl's limit too).
const MAX_SECONDS: u32 = 86400;
/// A virtual_server_group expands to at most this many services.
const MAX_TARGETS: usize = 65536;

fn err<T>(loc: &Loc, m: impl Into<String>) -> Result<T, Error> {
    Err(Error::at(loc, m))
}

/// Maps the statements of a keepalived.conf.
pub fn plan(stmts: &[Stmt]) -> Result<Plan, Error> {
    let mut m = Mapper::default();
    // Groups may be defined after the virtual servers that use them.
    for s in stmts {
        match s.keyword() {
            "virtual_server_group" => m.vs_group(s)?,
            "local_address_group" => m.laddr_group(s)?,
            _ => {}
        }
    }
    for s in stmts {
        m.top(s)?;
    }
    Ok(Plan {
        ops: m.ops,
        notes: m.notes,
    })
}

#[derive(Default)]
struct Mapper {
    ops: Vec<(Loc, pb::op::Op)>,
    notes: Vec<String>,
    vs_groups: HashMap<String, Vec<(IpAddr, u16)>>,
    /// Each address with the line it was written on and its port (device).
    laddr_groups: HashMap<String, Vec<(Loc, IpAddr, String)>>,
}

/// Checker timing as keepalived inherits it: checker, else real server,
/// else virtual server, else the checker type's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Timing {
    delay_loop: Option<u32>,
    retry: Option<u32>,
    delay_before_retry: Option<u32>,
    connect_timeout: Option<u32>,
}

impl Timing {
    /// `self`, with what it does not set taken from `outer`.
    fn over(self, outer: Timing) -> Timing {
        Timing {
            delay_loop: self.delay_loop.or(outer.delay_loop),
            retry: self.retry.or(outer.retry),
            delay_before_retry: self.delay_before_retry.or(outer.delay_before_retry),
            connect_timeout: self.connect_timeout.or(outer.connect_timeout),
        }
    }

    /// The timing keywords every level has; false: not one of them.
    fn keyword(&mut self, s: &Stmt) -> Result<bool, Error> {
        match s.keyword() {
            "delay_loop" => self.delay_loop = Some(seconds(s, 1)?),
            // dpvsctl's retries (retry + 1) go up to 1000.
            "retry" => self.retry = Some(number(s, 0, 999)?),
            "delay_before_retry" => self.delay_before_retry = Some(seconds(s, 1)?),
            "connect_timeout" => self.connect_timeout = Some(seconds(s, 1)?),
            "warmup" => {
                // keepalived delays a check's first probe by a random time up
                // to its value (default delay_loop); dpvsd probes at once.
                if seconds(s, 0)? != 0 {
                    return err(
                        &s.loc,
                        "warmup is not supported: dpvsd's checks start at once (warmup 0)",
                    );
                }
            }
            "alpha" => {
                if flag(s)? {
                    return err(
                        &s.loc,
                        "alpha (real servers start down until checked) is not supported: \
                         dpvsd's real servers start up",
                    );
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Tcp,
    Http {
        path: String,
        status: Option<u16>,
        digest: String,
    },
    Udp {
        payload: String,
    },
    Misc {
        command: String,
        timeout: Option<u32>,
    },
}

#[derive(Debug, Clone)]
struct Checker {
    loc: Loc,
    kind: Kind,
    timing: Timing,
    port: Option<u16>,
}

#[derive(Debug, Clone)]
struct RealServer {
    loc: Loc,
    addr: IpAddr,
    port: Option<u16>,
    weight: Option<u32>,
    mode: Option<pb::ForwardMode>,
    u_threshold: u32,
    l_threshold: u32,
    inhibit: Option<bool>,
    timing: Timing,
    check: Option<Checker>,
}

/// One argument; `what` names the value in the error.
fn one<'a>(s: &'a Stmt, what: &str) -> Result<&'a str, Error> {
    no_block(s)?;
    match s.args() {
        [v] => Ok(v),
        [] => err(&s.loc, format!("{} needs {what}", s.keyword())),
        _ => err(
            &s.loc,
            format!(
                "{} takes one value ({what}), not {}",
                s.keyword(),
                s.args().len()
            ),
        ),
    }
}

fn no_args(s: &Stmt) -> Result<(), Error> {
    no_block(s)?;
    if let Some(a) = s.args().first() {
        return err(&s.loc, format!("{} takes no value, not '{a}'", s.keyword()));
    }
    Ok(())
}

fn no_block(s: &Stmt) -> Result<(), Error> {
    if s.block.is_some() {
        return err(&s.loc, format!("{} takes no block", s.keyword()));
    }
    Ok(())
}

fn need_block(s: &Stmt) -> Result<&[Stmt], Error> {
    s.block
        .as_deref()
        .ok_or_else(|| Error::at(&s.loc, format!("{} needs a block {{ ... }}", s.keyword())))
}

/// keepalived's booleans: no value is true; true/on/yes, false/off/no.
fn flag(s: &Stmt) -> Result<bool, Error> {
    no_block(s)?;
    match s.args() {
        [] => Ok(true),
        [v] => match v.as_str() {
            "true" | "on" | "yes" => Ok(true),
            "false" | "off" | "no" => Ok(false),
            _ => err(
                &s.loc,
                format!(
                    "{}: '{v}' is not a boolean (yes/no, on/off, true/false)",
                    s.keyword()
                ),
            ),
        },
        _ => err(&s.loc, format!("{} takes at most one value", s.keyword())),
    }
}

fn number(s: &Stmt, min: u32, max: u32) -> Result<u32, Error> {
    let v = one(s, "a number")?;
    match v.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => err(
            &s.loc,
            format!("{} '{v}': not a number in {min}..{max}", s.keyword()),
        ),
    }
}

/// A keepalived timer in whole seconds (keepalived takes fractions; dpvsd's
/// checks count whole seconds, so `1.5` is refused, `2.0` is 2).
fn seconds(s: &Stmt, min: u32) -> Result<u32, Error> {
    let v = one(s, "seconds")?;
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    let n = if !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b == b'0')
    {
        int.parse::<u64>().ok()
    } else {
        None
    };
    match n {
        Some(n) if n >= u64::from(min) && n <= u64::from(MAX_SECONDS) => Ok(n as u32),
        Some(n) if n < u64::from(min) => err(
            &s.loc,
            format!("{} {v}: dpvsd needs at least {min} s", s.keyword()),
        ),
        _ => err(
            &s.loc,
            format!(
                "{} '{v}': not a whole number of seconds (at most {MAX_SECONDS})",
                s.keyword()
            ),
        ),
    }
}

fn port(loc: &Loc, v: &str) -> Result<u16, Error> {
    v.parse::<u16>()
        .map_err(|_| Error::at(loc, format!("invalid port '{v}'")))
}

fn ip(loc: &Loc, v: &str) -> Result<IpAddr, Error> {
    parse_ip(v).map_err(|e| Error::at(loc, e))
}

/// A keyword keepalived (or DPVS's keepalived) has that dpvsd cannot honour
/// yet, with why; `None`: not one of them.
fn refused(keyword: &str) -> Option<&'static str> {
    Some(match keyword {
        "sorry_server" | "sorry_server_inhibit" | "sorry_server_lvs_method" => {
            "sorry servers are not supported yet"
        }
        "quorum" | "hysteresis" | "quorum_up" | "quorum_down" => {
            "quorum handling is not supported yet"
        }
        "omega" => "omega (notify scripts at shutdown) is not supported",
        "notify_up" | "notify_down" => {
            "notify scripts are not supported: dpvsd logs every state change"
        }
        "ha_suspend" => "ha_suspend (checks paused while the VIP is absent) is not supported",
        "virtualhost" => {
            "virtualhost is not supported: dpvsd's HTTP check sends the real server's \
             address as Host"
        }
        "snmp_name" => "snmp_name is not supported: dpvsd has no SNMP agent (see its metrics)",
        "persistence_engine" => "persistence engines (SIP) are not supported",
        "ip_family" => "ip_family is only for fwmark virtual servers, which are not supported",
        // DPVS's keepalived.
        "syn_proxy" => "syn_proxy is not supported",
        "vip_bind_dev" => {
            "vip_bind_dev is not supported: dpvsd adds a VIP on the port whose network \
             contains it"
        }
        "daddr_group_name"
        | "deny_address_group"
        | "whitelist_address_group"
        | "waddr_group_name" => "address access lists are not supported",
        "bps" | "limit_proportion" => "bandwidth limits are not supported",
        "hash_target" | "src-range" | "dst-range" | "oif" | "iif" | "nat_mask" => {
            "DPVS SNAT services are not supported"
        }
        "tunnel_group" => "tunnel_group is not supported",
        _ => return None,
    })
}

/// Top-level blocks that belong to other keepalived processes: skipped with
/// a note, as keepalived's checker process skips them.
fn elsewhere(keyword: &str) -> Option<&'static str> {
    Some(match keyword {
        "vrrp_instance"
        | "vrrp_sync_group"
        | "vrrp_script"
        | "vrrp_track_process"
        | "static_ipaddress"
        | "static_routes"
        | "static_rules"
        | "garp_group"
        | "linkbeat_interfaces" => "handled by keepalived's VRRP, not imported",
        "bfd_instance" => "handled by keepalived's BFD, not imported",
        "global_defs" => "keepalived's own process settings, not imported",
        "track_file" => "used by keepalived's VRRP (and FILE_CHECK), not imported",
        "SSL" => "used by SSL_GET checkers only, not imported",
        _ => return None,
    })
}

impl Mapper {
    fn note(&mut self, loc: &Loc, text: impl std::fmt::Display) {
        let n = format!("{loc}: {text}");
        // A group's addresses would repeat the same note.
        if !self.notes.contains(&n) {
            self.notes.push(n);
        }
    }

    fn top(&mut self, s: &Stmt) -> Result<(), Error> {
        let k = s.keyword();
        match k {
            "virtual_server" => self.virtual_server(s),
            // Read in the first pass.
            "virtual_server_group" | "local_address_group" => Ok(()),
            _ => {
                if let Some(why) = elsewhere(k) {
                    let name = s
                        .args()
                        .first()
                        .map(|a| format!(" {a}"))
                        .unwrap_or_default();
                    self.note(&s.loc, format!("{k}{name}: {why}"));
                    return Ok(());
                }
                if let Some(why) = refused(k) {
                    return err(&s.loc, format!("{k}: {why}"));
                }
                err(&s.loc, format!("unknown keyword '{k}'"))
            }
        }
    }

    /// `virtual_server_group NAME { IP [PORT] | IP-RANGE [PORT] ... }`.
    fn vs_group(&mut self, s: &Stmt) -> Result<(), Error> {
        let name = group_name(s)?;
        let mut targets = Vec::new();
        for e in need_block(s)? {
            no_block(e)?;
            if e.keyword() == "fwmark" {
                return err(&e.loc, fwmark_refusal());
            }
            let (addrs, vport) = match e.words.as_slice() {
                [a] => (range(&e.loc, a)?, 0),
                [a, p] => (range(&e.loc, a)?, port(&e.loc, p)?),
                _ => {
                    return err(
                        &e.loc,
                        "a virtual_server_group entry is IP [PORT] or IP-RANGE [PORT]",
                    )
                }
            };
            for a in addrs {
                if targets.len() >= MAX_TARGETS {
                    return err(
                        &e.loc,
                        format!("virtual_server_group {name}: more than {MAX_TARGETS} addresses"),
                    );
                }
                targets.push((a, vport));
            }
        }
        if targets.is_empty() {
            return err(
                &s.loc,
                format!("virtual_server_group {name} has no entries"),
            );
        }
        if self.vs_groups.insert(name.clone(), targets).is_some() {
            return err(&s.loc, format!("virtual_server_group {name} defined twice"));
        }
        Ok(())
    }

    /// DPVS: `local_address_group NAME { IP PORT | IP-RANGE PORT ... }`.
    fn laddr_group(&mut self, s: &Stmt) -> Result<(), Error> {
        let name = group_name(s)?;
        let mut entries = Vec::new();
        for e in need_block(s)? {
            no_block(e)?;
            let [a, dev] = e.words.as_slice() else {
                return err(
                    &e.loc,
                    "a local_address_group entry is IP PORT or IP-RANGE PORT \
                     (the dpdk port that owns the address)",
                );
            };
            for addr in range(&e.loc, a)? {
                if entries.len() >= MAX_TARGETS {
                    return err(
                        &e.loc,
                        format!("local_address_group {name}: more than {MAX_TARGETS} addresses"),
                    );
                }
                entries.push((e.loc.clone(), addr, dev.clone()));
            }
        }
        if entries.is_empty() {
            return err(&s.loc, format!("local_address_group {name} has no entries"));
        }
        if self.laddr_groups.insert(name.clone(), entries).is_some() {
            return err(&s.loc, format!("local_address_group {name} defined twice"));
        }
        Ok(())
    }

    fn virtual_server(&mut self, s: &Stmt) -> Result<(), Error> {
        let targets: Vec<(IpAddr, u16)> = match s.args() {
            [f, _] if f == "fwmark" => return err(&s.loc, fwmark_refusal()),
            [g, name] if g == "group" => self
                .vs_groups
                .get(name)
                .cloned()
                .ok_or_else(|| Error::at(&s.loc, format!("no virtual_server_group {name}")))?,
            [a] => vec![(ip(&s.loc, a)?, 0)],
            [a, p] => vec![(ip(&s.loc, a)?, port(&s.loc, p)?)],
            _ => {
                return err(
                    &s.loc,
                    "virtual_server takes IP [PORT], group NAME or fwmark N",
                )
            }
        };
        let label = s.args().join(" ");
        let body = need_block(s)?;

        let mut proto = None;
        let mut scheduler: Option<(Loc, String)> = None;
        let mut flags: Vec<String> = Vec::new();
        let mut mode = None;
        let mut persistence: Option<u32> = None;
        let mut granularity: Option<(Loc, String)> = None;
        let mut ops_loc: Option<Loc> = None;
        let mut conn_timeout = None;
        let mut laddr_group: Option<(Loc, String)> = None;
        let mut weight = None;
        let mut inhibit = None;
        let mut timing = Timing::default();
        let mut servers: Vec<RealServer> = Vec::new();

        for k in body {
            if timing.keyword(k)? {
                continue;
            }
            match k.keyword() {
                "protocol" => {
                    let v = one(k, "TCP or UDP")?;
                    proto = Some(match v.to_ascii_uppercase().as_str() {
                        "TCP" => pb::Protocol::Tcp,
                        "UDP" => pb::Protocol::Udp,
                        "SCTP" => return err(&k.loc, "protocol SCTP is not supported (TCP, UDP)"),
                        _ => return err(&k.loc, format!("unknown protocol '{v}' (TCP, UDP)")),
                    });
                }
                "lb_algo" | "lvs_sched" => {
                    let v = one(k, "a scheduler")?;
                    check_scheduler(v).map_err(|e| Error::at(&k.loc, e))?;
                    scheduler = Some((k.loc.clone(), v.to_string()));
                }
                "lb_kind" | "lvs_method" => mode = Some(forward_mode(k)?),
                "flag-1" | "flag-2" | "flag-3" | "sh-port" | "sh-fallback" | "mh-port"
                | "mh-fallback" => {
                    no_args(k)?;
                    flags.push(k.keyword().to_string());
                }
                // An IPVS-internal flag the kernel sets on every service.
                "hashed" => no_args(k)?,
                "ops" => {
                    no_args(k)?;
                    ops_loc = Some(k.loc.clone());
                }
                "persistence_timeout" => {
                    no_block(k)?;
                    persistence = Some(match k.args() {
                        [] => DEFAULT_PERSISTENCE,
                        _ => number(k, 1, u32::MAX)?,
                    });
                }
                "persistence_granularity" => {
                    granularity = Some((k.loc.clone(), one(k, "a netmask")?.to_string()));
                    persistence.get_or_insert(DEFAULT_PERSISTENCE);
                }
                "weight" => weight = Some(number(k, 1, 65535)?),
                "inhibit_on_failure" => inhibit = Some(flag(k)?),
                "smtp_alert" => {
                    if flag(k)? {
                        return err(
                            &k.loc,
                            "smtp_alert is not supported: dpvsd logs every state change",
                        );
                    }
                }
                // DPVS: the idle timeout of established connections.
                "establish_timeout" => conn_timeout = Some(number(k, 1, u32::MAX)?),
                "laddr_group_name" => {
                    let n = one(k, "a local_address_group name")?;
                    laddr_group = Some((k.loc.clone(), n.to_string()));
                }
                "real_server" => servers.push(real_server(k)?),
                "fwmark" => return err(&k.loc, fwmark_refusal()),
                kw => {
                    if let Some(why) = refused(kw) {
                        return err(&k.loc, format!("{kw}: {why}"));
                    }
                    return err(&k.loc, format!("unknown keyword '{kw}' in virtual_server"));
                }
            }
        }

        if servers.is_empty() {
            self.note(
                &s.loc,
                format!(
                    "virtual_server {label} has no real servers: not configured (as keepalived)"
                ),
            );
            return Ok(());
        }
        let proto = proto.unwrap_or_else(|| {
            self.note(
                &s.loc,
                format!("virtual_server {label}: no protocol, UDP (as keepalived)"),
            );
            pb::Protocol::Udp
        });
        let scheduler = match scheduler {
            Some((_, v)) => v,
            None => {
                self.note(
                    &s.loc,
                    format!(
                        "virtual_server {label}: no lb_algo, {DEFAULT_SCHEDULER} (as keepalived)"
                    ),
                );
                DEFAULT_SCHEDULER.to_string()
            }
        };
        let flags = check_sched_flags(&scheduler, &flags).map_err(|e| Error::at(&s.loc, e))?;
        let ops = match ops_loc {
            Some(l) if proto != pb::Protocol::Udp => {
                self.note(
                    &l,
                    "ops: one-packet scheduling needs UDP, left off (as keepalived)",
                );
                false
            }
            Some(_) => true,
            None => false,
        };
        if persistence.is_none() && targets.iter().any(|t| t.1 == 0) {
            self.note(
                &s.loc,
                format!(
                    "virtual_server {label}: port 0 needs persistence, \
                     {DEFAULT_PERSISTENCE} s (as keepalived)"
                ),
            );
            persistence = Some(DEFAULT_PERSISTENCE);
        }
        let netmask_len = match &granularity {
            None => None,
            Some((loc, v)) => Some(netmask(loc, v, &targets[0].0)?),
        };
        let default_mode = match mode {
            Some(m) => m,
            None => {
                if servers.iter().any(|r| r.mode.is_none()) {
                    self.note(
                        &s.loc,
                        format!("virtual_server {label}: no lb_kind, NAT (as keepalived)"),
                    );
                }
                pb::ForwardMode::Nat
            }
        };
        let fullnat = servers
            .iter()
            .any(|r| r.mode.unwrap_or(default_mode) == pb::ForwardMode::Fullnat);
        let laddrs: Vec<(Loc, IpAddr, String)> = match &laddr_group {
            None => Vec::new(),
            Some((loc, name)) => {
                if !fullnat {
                    return err(
                        loc,
                        "laddr_group_name: local addresses are for FNAT (FULLNAT) real servers",
                    );
                }
                self.laddr_groups
                    .get(name)
                    .cloned()
                    .ok_or_else(|| Error::at(loc, format!("no local_address_group {name}")))?
            }
        };

        for r in &servers {
            if let Some(Checker {
                loc,
                kind: Kind::Http { status: None, .. },
                ..
            }) = &r.check
            {
                self.note(
                    loc,
                    "HTTP_GET url without status_code: keepalived takes any 2xx, \
                     dpvsd's check takes 200",
                );
            }
        }
        for (vip, vport) in &targets {
            let key = pb::ServiceKey {
                protocol: proto as i32,
                vip: vip.to_string(),
                vport: u32::from(*vport),
            };
            let service = pb::Service {
                key: Some(key.clone()),
                scheduler: scheduler.clone(),
                sched_flags: flags.clone(),
                persistence: persistence.map(|t| pb::Persistence {
                    timeout_s: t,
                    netmask_len: netmask_len.map(u32::from),
                }),
                conn_timeout_s: conn_timeout,
                ops,
                dests: vec![],
                proxy_protocol: pb::ProxyProtocol::Unspecified as i32,
            };
            self.ops.push((
                s.loc.clone(),
                pb::op::Op::AddService(pb::AddServiceRequest {
                    service: Some(service),
                }),
            ));
            let mut seen: Vec<(IpAddr, u16, &Loc)> = Vec::new();
            for r in &servers {
                let m = r.mode.unwrap_or(default_mode);
                let mut rport = r.port.unwrap_or(*vport);
                if matches!(m, pb::ForwardMode::Dr | pb::ForwardMode::Tun) && rport != *vport {
                    self.note(
                        &r.loc,
                        format!(
                            "real_server {} {rport}: {} forwards to the virtual port, \
                             {vport} used (as keepalived)",
                            r.addr,
                            mode_name(m)
                        ),
                    );
                    rport = *vport;
                }
                if let Some((_, _, first)) =
                    seen.iter().find(|(a, p, _)| *a == r.addr && *p == rport)
                {
                    let text = format!(
                        "real_server {} {rport} repeats the one at line {}: \
                         the second is left out (as keepalived)",
                        r.addr, first.line
                    );
                    self.note(&r.loc, text);
                    continue;
                }
                seen.push((r.addr, rport, &r.loc));
                let check = match &r.check {
                    None => None,
                    Some(c) => Some(health_check(c, r, timing, inhibit.unwrap_or(false), rport)?),
                };
                let dest = pb::Dest {
                    addr: r.addr.to_string(),
                    port: u32::from(rport),
                    weight: r.weight.or(weight).unwrap_or(1),
                    mode: m as i32,
                    u_threshold: r.u_threshold,
                    l_threshold: r.l_threshold,
                    inhibited: false,
                    check,
                };
                self.ops.push((
                    r.loc.clone(),
                    pb::op::Op::AddDest(pb::DestRequest {
                        service: Some(key.clone()),
                        dest: Some(dest),
                    }),
                ));
            }
            for (loc, addr, dev) in &laddrs {
                self.ops.push((
                    loc.clone(),
                    pb::op::Op::AddLocalAddr(pb::LocalAddrRequest {
                        laddr: Some(pb::LocalAddr {
                            service: Some(key.clone()),
                            addr: addr.to_string(),
                            port: dev.clone(),
                            conns: 0,
                            conflicts: 0,
                        }),
                    }),
                ));
            }
        }
        Ok(())
    }
}

fn fwmark_refusal() -> &'static str {
    "fwmark virtual servers are not supported: no netfilter rule marks packets \
     before dpvsd; use IP PORT"
}

fn group_name(s: &Stmt) -> Result<String, Error> {
    match s.args() {
        [n] => Ok(n.clone()),
        _ => err(&s.loc, format!("{} takes one name", s.keyword())),
    }
}

fn mode_name(m: pb::ForwardMode) -> &'static str {
    match m {
        pb::ForwardMode::Nat => "NAT",
        pb::ForwardMode::Fullnat => "FNAT",
        pb::ForwardMode::Tun => "TUN",
        _ => "DR",
    }
}

/// `lb_kind`/`lvs_method NAT|DR|TUN [type ipip] [nocsum]|FNAT`.
fn forward_mode(s: &Stmt) -> Result<pb::ForwardMode, Error> {
    no_block(s)?;
    let Some((m, rest)) = s.args().split_first() else {
        return err(
            &s.loc,
            format!("{} needs NAT, DR, TUN or FNAT", s.keyword()),
        );
    };
    let mode = match m.as_str() {
        "NAT" => pb::ForwardMode::Nat,
        "DR" => pb::ForwardMode::Dr,
        "TUN" => pb::ForwardMode::Tun,
        "FNAT" => pb::ForwardMode::Fullnat,
        "SNAT" => return err(&s.loc, "SNAT (DPVS) is not supported"),
        _ => {
            return err(
                &s.loc,
                format!("unknown {} '{m}' (NAT, DR, TUN, FNAT)", s.keyword()),
            )
        }
    };
    match (
        mode,
        rest.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
    ) {
        (_, []) => Ok(mode),
        // IPIP without checksums is keepalived's tunnel default, and dpvsd's.
        (pb::ForwardMode::Tun, ["type", "ipip"] | ["type", "ipip", "nocsum"] | ["nocsum"]) => {
            Ok(mode)
        }
        (pb::ForwardMode::Tun, ["type", t, ..]) => err(
            &s.loc,
            format!("tunnel type {t} is not supported: only ipip is implemented"),
        ),
        _ => err(
            &s.loc,
            format!("{} {m}: unexpected '{}'", s.keyword(), rest.join(" ")),
        ),
    }
}

/// An address or a range: `A.B.C.D-E` (last part), `A-B` (full addresses),
/// `A/LEN` (the whole prefix), as keepalived's virtual_server_group and
/// DPVS's local_address_group read them.
fn range(loc: &Loc, v: &str) -> Result<Vec<IpAddr>, Error> {
    let bad = || Error::at(loc, format!("invalid address or range '{v}'"));
    let (start, end) = if let Some((a, len)) = v.split_once('/') {
        let a = parse_ip(a).map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        if len == 0 || len > max_prefix(&a) {
            return Err(bad());
        }
        let host_bits = u32::from(max_prefix(&a) - len);
        let mask = (1u128 << host_bits) - 1;
        if to_u128(a) & mask != 0 {
            return err(loc, format!("'{v}': the address has host bits set"));
        }
        (a, to_u128(a) | mask)
    } else if let Some((a, b)) = v.split_once('-') {
        let a = parse_ip(a).map_err(|_| bad())?;
        let n = to_u128(a);
        let end = match (a, parse_ip(b)) {
            (IpAddr::V4(_), Ok(e @ IpAddr::V4(_))) | (IpAddr::V6(_), Ok(e @ IpAddr::V6(_))) => {
                to_u128(e)
            }
            (IpAddr::V4(_), _) => (n & !0xff) | u128::from(b.parse::<u8>().map_err(|_| bad())?),
            (IpAddr::V6(_), _) => {
                (n & !0xffff) | u128::from(u16::from_str_radix(b, 16).map_err(|_| bad())?)
            }
        };
        if end <= n {
            return err(loc, format!("'{v}': the range ends before it starts"));
        }
        (a, end)
    } else {
        let a = parse_ip(v).map_err(|_| bad())?;
        (a, to_u128(a))
    };
    let first = to_u128(start);
    if end - first >= MAX_TARGETS as u128 {
        return err(loc, format!("'{v}': more than {MAX_TARGETS} addresses"));
    }
    Ok((first..=end)
        .map(|n| from_u128(n, start.is_ipv4()))
        .collect())
}

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(n: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(std::net::Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(std::net::Ipv6Addr::from(n))
    }
}

/// `persistence_granularity`: a dotted mask (IPv4) or a prefix length (IPv6).
fn netmask(loc: &Loc, v: &str, vip: &IpAddr) -> Result<u8, Error> {
    let len =
        parse_netmask(v).map_err(|e| Error::at(loc, format!("persistence_granularity: {e}")))?;
    if len > max_prefix(vip) || (vip.is_ipv6() && v.contains('.')) {
        return err(
            loc,
            format!("persistence_granularity '{v}' does not fit the VIP {vip}"),
        );
    }
    Ok(len)
}

/// `real_server IP [PORT] { ... }`.
fn real_server(s: &Stmt) -> Result<RealServer, Error> {
    let (addr, port) = match s.args() {
        [a] => (ip(&s.loc, a)?, None),
        [a, p] => {
            let p = port(&s.loc, p)?;
            (ip(&s.loc, a)?, (p != 0).then_some(p))
        }
        _ => return err(&s.loc, "real_server takes IP [PORT]"),
    };
    let mut r = RealServer {
        loc: s.loc.clone(),
        addr,
        port,
        weight: None,
        mode: None,
        u_threshold: 0,
        l_threshold: 0,
        inhibit: None,
        timing: Timing::default(),
        check: None,
    };
    for k in s.block.as_deref().unwrap_or(&[]) {
        if r.timing.keyword(k)? {
            continue;
        }
        let kw = k.keyword();
        match kw {
            "weight" => r.weight = Some(number(k, 0, 65535)?),
            "lvs_method" => r.mode = Some(forward_mode(k)?),
            "uthreshold" => r.u_threshold = number(k, 0, u32::MAX)?,
            "lthreshold" => r.l_threshold = number(k, 0, u32::MAX)?,
            "inhibit_on_failure" => r.inhibit = Some(flag(k)?),
            "smtp_alert" => {
                if flag(k)? {
                    return err(
                        &k.loc,
                        "smtp_alert is not supported: dpvsd logs every state change",
                    );
                }
            }
            "TCP_CHECK" | "HTTP_GET" | "UDP_CHECK" | "MISC_CHECK" => {
                if let Some(c) = &r.check {
                    return err(
                        &k.loc,
                        format!(
                            "a second checker on real_server {}: dpvsd runs one check per \
                             real server (the first is at line {})",
                            r.addr, c.loc.line
                        ),
                    );
                }
                r.check = Some(checker(k)?);
            }
            "SSL_GET" => {
                return err(
                    &k.loc,
                    "SSL_GET (HTTPS) checks are not supported yet: use MISC_CHECK with \
                     misc_path \"curl -fsk https://...\"",
                )
            }
            "SMTP_CHECK" | "DNS_CHECK" | "BFD_CHECK" | "PING_CHECK" | "FILE_CHECK" => {
                return err(&k.loc, format!("{kw} checks are not supported"))
            }
            _ => {
                if let Some(why) = refused(kw) {
                    return err(&k.loc, format!("{kw}: {why}"));
                }
                return err(&k.loc, format!("unknown keyword '{kw}' in real_server"));
            }
        }
    }
    Ok(r)
}

/// TCP_CHECK, HTTP_GET, UDP_CHECK, MISC_CHECK blocks.
fn checker(s: &Stmt) -> Result<Checker, Error> {
    if !s.args().is_empty() {
        return err(&s.loc, format!("{} takes a block, not values", s.keyword()));
    }
    let kind_name = s.keyword();
    let misc = kind_name == "MISC_CHECK";
    let mut c = Checker {
        loc: s.loc.clone(),
        kind: Kind::Tcp,
        timing: Timing::default(),
        port: None,
    };
    let mut urls: Vec<&Stmt> = Vec::new();
    let mut payload = String::new();
    let mut require_reply = false;
    let mut misc_path: Option<String> = None;
    let mut misc_timeout = None;
    for k in s.block.as_deref().unwrap_or(&[]) {
        if c.timing.keyword(k)? {
            continue;
        }
        let kw = k.keyword();
        match (kind_name, kw) {
            (_, "log_all_failures") => {
                if flag(k)? {
                    return err(
                        &k.loc,
                        "log_all_failures is not supported: dpvsd logs state changes",
                    );
                }
            }
            (_, "connect_port") if !misc => c.port = Some(port(&k.loc, one(k, "a port")?)?),
            (_, "connect_ip" | "bindto" | "bind_if" | "bind_port") if !misc => {
                return err(
                    &k.loc,
                    format!(
                        "{kw} is not supported: dpvsd's checks connect from the director \
                         to the real server's address"
                    ),
                )
            }
            (_, "fwmark") if !misc => {
                return err(&k.loc, "fwmark (marking check packets) is not supported")
            }
            ("HTTP_GET", "url") => urls.push(k),
            ("HTTP_GET", "nb_get_retry") => c.timing.retry = Some(number(k, 0, 999)?),
            ("HTTP_GET", "http_protocol") => match one(k, "1.0, 1.0C or 1.1")? {
                // dpvsd sends HTTP/1.0 with Connection: close.
                "1.0" | "1.0C" | "1.0c" => {}
                v => {
                    return err(
                        &k.loc,
                        format!(
                            "http_protocol {v} is not supported: dpvsd's check speaks HTTP/1.0"
                        ),
                    )
                }
            },
            // It only changes how several urls are retried; dpvsd checks one.
            ("HTTP_GET", "fast_recovery") => {
                flag(k)?;
            }
            ("HTTP_GET", "enable_sni") => {
                return err(&k.loc, "enable_sni is for SSL_GET, which is not supported")
            }
            ("UDP_CHECK", "payload") => payload = hex_payload(k)?,
            ("UDP_CHECK", "require_reply") => {
                no_block(k)?;
                if !k.args().is_empty() {
                    return err(
                        &k.loc,
                        "require_reply with data is not supported: dpvsd's UDP check takes \
                         any answer",
                    );
                }
                require_reply = true;
            }
            ("UDP_CHECK", "min_reply_length" | "max_reply_length") => {
                return err(
                    &k.loc,
                    format!("{kw} is not supported: dpvsd's UDP check takes any answer"),
                )
            }
            ("MISC_CHECK", "misc_path") => {
                let v = one(k, "a command")?;
                if v.trim().is_empty() {
                    return err(&k.loc, "misc_path is empty");
                }
                misc_path = Some(v.to_string());
            }
            ("MISC_CHECK", "misc_timeout") => misc_timeout = Some(seconds(k, 1)?),
            ("MISC_CHECK", "misc_dynamic") => {
                return err(
                    &k.loc,
                    "misc_dynamic (weight from the exit status) is not supported",
                )
            }
            ("MISC_CHECK", "user") => {
                return err(
                    &k.loc,
                    "user is not supported: dpvsd runs MISC_CHECK commands as itself",
                )
            }
            _ => {
                if let Some(why) = refused(kw) {
                    return err(&k.loc, format!("{kw}: {why}"));
                }
                return err(&k.loc, format!("unknown keyword '{kw}' in {kind_name}"));
            }
        }
    }
    c.kind = match kind_name {
        "TCP_CHECK" => Kind::Tcp,
        "HTTP_GET" => match urls.as_slice() {
            [] => return err(&s.loc, "HTTP_GET needs a url { path ... }"),
            [u] => url(u)?,
            [_, second, ..] => {
                return err(
                    &second.loc,
                    "a second url: dpvsd's HTTP check gets one url per real server",
                )
            }
        },
        "UDP_CHECK" => {
            if !require_reply {
                return err(
                    &s.loc,
                    "UDP_CHECK without require_reply passes unless an ICMP error comes back; \
                     dpvsd's UDP check needs an answer: add require_reply",
                );
            }
            Kind::Udp { payload }
        }
        _ => Kind::Misc {
            command: misc_path.ok_or_else(|| Error::at(&s.loc, "MISC_CHECK needs misc_path"))?,
            timeout: misc_timeout,
        },
    };
    Ok(c)
}

/// `url { path P  status_code N  digest MD5 }`.
fn url(s: &Stmt) -> Result<Kind, Error> {
    if !s.args().is_empty() {
        return err(&s.loc, "url takes a block, not values");
    }
    let mut path = None;
    let mut status = None;
    let mut digest = String::new();
    for k in need_block(s)? {
        match k.keyword() {
            "path" => path = Some(one(k, "a path")?.to_string()),
            "digest" => {
                let d = one(k, "an MD5 digest in hex")?;
                if d.len() != 32 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return err(
                        &k.loc,
                        format!("digest '{d}': not an MD5 in hex (32 digits)"),
                    );
                }
                digest = d.to_ascii_lowercase();
            }
            "status_code" => {
                no_block(k)?;
                let codes: Vec<&str> = k.args().iter().map(String::as_str).collect();
                let code = match codes.as_slice() {
                    [c] => {
                        let (lo, hi) = c.split_once('-').unwrap_or((c, c));
                        match (lo.parse::<u16>(), hi.parse::<u16>()) {
                            (Ok(a), Ok(b)) if a == b => Some(a),
                            _ => None,
                        }
                    }
                    _ => None,
                };
                match code {
                    Some(c) if (100..=599).contains(&c) => status = Some(c),
                    _ => {
                        return err(
                            &k.loc,
                            format!(
                                "status_code {}: dpvsd's HTTP check expects one status code \
                                 (100..599)",
                                codes.join(" ")
                            ),
                        )
                    }
                }
            }
            "virtualhost" => {
                let why = refused("virtualhost").unwrap_or_default();
                return err(&k.loc, format!("virtualhost: {why}"));
            }
            kw @ ("regex" | "regex_no_match" | "regex_options" | "regex_stack"
            | "regex_min_offset" | "regex_max_offset") => {
                return err(
                    &k.loc,
                    format!("{kw}: matching the body is not supported (digest is)"),
                )
            }
            kw => return err(&k.loc, format!("unknown keyword '{kw}' in url")),
        }
    }
    let path = path.ok_or_else(|| Error::at(&s.loc, "url needs a path"))?;
    Ok(Kind::Http {
        path,
        status,
        digest,
    })
}

/// UDP_CHECK `payload HEX`: keepalived's free hex format, pairs of digits
/// within each word, a last odd digit a byte of its own (`Ab12f 3` is AB 12
/// 0F 03). dpvsd sends text, so the bytes must be UTF-8.
fn hex_payload(s: &Stmt) -> Result<String, Error> {
    no_block(s)?;
    if s.args().is_empty() {
        return err(&s.loc, "payload needs hex digits");
    }
    let mut bytes = Vec::new();
    for w in s.args() {
        let digits: Vec<u8> = w
            .chars()
            .map(|c| c.to_digit(16).map(|d| d as u8))
            .collect::<Option<_>>()
            .ok_or_else(|| Error::at(&s.loc, format!("payload '{w}': not hex digits")))?;
        for pair in digits.chunks(2) {
            bytes.push(match pair {
                [h, l] => h << 4 | l,
                [l] => *l,
                _ => unreachable!("chunks(2)"),
            });
        }
    }
    String::from_utf8(bytes).map_err(|_| {
        Error::at(
            &s.loc,
            "payload: the bytes are not text, and dpvsd's UDP check sends text",
        )
    })
}

/// The dest's health check: the checker's settings over the real server's
/// over the virtual server's, with keepalived's defaults.
fn health_check(
    c: &Checker,
    r: &RealServer,
    vs: Timing,
    vs_inhibit: bool,
    rport: u16,
) -> Result<pb::HealthCheck, Error> {
    let t = c.timing.over(r.timing).over(vs);
    let default_retry = if matches!(c.kind, Kind::Misc { .. }) {
        0
    } else {
        1
    };
    let retry = t.retry.unwrap_or(default_retry);
    let default_delay = if matches!(c.kind, Kind::Http { .. }) {
        3
    } else {
        1
    };
    let mut hc = pb::HealthCheck {
        r#type: String::new(),
        port: c.port.filter(|p| *p != rport).map_or(0, u32::from),
        interval_s: t.delay_loop.unwrap_or(DEFAULT_DELAY_LOOP),
        timeout_s: t.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        retries: retry + 1,
        rise: 1,
        delay_before_retry_s: t.delay_before_retry.unwrap_or(default_delay),
        on_failure: if r.inhibit.unwrap_or(vs_inhibit) {
            "inhibit"
        } else {
            "remove"
        }
        .into(),
        ..Default::default()
    };
    match &c.kind {
        Kind::Tcp => hc.r#type = "tcp".into(),
        Kind::Http {
            path,
            status,
            digest,
        } => {
            hc.r#type = "http".into();
            hc.path = path.clone();
            // keepalived takes any 2xx when no status_code is given; dpvsd's
            // check wants one code (a note says so).
            hc.status = u32::from(status.unwrap_or(200));
            hc.digest = digest.clone();
        }
        Kind::Udp { payload } => {
            hc.r#type = "udp".into();
            hc.payload = payload.clone();
        }
        Kind::Misc { command, timeout } => {
            hc.r#type = "misc".into();
            hc.command = command.clone();
            // keepalived: misc_timeout, else the virtual server's delay_loop.
            hc.timeout_s = timeout.unwrap_or(vs.delay_loop.unwrap_or(DEFAULT_DELAY_LOOP));
        }
    }
    crate::convert::check_from_pb(&hc).map_err(|e| Error::at(&c.loc, e))?;
    Ok(hc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::keepalived::parse::MemFiles;
    use crate::ctl::keepalived::{load_from, preview};
    use crate::ctl::rules;
    use pb::op::Op;
    use std::path::{Path, PathBuf};

    fn plan_of(text: &str) -> Result<Plan, Error> {
        let files = MemFiles([(PathBuf::from("k.conf"), text.to_string())].into());
        load_from(Path::new("k.conf"), &files)
    }

    /// The plan as `-R` lines (`--dry-run`'s output after the notes).
    fn rules_of(text: &str) -> String {
        let (services, laddrs) = preview(&plan_of(text).unwrap());
        rules::save(&services, &laddrs)
    }

    fn dests(p: &Plan) -> Vec<pb::Dest> {
        p.ops
            .iter()
            .filter_map(|(_, op)| match op {
                Op::AddDest(r) => r.dest.clone(),
                _ => None,
            })
            .collect()
    }

    fn checks(text: &str) -> Vec<pb::HealthCheck> {
        dests(&plan_of(text).unwrap())
            .into_iter()
            .map(|d| d.check.expect("a check"))
            .collect()
    }

    #[test]
    fn keepalived_defaults_where_the_file_says_nothing() {
        let text = "\
virtual_server 10.0.0.1 80 {
    real_server 10.1.0.1 {
    }
    real_server 10.1.0.2 8080 {
        TCP_CHECK {
        }
    }
}
";
        let p = plan_of(text).unwrap();
        // UDP, wlc, NAT, real server ports from the virtual server's, weight 1.
        assert_eq!(
            rules_of(text),
            "\
-A -u 10.0.0.1:80 -s wlc
-a -u 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1
-a -u 10.0.0.1:80 -r 10.1.0.2:8080 -m -w 1 --check tcp --check-interval 60 --check-timeout 5 --check-retries 2 --on-failure remove
"
        );
        assert_eq!(
            p.notes,
            [
                "k.conf:1: virtual_server 10.0.0.1 80: no protocol, UDP (as keepalived)",
                "k.conf:1: virtual_server 10.0.0.1 80: no lb_algo, wlc (as keepalived)",
                "k.conf:1: virtual_server 10.0.0.1 80: no lb_kind, NAT (as keepalived)",
            ]
        );
        // Each change knows its line.
        let lines: Vec<usize> = p.ops.iter().map(|(l, _)| l.line).collect();
        assert_eq!(lines, [1, 2, 4]);
    }

    #[test]
    fn services_persistence_schedulers_and_modes() {
        let text = "\
virtual_server 10.0.0.1 443 {
    protocol tcp
    lb_algo sh
    sh-port
    sh-fallback
    lb_kind DR
    persistence_timeout
    real_server 10.1.0.1 8443 {
        weight 3
        uthreshold 100
        lthreshold 10
    }
    real_server 10.1.0.2 443 {
        lvs_method TUN type ipip
    }
}
virtual_server 10.0.0.2 53 {
    protocol UDP
    lvs_sched rr
    ops
    persistence_granularity 255.255.255.0
    weight 5
    real_server 10.1.0.3 53 {
    }
}
virtual_server 10.0.0.3 0 {
    protocol TCP
    lb_algo wrr
    lb_kind FNAT
    establish_timeout 90
    real_server 10.1.0.4 80 {
    }
}
virtual_server 2001:db8::1 80 {
    protocol TCP
    lb_algo rr
    persistence_timeout 60
    persistence_granularity 64
    real_server 2001:db8::11 80 {
    }
}
";
        assert_eq!(
            rules_of(text),
            "\
-A -t 10.0.0.1:443 -s sh -p 360 -b sh-fallback,sh-port
-a -t 10.0.0.1:443 -r 10.1.0.1:443 -g -w 3 -x 100 -y 10
-a -t 10.0.0.1:443 -r 10.1.0.2:443 -i -w 1 --tun-type ipip
-A -t 10.0.0.3:0 -s wrr -p 360 --conn-timeout 90
-a -t 10.0.0.3:0 -r 10.1.0.4:80 -b -w 1
-A -u 10.0.0.2:53 -s rr -p 360 -M 255.255.255.0 -o
-a -u 10.0.0.2:53 -r 10.1.0.3:53 -m -w 5
-A -t [2001:db8::1]:80 -s rr -p 60 -M 64
-a -t [2001:db8::1]:80 -r [2001:db8::11]:80 -m -w 1
"
        );
        let p = plan_of(text).unwrap();
        assert!(p.notes.contains(
            &"k.conf:8: real_server 10.1.0.1 8443: DR forwards to the virtual port, 443 used (as keepalived)"
                .to_string()
        ));
        assert!(p.notes.contains(
            &"k.conf:26: virtual_server 10.0.0.3 0: port 0 needs persistence, 360 s (as keepalived)"
                .to_string()
        ));
    }

    #[test]
    fn retry_counts_become_failures_in_a_row_and_timing_is_inherited() {
        let text = "\
virtual_server 10.0.0.1 80 {
    protocol TCP
    delay_loop 10
    retry 4
    connect_timeout 7
    inhibit_on_failure
    real_server 10.1.0.1 80 {
        TCP_CHECK {
        }
    }
    real_server 10.1.0.2 80 {
        retry 0
        delay_before_retry 2
        inhibit_on_failure no
        TCP_CHECK {
            connect_port 81
            connect_timeout 3
        }
    }
    real_server 10.1.0.3 80 {
        HTTP_GET {
            url {
                path /health
                status_code 204
                digest 9B3A0C85A887A256D6939DA88AABD8CD
            }
            nb_get_retry 2
        }
    }
    real_server 10.1.0.4 80 {
        MISC_CHECK {
            misc_path \"/usr/local/bin/check 10.1.0.4\"
        }
    }
    real_server 10.1.0.5 80 {
        MISC_CHECK {
            misc_path /bin/true
            misc_timeout 2
            retry 1
        }
    }
}
";
        let c = checks(text);
        // retry R: down on the R+1-th failure in a row.
        let r: Vec<u32> = c.iter().map(|c| c.retries).collect();
        assert_eq!(r, [5, 1, 3, 5, 2]);
        let t: Vec<(u32, u32, u32)> = c
            .iter()
            .map(|c| (c.interval_s, c.timeout_s, c.delay_before_retry_s))
            .collect();
        // MISC: misc_timeout, else the virtual server's delay_loop; HTTP's
        // delay_before_retry defaults to 3, the others' to 1.
        assert_eq!(
            t,
            [(10, 7, 1), (10, 3, 2), (10, 7, 3), (10, 10, 1), (10, 2, 1)]
        );
        let f: Vec<&str> = c.iter().map(|c| c.on_failure.as_str()).collect();
        assert_eq!(f, ["inhibit", "remove", "inhibit", "inhibit", "inhibit"]);
        assert_eq!((c[1].r#type.as_str(), c[1].port), ("tcp", 81));
        assert_eq!(
            (
                c[2].r#type.as_str(),
                c[2].path.as_str(),
                c[2].status,
                c[2].digest.as_str()
            ),
            ("http", "/health", 204, "9b3a0c85a887a256d6939da88aabd8cd")
        );
        assert_eq!(c[3].command, "/usr/local/bin/check 10.1.0.4");
        assert!(c.iter().all(|c| c.rise == 1));
    }

    #[test]
    fn http_without_status_code_and_udp_payloads() {
        let text = "\
virtual_server 10.0.0.1 53 {
    protocol UDP
    real_server 10.1.0.1 53 {
        UDP_CHECK {
            payload 68 656c6c 6f
            require_reply
        }
    }
    real_server 10.1.0.2 53 {
        HTTP_GET {
            url {
                path /
            }
        }
    }
}
";
        let p = plan_of(text).unwrap();
        let c: Vec<pb::HealthCheck> = dests(&p).into_iter().filter_map(|d| d.check).collect();
        assert_eq!(
            (c[0].r#type.as_str(), c[0].payload.as_str()),
            ("udp", "hello")
        );
        assert_eq!(c[1].status, 200);
        assert!(p.notes.contains(
            &"k.conf:10: HTTP_GET url without status_code: keepalived takes any 2xx, dpvsd's check takes 200"
                .to_string()
        ));
    }

    #[test]
    fn groups_expand_to_services_and_local_addresses() {
        // Groups may come after the virtual servers that use them.
        let text = "\
virtual_server group web {
    protocol TCP
    lb_algo rr
    lb_kind FNAT
    laddr_group_name lips
    real_server 10.1.0.1 8080 {
    }
}
virtual_server_group web {
    10.0.0.1 80
    10.0.0.8/31 443
    10.0.0.20-21 80
}
local_address_group lips {
    192.168.0.200 dpdk1
    192.168.0.201-202 dpdk1
}
";
        let p = plan_of(text).unwrap();
        let svc: Vec<String> = p
            .ops
            .iter()
            .filter_map(|(_, op)| match op {
                Op::AddService(r) => r.service.as_ref().and_then(|s| s.key.clone()),
                _ => None,
            })
            .map(|k| format!("{}:{}", k.vip, k.vport))
            .collect();
        assert_eq!(
            svc,
            [
                "10.0.0.1:80",
                "10.0.0.8:443",
                "10.0.0.9:443",
                "10.0.0.20:80",
                "10.0.0.21:80"
            ]
        );
        let saved = rules_of(text);
        assert!(
            saved.starts_with(
                "\
-A -t 10.0.0.1:80 -s rr
-a -t 10.0.0.1:80 -r 10.1.0.1:8080 -b -w 1
-P -t 10.0.0.1:80 -z 192.168.0.200 -F dpdk1
-P -t 10.0.0.1:80 -z 192.168.0.201 -F dpdk1
-P -t 10.0.0.1:80 -z 192.168.0.202 -F dpdk1
"
            ),
            "{saved}"
        );
        // A local address names the line of its group entry.
        let l: Vec<usize> = p
            .ops
            .iter()
            .filter(|(_, op)| matches!(op, Op::AddLocalAddr(_)))
            .map(|(l, _)| l.line)
            .take(3)
            .collect();
        assert_eq!(l, [15, 16, 16]);
    }

    #[test]
    fn what_keepalived_itself_leaves_out_is_noted() {
        let text = "\
global_defs {
    router_id LVS_1
}
vrrp_script chk {
    script \"/bin/true\"
}
vrrp_instance VI_1 {
    state MASTER
    virtual_ipaddress {
        10.0.0.1
    }
}
static_routes {
    10.9.0.0/16 via 10.0.0.254
}
virtual_server 10.0.0.9 80 {
    protocol TCP
}
virtual_server 10.0.0.1 80 {
    protocol TCP
    lb_algo rr
    lb_kind NAT
    real_server 10.1.0.1 80 {
    }
    real_server 10.1.0.1 80 {
        weight 7
    }
}
";
        let p = plan_of(text).unwrap();
        assert_eq!(
            p.notes,
            [
                "k.conf:1: global_defs: keepalived's own process settings, not imported",
                "k.conf:4: vrrp_script chk: handled by keepalived's VRRP, not imported",
                "k.conf:7: vrrp_instance VI_1: handled by keepalived's VRRP, not imported",
                "k.conf:13: static_routes: handled by keepalived's VRRP, not imported",
                "k.conf:16: virtual_server 10.0.0.9 80 has no real servers: not configured (as keepalived)",
                "k.conf:25: real_server 10.1.0.1 80 repeats the one at line 23: the second is left out (as keepalived)",
            ]
        );
        assert_eq!(
            rules_of(text),
            "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1\n"
        );
    }

    /// `snippet` put into a virtual server (`{VS}`), a real server (`{RS}`)
    /// or a TCP checker (`{CK}`); the error must name its line, 7.
    #[test]
    fn what_dpvsd_cannot_honour_is_an_error_naming_its_line() {
        let vs = |s: &str| {
            format!(
                "# a file\nvirtual_server 10.0.0.1 80 {{\n protocol TCP\n real_server 10.1.0.1 80 {{\n }}\n\n {s}\n}}\n"
            )
        };
        let rs = |s: &str| {
            format!("# a file\nvirtual_server 10.0.0.1 80 {{\n protocol TCP\n real_server 10.1.0.1 80 {{\n\n\n  {s}\n }}\n}}\n")
        };
        let ck = |s: &str| {
            format!("virtual_server 10.0.0.1 80 {{\n protocol TCP\n real_server 10.1.0.1 80 {{\n  TCP_CHECK {{\n\n\n   {s}\n  }}\n }}\n}}\n")
        };
        let top = |s: &str| format!("\n\n\n\n\n\n{s}\n");
        let cases: Vec<(String, &str)> = vec![
            (
                vs("sorry_server 10.1.0.9 80"),
                "sorry_server: sorry servers are not supported yet",
            ),
            (
                vs("sorry_server_inhibit"),
                "sorry_server_inhibit: sorry servers",
            ),
            (
                vs("quorum 2"),
                "quorum: quorum handling is not supported yet",
            ),
            (vs("hysteresis 1"), "hysteresis: quorum handling"),
            (vs("quorum_up /bin/up"), "quorum_up: quorum handling"),
            (
                vs("alpha"),
                "alpha (real servers start down until checked) is not supported",
            ),
            (
                vs("omega"),
                "omega: omega (notify scripts at shutdown) is not supported",
            ),
            (vs("ha_suspend"), "ha_suspend: ha_suspend"),
            (vs("smtp_alert"), "smtp_alert is not supported"),
            (
                vs("virtualhost www.example.com"),
                "virtualhost: virtualhost is not supported",
            ),
            (vs("persistence_engine sip"), "persistence engines"),
            (vs("warmup 5"), "warmup is not supported"),
            (
                vs("delay_loop 1.5"),
                "delay_loop '1.5': not a whole number of seconds",
            ),
            (
                vs("lb_kind TUN type gue port 6080"),
                "tunnel type gue is not supported",
            ),
            (
                vs("lb_kind nat"),
                "unknown lb_kind 'nat' (NAT, DR, TUN, FNAT)",
            ),
            (vs("lb_algo fastest"), "unknown scheduler \"fastest\""),
            (vs("protocol SCTP"), "protocol SCTP is not supported"),
            (vs("syn_proxy"), "syn_proxy: syn_proxy is not supported"),
            (
                vs("laddr_group_name none"),
                "laddr_group_name: local addresses are for FNAT",
            ),
            (
                vs("frobnicate 1"),
                "unknown keyword 'frobnicate' in virtual_server",
            ),
            (
                rs("notify_up /bin/up"),
                "notify_up: notify scripts are not supported",
            ),
            (rs("notify_down /bin/down"), "notify_down: notify scripts"),
            (
                rs("SSL_GET {\n}"),
                "SSL_GET (HTTPS) checks are not supported yet",
            ),
            (rs("SMTP_CHECK {\n}"), "SMTP_CHECK checks are not supported"),
            (rs("DNS_CHECK {\n}"), "DNS_CHECK checks are not supported"),
            (rs("BFD_CHECK {\n}"), "BFD_CHECK checks are not supported"),
            (rs("PING_CHECK {\n}"), "PING_CHECK checks are not supported"),
            (rs("FILE_CHECK {\n}"), "FILE_CHECK checks are not supported"),
            (
                rs("weight 70000"),
                "weight '70000': not a number in 0..65535",
            ),
            (
                rs("frobnicate"),
                "unknown keyword 'frobnicate' in real_server",
            ),
            (ck("connect_ip 10.1.0.2"), "connect_ip is not supported"),
            (ck("bindto 10.0.0.1"), "bindto is not supported"),
            (
                ck("fwmark 5"),
                "fwmark (marking check packets) is not supported",
            ),
            (ck("log_all_failures"), "log_all_failures is not supported"),
            (ck("retry 5000"), "retry '5000': not a number in 0..999"),
            (ck("path /"), "unknown keyword 'path' in TCP_CHECK"),
            (
                top("virtual_server fwmark 1 {\n}"),
                "fwmark virtual servers are not supported",
            ),
            (
                top("virtual_server_group g {\n}\nvirtual_server group g {\n}"),
                "virtual_server_group g has no entries",
            ),
            (
                top("virtual_server group nope {\n}"),
                "no virtual_server_group nope",
            ),
            (top("bogus_keyword 1"), "unknown keyword 'bogus_keyword'"),
        ];
        for (text, want) in &cases {
            let e = plan_of(text).unwrap_err();
            assert_eq!(e.loc.as_ref().map(|l| l.line), Some(7), "{want}: {e}");
            assert!(e.to_string().starts_with("k.conf:7: "), "{e}");
            assert!(e.message.contains(want), "want {want:?} in {e}");
        }
    }

    #[test]
    fn checker_contents_that_are_refused() {
        let rs = |s: &str| {
            format!("virtual_server 10.0.0.1 80 {{\n protocol TCP\n real_server 10.1.0.1 80 {{\n{s}\n }}\n}}\n")
        };
        let cases: &[(&str, usize, &str)] = &[
            (
                "TCP_CHECK {\n}\nHTTP_GET {\n url {\n path /\n }\n}",
                6,
                "a second checker on real_server 10.1.0.1",
            ),
            ("HTTP_GET {\n}", 4, "HTTP_GET needs a url"),
            (
                "HTTP_GET {\n url {\n path /a\n }\n url {\n path /b\n }\n}",
                8,
                "a second url",
            ),
            (
                "HTTP_GET {\n url {\n path /\n status_code 200-299\n }\n}",
                7,
                "status_code 200-299: dpvsd's HTTP check expects one status code",
            ),
            (
                "HTTP_GET {\n url {\n path /\n status_code 200 204\n }\n}",
                7,
                "expects one status code",
            ),
            (
                "HTTP_GET {\n url {\n path /\n regex ok\n }\n}",
                7,
                "regex: matching the body is not supported",
            ),
            (
                "HTTP_GET {\n url {\n digest 00\n }\n}",
                6,
                "digest '00': not an MD5",
            ),
            (
                "HTTP_GET {\n url {\n status_code 200\n }\n}",
                5,
                "url needs a path",
            ),
            (
                "HTTP_GET {\n http_protocol 1.1\n url {\n path /\n }\n}",
                5,
                "http_protocol 1.1 is not supported",
            ),
            (
                "HTTP_GET {\n url {\n path relative\n }\n}",
                4,
                "check path \"relative\": must start with /",
            ),
            ("UDP_CHECK {\n}", 4, "UDP_CHECK without require_reply"),
            (
                "UDP_CHECK {\n require_reply 0a\n}",
                5,
                "require_reply with data is not supported",
            ),
            (
                "UDP_CHECK {\n require_reply\n payload ff fe\n}",
                6,
                "payload: the bytes are not text",
            ),
            (
                "UDP_CHECK {\n require_reply\n payload zz\n}",
                6,
                "payload 'zz': not hex digits",
            ),
            ("MISC_CHECK {\n}", 4, "MISC_CHECK needs misc_path"),
            (
                "MISC_CHECK {\n misc_path /bin/x\n misc_dynamic\n}",
                6,
                "misc_dynamic",
            ),
            (
                "MISC_CHECK {\n misc_path /bin/x\n user nobody\n}",
                6,
                "user is not supported",
            ),
            (
                "MISC_CHECK {\n misc_path /bin/x\n connect_port 80\n}",
                6,
                "unknown keyword 'connect_port' in MISC_CHECK",
            ),
        ];
        for (snippet, line, want) in cases {
            let e = plan_of(&rs(snippet)).unwrap_err();
            assert_eq!(e.loc.as_ref().map(|l| l.line), Some(*line), "{want}: {e}");
            assert!(e.message.contains(want), "want {want:?} in {e}");
        }
    }

    #[test]
    fn an_error_in_an_included_file_names_that_file() {
        let files = MemFiles(
            [
                (PathBuf::from("k.conf"), "include vs.conf\n".to_string()),
                (
                    PathBuf::from("vs.conf"),
                    "virtual_server 10.0.0.1 80 {\n  sorry_server 10.1.0.9 80\n}\n".to_string(),
                ),
            ]
            .into(),
        );
        let e = load_from(Path::new("k.conf"), &files).unwrap_err();
        assert_eq!(
            e.to_string(),
            "vs.conf:2: sorry_server: sorry servers are not supported yet"
        );
    }

    #[test]
    fn address_ranges() {
        let loc = Loc {
            file: "k".into(),
            line: 1,
        };
        let r =
            |v: &str| range(&loc, v).map(|a| a.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(r("10.0.0.1").unwrap(), ["10.0.0.1"]);
        assert_eq!(r("10.0.0.254-255").unwrap(), ["10.0.0.254", "10.0.0.255"]);
        assert_eq!(
            r("10.0.0.255-10.0.1.0").unwrap(),
            ["10.0.0.255", "10.0.1.0"]
        );
        assert_eq!(r("10.0.0.4/30").unwrap().len(), 4);
        assert_eq!(
            r("2001:db8::8-a").unwrap(),
            ["2001:db8::8", "2001:db8::9", "2001:db8::a"]
        );
        assert_eq!(r("2001:db8::/126").unwrap().len(), 4);
        for bad in [
            "10.0.0.5-3",
            "10.0.0.1/24",
            "10.0.0.0/33",
            "10.0.0.1-300",
            "10.0.0.0/8",
            "x",
            "::/0",
        ] {
            assert!(r(bad).is_err(), "{bad}");
        }
    }
}
