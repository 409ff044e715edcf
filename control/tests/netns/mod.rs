//! End-to-end harness: the demo topology in network namespaces, a `dpvsd` in it,
//! and the client-side tools the tests use to see what a user would see.
//!
//! `Topology::new` runs `deploy/netns/topology.sh up` (one source of truth for the
//! demo and the tests) under a prefix unique to this process and test, and its
//! `Drop` runs `down`: namespaces, veths, bridge, real servers and the run dir go,
//! also when the test panics. `Dpvsd` stops the daemon it started by PID (TERM,
//! bounded wait, KILL) and removes `/var/run/dpdk/<file-prefix>`.
//!
//! Traffic only ever goes to addresses inside the namespaces created here. Every
//! command runs with a bound on its time; nothing here loops without a limit.
//!
//! Use: `let Some(_serial) = netns::begin("name") else { return };` first (skips
//! when not root or without `ip netns`, fails instead under CI=true), then
//! `let topo = Topology::new("name");`, then `let d = topo.start_dpvsd("");`.
//! Declared in that order, they are dropped in reverse: daemon, topology, lock.
#![allow(dead_code)] // each e2e_*.rs uses its own subset

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// The client's addresses on `c0` (all in the `cli` namespace).
pub const CLIENT_IPS: [&str; 3] = ["10.0.0.2", "10.0.0.3", "10.0.0.4"];
/// The director's address on the client side (dpdk0) and on the server side (dpdk1).
pub const DIP_CLIENT_SIDE: &str = "10.0.0.1";
pub const DIP: &str = "192.168.0.1";
/// The VIP the tests configure (an address of dpdk0).
pub const VIP: &str = "10.0.0.100";
/// Real servers: (name their servers answer with, namespace role, address).
pub const REAL_SERVERS: [(&str, &str, &str); 2] = [
    ("rs1", "rs1", "192.168.0.11"),
    ("rs2", "rs2", "192.168.0.12"),
];
/// The same on IPv6 (ULA prefixes; see deploy/netns/topology.sh): the client's
/// addresses on `c0`, the director's DIPs, the VIP the tests configure and the
/// real servers.
pub const CLIENT_IPS6: [&str; 3] = ["fd00:10::2", "fd00:10::3", "fd00:10::4"];
pub const DIP6_CLIENT_SIDE: &str = "fd00:10::1";
pub const DIP6: &str = "fd00:192::1";
pub const VIP6: &str = "fd00:10::100";
pub const REAL_SERVERS6: [(&str, &str, &str); 2] = [
    ("rs1", "rs1", "fd00:192::11"),
    ("rs2", "rs2", "fd00:192::12"),
];
/// nginx on the real servers answers `<name>\n` on this port.
pub const HTTP_PORT: u16 = 80;
/// The real servers' UDP echo answers `<name>:<payload>` on this port.
pub const UDP_ECHO_PORT: u16 = 9000;

const DPVSD_START_TIMEOUT: Duration = Duration::from_secs(30);
const CTL_TIMEOUT: Duration = Duration::from_secs(10);
const CMD_TIMEOUT: Duration = Duration::from_secs(20);
/// Waiting for other processes' e2e tests (each takes seconds; a whole run minutes).
const E2E_LOCK_TIMEOUT: Duration = Duration::from_secs(20 * 60);

static SERIAL: Mutex<()> = Mutex::new(());
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Serializes e2e tests (2 cores: one busy-polling dpvsd at a time) and decides
/// whether this machine can run them. `None` means skip: the reason is printed.
/// Under `CI=true` a machine that cannot run them is a failure, never a skip.
pub fn begin(test: &str) -> Option<Serial> {
    let ci = std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false);
    let reason = if !is_root() {
        Some("e2e tests need root (network namespaces, DPDK)".to_string())
    } else if !ip_netns_works() {
        Some("`ip netns` is not available".to_string())
    } else {
        None
    };
    if let Some(reason) = reason {
        assert!(
            !ci,
            "{test}: {reason}; CI=true, so this fails instead of skipping"
        );
        // Straight to stderr: libtest would swallow eprintln! of a passing test.
        let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
        return None;
    }
    // A test that panicked while holding the lock poisons it; the next one may run.
    let in_process = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    Some(Serial {
        _across_processes: lock_across_processes(test),
        _in_process: in_process,
    })
}

/// Held for the length of one e2e test: one at a time in this process (threads)
/// and on this machine (other test binaries, other people's `cargo test`).
pub struct Serial {
    _across_processes: fs::File,
    _in_process: MutexGuard<'static, ()>,
}

/// An advisory lock on a file: released by the kernel when the holder exits,
/// however it exits, so a crashed run never blocks the next one.
fn lock_across_processes(test: &str) -> fs::File {
    let path = "/tmp/dpvs-e2e.lock";
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    let deadline = Instant::now() + E2E_LOCK_TIMEOUT;
    loop {
        match file.try_lock() {
            Ok(()) => return file,
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(200))
            }
            Err(e) => panic!("{test}: e2e lock {path} not acquired in {E2E_LOCK_TIMEOUT:?}: {e}"),
        }
    }
}

