//! `dpvs.toml`: the daemon's configuration file.
//!
//! Parsed with serde (`deny_unknown_fields`, so a typo is an error) and validated
//! into what `dpvsd` needs: the [`DataplaneSpec`] to start the dataplane, the
//! initial [`Store`] (addresses, routes, services, timeouts) and the control
//! listener. Every error is one line naming the key and the problem, e.g.
//! `port[1].addresses[0]: invalid address "10.0.0.300/24"`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use dataplane::{
    AddrSpec, DataplaneSpec, DestSpec, ForwardMode, Persistence, PortSpec, Proto, RouteSpec,
    ServiceKey, ServiceSpec, Steering,
};
use serde::Deserialize;

use crate::addr::{parse_acl_entry, parse_addr_port, parse_ip, parse_netmask, parse_prefix};
use crate::scheduler::DEFAULT_SCHEDULER;
use crate::store::{AclList, Store, StoreError, Timeouts, DEFAULT_PERSISTENCE_S};
use crate::tls::TlsFiles;

/// Default control socket.
pub const DEFAULT_LISTEN: &str = "unix:/run/dpvs/dpvs.sock";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub eal: EalConf,
    pub workers: WorkersConf,
    #[serde(default)]
    pub dataplane: DataplaneConf,
    #[serde(default)]
    pub port: Vec<PortConf>,
    #[serde(default)]
    pub route: Vec<RouteConf>,
    #[serde(default)]
    pub service: Vec<ServiceConf>,
    #[serde(default)]
    pub timeouts: Option<TimeoutsConf>,
    #[serde(default)]
    pub control: ControlConf,
    /// Absent: no metrics endpoint.
    #[serde(default)]
    pub metrics: Option<MetricsConf>,
    /// Connection sync daemons started with dpvsd (docs/ha.md).
    #[serde(default)]
    pub sync_daemon: Vec<SyncDaemonConf>,
}

