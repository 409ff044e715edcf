//! `dpvsctl` command lines: ipvsadm's syntax (`-A -t VIP:PORT -s rr`, `-Ln`, ...)
//! and dpip-style subcommands (`addr add`, `route show`, `stats`).
//!
//! Hand-written because ipvsadm's options change meaning with the command letter
//! (`-b` is sched-flags after `-A/-E` and fullnat after `-a/-e`, as in DPVS) and
//! `-p` takes an optional value. Only syntax is checked here (addresses, numbers,
//! option combinations); what the daemon must decide (unknown scheduler, missing
//! service) comes back from it. Errors are one line, exit status 2.

use std::net::IpAddr;

use dataplane::{ForwardMode, Proto, ProxyProtocol, ServiceKey};

use crate::addr::{parse_acl_entry, parse_addr_port, parse_ip, parse_netmask, parse_prefix};
use crate::scheduler::split_sched_flags;
use crate::store::AclList;

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `--server` (else `$DPVS_SERVER`, else the default socket).
    pub server: Option<String>,
    /// `--tls-cert`, `--tls-key`, `--tls-ca` (else `$DPVS_TLS_CERT`, ...): for
    /// an `https://` server.
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    pub tls_ca: Option<std::path::PathBuf>,
    /// `--json` (anywhere on the line): listings as JSON.
    pub json: bool,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    AddService(ServiceOpts),
    EditService(ServiceOpts),
    DeleteService(ServiceKey),
    Clear,
    /// `-Z`: zero the counters of one service, or of all.
    Zero(Option<ServiceKey>),
    /// `-S [-n]`: the table as `-A`/`-a` (and DPVS `-P`) command lines.
    Save(Option<ServiceKey>),
    /// `-R`: apply command lines read from stdin, all or nothing.
    Restore,
    /// `apply -f FILE [--dry-run]`: a whole dpvs.toml's objects become the
    /// running configuration.
    Apply {
        file: std::path::PathBuf,
        dry_run: bool,
    },
    /// `import keepalived FILE [--dry-run] [--replace]`: a keepalived.conf's
    /// virtual servers added as one change (docs/keepalived.md); with
    /// `--replace` they become the whole service table.
    ImportKeepalived {
        file: std::path::PathBuf,
        dry_run: bool,
        replace: bool,
    },
    AddDest(DestOpts),
    EditDest(DestOpts),
    DeleteDest {
        service: ServiceKey,
        addr: IpAddr,
        /// `None`: the virtual port.
        port: Option<u16>,
    },
    List(ListOpts),
    SetTimeouts {
        tcp: u32,
        tcpfin: u32,
        udp: u32,
    },
    AddrAdd {
        addr: IpAddr,
        prefix_len: u8,
        dev: String,
    },
    AddrDel {
        addr: IpAddr,
        prefix_len: u8,
        dev: String,
    },
    AddrShow {
        dev: Option<String>,
    },
    RouteAdd {
        prefix: IpAddr,
        prefix_len: u8,
        via: Option<IpAddr>,
        dev: String,
    },
    RouteDel {
        prefix: IpAddr,
        prefix_len: u8,
    },
    RouteShow,
    Stats,
    Help,
    Version,
    /// DPVS `-P -t|-u VIP:PORT -z LIP -F PORT`.
    AddLaddr {
        service: ServiceKey,
        addr: IpAddr,
        port: String,
    },
    /// DPVS `-Q -t|-u VIP:PORT -z LIP`.
    DelLaddr {
        service: ServiceKey,
        addr: IpAddr,
    },
    /// DPVS `-G [-t|-u VIP:PORT]`.
    GetLaddr {
        service: Option<ServiceKey>,
    },
    /// DPVS `-U -t|-u VIP:PORT -k ADDR|CIDR` (blacklist), `-O ... -2 ...`
    /// (whitelist).
    AddAcl {
        service: ServiceKey,
        list: AclList,
        addr: IpAddr,
        prefix_len: u8,
    },
    /// DPVS `-V ... -k ...`, `-Y ... -2 ...`.
    DelAcl {
        service: ServiceKey,
        list: AclList,
        addr: IpAddr,
        prefix_len: u8,
    },
    /// DPVS `-B [-t|-u VIP:PORT]`, `-W [...]`.
    GetAcl {
        list: AclList,
        service: Option<ServiceKey>,
    },
    /// `--start-daemon master|backup [--mcast-interface IF] [--syncid N]
    /// [--mcast-group ADDR] [--mcast-port PORT]` (docs/ha.md).
    StartDaemon(DaemonOpts),
    /// `--stop-daemon master|backup`.
    StopDaemon {
        state: String,
    },
}

/// `--start-daemon` options, as ipvsadm takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonOpts {
    /// `master` or `backup`.
    pub state: String,
    /// ipvsadm's default: `eth0`.
    pub mcast_interface: String,
    pub syncid: u8,
    pub mcast_group: Option<std::net::Ipv4Addr>,
    pub mcast_port: Option<u16>,
}

/// `-A/-E` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOpts {
    pub key: ServiceKey,
    /// `None`: the default (wlc).
    pub scheduler: Option<String>,
    /// `-p [timeout]`: `Some(0)` means `-p` without a value (300 s).
    pub persistent: Option<u32>,
    /// `-M` as a prefix length.
    pub netmask: Option<u8>,
    pub sched_flags: Vec<String>,
    pub conn_timeout: Option<u32>,
    /// DPVS `--proxy-protocol v1|v2|none`: `None` not given (-A: off, -E:
    /// unchanged), `Some(None)` = none.
    pub proxy_protocol: Option<Option<ProxyProtocol>>,
    /// `-o`/`--ops`: one-packet scheduling (UDP).
    pub ops: bool,
    /// `--sorry-server IP:PORT|none` (keepalived's sorry_server).
    pub sorry_server: Option<String>,
    /// `--passive-check`: the passive health check (NAT/FULLNAT TCP).
    pub passive_check: bool,
    /// `--quorum N --hysteresis N` (keepalived's); `None`: 1 and 0.
    pub quorum: Option<u32>,
    pub hysteresis: Option<u32>,
    /// `--quorum-up CMD --quorum-down CMD` (keepalived's quorum_up/down).
    pub quorum_up: Option<String>,
    pub quorum_down: Option<String>,
    /// DPVS `-j enable|disable`: the SYN proxy (TCP); `None` not given (-A:
    /// off, -E: unchanged).
    pub synproxy: Option<bool>,
    /// `--conn-limit N` (this project's own): the most connections the
    /// service holds; 0 = no limit; `None` not given (-A: none, -E:
    /// unchanged).
    pub conn_limit: Option<u32>,
}

/// `-a/-e` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestOpts {
    pub service: ServiceKey,
    pub addr: IpAddr,
    /// `None`: the virtual port.
    pub port: Option<u16>,
    /// `None`: DR (`-g`, ipvsadm's default).
    pub mode: Option<ForwardMode>,
    /// `None`: 1.
    pub weight: Option<u32>,
    pub u_threshold: Option<u32>,
    pub l_threshold: Option<u32>,
    /// `--check TYPE` and its `--check-*` options: the dest's health check.
    pub check: Option<proto::v1::HealthCheck>,
}

/// `-L` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOpts {
    pub service: Option<ServiceKey>,
    pub numeric: bool,
    pub connections: bool,
    pub stats: bool,
    pub exact: bool,
    pub timeout: bool,
    pub thresholds: bool,
    /// `--persistent-conn`: a PersistConn column (persistence templates per dest).
    pub persistent_conn: bool,
    /// `--worker` (with `-c`): a column naming the worker that owns each connection.
    pub worker: bool,
    /// `--rate`: CPS, InPPS, OutPPS, InBPS, OutBPS from the estimator.
    pub rate: bool,
    /// `--nosort`: dpvsd's order (protocol, VIP, port) instead of ipvsadm's.
    pub nosort: bool,
    /// `--daemon`: the connection sync daemons.
    pub daemon: bool,
}

/// A usage error: one line for stderr; dpvsctl exits 2 like ipvsadm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError(pub String);

impl std::fmt::Display for ArgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `--proxy-protocol` value: `v1`, `v2`, or `none` (DPVS also says `disable`).
fn parse_proxy_protocol(v: &str) -> Result<Option<ProxyProtocol>, ArgError> {
    match v.to_ascii_lowercase().as_str() {
        "v1" => Ok(Some(ProxyProtocol::V1)),
        "v2" => Ok(Some(ProxyProtocol::V2)),
        "none" | "disable" => Ok(None),
        _ => err(format!(
            "invalid proxy protocol \"{v}\": expected v1, v2 or none"
        )),
    }
}

/// `--conn-limit` value: a number of connections, 0 (no limit) to u32's
/// maximum.
fn parse_conn_limit(v: &str) -> Result<u32, ArgError> {
    v.parse::<u32>().or_else(|_| {
        err(format!(
            "invalid --conn-limit \"{v}\": a number of connections 0..{} (0 = no limit)",
            u32::MAX
        ))
    })
}

fn err<T>(m: impl Into<String>) -> Result<T, ArgError> {
    Err(ArgError(m.into()))
}

/// Every ipvsadm option dpvsctl knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Opt {
    // commands
    AddService,
    EditService,
    DeleteService,
    Clear,
    Zero,
    Save,
    Restore,
    AddServer,
    EditServer,
    DeleteServer,
    List,
    Set,
    Help,
    Version,
    // options
    Tcp,
    Udp,
    Scheduler,
    Persistent,
    Netmask,
    /// `-b`: sched-flags (-A/-E) or fullnat (-a/-e).
    B,
    SchedFlags,
    FullNat,
    RealServer,
    Gatewaying,
    Ipip,
    Masquerading,
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    Timeout,
    Stats,
    Exact,
    Thresholds,
    PersistentConn,
    Worker,
    ConnTimeout,
    ProxyProto,
    AddLaddr,
    DelLaddr,
    GetLaddr,
    Laddr,
    Ifname,
    TunType,
    Rate,
    Sort,
    NoSort,
    Fwmark,
    Ops,
    Check,
    CheckPort,
    CheckPath,
    CheckStatus,
    CheckDigest,
    CheckPayload,
    CheckCommand,
    CheckInterval,
    CheckTimeout,
    CheckRetries,
    CheckRise,
    CheckDelay,
    OnFailure,
    SorryServer,
    PassiveCheck,
    Quorum,
    QuorumUp,
    QuorumDown,
    Hysteresis,
    AddBlklst,
    DelBlklst,
    GetBlklst,
    AddWhtlst,
    DelWhtlst,
    GetWhtlst,
    Blklst,
    Whtlst,
    Synproxy,
    StartDaemon,
    StopDaemon,
    McastInterface,
    SyncId,
    McastGroup,
    McastPort,
    Daemon,
    ConnLimit,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Arg {
    No,
    Required,
    Optional,
}

