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
//! - a virtual server without real servers is not configured at all;
//! - `sorry_server`: with keepalived's default quorum (1) it replaces the
//!   real servers while none is usable, as dpvsd's sorry server does; dpvsd
//!   forwards it like the first real server, so a sorry server keepalived
//!   would forward otherwise is refused.
//!
//! How checkers and their timing map, and keepalived's retry counts: `check`.
//!
//! Anything keepalived would do that dpvsd cannot is an error naming its
//! line, never dropped; keywords of other keepalived processes (VRRP, BFD,
//! global settings) are skipped with a note.

use std::collections::HashMap;
use std::net::IpAddr;

use proto::v1 as pb;

use super::acl::{group_list, vs_list, AclGroups};
use super::check::{checker, health_check, Checker, Timing};
use super::parse::{Error, Loc, Stmt};
use super::value::{
    err, flag, ip, need_block, no_args, no_block, number, one, port, range, MAX_TARGETS,
};
use crate::addr::{max_prefix, parse_netmask};
use crate::scheduler::{check_sched_flags, check_scheduler};
use crate::store::AclList;

/// keepalived's defaults (see the module doc).
const DEFAULT_PERSISTENCE: u32 = 360;
const DEFAULT_SCHEDULER: &str = "wlc";

/// What an import does: the changes in order, each with where it was
/// written, and what it notes on the way.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub ops: Vec<(Loc, pb::op::Op)>,
    /// `FILE:LINE: text`, in file order.
    pub notes: Vec<String>,
}

