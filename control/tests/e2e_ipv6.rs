//! IPv6 end to end (real kernel TCP/UDP through dpvsd): neighbour discovery and
//! ICMPv6 echo for the director's own addresses, then NAT66, FULLNAT66 (TOA of
//! length 20 at the real server), DR6 and TUN6 (IPv6-in-IPv6 to a user-space
//! decapsulator, packet-too-big back to the client), each with TCP and UDP.
//!
//! Same topology as the IPv4 tests: deploy/netns/topology.sh gives every
//! namespace but the director's and the switch's an IPv6 address next to the
//! IPv4 one; bypass.sh turns it into a DR/TUN topology for an IPv6 VIP.

mod netns;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::time::Duration;

use netns::{
    Dpvsd, Topology, CLIENT_IPS6, DIP6_CLIENT_SIDE, HTTP_PORT, REAL_SERVERS, REAL_SERVERS6,
    UDP_ECHO_PORT, VIP6,
};

/// The FULLNAT66 local address (on dpdk1, in the server LAN's prefix).
const LIP6: &str = "fd00:192::200";

fn vs6(port: u16) -> String {
    format!("[{VIP6}]:{port}")
}

fn all_servers() -> BTreeSet<String> {
    REAL_SERVERS6
        .iter()
        .map(|(n, _, _)| n.to_string())
        .collect()
}

/// A dpvsd with VIP6 on dpdk0 and a TCP service `[VIP6]:80` plus a UDP service
/// `[VIP6]:udp_port` to both IPv6 real servers in `flag`'s mode.
fn director(topo: &Topology, flag: &str, udp_port: u16) -> Dpvsd {
    let d = topo.start_dpvsd("");
    d.addr_add(&format!("{VIP6}/128"), "dpdk0");
    for (proto, port) in [("-t", HTTP_PORT), ("-u", udp_port)] {
        let vs = vs6(port);
        d.ctl_ok(&["-A", proto, &vs, "-s", "rr"]);
        for (_, _, rip) in REAL_SERVERS6 {
            d.ctl_ok(&["-a", proto, &vs, "-r", &format!("[{rip}]:{port}"), flag]);
        }
    }
    d
}

/// Curls `[VIP6]:80` `n` times from the client's first IPv6 address; the set
/// of server names that answered.
fn answers(topo: &Topology, n: usize) -> BTreeSet<String> {
    let url = format!("http://[{VIP6}]:{HTTP_PORT}/");
    (0..n)
        .map(|i| {
            topo.http_get_from(CLIENT_IPS6[0], &url)
                .unwrap_or_else(|| panic!("request {i} to {url} got no answer"))
                .trim()
                .to_string()
        })
        .collect()
}

fn service_stats(d: &Dpvsd, vs: &str) -> netns::ServiceStats {
    d.stats()
        .into_iter()
        .find(|s| s.addr == vs)
        .unwrap_or_else(|| panic!("no stats for {vs}"))
}

/// Three ICMPv6 echo requests to `argv[1]` from a raw socket (the kernel fills
/// the checksum and drops replies whose checksum is wrong); prints the address
/// that answered each, exits 3 when one is not answered within 2 s.
const PING6: &str = r#"
import os, socket, struct, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.settimeout(0.5)
ident, payload = os.getpid() & 0xffff, b"dpvs ping6 payload"
for seq in (1, 2, 3):
    s.sendto(struct.pack("!BBHHH", 128, 0, 0, ident, seq) + payload, (sys.argv[1], 0))
    deadline = time.time() + 2
    while True:
        if time.time() > deadline:
            sys.exit(3)
        try:
            data, peer = s.recvfrom(2048)
        except socket.timeout:
            continue
        if data[0] == 129 and struct.unpack("!HH", data[4:8]) == (ident, seq) and data[8:] == payload:
            print(peer[0], flush=True)
            break
"#;

