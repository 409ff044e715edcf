//! The connection sync daemons, as ipvsadm's `--start-daemon` starts them in
//! the kernel (docs/ha.md): a master sends what the workers queued, a backup
//! installs what it receives. Both speak IPVS's sync protocol version 1 over
//! UDP multicast through a kernel interface (the port's `kni` twin, or any
//! other interface of the director's kernel), so they are plain sockets on
//! threads of their own, never on a worker.

pub mod save;
pub mod wire;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use dataplane::sync::SyncConn;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::backend::Backend;

/// IPVS's multicast group and port.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
pub const PORT: u16 = 8848;

/// The master sends at most this many datagrams per tick...
const MESSAGES_PER_TICK: usize = 50;
/// ...and ticks this often: at most 2 500 datagrams (about 100 000
/// connections) per second, so a busy master does not drown its backups;
/// what waits stays in the workers' bounded queues.
const TICK: Duration = Duration::from_millis(20);

/// Master or backup, as ipvsadm names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Master,
    Backup,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Backup => "backup",
        }
    }

    pub fn parse(s: &str) -> Result<Role, String> {
        match s {
            "master" => Ok(Role::Master),
            "backup" => Ok(Role::Backup),
            _ => Err(format!(
                "sync daemon state '{s}': expected master or backup"
            )),
        }
    }
}

/// One daemon's settings (`--start-daemon`, `[[sync_daemon]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSpec {
    pub role: Role,
    /// The kernel interface the multicast goes out of / is received on.
    pub mcast_interface: String,
    /// 0-255; a backup with 0 takes every sync id.
    pub syncid: u8,
    pub group: Ipv4Addr,
    pub port: u16,
}

impl DaemonSpec {
    /// The settings as `ipvsadm -L --daemon` prints them.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} sync daemon (mcast={}, syncid={}",
            self.role.name(),
            self.mcast_interface,
            self.syncid
        );
        if self.group != GROUP {
            s.push_str(&format!(", group={}", self.group));
        }
        if self.port != PORT {
            s.push_str(&format!(", port={}", self.port));
        }
        s.push(')');
        s
    }
}

/// What the daemons did (Prometheus `dpvs_sync_*`, `dpvsctl -L --daemon
/// --stats`).
#[derive(Debug, Default)]
pub struct Counters {
    pub sent_messages: AtomicU64,
    pub sent_conns: AtomicU64,
    pub send_errors: AtomicU64,
    pub received_messages: AtomicU64,
    pub received_conns: AtomicU64,
    /// Messages not read (wrong version or size, truncated, another sync id).
    pub received_bad: AtomicU64,
    /// Records in good messages that were not connections this director can
    /// install (another protocol, a template, IPVS sequence data).
    pub received_skipped: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("sent_messages", g(&self.sent_messages)),
            ("sent_conns", g(&self.sent_conns)),
            ("send_errors", g(&self.send_errors)),
            ("received_messages", g(&self.received_messages)),
            ("received_conns", g(&self.received_conns)),
            ("received_bad", g(&self.received_bad)),
            ("received_skipped", g(&self.received_skipped)),
        ]
    }
}

struct Running {
    spec: DaemonSpec,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The master and backup daemons of one dpvsd (either, both or none, as
/// IPVS allows).
pub struct Daemons {
    backend: Arc<dyn Backend>,
    running: Mutex<Vec<Running>>,
    pub counters: Arc<Counters>,
}

impl Daemons {
    pub fn new(backend: Arc<dyn Backend>) -> Daemons {
        Daemons {
            backend,
            running: Mutex::new(Vec::new()),
            counters: Arc::default(),
        }
    }

    /// Start a daemon; an error (one of that role runs already, the
    /// interface has no IPv4 address, the socket refused) changes nothing.
    pub fn start(&self, spec: DaemonSpec) -> Result<(), String> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.iter().any(|r| r.spec.role == spec.role) {
            return Err(format!(
                "a {} sync daemon is running already",
                spec.role.name()
            ));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (backend, counters, s) = (self.backend.clone(), self.counters.clone(), stop.clone());
        let thread = match spec.role {
            Role::Master => {
                let sock = send_socket(&spec)?;
                let syncid = spec.syncid;
                backend.sync_master(true);
                std::thread::Builder::new()
                    .name("dpvs-sync-master".into())
                    .spawn(move || master(sock, syncid, &*backend, &counters, &s))
            }
            Role::Backup => {
                let sock = receive_socket(&spec)?;
                let syncid = spec.syncid;
                std::thread::Builder::new()
                    .name("dpvs-sync-backup".into())
                    .spawn(move || backup(sock, syncid, &*backend, &counters, &s))
            }
        }
        .map_err(|e| format!("sync daemon thread: {e}"))?;
        eprintln!("dpvsd: started {}", spec.describe());
        running.push(Running {
            spec,
            stop,
            thread: Some(thread),
        });
        Ok(())
    }

    /// Stop the daemon of `role`; an error if none runs.
    pub fn stop(&self, role: Role) -> Result<(), String> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let Some(i) = running.iter().position(|r| r.spec.role == role) else {
            return Err(format!("no {} sync daemon is running", role.name()));
        };
        let r = running.remove(i);
        if role == Role::Master {
            self.backend.sync_master(false);
        }
        eprintln!("dpvsd: stopped {}", r.spec.describe());
        drop(r);
        Ok(())
    }

    /// The daemons running, master first.
    pub fn list(&self) -> Vec<DaemonSpec> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<DaemonSpec> = running.iter().map(|r| r.spec.clone()).collect();
        v.sort_by_key(|s| s.role != Role::Master);
        v
    }
}

