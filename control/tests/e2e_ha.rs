//! High availability end to end (docs/ha.md): two directors, each a dpvsd
//! with kernel interfaces and the real keepalived running VRRP on them, the
//! first the connection sync master, the second its backup. A long download
//! through the first (NAT, then FULLNAT) goes on when that dpvsd is killed:
//! keepalived on the second takes the VIP, the inner gateway and the local
//! address over, and the second dpvsd forwards the connection it was told
//! about.

mod netns;

use std::io::Read;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use netns::*;

/// The download: this many chunks of `CHUNK` bytes, one every 100 ms.
const CHUNKS: usize = 70;
const CHUNK: usize = 1000;
const SLOW_PORT: u16 = 8000;

/// The part of every director's dpvs.toml this file uses: director `n`
/// (5: the first, 6: the second), one worker, both ports with kernel
/// interfaces, 10.0.0.n and 192.168.0.n.
fn director_base(n: u8, file_prefix: &str) -> String {
    format!(
        r#"[eal]
args = ["--no-huge", "-m", "512", "--no-pci", "--file-prefix", "{file_prefix}"]

[workers]
cores = [1]

[dataplane]
adaptive_poll = true

[[port]]
name = "dpdk0"
device = "net_af_packet0,iface=lb0"
queues = 1
addresses = ["10.0.0.{n}/24"]
kni = true

[[port]]
name = "dpdk1"
device = "net_af_packet1,iface=lb1"
queues = 1
addresses = ["192.168.0.{n}/24"]
kni = true
"#
    )
}

/// dpvs.toml of director `n` of a keepalived pair.
fn director_toml(n: u8, sync: &str, file_prefix: &str, socket: &Path) -> String {
    format!(
        r#"{base}
[control]
listen = "unix:{sock}"
claim_vips = false

[[sync_daemon]]
state = "{sync}"
mcast_interface = "dpdk1"
syncid = 7

{services}"#,
        base = director_base(n, file_prefix),
        services = slow_services(),
        sock = socket.display(),
    )
}

/// The slow download's two services: NAT on VIP:80, FULLNAT (LIP
/// 192.168.0.200) on VIP:81, both to rs1's SLOW_PORT.
fn slow_services() -> String {
    format!(
        r#"[[service]]
proto = "tcp"
vip = "{VIP}"
vport = 80
[[service.dest]]
addr = "192.168.0.11"
port = {SLOW_PORT}
mode = "nat"

[[service]]
proto = "tcp"
vip = "{VIP}"
vport = 81
laddr = [{{ addr = "192.168.0.200", port = "dpdk1" }}]
[[service.dest]]
addr = "192.168.0.11"
port = {SLOW_PORT}
mode = "fullnat"
"#
    )
}

/// Starts keepalived (VRRP only, in the foreground) in `role`'s namespace
/// with deploy/ha/`conf`, the sample of docs/ha.md: VRRP on both kernel
/// interfaces in one sync group, so the VIP, the real servers' gateway and
/// the FULLNAT local address move together.
fn keepalived(topo: &Topology, role: &str, conf: &str) -> Child {
    let dir = topo.run_dir().join(format!("keepalived-{role}"));
    std::fs::create_dir_all(&dir).unwrap();
    let p = |f: &str| dir.join(f).display().to_string();
    let conf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/ha")
        .join(conf);
    topo.spawn_in(
        role,
        &[
            "keepalived",
            "--dont-fork",
            "--log-console",
            "--vrrp",
            "--use-file",
            &conf.display().to_string(),
            "--pid",
            &p("keepalived.pid"),
            "--vrrp_pid",
            &p("vrrp.pid"),
            "--checkers_pid",
            &p("checkers.pid"),
        ],
    )
}

/// The real server's slow download on SLOW_PORT: as many chunks as the
/// client's first byte says, chunk i all of the letter a + i % 26.
fn slow_server(topo: &Topology) -> Child {
    slow_server_in(topo, "rs1")
}

/// [`slow_server`] in `role`'s namespace (every address: a DR VIP too).
fn slow_server_in(topo: &Topology, role: &str) -> Child {
    let script = format!(
        r#"
import socket, threading, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {SLOW_PORT}))
s.listen(16)
def serve(c):
    n = c.recv(1)[0]
    for i in range(n):
        c.sendall(bytes([97 + i % 26]) * {CHUNK})
        time.sleep(0.1)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#
    );
    topo.spawn_in(role, &["python3", "-c", &script])
}

