//! ICMP errors about tracked connections end to end, with real kernels on both
//! sides: what a client program notices when a real server or a router on the
//! server side answers with an ICMP error, through dpvsd in NAT and FULLNAT.
//!
//! - Port unreachable: a UDP service whose real server has nothing listening;
//!   the RS kernel answers ICMP port unreachable, dpvsd translates it, and the
//!   client's connected UDP socket gets ECONNREFUSED.
//! - Fragmentation needed: a helper on the RS plays a router with a 1200-byte
//!   MTU (it answers a big DF datagram with frag-needed quoting it, from the
//!   RS's address as a kernel would); the client kernel learns the path MTU
//!   (`IP_MTU` on the socket, `ip route get` shows the cached `mtu 1200`).
//!
//! NAT uses the VIP 10.0.0.100, FULLNAT a second VIP 10.0.0.101 with the
//! local address 192.168.0.200, so the client's PMTU cache of one does not
//! hide the other.

mod netns;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use netns::{Topology, CLIENT_IPS, VIP};

const VIP2: &str = "10.0.0.101";
const LIP: &str = "192.168.0.200";
const RIP: &str = "192.168.0.11";

/// Connected UDP socket from argv[1] to argv[2]:argv[3]; sends one datagram
/// and prints REFUSED (ECONNREFUSED from an ICMP port unreachable), ANSWER or
/// TIMEOUT (2 s).
const UDP_CONNECTED: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
s.connect((sys.argv[2], int(sys.argv[3])))
s.settimeout(2.0)
s.send(b"hello")
try:
    s.recv(2048)
    print("ANSWER")
except ConnectionRefusedError:
    print("REFUSED")
except socket.timeout:
    print("TIMEOUT")
"#;

/// Sends 1400-byte datagrams with DF (IP_PMTUDISC_DO) from argv[1] to
/// argv[2]:argv[3] until the socket's path MTU drops below 1500 or argv[4]
/// seconds pass; prints `MTU <n>`.
const PMTU_CLIENT: &str = r#"
import socket, sys, time
IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_MTU = 10, 2, 14
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
s.connect((sys.argv[2], int(sys.argv[3])))
s.settimeout(0.3)
deadline = time.time() + float(sys.argv[4])
mtu = s.getsockopt(socket.IPPROTO_IP, IP_MTU)
while time.time() < deadline and mtu >= 1500:
    try:
        s.send(b"x" * 1400)
    except OSError:
        pass
    try:
        s.recv(2048)
    except (socket.timeout, OSError):
        pass
    mtu = s.getsockopt(socket.IPPROTO_IP, IP_MTU)
print("MTU", mtu)
"#;

/// On a real server: a router with a small MTU. Sinks UDP port argv[1]; the
/// first datagram to it longer than argv[2] bytes is answered with ICMP
/// fragmentation needed (MTU argv[2]) quoting it (at most 548 bytes), sent to
/// its source. Prints `ready`, then `sent <dst>`; gives up after argv[3] s.
const FRAG_NEEDED_ROUTER: &str = r#"
import socket, struct, sys, time
port, mtu, limit = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind(("0.0.0.0", port))
cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
cap.settimeout(0.2)
icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
print("ready", flush=True)
deadline = time.time() + limit
while time.time() < deadline:
    try:
        f = cap.recv(65535)
    except socket.timeout:
        continue
    ip = f[14:]
    if len(ip) < 28 or ip[9] != 17:
        continue
    ihl = (ip[0] & 15) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    if struct.unpack("!H", ip[ihl + 2:ihl + 4])[0] != port or total <= mtu:
        continue
    quote = ip[:min(total, 548)]
    head = struct.pack("!BBHHH", 3, 4, 0, 0, mtu)
    msg = struct.pack("!BBHHH", 3, 4, csum(head + quote), 0, mtu) + quote
    dst = socket.inet_ntoa(ip[12:16])
    icmp.sendto(msg, (dst, 0))
    print("sent", dst, flush=True)
    break
"#;