fn is_root() -> bool {
    // Effective UID is the second field of `Uid:` in /proc/self/status.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn ip_netns_works() -> bool {
    Command::new("ip")
        .args(["netns", "list"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("control/ has a parent")
        .to_path_buf()
}

fn topology_script() -> PathBuf {
    repo_root().join("deploy/netns/topology.sh")
}

/// A built binary of this package: cargo tells integration tests where it is; the
/// fallback covers a package that does not declare the binary (yet).
fn bin_path(name: &str) -> PathBuf {
    let from_cargo = match name {
        "dpvsd" => option_env!("CARGO_BIN_EXE_dpvsd"),
        "dpvsctl" => option_env!("CARGO_BIN_EXE_dpvsctl"),
        _ => None,
    };
    let path = from_cargo.map(PathBuf::from).unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target"));
        target.join("debug").join(name)
    });
    assert!(
        path.exists(),
        "{} not found: is the `{name}` binary of dpvs-control built?",
        path.display()
    );
    path
}

/// Runs a command to completion, killing it (by its PID) if it outlives `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap_or_else(|e| panic!("{desc}: {e}")),
        Err(_) => {
            kill_pid(pid, "KILL");
            let out = rx.recv_timeout(Duration::from_secs(5));
            panic!("{desc} did not finish within {limit:?} (killed): {out:?}");
        }
    }
}

fn kill_pid(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn describe(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The namespaces, links and real servers of one test.
pub struct Topology {
    name: String,
    prefix: String,
    run_dir: PathBuf,
    /// Socket of the last dpvsd started here, for [`Topology::dpvsctl`].
    socket: Mutex<Option<PathBuf>>,
    /// Processes started with [`Topology::spawn_in`]: (pid, namespace).
    spawned: Mutex<Vec<(u32, String)>>,
}

/// One HTTP/1.1 connection from argv[1] to argv[2]:80: a request, then, once
/// the file argv[3] exists, a second request on the same connection; then
/// it closes.
pub const KEEPALIVE_CLIENT: &str = r#"
import os, socket, sys, time
src, vip, go = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.create_connection((vip, 80), timeout=3, source_address=(src, 0))
def get():
    s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
    buf = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            return "closed"
        buf += chunk
        if b"\r\n\r\n" in buf:
            head, body = buf.split(b"\r\n\r\n", 1)
            n = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            if len(body) >= n:
                return body.decode().strip()
print("first:", get(), flush=True)
deadline = time.time() + 30
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.05)
try:
    print("second:", get(), flush=True)
except socket.timeout:
    print("second: timeout", flush=True)
s.close()
"#;

/// `deploy/netns/ha.sh`: a second director (`lb2`) and a client-side
/// switch on top of the demo topology.
pub fn ha(topo: &Topology) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/netns/ha.sh");
    let out = run_bounded(
        Command::new("bash").arg(script).arg(topo.prefix()),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "ha.sh failed: {}", describe(&out));
}

/// `deploy/netns/ecmp.sh` for `vip`, after [`ha`]: a router in front of
/// both directors (`rtr`), the real servers taking `vip` by direct routing.
pub fn ecmp(topo: &Topology, vip: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/netns/ecmp.sh");
    let out = run_bounded(
        Command::new("bash").arg(script).arg(topo.prefix()).arg(vip),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "ecmp.sh failed: {}", describe(&out));
}