/// (short, long, option, argument)
const OPTS: &[(Option<char>, &str, Opt, Arg)] = &[
    (Some('A'), "add-service", Opt::AddService, Arg::No),
    (Some('E'), "edit-service", Opt::EditService, Arg::No),
    (Some('D'), "delete-service", Opt::DeleteService, Arg::No),
    (Some('C'), "clear", Opt::Clear, Arg::No),
    (Some('Z'), "zero", Opt::Zero, Arg::No),
    (Some('S'), "save", Opt::Save, Arg::No),
    (Some('R'), "restore", Opt::Restore, Arg::No),
    (Some('a'), "add-server", Opt::AddServer, Arg::No),
    (Some('e'), "edit-server", Opt::EditServer, Arg::No),
    (Some('d'), "delete-server", Opt::DeleteServer, Arg::No),
    (Some('L'), "list", Opt::List, Arg::No),
    (Some('l'), "list", Opt::List, Arg::No),
    (None, "set", Opt::Set, Arg::No),
    (Some('h'), "help", Opt::Help, Arg::No),
    (Some('v'), "version", Opt::Version, Arg::No),
    (Some('t'), "tcp-service", Opt::Tcp, Arg::Required),
    (Some('u'), "udp-service", Opt::Udp, Arg::Required),
    (Some('s'), "scheduler", Opt::Scheduler, Arg::Required),
    (Some('p'), "persistent", Opt::Persistent, Arg::Optional),
    (Some('M'), "netmask", Opt::Netmask, Arg::Required),
    (Some('b'), "", Opt::B, Arg::Required),
    (None, "sched-flags", Opt::SchedFlags, Arg::Required),
    (None, "fullnat", Opt::FullNat, Arg::No),
    (Some('r'), "real-server", Opt::RealServer, Arg::Required),
    (Some('g'), "gatewaying", Opt::Gatewaying, Arg::No),
    (Some('i'), "ipip", Opt::Ipip, Arg::No),
    (Some('m'), "masquerading", Opt::Masquerading, Arg::No),
    (Some('w'), "weight", Opt::Weight, Arg::Required),
    (Some('x'), "u-threshold", Opt::UThreshold, Arg::Required),
    (Some('y'), "l-threshold", Opt::LThreshold, Arg::Required),
    (Some('n'), "numeric", Opt::Numeric, Arg::No),
    (Some('c'), "connection", Opt::Connection, Arg::No),
    (None, "timeout", Opt::Timeout, Arg::No),
    (None, "stats", Opt::Stats, Arg::No),
    (None, "rate", Opt::Rate, Arg::No),
    (Some('X'), "exact", Opt::Exact, Arg::No),
    (None, "sort", Opt::Sort, Arg::No),
    (Some('o'), "ops", Opt::Ops, Arg::No),
    (None, "nosort", Opt::NoSort, Arg::No),
    (Some('f'), "fwmark-service", Opt::Fwmark, Arg::Required),
    (None, "thresholds", Opt::Thresholds, Arg::No),
    (None, "persistent-conn", Opt::PersistentConn, Arg::No),
    (None, "worker", Opt::Worker, Arg::No),
    (None, "conn-timeout", Opt::ConnTimeout, Arg::Required),
    (None, "proxy-protocol", Opt::ProxyProto, Arg::Required),
    (Some('P'), "add-laddr", Opt::AddLaddr, Arg::No),
    (Some('Q'), "del-laddr", Opt::DelLaddr, Arg::No),
    (Some('G'), "get-laddr", Opt::GetLaddr, Arg::No),
    (Some('z'), "laddr", Opt::Laddr, Arg::Required),
    (Some('F'), "ifname", Opt::Ifname, Arg::Required),
    (None, "tun-type", Opt::TunType, Arg::Required),
    (None, "check", Opt::Check, Arg::Required),
    (None, "check-port", Opt::CheckPort, Arg::Required),
    (None, "check-path", Opt::CheckPath, Arg::Required),
    (None, "check-status", Opt::CheckStatus, Arg::Required),
    (None, "check-digest", Opt::CheckDigest, Arg::Required),
    (None, "check-payload", Opt::CheckPayload, Arg::Required),
    (None, "check-command", Opt::CheckCommand, Arg::Required),
    (None, "check-interval", Opt::CheckInterval, Arg::Required),
    (None, "check-timeout", Opt::CheckTimeout, Arg::Required),
    (None, "check-retries", Opt::CheckRetries, Arg::Required),
    (None, "check-rise", Opt::CheckRise, Arg::Required),
    (None, "check-delay", Opt::CheckDelay, Arg::Required),
    (None, "on-failure", Opt::OnFailure, Arg::Required),
    (None, "sorry-server", Opt::SorryServer, Arg::Required),
    (None, "passive-check", Opt::PassiveCheck, Arg::No),
    (None, "quorum", Opt::Quorum, Arg::Required),
    (None, "hysteresis", Opt::Hysteresis, Arg::Required),
    (None, "quorum-up", Opt::QuorumUp, Arg::Required),
    (None, "quorum-down", Opt::QuorumDown, Arg::Required),
    (Some('U'), "add-blklst", Opt::AddBlklst, Arg::No),
    (Some('V'), "del-blklst", Opt::DelBlklst, Arg::No),
    (Some('B'), "get-blklst", Opt::GetBlklst, Arg::No),
    (Some('O'), "add-whtlst", Opt::AddWhtlst, Arg::No),
    (Some('Y'), "del-whtlst", Opt::DelWhtlst, Arg::No),
    (Some('W'), "get-whtlst", Opt::GetWhtlst, Arg::No),
    (Some('k'), "blklst", Opt::Blklst, Arg::Required),
    (Some('2'), "whtlst", Opt::Whtlst, Arg::Required),
    (Some('j'), "synproxy", Opt::Synproxy, Arg::Required),
    (None, "start-daemon", Opt::StartDaemon, Arg::Required),
    (None, "stop-daemon", Opt::StopDaemon, Arg::Required),
    (None, "mcast-interface", Opt::McastInterface, Arg::Required),
    (None, "syncid", Opt::SyncId, Arg::Required),
    (None, "mcast-group", Opt::McastGroup, Arg::Required),
    (None, "mcast-port", Opt::McastPort, Arg::Required),
    (None, "daemon", Opt::Daemon, Arg::No),
    (None, "conn-limit", Opt::ConnLimit, Arg::Required),
];

fn opt_name(o: Opt) -> String {
    match OPTS.iter().find(|x| x.2 == o) {
        Some((_, long, _, _)) if !long.is_empty() => format!("--{long}"),
        Some((Some(c), _, _, _)) => format!("-{c}"),
        _ => format!("{o:?}"),
    }
}

const COMMANDS: &[Opt] = &[
    Opt::AddService,
    Opt::EditService,
    Opt::DeleteService,
    Opt::Clear,
    Opt::Zero,
    Opt::Save,
    Opt::Restore,
    Opt::AddServer,
    Opt::EditServer,
    Opt::DeleteServer,
    Opt::List,
    Opt::Set,
    Opt::Help,
    Opt::Version,
    Opt::AddLaddr,
    Opt::DelLaddr,
    Opt::GetLaddr,
    Opt::AddBlklst,
    Opt::DelBlklst,
    Opt::GetBlklst,
    Opt::AddWhtlst,
    Opt::DelWhtlst,
    Opt::GetWhtlst,
    Opt::StartDaemon,
    Opt::StopDaemon,
];

/// The options that only mean something with `--check`.
const CHECK_OPTS: &[Opt] = &[
    Opt::CheckPort,
    Opt::CheckPath,
    Opt::CheckStatus,
    Opt::CheckDigest,
    Opt::CheckPayload,
    Opt::CheckCommand,
    Opt::CheckInterval,
    Opt::CheckTimeout,
    Opt::CheckRetries,
    Opt::CheckRise,
    Opt::CheckDelay,
    Opt::OnFailure,
];

/// Options each command accepts (besides the command itself).
fn allowed(cmd: Opt) -> &'static [Opt] {
    use Opt::*;
    match cmd {
        AddService | EditService => &[
            Tcp,
            Udp,
            Scheduler,
            Persistent,
            Netmask,
            B,
            SchedFlags,
            ConnTimeout,
            ProxyProto,
            Ops,
            SorryServer,
            PassiveCheck,
            Quorum,
            Hysteresis,
            QuorumUp,
            QuorumDown,
            Synproxy,
            ConnLimit,
        ],
        DeleteService | Zero => &[Tcp, Udp],
        Save => &[Tcp, Udp, Numeric],
        AddServer | EditServer => &[
            Tcp,
            Udp,
            RealServer,
            Gatewaying,
            Ipip,
            Masquerading,
            B,
            FullNat,
            Weight,
            UThreshold,
            LThreshold,
            TunType,
            Check,
            CheckPort,
            CheckPath,
            CheckStatus,
            CheckDigest,
            CheckPayload,
            CheckCommand,
            CheckInterval,
            CheckTimeout,
            CheckRetries,
            CheckRise,
            CheckDelay,
            OnFailure,
        ],
        DeleteServer => &[Tcp, Udp, RealServer],
        AddLaddr => &[Tcp, Udp, Laddr, Ifname],
        DelLaddr => &[Tcp, Udp, Laddr, Ifname],
        GetLaddr | GetBlklst | GetWhtlst => &[Tcp, Udp, Numeric],
        AddBlklst | DelBlklst => &[Tcp, Udp, Blklst],
        AddWhtlst | DelWhtlst => &[Tcp, Udp, Whtlst],
        List => &[
            Tcp,
            Udp,
            Numeric,
            Connection,
            Timeout,
            Stats,
            Exact,
            Thresholds,
            PersistentConn,
            Worker,
            Rate,
            Sort,
            NoSort,
            Daemon,
        ],
        StartDaemon => &[McastInterface, SyncId, McastGroup, McastPort],
        _ => &[],
    }
}