/// The first IPv4 address of interface `ifname` (which must exist).
fn interface_addr(ifname: &str) -> Result<Ipv4Addr, String> {
    ifindex(ifname)?;
    let out = std::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", ifname])
        .output()
        .map_err(|e| format!("ip addr show {ifname}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let addr = text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| {
            format!("interface {ifname} has no IPv4 address to send the sync multicast from")
        })?;
    Ok(addr)
}

fn ifindex(ifname: &str) -> Result<u32, String> {
    let path = format!("/sys/class/net/{ifname}/ifindex");
    std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("no interface {ifname}"))
}

/// IPVS's `make_send_sock`: bound to the interface's address, multicast out
/// of it, TTL 1, no loop back, connected to the group.
fn send_socket(spec: &DaemonSpec) -> Result<Socket, String> {
    let addr = interface_addr(&spec.mcast_interface)?;
    let e = |what: &str, err: std::io::Error| format!("sync socket ({what}): {err}");
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(|x| e("new", x))?;
    s.set_multicast_if_v4(&addr)
        .map_err(|x| e("multicast interface", x))?;
    s.set_multicast_ttl_v4(1).map_err(|x| e("ttl", x))?;
    s.set_multicast_loop_v4(false).map_err(|x| e("loop", x))?;
    s.bind(&SockAddr::from(SocketAddrV4::new(addr, 0)))
        .map_err(|x| e("bind", x))?;
    s.connect(&SockAddr::from(SocketAddrV4::new(spec.group, spec.port)))
        .map_err(|x| e("connect", x))?;
    Ok(s)
}

/// IPVS's `make_receive_sock`: the group's port, the group joined on the
/// interface.
fn receive_socket(spec: &DaemonSpec) -> Result<Socket, String> {
    let index = ifindex(&spec.mcast_interface)?;
    let e = |what: &str, err: std::io::Error| format!("sync socket ({what}): {err}");
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(|x| e("new", x))?;
    s.set_reuse_address(true).map_err(|x| e("reuse", x))?;
    s.bind(&SockAddr::from(SocketAddrV4::new(spec.group, spec.port)))
        .map_err(|x| e("bind", x))?;
    s.join_multicast_v4_n(&spec.group, &socket2::InterfaceIndexOrAddress::Index(index))
        .map_err(|x| e("join", x))?;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|x| e("timeout", x))?;
    Ok(s)
}

fn master(sock: Socket, syncid: u8, backend: &dyn Backend, c: &Counters, stop: &AtomicBool) {
    let mut recs: Vec<SyncConn> = Vec::new();
    // About 40 records fill a datagram.
    let max = MESSAGES_PER_TICK * 40;
    while !stop.load(Ordering::Relaxed) {
        recs.clear();
        backend.sync_drain(max, &mut recs);
        for m in wire::encode(syncid, &recs, wire::MAX_MESSAGE) {
            match sock.send(&m) {
                Ok(_) => {
                    c.sent_messages.fetch_add(1, Ordering::Relaxed);
                    c.sent_conns.fetch_add(u64::from(m[4]), Ordering::Relaxed);
                }
                Err(_) => {
                    c.send_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        std::thread::sleep(TICK);
    }
}

fn backup(sock: Socket, syncid: u8, backend: &dyn Backend, c: &Counters, stop: &AtomicBool) {
    let sock: std::net::UdpSocket = sock.into();
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let n = match sock.recv_from(&mut buf) {
            Ok((n, _from)) => n,
            Err(_) => continue, // the timeout: look at `stop`
        };
        match wire::decode(&buf[..n], syncid) {
            Ok(d) => {
                c.received_messages.fetch_add(1, Ordering::Relaxed);
                c.received_conns
                    .fetch_add(d.conns.len() as u64, Ordering::Relaxed);
                c.received_skipped
                    .fetch_add(d.skipped as u64, Ordering::Relaxed);
                if !d.conns.is_empty() {
                    backend.sync_install(d.conns);
                }
            }
            Err(_) => {
                c.received_bad.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