/// `deploy/netns/bypass.sh MODE` for `vip`: the DR/TUN topology on top of the
/// demo one (replies from the real servers to the client bypass the director).
pub fn bypass(topo: &Topology, mode: &str, vip: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/netns/bypass.sh");
    let out = run_bounded(
        Command::new("bash")
            .arg(script)
            .arg(mode)
            .arg(topo.prefix())
            .arg(vip)
            .arg(topo.run_dir()),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "bypass.sh {mode} {vip} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Curls the VIP's HTTP port `n` times from the client; the set of server
/// names that answered. Panics on a request without an answer.
pub fn answers(topo: &Topology, n: usize) -> std::collections::BTreeSet<String> {
    let url = format!("http://{VIP}:{HTTP_PORT}/");
    (0..n)
        .map(|i| {
            topo.http_get_from_client(&url)
                .unwrap_or_else(|| panic!("request {i} through the VIP got no answer"))
                .trim()
                .to_string()
        })
        .collect()
}

/// A 20 000-byte HTTP POST from the client to the VIP (`netns::BIG_POST`):
/// the body of the answer (a server's name). Panics if it fails.
pub fn big_upload(topo: &Topology) -> String {
    let port = HTTP_PORT.to_string();
    let out = topo.exec_in("cli", &["python3", "-c", BIG_POST, VIP, &port, "20000"]);
    assert!(
        out.status.success(),
        "20 kB upload through the VIP: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The names of every real server of the topology.
pub fn all_servers() -> std::collections::BTreeSet<String> {
    REAL_SERVERS.iter().map(|(n, _, _)| n.to_string()).collect()
}

/// Sends a `argv[3]`-byte POST to `argv[1]` port `argv[2]` and prints the body
/// of the answer (full-sized segments: PMTU discovery must work to get through).
/// An `argv[4]` is the socket's `IP_MTU_DISCOVER` (5, `IP_PMTUDISC_OMIT`: no
/// DF, and the link's MTU, not the route's, cuts the segments into fragments).
pub const BIG_POST: &str = r#"
import socket, sys
n = int(sys.argv[3])
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
if len(sys.argv) > 4:
    s.setsockopt(socket.IPPROTO_IP, 10, int(sys.argv[4]))
s.sendall(b"POST / HTTP/1.0\r\nHost: vip\r\nContent-Length: %d\r\n\r\n" % n + b"a" * n)
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(data.split(b"\r\n\r\n", 1)[-1].decode().strip(), flush=True)
"#;

/// UDP from the client namespace to `vip:port` on a connected socket (so only
/// an answer from the VIP itself is accepted), `n` times; the set of server
/// names that answered `<name>:hello`. The family follows `vip`.
pub fn udp_answers(
    topo: &Topology,
    vip: &str,
    port: u16,
    n: usize,
) -> std::collections::BTreeSet<String> {
    const PY: &str = r#"
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(2.0)
s.connect((sys.argv[1], int(sys.argv[2])))
s.send(b"hello")
print(s.recv(65535).decode())
"#;
    let port = port.to_string();
    (0..n)
        .map(|i| {
            let out = topo.exec_in("cli", &["python3", "-c", PY, vip, &port]);
            assert!(
                out.status.success(),
                "UDP datagram {i} to {vip} port {port} got no answer from the VIP: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let (name, echo) = body.split_once(':').expect("name:payload");
            assert_eq!(echo, "hello");
            name.to_string()
        })
        .collect()
}

impl Topology {
    /// Creates the whole topology with its real servers running. Panics (after
    /// removing what it created) if that fails.
    pub fn new(name: &str) -> Topology {
        // Short and unique per process and test: namespace names are `<prefix>cli`...
        // Another process (another developer's test run) may hold a similar name:
        // never touch it, take the next one.
        let existing = run_bounded(Command::new("ip").args(["netns", "list"]), CMD_TIMEOUT);
        let existing = stdout(&existing);
        let prefix = (0..100)
            .map(|_| {
                let n = NEXT.fetch_add(1, Ordering::SeqCst);
                format!("dpvs{}{}-", std::process::id() % 10000, n)
            })
            .find(|p| {
                !existing.lines().any(|l| l.starts_with(p.as_str()))
                    && !Path::new(&format!("/tmp/dpvs-{p}")).exists()
            })
            .expect("a free topology prefix");
        let run_dir = PathBuf::from(format!("/tmp/dpvs-{prefix}"));
        let topo = Topology {
            name: name.to_string(),
            prefix,
            run_dir,
            socket: Mutex::new(None),
            spawned: Mutex::new(Vec::new()),
        };
        let out = topo.script("up");
        if String::from_utf8_lossy(&out.stderr).contains("exists; run") {
            // Someone else's namespace took the name meanwhile: not ours to remove.
            std::mem::forget(topo);
            panic!(
                "topology prefix taken by another process:\n{}",
                describe(&out)
            );
        }
        // On any other failure the script removed what it made; Drop makes sure.
        assert!(
            out.status.success(),
            "topology.sh up {} failed:\n{}",
            topo.prefix,
            describe(&out)
        );
        eprintln!("[{name}] topology {} up", topo.prefix);
        topo
    }

    fn script(&self, action: &str) -> Output {
        run_bounded(
            Command::new("bash")
                .arg(topology_script())
                .arg(action)
                .arg(&self.prefix)
                .arg(&self.run_dir),
            Duration::from_secs(60),
        )
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Where config, logs and sockets of this topology live (removed on drop).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Full namespace name of a role: `cli`, `lb`, `lan`, `rs1`, `rs2`.
    pub fn ns(&self, role: &str) -> String {
        format!("{}{}", self.prefix, role)
    }

    /// Starts dpvsd in the `lb` namespace on af_packet vdevs over lb0/lb1 (dpdk0
    /// 10.0.0.1/24 and fd00:10::1/64, dpdk1 192.168.0.1/24 and fd00:192::1/64,
    /// worker core 1, no hugepages) and waits
    /// until `dpvsctl -Ln` answers. `extra_toml` is appended to the config file,
    /// right after `[control] listen`: keys of `[control]` (`state_file = ...`)
    /// first, then whole tables (`[conntrack]\n...`).
    pub fn start_dpvsd(&self, extra_toml: &str) -> Dpvsd {
        self.start_dpvsd_with(1, extra_toml)
    }

    /// [`Topology::start_dpvsd`] with two workers on this two-CPU machine:
    /// EAL `--lcores 0@0,1@0,2@1` (the main lcore and worker 1 share cpu 0,
    /// worker 2 has cpu 1), af_packet vdevs with `qpairs=2` (the kernel's
    /// fanout spreads flows over both queues), `adaptive_poll` so the busy
    /// loops leave the clients and servers some CPU. `extra_toml` must not
    /// have a `[dataplane]` table.
    pub fn start_dpvsd_2workers(&self, extra_toml: &str) -> Dpvsd {
        self.start_dpvsd_with(2, extra_toml)
    }

    /// [`Topology::start_dpvsd`] on net_af_xdp vdevs (an AF_XDP socket on each
    /// veth, as `make demo` runs when it can) instead of af_packet.
    pub fn start_dpvsd_af_xdp(&self, extra_toml: &str) -> Dpvsd {
        self.wait_answering(self.spawn_dpvsd_on(Driver::AfXdp, 1, extra_toml, &[], ""))
    }

    /// [`Topology::start_dpvsd`] with a kernel interface on both ports
    /// (`kni = true`): TAPs `dpdk0` and `dpdk1` in the director's namespace.
    pub fn start_dpvsd_kni(&self, extra_toml: &str) -> Dpvsd {
        self.wait_answering(self.spawn_dpvsd_on(
            Driver::AfPacket,
            1,
            extra_toml,
            &[],
            "kni = true\n",
        ))
    }

    fn start_dpvsd_with(&self, workers: usize, extra_toml: &str) -> Dpvsd {
        self.wait_answering(self.spawn_dpvsd(workers, extra_toml, &[]))
    }

    fn wait_answering(&self, mut d: Dpvsd) -> Dpvsd {
        let deadline = Instant::now() + DPVSD_START_TIMEOUT;
        loop {
            if !d.is_running() {
                // Dpvsd's drop prints the log tail.
                panic!("dpvsd exited during start-up: {:?}", d.child.try_wait());
            }
            if d.socket.exists() && d.ctl(&["-Ln"]).status.success() {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "dpvsd did not answer on {} within {DPVSD_START_TIMEOUT:?}",
                    d.socket.display()
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
        *self.socket.lock().unwrap_or_else(|e| e.into_inner()) = Some(d.socket.clone());
        d
    }

    /// Starts dpvsd with `workers` workers (1 or 2, as above) and `env` in its
    /// environment, without waiting for it to answer.
    pub fn spawn_dpvsd(&self, workers: usize, extra_toml: &str, env: &[(&str, &str)]) -> Dpvsd {
        self.spawn_dpvsd_on(Driver::AfPacket, workers, extra_toml, env, "")
    }

    fn spawn_dpvsd_on(
        &self,
        driver: Driver,
        workers: usize,
        extra_toml: &str,
        env: &[(&str, &str)],
        port_extra: &str,
    ) -> Dpvsd {
        let (lcores, cores, qpairs, dataplane) = match workers {
            1 => ("", "1", "", ""),
            _ => (
                r#", "--lcores", "0@0,1@0,2@1""#,
                "1, 2",
                ",qpairs=2",
                "[dataplane]\nadaptive_poll = true\n",
            ),
        };
        self.spawn_dpvsd_in("lb", env, |file_prefix, socket| {
            format!(
                r#"[eal]
args = ["--no-huge", "-m", "512", "--no-pci", "--file-prefix", "{file_prefix}"{lcores}]

[workers]
cores = [{cores}]

{dataplane}
[[port]]
name = "dpdk0"
device = "{dev0}"
queues = {workers}
addresses = ["{DIP_CLIENT_SIDE}/24", "{DIP6_CLIENT_SIDE}/64"]
{port_extra}
[[port]]
name = "dpdk1"
device = "{dev1}"
queues = {workers}
addresses = ["{DIP}/24", "{DIP6}/64"]
{port_extra}
[control]
listen = "unix:{sock}"

{extra_toml}
"#,
                sock = socket.display(),
                dev0 = driver.device(0, "lb0", qpairs),
                dev1 = driver.device(1, "lb1", qpairs),
            )
        })
    }

    /// Starts dpvsd in `role`'s namespace with the config `toml` writes for
    /// its EAL file prefix and control socket, and waits until it answers.
    pub fn start_dpvsd_in(&self, role: &str, toml: impl FnOnce(&str, &Path) -> String) -> Dpvsd {
        self.wait_answering(self.spawn_dpvsd_in(role, &[], toml))
    }

    fn spawn_dpvsd_in(
        &self,
        role: &str,
        env: &[(&str, &str)],
        toml: impl FnOnce(&str, &Path) -> String,
    ) -> Dpvsd {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let file_prefix = format!("dpvs-e2e-{}-{}", std::process::id(), n);
        let socket = self.run_dir.join(format!("dpvs{n}.sock"));
        let config = self.run_dir.join(format!("dpvs{n}.toml"));
        let log = self.run_dir.join(format!("dpvsd{n}.log"));
        fs::write(&config, toml(&file_prefix, &socket)).expect("write dpvs.toml");
        let logf = fs::File::create(&log).expect("create dpvsd log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(role)])
            .arg(bin_path("dpvsd"))
            .arg("--config")
            .arg(&config)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup log"))
            .stderr(logf)
            .spawn()
            .expect("spawn dpvsd");
        Dpvsd {
            child,
            socket,
            config,
            file_prefix,
            log,
            dpvsctl: bin_path("dpvsctl"),
        }
    }

    /// `dpvsctl --server unix:<socket of the last dpvsd started> ARGS`.
    pub fn dpvsctl(&self, args: &[&str]) -> Output {
        let sock = self
            .socket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .expect("no dpvsd started in this topology");
        ctl_at(&bin_path("dpvsctl"), &sock, args)
    }

    /// Runs `cmd` inside the namespace of `role`, bounded in time.
    pub fn exec_in(&self, role: &str, cmd: &[&str]) -> Output {
        run_bounded(
            Command::new("ip")
                .args(["netns", "exec", &self.ns(role)])
                .args(cmd),
            CMD_TIMEOUT,
        )
    }

    /// Starts `cmd` inside `role`'s namespace and returns it; if it still runs when
    /// the topology is dropped, it is stopped by PID.
    pub fn spawn_in(&self, role: &str, cmd: &[&str]) -> Child {
        let ns = self.ns(role);
        let child = Command::new("ip")
            .args(["netns", "exec", &ns])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?} in {ns}: {e}"));
        self.spawned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((child.id(), ns));
        child
    }

    /// One HTTP GET from the client (source 10.0.0.2); the body, or `None` when
    /// nothing answered within 2 s or the status was not 2xx.
    pub fn http_get_from_client(&self, url: &str) -> Option<String> {
        self.http_get_from(CLIENT_IPS[0], url)
    }

    /// One HTTP GET from the client namespace with source address `src`
    /// (IPv6 literals in the URL in brackets: `http://[fd00:10::100]:80/`).
    pub fn http_get_from(&self, src: &str, url: &str) -> Option<String> {
        let out = self.exec_in(
            "cli",
            &[
                "curl",
                "-sfg",
                "--max-time",
                "2",
                "--interface",
                src,
                "--noproxy",
                "*",
                url,
            ],
        );
        out.status.success().then(|| stdout(&out))
    }

    /// Sends one datagram from a fresh socket (a new source port, so a new
    /// connection for the director) in the client namespace and returns the reply,
    /// or `None` after 2 s without one.
    pub fn udp_echo_from_client(&self, addr: &str, port: u16, payload: &str) -> Option<String> {
        self.udp_echo_from(CLIENT_IPS[0], addr, port, payload)
    }

    pub fn udp_echo_from(&self, src: &str, addr: &str, port: u16, payload: &str) -> Option<String> {
        const PY: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2.0)
s.bind((sys.argv[1], 0))
s.sendto(sys.argv[4].encode(), (sys.argv[2], int(sys.argv[3])))
try:
    sys.stdout.write(s.recv(65535).decode())
except socket.timeout:
    sys.exit(3)
"#;
        let port = port.to_string();
        let out = self.exec_in("cli", &["python3", "-c", PY, src, addr, &port, payload]);
        out.status.success().then(|| stdout(&out))
    }

    /// Sends `frame` (a whole Ethernet frame) out of the client's c0 as is, through
    /// an AF_PACKET socket: for malformed input the kernel would never build.
    pub fn inject_frame_from_client(&self, frame: &[u8]) {
        self.inject_frame_from("cli", "c0", frame)
    }

    /// Sends `frame` as is out of `ifname` in namespace `role` (AF_PACKET).
    pub fn inject_frame_from(&self, role: &str, ifname: &str, frame: &[u8]) {
        const PY: &str = r#"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[2], 0))
s.send(bytes.fromhex(sys.argv[1]))
"#;
        let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
        let out = self.exec_in(role, &["python3", "-c", PY, &hex, ifname]);
        assert!(
            out.status.success(),
            "frame injection failed:\n{}",
            describe(&out)
        );
    }

    /// MAC address of interface `ifname` in `role`'s namespace.
    pub fn mac_of(&self, role: &str, ifname: &str) -> [u8; 6] {
        let out = self.exec_in(role, &["cat", &format!("/sys/class/net/{ifname}/address")]);
        parse_mac(stdout(&out).trim())
            .unwrap_or_else(|| panic!("no MAC for {ifname} in {role}: {}", describe(&out)))
    }

    /// The MAC the client resolved for `ip` (ARP answered by the director), or the
    /// MAC of lb0 (which the af_packet port uses) when the client has none yet.
    pub fn director_mac_seen_by_client(&self, ip: &str) -> [u8; 6] {
        let out = self.exec_in("cli", &["ip", "neigh", "show", ip, "dev", "c0"]);
        let text = stdout(&out);
        let mut words = text.split_whitespace();
        while let Some(w) = words.next() {
            if w == "lladdr" {
                if let Some(mac) = words.next().and_then(parse_mac) {
                    return mac;
                }
            }
        }
        self.mac_of("lb", "lb0")
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let spawned = std::mem::take(&mut *self.spawned.lock().unwrap_or_else(|e| e.into_inner()));
        for (pid, ns) in spawned {
            if pid_alive(pid) && ns_of_pid(pid).as_deref() == Some(ns.as_str()) {
                kill_pid(pid, "KILL");
            }
        }
        // topology.sh down stops the real servers by PID and anything else left in
        // these namespaces, then deletes them (veths and the bridge go with them).
        let out = Command::new("bash")
            .arg(topology_script())
            .arg("down")
            .arg(&self.prefix)
            .arg(&self.run_dir)
            .stdin(Stdio::null())
            .output();
        if let Ok(o) = &out {
            if !o.status.success() {
                eprintln!("[{}] topology.sh down: {}", self.name, describe(o));
            }
        }
        let _ = fs::remove_dir_all(&self.run_dir);
    }
}

fn ns_of_pid(pid: u32) -> Option<String> {
    let out = Command::new("ip")
        .args(["netns", "identify", &pid.to_string()])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let s = stdout(&out).trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn ctl_at(dpvsctl: &Path, socket: &Path, args: &[&str]) -> Output {
    run_bounded(
        Command::new(dpvsctl)
            .arg("--server")
            .arg(format!("unix:{}", socket.display()))
            .args(args),
        CTL_TIMEOUT,
    )
}

/// A running dpvsd. Dropping it stops it by PID and removes its DPDK runtime files.
pub struct Dpvsd {
    child: Child,
    socket: PathBuf,
    config: PathBuf,
    file_prefix: String,
    log: PathBuf,
    dpvsctl: PathBuf,
}

impl Dpvsd {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its config file (dpvs.toml), which a test may edit before a SIGHUP.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// Sends it `sig` (`HUP`, ...) by PID.
    pub fn signal(&self, sig: &str) {
        kill_pid(self.child.id(), sig);
    }

    pub fn file_prefix(&self) -> &str {
        &self.file_prefix
    }

    /// Stops dpvsd with SIGTERM as systemd does; its exit status (`None` if it
    /// had to be killed after 10 s).
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        kill_pid(self.child.id(), "TERM");
        self.wait_exit(Duration::from_secs(10))
    }

    /// Waits up to `limit` for dpvsd to exit on its own; its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        wait_for(limit, || self.child.try_wait().ok().flatten())
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What dpvsd wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `dpvsctl --server unix:<socket> ARGS`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        ctl_at(&self.dpvsctl, &self.socket, args)
    }

    /// Like [`Dpvsd::ctl`], panicking with both outputs if dpvsctl fails.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "dpvsctl {args:?} failed:\n{}",
            describe(&out)
        );
        stdout(&out)
    }

    /// The NAT services most tests use: the VIP on dpdk0, TCP `HTTP_PORT` and
    /// UDP `UDP_ECHO_PORT`, rr over both real servers (`-m -w 1`).
    pub fn add_nat_services(&self) {
        self.addr_add(&format!("{VIP}/32"), "dpdk0");
        for (flag, port) in [("-t", HTTP_PORT), ("-u", UDP_ECHO_PORT)] {
            let vs = format!("{VIP}:{port}");
            self.ctl_ok(&["-A", flag, &vs, "-s", "rr"]);
            for (_, _, rip) in REAL_SERVERS {
                let rs = format!("{rip}:{port}");
                self.ctl_ok(&["-a", flag, &vs, "-r", &rs, "-m", "-w", "1"]);
            }
        }
    }

    /// `dpvsctl addr add ADDR dev PORT`; an address that already exists is fine.
    pub fn addr_add(&self, addr: &str, port: &str) {
        let out = self.ctl(&["addr", "add", addr, "dev", port]);
        let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success() || text.to_lowercase().contains("exist"),
            "dpvsctl addr add {addr} dev {port} failed:\n{}",
            describe(&out)
        );
    }

    /// The TCP service's object in `-Ln --json` (the tests' one TCP service).
    pub fn tcp_service_json(&self) -> serde_json::Value {
        let j: serde_json::Value = serde_json::from_str(&self.ctl_ok(&["-Ln", "--json"])).unwrap();
        j["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["protocol"] == "TCP")
            .expect("the TCP service")
            .clone()
    }

    /// `-Ln` parsed.
    pub fn services(&self) -> Vec<ListedService> {
        parse_list(&self.ctl_ok(&["-Ln"]))
    }

    /// `-Ln --stats` parsed.
    pub fn stats(&self) -> Vec<ServiceStats> {
        parse_stats(&self.ctl_ok(&["-Ln", "--stats"]))
    }

    /// `-Lnc` parsed.
    pub fn conns(&self) -> Vec<ConnRow> {
        parse_conns(&self.ctl_ok(&["-Lnc"]))
    }

    /// One drop counter of `dpvsctl stats` by its snake_case name (`no_service`).
    pub fn drop_counter(&self, name: &str) -> u64 {
        let text = self.ctl_ok(&["stats"]);
        parse_named_counter(&text, name)
            .unwrap_or_else(|| panic!("no counter `{name}` in `dpvsctl stats`:\n{text}"))
    }
}

impl Drop for Dpvsd {
    fn drop(&mut self) {
        if thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "--- dpvsd log (last {} lines) ---\n{}",
                tail.len(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            kill_pid(self.child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
            if matches!(self.child.try_wait(), Ok(None)) {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
        let _ = fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.file_prefix));
        let _ = fs::remove_file(&self.socket);
    }
}

// ---- ipvsadm output, as dpvsctl prints it -------------------------------------

/// A service of `-Ln`: `TCP  10.0.0.100:80 rr` and its `->` dest lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedService {
    pub proto: String,
    pub addr: String,
    pub scheduler: String,
    pub dests: Vec<ListedDest>,
}

/// `  -> 192.168.0.11:80  Masq  1  0  0`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedDest {
    pub addr: String,
    pub forward: String,
    pub weight: u64,
    pub active_conns: u64,
    pub inactive_conns: u64,
}

/// Columns of `-Ln --stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsRow {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStats {
    pub proto: String,
    pub addr: String,
    pub total: StatsRow,
    /// dest address -> its row.
    pub dests: BTreeMap<String, StatsRow>,
}

/// A line of `-Lnc`: `TCP 01:57  TIME_WAIT   10.0.0.2:50000 10.0.0.100:80 192.168.0.11:80`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnRow {
    pub proto: String,
    pub expire: String,
    pub state: String,
    pub source: String,
    pub virt: String,
    pub dest: String,
}

fn is_proto(w: &str) -> bool {
    matches!(w, "TCP" | "UDP" | "SCTP")
}

/// ipvsadm shortens large numbers (`12K`, `3M`) unless `--exact`; read both.
pub fn parse_num(w: &str) -> Option<u64> {
    let (digits, mult) = match w.chars().last()? {
        'K' => (&w[..w.len() - 1], 1_000),
        'M' => (&w[..w.len() - 1], 1_000_000),
        'G' => (&w[..w.len() - 1], 1_000_000_000),
        'T' => (&w[..w.len() - 1], 1_000_000_000_000),
        _ => (w, 1),
    };
    digits.parse::<u64>().ok().map(|n| n * mult)
}

pub fn parse_list(text: &str) -> Vec<ListedService> {
    let mut out: Vec<ListedService> = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() >= 2 && is_proto(w[0]) && w[1].contains(':') {
            out.push(ListedService {
                proto: w[0].to_string(),
                addr: w[1].to_string(),
                scheduler: w.get(2).unwrap_or(&"").to_string(),
                dests: Vec::new(),
            });
        } else if w.len() >= 6 && w[0] == "->" && w[1].contains(':') {
            if let (Some(svc), Some(weight), Some(active), Some(inactive)) = (
                out.last_mut(),
                parse_num(w[3]),
                parse_num(w[4]),
                parse_num(w[5]),
            ) {
                svc.dests.push(ListedDest {
                    addr: w[1].to_string(),
                    forward: w[2].to_string(),
                    weight,
                    active_conns: active,
                    inactive_conns: inactive,
                });
            }
        }
    }
    out
}