/// Parses `argv` without the program name.
pub fn parse(argv: &[String]) -> Result<Invocation, ArgError> {
    // The options that say how to reach dpvsd, allowed anywhere on the line.
    const GLOBAL: [&str; 4] = ["--server", "--tls-cert", "--tls-key", "--tls-ca"];
    let mut global: [Option<String>; 4] = Default::default();
    let mut json = false;
    let mut rest = Vec::new();
    let mut i = 0;
    while i < argv.len() {
        let a = &argv[i];
        if let Some(n) = GLOBAL.iter().position(|g| g == a) {
            let v = argv
                .get(i + 1)
                .ok_or_else(|| ArgError(format!("option '{a}' needs a value")))?;
            global[n] = Some(v.clone());
            i += 2;
            continue;
        }
        let inline = GLOBAL.iter().enumerate().find_map(|(n, g)| {
            a.strip_prefix(g)
                .and_then(|v| v.strip_prefix('='))
                .map(|v| (n, v))
        });
        if let Some((n, v)) = inline {
            global[n] = Some(v.to_string());
        } else if a == "--json" {
            json = true;
        } else {
            rest.push(a.clone());
        }
        i += 1;
    }
    for (n, v) in global.iter().enumerate() {
        if v.as_deref() == Some("") {
            return err(format!("option '{}' needs a value", GLOBAL[n]));
        }
    }
    let [server, tls_cert, tls_key, tls_ca] = global;
    let path = |v: Option<String>| v.map(std::path::PathBuf::from);
    let command = match rest.first().map(String::as_str) {
        // ipvsadm without arguments lists the table.
        None => Command::List(ListOpts::default()),
        Some("addr") => parse_addr(&rest[1..])?,
        Some("route") => parse_route(&rest[1..])?,
        Some("stats") => {
            if rest.len() > 1 {
                return err(format!("unexpected argument '{}' after 'stats'", rest[1]));
            }
            Command::Stats
        }
        Some("help") => Command::Help,
        Some("apply") => parse_apply(&rest[1..])?,
        Some("import") => parse_import(&rest[1..])?,
        Some(_) => parse_ipvsadm(&rest)?,
    };
    let lists = matches!(
        command,
        Command::List(_)
            | Command::GetLaddr { .. }
            | Command::GetAcl { .. }
            | Command::AddrShow { .. }
            | Command::RouteShow
            | Command::Stats
    );
    if json && !lists {
        return err("--json goes with listings (-L, -G, -B, -W, stats, addr show, route show)");
    }
    Ok(Invocation {
        server,
        tls_cert: path(tls_cert),
        tls_key: path(tls_key),
        tls_ca: path(tls_ca),
        json,
        command,
    })
}

fn lookup_long(name: &str) -> Option<(Opt, Arg)> {
    OPTS.iter()
        .find(|x| !x.1.is_empty() && x.1 == name)
        .map(|x| (x.2, x.3))
}

fn lookup_short(c: char, dest_context: bool) -> Option<(Opt, Arg)> {
    if c == 'b' && dest_context {
        return Some((Opt::FullNat, Arg::No));
    }
    OPTS.iter().find(|x| x.0 == Some(c)).map(|x| (x.2, x.3))
}

/// Whether this command line adds or edits a real server: there `-b` is fullnat.
fn is_dest_context(args: &[String]) -> bool {
    args.iter().any(|a| {
        a == "--add-server"
            || a == "--edit-server"
            || (a.starts_with('-')
                && !a.starts_with("--")
                && matches!(a.chars().nth(1), Some('a') | Some('e')))
    })
}

