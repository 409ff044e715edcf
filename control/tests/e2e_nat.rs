//! NAT mode end to end: a real client (curl, UDP sockets) in one namespace, dpvsd
//! on af_packet vdevs in the director's, nginx and UDP echo servers behind it.
//! Each test builds its own topology and daemon; the harness serializes them.
//!
//! What is asserted is what a user would notice: which real server answered, the
//! payload that came back, and the counters `dpvsctl` shows.

mod netns;

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use netns::{Dpvsd, Topology, HTTP_PORT, REAL_SERVERS, UDP_ECHO_PORT, VIP};

/// The demo's services: TCP VIP:80 and UDP VIP:9000, rr over both real servers,
/// masquerading, weight 1.
fn nat_director(topo: &Topology) -> Dpvsd {
    nat_services(topo.start_dpvsd(""))
}

fn nat_services(d: Dpvsd) -> Dpvsd {
    d.add_nat_services();
    d
}

fn vip_url(port: u16) -> String {
    format!("http://{VIP}:{port}/")
}

/// Which server answered each of `n` HTTP requests; panics on a request that got
/// no answer or an answer from no known server.
fn http_answers(topo: &Topology, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for i in 0..n {
        let body = topo
            .http_get_from_client(&vip_url(HTTP_PORT))
            .unwrap_or_else(|| panic!("request {i} through the VIP got no answer"));
        let name = body.trim().to_string();
        assert!(
            REAL_SERVERS.iter().any(|(rs, _, _)| *rs == name),
            "request {i}: unexpected body {body:?}"
        );
        *seen.entry(name).or_insert(0) += 1;
    }
    seen
}

fn tcp_service(d: &Dpvsd) -> netns::ServiceStats {
    let vs = format!("{VIP}:{HTTP_PORT}");
    d.stats()
        .into_iter()
        .find(|s| s.proto == "TCP" && s.addr == vs)
        .unwrap_or_else(|| panic!("no TCP {vs} in -Ln --stats"))
}

#[test]
fn http_through_nat_vip_reaches_both_real_servers_in_rr_order() {
    let Some(_serial) = netns::begin("http_rr") else {
        return;
    };
    let topo = Topology::new("http_rr");
    let _d = nat_director(&topo);

    let seen = http_answers(&topo, 12);
    assert_eq!(seen.get("rs1"), Some(&6), "rr over two servers: {seen:?}");
    assert_eq!(seen.get("rs2"), Some(&6), "rr over two servers: {seen:?}");
}

/// The ports `make demo` uses when it can: net_af_xdp on the veths. Same
/// services and checks as on af_packet.
#[test]
fn nat_on_af_xdp_ports_serves_http_and_udp() {
    let Some(_serial) = netns::begin("nat_xdp") else {
        return;
    };
    let topo = Topology::new("nat_xdp");
    let d = nat_services(topo.start_dpvsd_af_xdp(""));
    let seen = http_answers(&topo, 8);
    assert_eq!(seen.get("rs1"), Some(&4), "rr over two servers: {seen:?}");
    assert_eq!(seen.get("rs2"), Some(&4), "rr over two servers: {seen:?}");
    for i in 0..4 {
        let payload = format!("xdp-{i}");
        let reply = topo
            .udp_echo_from_client(VIP, UDP_ECHO_PORT, &payload)
            .unwrap_or_else(|| panic!("datagram {i} to the UDP VIP got no reply"));
        assert!(reply.ends_with(&format!(":{payload}")), "{reply:?}");
    }
    assert_eq!(tcp_service(&d).total.conns, 8, "every request a connection");
}

#[test]
fn udp_echo_through_nat_vip_reaches_both_real_servers() {
    let Some(_serial) = netns::begin("udp_rr") else {
        return;
    };
    let topo = Topology::new("udp_rr");
    let _d = nat_director(&topo);

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..6 {
        let payload = format!("hello-{i}");
        let reply = topo
            .udp_echo_from_client(VIP, UDP_ECHO_PORT, &payload)
            .unwrap_or_else(|| panic!("datagram {i} to the UDP VIP got no reply"));
        let (name, echoed) = reply
            .split_once(':')
            .unwrap_or_else(|| panic!("reply {reply:?} is not <server>:<payload>"));
        assert_eq!(echoed, payload, "the payload comes back unchanged");
        *seen.entry(name.to_string()).or_insert(0) += 1;
    }
    // Every datagram came from a new source port: a new connection, scheduled rr.
    assert_eq!(seen.get("rs1"), Some(&3), "{seen:?}");
    assert_eq!(seen.get("rs2"), Some(&3), "{seen:?}");
}