/// Maps the statements of a keepalived.conf.
pub fn plan(stmts: &[Stmt]) -> Result<Plan, Error> {
    let mut m = Mapper::default();
    // Groups may be defined after the virtual servers that use them.
    for s in stmts {
        match s.keyword() {
            "virtual_server_group" => m.vs_group(s)?,
            "local_address_group" => m.laddr_group(s)?,
            k => {
                if let Some(list) = group_list(k) {
                    m.acl_groups.read(list, s)?;
                }
            }
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
    /// DPVS's deny_address_group and allow_address_group.
    acl_groups: AclGroups,
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

/// A keyword keepalived (or DPVS's keepalived) has that dpvsd cannot honour
/// yet, with why; `None`: not one of them.
pub(super) fn refused(keyword: &str) -> Option<&'static str> {
    // Shown as `KEYWORD: reason`.
    Some(match keyword {
        "sorry_server_inhibit" => {
            "not supported: dpvsd's sorry server leaves the table while not in use \
             (as without sorry_server_inhibit)"
        }
        "omega" => "notify scripts at shutdown are not supported",
        "notify_up" | "notify_down" => {
            "notify scripts are not supported: dpvsd logs every state change"
        }
        "ha_suspend" => "pausing checks while the VIP is absent is not supported",
        "virtualhost" => {
            "not supported: dpvsd's HTTP check sends the real server's address as Host"
        }
        "snmp_name" => "not supported: dpvsd has no SNMP agent (see its metrics)",
        "persistence_engine" => "persistence engines (SIP) are not supported",
        "ip_family" => "only for fwmark virtual servers, which are not supported",
        // DPVS's keepalived.
        "vip_bind_dev" => "not supported: dpvsd adds a VIP on the port whose network contains it",
        "bps" | "limit_proportion" => "bandwidth limits are not supported",
        "hash_target" | "src-range" | "dst-range" | "oif" | "iif" | "nat_mask" => {
            "DPVS SNAT services are not supported"
        }
        "tunnel_group" => "tunnels are not supported",
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
        "global_defs"
        | "net_namespace"
        | "net_namespace_ipvs"
        | "namespace_with_ipsets"
        | "instance"
        | "use_pid_dir"
        | "linkbeat_use_polling"
        | "child_wait_time" => "keepalived's own process settings, not imported",
        "track_file" => "used by keepalived's VRRP (and FILE_CHECK), not imported",
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
            "virtual_server_group"
            | "local_address_group"
            | "deny_address_group"
            | "allow_address_group" => Ok(()),
            // SSL_GET's client context: keepalived makes one itself when the
            // block is empty, as dpvsd's https check (no client certificate).
            "SSL" => match s.block.as_deref().unwrap_or(&[]).first() {
                None => {
                    self.note(&s.loc, "SSL: an automatic context, as dpvsd's https check");
                    Ok(())
                }
                Some(k) => err(
                    &k.loc,
                    format!(
                        "SSL {}: not supported: dpvsd's https check presents no client \
                         certificate and verifies no CA",
                        k.keyword()
                    ),
                ),
            },
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
        let label = format!("virtual_server {}", s.args().join(" "));
        let vs = read_virtual_server(need_block(s)?)?;
        if vs.servers.is_empty() {
            let text = format!("{label} has no real servers: not configured (as keepalived)");
            self.note(&s.loc, text);
            return Ok(());
        }
        let service = self.service(&s.loc, &label, &vs, &targets)?;
        let default_mode = vs.mode.unwrap_or_else(|| {
            if vs.servers.iter().any(|r| r.mode.is_none()) {
                self.note(&s.loc, format!("{label}: no lb_kind, NAT (as keepalived)"));
            }
            pb::ForwardMode::Nat
        });
        if let Some((loc, ..)) = &vs.sorry {
            // keepalived forwards the sorry server by sorry_server_lvs_method,
            // else the virtual server's method; dpvsd like the first real
            // server.
            let want = vs.sorry_mode.unwrap_or(default_mode);
            let first = vs.servers[0].mode.unwrap_or(default_mode);
            if want != first {
                return err(
                    loc,
                    format!(
                        "sorry_server: dpvsd forwards it like the first real server ({}), \
                         keepalived would use {}",
                        mode_name(first),
                        mode_name(want)
                    ),
                );
            }
        } else if vs.sorry_mode.is_some() {
            return err(&s.loc, "sorry_server_lvs_method without a sorry_server");
        }
        let laddrs = match &vs.laddr_group {
            None => Vec::new(),
            Some((loc, name)) => {
                let fullnat = vs
                    .servers
                    .iter()
                    .any(|r| r.mode.unwrap_or(default_mode) == pb::ForwardMode::Fullnat);
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
        for (vip, vport) in &targets {
            let key = pb::ServiceKey {
                protocol: service.key.as_ref().map_or(0, |k| k.protocol),
                vip: vip.to_string(),
                vport: u32::from(*vport),
            };
            let sorry_server = match &vs.sorry {
                None => String::new(),
                Some((loc, addr, p)) => {
                    let m = vs.servers[0].mode.unwrap_or(default_mode);
                    let mut p = *p;
                    if p == 0 {
                        p = *vport;
                    } else if p != *vport
                        && !matches!(m, pb::ForwardMode::Nat | pb::ForwardMode::Fullnat)
                    {
                        let text = format!(
                            "sorry_server {addr} {p}: {} forwards to the virtual port, \
                             {vport} used (as keepalived)",
                            mode_name(m)
                        );
                        self.note(loc, text);
                        p = *vport;
                    }
                    match addr {
                        IpAddr::V4(a) => format!("{a}:{p}"),
                        IpAddr::V6(a) => format!("[{a}]:{p}"),
                    }
                }
            };
            self.ops.push((
                s.loc.clone(),
                pb::op::Op::AddService(pb::AddServiceRequest {
                    service: Some(pb::Service {
                        key: Some(key.clone()),
                        sorry_server,
                        ..service.clone()
                    }),
                }),
            ));
            self.real_servers(&key, *vport, &vs, default_mode)?;
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
            for (list, (loc, name)) in &vs.acl_groups {
                for (at, entry) in self.acl_groups.entries(*list, loc, name, vip)? {
                    let entry = pb::AclEntry {
                        service: Some(key.clone()),
                        list: crate::convert::acl_list_to_pb(*list) as i32,
                        addr: entry,
                    };
                    self.ops.push((
                        at,
                        pb::op::Op::AddAclEntry(pb::AclEntryRequest { entry: Some(entry) }),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The service a virtual server makes, with keepalived's defaults (noted
    /// where keepalived warns); its key carries only the protocol.
    fn service(
        &mut self,
        loc: &Loc,
        label: &str,
        vs: &VirtualServer,
        targets: &[(IpAddr, u16)],
    ) -> Result<pb::Service, Error> {
        let proto = vs.proto.unwrap_or_else(|| {
            self.note(loc, format!("{label}: no protocol, UDP (as keepalived)"));
            pb::Protocol::Udp
        });
        let scheduler = vs.scheduler.clone().unwrap_or_else(|| {
            let text = format!("{label}: no lb_algo, {DEFAULT_SCHEDULER} (as keepalived)");
            self.note(loc, text);
            DEFAULT_SCHEDULER.to_string()
        });
        let flags = check_sched_flags(&scheduler, &vs.flags).map_err(|e| Error::at(loc, e))?;
        let ops = match &vs.ops {
            Some(l) if proto != pb::Protocol::Udp => {
                self.note(
                    l,
                    "ops: one-packet scheduling needs UDP, left off (as keepalived)",
                );
                false
            }
            Some(_) => true,
            None => false,
        };
        let mut persistence = vs.persistence;
        if persistence.is_none() && targets.iter().any(|t| t.1 == 0) {
            let text = format!(
                "{label}: port 0 needs persistence, {DEFAULT_PERSISTENCE} s (as keepalived)"
            );
            self.note(loc, text);
            persistence = Some(DEFAULT_PERSISTENCE);
        }
        let netmask_len = match &vs.granularity {
            None => None,
            Some((l, v)) => Some(netmask(l, v, &targets[0].0)?),
        };
        Ok(pb::Service {
            key: Some(pb::ServiceKey {
                protocol: proto as i32,
                ..Default::default()
            }),
            scheduler,
            sched_flags: flags,
            persistence: persistence.map(|t| pb::Persistence {
                timeout_s: t,
                netmask_len: netmask_len.map(u32::from),
            }),
            conn_timeout_s: vs.conn_timeout,
            ops,
            quorum: vs.quorum.unwrap_or(0),
            hysteresis: vs.hysteresis.unwrap_or(0),
            quorum_up: vs.quorum_up.clone(),
            quorum_down: vs.quorum_down.clone(),
            synproxy: vs.synproxy.then_some(true),
            ..Default::default()
        })
    }

    /// The real servers of the service `key` (virtual port `vport`).
    fn real_servers(
        &mut self,
        key: &pb::ServiceKey,
        vport: u16,
        vs: &VirtualServer,
        default_mode: pb::ForwardMode,
    ) -> Result<(), Error> {
        let mut seen: Vec<(IpAddr, u16, &Loc)> = Vec::new();
        for r in &vs.servers {
            let m = r.mode.unwrap_or(default_mode);
            let mut rport = r.port.unwrap_or(vport);
            if matches!(m, pb::ForwardMode::Dr | pb::ForwardMode::Tun) && rport != vport {
                let text = format!(
                    "real_server {} {rport}: {} forwards to the virtual port, \
                     {vport} used (as keepalived)",
                    r.addr,
                    mode_name(m)
                );
                self.note(&r.loc, text);
                rport = vport;
            }
            if let Some((_, _, first)) = seen.iter().find(|(a, p, _)| *a == r.addr && *p == rport) {
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
                Some(c) => Some(health_check(
                    c,
                    r.timing,
                    vs.timing,
                    r.inhibit.or(vs.inhibit).unwrap_or(false),
                    rport,
                )?),
            };
            let dest = pb::Dest {
                addr: r.addr.to_string(),
                port: u32::from(rport),
                weight: r.weight.or(vs.weight).unwrap_or(1),
                mode: m as i32,
                u_threshold: r.u_threshold,
                l_threshold: r.l_threshold,
                check,
                ..Default::default()
            };
            self.ops.push((
                r.loc.clone(),
                pb::op::Op::AddDest(pb::DestRequest {
                    service: Some(key.clone()),
                    dest: Some(dest),
                }),
            ));
        }
        Ok(())
    }
}

/// A virtual_server block as written, before keepalived's defaults.
#[derive(Default)]
struct VirtualServer {
    proto: Option<pb::Protocol>,
    scheduler: Option<String>,
    flags: Vec<String>,
    mode: Option<pb::ForwardMode>,
    persistence: Option<u32>,
    granularity: Option<(Loc, String)>,
    /// Where `ops` was written.
    ops: Option<Loc>,
    conn_timeout: Option<u32>,
    laddr_group: Option<(Loc, String)>,
    /// DPVS's `daddr_group_name`, `waddr_group_name`: the list and the group.
    acl_groups: Vec<(AclList, (Loc, String))>,
    weight: Option<u32>,
    inhibit: Option<bool>,
    timing: Timing,
    servers: Vec<RealServer>,
    /// `sorry_server IP [PORT]` and where it was written.
    sorry: Option<(Loc, IpAddr, u16)>,
    sorry_mode: Option<pb::ForwardMode>,
    quorum: Option<u32>,
    hysteresis: Option<u32>,
    /// `quorum_up`, `quorum_down`.
    quorum_up: String,
    quorum_down: String,
    /// DPVS's `syn_proxy`.
    synproxy: bool,
}

fn read_virtual_server(body: &[Stmt]) -> Result<VirtualServer, Error> {
    let mut vs = VirtualServer::default();
    for k in body {
        if vs.timing.keyword(k)? {
            continue;
        }
        match k.keyword() {
            "protocol" => {
                let v = one(k, "TCP or UDP")?;
                vs.proto = Some(match v.to_ascii_uppercase().as_str() {
                    "TCP" => pb::Protocol::Tcp,
                    "UDP" => pb::Protocol::Udp,
                    "SCTP" => return err(&k.loc, "protocol SCTP is not supported (TCP, UDP)"),
                    _ => return err(&k.loc, format!("unknown protocol '{v}' (TCP, UDP)")),
                });
            }
            "lb_algo" | "lvs_sched" => {
                let v = one(k, "a scheduler")?;
                check_scheduler(v).map_err(|e| Error::at(&k.loc, e))?;
                vs.scheduler = Some(v.to_string());
            }
            "lb_kind" | "lvs_method" => vs.mode = Some(forward_mode(k)?),
            "flag-1" | "flag-2" | "flag-3" | "sh-port" | "sh-fallback" | "mh-port"
            | "mh-fallback" => {
                no_args(k)?;
                vs.flags.push(k.keyword().to_string());
            }
            // An IPVS-internal flag the kernel sets on every service.
            "hashed" => no_args(k)?,
            "ops" => {
                no_args(k)?;
                vs.ops = Some(k.loc.clone());
            }
            "syn_proxy" => {
                no_args(k)?;
                vs.synproxy = true;
            }
            "persistence_timeout" => {
                no_block(k)?;
                vs.persistence = Some(match k.args() {
                    [] => DEFAULT_PERSISTENCE,
                    _ => number(k, 1, u32::MAX)?,
                });
            }
            "persistence_granularity" => {
                vs.granularity = Some((k.loc.clone(), one(k, "a netmask")?.to_string()));
                vs.persistence.get_or_insert(DEFAULT_PERSISTENCE);
            }
            "weight" => vs.weight = Some(number(k, 1, 65535)?),
            "inhibit_on_failure" => vs.inhibit = Some(flag(k)?),
            "smtp_alert" => {
                if flag(k)? {
                    return err(
                        &k.loc,
                        "smtp_alert is not supported: dpvsd logs every state change",
                    );
                }
            }
            // DPVS: the idle timeout of established connections.
            "establish_timeout" => vs.conn_timeout = Some(number(k, 1, u32::MAX)?),
            "laddr_group_name" => {
                let n = one(k, "a local_address_group name")?;
                vs.laddr_group = Some((k.loc.clone(), n.to_string()));
            }
            kw @ ("daddr_group_name" | "waddr_group_name") => {
                let list = vs_list(kw).unwrap_or(AclList::Blacklist);
                if vs.acl_groups.iter().any(|(l, _)| *l == list) {
                    return err(&k.loc, format!("{kw} given twice"));
                }
                let n = one(k, "an address group name")?;
                vs.acl_groups.push((list, (k.loc.clone(), n.to_string())));
            }
            "real_server" => vs.servers.push(real_server(k)?),
            "sorry_server" => {
                no_block(k)?;
                let (a, p) = match k.args() {
                    [a] => (ip(&k.loc, a)?, 0),
                    [a, p] => (ip(&k.loc, a)?, port(&k.loc, p)?),
                    _ => return err(&k.loc, "sorry_server takes IP [PORT]"),
                };
                vs.sorry = Some((k.loc.clone(), a, p));
            }
            "sorry_server_lvs_method" => vs.sorry_mode = Some(forward_mode(k)?),
            "quorum" => vs.quorum = Some(number(k, 1, u32::MAX)?),
            "hysteresis" => vs.hysteresis = Some(number(k, 0, u32::MAX)?),
            kw @ ("quorum_up" | "quorum_down") => {
                // keepalived: the script, quoted when it has arguments; words
                // after a quoted script are the user and group to run it as.
                let script = match k.args() {
                    [c] => c.clone(),
                    _ => {
                        return err(
                            &k.loc,
                            format!(
                                "{kw} takes one command (quote it when it has arguments); \
                                 running it as another user is not supported"
                            ),
                        )
                    }
                };
                if kw == "quorum_up" {
                    vs.quorum_up = script;
                } else {
                    vs.quorum_down = script;
                }
            }
            "fwmark" => return err(&k.loc, fwmark_refusal()),
            kw => {
                if let Some(why) = refused(kw) {
                    return err(&k.loc, format!("{kw}: {why}"));
                }
                return err(&k.loc, format!("unknown keyword '{kw}' in virtual_server"));
            }
        }
    }
    Ok(vs)
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
    if rest.is_empty() {
        return Ok(mode);
    }
    if mode != pb::ForwardMode::Tun {
        return err(
            &s.loc,
            format!("{} {m}: unexpected '{}'", s.keyword(), rest.join(" ")),
        );
    }
    // keepalived: `TUN [type ipip|gue port N|gre] [nocsum|csum|remcsum]`.
    // IPIP without checksums is its default, and dpvsd's only tunnel.
    let mut i = 0;
    while i < rest.len() {
        match rest[i].as_str() {
            "type" => match rest.get(i + 1).map(String::as_str) {
                Some("ipip") => i += 2,
                Some(t) => {
                    return err(
                        &s.loc,
                        format!("tunnel type {t} is not supported: only ipip is implemented"),
                    )
                }
                None => return err(&s.loc, "type needs a tunnel type (ipip)"),
            },
            "nocsum" => i += 1,
            w @ ("csum" | "remcsum") => {
                return err(&s.loc, format!("{w}: ipip tunnels have no checksum option"))
            }
            w => return err(&s.loc, format!("{} TUN: unexpected '{w}'", s.keyword())),
        }
    }
    Ok(mode)
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
            "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "UDP_CHECK" | "MISC_CHECK" => {
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
        lvs_method TUN type ipip nocsum
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
                vs("sorry_server_inhibit"),
                "sorry_server_inhibit: not supported",
            ),
            (
                vs("quorum_up /bin/up someuser"),
                "quorum_up takes one command (quote it when it has arguments); running it \
                 as another user is not supported",
            ),
            (
                vs("alpha"),
                "alpha (real servers start down until checked) is not supported",
            ),
            (
                vs("omega"),
                "omega: notify scripts at shutdown are not supported",
            ),
            (
                vs("ha_suspend"),
                "ha_suspend: pausing checks while the VIP is absent",
            ),
            (vs("smtp_alert"), "smtp_alert is not supported"),
            (
                vs("virtualhost www.example.com"),
                "virtualhost: not supported: dpvsd's HTTP check sends",
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
                vs("lb_kind TUN type ipip csum"),
                "csum: ipip tunnels have no checksum option",
            ),
            (
                vs("lb_kind DR type ipip"),
                "lb_kind DR: unexpected 'type ipip'",
            ),
            (
                vs("lb_kind nat"),
                "unknown lb_kind 'nat' (NAT, DR, TUN, FNAT)",
            ),
            (vs("lb_algo fastest"), "unknown scheduler \"fastest\""),
            (vs("protocol SCTP"), "protocol SCTP is not supported"),
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
            (rs("SSL_GET {\n}"), "SSL_GET needs a url"),
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
    fn sorry_servers_and_keepalived_default_quorum() {
        let text = "\
SSL {
}
virtual_server 10.0.0.1 80 {
    protocol TCP
    lb_algo rr
    lb_kind DR
    quorum 1
    hysteresis 0
    sorry_server 10.1.0.9 8080
    real_server 10.1.0.1 80 {
    }
}
virtual_server 2001:db8::1 443 {
    protocol TCP
    lb_algo rr
    lb_kind NAT
    sorry_server 2001:db8::9
    sorry_server_lvs_method NAT
    quorum_up \"/usr/local/bin/page 'v6 is back'\"
    quorum_down /usr/local/bin/page-down
    real_server 2001:db8::11 8443 {
        SSL_GET {
            url {
                path /ready
                status_code 200
            }
        }
    }
}
";
        assert_eq!(
            rules_of(text),
            "\
-A -t 10.0.0.1:80 -s rr --sorry-server 10.1.0.9:80
-a -t 10.0.0.1:80 -r 10.1.0.1:80 -g -w 1
-A -t [2001:db8::1]:443 -s rr --sorry-server [2001:db8::9]:443 --quorum-up \"/usr/local/bin/page 'v6 is back'\" --quorum-down /usr/local/bin/page-down
-a -t [2001:db8::1]:443 -r [2001:db8::11]:8443 -m -w 1 --check https --check-interval 60 --check-timeout 5 --check-retries 2 --check-delay 3 --check-path /ready --check-status 200 --on-failure remove
"
        );
        let p = plan_of(text).unwrap();
        assert_eq!(
            p.notes,
            [
                "k.conf:1: SSL: an automatic context, as dpvsd's https check",
                "k.conf:9: sorry_server 10.1.0.9 8080: DR forwards to the virtual port, 80 used (as keepalived)",
            ]
        );
        // The sorry server forwarded otherwise than dpvsd would: refused.
        let e = plan_of(
            "virtual_server 10.0.0.1 80 {\n protocol TCP\n lb_kind NAT\n sorry_server 10.1.0.9 80\n \
             sorry_server_lvs_method DR\n real_server 10.1.0.1 80 {\n }\n}\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "k.conf:4: sorry_server: dpvsd forwards it like the first real server (NAT), \
             keepalived would use DR"
        );
        // A client certificate for SSL_GET: refused where it is written.
        let e = plan_of("SSL {\n  certificate /etc/k/cert.pem\n}\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("k.conf:2: SSL certificate: not supported"),
            "{e}"
        );
    }

    /// DPVS's deny_address_group / allow_address_group, named by
    /// daddr_group_name / waddr_group_name: one -U / -O per entry and
    /// service of the virtual server.
    #[test]
    fn address_groups_become_access_lists() {
        let text = "\
virtual_server group web {
    protocol TCP
    lb_algo rr
    lb_kind NAT
    daddr_group_name bad
    waddr_group_name good
    real_server 10.1.0.1 80 {
    }
}
virtual_server_group web {
    10.0.0.1 80
    10.0.0.2 80
}
deny_address_group bad {
    192.0.2.7
    198.51.100.1-2
    198.51.100.0/24
    192.0.2.7
}
allow_address_group good {
    10.0.0.0/8
}
";
        assert_eq!(
            rules_of(text),
            "\
-A -t 10.0.0.1:80 -s rr
-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1
-U -t 10.0.0.1:80 -k 192.0.2.7
-U -t 10.0.0.1:80 -k 198.51.100.0/24
-U -t 10.0.0.1:80 -k 198.51.100.1
-U -t 10.0.0.1:80 -k 198.51.100.2
-O -t 10.0.0.1:80 -2 10.0.0.0/8
-A -t 10.0.0.2:80 -s rr
-a -t 10.0.0.2:80 -r 10.1.0.1:80 -m -w 1
-U -t 10.0.0.2:80 -k 192.0.2.7
-U -t 10.0.0.2:80 -k 198.51.100.0/24
-U -t 10.0.0.2:80 -k 198.51.100.1
-U -t 10.0.0.2:80 -k 198.51.100.2
-O -t 10.0.0.2:80 -2 10.0.0.0/8
"
        );
        // Each entry's change knows the line it came from.
        let p = plan_of(text).unwrap();
        let lines: Vec<usize> = p
            .ops
            .iter()
            .filter(|(_, op)| matches!(op, Op::AddAclEntry(_)))
            .map(|(l, _)| l.line)
            .take(5)
            .collect();
        assert_eq!(
            lines,
            [15, 16, 16, 17, 21],
            "the repeated 192.0.2.7 is one entry"
        );

        let vs = |body: &str, groups: &str| {
            format!(
                "virtual_server 10.0.0.1 80 {{\n protocol TCP\n {body}\n real_server 10.1.0.1 80 {{\n }}\n}}\n{groups}"
            )
        };
        for (text, want) in [
            (vs("daddr_group_name none", ""), "k.conf:3: no deny_address_group none"),
            (vs("waddr_group_name g", "deny_address_group g {\n 10.0.0.9\n}\n"), "k.conf:3: no allow_address_group g"),
            (
                vs("daddr_group_name g", "deny_address_group g {\n ipset:black\n}\n"),
                "k.conf:8: ipset:black: ipset entries are not supported (list addresses or prefixes)",
            ),
            (
                vs("daddr_group_name g", "deny_address_group g {\n 10.0.0.1/8\n}\n"),
                "k.conf:8: invalid prefix \"10.0.0.1/8\": host bits set (the network is 10.0.0.0/8)",
            ),
            (
                vs("daddr_group_name g", "deny_address_group g {\n 2001:db8::/32\n}\n"),
                "k.conf:8: deny_address_group g: 2001:db8::/32 is not of the family of the virtual server's 10.0.0.1",
            ),
            (
                vs("daddr_group_name g", "deny_address_group g {\n 10.0.0.1\n}\ndeny_address_group g {\n 10.0.0.2\n}\n"),
                "k.conf:10: deny_address_group g defined twice",
            ),
            (
                vs("daddr_group_name a\n daddr_group_name b", ""),
                "k.conf:4: daddr_group_name given twice",
            ),
        ] {
            assert_eq!(plan_of(&text).unwrap_err().to_string(), want, "{text}");
        }
    }

    /// Every keyword docs/keepalived.md lists as refused in virtual_server
    /// and real_server is an error at its line, whatever its value.
    #[test]
    fn every_refused_keyword_names_its_line() {
        let vs_level = [
            "sorry_server_inhibit",
            "omega",
            "ha_suspend",
            "virtualhost",
            "snmp_name",
            "persistence_engine",
            "ip_family",
            "vip_bind_dev",
            "bps",
            "limit_proportion",
            "hash_target",
            "src-range",
            "dst-range",
            "oif",
            "iif",
            "nat_mask",
            "alpha",
            "smtp_alert",
            "fwmark",
        ];
        let rs_level = [
            "notify_up",
            "notify_down",
            "virtualhost",
            "snmp_name",
            "alpha",
            "smtp_alert",
        ];
        for (level, kws) in [("vs", &vs_level[..]), ("rs", &rs_level[..])] {
            for kw in kws {
                let text = if level == "vs" {
                    format!("virtual_server 10.0.0.1 80 {{\n protocol TCP\n {kw} yes\n real_server 10.1.0.1 80 {{\n }}\n}}\n")
                } else {
                    format!("virtual_server 10.0.0.1 80 {{\n protocol TCP\n real_server 10.1.0.1 80 {{\n  {kw} yes\n }}\n}}\n")
                };
                let line = if level == "vs" { 3 } else { 4 };
                let e = plan_of(&text).unwrap_err();
                assert_eq!(
                    e.loc.as_ref().map(|l| l.line),
                    Some(line),
                    "{level} {kw}: {e}"
                );
                assert!(
                    e.message.starts_with(*kw) && !e.message.contains("unknown keyword"),
                    "{level} {kw}: {e}"
                );
            }
        }
    }

    #[test]
    fn an_error_in_an_included_file_names_that_file() {
        let files = MemFiles(
            [
                (PathBuf::from("k.conf"), "include vs.conf\n".to_string()),
                (
                    PathBuf::from("vs.conf"),
                    "virtual_server 10.0.0.1 80 {\n  omega\n}\n".to_string(),
                ),
            ]
            .into(),
        );
        let e = load_from(Path::new("k.conf"), &files).unwrap_err();
        assert_eq!(
            e.to_string(),
            "vs.conf:2: omega: notify scripts at shutdown are not supported"
        );
    }
}