fn parse_ipvsadm(args: &[String]) -> Result<Command, ArgError> {
    let dest_context = is_dest_context(args);
    let mut opts: Vec<(Opt, Option<String>)> = Vec::new();
    let mut positionals: Vec<String> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let (o, kind) =
                lookup_long(name).ok_or_else(|| ArgError(format!("unknown option '--{name}'")))?;
            let v = match kind {
                Arg::No => {
                    if inline.is_some() {
                        return err(format!("option '--{name}' takes no value"));
                    }
                    None
                }
                Arg::Required => match inline {
                    Some(v) => Some(v),
                    None => {
                        let v = args
                            .get(i)
                            .ok_or_else(|| ArgError(format!("option '--{name}' needs a value")))?;
                        i += 1;
                        Some(v.clone())
                    }
                },
                Arg::Optional => match inline {
                    Some(v) => Some(v),
                    None => match args.get(i) {
                        Some(v) if !v.starts_with('-') => {
                            i += 1;
                            Some(v.clone())
                        }
                        _ => None,
                    },
                },
            };
            opts.push((o, v));
        } else if a.len() > 1 && a.starts_with('-') {
            let chars: Vec<char> = a.chars().skip(1).collect();
            let mut k = 0;
            while k < chars.len() {
                let c = chars[k];
                k += 1;
                let (o, kind) = lookup_short(c, dest_context)
                    .ok_or_else(|| ArgError(format!("unknown option '-{c}'")))?;
                let tail: String = chars[k..].iter().collect();
                let v = match kind {
                    Arg::No => None,
                    Arg::Required => {
                        k = chars.len();
                        if !tail.is_empty() {
                            Some(tail)
                        } else {
                            let v = args
                                .get(i)
                                .ok_or_else(|| ArgError(format!("option '-{c}' needs a value")))?;
                            i += 1;
                            Some(v.clone())
                        }
                    }
                    Arg::Optional => {
                        k = chars.len();
                        if !tail.is_empty() {
                            Some(tail)
                        } else {
                            match args.get(i) {
                                Some(v) if !v.starts_with('-') => {
                                    i += 1;
                                    Some(v.clone())
                                }
                                _ => None,
                            }
                        }
                    }
                };
                opts.push((o, v));
            }
        } else {
            positionals.push(a.clone());
        }
    }

    // Kernel IPVS matches fwmark services on a mark netfilter rules set;
    // nothing marks packets before dpvsd sees them.
    if opts.iter().any(|(o, _)| *o == Opt::Fwmark) {
        return err(
            "fwmark services (-f) are not supported: no netfilter rule marks packets before \
             dpvsd; use -t/-u VIP:PORT services",
        );
    }

    // Exactly one command.
    let cmds: Vec<Opt> = opts
        .iter()
        .map(|(o, _)| *o)
        .filter(|o| COMMANDS.contains(o))
        .collect();
    let cmd = match cmds.as_slice() {
        [] => return err("no command specified (try 'dpvsctl --help')"),
        [c] => *c,
        [a, b, ..] if a == b => {
            return err(format!("multiple '{}' options specified", opt_name(*a)))
        }
        _ => return err("multiple commands specified"),
    };
    if cmd == Opt::Help {
        return Ok(Command::Help);
    }
    if cmd == Opt::Version {
        return Ok(Command::Version);
    }

    // Options legal with the command, each at most once.
    let mut seen: Vec<Opt> = Vec::new();
    for (o, _) in &opts {
        if *o == cmd {
            continue;
        }
        let canon = if *o == Opt::B { Opt::SchedFlags } else { *o };
        if !allowed(cmd).contains(o) {
            let shown = if *o == Opt::B {
                "-b".to_string()
            } else {
                opt_name(*o)
            };
            return err(format!(
                "illegal '{shown}' option with the '{}' command",
                opt_name(cmd)
            ));
        }
        if seen.contains(&canon) {
            return err(format!("multiple '{}' options specified", opt_name(canon)));
        }
        seen.push(canon);
    }
    if cmd != Opt::Set && !positionals.is_empty() {
        return err(format!("unexpected argument '{}'", positionals[0]));
    }
    let get = |o: Opt| opts.iter().find(|(x, _)| *x == o).map(|(_, v)| v.clone());
    let has = |o: Opt| opts.iter().any(|(x, _)| *x == o);

    let service = |required: bool| -> Result<Option<ServiceKey>, ArgError> {
        let t = get(Opt::Tcp).flatten();
        let u = get(Opt::Udp).flatten();
        let (proto, v) = match (t, u) {
            (Some(_), Some(_)) => {
                return err("the option '--udp-service' conflicts with the '--tcp-service' option")
            }
            (Some(v), None) => (Proto::Tcp, v),
            (None, Some(v)) => (Proto::Udp, v),
            (None, None) if required => {
                return err(format!(
                    "the '{}' command needs a service: -t|-u VIP:PORT",
                    opt_name(cmd)
                ))
            }
            (None, None) => return Ok(None),
        };
        let (vip, port) = parse_addr_port(&v, true).map_err(ArgError)?;
        Ok(Some(ServiceKey {
            proto,
            vip,
            vport: port.unwrap_or(0),
        }))
    };

    let number = |o: Opt, what: &str, max: u32| -> Result<Option<u32>, ArgError> {
        match get(o).flatten() {
            None => Ok(None),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if n <= max => Ok(Some(n)),
                _ => err(format!("illegal {what} \"{v}\" (0..{max})")),
            },
        }
    };

    match cmd {
        Opt::AddService | Opt::EditService => {
            let key = service(true)?.ok_or_else(|| ArgError("missing service".into()))?;
            let persistent = if has(Opt::Persistent) {
                match get(Opt::Persistent).flatten() {
                    None => Some(0),
                    Some(v) => match v.parse::<u32>() {
                        Ok(n) if n > 0 => Some(n),
                        _ => return err(format!("illegal timeout \"{v}\" for persistent service")),
                    },
                }
            } else {
                None
            };
            let netmask = match get(Opt::Netmask).flatten() {
                Some(m) => Some(parse_netmask(&m).map_err(ArgError)?),
                None => None,
            };
            if netmask.is_some() && persistent.is_none() {
                return err("the '--netmask' option needs '--persistent'");
            }
            let flags = get(Opt::B)
                .flatten()
                .or_else(|| get(Opt::SchedFlags).flatten())
                .map(|v| split_sched_flags(&v))
                .unwrap_or_default();
            let opts = ServiceOpts {
                key,
                scheduler: get(Opt::Scheduler).flatten(),
                persistent,
                netmask,
                sched_flags: flags,
                conn_timeout: number(Opt::ConnTimeout, "connection timeout", u32::MAX)?,
                proxy_protocol: match get(Opt::ProxyProto).flatten() {
                    Some(v) => Some(parse_proxy_protocol(&v)?),
                    None => None,
                },
                ops: has(Opt::Ops),
                passive_check: has(Opt::PassiveCheck),
                quorum: number(Opt::Quorum, "quorum", u32::MAX)?,
                hysteresis: number(Opt::Hysteresis, "hysteresis", u32::MAX)?,
                quorum_up: get(Opt::QuorumUp).flatten(),
                quorum_down: get(Opt::QuorumDown).flatten(),
                synproxy: match get(Opt::Synproxy).flatten().as_deref() {
                    None => None,
                    Some("enable") => Some(true),
                    Some("disable") => Some(false),
                    Some(v) => {
                        return err(format!(
                            "invalid synproxy switch \"{v}\": must be enable or disable"
                        ))
                    }
                },
                conn_limit: match get(Opt::ConnLimit).flatten() {
                    None => None,
                    Some(v) => Some(parse_conn_limit(&v)?),
                },
                sorry_server: match get(Opt::SorryServer).flatten() {
                    None => None,
                    Some(v) if v == "none" => Some(v),
                    Some(v) => match parse_addr_port(&v, false) {
                        Ok((_, Some(_))) => Some(v),
                        _ => return err(format!("illegal sorry server \"{v}\" (IP:PORT or none)")),
                    },
                },
            };
            if opts.synproxy == Some(true) && key.proto != Proto::Tcp {
                return err("the '-j' option is for TCP services only (-t): a SYN proxy needs TCP");
            }
            if matches!(opts.proxy_protocol, Some(Some(_))) && key.proto != Proto::Tcp {
                return err(
                    "the '--proxy-protocol' option is for TCP services only (-t): \
                     Proxy Protocol over UDP is not supported",
                );
            }
            Ok(if cmd == Opt::AddService {
                Command::AddService(opts)
            } else {
                Command::EditService(opts)
            })
        }
        Opt::DeleteService => Ok(Command::DeleteService(
            service(true)?.ok_or_else(|| ArgError("missing service".into()))?,
        )),
        Opt::Clear => Ok(Command::Clear),
        Opt::Zero => Ok(Command::Zero(service(false)?)),
        Opt::Save => Ok(Command::Save(service(false)?)),
        Opt::Restore => Ok(Command::Restore),
        Opt::AddServer | Opt::EditServer | Opt::DeleteServer => {
            let svc = service(true)?.ok_or_else(|| ArgError("missing service".into()))?;
            let r = get(Opt::RealServer).flatten().ok_or_else(|| {
                ArgError(format!(
                    "the '{}' command needs a real server: -r RIP[:PORT]",
                    opt_name(cmd)
                ))
            })?;
            let (addr, port) = parse_addr_port(&r, true).map_err(ArgError)?;
            if cmd == Opt::DeleteServer {
                return Ok(Command::DeleteDest {
                    service: svc,
                    addr,
                    port,
                });
            }
            let modes: Vec<ForwardMode> = [
                (Opt::Gatewaying, ForwardMode::Dr),
                (Opt::Ipip, ForwardMode::Tun),
                (Opt::Masquerading, ForwardMode::Nat),
                (Opt::FullNat, ForwardMode::FullNat),
            ]
            .iter()
            .filter(|(o, _)| has(*o))
            .map(|(_, m)| *m)
            .collect();
            if modes.len() > 1 {
                return err("multiple forwarding methods specified (-g, -i, -m, -b)");
            }
            // ipvsadm 1.31 saves tunnel dests with `--tun-type ipip`; IPIP is
            // the only encapsulation here (no GUE, no GRE).
            if let Some(t) = get(Opt::TunType).flatten() {
                if modes.first() != Some(&ForwardMode::Tun) {
                    return err("--tun-type needs the tunneling method (-i)");
                }
                if !t.eq_ignore_ascii_case("ipip") {
                    return err(format!(
                        "unsupported tunnel type \"{t}\": only ipip is implemented"
                    ));
                }
            }
            let weight = number(Opt::Weight, "weight", 65535)?;
            let u = number(Opt::UThreshold, "upper threshold", u32::MAX)?;
            let l = number(Opt::LThreshold, "lower threshold", u32::MAX)?;
            let check = match get(Opt::Check).flatten() {
                None => {
                    if let Some((o, _)) = opts.iter().find(|(o, _)| CHECK_OPTS.contains(o)) {
                        return err(format!("{} needs --check TYPE", opt_name(*o)));
                    }
                    None
                }
                Some(kind) => {
                    let text = |o: Opt| get(o).flatten().unwrap_or_default();
                    let n = |o: Opt, what: &str, max: u32| -> Result<u32, ArgError> {
                        match get(o).flatten() {
                            None => Ok(0),
                            Some(v) => match v.parse::<u32>() {
                                Ok(x) if (1..=max).contains(&x) => Ok(x),
                                _ => err(format!("illegal {what} \"{v}\" (1..{max})")),
                            },
                        }
                    };
                    Some(proto::v1::HealthCheck {
                        r#type: kind,
                        port: n(Opt::CheckPort, "check port", 65535)?,
                        path: text(Opt::CheckPath),
                        status: 0,
                        status_codes: match get(Opt::CheckStatus).flatten() {
                            None => String::new(),
                            Some(v) => match crate::health::StatusCodes::parse(&v) {
                                Ok(c) => c.to_string(),
                                Err(e) => return err(format!("illegal {e}")),
                            },
                        },
                        digest: text(Opt::CheckDigest),
                        payload: text(Opt::CheckPayload),
                        command: text(Opt::CheckCommand),
                        interval_s: n(Opt::CheckInterval, "check interval", 86400)?,
                        timeout_s: n(Opt::CheckTimeout, "check timeout", 86400)?,
                        retries: n(Opt::CheckRetries, "check retries", 1000)?,
                        rise: n(Opt::CheckRise, "check rise", 1000)?,
                        delay_before_retry_s: n(Opt::CheckDelay, "check delay", 86400)?,
                        on_failure: text(Opt::OnFailure),
                    })
                }
            };
            let opts = DestOpts {
                service: svc,
                addr,
                port,
                mode: modes.first().copied(),
                weight,
                u_threshold: u,
                l_threshold: l,
                check,
            };
            Ok(if cmd == Opt::AddServer {
                Command::AddDest(opts)
            } else {
                Command::EditDest(opts)
            })
        }
        Opt::List => Ok(Command::List(ListOpts {
            service: service(false)?,
            numeric: has(Opt::Numeric),
            connections: has(Opt::Connection),
            stats: has(Opt::Stats),
            exact: has(Opt::Exact),
            timeout: has(Opt::Timeout),
            thresholds: has(Opt::Thresholds),
            persistent_conn: has(Opt::PersistentConn),
            worker: has(Opt::Worker),
            rate: has(Opt::Rate),
            nosort: has(Opt::NoSort),
            daemon: has(Opt::Daemon),
        })),
        Opt::StartDaemon | Opt::StopDaemon => {
            let state = get(cmd).flatten().unwrap_or_default();
            if state != "master" && state != "backup" {
                return err(format!(
                    "illegal daemon state \"{state}\": expected master or backup"
                ));
            }
            if cmd == Opt::StopDaemon {
                return Ok(Command::StopDaemon { state });
            }
            let syncid = match get(Opt::SyncId).flatten() {
                None => 0,
                Some(v) => v
                    .parse::<u8>()
                    .map_err(|_| ArgError(format!("illegal syncid \"{v}\": expected 0-255")))?,
            };
            let mcast_group = match get(Opt::McastGroup).flatten() {
                None => None,
                Some(v) => match v.parse::<std::net::Ipv4Addr>() {
                    Ok(a) if a.is_multicast() => Some(a),
                    _ => {
                        return err(format!(
                            "illegal mcast-group \"{v}\": expected an IPv4 multicast address"
                        ))
                    }
                },
            };
            let mcast_port = match get(Opt::McastPort).flatten() {
                None => None,
                Some(v) => match v.parse::<u16>() {
                    Ok(p) if p > 0 => Some(p),
                    _ => return err(format!("illegal mcast-port \"{v}\": expected 1-65535")),
                },
            };
            Ok(Command::StartDaemon(DaemonOpts {
                state,
                mcast_interface: get(Opt::McastInterface)
                    .flatten()
                    .unwrap_or_else(|| "eth0".to_string()),
                syncid,
                mcast_group,
                mcast_port,
            }))
        }
        Opt::Set => {
            if positionals.len() != 3 {
                return err("--set needs three values: tcp tcpfin udp");
            }
            let n = |s: &str| -> Result<u32, ArgError> {
                s.parse::<u32>()
                    .map_err(|_| ArgError(format!("illegal timeout \"{s}\"")))
            };
            Ok(Command::SetTimeouts {
                tcp: n(&positionals[0])?,
                tcpfin: n(&positionals[1])?,
                udp: n(&positionals[2])?,
            })
        }
        Opt::AddLaddr | Opt::DelLaddr => {
            let svc = service(true)?.ok_or_else(|| ArgError("missing service".into()))?;
            let z = get(Opt::Laddr).flatten().ok_or_else(|| {
                ArgError(format!(
                    "the '{}' command needs a local address: -z LIP",
                    opt_name(cmd)
                ))
            })?;
            let addr: IpAddr = z
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| ArgError(format!("illegal local address \"{z}\"")))?;
            if cmd == Opt::DelLaddr {
                return Ok(Command::DelLaddr { service: svc, addr });
            }
            let port = get(Opt::Ifname).flatten().ok_or_else(|| {
                ArgError("the '--add-laddr' command needs a port: -F PORT".into())
            })?;
            Ok(Command::AddLaddr {
                service: svc,
                addr,
                port,
            })
        }
        Opt::GetLaddr => Ok(Command::GetLaddr {
            service: service(false)?,
        }),
        Opt::AddBlklst | Opt::DelBlklst | Opt::AddWhtlst | Opt::DelWhtlst => {
            let service = service(true)?.ok_or_else(|| ArgError("missing service".into()))?;
            let (list, opt, flag) = if matches!(cmd, Opt::AddBlklst | Opt::DelBlklst) {
                (AclList::Blacklist, Opt::Blklst, "-k")
            } else {
                (AclList::Whitelist, Opt::Whtlst, "-2")
            };
            let v = get(opt).flatten().ok_or_else(|| {
                ArgError(format!(
                    "the '{}' command needs an address: {flag} ADDR|CIDR",
                    opt_name(cmd)
                ))
            })?;
            if v.starts_with("ipset:") {
                return err(format!(
                    "illegal {} entry \"{v}\": ipset entries are not supported \
                     (give addresses or prefixes, ADDR|CIDR)",
                    list.name()
                ));
            }
            let (addr, prefix_len) = parse_acl_entry(&v)
                .map_err(|e| ArgError(format!("illegal {} entry: {e}", list.name())))?;
            Ok(if matches!(cmd, Opt::AddBlklst | Opt::AddWhtlst) {
                Command::AddAcl {
                    service,
                    list,
                    addr,
                    prefix_len,
                }
            } else {
                Command::DelAcl {
                    service,
                    list,
                    addr,
                    prefix_len,
                }
            })
        }
        Opt::GetBlklst | Opt::GetWhtlst => Ok(Command::GetAcl {
            list: if cmd == Opt::GetBlklst {
                AclList::Blacklist
            } else {
                AclList::Whitelist
            },
            service: service(false)?,
        }),
        _ => err("no command specified"),
    }
}