fn stats_row(nums: &[&str]) -> Option<StatsRow> {
    let n: Vec<u64> = nums.iter().map(|w| parse_num(w)).collect::<Option<_>>()?;
    (n.len() >= 5).then(|| StatsRow {
        conns: n[0],
        inpkts: n[1],
        outpkts: n[2],
        inbytes: n[3],
        outbytes: n[4],
    })
}

pub fn parse_stats(text: &str) -> Vec<ServiceStats> {
    let mut out: Vec<ServiceStats> = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() >= 7 && is_proto(w[0]) && w[1].contains(':') {
            if let Some(total) = stats_row(&w[2..7]) {
                out.push(ServiceStats {
                    proto: w[0].to_string(),
                    addr: w[1].to_string(),
                    total,
                    dests: BTreeMap::new(),
                });
            }
        } else if w.len() >= 7 && w[0] == "->" && w[1].contains(':') {
            if let (Some(svc), Some(row)) = (out.last_mut(), stats_row(&w[2..7])) {
                svc.dests.insert(w[1].to_string(), row);
            }
        }
    }
    out
}

pub fn parse_conns(text: &str) -> Vec<ConnRow> {
    text.lines()
        .filter_map(|line| {
            let w: Vec<&str> = line.split_whitespace().collect();
            // FULLNAT listings carry a local address column before the destination.
            (w.len() >= 6 && is_proto(w[0]) && w[1].contains(':') && w[3].contains(':')).then(
                || ConnRow {
                    proto: w[0].to_string(),
                    expire: w[1].to_string(),
                    state: w[2].to_string(),
                    source: w[3].to_string(),
                    virt: w[4].to_string(),
                    dest: w[w.len() - 1].to_string(),
                },
            )
        })
        .collect()
}