#[test]
fn one_packet_scheduling_spreads_one_socket_and_keeps_no_connection() {
    let Some(_serial) = netns::begin("udp_ops") else {
        return;
    };
    let topo = Topology::new("udp_ops");
    let d = topo.start_dpvsd("");
    d.addr_add(&format!("{VIP}/32"), "dpdk0");
    let vs = format!("{VIP}:{UDP_ECHO_PORT}");
    d.ctl_ok(&["-A", "-u", &vs, "-s", "rr", "-o"]);
    for (_, _, rip) in REAL_SERVERS {
        let rs = format!("{rip}:{UDP_ECHO_PORT}");
        d.ctl_ok(&["-a", "-u", &vs, "-r", &rs, "-m"]);
    }
    assert!(d.ctl_ok(&["-Ln"]).contains(&format!("UDP  {vs} rr ops\n")));
    // One client socket (one 5-tuple), six datagrams: as DNS resolvers send.
    const PY: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2.0)
s.connect((sys.argv[1], int(sys.argv[2])))
for i in range(6):
    s.send(("q%d" % i).encode())
    print(s.recv(65535).decode())
"#;
    let out = topo.exec_in(
        "cli",
        &["python3", "-c", PY, VIP, &UDP_ECHO_PORT.to_string()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split(':').next().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        names,
        ["rs1", "rs2", "rs1", "rs2", "rs1", "rs2"],
        "each datagram scheduled on its own, replies from the VIP"
    );
    // Nothing kept: no UDP entry for the client's socket.
    let conns = d.conns();
    assert!(conns.iter().all(|c| c.proto != "UDP"), "{conns:?}");
    let svc = d
        .stats()
        .into_iter()
        .find(|s| s.proto == "UDP" && s.addr == vs)
        .expect("the service in --stats");
    assert_eq!(
        (svc.total.conns, svc.total.inpkts, svc.total.outpkts),
        (6, 6, 6)
    );
}

#[test]
fn a_forged_arp_reply_does_not_redirect_a_real_server() {
    let Some(_serial) = netns::begin("arp_spoof") else {
        return;
    };
    let topo = Topology::new("arp_spoof");
    let d = nat_director(&topo);
    let seen = http_answers(&topo, 4);
    assert_eq!(
        (seen.get("rs1"), seen.get("rs2")),
        (Some(&2), Some(&2)),
        "{seen:?}"
    );
    // rs2 claims rs1's address, straight to the director's port (op 2, no
    // request before it), several times.
    let evil = topo.mac_of("rs2", "eth0");
    let director = topo.mac_of("lb", "lb1");
    let mut f = director.to_vec();
    f.extend_from_slice(&evil);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
    f.extend_from_slice(&evil);
    f.extend_from_slice(&[192, 168, 0, 11]);
    f.extend_from_slice(&director);
    f.extend_from_slice(&[192, 168, 0, 1]);
    f.resize(60, 0);
    for _ in 0..3 {
        topo.inject_frame_from("rs2", "eth0", &f);
    }
    // Not even for a moment: every connection scheduled to rs1 is answered by it.
    let seen = http_answers(&topo, 8);
    assert_eq!(
        (seen.get("rs1"), seen.get("rs2")),
        (Some(&4), Some(&4)),
        "{seen:?}"
    );
    let stats = d.ctl_ok(&["stats"]);
    let conflicts: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("neigh_conflict "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        conflicts >= 1,
        "rs1 answered the probe, a conflict:\n{stats}"
    );
}