#[test]
fn ping6_and_neighbour_discovery_for_own_addresses() {
    let Some(_serial) = netns::begin("ping6") else {
        return;
    };
    let topo = Topology::new("ping6");
    let d = topo.start_dpvsd("");
    d.addr_add(&format!("{VIP6}/128"), "dpdk0");
    for target in [VIP6, DIP6_CLIENT_SIDE] {
        let out = topo.exec_in("cli", &["python3", "-c", PING6, target]);
        assert!(
            out.status.success(),
            "ping6 {target} unanswered: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let peers: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(
            peers,
            vec![target.to_string(); 3],
            "echo replies from {target}"
        );
    }
    // The client learned the director's MAC for the VIP from our advertisement.
    let lb0 = topo.mac_of("lb", "lb0");
    let neigh = topo.exec_in("cli", &["ip", "-6", "neigh", "show", VIP6, "dev", "c0"]);
    let neigh = String::from_utf8_lossy(&neigh.stdout).to_string();
    let mac = lb0.map(|b| format!("{b:02x}")).join(":");
    assert!(
        neigh.contains(&mac),
        "client's neighbour entry for the VIP: {neigh:?} (lb0 {mac})"
    );

    // A solicitation for the VIP with hop limit 64 (an off-link forgery) is
    // refused and counted, never answered.
    let before = d.drop_counter("bad_ndp");
    let c0 = topo.mac_of("cli", "c0");
    topo.inject_frame_from_client(&solicitation(c0, CLIENT_IPS6[0], VIP6, 64));
    let after = netns::wait_for(Duration::from_secs(3), || {
        let n = d.drop_counter("bad_ndp");
        (n > before).then_some(n)
    });
    assert!(after.is_some(), "bad_ndp stayed at {before}");
}

/// An Ethernet frame with a neighbour solicitation for `target` from `src`
/// (source link-layer option `mac`) with hop limit `hops`, checksum right.
fn solicitation(mac: [u8; 6], src: &str, target: &str, hops: u8) -> Vec<u8> {
    let src: std::net::Ipv6Addr = src.parse().unwrap();
    let target: std::net::Ipv6Addr = target.parse().unwrap();
    let t = target.octets();
    let group: std::net::Ipv6Addr = [
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15],
    ]
    .into();
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&t);
    icmp.extend_from_slice(&[1, 1]);
    icmp.extend_from_slice(&mac);
    // checksum over the pseudo header
    let mut sum: u32 = 0;
    let mut words = Vec::new();
    words.extend_from_slice(&src.octets());
    words.extend_from_slice(&group.octets());
    words.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
    words.extend_from_slice(&[0, 0, 0, 58]);
    words.extend_from_slice(&icmp);
    for c in words.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    icmp[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let mut f = vec![0x33, 0x33, 0xff, t[13], t[14], t[15]];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, hops]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&group.octets());
    f.extend_from_slice(&icmp);
    f
}

#[test]
fn nat66_tcp_and_udp_reach_both_servers() {
    let Some(_serial) = netns::begin("nat66") else {
        return;
    };
    let topo = Topology::new("nat66");
    let d = director(&topo, "-m", UDP_ECHO_PORT);
    let listed = d.services();
    let tcp = listed
        .iter()
        .find(|s| s.proto == "TCP")
        .expect("TCP service");
    assert_eq!(
        (tcp.addr.as_str(), tcp.scheduler.as_str()),
        ("[fd00:10::100]:80", "rr"),
        "ipvsadm's IPv6 layout: {listed:?}"
    );
    let dests: BTreeSet<&str> = tcp.dests.iter().map(|x| x.addr.as_str()).collect();
    assert_eq!(
        dests,
        BTreeSet::from(["[fd00:192::11]:80", "[fd00:192::12]:80"])
    );
    assert!(tcp.dests.iter().all(|x| x.forward == "Masq"), "{listed:?}");

    assert_eq!(answers(&topo, 6), all_servers(), "both servers answer");
    assert_eq!(
        netns::udp_answers(&topo, VIP6, UDP_ECHO_PORT, 4),
        all_servers()
    );

    // NAT keeps the client's address: the servers saw it.
    for (name, _, _) in REAL_SERVERS6 {
        let log = std::fs::read_to_string(topo.run_dir().join(name).join("access.log"))
            .unwrap_or_default();
        assert!(
            log.contains(CLIENT_IPS6[0]),
            "{name} access log shows the client:\n{log}"
        );
    }
    let tcp = service_stats(&d, &vs6(HTTP_PORT));
    assert!(tcp.total.conns >= 6 && tcp.total.outpkts > 0, "{tcp:?}");
    let udp = service_stats(&d, &vs6(UDP_ECHO_PORT));
    assert_eq!((udp.total.inpkts, udp.total.outpkts), (4, 4), "{udp:?}");
}