/// `apply -f FILE [--dry-run]`.
fn parse_apply(args: &[String]) -> Result<Command, ArgError> {
    let mut file = None;
    let mut dry_run = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-f" | "--file" => {
                let v = it
                    .next()
                    .ok_or_else(|| ArgError("'apply -f' needs a file".into()))?;
                if file.replace(std::path::PathBuf::from(v)).is_some() {
                    return err("'apply' takes one file");
                }
            }
            "--dry-run" | "-n" => dry_run = true,
            other => return err(format!("unexpected argument '{other}' after 'apply'")),
        }
    }
    let file = file.ok_or_else(|| ArgError("'apply' needs -f FILE".into()))?;
    Ok(Command::Apply { file, dry_run })
}

/// `import keepalived FILE [--dry-run] [--replace]`.
fn parse_import(args: &[String]) -> Result<Command, ArgError> {
    match args.first().map(String::as_str) {
        Some("keepalived") => {}
        Some(other) => return err(format!("unknown import format '{other}' (keepalived)")),
        None => return err("'import' needs a format and a file: import keepalived FILE"),
    }
    let mut file = None;
    let mut dry_run = false;
    let mut replace = false;
    for a in &args[1..] {
        match a.as_str() {
            "--dry-run" | "-n" => dry_run = true,
            "--replace" => replace = true,
            o if o.starts_with('-') && o.len() > 1 => {
                return err(format!("unexpected option '{o}' after 'import keepalived'"))
            }
            f => {
                if file.replace(std::path::PathBuf::from(f)).is_some() {
                    return err("'import keepalived' takes one file");
                }
            }
        }
    }
    let file = file.ok_or_else(|| ArgError("'import keepalived' needs a FILE".into()))?;
    Ok(Command::ImportKeepalived {
        file,
        dry_run,
        replace,
    })
}

/// `KEY VALUE` pairs after the positional argument of dpip-style commands.
fn keywords<'a>(
    args: &'a [String],
    allowed: &[&str],
    what: &str,
) -> Result<Vec<(&'a str, &'a str)>, ArgError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let k = args[i].as_str();
        if !allowed.contains(&k) {
            return err(format!("unexpected argument '{k}' in '{what}'"));
        }
        let v = args
            .get(i + 1)
            .ok_or_else(|| ArgError(format!("'{k}' needs a value in '{what}'")))?;
        if out.iter().any(|(x, _)| *x == k) {
            return err(format!("'{k}' given twice in '{what}'"));
        }
        out.push((k, v.as_str()));
        i += 2;
    }
    Ok(out)
}

fn parse_addr(args: &[String]) -> Result<Command, ArgError> {
    let verb = args.first().map(String::as_str).unwrap_or("show");
    match verb {
        "add" | "del" | "delete" => {
            let what = format!("addr {verb}");
            let a = args.get(1).ok_or_else(|| {
                ArgError(format!("'{what}' needs an address: ADDR[/LEN] dev PORT"))
            })?;
            let (addr, prefix_len) = parse_prefix(a, true).map_err(ArgError)?;
            let kw = keywords(&args[2..], &["dev"], &what)?;
            let dev = kw
                .iter()
                .find(|(k, _)| *k == "dev")
                .map(|(_, v)| v.to_string())
                .ok_or_else(|| ArgError(format!("'{what}' needs 'dev PORT'")))?;
            Ok(if verb == "add" {
                Command::AddrAdd {
                    addr,
                    prefix_len,
                    dev,
                }
            } else {
                Command::AddrDel {
                    addr,
                    prefix_len,
                    dev,
                }
            })
        }
        "show" | "list" | "ls" => {
            let kw = keywords(args.get(1..).unwrap_or(&[]), &["dev"], "addr show")?;
            Ok(Command::AddrShow {
                dev: kw.first().map(|(_, v)| v.to_string()),
            })
        }
        other => err(format!("unknown addr command '{other}' (add, del, show)")),
    }
}

fn parse_route(args: &[String]) -> Result<Command, ArgError> {
    let verb = args.first().map(String::as_str).unwrap_or("show");
    match verb {
        "add" | "del" | "delete" => {
            let what = format!("route {verb}");
            let p = args.get(1).ok_or_else(|| {
                ArgError(format!(
                    "'{what}' needs a prefix: PREFIX/LEN [via GW] dev PORT"
                ))
            })?;
            let (prefix, prefix_len) = if p == "default" {
                (IpAddr::from([0u8, 0, 0, 0]), 0)
            } else {
                parse_prefix(p, true).map_err(ArgError)?
            };
            let kw = keywords(&args[2..], &["via", "dev"], &what)?;
            let via = match kw.iter().find(|(k, _)| *k == "via") {
                Some((_, v)) => Some(parse_ip(v).map_err(ArgError)?),
                None => None,
            };
            let dev = kw
                .iter()
                .find(|(k, _)| *k == "dev")
                .map(|(_, v)| v.to_string());
            if verb == "add" {
                let dev = dev.ok_or_else(|| ArgError(format!("'{what}' needs 'dev PORT'")))?;
                Ok(Command::RouteAdd {
                    prefix,
                    prefix_len,
                    via,
                    dev,
                })
            } else {
                Ok(Command::RouteDel { prefix, prefix_len })
            }
        }
        "show" | "list" | "ls" => {
            if args.len() > 1 {
                return err(format!("unexpected argument '{}' in 'route show'", args[1]));
            }
            Ok(Command::RouteShow)
        }
        other => err(format!("unknown route command '{other}' (add, del, show)")),
    }
}

/// `dpvsctl --help`.
pub const USAGE: &str = "\
dpvsctl: control dpvsd, ipvsadm style

Usage:
  dpvsctl -A|E -t|u service-address [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags] [--conn-timeout secs]
  dpvsctl -D -t|u service-address
  dpvsctl -C
  dpvsctl -R
  dpvsctl -S [-n] [-t|u service-address]
  dpvsctl -Z [-t|u service-address]
  dpvsctl -a|e -t|u service-address -r server-address [-g|-i|-m|-b] [-w weight] [-x upper] [-y lower]
  dpvsctl -d -t|u service-address -r server-address
  dpvsctl -L|l [-n] [-c] [--stats|--rate] [--exact] [--thresholds] [--timeout] [-t|u service-address]
  dpvsctl --set tcp tcpfin udp
  dpvsctl -P|Q -t|u service-address -z local-address [-F port]
  dpvsctl -G [-t|u service-address]
  dpvsctl -U|V -t|u service-address -k blacklist-address
  dpvsctl -O|Y -t|u service-address -2 whitelist-address
  dpvsctl -B|W [-t|u service-address]
  dpvsctl --start-daemon master|backup [--mcast-interface IF] [--syncid N] [--mcast-group ADDR] [--mcast-port PORT]
  dpvsctl --stop-daemon master|backup
  dpvsctl -L|l --daemon
  dpvsctl addr add|del ADDR[/LEN] dev PORT
  dpvsctl addr show [dev PORT]
  dpvsctl route add PREFIX/LEN [via GATEWAY] dev PORT
  dpvsctl route del PREFIX/LEN
  dpvsctl route show
  dpvsctl stats
  dpvsctl apply -f FILE [--dry-run]
  dpvsctl import keepalived FILE [--dry-run] [--replace]
  dpvsctl -h|--help

Commands:
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin (all or nothing)
  --save            -S        save rules to stdout
  --zero            -Z        zero counters in a service or all services
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --set tcp tcpfin udp        set connection timeout values (0 = unchanged)
  --add-laddr       -P        add a FULLNAT local address to a service (DPVS)
  --del-laddr       -Q        delete a FULLNAT local address (DPVS)
  --get-laddr       -G        list FULLNAT local addresses (DPVS)
  --add-blklst      -U        add a blacklist address or prefix to a service (DPVS)
  --del-blklst      -V        delete a blacklist address or prefix (DPVS)
  --get-blklst      -B        list blacklists (DPVS)
  --add-whtlst      -O        add a whitelist address or prefix to a service (DPVS)
  --del-whtlst      -Y        delete a whitelist address or prefix (DPVS)
  --get-whtlst      -W        list whitelists (DPVS)
  --start-daemon              start the connection sync daemon (master or backup)
  --stop-daemon               stop the connection sync daemon

