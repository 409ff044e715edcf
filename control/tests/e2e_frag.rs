//! Fragments end to end (docs/security.md, "Fragments"): real kernels cut
//! what they send into fragments, dpvsd forwards every fragment by its
//! datagram's connection, and the other end's kernel puts them together.
//!
//! - UDP: 4000-byte datagrams (IPv4 and IPv6) from the client to the NAT
//!   VIP's echo; each request reaches a real server in three fragments, and
//!   its echo, fragmented by the real server, comes back whole.
//! - TCP: the client's link MTU is 576 while its route to the VIP says 1500,
//!   and its socket sends with `IP_PMTUDISC_OMIT` (no DF, the link MTU
//!   applies): its kernel sends 1448-byte segments and cuts each into three
//!   fragments. An HTTP POST of 20 kB gets its answer.
//!
//! On net_af_xdp ports: net_af_packet joins its sockets to a fanout group
//! with `PACKET_FANOUT_FLAG_DEFRAG`, so the kernel reassembles IPv4 fragments
//! before dpvsd sees them, and a datagram larger than the ring's frame
//! arrives cut short (`bad_ipv4`; docs/security.md).

mod netns;

use netns::{
    all_servers, Topology, CLIENT_IPS, CLIENT_IPS6, HTTP_PORT, REAL_SERVERS6, UDP_ECHO_PORT, VIP,
    VIP6,
};

/// The client kernel's count of fragments it made (`IpFragCreates`, or
/// `Ip6FragCreates`).
fn frags_created(topo: &Topology, counter: &str) -> u64 {
    let out = topo.exec_in("cli", &["nstat", "-az", counter]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(counter)).then(|| w.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {counter} in nstat: {out:?}"))
}

fn run(topo: &Topology, cmd: &[&str]) {
    let out = topo.exec_in("cli", cmd);
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

#[test]
fn fragmented_udp_and_tcp_through_a_nat_vip() {
    let Some(_serial) = netns::begin("frag") else {
        return;
    };
    let topo = Topology::new("frag");
    let d = topo.start_dpvsd_af_xdp("");
    d.add_nat_services();
    d.addr_add(&format!("{VIP6}/128"), "dpdk0");
    let vs6 = format!("[{VIP6}]:{UDP_ECHO_PORT}");
    d.ctl_ok(&["-A", "-u", &vs6, "-s", "rr"]);
    for (_, _, rip) in REAL_SERVERS6 {
        let rs = format!("[{rip}]:{UDP_ECHO_PORT}");
        d.ctl_ok(&["-a", "-u", &vs6, "-r", &rs, "-m"]);
    }

    // UDP, both families: three fragments each way.
    let made = (
        frags_created(&topo, "IpFragCreates"),
        frags_created(&topo, "Ip6FragCreates"),
    );
    for (src, vip) in [(CLIENT_IPS[0], VIP), (CLIENT_IPS6[0], VIP6)] {
        let mut names = std::collections::BTreeSet::new();
        for i in 0..4 {
            let payload: String = (0..4000)
                .map(|j| char::from(b'a' + ((i + j) % 26) as u8))
                .collect();
            let reply = topo
                .udp_echo_from(src, vip, UDP_ECHO_PORT, &payload)
                .unwrap_or_else(|| panic!("4000-byte datagram {i} to {vip} got no echo"));
            let (name, echoed) = reply.split_once(':').expect("name:payload");
            assert!(echoed == payload, "{vip}: the echo came back changed");
            names.insert(name.to_string());
        }
        assert_eq!(names, all_servers(), "{vip}: rr over both real servers");
    }
    let after = (
        frags_created(&topo, "IpFragCreates"),
        frags_created(&topo, "Ip6FragCreates"),
    );
    assert!(
        after.0 >= made.0 + 12,
        "IPv4 requests went as fragments: {made:?} -> {after:?}"
    );
    assert!(
        after.1 >= made.1 + 12,
        "IPv6 requests went as fragments: {made:?} -> {after:?}"
    );

    // TCP: segments the client's kernel fragments.
    run(&topo, &["ip", "link", "set", "c0", "mtu", "576"]);
    let route = format!("{VIP}/32");
    run(
        &topo,
        &[
            "ip",
            "route",
            "add",
            &route,
            "dev",
            "c0",
            "mtu",
            "1500",
            "src",
            CLIENT_IPS[0],
        ],
    );
    let before = frags_created(&topo, "IpFragCreates");
    let port = HTTP_PORT.to_string();
    let omit = "5"; // IP_PMTUDISC_OMIT
    for i in 0..4 {
        let post = ["python3", "-c", netns::BIG_POST, VIP, &port, "20000", omit];
        let out = topo.exec_in("cli", &post);
        let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            all_servers().contains(&body),
            "HTTP POST {i} in fragmented segments: {out:?}"
        );
    }
    // 14 segments of 1448 bytes a POST, three fragments each.
    let made = frags_created(&topo, "IpFragCreates") - before;
    assert!(
        made >= 4 * 13 * 3,
        "the segments went as fragments ({made})"
    );

    for reason in ["fragment", "frag_tiny", "frag_orphan", "frag_unsupported"] {
        assert_eq!(d.drop_counter(reason), 0, "{reason}");
    }
}