#[test]
fn connection_table_drains_after_clients_close() {
    let Some(_serial) = netns::begin("drain") else {
        return;
    };
    let topo = Topology::new("drain");
    let d = nat_director(&topo);

    // A client that holds its connection open for 3 s before asking: while it
    // waits, the director must list it as ESTABLISHED and count it active.
    const HOLD: &str = r#"
import socket, sys, time
s = socket.create_connection((sys.argv[1], 80), timeout=5)
time.sleep(3)
s.sendall(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
s.close()
sys.stdout.write(data.decode().splitlines()[-1])
"#;
    let mut held = topo.spawn_in("cli", &["python3", "-c", HOLD, VIP]);
    let established = netns::wait_for(Duration::from_secs(3), || {
        d.conns()
            .into_iter()
            .find(|c| c.proto == "TCP" && c.state == "ESTABLISHED")
    });
    let conn = established.expect("the open connection is listed as ESTABLISHED by -Lnc");
    assert_eq!(conn.virt, format!("{VIP}:{HTTP_PORT}"));
    assert!(conn.source.starts_with("10.0.0.2:"), "{conn:?}");
    let active: u64 = d
        .services()
        .iter()
        .flat_map(|s| s.dests.iter())
        .map(|x| x.active_conns)
        .sum();
    assert_eq!(active, 1, "-Ln ActiveConn while one client is connected");

    let status = netns::wait_for(Duration::from_secs(10), || held.try_wait().ok().flatten())
        .expect("held client finished");
    let mut body = String::new();
    if let Some(mut out) = held.stdout.take() {
        out.read_to_string(&mut body).ok();
    }
    assert!(status.success(), "held client failed");
    assert!(body.starts_with("rs"), "held client got {body:?}");

    // And a few short ones.
    http_answers(&topo, 6);

    let drained = netns::wait_for(Duration::from_secs(10), || {
        let still: Vec<_> = d
            .conns()
            .into_iter()
            .filter(|c| c.proto == "TCP" && c.state == "ESTABLISHED")
            .collect();
        let active: u64 = d
            .services()
            .iter()
            .flat_map(|s| s.dests.iter())
            .map(|x| x.active_conns)
            .sum();
        (still.is_empty() && active == 0).then_some(())
    });
    assert!(
        drained.is_some(),
        "after every client closed, no ESTABLISHED conns and ActiveConn 0:\n{}\n{}",
        d.ctl_ok(&["-Lnc"]),
        d.ctl_ok(&["-Ln"])
    );
}

#[test]
fn stats_count_what_the_clients_sent() {
    let Some(_serial) = netns::begin("stats") else {
        return;
    };
    let topo = Topology::new("stats");
    let d = nat_director(&topo);

    const N: u64 = 10;
    http_answers(&topo, N as usize);
    const DATAGRAMS: u64 = 4;
    const PAYLOAD: &str = "sixteen-bytes-xx";
    for _ in 0..DATAGRAMS {
        topo.udp_echo_from_client(VIP, UDP_ECHO_PORT, PAYLOAD)
            .expect("UDP echo through the VIP");
    }

    // The last ACKs of a closing connection may still be on their way.
    let tcp = netns::wait_for(Duration::from_secs(5), || {
        let s = tcp_service(&d);
        (s.total.conns == N).then_some(s)
    })
    .unwrap_or_else(|| panic!("TCP Conns == {N}:\n{}", d.ctl_ok(&["-Ln", "--stats"])));
    let t = tcp.total;
    // Per connection at least: SYN, ACK, request in; SYN-ACK, response out.
    assert!(
        t.inpkts >= 3 * N,
        "InPkts {} for {N} HTTP requests",
        t.inpkts
    );
    assert!(
        t.outpkts >= 2 * N,
        "OutPkts {} for {N} HTTP responses",
        t.outpkts
    );
    // A GET line plus headers is > 60 bytes; nginx's response headers > 100 bytes.
    assert!(t.inbytes >= 60 * N, "InBytes {}", t.inbytes);
    assert!(t.outbytes >= 100 * N, "OutBytes {}", t.outbytes);
    let dest_conns: Vec<u64> = tcp.dests.values().map(|r| r.conns).collect();
    assert_eq!(
        dest_conns,
        vec![N / 2, N / 2],
        "rr split of Conns over the dests"
    );

    let vs = format!("{VIP}:{UDP_ECHO_PORT}");
    let udp = d
        .stats()
        .into_iter()
        .find(|s| s.proto == "UDP" && s.addr == vs)
        .unwrap_or_else(|| panic!("no UDP {vs} in -Ln --stats"));
    // One datagram in and one reply out per connection, exactly.
    assert_eq!(udp.total.conns, DATAGRAMS);
    assert_eq!(udp.total.inpkts, DATAGRAMS);
    assert_eq!(udp.total.outpkts, DATAGRAMS);
    assert!(udp.total.inbytes >= DATAGRAMS * PAYLOAD.len() as u64);
    assert!(udp.total.outbytes >= DATAGRAMS * (PAYLOAD.len() as u64 + 4));

    // -Z on the UDP service: its counters read zero, the TCP service's do not;
    // one more datagram counts from zero.
    d.ctl_ok(&["-Z", "-u", &vs]);
    let after = d.stats();
    let udp = after
        .iter()
        .find(|s| s.proto == "UDP" && s.addr == vs)
        .unwrap();
    assert_eq!(udp.total, netns::StatsRow::default(), "zeroed: {udp:?}");
    assert!(udp.dests.values().all(|r| *r == netns::StatsRow::default()));
    let tcp_vs = format!("{VIP}:{HTTP_PORT}");
    let tcp = after
        .iter()
        .find(|s| s.proto == "TCP" && s.addr == tcp_vs)
        .unwrap();
    assert_eq!(tcp.total.conns, N, "the other service keeps its counters");
    topo.udp_echo_from_client(VIP, UDP_ECHO_PORT, "after-zero")
        .expect("a datagram after -Z is answered");
    let udp = d
        .stats()
        .into_iter()
        .find(|s| s.proto == "UDP" && s.addr == vs)
        .unwrap();
    assert_eq!(
        (udp.total.conns, udp.total.inpkts, udp.total.outpkts),
        (1, 1, 1)
    );
}

#[test]
fn unknown_vip_port_gets_no_answer_and_counts_no_service() {
    let Some(_serial) = netns::begin("no_service") else {
        return;
    };
    let topo = Topology::new("no_service");
    let d = nat_director(&topo);

    let before = d.drop_counter("no_service");
    assert_eq!(
        topo.http_get_from_client(&vip_url(81)),
        None,
        "nothing serves VIP:81"
    );
    assert_eq!(
        topo.udp_echo_from_client(VIP, UDP_ECHO_PORT + 1, "nobody"),
        None,
        "nothing serves VIP:9001/udp"
    );
    let after = netns::wait_for(Duration::from_secs(3), || {
        let n = d.drop_counter("no_service");
        (n >= before + 2).then_some(n)
    });
    assert!(
        after.is_some(),
        "no_service went from {before} to {} (a SYN and a datagram were dropped)",
        d.drop_counter("no_service")
    );
    // The real service still works.
    assert!(topo.http_get_from_client(&vip_url(HTTP_PORT)).is_some());
}

/// Ethernet header to the director from the client, EtherType IPv4.
fn eth_ipv4(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f
}

/// A valid-looking IPv4 header, client -> VIP, UDP, with a correct checksum.
fn ipv4_header(total_len: u16) -> [u8; 20] {
    let mut h = [
        0x45, 0x00, 0, 0, 0x12, 0x34, 0x40, 0x00, 64, 17, 0, 0, 10, 0, 0, 2, 10, 0, 0, 100,
    ];
    h[2..4].copy_from_slice(&total_len.to_be_bytes());
    let sum = ipv4_checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h
}

fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut acc: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

#[test]
fn malformed_frames_are_counted_and_dpvsd_keeps_running() {
    let Some(_serial) = netns::begin("malformed") else {
        return;
    };
    let topo = Topology::new("malformed");
    let mut d = nat_director(&topo);

    // One good request first: it proves the path and the client learns the
    // director's MAC by ARP.
    assert!(topo.http_get_from_client(&vip_url(HTTP_PORT)).is_some());
    let dst = topo.director_mac_seen_by_client(VIP);
    let src = topo.mac_of("cli", "c0");
    let bad_before = d.drop_counter("bad_ipv4") + d.drop_counter("truncated");

    let mut frames = Vec::new();
    // 1. IPv4 header cut off after 8 bytes.
    let mut f = eth_ipv4(dst, src);
    f.extend_from_slice(&ipv4_header(28)[..8]);
    frames.push(f);
    // 2. IHL 4 (16-byte header): invalid.
    let mut h = ipv4_header(28);
    h[0] = 0x44;
    h[10..12].copy_from_slice(&[0, 0]);
    let sum = ipv4_checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut f = eth_ipv4(dst, src);
    f.extend_from_slice(&h);
    f.extend_from_slice(&[0u8; 8]);
    frames.push(f);
    // 3. Header checksum wrong.
    let mut h = ipv4_header(28);
    h[10] ^= 0xff;
    let mut f = eth_ipv4(dst, src);
    f.extend_from_slice(&h);
    f.extend_from_slice(&[0x30, 0x39, 0x23, 0x28, 0, 8, 0, 0]);
    frames.push(f);
    // 4. Total length says 1000 bytes; the frame carries 28.
    let h = ipv4_header(1000);
    let mut f = eth_ipv4(dst, src);
    f.extend_from_slice(&h);
    f.extend_from_slice(&[0x30, 0x39, 0x23, 0x28, 0, 8, 0, 0]);
    frames.push(f);
    // 5. Version 6 in an IPv4 EtherType.
    let mut h = ipv4_header(28);
    h[0] = 0x65;
    let mut f = eth_ipv4(dst, src);
    f.extend_from_slice(&h);
    f.extend_from_slice(&[0u8; 8]);
    frames.push(f);

    for f in &frames {
        topo.inject_frame_from_client(f);
    }
    let n = frames.len() as u64;
    let counted = netns::wait_for(Duration::from_secs(3), || {
        let now = d.drop_counter("bad_ipv4") + d.drop_counter("truncated");
        (now >= bad_before + n).then_some(now)
    });
    assert!(
        counted.is_some(),
        "{n} malformed IPv4 frames: bad_ipv4 + truncated went from {bad_before} to {}",
        d.drop_counter("bad_ipv4") + d.drop_counter("truncated")
    );
    assert!(d.is_running(), "dpvsd survives malformed frames");
    let body = topo.http_get_from_client(&vip_url(HTTP_PORT));
    assert!(
        body.as_deref().is_some_and(|b| b.starts_with("rs")),
        "the service still answers after malformed frames: {body:?}"
    );
}