/// Prints the first TOA option of length 20 (an IPv6 client) seen in a TCP
/// segment from `argv[1]` (an IPv6 LIP for FULLNAT66, an IPv4 one for
/// FULLNAT64) on any interface of the namespace, as
/// `TOA [ip]:port`; exits 1 after `argv[2]` seconds without one.
const TOA_SNIFFER: &str = r#"
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.settimeout(0.5)
six = ":" in sys.argv[1]
lip = socket.inet_pton(socket.AF_INET6 if six else socket.AF_INET, sys.argv[1])
deadline = time.time() + float(sys.argv[2])
print("ready", flush=True)
while time.time() < deadline:
    try:
        f = s.recv(65535)
    except socket.timeout:
        continue
    ip = f[14:]
    if six:
        if len(f) < 74 or f[12:14] != b"\x86\xdd" or ip[6] != 6 or ip[8:24] != lip:
            continue
        tcp = ip[40:]
    else:
        if len(f) < 54 or f[12:14] != b"\x08\x00" or ip[9] != 6 or ip[12:16] != lip:
            continue
        tcp = ip[(ip[0] & 15) * 4:]
    doff = (tcp[12] >> 4) * 4
    opts = tcp[20:doff]
    i = 0
    while i + 1 < len(opts):
        k = opts[i]
        if k == 0:
            break
        if k == 1:
            i += 1
            continue
        l = opts[i + 1]
        if l < 2:
            break
        if k == 254 and l == 20:
            port = struct.unpack("!H", opts[i + 2:i + 4])[0]
            addr = socket.inet_ntop(socket.AF_INET6, opts[i + 4:i + 20])
            print("TOA [%s]:%d" % (addr, port), flush=True)
            sys.exit(0)
        i += l
sys.exit(1)
"#;