/// From a real server: an ICMP port unreachable to argv[1] quoting a UDP
/// datagram argv[1]:1 -> argv[2]:9999 that never existed.
const STRAY_UNREACHABLE: &str = r#"
import socket, struct, sys
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
src, dst = socket.inet_aton(sys.argv[1]), socket.inet_aton(sys.argv[2])
iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0, src, dst)
iph = iph[:10] + struct.pack("!H", csum(iph)) + iph[12:]
quote = iph + struct.pack("!HHHH", 1, 9999, 8, 0)
head = struct.pack("!BBHI", 3, 3, 0, 0)
msg = struct.pack("!BBHI", 3, 3, csum(head + quote), 0) + quote
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.sendto(msg, (sys.argv[1], 0))
"#;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A UDP service `vip:port` with rs1 only, forwarded as `flag` (`-m`, `-b`);
/// FULLNAT gets the local address LIP.
fn udp_service(d: &netns::Dpvsd, vip: &str, port: u16, flag: &str) {
    let vs = format!("{vip}:{port}");
    d.ctl_ok(&["-A", "-u", &vs, "-s", "rr"]);
    d.ctl_ok(&["-a", "-u", &vs, "-r", &format!("{RIP}:{port}"), flag]);
    if flag == "-b" {
        d.ctl_ok(&["-P", "-u", &vs, "-z", LIP, "-F", "dpdk1"]);
    }
}

fn setup(topo: &Topology) -> netns::Dpvsd {
    let d = topo.start_dpvsd("");
    d.addr_add(&format!("{VIP}/32"), "dpdk0");
    d.addr_add(&format!("{VIP2}/32"), "dpdk0");
    d
}

#[test]
fn port_unreachable_from_the_rs_refuses_the_clients_udp_socket() {
    let Some(_serial) = netns::begin("icmp-unreach") else {
        return;
    };
    let topo = Topology::new("icmp-unreach");
    let d = setup(&topo);
    // Nothing listens on 9001/9002 on the real servers.
    udp_service(&d, VIP, 9001, "-m");
    udp_service(&d, VIP2, 9002, "-b");

    for (vip, port, mode) in [(VIP, "9001", "NAT"), (VIP2, "9002", "FULLNAT")] {
        let out = topo.exec_in(
            "cli",
            &["python3", "-c", UDP_CONNECTED, CLIENT_IPS[0], vip, port],
        );
        assert_eq!(
            stdout(&out),
            "REFUSED",
            "{mode}: the client's socket sees the RS's port unreachable: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let conns = d.conns();
    assert_eq!(conns.len(), 2, "one connection per mode: {conns:?}");
    assert_eq!(d.drop_counter("icmp_no_conn"), 0);
    assert_eq!(d.drop_counter("bad_icmp_inner"), 0);

    // An error about a flow the director never saw: counted, not forwarded.
    let out = topo.exec_in(
        "rs1",
        &["python3", "-c", STRAY_UNREACHABLE, CLIENT_IPS[0], RIP],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counted = netns::wait_for(Duration::from_secs(5), || {
        (d.drop_counter("icmp_no_conn") == 1).then_some(())
    });
    assert!(counted.is_some(), "stray error counted as icmp_no_conn");
}

#[test]
fn frag_needed_from_the_server_side_teaches_the_client_the_path_mtu() {
    let Some(_serial) = netns::begin("icmp-pmtu") else {
        return;
    };
    let topo = Topology::new("icmp-pmtu");
    let d = setup(&topo);
    udp_service(&d, VIP, 9003, "-m");
    udp_service(&d, VIP2, 9004, "-b");

    for (vip, port, mode, quoted_src) in [
        (VIP, "9003", "NAT", CLIENT_IPS[0]),
        (VIP2, "9004", "FULLNAT", LIP),
    ] {
        let mut router = topo.spawn_in(
            "rs1",
            &[
                "python3",
                "-u",
                "-c",
                FRAG_NEEDED_ROUTER,
                port,
                "1200",
                "10",
            ],
        );
        let mut lines = BufReader::new(router.stdout.take().expect("stdout")).lines();
        let first = lines.next().and_then(|l| l.ok()).unwrap_or_default();
        assert_eq!(first, "ready", "{mode}: router helper started");

        let out = topo.exec_in(
            "cli",
            &["python3", "-c", PMTU_CLIENT, CLIENT_IPS[0], vip, port, "5"],
        );
        let sent = lines.next().and_then(|l| l.ok()).unwrap_or_default();
        let _ = router.wait();
        assert_eq!(
            sent,
            format!("sent {quoted_src}"),
            "{mode}: the RS side answered the director's packet"
        );
        assert_eq!(
            stdout(&out),
            "MTU 1200",
            "{mode}: the client learned the path MTU: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let route = topo.exec_in("cli", &["ip", "route", "get", vip]);
        assert!(
            stdout(&route).contains("mtu 1200"),
            "{mode}: cached PMTU for the VIP: {}",
            stdout(&route)
        );
    }
    assert_eq!(d.drop_counter("icmp_no_conn"), 0);
    assert_eq!(d.drop_counter("bad_icmp_inner"), 0);
}