Options:
  --tcp-service  -t service-address   service-address is host:port ([v6]:port)
  --udp-service  -u service-address   service-address is host:port ([v6]:port)
  --scheduler    -s scheduler         rr wrr lc wlc sed nq lblc lblcr dh sh mh conhash fo ovf twos (default wlc)
  --persistent   -p [timeout]         persistent service (default 300 s)
  --netmask      -M netmask           persistent granularity mask
  --sched-flags  -b flags             scheduler flags, comma separated (with -A/-E)
  --conn-timeout secs                 idle timeout of established connections
  --ops          -o                   one-packet scheduling (UDP)
  --sorry-server IP:PORT|none         takes new connections while no real server is usable
  --passive-check                     inhibit real servers that leave SYNs unanswered (NAT/FULLNAT)
  --quorum N --hysteresis N           alive weight below which the sorry server takes over (keepalived's)
  --quorum-up CMD --quorum-down CMD   sh -c CMD when the service regains / loses its quorum (keepalived's)
  --proxy-protocol v1|v2|none         Proxy Protocol header to FULLNAT real servers (TCP, with -A/-E; DPVS)
  --conn-limit   N                    most connections of the service, new ones refused beyond (0 = none)
  --real-server  -r server-address    server-address is host[:port] (default: the virtual port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --tun-type     ipip                 tunnel type (with -i; ipip only)
  --check        tcp|http|https|udp|misc health check of the real server (with -a/-e; docs/health.md)
  --check-port N --check-path P --check-status CODES --check-digest MD5 --check-payload S
  --check-command CMD --check-interval S --check-timeout S --check-retries N
  --check-rise N --check-delay S --on-failure inhibit|remove
  --fullnat      -b                   full NAT (with -a/-e, as in DPVS)
  --laddr        -z local-address     FULLNAT local address (with -P/-Q)
  --ifname       -F port              port that owns the local address (with -P)
  --blklst       -k ADDR|CIDR         client address or prefix refused (with -U/-V)
  --whtlst       -2 ADDR|CIDR         client address or prefix let in (with -O/-Y)
  --mcast-interface IF                kernel interface of the sync multicast (default eth0)
  --syncid N                          sync id, 0-255 (default 0; a backup with 0 takes any)
  --mcast-group ADDR --mcast-port N   sync multicast group and port (224.0.0.81, 8848)
  --daemon                            list the sync daemons (with -L)
  --weight       -w weight            capacity of real server (0..65535, default 1)
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --numeric      -n                   numeric output (always numeric)
  --connection   -c                   list current connections
  --timeout                           list timeouts (tcp tcpfin udp)
  --stats                             list counters
  --json                              listings as JSON (-L, -G, -B, -W, stats, addr show, route show)
  --rate                              list rates (2 s estimator)
  --exact                             expand numbers (with --stats)
  --thresholds                        list thresholds
  --persistent-conn                   list persistent connections (templates) per dest
  --worker                            with -c: the worker owning each connection
  --server unix:PATH|HOST:PORT|https://HOST:PORT
                                      dpvsd to talk to (default $DPVS_SERVER, else unix:/run/dpvs/dpvs.sock)
  --tls-cert FILE                     client certificate (PEM) for https:// (default $DPVS_TLS_CERT)
  --tls-key FILE                      its private key (PEM) (default $DPVS_TLS_KEY)
  --tls-ca FILE                       CA (PEM) dpvsd's certificate must chain to (default $DPVS_TLS_CA)
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_protocol_option() {
        let pp = |line: &str| match p(line) {
            Ok(Command::AddService(o)) | Ok(Command::EditService(o)) => Ok(o.proxy_protocol),
            Ok(c) => panic!("{c:?}"),
            Err(e) => Err(e.0),
        };
        assert_eq!(pp("-A -t 10.0.0.100:80 -s rr"), Ok(None));
        assert_eq!(
            pp("-A -t 10.0.0.100:80 -s rr --proxy-protocol v1"),
            Ok(Some(Some(ProxyProtocol::V1)))
        );
        assert_eq!(
            pp("-E -t 10.0.0.100:80 --proxy-protocol V2"),
            Ok(Some(Some(ProxyProtocol::V2)))
        );
        assert_eq!(
            pp("-E -t 10.0.0.100:80 --proxy-protocol none"),
            Ok(Some(None))
        );
        assert_eq!(
            pp("-A -t 10.0.0.100:80 --proxy-protocol v3"),
            Err("invalid proxy protocol \"v3\": expected v1, v2 or none".into())
        );
        let e = pp("-A -u 10.0.0.100:53 --proxy-protocol v2").unwrap_err();
        assert!(e.contains("TCP services only"), "{e}");
        assert!(pp("-A -u 10.0.0.100:53 --proxy-protocol none").is_ok());
        assert!(p("-a -t 10.0.0.100:80 -r 1.2.3.4 --proxy-protocol v1").is_err());
    }

    #[test]
    fn laddr_commands() {
        let k = key(Proto::Tcp, "10.0.0.100", 80);
        assert_eq!(
            p("-P -t 10.0.0.100:80 -z 192.168.0.200 -F dpdk1").unwrap(),
            Command::AddLaddr {
                service: k,
                addr: "192.168.0.200".parse().unwrap(),
                port: "dpdk1".into()
            }
        );
        assert_eq!(
            p("--del-laddr -t 10.0.0.100:80 --laddr 192.168.0.200").unwrap(),
            Command::DelLaddr {
                service: k,
                addr: "192.168.0.200".parse().unwrap()
            }
        );
        assert_eq!(p("-G").unwrap(), Command::GetLaddr { service: None });
        assert!(
            p("-P -t 10.0.0.100:80 -z 192.168.0.200").is_err(),
            "-F needed"
        );
        assert!(p("-P -t 10.0.0.100:80 -F dpdk1").is_err(), "-z needed");
        assert!(p("-G -r 1.2.3.4").is_err());
    }

    #[test]
    fn access_list_commands() {
        let k = key(Proto::Tcp, "10.0.0.100", 80);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            p("-U -t 10.0.0.100:80 -k 10.1.0.0/16").unwrap(),
            Command::AddAcl {
                service: k,
                list: AclList::Blacklist,
                addr: ip("10.1.0.0"),
                prefix_len: 16
            }
        );
        assert_eq!(
            p("--del-blklst --tcp-service 10.0.0.100:80 --blklst 192.0.2.7").unwrap(),
            Command::DelAcl {
                service: k,
                list: AclList::Blacklist,
                addr: ip("192.0.2.7"),
                prefix_len: 32
            }
        );
        assert_eq!(
            p("-O -u [2001:db8::1]:53 -2 2001:db8:1::/48").unwrap(),
            Command::AddAcl {
                service: key(Proto::Udp, "2001:db8::1", 53),
                list: AclList::Whitelist,
                addr: ip("2001:db8:1::"),
                prefix_len: 48
            }
        );
        assert_eq!(
            p("--del-whtlst -t 10.0.0.100:80 --whtlst=10.0.0.0/8").unwrap(),
            Command::DelAcl {
                service: k,
                list: AclList::Whitelist,
                addr: ip("10.0.0.0"),
                prefix_len: 8
            }
        );
        assert_eq!(
            p("-B").unwrap(),
            Command::GetAcl {
                list: AclList::Blacklist,
                service: None
            }
        );
        assert_eq!(
            p("-W -n -t 10.0.0.100:80").unwrap(),
            Command::GetAcl {
                list: AclList::Whitelist,
                service: Some(k)
            }
        );
        let e = |line: &str| p(line).unwrap_err().0;
        assert_eq!(
            e("-U -t 10.0.0.100:80"),
            "the '--add-blklst' command needs an address: -k ADDR|CIDR"
        );
        assert_eq!(
            e("-Y -t 10.0.0.100:80"),
            "the '--del-whtlst' command needs an address: -2 ADDR|CIDR"
        );
        assert_eq!(
            e("-U -k 10.1.0.0/16"),
            "the '--add-blklst' command needs a service: -t|-u VIP:PORT"
        );
        assert_eq!(
            e("-U -t 10.0.0.100:80 -k 10.1.2.3/16"),
            "illegal blacklist entry: invalid prefix \"10.1.2.3/16\": host bits set \
             (the network is 10.1.0.0/16)"
        );
        assert_eq!(
            e("-O -t 10.0.0.100:80 -2 10.1.0.0/40"),
            "illegal whitelist entry: invalid prefix length /40 in \"10.1.0.0/40\" (at most /32)"
        );
        assert!(e("-U -t 10.0.0.100:80 -k ipset:bad").contains("ipset entries are not supported"));
        assert_eq!(
            e("-U -t 10.0.0.100:80 -2 10.1.0.0/16"),
            "illegal '--whtlst' option with the '--add-blklst' command"
        );
        assert_eq!(
            e("-B -k 10.1.0.0/16"),
            "illegal '--blklst' option with the '--get-blklst' command"
        );
        assert_eq!(e("-U -O -t 10.0.0.100:80"), "multiple commands specified");
        assert!(parse(&["-B".to_string(), "--json".to_string()]).is_ok());
    }

    fn p(s: &str) -> Result<Command, ArgError> {
        let v: Vec<String> = s.split_whitespace().map(str::to_string).collect();
        parse(&v).map(|i| i.command)
    }

    #[test]
    fn sync_daemons_as_ipvsadm() {
        assert_eq!(
            p("--start-daemon master --mcast-interface dpdk0 --syncid 7").unwrap(),
            Command::StartDaemon(DaemonOpts {
                state: "master".into(),
                mcast_interface: "dpdk0".into(),
                syncid: 7,
                mcast_group: None,
                mcast_port: None,
            })
        );
        assert_eq!(
            p("--start-daemon backup --mcast-group 239.1.1.1 --mcast-port 9000").unwrap(),
            Command::StartDaemon(DaemonOpts {
                state: "backup".into(),
                mcast_interface: "eth0".into(),
                syncid: 0,
                mcast_group: Some("239.1.1.1".parse().unwrap()),
                mcast_port: Some(9000),
            })
        );
        assert_eq!(
            p("--stop-daemon backup").unwrap(),
            Command::StopDaemon {
                state: "backup".into()
            }
        );
        assert!(matches!(p("-L --daemon").unwrap(), Command::List(o) if o.daemon));
        let e = |s: &str| p(s).unwrap_err().0;
        assert_eq!(
            e("--start-daemon primary"),
            "illegal daemon state \"primary\": expected master or backup"
        );
        assert_eq!(
            e("--start-daemon master --syncid 256"),
            "illegal syncid \"256\": expected 0-255"
        );
        assert_eq!(
            e("--start-daemon master --mcast-group 10.0.0.1"),
            "illegal mcast-group \"10.0.0.1\": expected an IPv4 multicast address"
        );
        assert_eq!(
            e("--stop-daemon master --syncid 1"),
            "illegal '--syncid' option with the '--stop-daemon' command"
        );
    }

    fn key(proto: Proto, vip: &str, port: u16) -> ServiceKey {
        ServiceKey {
            proto,
            vip: vip.parse().unwrap(),
            vport: port,
        }
    }

    #[test]
    fn add_edit_delete_service() {
        assert_eq!(
            p("-A -t 10.0.0.100:80 -s rr").unwrap(),
            Command::AddService(ServiceOpts {
                key: key(Proto::Tcp, "10.0.0.100", 80),
                scheduler: Some("rr".into()),
                persistent: None,
                netmask: None,
                sched_flags: vec![],
                conn_timeout: None,
                proxy_protocol: None,
                ops: false,
                sorry_server: None,
                passive_check: false,
                synproxy: None,
                conn_limit: None,
                quorum: None,
                hysteresis: None,
                quorum_up: None,
                quorum_down: None,
            })
        );
        assert_eq!(
            p("--add-service --udp-service [2001:db8::1]:53 -p -M 64 -o").unwrap(),
            Command::AddService(ServiceOpts {
                key: key(Proto::Udp, "2001:db8::1", 53),
                scheduler: None,
                persistent: Some(0),
                netmask: Some(64),
                sched_flags: vec![],
                conn_timeout: None,
                proxy_protocol: None,
                ops: true,
                sorry_server: None,
                passive_check: false,
                synproxy: None,
                conn_limit: None,
                quorum: None,
                hysteresis: None,
                quorum_up: None,
                quorum_down: None,
            })
        );
        match p("-E -t 10.0.0.100:80 -s sh -p 600 -M 255.255.255.0 -b sh-fallback,sh-port").unwrap()
        {
            Command::EditService(o) => {
                assert_eq!(o.persistent, Some(600));
                assert_eq!(o.netmask, Some(24));
                assert_eq!(o.sched_flags, vec!["sh-fallback", "sh-port"]);
            }
            c => panic!("{c:?}"),
        }
        assert_eq!(
            p("-D -u 10.0.0.100:53").unwrap(),
            Command::DeleteService(key(Proto::Udp, "10.0.0.100", 53))
        );
        assert_eq!(p("-C").unwrap(), Command::Clear);
        assert_eq!(p("--clear").unwrap(), Command::Clear);
        assert_eq!(p("-Z").unwrap(), Command::Zero(None));
        assert_eq!(
            p("--zero -u 10.0.0.1:53").unwrap(),
            Command::Zero(Some(ServiceKey {
                proto: Proto::Udp,
                vip: "10.0.0.1".parse().unwrap(),
                vport: 53,
            }))
        );
        assert!(p("-Z -s rr").is_err(), "-Z takes a service only");
        match p("-A -t 10.0.0.100:80 --conn-timeout=60 --persistent=30").unwrap() {
            Command::AddService(o) => {
                assert_eq!(o.conn_timeout, Some(60));
                assert_eq!(o.persistent, Some(30));
            }
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn conn_limit_on_add_and_edit() {
        let limit = |line: &str| match p(line) {
            Ok(Command::AddService(o) | Command::EditService(o)) => Ok(o.conn_limit),
            Ok(c) => panic!("{c:?}"),
            Err(e) => Err(e.0),
        };
        assert_eq!(
            limit("-A -t 10.0.0.100:80 --conn-limit 5000"),
            Ok(Some(5000))
        );
        assert_eq!(limit("-E -u 10.0.0.100:53 --conn-limit=0"), Ok(Some(0)));
        assert_eq!(limit("-E -t 10.0.0.100:80 -s rr"), Ok(None), "unchanged");
        assert_eq!(
            limit("-A -t 10.0.0.100:80 --conn-limit 4294967295"),
            Ok(Some(u32::MAX))
        );
        for bad in ["-1", "many", "4294967296", "1.5", ""] {
            let e = limit(&format!("-A -t 10.0.0.100:80 --conn-limit={bad}")).unwrap_err();
            assert_eq!(
                e,
                format!(
                    "invalid --conn-limit \"{bad}\": a number of connections 0..4294967295 \
                     (0 = no limit)"
                )
            );
        }
        // The value may look like an option.
        assert!(limit("-A -t 10.0.0.100:80 --conn-limit -1")
            .unwrap_err()
            .starts_with("invalid --conn-limit \"-1\""));
        assert!(p("-a -t 10.0.0.100:80 -r 192.168.0.11 --conn-limit 5").is_err());
    }

    #[test]
    fn add_edit_delete_dest() {
        assert_eq!(
            p("-a -t 10.0.0.100:80 -r 192.168.0.11:8080 -m -w 3").unwrap(),
            Command::AddDest(DestOpts {
                service: key(Proto::Tcp, "10.0.0.100", 80),
                addr: "192.168.0.11".parse().unwrap(),
                port: Some(8080),
                mode: Some(ForwardMode::Nat),
                weight: Some(3),
                u_threshold: None,
                l_threshold: None,
                check: None,
            })
        );
        match p("-a -t 10.0.0.100:80 -r 192.168.0.11 -m --check http --check-path /health --check-interval 2 --on-failure remove").unwrap() {
            Command::AddDest(o) => {
                let c = o.check.expect("a check");
                assert_eq!(
                    (c.r#type.as_str(), c.path.as_str(), c.interval_s, c.on_failure.as_str()),
                    ("http", "/health", 2, "remove")
                );
            }
            c => panic!("{c:?}"),
        }
        match p("-a -t 10.0.0.100:80 -r 192.168.0.11 --check https --check-status 301,200-299")
            .unwrap()
        {
            Command::AddDest(o) => {
                let c = o.check.expect("a check");
                assert_eq!((c.status, c.status_codes.as_str()), (0, "200-299,301"));
            }
            c => panic!("{c:?}"),
        }
        assert_eq!(
            p("-a -t 10.0.0.100:80 -r 192.168.0.11 --check http --check-status 2xx")
                .unwrap_err()
                .0,
            "illegal check status \"2xx\": not a status code or range"
        );
        assert_eq!(
            p("-a -t 10.0.0.100:80 -r 192.168.0.11 --check-path /x")
                .unwrap_err()
                .0,
            "--check-path needs --check TYPE"
        );
        assert_eq!(
            p("-a -t 10.0.0.100:80 -r 192.168.0.11 --check tcp --check-retries 0")
                .unwrap_err()
                .0,
            "illegal check retries \"0\" (1..1000)"
        );
        match p("-a -t 10.0.0.100:80 -r 192.168.0.11 -b -x 100 -y 10").unwrap() {
            Command::AddDest(o) => {
                assert_eq!(o.mode, Some(ForwardMode::FullNat));
                assert_eq!(o.port, None);
                assert_eq!((o.u_threshold, o.l_threshold), (Some(100), Some(10)));
            }
            c => panic!("{c:?}"),
        }
        match p("--edit-server -t [2001:db8::1]:80 --real-server [2001:db8::11]:80 -i").unwrap() {
            Command::EditDest(o) => assert_eq!(o.mode, Some(ForwardMode::Tun)),
            c => panic!("{c:?}"),
        }
        match p("-e -u 10.0.0.100:53 -r 192.168.0.11 -g --weight 0").unwrap() {
            Command::EditDest(o) => {
                assert_eq!(o.mode, Some(ForwardMode::Dr));
                assert_eq!(o.weight, Some(0));
            }
            c => panic!("{c:?}"),
        }
        assert_eq!(
            p("-d -t 10.0.0.100:80 -r 192.168.0.11:80").unwrap(),
            Command::DeleteDest {
                service: key(Proto::Tcp, "10.0.0.100", 80),
                addr: "192.168.0.11".parse().unwrap(),
                port: Some(80)
            }
        );
    }

    #[test]
    fn list_forms() {
        // ipvsadm: no arguments lists the table; -X is --exact; --sort is
        // accepted and changes nothing; --nosort keeps dpvsd's order.
        assert_eq!(p("").unwrap(), Command::List(ListOpts::default()));
        assert_eq!(
            p("-L --stats -X --sort").unwrap(),
            Command::List(ListOpts {
                stats: true,
                exact: true,
                ..ListOpts::default()
            })
        );
        assert!(matches!(p("-Ln --nosort").unwrap(), Command::List(o) if o.nosort));
        assert!(matches!(p("-Ln --rate").unwrap(), Command::List(o) if o.rate));
        let inv = parse(&["-Lnc".to_string(), "--json".to_string()]).unwrap();
        assert!(inv.json);
        assert_eq!(
            p("-Lnc --json").unwrap(),
            Command::List(ListOpts {
                numeric: true,
                connections: true,
                ..ListOpts::default()
            })
        );
        assert_eq!(
            p("-Ln").unwrap(),
            Command::List(ListOpts {
                numeric: true,
                ..ListOpts::default()
            })
        );
        assert_eq!(
            p("-Lnc").unwrap(),
            Command::List(ListOpts {
                numeric: true,
                connections: true,
                ..ListOpts::default()
            })
        );
        assert_eq!(
            p("-l -n --stats --exact -t 10.0.0.100:80").unwrap(),
            Command::List(ListOpts {
                service: Some(key(Proto::Tcp, "10.0.0.100", 80)),
                numeric: true,
                stats: true,
                exact: true,
                ..ListOpts::default()
            })
        );
        assert_eq!(
            p("-L --timeout").unwrap(),
            Command::List(ListOpts {
                timeout: true,
                ..ListOpts::default()
            })
        );
        assert_eq!(
            p("--list --numeric --thresholds").unwrap(),
            Command::List(ListOpts {
                numeric: true,
                thresholds: true,
                ..ListOpts::default()
            })
        );
    }

    #[test]
    fn set_and_dpip_forms() {
        assert_eq!(
            p("--set 900 120 300").unwrap(),
            Command::SetTimeouts {
                tcp: 900,
                tcpfin: 120,
                udp: 300
            }
        );
        assert_eq!(
            p("addr add 10.0.0.100/32 dev dpdk0").unwrap(),
            Command::AddrAdd {
                addr: "10.0.0.100".parse().unwrap(),
                prefix_len: 32,
                dev: "dpdk0".into()
            }
        );
        assert_eq!(
            p("addr del 10.0.0.100 dev dpdk0").unwrap(),
            Command::AddrDel {
                addr: "10.0.0.100".parse().unwrap(),
                prefix_len: 32,
                dev: "dpdk0".into()
            }
        );
        assert_eq!(p("addr show").unwrap(), Command::AddrShow { dev: None });
        assert_eq!(
            p("addr show dev dpdk1").unwrap(),
            Command::AddrShow {
                dev: Some("dpdk1".into())
            }
        );
        assert_eq!(
            p("route add 0.0.0.0/0 via 10.0.0.254 dev dpdk0").unwrap(),
            Command::RouteAdd {
                prefix: "0.0.0.0".parse().unwrap(),
                prefix_len: 0,
                via: Some("10.0.0.254".parse().unwrap()),
                dev: "dpdk0".into()
            }
        );
        assert_eq!(
            p("route add 192.168.5.0/24 dev dpdk1").unwrap(),
            Command::RouteAdd {
                prefix: "192.168.5.0".parse().unwrap(),
                prefix_len: 24,
                via: None,
                dev: "dpdk1".into()
            }
        );
        assert_eq!(
            p("route del 192.168.5.0/24 dev dpdk1").unwrap(),
            Command::RouteDel {
                prefix: "192.168.5.0".parse().unwrap(),
                prefix_len: 24
            }
        );
        assert_eq!(p("route show").unwrap(), Command::RouteShow);
        assert_eq!(p("stats").unwrap(), Command::Stats);
        assert_eq!(p("-h").unwrap(), Command::Help);
        assert_eq!(p("--help").unwrap(), Command::Help);
    }

    #[test]
    fn import_keepalived() {
        assert_eq!(
            p("import keepalived /etc/keepalived/keepalived.conf").unwrap(),
            Command::ImportKeepalived {
                file: "/etc/keepalived/keepalived.conf".into(),
                dry_run: false,
                replace: false
            }
        );
        assert_eq!(
            p("import keepalived --dry-run k.conf").unwrap(),
            Command::ImportKeepalived {
                file: "k.conf".into(),
                dry_run: true,
                replace: false
            }
        );
        assert_eq!(
            p("import keepalived k.conf --replace").unwrap(),
            Command::ImportKeepalived {
                file: "k.conf".into(),
                dry_run: false,
                replace: true
            }
        );
        let cases: &[(&str, &str)] = &[
            (
                "import",
                "'import' needs a format and a file: import keepalived FILE",
            ),
            (
                "import haproxy h.cfg",
                "unknown import format 'haproxy' (keepalived)",
            ),
            ("import keepalived", "'import keepalived' needs a FILE"),
            (
                "import keepalived a b",
                "'import keepalived' takes one file",
            ),
            (
                "import keepalived a --force",
                "unexpected option '--force' after 'import keepalived'",
            ),
            (
                "import keepalived a --json",
                "--json goes with listings (-L, -G, -B, -W, stats, addr show, route show)",
            ),
        ];
        for (line, want) in cases {
            assert_eq!(p(line), Err(ArgError(want.to_string())), "for {line:?}");
        }
    }

    #[test]
    fn server_option() {
        let v: Vec<String> = "--server unix:/tmp/x.sock -Ln"
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let inv = parse(&v).unwrap();
        assert_eq!(inv.server.as_deref(), Some("unix:/tmp/x.sock"));
        let v: Vec<String> = vec!["-C".into(), "--server=127.0.0.1:5000".into()];
        assert_eq!(parse(&v).unwrap().server.as_deref(), Some("127.0.0.1:5000"));
    }

    #[test]
    fn tls_options() {
        let v: Vec<String> =
            "--server https://127.0.0.1:5000 --tls-cert c.pem -Ln --tls-key=k.pem --tls-ca ca.pem"
                .split_whitespace()
                .map(str::to_string)
                .collect();
        let inv = parse(&v).unwrap();
        assert_eq!(inv.server.as_deref(), Some("https://127.0.0.1:5000"));
        assert_eq!(inv.tls_cert, Some("c.pem".into()));
        assert_eq!(inv.tls_key, Some("k.pem".into()));
        assert_eq!(inv.tls_ca, Some("ca.pem".into()));
        assert!(matches!(inv.command, Command::List(_)));
        for (line, want) in [
            ("-Ln --tls-ca", "option '--tls-ca' needs a value"),
            ("-Ln --tls-cert=", "option '--tls-cert' needs a value"),
            ("-Ln --tls-keys k.pem", "unknown option '--tls-keys'"),
        ] {
            let v: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            let e = parse(&v).unwrap_err().0;
            assert!(e.starts_with(want), "{line}: {e}");
        }
    }

    #[test]
    fn malformed_inputs() {
        let cases: &[(&str, &str)] = &[
            (
                "-A -f 1 -s rr",
                "fwmark services (-f) are not supported: no netfilter rule marks packets before dpvsd; use -t/-u VIP:PORT services",
            ),
            (
                "-A -t 10.0.0.1:80 --json",
                "--json goes with listings (-L, -G, -B, -W, stats, addr show, route show)",
            ),
            ("-n", "no command specified (try 'dpvsctl --help')"),
            ("-A -D -t 10.0.0.1:80", "multiple commands specified"),
            (
                "-A",
                "the '--add-service' command needs a service: -t|-u VIP:PORT",
            ),
            ("-A -t 10.0.0.300:80", "invalid address \"10.0.0.300:80\""),
            ("-A -t 10.0.0.1:http", "invalid port \"http\""),
            (
                "-A -t 10.0.0.1:80 -u 10.0.0.1:80",
                "the option '--udp-service' conflicts with the '--tcp-service' option",
            ),
            (
                "-A -t 10.0.0.1:80 -r 10.0.0.2",
                "illegal '--real-server' option with the '--add-service' command",
            ),
            (
                "-A -t 10.0.0.1:80 -s rr -s wrr",
                "multiple '--scheduler' options specified",
            ),
            (
                "-A -t 10.0.0.1:80 -p abc",
                "illegal timeout \"abc\" for persistent service",
            ),
            ("-C extra", "unexpected argument 'extra'"),
            (
                "-A -t 10.0.0.1:80 -p 0",
                "illegal timeout \"0\" for persistent service",
            ),
            (
                "-A -t 10.0.0.1:80 -p -M 255.0.255.0",
                "invalid netmask \"255.0.255.0\": not contiguous",
            ),
            (
                "-A -t 10.0.0.1:80 -M 255.255.255.0",
                "the '--netmask' option needs '--persistent'",
            ),
            (
                "-a -t 10.0.0.1:80",
                "the '--add-server' command needs a real server: -r RIP[:PORT]",
            ),
            (
                "-a -t 10.0.0.1:80 -r 192.168.0.1 -w 70000",
                "illegal weight \"70000\" (0..65535)",
            ),
            (
                "-a -t 10.0.0.1:80 -r 192.168.0.1 -w -1",
                "illegal weight \"-1\" (0..65535)",
            ),
            (
                "-a -t 10.0.0.1:80 -r 192.168.0.1 -m -g",
                "multiple forwarding methods specified (-g, -i, -m, -b)",
            ),
            (
                "-a -t 10.0.0.1:80 -r 192.168.0.1 -s rr",
                "illegal '--scheduler' option with the '--add-server' command",
            ),
            ("-a -t 10.0.0.1:80 -r bogus", "invalid address \"bogus\""),
            (
                "-d -t 10.0.0.1:80 -r 192.168.0.1 -w 1",
                "illegal '--weight' option with the '--delete-server' command",
            ),
            (
                "-L -s rr",
                "illegal '--scheduler' option with the '--list' command",
            ),
            ("-Lq", "unknown option '-q'"),
            ("--pe sip", "unknown option '--pe'"),
            ("-A -t", "option '-t' needs a value"),
            ("--set 900 120", "--set needs three values: tcp tcpfin udp"),
            ("--set 900 x 300", "illegal timeout \"x\""),
            (
                "addr add 10.0.0.1/40 dev dpdk0",
                "invalid prefix length /40 in \"10.0.0.1/40\" (at most /32)",
            ),
            ("addr add 10.0.0.1/32", "'addr add' needs 'dev PORT'"),
            (
                "addr add 10.0.0.1/32 dev",
                "'dev' needs a value in 'addr add'",
            ),
            (
                "addr flush",
                "unknown addr command 'flush' (add, del, show)",
            ),
            (
                "route add 10.0.0.0/8 via nowhere dev dpdk0",
                "invalid address \"nowhere\"",
            ),
            (
                "route add 10.0.0.0/8 via 10.0.0.1",
                "'route add' needs 'dev PORT'",
            ),
            (
                "route add 10.0.0.0/8 metric 5 dev dpdk0",
                "unexpected argument 'metric' in 'route add'",
            ),
            ("stats now", "unexpected argument 'now' after 'stats'"),
        ];
        for (line, want) in cases {
            assert_eq!(p(line), Err(ArgError(want.to_string())), "for {line:?}");
        }
    }
}