/// Runs `traffic` while `TOA_SNIFFER` watches the servers' LAN for segments
/// from `lip`; the TOA it found (client address, port).
fn toa_seen_at_servers(topo: &Topology, lip: &str, traffic: impl FnOnce()) -> (String, u16) {
    let mut sniff = topo.spawn_in(
        "lan",
        &["timeout", "20", "python3", "-c", TOA_SNIFFER, lip, "15"],
    );
    let mut out = BufReader::new(sniff.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("sniffer starts");
    assert_eq!(line.trim(), "ready");
    traffic();
    line.clear();
    out.read_line(&mut line).expect("sniffer output");
    assert!(
        sniff.wait().expect("sniffer exits").success(),
        "no TCP segment with a 20-byte TOA seen from {lip}"
    );
    let toa = line.trim().strip_prefix("TOA [").expect("TOA line");
    let (ip, port) = toa.split_once("]:").expect("[ip]:port");
    (ip.to_string(), port.parse().expect("port"))
}

#[test]
fn fullnat66_hides_the_client_but_tells_it_in_toa() {
    let Some(_serial) = netns::begin("fullnat66") else {
        return;
    };
    let topo = Topology::new("fullnat66");
    let d = director(&topo, "-b", UDP_ECHO_PORT);
    for (proto, port) in [("-t", HTTP_PORT), ("-u", UDP_ECHO_PORT)] {
        d.ctl_ok(&["-P", proto, &vs6(port), "-z", LIP6, "-F", "dpdk1"]);
    }
    let g = d.ctl_ok(&["-G"]);
    assert!(g.contains(LIP6), "-G lists the IPv6 local address:\n{g}");

    let (toa_ip, port) = toa_seen_at_servers(&topo, LIP6, || {
        assert_eq!(answers(&topo, 6), all_servers(), "both servers answer");
    });
    assert_eq!(
        toa_ip, CLIENT_IPS6[0],
        "TOA carries the client's IPv6 address"
    );
    assert!(port >= 1024, "client's ephemeral port: {port}");

    for (name, _, _) in REAL_SERVERS6 {
        let log = std::fs::read_to_string(topo.run_dir().join(name).join("access.log"))
            .unwrap_or_default();
        assert!(
            log.contains(LIP6),
            "{name} access log shows the LIP:\n{log}"
        );
        assert!(!log.contains(CLIENT_IPS6[0]), "{name}: {log}");
    }

    // UDP: the echo on [::]:9000 answers the LIP, the director brings it back.
    assert_eq!(
        netns::udp_answers(&topo, VIP6, UDP_ECHO_PORT, 4),
        all_servers()
    );
    let conns = d.conns();
    assert!(
        conns
            .iter()
            .any(|c| c.proto == "UDP" && c.dest.starts_with("[fd00:192::")),
        "{conns:?}"
    );
    let udp = service_stats(&d, &vs6(UDP_ECHO_PORT));
    assert_eq!((udp.total.inpkts, udp.total.outpkts), (4, 4), "{udp:?}");
}

#[test]
fn dr6_replies_bypass_the_director() {
    let Some(_serial) = netns::begin("dr6") else {
        return;
    };
    let topo = Topology::new("dr6");
    netns::bypass(&topo, "dr", VIP6);
    let d = director(&topo, "-g", 9001);
    assert!(
        d.services()
            .iter()
            .all(|s| s.dests.iter().all(|x| x.forward == "Route")),
        "-Ln shows Route"
    );
    assert_eq!(answers(&topo, 6), all_servers(), "both servers answer");
    assert_eq!(netns::udp_answers(&topo, VIP6, 9001, 4), all_servers());

    let tcp = service_stats(&d, &vs6(HTTP_PORT));
    assert!(tcp.total.inpkts >= 6 * 3, "requests counted: {tcp:?}");
    assert_eq!(
        tcp.total.outpkts, 0,
        "replies never pass the director: {tcp:?}"
    );
    let udp = service_stats(&d, &vs6(9001));
    assert_eq!((udp.total.inpkts, udp.total.outpkts), (4, 0), "{udp:?}");
}

#[test]
fn tun6_reaches_decapsulating_servers_and_packet_too_big_reaches_the_client() {
    let Some(_serial) = netns::begin("tun6") else {
        return;
    };
    let topo = Topology::new("tun6");
    netns::bypass(&topo, "tun", VIP6);
    let d = director(&topo, "-i", 9001);
    assert!(
        d.services()
            .iter()
            .all(|s| s.dests.iter().all(|x| x.forward == "Tunnel")),
        "-Ln shows Tunnel"
    );
    assert_eq!(answers(&topo, 6), all_servers(), "both servers answer");
    assert_eq!(netns::udp_answers(&topo, VIP6, 9001, 4), all_servers());
    let tcp = service_stats(&d, &vs6(HTTP_PORT));
    assert!(tcp.total.inpkts >= 18, "{tcp:?}");
    assert_eq!(tcp.total.outpkts, 0, "replies bypass the director: {tcp:?}");
    let udp = service_stats(&d, &vs6(9001));
    assert_eq!((udp.total.inpkts, udp.total.outpkts), (4, 0), "{udp:?}");

    // PMTU: a full-sized 1500-byte IPv6 segment does not fit in IPv6-in-IPv6
    // on a 1500-byte LAN; the client learns 1460 from the director's
    // packet-too-big and the upload goes through.
    let before = d.drop_counter("frag_needed");
    let port = HTTP_PORT.to_string();
    let out = topo.exec_in(
        "cli",
        &["python3", "-c", netns::BIG_POST, VIP6, &port, "20000"],
    );
    assert!(
        out.status.success(),
        "big upload through TUN6: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        all_servers().contains(&body),
        "answered by a server: {body:?}"
    );
    assert!(
        d.drop_counter("frag_needed") > before,
        "the director refused a too-big packet"
    );
    let route = topo.exec_in("cli", &["ip", "-6", "route", "get", VIP6]);
    let route = String::from_utf8_lossy(&route.stdout).to_string();
    assert!(
        route.contains("mtu 1460"),
        "the client cached the reduced path MTU: {route}"
    );
}

/// FULLNAT64: an IPv6 client, an IPv6 VIP, IPv4 real servers behind an IPv4
/// LIP. HTTP and UDP answered by both servers; at the servers the traffic is
/// IPv4 from the LIP with the client's IPv6 address in TOA (length 20).
#[test]
fn fullnat64_serves_an_ipv6_vip_from_ipv4_servers() {
    const LIP4: &str = "192.168.0.200";
    let Some(_serial) = netns::begin("fullnat64") else {
        return;
    };
    let topo = Topology::new("fullnat64");
    let d = topo.start_dpvsd("");
    d.addr_add(&format!("{VIP6}/128"), "dpdk0");
    for (proto, port) in [("-t", HTTP_PORT), ("-u", UDP_ECHO_PORT)] {
        let vs = vs6(port);
        d.ctl_ok(&["-A", proto, &vs, "-s", "rr"]);
        for (_, _, rip) in REAL_SERVERS {
            d.ctl_ok(&["-a", proto, &vs, "-r", &format!("{rip}:{port}"), "-b"]);
        }
        d.ctl_ok(&["-P", proto, &vs, "-z", LIP4, "-F", "dpdk1"]);
    }
    // Only FULLNAT mixes the families.
    let out = d.ctl(&["-a", "-t", &vs6(HTTP_PORT), "-r", "192.168.0.13:80", "-m"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("differ in address family"),
        "NAT to an IPv4 server of an IPv6 service refused: {err}"
    );

    let (toa_ip, _) = toa_seen_at_servers(&topo, LIP4, || {
        assert_eq!(answers(&topo, 6), all_servers(), "both IPv4 servers answer");
    });
    assert_eq!(toa_ip, CLIENT_IPS6[0], "TOA carries the IPv6 client");
    for (name, _, _) in REAL_SERVERS {
        let log = std::fs::read_to_string(topo.run_dir().join(name).join("access.log"))
            .unwrap_or_default();
        assert!(log.contains(LIP4), "{name} sees the IPv4 LIP:\n{log}");
    }

    assert_eq!(
        netns::udp_answers(&topo, VIP6, UDP_ECHO_PORT, 4),
        all_servers()
    );
    let conns = d.conns();
    assert!(
        conns
            .iter()
            .any(|c| c.proto == "TCP" && c.dest.starts_with("192.168.0.")),
        "-Lnc shows IPv4 dests of the IPv6 service: {conns:?}"
    );
    let udp = service_stats(&d, &vs6(UDP_ECHO_PORT));
    assert_eq!((udp.total.inpkts, udp.total.outpkts), (4, 4), "{udp:?}");
    let http = service_stats(&d, &vs6(HTTP_PORT));
    assert_eq!(http.total.conns, 6, "{http:?}");
}