/// The first number after the word `name` (`no_service: 3`, `no_service 3`,
/// `no_service=3`) anywhere in `text`.
pub fn parse_named_counter(text: &str, name: &str) -> Option<u64> {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ':' || c == '=' || c == '|' || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    let at = words.iter().position(|w| *w == name)?;
    words[at + 1..].iter().take(2).find_map(|w| parse_num(w))
}

/// Polls `f` every 200 ms until it returns `Some` or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    const LIST: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.100:80 rr
  -> 192.168.0.11:80              Masq    1      2          3
  -> 192.168.0.12:80              Masq    1      0          1K
UDP  10.0.0.100:9000 rr
  -> 192.168.0.11:9000            Masq    1      0          0
";

    const STATS: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  10.0.0.100:80                      12       72       48     4560     5280
  -> 192.168.0.11:80                     6       36       24     2280     2640
  -> 192.168.0.12:80                     6       36       24     2280     2640
";

    const CONNS: &str = "\
IPVS connection entries
pro expire state       source             virtual            destination
TCP 01:57  TIME_WAIT   10.0.0.2:50000     10.0.0.100:80      192.168.0.11:80
UDP 04:59  UDP         10.0.0.2:40000     10.0.0.100:9000    192.168.0.12:9000
";

    #[test]
    fn list_reads_services_and_dests() {
        let s = parse_list(LIST);
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].proto.as_str(), s[0].addr.as_str()),
            ("TCP", "10.0.0.100:80")
        );
        assert_eq!(s[0].scheduler, "rr");
        assert_eq!(s[0].dests[0].active_conns, 2);
        assert_eq!(s[0].dests[1].inactive_conns, 1000);
        assert_eq!(s[0].dests[1].forward, "Masq");
        assert_eq!(s[1].dests.len(), 1);
    }

    #[test]
    fn stats_reads_totals_and_dests() {
        let s = parse_stats(STATS);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].total.conns, 12);
        assert_eq!(s[0].total.outbytes, 5280);
        assert_eq!(s[0].dests["192.168.0.12:80"].inpkts, 36);
    }

    #[test]
    fn conns_reads_entries() {
        let c = parse_conns(CONNS);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].state, "TIME_WAIT");
        assert_eq!(c[0].source, "10.0.0.2:50000");
        assert_eq!(c[1].dest, "192.168.0.12:9000");
    }

    #[test]
    fn named_counters_in_several_layouts() {
        assert_eq!(
            parse_named_counter("drops:\n  no_service: 3\n", "no_service"),
            Some(3)
        );
        assert_eq!(
            parse_named_counter("no_service   17\nbad_ipv4 2", "bad_ipv4"),
            Some(2)
        );
        assert_eq!(parse_named_counter("no_service=4", "no_service"), Some(4));
        assert_eq!(parse_named_counter("bad_ipv6 1", "bad_ipv4"), None);
    }

    #[test]
    fn macs() {
        assert_eq!(parse_mac("02:fc:00:00:00:01"), Some([2, 0xfc, 0, 0, 0, 1]));
        assert_eq!(parse_mac("02:fc:00"), None);
    }
}

/// The DPDK vdev dpvsd's ports run on over the director's veths.
#[derive(Clone, Copy)]
enum Driver {
    AfPacket,
    /// One queue per veth (DPDK 22.11 counts combined channels, which veth
    /// does not report), so one worker.
    AfXdp,
}

impl Driver {
    fn device(self, index: usize, iface: &str, af_packet_args: &str) -> String {
        match self {
            Driver::AfPacket => format!("net_af_packet{index},iface={iface}{af_packet_args}"),
            Driver::AfXdp => {
                format!("net_af_xdp{index},iface={iface},start_queue=0,queue_count=1")
            }
        }
    }
}
