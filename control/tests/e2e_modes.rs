//! Forwarding modes end to end (real kernel TCP/UDP through dpvsd): DR and TUN,
//! whose replies bypass the director, and FULLNAT.
//!
//! DR and TUN use `deploy/netns/bypass.sh` on top of the demo topology: the
//! client namespace gets a second leg in the server LAN and the real servers
//! route their replies there, never through the director.

mod netns;

use netns::{all_servers, answers, Topology, HTTP_PORT, REAL_SERVERS, VIP};

/// Sets up a TCP service on VIP:80 with both real servers in `flag`'s mode.
fn tcp_service(d: &netns::Dpvsd, flag: &str) -> String {
    d.addr_add(&format!("{VIP}/32"), "dpdk0");
    let vs = format!("{VIP}:{HTTP_PORT}");
    d.ctl_ok(&["-A", "-t", &vs, "-s", "rr"]);
    for (_, _, rip) in REAL_SERVERS {
        d.ctl_ok(&["-a", "-t", &vs, "-r", &format!("{rip}:{HTTP_PORT}"), flag]);
    }
    vs
}

#[test]
fn dr_replies_bypass_the_director() {
    let Some(_serial) = netns::begin("dr") else {
        return;
    };
    let topo = Topology::new("dr");
    netns::bypass(&topo, "dr", VIP);
    let d = topo.start_dpvsd("");
    let vs = tcp_service(&d, "-g");
    let listed = d.services();
    assert!(
        listed[0].dests.iter().all(|x| x.forward == "Route"),
        "-Ln shows Route: {listed:?}"
    );
    // A DR dest on another port is refused with a clear error.
    let bad = d.ctl(&["-a", "-t", &vs, "-r", "192.168.0.13:8080", "-g"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("virtual port"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    assert_eq!(answers(&topo, 6), all_servers(), "both servers answer");

    let st = d.stats();
    let svc = st.iter().find(|s| s.addr == vs).expect("service stats");
    assert!(svc.total.conns >= 6, "{svc:?}");
    assert!(svc.total.inpkts >= 6 * 3, "requests counted: {svc:?}");
    assert_eq!(
        svc.total.outpkts, 0,
        "replies never pass the director: {svc:?}"
    );
}

/// Prints the first TOA option (kind 254, length 8) seen in a TCP segment from
/// `argv[1]` on any interface of the namespace, as `TOA ip:port`; exits 1 after
/// `argv[2]` seconds without one.
const TOA_SNIFFER: &str = r#"
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.settimeout(0.5)
lip = socket.inet_aton(sys.argv[1])
deadline = time.time() + float(sys.argv[2])
print("ready", flush=True)
while time.time() < deadline:
    try:
        f = s.recv(65535)
    except socket.timeout:
        continue
    if len(f) < 54 or f[12:14] != b"\x08\x00":
        continue
    ip = f[14:]
    ihl = (ip[0] & 15) * 4
    if ip[9] != 6 or ip[12:16] != lip:
        continue
    tcp = ip[ihl:]
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
        if k == 254 and l == 8:
            port = struct.unpack("!H", opts[i + 2:i + 4])[0]
            print("TOA %s:%d" % (socket.inet_ntoa(opts[i + 4:i + 8]), port), flush=True)
            sys.exit(0)
        i += l
sys.exit(1)
"#;

const LIP: &str = "192.168.0.200";

#[test]
fn fullnat_hides_the_client_but_tells_it_in_toa() {
    use std::io::{BufRead, BufReader};
    let Some(_serial) = netns::begin("fullnat") else {
        return;
    };
    let topo = Topology::new("fullnat");
    let d = topo.start_dpvsd("");
    let vs = tcp_service(&d, "-b");
    d.ctl_ok(&["-P", "-t", &vs, "-z", LIP, "-F", "dpdk1"]);
    let listed = d.services();
    assert!(
        listed[0].dests.iter().all(|x| x.forward == "FullNat"),
        "{listed:?}"
    );
    let g = d.ctl_ok(&["-G"]);
    let lines: Vec<&str> = g.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["VIP:VPORT", "TOTAL", "SNAT_IP", "CONFLICTS", "CONNS"],
        "{g}"
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        [vs.as_str(), "1"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        [LIP, "0", "0"]
    );

    // Capture on the server LAN while the client talks to the VIP.
    let mut sniff = topo.spawn_in(
        "lan",
        &["timeout", "20", "python3", "-c", TOA_SNIFFER, LIP, "15"],
    );
    let mut out = BufReader::new(sniff.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("sniffer starts");
    assert_eq!(line.trim(), "ready");

    assert_eq!(answers(&topo, 6), all_servers(), "both servers answer");

    line.clear();
    out.read_line(&mut line).expect("sniffer output");
    assert!(
        sniff.wait().expect("sniffer exits").success(),
        "no TOA seen"
    );
    let toa = line
        .trim()
        .strip_prefix("TOA ")
        .expect("TOA line")
        .to_string();
    let (toa_ip, toa_port) = toa.split_once(':').unwrap();
    assert_eq!(
        toa_ip,
        netns::CLIENT_IPS[0],
        "TOA carries the client address"
    );
    let port: u16 = toa_port.parse().unwrap();
    assert!(port >= 1024, "client's ephemeral port: {port}");

    // The real servers saw the LIP as the peer, never the client.
    for (name, _, _) in REAL_SERVERS {
        let log = std::fs::read_to_string(topo.run_dir().join(name).join("access.log"))
            .unwrap_or_default();
        assert!(log.contains(LIP), "{name} access log shows the LIP:\n{log}");
        assert!(!log.contains(netns::CLIENT_IPS[0]), "{name}: {log}");
    }
    let st = d.stats();
    let svc = st.iter().find(|s| s.addr == vs).expect("service stats");
    assert!(svc.total.outpkts > 0, "replies pass the director: {svc:?}");
}

#[test]
fn tun_reaches_user_space_decapsulating_servers_and_pmtu_works() {
    let Some(_serial) = netns::begin("tun") else {
        return;
    };
    let topo = Topology::new("tun");
    netns::bypass(&topo, "tun", VIP);
    let d = topo.start_dpvsd("");
    let vs = tcp_service(&d, "-i");
    let listed = d.services();
    assert!(
        listed[0].dests.iter().all(|x| x.forward == "Tunnel"),
        "{listed:?}"
    );
    assert_eq!(answers(&topo, 6), all_servers(), "both servers answer");
    let st = d.stats();
    let svc = st.iter().find(|s| s.addr == vs).expect("service stats");
    assert!(svc.total.inpkts >= 18, "{svc:?}");
    assert_eq!(svc.total.outpkts, 0, "replies bypass the director: {svc:?}");

    // PMTU: full-sized DF segments do not fit in IPIP on a 1500-byte LAN; the
    // client learns 1480 from the director's ICMP and the upload goes through.
    let before = d.drop_counter("frag_needed");
    let body = netns::big_upload(&topo);
    assert!(
        all_servers().contains(&body),
        "answered by a server: {body:?}"
    );
    assert!(
        d.drop_counter("frag_needed") > before,
        "the director refused a too-big packet"
    );
    let route = topo.exec_in("cli", &["ip", "route", "get", VIP]);
    let route = String::from_utf8_lossy(&route.stdout).to_string();
    assert!(
        route.contains("mtu 1480"),
        "the client cached the reduced path MTU: {route}"
    );
}

/// A UDP service on VIP:`port` with both real servers in `flag`'s mode.
fn udp_service(d: &netns::Dpvsd, port: u16, flag: &str) -> String {
    let vs = format!("{VIP}:{port}");
    d.ctl_ok(&["-A", "-u", &vs, "-s", "rr"]);
    for (_, _, rip) in REAL_SERVERS {
        d.ctl_ok(&["-a", "-u", &vs, "-r", &format!("{rip}:{port}"), flag]);
    }
    vs
}

#[test]
fn udp_through_dr_tun_and_fullnat() {
    let Some(_serial) = netns::begin("udp-modes") else {
        return;
    };
    for (mode, flag) in [("dr", "-g"), ("tun", "-i")] {
        let topo = Topology::new(&format!("udp-{mode}"));
        netns::bypass(&topo, mode, VIP);
        let d = topo.start_dpvsd("");
        d.addr_add(&format!("{VIP}/32"), "dpdk0");
        let vs = udp_service(&d, 9001, flag);
        assert_eq!(
            netns::udp_answers(&topo, VIP, 9001, 4),
            all_servers(),
            "{mode}"
        );
        let st = d.stats();
        let svc = st.iter().find(|s| s.addr == vs).expect("stats");
        assert_eq!(
            (svc.total.inpkts, svc.total.outpkts),
            (4, 0),
            "{mode}: {svc:?}"
        );
    }
    // FULLNAT: the plain topology's echo on 0.0.0.0:9000 answers the LIP.
    let topo = Topology::new("udp-fullnat");
    let d = topo.start_dpvsd("");
    d.addr_add(&format!("{VIP}/32"), "dpdk0");
    let vs = udp_service(&d, netns::UDP_ECHO_PORT, "-b");
    d.ctl_ok(&["-P", "-u", &vs, "-z", LIP, "-F", "dpdk1"]);
    assert_eq!(
        netns::udp_answers(&topo, VIP, netns::UDP_ECHO_PORT, 4),
        all_servers()
    );
    let conns = d.conns();
    assert!(conns.iter().all(|c| c.proto == "UDP"), "{conns:?}");
    let st = d.stats();
    let svc = st.iter().find(|s| s.addr == vs).expect("stats");
    assert_eq!((svc.total.inpkts, svc.total.outpkts), (4, 4), "{svc:?}");
}