/// A client that asks VIP:`port` for `chunks` chunks, reads them to the end
/// and prints how many bytes were right, and how many came (bounded: 60 s).
fn client(topo: &Topology, port: u16, chunks: u8) -> Child {
    client_of(topo, VIP, port, chunks)
}

/// [`client`] of `vip`.
fn client_of(topo: &Topology, vip: &str, port: u16, chunks: u8) -> Child {
    let script = format!(
        r#"
import socket
c = socket.create_connection(("{vip}", {port}), timeout=60)
c.settimeout(60)
c.sendall(bytes([{chunks}]))
got = b""
while True:
    b = c.recv(65536)
    if not b:
        break
    got += b
ok = sum(1 for i in range(len(got)) if got[i] == 97 + (i // {CHUNK}) % 26)
print(ok, len(got))
"#
    );
    topo.spawn_in("cli", &["python3", "-c", &script])
}

fn owns(d: &Dpvsd, addr: &str) -> bool {
    d.ctl(&["addr", "show"])
        .stdout
        .split(|&b| b == b'\n')
        .any(|l| String::from_utf8_lossy(l).contains(&format!(" {addr}/")))
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// What a client printed when it ended (bounded: 60 s); `None` if it did
/// not end.
fn finished(c: &mut Child) -> Option<String> {
    if !wait_until(Duration::from_secs(60), || {
        c.try_wait().ok().flatten().is_some()
    }) {
        return None;
    }
    let mut out = String::new();
    c.stdout.take()?.read_to_string(&mut out).ok()?;
    Some(out.trim().to_string())
}

#[test]
fn a_failover_keeps_nat_and_fullnat_connections() {
    let Some(_serial) = begin("e2e_ha") else {
        return;
    };
    assert!(
        std::process::Command::new("keepalived")
            .arg("--version")
            .output()
            .is_ok(),
        "keepalived is missing: run make deps"
    );
    let topo = Topology::new("e2e_ha");
    ha(&topo);
    // Stopped at the end (and by the topology, by PID, if the test fails).
    let mut daemons = vec![slow_server(&topo)];
    let mut first = topo.start_dpvsd_in("lb", |fp, s| director_toml(5, "master", fp, s));
    let second = topo.start_dpvsd_in("lb2", |fp, s| director_toml(6, "backup", fp, s));
    daemons.push(keepalived(&topo, "lb", "keepalived-lb1.conf"));
    daemons.push(keepalived(&topo, "lb2", "keepalived-lb2.conf"));
    assert!(
        wait_until(Duration::from_secs(20), || owns(&first, VIP)
            && owns(&first, "192.168.0.200")),
        "the first director did not become VRRP master:\n{}",
        first.log()
    );
    assert!(!owns(&second, VIP), "both directors own the VIP");
    // A configuration reload keeps what keepalived put on the interfaces
    // (the file does not name the VIP: claim_vips = false).
    first.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(10), || first.log().contains("SIGHUP: ")),
        "{}",
        first.log()
    );
    assert!(
        owns(&first, VIP) && owns(&first, "192.168.0.200"),
        "a reload dropped keepalived's addresses:\n{}",
        first.ctl_ok(&["addr", "show"])
    );
    assert!(second
        .ctl_ok(&["-L", "--daemon"])
        .contains("backup sync daemon (mcast=dpdk1, syncid=7)"));

    // A long download through each service of the first director, NAT (80)
    // and FULLNAT (81), both established there and synced to the second.
    let mut downloads: Vec<(u16, Child)> = [80, 81]
        .into_iter()
        .map(|port| (port, client(&topo, port, CHUNKS as u8)))
        .collect();
    for port in [80, 81] {
        assert!(
            wait_until(Duration::from_secs(10), || {
                second
                    .ctl_ok(&["-Lnc"])
                    .lines()
                    .any(|l| l.contains("ESTABLISHED") && l.contains(&format!("{VIP}:{port}")))
            }),
            "the connection to port {port} did not reach the backup:\nfirst: {}\nsecond: {}\n{}",
            first.ctl_ok(&["-Lnc"]),
            second.ctl_ok(&["-Lnc"]),
            second.log()
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    first.signal("KILL");
    assert!(first.wait_exit(Duration::from_secs(5)).is_some());
    let killed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(15), || owns(&second, VIP)),
        "the second director did not take the VIP over:\n{}",
        second.log()
    );
    eprintln!(
        "[e2e_ha] the VIP was the second director's {:?} after the kill",
        killed.elapsed()
    );

    // Both downloads complete, every byte right: no established connection
    // was lost.
    let total = CHUNKS * CHUNK;
    for (port, c) in &mut downloads {
        assert_eq!(
            finished(c),
            Some(format!("{total} {total}")),
            "the connection to port {port} did not survive the failover:\n{}\n{}",
            second.ctl_ok(&["stats"]),
            second.log()
        );
    }
    // New connections go through the second.
    for port in [80, 81] {
        let mut again = client(&topo, port, 3);
        let n = 3 * CHUNK;
        assert_eq!(
            finished(&mut again),
            Some(format!("{n} {n}")),
            "port {port}"
        );
    }
    // Each was installed from a record (they change state: more records).
    assert!(second.drop_counter("sync_installed") >= 2);
    assert_eq!(second.drop_counter("sync_rejected"), 0);
    for d in &mut daemons {
        let _ = d.kill();
        let _ = d.wait();
    }
}

/// Sync under load: while a client keeps 100 connections open through the
/// master and replaces ten of them every 100 ms, the backup's table follows
/// the master's within a small lag, and matches it once the churn stops.
#[test]
fn the_backup_tracks_the_masters_connections_under_churn() {
    let Some(_serial) = begin("e2e_ha_churn") else {
        return;
    };
    let topo = Topology::new("e2e_ha_churn");
    ha(&topo);
    let mut server = slow_server(&topo);
    let first = topo.start_dpvsd_in("lb", |fp, s| director_toml(5, "master", fp, s));
    let second = topo.start_dpvsd_in("lb2", |fp, s| director_toml(6, "backup", fp, s));
    // No keepalived here: the VIP and the gateway are the first's.
    first.addr_add(&format!("{VIP}/32"), "dpdk0");
    first.addr_add("192.168.0.1/24", "dpdk1");
    let script = format!(
        r#"
import random, socket, sys, time
random.seed(7)
def new():
    s = socket.create_connection(("{VIP}", 80), timeout=10)
    s.sendall(bytes([250]))
    s.recv(1)
    return s
conns = [new() for _ in range(100)]
opened = 100
end = time.time() + 6
while time.time() < end:
    for _ in range(10):
        conns.pop(random.randrange(len(conns))).close()
        conns.append(new())
        opened += 1
    time.sleep(0.1)
print(opened, flush=True)
time.sleep(4)
"#
    );
    let mut churn = topo.spawn_in("cli", &["python3", "-c", &script]);
    let established = |d: &Dpvsd| {
        d.conns()
            .iter()
            .filter(|c| c.state == "ESTABLISHED")
            .count()
    };
    let mut worst = 0usize;
    let mut samples = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(7) {
        let (m, b) = (established(&first), established(&second));
        if m >= 100 {
            samples += 1;
            worst = worst.max(m.abs_diff(b));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Settled: the 100 held connections on both.
    std::thread::sleep(Duration::from_secs(1));
    let (m, b) = (established(&first), established(&second));
    eprintln!(
        "[e2e_ha] churn: {samples} samples, worst ESTABLISHED gap {worst}; settled {m} / {b}"
    );
    assert!(samples >= 5, "too few samples while the churn ran");
    assert!(worst <= 20, "the backup lagged by {worst} connections");
    assert_eq!((m, b), (100, 100));
    assert_eq!(second.drop_counter("sync_rejected"), 0);
    assert_eq!(first.drop_counter("sync_queue_full"), 0);
    let _ = churn.kill();
    let _ = churn.wait();
    let _ = server.kill();
    let _ = server.wait();
}

/// A restart that keeps the connections (`[control] conns_file`): dpvsd
/// saves them when SIGTERM stops it, the next one installs them before it
/// serves, and a NAT and a FULLNAT download going through it complete.
#[test]
fn a_restart_keeps_the_connections() {
    let Some(_serial) = begin("e2e_ha_restart") else {
        return;
    };
    let topo = Topology::new("e2e_ha_restart");
    let mut server = slow_server(&topo);
    let conns_file = topo.run_dir().join("conns");
    let extra = format!(
        "conns_file = \"{}\"\n\n{}",
        conns_file.display(),
        slow_services()
    );
    let mut d = topo.start_dpvsd(&extra);
    let mut downloads: Vec<(u16, Child)> = [80, 81]
        .into_iter()
        .map(|port| (port, client(&topo, port, CHUNKS as u8)))
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || {
            d.ctl_ok(&["-Lnc"])
                .lines()
                .filter(|l| l.contains("ESTABLISHED"))
                .count()
                == 2
        }),
        "{}",
        d.ctl_ok(&["-Lnc"])
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(d.terminate().is_some_and(|s| s.success()));
    assert!(d.log().contains("saved 2 connections"), "{}", d.log());
    let d2 = topo.start_dpvsd(&extra);
    assert!(d2.log().contains("restored 2 connections"), "{}", d2.log());
    assert!(!conns_file.exists(), "the file is used once");
    let total = CHUNKS * CHUNK;
    for (port, c) in &mut downloads {
        assert_eq!(
            finished(c),
            Some(format!("{total} {total}")),
            "the connection to port {port} did not survive the restart:\n{}\n{}",
            d2.ctl_ok(&["stats"]),
            d2.log()
        );
    }
    assert_eq!(d2.drop_counter("sync_rejected"), 0);
    let _ = server.kill();
    let _ = server.wait();
}

/// The ECMP VIP: routed to the directors, not on their subnet.
const ECMP_VIP: &str = "10.0.1.100";

/// dpvs.toml of active-active director `n` (5, 6): a DR service on
/// ECMP_VIP with the Maglev scheduler (the same table on both), its VIP
/// announced on dpdk0, connection sync both ways on dpdk1.
fn ecmp_toml(n: u8, file_prefix: &str, socket: &Path) -> String {
    format!(
        r#"{base}
[[route]]
prefix = "0.0.0.0/0"
via = "10.0.0.254"
port = "dpdk0"

[control]
listen = "unix:{sock}"
announce_vips = "dpdk0"

[[sync_daemon]]
state = "master"
mcast_interface = "dpdk1"
syncid = 9

[[sync_daemon]]
state = "backup"
mcast_interface = "dpdk1"
syncid = 9

[[service]]
proto = "tcp"
vip = "{ECMP_VIP}"
vport = {SLOW_PORT}
scheduler = "mh"
[[service.dest]]
addr = "192.168.0.11"
mode = "dr"
[[service.dest]]
addr = "192.168.0.12"
mode = "dr"
"#,
        base = director_base(n, file_prefix),
        sock = socket.display(),
    )
}

/// BIRD in `role`'s namespace with `conf` (deploy/ecmp/'s samples).
fn bird(topo: &Topology, role: &str, conf: &str) -> Child {
    let dir = topo.run_dir().join(format!("bird-{role}"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bird.conf");
    std::fs::write(&file, conf).unwrap();
    let p = |f: &str| dir.join(f).display().to_string();
    topo.spawn_in(
        role,
        &[
            "bird",
            "-f",
            "-c",
            &file.display().to_string(),
            "-s",
            &p("bird.ctl"),
            "-P",
            &p("bird.pid"),
        ],
    )
}

/// FRR (zebra and bgpd, in the foreground, as user frr) in `role`'s
/// namespace with `conf`: the router's side of ECMP.
fn frr(topo: &Topology, role: &str, conf: &str) -> Vec<Child> {
    let dir = topo.run_dir().join(format!("frr-{role}"));
    std::fs::create_dir_all(&dir).unwrap();
    // The daemons drop to user frr: their files must be theirs to write.
    let _ = std::process::Command::new("chmod")
        .args(["777", &dir.display().to_string()])
        .status();
    let file = dir.join("frr.conf");
    std::fs::write(&file, conf).unwrap();
    let p = |f: &str| dir.join(f).display().to_string();
    let daemon = |name: &str, config: &str| {
        topo.spawn_in(
            role,
            &[
                &format!("/usr/lib/frr/{name}"),
                "-u",
                "frr",
                "-g",
                "frr",
                "-N",
                &format!("{}{role}", topo.prefix()),
                "-i",
                &p(&format!("{name}.pid")),
                "-z",
                &p("zserv.api"),
                "--vty_socket",
                &dir.display().to_string(),
                "-f",
                config,
            ],
        )
    };
    let zebra = daemon("zebra", "/dev/null");
    // bgpd connects to zebra's socket: let zebra open it first.
    wait_until(Duration::from_secs(5), || dir.join("zserv.api").exists());
    vec![zebra, daemon("bgpd", &file.display().to_string())]
}

/// `birdc show protocols all` in `role` (for failure messages).
fn bird_show(topo: &Topology, role: &str) -> String {
    let sock = topo.run_dir().join(format!("bird-{role}/bird.ctl"));
    let out = topo.exec_in(
        role,
        &[
            "birdc",
            "-s",
            &sock.display().to_string(),
            "show",
            "protocols",
            "all",
        ],
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The router's next hops toward ECMP_VIP.
fn next_hops(topo: &Topology) -> Vec<String> {
    let out = topo.exec_in("rtr", &["ip", "route", "show", ECMP_VIP]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut hops: Vec<String> = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_string())
        .collect();
    hops.sort();
    hops
}

/// Active-active: a router (FRR) spreads flows to the VIP over two
/// directors that announce it over BGP (BIRD); one director dies, its routes are withdrawn
/// and every flow goes on through the other (synced, and the same real
/// server: Maglev); a VIP without usable real servers is withdrawn.
#[test]
fn ecmp_spreads_flows_and_survives_a_director() {
    let Some(_serial) = begin("e2e_ecmp") else {
        return;
    };
    assert!(
        std::process::Command::new("bird")
            .arg("--version")
            .output()
            .is_ok(),
        "bird is missing: run make deps"
    );
    let topo = Topology::new("e2e_ecmp");
    ha(&topo);
    ecmp(&topo, ECMP_VIP);
    let mut procs = vec![slow_server_in(&topo, "rs1"), slow_server_in(&topo, "rs2")];
    let mut first = topo.start_dpvsd_in("lb", |fp, s| ecmp_toml(5, fp, s));
    let second = topo.start_dpvsd_in("lb2", |fp, s| ecmp_toml(6, fp, s));
    let sample = |f: &str| {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../deploy/ecmp")
                .join(f),
        )
        .unwrap()
    };
    let director = sample("bird-director.conf");
    procs.push(bird(&topo, "lb", &director));
    procs.push(bird(
        &topo,
        "lb2",
        &director.replace("10.0.0.5", "10.0.0.6"),
    ));
    procs.extend(frr(&topo, "rtr", &sample("frr-router.conf")));
    assert!(
        wait_until(Duration::from_secs(30), || next_hops(&topo)
            == ["10.0.0.5", "10.0.0.6"]),
        "no two-path route to {ECMP_VIP}: {:?}\nfirst: {}\n{}",
        next_hops(&topo),
        bird_show(&topo, "lb"),
        String::from_utf8_lossy(&topo.exec_in("lb", &["ip", "addr"]).stdout),
    );

    // Flows from many client ports, spread by the router.
    let flows = 16;
    let mut downloads: Vec<Child> = (0..flows)
        .map(|_| client_of(&topo, ECMP_VIP, SLOW_PORT, 60))
        .collect();
    let made = |d: &Dpvsd| d.stats().first().map_or(0, |s| s.total.conns);
    let established = |d: &Dpvsd| {
        d.conns()
            .iter()
            .filter(|c| c.state == "ESTABLISHED")
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(10), || made(&first) + made(&second)
            == flows as u64
            && established(&first) == flows
            && established(&second) == flows),
        "not every flow made and synced: made {} + {}, established {} / {}",
        made(&first),
        made(&second),
        established(&first),
        established(&second)
    );
    let (a, b) = (made(&first), made(&second));
    eprintln!("[e2e_ecmp] {flows} flows: {a} through the first director, {b} through the second");
    assert!(
        a > 0 && b > 0,
        "the router did not spread the flows: {a} / {b}"
    );

    first.signal("KILL");
    assert!(first.wait_exit(Duration::from_secs(5)).is_some());
    let killed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(15), || next_hops(&topo) == ["10.0.0.6"]),
        "the first director's route was not withdrawn: {:?}",
        next_hops(&topo)
    );
    eprintln!(
        "[e2e_ecmp] one path left {:?} after the kill",
        killed.elapsed()
    );
    let total = 60 * CHUNK;
    for (i, c) in downloads.iter_mut().enumerate() {
        assert_eq!(
            finished(c),
            Some(format!("{total} {total}")),
            "flow {i} did not survive:\n{}",
            second.ctl_ok(&["stats"])
        );
    }

    // No usable real server: the VIP leaves dpdk0 and its route goes.
    for rs in ["192.168.0.11", "192.168.0.12"] {
        second.ctl_ok(&[
            "-e",
            "-t",
            &format!("{ECMP_VIP}:{SLOW_PORT}"),
            "-r",
            rs,
            "-g",
            "-w",
            "0",
        ]);
    }
    assert!(
        wait_until(Duration::from_secs(10), || next_hops(&topo).is_empty()),
        "still routed: {:?}",
        next_hops(&topo)
    );
    second.ctl_ok(&[
        "-e",
        "-t",
        &format!("{ECMP_VIP}:{SLOW_PORT}"),
        "-r",
        "192.168.0.11",
        "-g",
        "-w",
        "1",
    ]);
    assert!(
        wait_until(Duration::from_secs(10), || next_hops(&topo) == ["10.0.0.6"]),
        "not announced again: {:?}",
        next_hops(&topo)
    );
    for p in &mut procs {
        let _ = p.kill();
        let _ = p.wait();
    }
}