/// `[[sync_daemon]]`: ipvsadm's `--start-daemon` in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncDaemonConf {
    /// `master` or `backup`.
    pub state: String,
    pub mcast_interface: String,
    #[serde(default)]
    pub syncid: u32,
    pub mcast_group: Option<String>,
    pub mcast_port: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EalConf {
    #[serde(default)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersConf {
    pub cores: Vec<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConf {
    pub mbufs: Option<u32>,
    pub conn_capacity: Option<u32>,
    /// Workers pause briefly after a run of empty polls (for shared hosts, tests).
    pub adaptive_poll: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConf {
    pub name: String,
    pub device: String,
    pub queues: Option<u16>,
    pub mtu: Option<u16>,
    /// How connections' packets reach their owner worker: "auto" (default),
    /// "rss" (RSS pre-calculation or refuse to start), "flow" (rte_flow rules
    /// or refuse to start), "handover".
    pub steering: Option<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
    /// A kernel interface named after the port (the exception path); absent:
    /// on for a PCI device, off for a vdev (docs/kni.md).
    pub kni: Option<bool>,
}

/// A store error found under `at` (`service[0]`): `at.field: message` when
/// it names a field, else `at: error`.
fn at_field(at: &str, e: StoreError) -> String {
    match e {
        StoreError::Invalid { field, message } => format!("{at}.{field}: {message}"),
        e => format!("{at}: {e}"),
    }
}

impl PortConf {
    /// `kni`, with its default: a NIC (PCI address) gets a kernel interface
    /// unless `kni = false`, as DPVS gives each port its KNI; a vdev only
    /// with `kni = true` (af_packet and af_xdp ports are on a kernel
    /// interface already, ring and memif ports are tests and benchmarks).
    pub fn kni_mode(&self) -> dataplane::KniMode {
        match self.kni {
            Some(true) => dataplane::KniMode::On,
            Some(false) => dataplane::KniMode::Off,
            None if dataplane::is_pci(&self.device) => dataplane::KniMode::Auto,
            None => dataplane::KniMode::Off,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConf {
    pub prefix: String,
    pub via: Option<String>,
    pub port: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConf {
    /// "tcp" or "udp".
    pub proto: String,
    pub vip: String,
    pub vport: u16,
    pub scheduler: Option<String>,
    #[serde(default)]
    pub sched_flags: Vec<String>,
    /// Persistence timeout in seconds; absent = not persistent.
    pub persistent: Option<u32>,
    /// Persistence netmask (`255.255.255.0` or a prefix length); needs `persistent`.
    pub netmask: Option<String>,
    pub conn_timeout: Option<u32>,
    /// ipvsadm `-o`: one-packet scheduling (UDP services).
    #[serde(default)]
    pub ops: bool,
    /// DPVS `--proxy-protocol`: "v1", "v2" or "none" (TCP services only).
    pub proxy_protocol: Option<String>,
    #[serde(default)]
    pub dest: Vec<DestConf>,
    /// FULLNAT local addresses (DPVS `-P -z LIP -F PORT`).
    #[serde(default)]
    pub laddr: Vec<LaddrConf>,
    /// keepalived's sorry_server: "IP:PORT".
    pub sorry_server: Option<String>,
    /// The passive health check (docs/health.md).
    #[serde(default)]
    pub passive_check: bool,
    /// DPVS `-j enable`: the SYN proxy (TCP; NAT and FULLNAT real servers).
    #[serde(default)]
    pub synproxy: bool,
    /// `--conn-limit`: the most connections the service holds (active +
    /// inactive over its real servers); absent or 0 = no limit.
    pub conn_limit: Option<u32>,
    /// keepalived's quorum and hysteresis (docs/health.md).
    pub quorum: Option<u32>,
    pub hysteresis: Option<u32>,
    /// keepalived's quorum_up / quorum_down commands (docs/health.md).
    pub quorum_up: Option<String>,
    pub quorum_down: Option<String>,
    /// Access lists (DPVS `-U`, `-O`; docs/security.md): client addresses or
    /// prefixes, `["10.1.0.0/16", "192.0.2.7"]`.
    #[serde(default)]
    pub blacklist: Vec<String>,
    #[serde(default)]
    pub whitelist: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaddrConf {
    pub addr: String,
    /// The port that owns the address (the side facing the real servers).
    pub port: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestConf {
    pub addr: String,
    /// Absent = the virtual port.
    pub port: Option<u16>,
    pub weight: Option<u32>,
    /// "nat", "fullnat", "dr" (default) or "tun".
    pub mode: Option<String>,
    pub u_threshold: Option<u32>,
    pub l_threshold: Option<u32>,
    /// Its health check (docs/health.md).
    pub check: Option<CheckConf>,
}

/// `check = { type = "http", path = "/health", interval = 2, ... }`; absent
/// keys take the defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConf {
    #[serde(rename = "type")]
    pub kind: String,
    pub port: Option<u16>,
    pub path: Option<String>,
    /// `200`, or codes and ranges as keepalived's `status_code`:
    /// `"200-299,301"`.
    pub status: Option<StatusConf>,
    pub digest: Option<String>,
    pub payload: Option<String>,
    pub command: Option<String>,
    pub interval: Option<u32>,
    pub timeout: Option<u32>,
    pub retries: Option<u32>,
    pub rise: Option<u32>,
    pub delay_before_retry: Option<u32>,
    pub on_failure: Option<String>,
}

/// A check's `status`: a number or a string of codes and ranges.
#[derive(Debug, Clone)]
pub enum StatusConf {
    Code(u16),
    Codes(String),
}

impl<'de> Deserialize<'de> for StatusConf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = StatusConf;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a status code (200) or codes and ranges (\"200-299,301\")")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StatusConf, E> {
                u16::try_from(v)
                    .map(StatusConf::Code)
                    .map_err(|_| E::custom(format!("check status {v}: not an HTTP status")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StatusConf, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StatusConf, E> {
                Ok(StatusConf::Codes(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl CheckConf {
    fn to_pb(&self) -> proto::v1::HealthCheck {
        proto::v1::HealthCheck {
            r#type: self.kind.clone(),
            port: self.port.map_or(0, u32::from),
            path: self.path.clone().unwrap_or_default(),
            status: match self.status {
                Some(StatusConf::Code(c)) => u32::from(c),
                _ => 0,
            },
            status_codes: match &self.status {
                Some(StatusConf::Codes(c)) => c.clone(),
                _ => String::new(),
            },
            digest: self.digest.clone().unwrap_or_default(),
            payload: self.payload.clone().unwrap_or_default(),
            command: self.command.clone().unwrap_or_default(),
            interval_s: self.interval.unwrap_or(0),
            timeout_s: self.timeout.unwrap_or(0),
            retries: self.retries.unwrap_or(0),
            rise: self.rise.unwrap_or(0),
            delay_before_retry_s: self.delay_before_retry.unwrap_or(0),
            on_failure: self.on_failure.clone().unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConf {
    pub tcp: Option<u32>,
    pub tcpfin: Option<u32>,
    pub udp: Option<u32>,
    /// DPVS's other TCP state timeouts (its `ipvs_defs tcp timeout` block),
    /// seconds; read at start (not by SIGHUP or `apply`).
    pub syn_sent: Option<u32>,
    pub syn_recv: Option<u32>,
    pub time_wait: Option<u32>,
    pub close: Option<u32>,
    pub close_wait: Option<u32>,
    pub last_ack: Option<u32>,
    pub listen: Option<u32>,
    pub synack: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConf {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where dpvsd keeps the running configuration (services, addresses,
    /// routes, timeouts) across restarts; absent = not kept.
    pub state_file: Option<PathBuf>,
    /// A group whose members may use the unix socket (mode 0660); absent =
    /// owner only (0600).
    pub socket_group: Option<String>,
    /// TCP only: dpvsd's certificate chain (PEM). With `tls_key` and
    /// `tls_client_ca`, the listener speaks mutual TLS.
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM).
    pub tls_key: Option<PathBuf>,
    /// The CA (PEM) every client certificate must chain to.
    pub tls_client_ca: Option<PathBuf>,
    /// Services make their VIPs the director's addresses (answered in ARP /
    /// NDP); `false` on directors whose VIPs keepalived's VRRP moves
    /// (docs/ha.md). Absent: true.
    pub claim_vips: Option<bool>,
    /// Where dpvsd saves its connections when it stops and restores them
    /// from when it starts (docs/ha.md); absent = not kept.
    pub conns_file: Option<PathBuf>,
    /// A port with a kernel interface on which the usable VIPs are host
    /// addresses, for a routing daemon to announce (docs/ha.md).
    pub announce_vips: Option<String>,
}

impl Default for ControlConf {
    fn default() -> Self {
        ControlConf {
            listen: default_listen(),
            state_file: None,
            socket_group: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            claim_vips: None,
            conns_file: None,
            announce_vips: None,
        }
    }
}

impl ControlConf {
    /// The TLS files of the control listener, by the rules: a unix socket
    /// never uses TLS (its file mode protects it); TCP off loopback needs all
    /// three files; TCP on loopback takes all three or none.
    fn tls(&self, listen: &Listen) -> Result<Option<TlsFiles>, String> {
        let keys = [
            ("tls_cert", &self.tls_cert),
            ("tls_key", &self.tls_key),
            ("tls_client_ca", &self.tls_client_ca),
        ];
        for (k, v) in keys {
            if v.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(format!("control.{k}: empty path"));
            }
        }
        let given = keys.iter().find(|(_, v)| v.is_some()).map(|(k, _)| *k);
        let missing = keys.iter().find(|(_, v)| v.is_none()).map(|(k, _)| *k);
        let all = "control.tls_cert, control.tls_key and control.tls_client_ca";
        match listen {
            Listen::Unix(_) => match given {
                Some(k) => Err(format!(
                    "control.{k}: TLS is for TCP listeners; control.listen is a unix socket, \
                     which its file mode protects (remove the tls_* keys)"
                )),
                None => Ok(None),
            },
            Listen::Tcp(addr) => {
                let loopback = addr.ip().is_loopback();
                match (given, missing) {
                    (None, _) if loopback => Ok(None),
                    (None, _) => Err(format!(
                        "control.listen: listen address \"{}\" is not loopback: TCP there \
                         needs mutual TLS (set {all})",
                        self.listen
                    )),
                    (Some(_), Some(m)) if loopback => Err(format!(
                        "control.{m}: missing: TLS needs {all} together \
                         (clients must present a certificate signed by tls_client_ca)"
                    )),
                    (Some(_), Some(m)) => Err(format!(
                        "control.{m}: missing: listen address \"{}\" is not loopback, so it \
                         needs mutual TLS: {all}",
                        self.listen
                    )),
                    (Some(_), None) => Ok(Some(TlsFiles {
                        cert: self.tls_cert.clone().unwrap_or_default(),
                        key: self.tls_key.clone().unwrap_or_default(),
                        ca: self.tls_client_ca.clone().unwrap_or_default(),
                    })),
                }
            }
        }
    }
}

fn default_listen() -> String {
    DEFAULT_LISTEN.to_string()
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConf {
    /// `IP:PORT` to serve `GET /metrics` on.
    pub listen: String,
}

/// Parses `[metrics] listen`: an IP address and a port (`127.0.0.1:9917`,
/// `[::1]:9917`, `0.0.0.0:9917`); no host names, no port 0.
pub fn parse_metrics_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    let addr: std::net::SocketAddr = s.parse().map_err(|_| {
        format!("invalid address \"{s}\" (IP:PORT, e.g. 127.0.0.1:9917 or [::1]:9917)")
    })?;
    if addr.port() == 0 {
        return Err(format!("\"{s}\": port 0 (Prometheus needs a fixed port)"));
    }
    Ok(addr)
}

/// Where the gRPC server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Unix(PathBuf),
    Tcp(std::net::SocketAddr),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
            Listen::Tcp(a) => write!(f, "{a}"),
        }
    }
}

/// Parses `unix:/path` or `IP:PORT`. Whether a TCP address needs TLS (it does
/// off loopback) is [`ConfigFile::validate`]'s rule, which sees the tls_* keys.
pub fn parse_listen(s: &str) -> Result<Listen, String> {
    if let Some(path) = s.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(format!("invalid listen address \"{s}\": empty socket path"));
        }
        return Ok(Listen::Unix(PathBuf::from(path)));
    }
    let addr: std::net::SocketAddr = s
        .parse()
        .map_err(|_| format!("invalid listen address \"{s}\" (unix:/path or host:port)"))?;
    Ok(Listen::Tcp(addr))
}

/// A validated configuration: everything `dpvsd` starts from.
#[derive(Debug, Clone)]
pub struct Config {
    pub dataplane: DataplaneSpec,
    pub store: Store,
    pub listen: Listen,
    /// `[control] state_file`.
    pub state_file: Option<PathBuf>,
    /// `[control] socket_group`.
    pub socket_group: Option<String>,
    /// `[control] tls_cert`, `tls_key`, `tls_client_ca`: the TCP listener
    /// speaks mutual TLS. Named only; dpvsd reads them at start
    /// ([`TlsFiles::load`]), so a remote `ApplyConfig` never makes it read files.
    pub tls: Option<TlsFiles>,
    /// Where to serve Prometheus metrics; `None`: nowhere.
    pub metrics: Option<std::net::SocketAddr>,
    /// The TCP state timeouts `[timeouts]` sets beyond ipvsadm's three
    /// (those are the store's): the base `--set` applies to.
    pub tcp_states: conntrack::Timeouts,
    /// `[[sync_daemon]]`: started once the dataplane runs.
    pub sync_daemons: Vec<crate::sync::DaemonSpec>,
    /// `[control] conns_file`.
    pub conns_file: Option<PathBuf>,
    /// `[control] announce_vips`: a port with `kni = true`.
    pub announce_vips: Option<String>,
}

/// Reads and validates a config file; errors are `FILE: key: problem`.
pub fn load(path: &Path) -> Result<Config, String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{name}: {e}"))
}

/// Parses and validates config text; errors are `key: problem`.
pub fn parse(text: &str) -> Result<Config, String> {
    let de = toml::Deserializer::new(text);
    let file: ConfigFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.inner().message().trim().replace('\n', " ");
        if path.is_empty() || path == "." {
            msg
        } else {
            format!("{path}: {msg}")
        }
    })?;
    file.validate()
}

fn proto_of(s: &str) -> Option<Proto> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Some(Proto::Tcp),
        "udp" => Some(Proto::Udp),
        _ => None,
    }
}

/// Parses a forwarding mode name (`nat`, `fullnat`, `dr`, `tun`, and ipvsadm's words).
pub fn parse_mode(s: &str) -> Option<ForwardMode> {
    match s.to_ascii_lowercase().as_str() {
        "nat" | "masq" | "masquerading" => Some(ForwardMode::Nat),
        "fullnat" | "fnat" => Some(ForwardMode::FullNat),
        "dr" | "route" | "gatewaying" => Some(ForwardMode::Dr),
        "tun" | "tunnel" | "ipip" => Some(ForwardMode::Tun),
        _ => None,
    }
}

impl ConfigFile {
    /// Checks everything and builds the [`Config`].
    pub fn validate(&self) -> Result<Config, String> {
        // workers
        if self.workers.cores.is_empty() {
            return Err("workers.cores: empty".into());
        }
        let mut seen = BTreeSet::new();
        for (i, c) in self.workers.cores.iter().enumerate() {
            if !seen.insert(*c) {
                return Err(format!("workers.cores[{i}]: core {c} listed twice"));
            }
        }
        let nworkers = self.workers.cores.len();
        let queues_default = u16::try_from(nworkers).unwrap_or(u16::MAX);

        // ports
        if self.port.is_empty() {
            return Err("port: at least one [[port]] is needed".into());
        }
        let mut ports = Vec::new();
        let mut names = BTreeSet::new();
        for (i, p) in self.port.iter().enumerate() {
            if p.name.is_empty() {
                return Err(format!("port[{i}].name: empty"));
            }
            if !names.insert(p.name.as_str()) {
                return Err(format!(
                    "port[{i}].name: duplicate port name \"{}\"",
                    p.name
                ));
            }
            if p.device.is_empty() {
                return Err(format!("port[{i}].device: empty"));
            }
            let queues = p.queues.unwrap_or(queues_default);
            if queues == 0 || usize::from(queues) < nworkers {
                return Err(format!(
                    "port[{i}].queues: {queues} is fewer than the {nworkers} workers (one queue pair per worker)"
                ));
            }
            let mtu = p.mtu.unwrap_or(1500);
            if !(68..=9600).contains(&mtu) {
                return Err(format!("port[{i}].mtu: {mtu} out of range 68..9600"));
            }
            let steering = match p.steering.as_deref().unwrap_or("auto") {
                "auto" => Steering::Auto,
                "rss" => Steering::Rss,
                "flow" => Steering::Flow,
                "handover" => Steering::Handover,
                other => {
                    return Err(format!(
                    "port[{i}].steering: unknown steering \"{other}\" (auto, rss, flow, handover)"
                ))
                }
            };
            ports.push(PortSpec {
                name: p.name.clone(),
                device: p.device.clone(),
                queues,
                mtu,
                steering,
                kni: p.kni_mode(),
            });
        }
        let mut store = Store::new(ports.iter().map(|p| p.name.clone()).collect());
        store.set_claim_vips(self.control.claim_vips.unwrap_or(true));

        for (i, p) in self.port.iter().enumerate() {
            for (j, a) in p.addresses.iter().enumerate() {
                let key = format!("port[{i}].addresses[{j}]");
                let (addr, prefix_len) = parse_prefix(a, true).map_err(|e| {
                    if e.starts_with("invalid prefix length") {
                        format!("{key}: {e}")
                    } else {
                        format!("{key}: invalid address \"{a}\"")
                    }
                })?;
                store
                    .add_addr(AddrSpec {
                        port: p.name.clone(),
                        addr,
                        prefix_len,
                    })
                    .map_err(|e| format!("{key}: {}", e.message()))?;
            }
        }

        for (i, r) in self.route.iter().enumerate() {
            let (prefix, prefix_len) =
                parse_prefix(&r.prefix, false).map_err(|e| format!("route[{i}].prefix: {e}"))?;
            let via = match &r.via {
                Some(v) => Some(parse_ip(v).map_err(|e| format!("route[{i}].via: {e}"))?),
                None => None,
            };
            if !names.contains(r.port.as_str()) {
                return Err(format!("route[{i}].port: unknown port \"{}\"", r.port));
            }
            store
                .add_route(RouteSpec {
                    prefix,
                    prefix_len,
                    via,
                    port: r.port.clone(),
                })
                .map_err(|e| {
                    let key = match &e {
                        StoreError::Invalid { field: "via", .. } => "via",
                        StoreError::Invalid { field: "port", .. } => "port",
                        _ => "prefix",
                    };
                    format!("route[{i}].{key}: {}", e.message())
                })?;
        }

        for (i, s) in self.service.iter().enumerate() {
            let spec = service_spec(i, s)?;
            let key = spec.key;
            let dests: Vec<(std::net::IpAddr, u16)> =
                spec.dests.iter().map(|d| (d.addr, d.port)).collect();
            for (j, d) in spec.dests.iter().enumerate() {
                crate::store::check_dest(&key, d)
                    .map_err(|e| at_field(&format!("service[{i}].dest[{j}]"), e))?;
            }
            store.add_service(spec).map_err(|e| match e {
                StoreError::Invalid { field, message } => {
                    format!("service[{i}].{}: {message}", service_key_of(field))
                }
                e => format!("service[{i}]: {e}"),
            })?;
            if s.quorum.is_some() || s.hysteresis.is_some() {
                store
                    .set_quorum(&key, s.quorum.unwrap_or(1), s.hysteresis.unwrap_or(0))
                    .map_err(|e| at_field(&format!("service[{i}]"), e))?;
            }
            if s.passive_check {
                store
                    .set_passive_check(&key, true)
                    .map_err(|e| format!("service[{i}].passive_check: {e}"))?;
            }
            if let Some(v) = &s.sorry_server {
                let at = format!("service[{i}].sorry_server");
                let (ip, port) = parse_addr_port(v, false).map_err(|e| format!("{at}: {e}"))?;
                let port = port.ok_or_else(|| format!("{at}: \"{v}\" needs a port"))?;
                store
                    .set_sorry(&key, Some(std::net::SocketAddr::new(ip, port)))
                    .map_err(|e| format!("{at}: {}", e.message()))?;
            }
            if s.quorum_up.is_some() || s.quorum_down.is_some() {
                let scripts = crate::store::QuorumScripts {
                    up: s.quorum_up.clone().unwrap_or_default(),
                    down: s.quorum_down.clone().unwrap_or_default(),
                };
                store
                    .set_quorum_scripts(&key, scripts)
                    .map_err(|e| at_field(&format!("service[{i}]"), e))?;
            }
            for (j, (d, (addr, port))) in s.dest.iter().zip(dests).enumerate() {
                let Some(c) = &d.check else { continue };
                let at = format!("service[{i}].dest[{j}].check");
                let spec =
                    crate::convert::check_from_pb(&c.to_pb()).map_err(|e| format!("{at}: {e}"))?;
                store
                    .set_check(&key, &addr, port, Some(spec))
                    .map_err(|e| format!("{at}: {}", e.message()))?;
            }
            if let Some(v) = &s.proxy_protocol {
                let pp = match v.to_ascii_lowercase().as_str() {
                    "v1" => Some(dataplane::ProxyProtocol::V1),
                    "v2" => Some(dataplane::ProxyProtocol::V2),
                    "none" => None,
                    _ => {
                        return Err(format!(
                            "service[{i}].proxy_protocol: unknown value \"{v}\" (v1, v2 or none)"
                        ))
                    }
                };
                store
                    .set_proxy_protocol(&key, pp)
                    .map_err(|e| format!("service[{i}].proxy_protocol: {}", e.message()))?;
            }
            for (list, entries) in [
                (AclList::Blacklist, &s.blacklist),
                (AclList::Whitelist, &s.whitelist),
            ] {
                for (j, e) in entries.iter().enumerate() {
                    let at = format!("service[{i}].{}[{j}]", list.name());
                    let (addr, len) = parse_acl_entry(e).map_err(|m| format!("{at}: {m}"))?;
                    store
                        .add_acl_entry(&key, list, addr, len)
                        .map_err(|e| format!("{at}: {}", e.message()))?;
                }
            }
            if s.synproxy {
                store
                    .set_synproxy(&key, true)
                    .map_err(|e| format!("service[{i}].synproxy: {}", e.message()))?;
            }
            if let Some(n) = s.conn_limit {
                store
                    .set_conn_limit(&key, n)
                    .map_err(|e| format!("service[{i}].conn_limit: {}", e.message()))?;
            }
            for (j, l) in s.laddr.iter().enumerate() {
                let at = format!("service[{i}].laddr[{j}]");
                let addr = parse_ip(&l.addr).map_err(|e| format!("{at}.addr: {e}"))?;
                if !names.contains(l.port.as_str()) {
                    return Err(format!("{at}.port: unknown port \"{}\"", l.port));
                }
                store
                    .add_laddr(dataplane::LocalAddrSpec {
                        service: key,
                        addr,
                        port: l.port.clone(),
                    })
                    .map_err(|e| at_field(&at, e))?;
            }
        }

        let mut tcp_states = conntrack::Timeouts::default();
        if let Some(t) = self.timeouts {
            let states = [
                ("syn_sent", t.syn_sent, &mut tcp_states.tcp_syn_sent_s),
                ("syn_recv", t.syn_recv, &mut tcp_states.tcp_syn_recv_s),
                ("time_wait", t.time_wait, &mut tcp_states.tcp_time_wait_s),
                ("close", t.close, &mut tcp_states.tcp_close_s),
                ("close_wait", t.close_wait, &mut tcp_states.tcp_close_wait_s),
                ("last_ack", t.last_ack, &mut tcp_states.tcp_last_ack_s),
                ("listen", t.listen, &mut tcp_states.tcp_listen_s),
                ("synack", t.synack, &mut tcp_states.tcp_synack_s),
            ];
            for (k, v, slot) in states {
                match v {
                    Some(0) => return Err(format!("timeouts.{k}: must be at least 1 second")),
                    Some(s) => *slot = s,
                    None => {}
                }
            }
            for (k, v) in [("tcp", t.tcp), ("tcpfin", t.tcpfin), ("udp", t.udp)] {
                if v == Some(0) {
                    return Err(format!("timeouts.{k}: must be at least 1 second"));
                }
            }
            store.set_timeouts(Timeouts {
                tcp_s: t.tcp.unwrap_or(0),
                tcp_fin_s: t.tcpfin.unwrap_or(0),
                udp_s: t.udp.unwrap_or(0),
            });
        }

        let listen =
            parse_listen(&self.control.listen).map_err(|e| format!("control.listen: {e}"))?;
        let tls = self.control.tls(&listen)?;
        let metrics = match &self.metrics {
            Some(m) => {
                Some(parse_metrics_listen(&m.listen).map_err(|e| format!("metrics.listen: {e}"))?)
            }
            None => None,
        };
        if let (Some(m), Listen::Tcp(c)) = (metrics, &listen) {
            if m == *c {
                return Err(format!(
                    "metrics.listen: {m} is also control.listen (give metrics a port of its own)"
                ));
            }
        }

        let defaults = DataplaneSpec::default();
        let eal_args = eal_args_with_cores(&self.eal.args, &self.workers.cores)
            .map_err(|e| format!("workers.cores: {e}"))?;
        // `..defaults`: fields the dataplane adds later get their defaults here.
        #[allow(clippy::needless_update)]
        let dataplane = DataplaneSpec {
            eal_args,
            ports,
            worker_cores: self.workers.cores.clone(),
            mbufs: self.dataplane.mbufs.unwrap_or(defaults.mbufs),
            conn_capacity: self
                .dataplane
                .conn_capacity
                .unwrap_or(defaults.conn_capacity),
            adaptive_poll: self
                .dataplane
                .adaptive_poll
                .unwrap_or(defaults.adaptive_poll),
            ..defaults.clone()
        };
        if dataplane.mbufs == 0 {
            return Err("dataplane.mbufs: must be positive".into());
        }
        if dataplane.conn_capacity == 0 {
            return Err("dataplane.conn_capacity: must be positive".into());
        }
        if self.control.socket_group.is_some() && !matches!(listen, Listen::Unix(_)) {
            return Err("control.socket_group: needs a unix socket in control.listen".into());
        }
        if let Some(p) = &self.control.state_file {
            if p.as_os_str().is_empty() || p.is_dir() {
                return Err(format!(
                    "control.state_file: \"{}\" is not a file path",
                    p.display()
                ));
            }
        }
        let announce_vips = match &self.control.announce_vips {
            Some(p)
                if !self
                    .port
                    .iter()
                    .any(|x| &x.name == p && x.kni_mode() != dataplane::KniMode::Off) =>
            {
                return Err(format!(
                    "control.announce_vips: \"{p}\" is not a port with kni = true"
                ))
            }
            other => other.clone(),
        };
        let mut sync_daemons: Vec<crate::sync::DaemonSpec> = Vec::new();
        for (i, d) in self.sync_daemon.iter().enumerate() {
            let spec = crate::convert::daemon_from_pb(&proto::v1::SyncDaemon {
                state: d.state.clone(),
                mcast_interface: d.mcast_interface.clone(),
                syncid: d.syncid,
                mcast_group: d.mcast_group.clone().unwrap_or_default(),
                mcast_port: d.mcast_port.unwrap_or(0),
            })
            .map_err(|e| format!("sync_daemon[{i}]: {e}"))?;
            if sync_daemons.iter().any(|x| x.role == spec.role) {
                return Err(format!(
                    "sync_daemon[{i}].state: a second {} daemon",
                    spec.role.name()
                ));
            }
            sync_daemons.push(spec);
        }
        Ok(Config {
            dataplane,
            store,
            listen,
            state_file: self.control.state_file.clone(),
            socket_group: self.control.socket_group.clone(),
            tls,
            metrics,
            tcp_states,
            sync_daemons,
            conns_file: self.control.conns_file.clone(),
            announce_vips,
        })
    }
}

/// The `[[service]]` key of a field the store names as `dpvs.proto` does.
fn service_key_of(field: &str) -> &str {
    match field {
        "timeout_s" => "persistent",
        "netmask_len" => "netmask",
        "conn_timeout_s" => "conn_timeout",
        f => f,
    }
}

fn service_spec(i: usize, s: &ServiceConf) -> Result<ServiceSpec, String> {
    let proto = proto_of(&s.proto).ok_or_else(|| {
        format!(
            "service[{i}].proto: unknown protocol \"{}\" (tcp or udp)",
            s.proto
        )
    })?;
    let vip = parse_ip(&s.vip).map_err(|e| format!("service[{i}].vip: {e}"))?;
    let key = ServiceKey {
        proto,
        vip,
        vport: s.vport,
    };
    let persistence = match (s.persistent, &s.netmask) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(format!("service[{i}].netmask: needs `persistent`"));
        }
        (Some(t), m) => {
            let netmask_len = match m {
                Some(m) => parse_netmask(m).map_err(|e| format!("service[{i}].netmask: {e}"))?,
                None => crate::addr::max_prefix(&vip),
            };
            Some(Persistence {
                timeout_s: if t == 0 { DEFAULT_PERSISTENCE_S } else { t },
                netmask_len,
            })
        }
    };
    let scheduler = s
        .scheduler
        .clone()
        .unwrap_or_else(|| DEFAULT_SCHEDULER.to_string());
    crate::scheduler::check_scheduler(&scheduler)
        .map_err(|e| format!("service[{i}].scheduler: {e}"))?;
    let mut dests = Vec::new();
    for (j, d) in s.dest.iter().enumerate() {
        let addr = parse_ip(&d.addr).map_err(|e| format!("service[{i}].dest[{j}].addr: {e}"))?;
        let mode = match &d.mode {
            Some(m) => parse_mode(m).ok_or_else(|| {
                format!(
                    "service[{i}].dest[{j}].mode: unknown forward mode \"{m}\" (nat, fullnat, dr, tun)"
                )
            })?,
            None => ForwardMode::Dr,
        };
        dests.push(DestSpec {
            addr,
            port: d.port.unwrap_or(s.vport),
            weight: d.weight.unwrap_or(1),
            mode,
            u_threshold: d.u_threshold.unwrap_or(0),
            l_threshold: d.l_threshold.unwrap_or(0),
            inhibited: false,
        });
    }
    Ok(ServiceSpec {
        key,
        scheduler,
        sched_flags: s.sched_flags.clone(),
        persistence,
        conn_timeout_s: s.conn_timeout,
        ops: s.ops,
        dests,
    })
}

/// The EAL needs the worker lcores enabled: the dataplane's rule for adding a
/// core list (`-l MAIN,WORKERS...`) when `args` has none.
pub fn eal_args_with_cores(args: &[String], workers: &[u32]) -> Result<Vec<String>, String> {
    Ok(dataplane::with_core_list(args, workers))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const EXAMPLE: &str = r#"
[eal]
args = ["--no-huge", "-m", "512", "--no-pci", "--file-prefix", "lb1"]
[workers]
cores = [1]                      # worker lcores; the control plane runs elsewhere
[[port]]
name = "dpdk0"
device = "net_af_packet0,iface=lb0"   # vdev spec or PCI address
queues = 1
addresses = ["10.0.0.1/24"]
[[port]]
name = "dpdk1"
device = "net_af_packet1,iface=lb1"
addresses = ["192.168.0.1/24"]
[[route]]
prefix = "0.0.0.0/0"
via = "10.0.0.254"
port = "dpdk0"
[control]
listen = "unix:/run/dpvs/dpvs.sock"
"#;

    /// deploy/ha's sample: two kernel interfaces, the VIPs left to
    /// keepalived, a master sync daemon.
    #[test]
    fn the_ha_sample_and_sync_daemons() {
        let c = parse(include_str!("../../deploy/ha/dpvs-lb1.toml")).unwrap();
        assert!(!c.store.claims_vips());
        assert_eq!(c.sync_daemons.len(), 1);
        assert_eq!(
            c.sync_daemons[0].describe(),
            "master sync daemon (mcast=dpdk1, syncid=7)"
        );
        // Services do not make their VIP an address of the director.
        assert!(c
            .store
            .addrs()
            .iter()
            .all(|a| a.addr.to_string() != "10.0.0.100"));
        assert!(parse(EXAMPLE).unwrap().store.claims_vips());
        let with = |t: &str| parse(&format!("{EXAMPLE}{t}"));
        let d = with(
            "[[sync_daemon]]\nstate = \"backup\"\nmcast_interface = \"dpdk1\"\nmcast_group = \"239.1.2.3\"\nmcast_port = 9000\n",
        )
        .unwrap();
        assert_eq!(
            d.sync_daemons[0].describe(),
            "backup sync daemon (mcast=dpdk1, syncid=0, group=239.1.2.3, port=9000)"
        );
        assert_eq!(
            parse(&EXAMPLE.replace(
                "listen = \"unix:/run/dpvs/dpvs.sock\"",
                "listen = \"unix:/run/dpvs/dpvs.sock\"\nannounce_vips = \"dpdk0\""
            ))
            .unwrap_err(),
            "control.announce_vips: \"dpdk0\" is not a port with kni = true"
        );
        for (t, e) in [
            (
                "state = \"primary\"\nmcast_interface = \"x\"",
                "sync_daemon[0]: sync daemon state 'primary': expected master or backup",
            ),
            (
                "state = \"master\"\nmcast_interface = \"x\"\nsyncid = 300",
                "sync_daemon[0]: syncid 300: expected 0-255",
            ),
            (
                "state = \"master\"\nmcast_interface = \"x\"\nmcast_group = \"10.0.0.1\"",
                "sync_daemon[0]: mcast_group 10.0.0.1: not a multicast address",
            ),
            (
                "state = \"master\"\nmcast_interface = \"x\"\n[[sync_daemon]]\nstate = \"master\"\nmcast_interface = \"y\"",
                "sync_daemon[1].state: a second master daemon",
            ),
        ] {
            assert_eq!(with(&format!("[[sync_daemon]]\n{t}\n")).unwrap_err(), e);
        }
    }

    #[test]
    fn example_parses() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(
            c.dataplane.eal_args,
            [
                "--no-huge",
                "-m",
                "512",
                "--no-pci",
                "--file-prefix",
                "lb1",
                "-l",
                "0,1"
            ]
        );
        assert_eq!(c.dataplane.worker_cores, vec![1]);
        assert_eq!(c.dataplane.ports.len(), 2);
        assert_eq!(c.dataplane.ports[1].queues, 1);
        assert_eq!(c.dataplane.ports[1].mtu, 1500);
        let d = c.store.desc();
        assert_eq!(d.addrs.len(), 2);
        assert_eq!(d.addrs[1].port, "dpdk1");
        assert_eq!(d.routes[0].via, Some("10.0.0.254".parse().unwrap()));
        assert_eq!(c.listen, Listen::Unix("/run/dpvs/dpvs.sock".into()));
    }

    #[test]
    fn services_in_config() {
        let text = format!(
            "{EXAMPLE}\n[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\nscheduler = \"rr\"\nproxy_protocol = \"v2\"\nconn_limit = 5000\n\
             blacklist = [\"10.1.0.0/16\", \"192.0.2.7\"]\nwhitelist = [\"10.0.0.0/8\"]\n\
             [[service.dest]]\naddr = \"192.168.0.11\"\nmode = \"nat\"\nweight = 2\n\
             [[service.dest]]\naddr = \"192.168.0.12\"\nport = 8080\nmode = \"fullnat\"\n\
             [timeouts]\ntcp = 600\ntime_wait = 7\nclose = 3\n"
        );
        let c = parse(&text).unwrap();
        // DPVS's per-state keys are the base ipvsadm's three apply to.
        assert_eq!(
            (c.tcp_states.tcp_time_wait_s, c.tcp_states.tcp_close_s),
            (7, 3)
        );
        assert_eq!(c.tcp_states.tcp_syn_recv_s, 30, "the others keep IPVS's");
        let e = parse(&format!("{EXAMPLE}\n[timeouts]\ntime_wait = 0\n")).unwrap_err();
        assert_eq!(e, "timeouts.time_wait: must be at least 1 second");
        let d = c.store.desc();
        assert_eq!(d.services.len(), 1);
        assert_eq!(d.services[0].dests[0].port, 80);
        assert_eq!(d.services[0].dests[0].weight, 2);
        assert_eq!(d.services[0].dests[1].mode, ForwardMode::FullNat);
        // The VIP was put on dpdk0, whose prefix contains it.
        assert!(d.addrs.iter().any(|a| a.addr.to_string() == "10.0.0.100"
            && a.port == "dpdk0"
            && a.prefix_len == 32));
        assert_eq!(
            c.store.ext().proxy_protocol,
            vec![(d.services[0].key, dataplane::ProxyProtocol::V2)]
        );
        assert_eq!(c.store.timeouts().tcp_s, 600);
        assert_eq!(c.store.timeouts().udp_s, 300);
        assert_eq!(c.store.ext().conn_limit, vec![(d.services[0].key, 5000)]);
        let ip = |a: &str| a.parse().unwrap();
        assert_eq!(
            c.store.ext().acl,
            vec![(
                d.services[0].key,
                dataplane::AclSpec {
                    blacklist: vec![(ip("10.1.0.0"), 16), (ip("192.0.2.7"), 32)],
                    whitelist: vec![(ip("10.0.0.0"), 8)],
                }
            )]
        );
    }

    #[test]
    fn eal_core_list() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            eal_args_with_cores(&a(&["--no-huge"]), &[0, 2]).unwrap(),
            a(&["--no-huge", "-l", "1,0,2"])
        );
        assert_eq!(
            eal_args_with_cores(&a(&["-l", "0-1"]), &[1]).unwrap(),
            a(&["-l", "0-1"])
        );
        assert_eq!(
            eal_args_with_cores(&a(&["--lcores=0,1"]), &[1]).unwrap(),
            a(&["--lcores=0,1"])
        );
    }

    #[test]
    fn invalid_configs_name_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "10.0.0.1/24\"]",
                "10.0.0.300/24\"]",
                "port[0].addresses[0]: invalid address \"10.0.0.300/24\"",
            ),
            (
                "\"192.168.0.1/24\"]",
                "\"192.168.0.1/24\", \"bogus\"]",
                "port[1].addresses[1]: invalid address \"bogus\"",
            ),
            (
                "10.0.0.1/24\"]",
                "10.0.0.1/33\"]",
                "port[0].addresses[0]: invalid prefix length /33",
            ),
            (
                "port = \"dpdk0\"",
                "port = \"dpdk9\"",
                "route[0].port: unknown port \"dpdk9\"",
            ),
            ("cores = [1]", "cores = []", "workers.cores: empty"),
            (
                "cores = [1]",
                "cores = [1, 1]",
                "workers.cores[1]: core 1 listed twice",
            ),
            (
                "name = \"dpdk1\"",
                "name = \"dpdk0\"",
                "port[1].name: duplicate port name \"dpdk0\"",
            ),
            (
                "prefix = \"0.0.0.0/0\"",
                "prefix = \"0.0.0.0/40\"",
                "route[0].prefix: invalid prefix length /40",
            ),
            (
                "prefix = \"0.0.0.0/0\"",
                "prefix = \"10.0.0.1/8\"",
                "route[0].prefix: invalid prefix 10.0.0.1/8: host bits set",
            ),
            (
                "via = \"10.0.0.254\"",
                "via = \"10.0.0\"",
                "route[0].via: invalid address \"10.0.0\"",
            ),
            (
                "queues = 1",
                "queues = 1\nspeed = 10",
                "port[0].speed: unknown field `speed`",
            ),
            (
                "queues = 1",
                "queues = \"one\"",
                "port[0].queues: invalid type: string \"one\", expected u16",
            ),
            (
                "listen = \"unix:/run/dpvs/dpvs.sock\"",
                "listen = \"10.0.0.1:5000\"",
                "control.listen: listen address \"10.0.0.1:5000\" is not loopback",
            ),
            (
                "listen = \"unix:/run/dpvs/dpvs.sock\"",
                "listen = \"nowhere\"",
                "control.listen: invalid listen address \"nowhere\"",
            ),
            ("[workers]", "[workerz]", "workerz: unknown field `workerz`"),
            (
                "queues = 1",
                "queues = 1\nsteering = \"fast\"",
                "port[0].steering: unknown steering \"fast\" (auto, rss, flow, handover)",
            ),
            (
                "cores = [1]",
                "cores = [1, 2]",
                "port[0].queues: 1 is fewer than the 2 workers",
            ),
        ];
        for (from, to, want) in cases {
            assert!(EXAMPLE.contains(from), "case {from}");
            let text = EXAMPLE.replacen(from, to, 1);
            let err = parse(&text).expect_err(want);
            assert!(
                err.starts_with(want),
                "for {to:?}: got {err:?}, want prefix {want:?}"
            );
            assert!(!err.contains('\n'), "multi-line error {err:?}");
        }
    }

    #[test]
    fn check_status_as_a_code_or_codes_and_ranges() {
        let text = format!(
            "{EXAMPLE}\n[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\n\
             [[service.dest]]\naddr = \"192.168.0.11\"\ncheck = {{ type = \"http\", status = 204 }}\n\
             [[service.dest]]\naddr = \"192.168.0.12\"\ncheck = {{ type = \"http\", status = \"301,200-299\" }}\n\
             [[service.dest]]\naddr = \"192.168.0.13\"\ncheck = {{ type = \"https\" }}\n"
        );
        let c = parse(&text).unwrap();
        let key = c.store.services().next().unwrap().key;
        let status = |rs: &str| match &c.store.check(&key, &rs.parse().unwrap(), 80).unwrap().kind {
            crate::health::CheckKind::Http { status, .. } => status.to_string(),
            k => panic!("{k:?}"),
        };
        assert_eq!(status("192.168.0.11"), "204");
        assert_eq!(status("192.168.0.12"), "200-299,301");
        // keepalived's default.
        assert_eq!(status("192.168.0.13"), "200-299");
    }

    #[test]
    fn quorum_scripts() {
        let text = format!(
            "{EXAMPLE}\n[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\n\
             quorum = 2\nquorum_up = \"/usr/local/bin/page up\"\nquorum_down = \"/usr/local/bin/page down\"\n"
        );
        let c = parse(&text).unwrap();
        let key = c.store.services().next().unwrap().key;
        assert_eq!(
            c.store.quorum_scripts(&key),
            crate::store::QuorumScripts {
                up: "/usr/local/bin/page up".into(),
                down: "/usr/local/bin/page down".into()
            }
        );
        let e = parse(&text.replace("page down", "page\\ndown")).unwrap_err();
        assert_eq!(e, "service[0].quorum_down: one line of shell, without NUL");
    }

    /// A NIC gets a kernel interface unless told not to; a vdev only when told.
    #[test]
    fn kni_defaults_to_on_for_nics_only() {
        let port = |device: &str, kni: Option<bool>| PortConf {
            name: "dpdk0".into(),
            device: device.into(),
            queues: None,
            mtu: None,
            steering: None,
            addresses: vec![],
            kni,
        };
        use dataplane::KniMode::*;
        for (device, kni, want) in [
            ("0000:03:00.0", None, Auto),
            ("03:00.1", None, Auto),
            ("0000:03:00.0", Some(false), Off),
            ("0000:03:00.0", Some(true), On),
            ("net_af_packet0,iface=lb0", None, Off),
            ("net_af_packet0,iface=lb0", Some(true), On),
            ("net_ring0", None, Off),
        ] {
            assert_eq!(port(device, kni).kni_mode(), want, "{device} {kni:?}");
        }
        let c = parse(&EXAMPLE.replace(
            "device = \"net_af_packet0,iface=lb0\"",
            "device = \"0000:03:00.0\"",
        ))
        .unwrap();
        assert_eq!(
            c.dataplane.ports.iter().map(|p| p.kni).collect::<Vec<_>>(),
            [Auto, Off]
        );
    }

    #[test]
    fn invalid_service_configs() {
        let svc = |body: &str| format!("{EXAMPLE}\n[[service]]\n{body}\n");
        let cases: &[(&str, &str)] = &[
            ("proto = \"sctp\"\nvip = \"10.0.0.100\"\nvport = 80", "service[0].proto: unknown protocol \"sctp\""),
            ("proto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\nscheduler = \"xx\"", "service[0].scheduler: unknown scheduler \"xx\""),
            ("proto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\nproxy_protocol = \"v3\"", "service[0].proxy_protocol: unknown value \"v3\" (v1, v2 or none)"),
            ("proto = \"udp\"\nvip = \"10.0.0.100\"\nvport = 53\nproxy_protocol = \"v2\"", "service[0].proxy_protocol: UDP 10.0.0.100:53: Proxy Protocol is supported for TCP services only"),
            ("proto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\n[[service.dest]]\naddr = \"192.168.0.11\"\nport = 8080", "service[0].dest[0].port: DR and TUN forward to the virtual port: real server port 8080 != 80"),
            ("proto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\n[[service.dest]]\naddr = \"192.168.0.11\"\nmode = \"magic\"", "service[0].dest[0].mode: unknown forward mode \"magic\""),
            ("proto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\n[[service.dest]]\naddr = \"192.168.0.11\"\nmode = \"nat\"\n[[service.dest]]\naddr = \"192.168.0.12\"\nmode = \"nat\"\nweight = 70000", "service[0].dest[1].weight: invalid weight 70000: must be 0..65535"),
            ("proto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\n[[service.dest]]\naddr = \"2001:db8::1\"\nmode = \"nat\"", "service[0].dest[0].addr: real server 2001:db8::1 and virtual service 10.0.0.100 differ in address family"),
            ("proto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 0", "service[0].vport: zero port specified for non-persistent service"),
            ("proto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\nconn_timeout = 0", "service[0].conn_timeout: connection timeout must be at least 1 second"),
            ("proto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\nsched_flags = [\"sh-magic\"]", "service[0].sched_flags: unknown scheduler flag 'sh-magic'"),
            ("proto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\n[[service.laddr]]\naddr = \"127.0.0.1\"\nport = \"dpdk1\"", "service[0].laddr[0].addr: invalid local address 127.0.0.1"),
            ("proto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\nblacklist = [\"10.1.0.0/16\", \"10.2.0.1/16\"]", "service[0].blacklist[1]: invalid prefix \"10.2.0.1/16\": host bits set (the network is 10.2.0.0/16)"),
            ("proto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\nwhitelist = [\"2001:db8::/32\"]", "service[0].whitelist[0]: 2001:db8::/32 is IPv6, the service TCP 10.0.0.100:80 is IPv4"),
            ("proto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\nblacklist = [\"10.1.0.0/16\", \"10.1.0.0/16\"]", "service[0].blacklist[1]: blacklist entry 10.1.0.0/16 already exists in TCP 10.0.0.100:80"),
            ("proto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\nblacklist = \"10.1.0.0/16\"", "service[0].blacklist: invalid type"),
            ("proto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\nconn_limit = -1", "service[0].conn_limit: invalid value: integer `-1`, expected u32"),
            ("proto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\nconn_limit = 4294967296", "service[0].conn_limit: invalid value: integer `4294967296`, expected u32"),
            ("proto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\nconn_limit = \"many\"", "service[0].conn_limit: invalid type: string \"many\", expected u32"),
            ("proto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\n[[service.dest]]\naddr = \"192.168.0.11\"\ncheck = { type = \"http\", status = \"2xx\" }", "service[0].dest[0].check: check status \"2xx\": not a status code or range"),
            ("proto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\n[[service.dest]]\naddr = \"192.168.0.11\"\ncheck = { type = \"http\", status = 700 }", "service[0].dest[0].check: check status 700: not an HTTP status"),
            ("proto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\n[[service.dest]]\naddr = \"192.168.0.11\"\ncheck = { type = \"http\", status = true }", "service[0].dest[0].check.status: invalid type: boolean `true`, expected a status code (200) or codes and ranges"),
        ];
        for (body, want) in cases {
            let err = parse(&svc(body)).expect_err(want);
            assert!(err.starts_with(want), "got {err:?}, want {want:?}");
        }
    }

    #[test]
    fn control_tls_keys_follow_the_listen_rules() {
        let with = |listen: &str, keys: &str| {
            let text = EXAMPLE.replace(
                "listen = \"unix:/run/dpvs/dpvs.sock\"",
                &format!("listen = \"{listen}\"\n{keys}"),
            );
            parse(&text)
        };
        let all = "tls_cert = \"/etc/dpvs/server.pem\"\ntls_key = \"/etc/dpvs/server.key\"\n\
                   tls_client_ca = \"/etc/dpvs/clients-ca.pem\"";
        let files = Some(TlsFiles {
            cert: "/etc/dpvs/server.pem".into(),
            key: "/etc/dpvs/server.key".into(),
            ca: "/etc/dpvs/clients-ca.pem".into(),
        });
        // Off loopback: mutual TLS. The files are named here, read at start.
        for listen in ["10.0.0.1:5000", "0.0.0.0:5000", "[::]:5000"] {
            let c = with(listen, all).unwrap();
            assert_eq!(c.listen, Listen::Tcp(listen.parse().unwrap()));
            assert_eq!(c.tls, files, "{listen}");
        }
        // On loopback: all three or none.
        assert_eq!(with("127.0.0.1:5000", all).unwrap().tls, files);
        assert_eq!(with("[::1]:5000", "").unwrap().tls, None);
        assert_eq!(parse(EXAMPLE).unwrap().tls, None);

        let cases: &[(&str, &str, &str)] = &[
            (
                "10.0.0.1:5000",
                "",
                "control.listen: listen address \"10.0.0.1:5000\" is not loopback: TCP there \
                 needs mutual TLS (set control.tls_cert, control.tls_key and control.tls_client_ca)",
            ),
            (
                "10.0.0.1:5000",
                "tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"",
                "control.tls_client_ca: missing: listen address \"10.0.0.1:5000\" is not loopback, \
                 so it needs mutual TLS: control.tls_cert, control.tls_key and control.tls_client_ca",
            ),
            (
                "0.0.0.0:5000",
                "tls_client_ca = \"/ca.pem\"",
                "control.tls_cert: missing: listen address \"0.0.0.0:5000\" is not loopback",
            ),
            (
                "127.0.0.1:5000",
                "tls_key = \"/k.pem\"",
                "control.tls_cert: missing: TLS needs control.tls_cert, control.tls_key and \
                 control.tls_client_ca together (clients must present a certificate signed by \
                 tls_client_ca)",
            ),
            (
                "127.0.0.1:5000",
                "tls_cert = \"/c.pem\"\ntls_client_ca = \"/ca.pem\"",
                "control.tls_key: missing: TLS needs",
            ),
            (
                "unix:/run/dpvs/dpvs.sock",
                "tls_key = \"/k.pem\"",
                "control.tls_key: TLS is for TCP listeners; control.listen is a unix socket, \
                 which its file mode protects (remove the tls_* keys)",
            ),
            (
                "unix:/run/dpvs/dpvs.sock",
                all,
                "control.tls_cert: TLS is for TCP listeners",
            ),
            (
                "127.0.0.1:5000",
                "tls_cert = \"\"\ntls_key = \"/k.pem\"\ntls_client_ca = \"/ca.pem\"",
                "control.tls_cert: empty path",
            ),
            (
                "127.0.0.1:5000",
                "tls_ca = \"/ca.pem\"",
                "control.tls_ca: unknown field `tls_ca`, expected one of",
            ),
        ];
        for (listen, keys, want) in cases {
            let err = with(listen, keys).expect_err(want);
            assert!(
                err.starts_with(want),
                "{listen} {keys:?}: got {err:?}, want prefix {want:?}"
            );
            assert!(!err.contains('\n'), "multi-line error {err:?}");
        }
    }

    #[test]
    fn metrics_listen() {
        assert_eq!(parse(EXAMPLE).unwrap().metrics, None, "absent: no endpoint");
        for (value, want) in [
            ("127.0.0.1:9917", "127.0.0.1:9917"),
            ("[::1]:9917", "[::1]:9917"),
            ("0.0.0.0:9100", "0.0.0.0:9100"),
        ] {
            let c = parse(&format!("{EXAMPLE}\n[metrics]\nlisten = \"{value}\"\n")).unwrap();
            assert_eq!(c.metrics, Some(want.parse().unwrap()), "{value}");
        }
    }

    #[test]
    fn invalid_metrics_name_the_key() {
        let cases: &[(&str, &str)] = &[
            (
                "listen = \"nowhere\"",
                "metrics.listen: invalid address \"nowhere\" (IP:PORT, e.g. 127.0.0.1:9917 or [::1]:9917)",
            ),
            (
                "listen = \"localhost:9917\"",
                "metrics.listen: invalid address \"localhost:9917\"",
            ),
            (
                "listen = \"127.0.0.1\"",
                "metrics.listen: invalid address \"127.0.0.1\"",
            ),
            (
                "listen = \"127.0.0.1:70000\"",
                "metrics.listen: invalid address \"127.0.0.1:70000\"",
            ),
            (
                "listen = \"::1:9917\"",
                "metrics.listen: invalid address \"::1:9917\"",
            ),
            (
                "listen = \"127.0.0.1:0\"",
                "metrics.listen: \"127.0.0.1:0\": port 0",
            ),
            ("listen = \"\"", "metrics.listen: invalid address \"\""),
            (
                "listen = 9917",
                "metrics.listen: invalid type: integer `9917`, expected a string",
            ),
            (
                "listen = \"127.0.0.1:9917\"\npath = \"/m\"",
                "metrics.path: unknown field `path`, expected `listen`",
            ),
            ("", "metrics: missing field `listen`"),
        ];
        for (body, want) in cases {
            let text = format!("{EXAMPLE}\n[metrics]\n{body}\n");
            let err = parse(&text).expect_err(want);
            assert!(
                err.starts_with(want),
                "for {body:?}: got {err:?}, want prefix {want:?}"
            );
            assert!(!err.contains('\n'), "multi-line error {err:?}");
        }
        let same = EXAMPLE.replace("unix:/run/dpvs/dpvs.sock", "127.0.0.1:5000")
            + "\n[metrics]\nlisten = \"127.0.0.1:5000\"\n";
        assert_eq!(
            parse(&same).unwrap_err(),
            "metrics.listen: 127.0.0.1:5000 is also control.listen (give metrics a port of its own)"
        );
    }

    #[test]
    fn load_prefixes_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dpvs.toml");
        std::fs::write(&p, EXAMPLE.replace("10.0.0.1/24", "10.0.0.300/24")).unwrap();
        assert_eq!(
            load(&p).unwrap_err(),
            "dpvs.toml: port[0].addresses[0]: invalid address \"10.0.0.300/24\""
        );
    }
}
