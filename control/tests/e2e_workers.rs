//! Two workers end to end: dpvsd with two workers on af_packet ports of two
//! queue pairs each, where the kernel's fanout hash spreads flows over the
//! queues regardless of which worker owns a connection. Hundreds of concurrent
//! HTTP connections through NAT (IPv4 and IPv6) and FULLNAT with TOA, a 4 MB
//! upload through each mode checked byte for byte by its digest, and UDP from
//! many source ports: everything must be answered, both workers must carry
//! connections, and the hand-over counters must show it happened.

mod netns;

use std::collections::BTreeMap;

use netns::{Topology, HTTP_PORT, REAL_SERVERS, REAL_SERVERS6, UDP_ECHO_PORT, VIP, VIP6};

/// Opens `argv[3]` connections to `argv[1]` port `argv[2]` at once, sends
/// `GET /` on each, and prints how many answered each body (`rs1 150`), then
/// `failed N`.
const CONCURRENT_GETS: &str = r#"
import asyncio, collections, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
async def one():
    r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
    w.write(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
    data = await asyncio.wait_for(r.read(), 10)
    w.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return body.decode().strip()
async def main():
    got = await asyncio.gather(*[one() for _ in range(n)], return_exceptions=True)
    seen = collections.Counter(g for g in got if isinstance(g, str))
    for k, v in sorted(seen.items()):
        print(k, v)
    print("failed", sum(1 for g in got if not isinstance(g, str)), flush=True)
asyncio.run(main())
"#;

/// A TCP sink for each real server: reads a whole upload (to the client's
/// half-close) and answers `<name> <bytes> <sha256>`.
const SINK: &str = r#"
import hashlib, socket, sys, threading
name, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(64)
def serve(c):
    h, n = hashlib.sha256(), 0
    while True:
        b = c.recv(65536)
        if not b:
            break
        h.update(b)
        n += len(b)
    c.sendall(("%s %d %s\n" % (name, n, h.hexdigest())).encode())
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// Uploads `argv[3]` pseudo-random bytes to `argv[1]` port `argv[2]`, then
/// prints the sink's answer and, on a second line, the local digest.
const UPLOAD: &str = r#"
import hashlib, random, socket, sys
n = int(sys.argv[3])
data = random.Random(7).randbytes(n)
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
ans = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    ans += b
print(ans.decode().strip())
print("%d %s" % (n, hashlib.sha256(data).hexdigest()), flush=True)
"#;

/// `argv[3]` UDP sockets (each its own source port) send one datagram each to
/// `argv[1]` port `argv[2]`, in rounds of 16; prints `answered N` and `lost N`.
const UDP_MANY: &str = r#"
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
answered = lost = 0
for start in range(0, n, 16):
    socks = []
    for i in range(start, min(n, start + 16)):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.settimeout(3.0)
        s.connect((host, port))
        s.send(b"m%d" % i)
        socks.append((i, s))
    for i, s in socks:
        try:
            d = s.recv(65535).decode()
            if d.endswith(":m%d" % i):
                answered += 1
            else:
                lost += 1
        except socket.timeout:
            lost += 1
        s.close()
print("answered", answered)
print("lost", lost, flush=True)
"#;

const CONCURRENT: usize = 300;
const UPLOAD_BYTES: usize = 4 << 20;
const SINK_PORT: u16 = 8081;
const LIP: &str = "192.168.0.200";

/// Per server name, how many of `n` concurrent GETs to `host` it answered;
/// asserts none failed.
fn concurrent_gets(topo: &Topology, host: &str, n: usize) -> BTreeMap<String, usize> {
    let port = HTTP_PORT.to_string();
    let out = topo.exec_in(
        "cli",
        &[
            "python3",
            "-c",
            CONCURRENT_GETS,
            host,
            &port,
            &n.to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "concurrent GETs to {host}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen: BTreeMap<String, usize> = text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(0)))
        .collect();
    assert_eq!(seen.remove("failed"), Some(0), "{n} GETs to {host}: {text}");
    assert_eq!(seen.values().sum::<usize>(), n, "{text}");
    seen
}

/// The upload sinks; stopped (and reaped) on drop.
struct Sinks(Vec<std::process::Child>);

impl Drop for Sinks {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts the upload sink on both real servers.
fn start_sinks(topo: &Topology) -> Sinks {
    let sinks = Sinks(
        REAL_SERVERS
            .iter()
            .map(|(name, role, _)| {
                topo.spawn_in(role, &["python3", "-c", SINK, name, &SINK_PORT.to_string()])
            })
            .collect(),
    );
    for (_, role, _) in REAL_SERVERS {
        let ok = netns::wait_for(std::time::Duration::from_secs(5), || {
            let o = topo.exec_in(role, &["ss", "-Hltn", &format!("sport = :{SINK_PORT}")]);
            (!String::from_utf8_lossy(&o.stdout).trim().is_empty()).then_some(())
        });
        assert!(ok.is_some(), "upload sink listening on {role}");
    }
    sinks
}

/// A 4 MB upload to `vip`:SINK_PORT arrives whole: the sink's byte count and
/// digest equal the client's.
fn upload_arrives_intact(topo: &Topology, vip: &str) {
    let port = SINK_PORT.to_string();
    let out = topo.exec_in(
        "cli",
        &[
            "python3",
            "-c",
            UPLOAD,
            vip,
            &port,
            &UPLOAD_BYTES.to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "upload to {vip}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let (server, got) = lines[0].split_once(' ').expect("name bytes digest");
    assert!(server == "rs1" || server == "rs2", "{text}");
    assert_eq!(got, lines[1], "the server received exactly what was sent");
}

/// Every worker's counter `name`, from `dpvsctl stats`.
fn per_worker(d: &netns::Dpvsd, name: &str) -> Vec<u64> {
    (0..2)
        .map(|w| d.drop_counter(&format!("worker.{w}.{name}")))
        .collect()
}

/// Both workers own connections (`-Lnc --worker`), and each handed packets
/// over to the other.
fn both_workers_worked(d: &netns::Dpvsd, what: &str) {
    let conns = d.ctl_ok(&["-Lnc", "--worker"]);
    let mut owners = BTreeMap::new();
    for line in conns.lines().skip(2) {
        if let Some(w) = line.split_whitespace().last() {
            *owners.entry(w.to_string()).or_insert(0usize) += 1;
        }
    }
    assert_eq!(
        owners.keys().cloned().collect::<Vec<_>>(),
        ["0", "1"],
        "{what}: connections on both workers: {owners:?}"
    );
    let handed = per_worker(d, "handed_over");
    let received = per_worker(d, "handover_in");
    assert!(
        handed.iter().all(|&h| h > 0),
        "{what}: each worker handed packets over: {handed:?}"
    );
    assert_eq!(
        handed.iter().sum::<u64>(),
        received.iter().sum::<u64>() + d.drop_counter("handover_full"),
        "{what}: every handed packet arrived or was counted"
    );
    let rx = per_worker(d, "rx_packets");
    assert!(
        rx.iter().all(|&r| r > 0),
        "{what}: both queues carry traffic: {rx:?}"
    );
}

#[test]
fn nat_with_two_workers_answers_every_connection() {
    let Some(_serial) = netns::begin("workers-nat") else {
        return;
    };
    let topo = Topology::new("workers-nat");
    let _sinks = start_sinks(&topo);
    let d = topo.start_dpvsd_2workers("");
    d.addr_add(&format!("{VIP}/32"), "dpdk0");
    d.addr_add(&format!("{VIP6}/128"), "dpdk0");
    for (vs, port, servers) in [
        (format!("{VIP}:{HTTP_PORT}"), HTTP_PORT, REAL_SERVERS),
        (format!("{VIP}:{SINK_PORT}"), SINK_PORT, REAL_SERVERS),
        (format!("[{VIP6}]:{HTTP_PORT}"), HTTP_PORT, REAL_SERVERS6),
    ] {
        d.ctl_ok(&["-A", "-t", &vs, "-s", "rr"]);
        for (_, _, rip) in servers {
            let rs = if rip.contains(':') {
                format!("[{rip}]:{port}")
            } else {
                format!("{rip}:{port}")
            };
            d.ctl_ok(&["-a", "-t", &vs, "-r", &rs, "-m"]);
        }
    }
    let vu = format!("{VIP}:{UDP_ECHO_PORT}");
    d.ctl_ok(&["-A", "-u", &vu, "-s", "rr"]);
    for (_, _, rip) in REAL_SERVERS {
        d.ctl_ok(&[
            "-a",
            "-u",
            &vu,
            "-r",
            &format!("{rip}:{UDP_ECHO_PORT}"),
            "-m",
        ]);
    }

    let seen = concurrent_gets(&topo, VIP, CONCURRENT);
    assert_eq!(seen.len(), 2, "both real servers answered: {seen:?}");
    let seen6 = concurrent_gets(&topo, VIP6, CONCURRENT);
    assert_eq!(
        seen6.len(),
        2,
        "IPv6: both real servers answered: {seen6:?}"
    );
    upload_arrives_intact(&topo, VIP);

    let out = topo.exec_in(
        "cli",
        &[
            "python3",
            "-c",
            UDP_MANY,
            VIP,
            &UDP_ECHO_PORT.to_string(),
            "200",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("answered 200\n") && text.contains("lost 0"),
        "UDP: {text}"
    );

    both_workers_worked(&d, "NAT");
    assert_eq!(
        d.drop_counter("no_connection"),
        0,
        "no segment lost its connection"
    );
}

#[test]
fn fullnat_with_two_workers_answers_every_connection() {
    let Some(_serial) = netns::begin("workers-fnat") else {
        return;
    };
    let topo = Topology::new("workers-fnat");
    let _sinks = start_sinks(&topo);
    let d = topo.start_dpvsd_2workers("");
    d.addr_add(&format!("{VIP}/32"), "dpdk0");
    for port in [HTTP_PORT, SINK_PORT] {
        let vs = format!("{VIP}:{port}");
        d.ctl_ok(&["-A", "-t", &vs, "-s", "rr"]);
        for (_, _, rip) in REAL_SERVERS {
            d.ctl_ok(&["-a", "-t", &vs, "-r", &format!("{rip}:{port}"), "-b"]);
        }
        d.ctl_ok(&["-P", "-t", &vs, "-z", LIP, "-F", "dpdk1"]);
    }

    let seen = concurrent_gets(&topo, VIP, CONCURRENT);
    assert_eq!(seen.len(), 2, "both real servers answered: {seen:?}");
    upload_arrives_intact(&topo, VIP);

    // The servers saw the LIP, and TOA told them the client: every
    // connection's first data segment carried it.
    assert!(
        d.drop_counter("toa_inserted") >= CONCURRENT as u64,
        "TOA in every connection"
    );
    for (name, _, _) in REAL_SERVERS {
        let log = std::fs::read_to_string(topo.run_dir().join(name).join("access.log"))
            .unwrap_or_default();
        assert!(log.contains(LIP), "{name} saw the LIP:\n{log}");
    }
    both_workers_worked(&d, "FULLNAT");
    assert_eq!(
        d.drop_counter("no_connection"),
        0,
        "no segment lost its connection"
    );
}

#[test]
fn a_worker_panic_stops_dpvsd_with_a_line_naming_it() {
    let Some(_serial) = netns::begin("workers-panic") else {
        return;
    };
    let topo = Topology::new("workers-panic");
    let mut d = topo.spawn_dpvsd(2, "", &[("DPVSD_INJECT_WORKER_PANIC", "1")]);
    let status = d
        .wait_exit(std::time::Duration::from_secs(30))
        .expect("dpvsd stops by itself");
    assert_eq!(status.code(), Some(1), "non-zero exit: {status:?}");
    let log = d.log();
    assert!(
        log.contains(
            "dpvsd: worker 1 (lcore 2) panicked: injected by DPVSD_INJECT_WORKER_PANIC; stopping"
        ),
        "{log}"
    );
}
