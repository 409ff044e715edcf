//! Limits that hold: when the connection table, FULLNAT's local ports, the
//! mbufs or the neighbour queue run out, new work is refused under its
//! counter, established connections go on, nothing waits forever, and
//! everything works again by itself once the pressure ends.

use dataplane::*;

use super::{
    cookie_ack, desc, dest, ip, proxied_syn, seen, synproxy_lab, tcp, tcp_fields, tcp_full, udp,
    Lab, CIP, CLIENT_MAC, MAC0, MAC1, RIP, RIP2, RS_MAC, VIP,
};

/// Lets the core's clock run `ms` forward, expiring what falls due.
fn advance(lab: &mut Lab, ms: u64) {
    let snap = lab.snap.clone();
    for _ in 0..ms {
        lab.core.now_ms += 1;
        lab.core.expire(&snap);
    }
}

/// An established NAT connection from client port `cport`: SYN, the server's
/// SYN-ACK, the client's ACK.
fn establish(lab: &mut Lab, cport: u16) {
    assert_eq!(
        lab.rx(
            0,
            &[tcp(CLIENT_MAC, MAC0, CIP, cport, VIP, 80, "S", 1, b"")]
        )
        .len(),
        1
    );
    lab.rx(1, &[tcp(RS_MAC, MAC1, RIP, 8080, CIP, cport, "SA", 9, b"")]);
    lab.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, cport, VIP, 80, "A", 2, b"")],
    );
}

/// Whether a data segment of the connection from `cport` is forwarded.
fn still_forwards(lab: &mut Lab, cport: u16) -> bool {
    let out = lab.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, cport, VIP, 80, "A", 2, b"GET /")],
    );
    out.len() == 1 && seen(&out[0].1).dst == RIP
}

#[test]
fn a_full_table_refuses_new_connections_keeps_old_ones_and_recovers() {
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Tcp);
    establish(&mut lab, 1000);
    let cap = lab.core.conns.capacity();
    // Half-open connections from other ports fill the table.
    let mut port = 2000u16;
    while lab.core.conns.len() < cap {
        let burst: Vec<Vec<u8>> = (0..32)
            .map(|i| tcp(CLIENT_MAC, MAC0, CIP, port + i, VIP, 80, "S", 1, b""))
            .collect();
        port += 32;
        lab.rx(0, &burst);
    }
    let refused = lab.drops(DropReason::ConnTableFull);
    let out = lab.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, 60000, VIP, 80, "S", 1, b"")],
    );
    assert!(out.is_empty(), "no room: refused");
    assert_eq!(lab.drops(DropReason::ConnTableFull), refused + 1);
    assert!(
        still_forwards(&mut lab, 1000),
        "the established one goes on"
    );
    // The half-open ones time out (SYN_RECV, 30 s); the table takes new ones.
    advance(&mut lab, 31_000);
    assert_eq!(
        lab.core.conns.len(),
        1,
        "only the established connection is left"
    );
    let out = lab.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, 60000, VIP, 80, "S", 1, b"")],
    );
    assert_eq!(out.len(), 1, "a new connection again");
    assert!(still_forwards(&mut lab, 1000));
}

#[test]
fn fullnat_out_of_local_ports_refuses_new_connections_and_recovers() {
    let (d, mut e) = desc(ForwardMode::FullNat, Proto::Tcp);
    e.local_port_range = (5000, 5000);
    let mut lab = Lab::with_desc(&d, &e, 0, 1);
    let syn = |p| tcp(CLIENT_MAC, MAC0, CIP, p, VIP, 80, "S", 1, b"");
    let out = lab.rx(0, &[syn(1000)]);
    assert_eq!(seen(&out[0].1).sport, 5000, "the only local port");
    assert!(lab.rx(0, &[syn(1001)]).is_empty());
    assert_eq!(lab.drops(DropReason::LipExhausted), 1);
    // The first connection goes on.
    assert_eq!(
        lab.rx(0, &[syn(1000)]).len(),
        1,
        "its SYN retransmitted still passes"
    );
    // It ends (the server resets it): its port is free for the next one.
    let lip = seen(&out[0].1).src;
    lab.rx(1, &[tcp(RS_MAC, MAC1, RIP, 8080, lip, 5000, "R", 9, b"")]);
    advance(&mut lab, 11_000);
    let out = lab.rx(0, &[syn(1001)]);
    assert_eq!(out.len(), 1, "the freed port serves a new client");
    assert_eq!(seen(&out[0].1).sport, 5000);
}

#[test]
fn without_mbufs_the_syn_proxy_refuses_then_recovers_by_itself() {
    let mut lab = synproxy_lab(ForwardMode::Nat);
    let out = lab.rx(0, &[proxied_syn(40000)]);
    let cookie = tcp_fields(&out[0].1).0;
    // No mbuf for the SYN to the real server: an event; the client's ACK kept.
    lab.core.io.no_buffers = true;
    let ack = cookie_ack(40000, cookie);
    assert!(lab.rx(0, std::slice::from_ref(&ack)).is_empty());
    let ev = lab.core.shared.events[0].get(dataplane::events::Event::SynproxyNoMbuf);
    assert_eq!(ev, 1);
    assert_eq!(lab.all_drops(), 0, "the ACK waits: not a drop");
    // Mbufs come back; the client's retransmissions get the SYN out.
    lab.core.io.no_buffers = false;
    let mut syn = None;
    for _ in 0..4 {
        if let Some((port, f)) = lab.rx(0, std::slice::from_ref(&ack)).pop() {
            syn = Some((port, f));
            break;
        }
    }
    let (port, f) = syn.expect("the SYN to the real server once mbufs are back");
    assert_eq!((port, tcp_fields(&f).3), (1, 0x02));
    // And the handshake completes.
    let out = lab.rx(
        1,
        &[tcp_full(
            (RS_MAC, RIP, 8080),
            (MAC1, CIP, 40000),
            "SA",
            7,
            1001,
            100,
            &[],
            b"",
        )],
    );
    assert!(!out.is_empty());
    assert!(out.iter().all(|(p, f)| *p == 1 && tcp_fields(f).1 == 8));
}

#[test]
fn a_full_neighbour_queue_drops_the_excess_and_flushes_when_resolved() {
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Tcp);
    establish(&mut lab, 1000);
    // Replies toward clients whose MAC is unknown wait for ARP; the queue is
    // bounded.
    let unknown = |i: u16| [10, 0, 0, 101 + i as u8];
    let n = neigh::PENDING_MAX as u16 + 10;
    for i in 0..n {
        let c = unknown(i);
        lab.rx(
            0,
            &[tcp(CLIENT_MAC, MAC0, c, 3000 + i, VIP, 80, "S", 1, b"")],
        );
        lab.rx(
            1,
            &[tcp(RS_MAC, MAC1, RIP, 8080, c, 3000 + i, "SA", 1, b"")],
        );
    }
    assert_eq!(lab.core.pending.queue.len(), neigh::PENDING_MAX);
    assert_eq!(lab.drops(DropReason::NeighQueueFull), 10);
    assert!(
        still_forwards(&mut lab, 1000),
        "resolved traffic is not held up"
    );
    // The neighbours answer: what waited goes out.
    for i in 0..n {
        lab.core
            .shared
            .neigh
            .learn(0, ip(unknown(i)), CLIENT_MAC, 0);
    }
    let snap = lab.snap.clone();
    lab.core.flush_pending(&snap);
    let sent = std::mem::take(&mut lab.core.io.sent);
    assert_eq!(sent.len(), neigh::PENDING_MAX);
    assert!(lab.core.pending.queue.is_empty());
}

#[test]
fn segments_the_syn_proxy_kept_for_a_connection_that_never_opens_are_counted() {
    // Found by the pipeline_seq fuzz target: they used to vanish uncounted.
    let mut lab = synproxy_lab(ForwardMode::Nat);
    let client = (CLIENT_MAC, CIP, 40000);
    let vip = (MAC0, VIP, 80);
    let out = lab.rx(0, &[proxied_syn(40000)]);
    let cookie = tcp_fields(&out[0].1).0;
    let ack = |data: &[u8]| {
        tcp_full(
            client,
            vip,
            "A",
            1001,
            cookie.wrapping_add(1),
            100,
            &[],
            data,
        )
    };
    assert_eq!(
        lab.rx(0, &[ack(b"")]).len(),
        1,
        "the SYN to the real server"
    );
    assert!(lab.rx(0, &[ack(b"GET /")]).is_empty(), "held");
    assert_eq!(lab.all_drops(), 0);
    // The real server never answers: the connection times out (SYN_RECV).
    advance(&mut lab, 31_000);
    assert_eq!(lab.core.conns.len(), 0);
    assert_eq!(
        lab.drops(DropReason::SynproxyWaiting),
        2,
        "both kept segments"
    );
    assert_eq!(lab.all_drops(), 2);
}

#[test]
fn a_real_server_at_its_upper_threshold_takes_no_more_until_it_drains() {
    // -x 2: two connections, then the dest is overloaded (IPVS's
    // IP_VS_DEST_F_OVERLOAD) and the service, with no other dest, has none.
    let (mut d, e) = desc(ForwardMode::Nat, Proto::Tcp);
    d.services[0].dests[0].u_threshold = 2;
    let mut lab = Lab::with_desc(&d, &e, 0, 1);
    establish(&mut lab, 1000);
    establish(&mut lab, 1001);
    let syn = |p| tcp(CLIENT_MAC, MAC0, CIP, p, VIP, 80, "S", 1, b"");
    assert!(lab.rx(0, &[syn(1002)]).is_empty(), "over the threshold");
    assert_eq!(lab.drops(DropReason::NoDest), 1);
    assert!(still_forwards(&mut lab, 1000), "established ones go on");
    // One connection ends (the server resets it) and leaves the table: the
    // count falls below 3/4 of the threshold and the dest takes new ones.
    lab.rx(1, &[tcp(RS_MAC, MAC1, RIP, 8080, CIP, 1001, "R", 9, b"")]);
    advance(&mut lab, 11_000);
    assert_eq!(
        lab.rx(0, &[syn(1002)]).len(),
        1,
        "below the threshold again"
    );
}

/// A lab whose service (NAT, two real servers, rr) takes at most `limit`
/// connections (`--conn-limit`), with the SYN proxy or not; UDP flows idle
/// out after 5 s.
fn conn_limit_lab(proto: Proto, limit: u32, synproxy: bool) -> Lab {
    let (mut d, mut e) = desc(ForwardMode::Nat, proto);
    d.services[0]
        .dests
        .push(dest(ip(RIP2), 8080, ForwardMode::Nat));
    if proto == Proto::Udp {
        d.services[0].conn_timeout_s = Some(5);
    }
    let key = d.services[0].key;
    e.conn_limit = vec![(key, limit)];
    if synproxy {
        e.synproxy = vec![key];
    }
    Lab::with_desc(&d, &e, 0, 1)
}

/// The service's own `service_conn_limit` count (`conn_limit_drops`).
fn service_refusals(lab: &Lab) -> u64 {
    let svc = lab.snap.services_by_id.values().next().expect("service");
    svc.conn_limit_drops.sum()
}

/// A NAT connection from `cport` opened through to the real server the
/// scheduler picks; that server's address.
fn open_to_any(lab: &mut Lab, cport: u16) -> [u8; 4] {
    let out = lab.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, cport, VIP, 80, "S", 1, b"")],
    );
    assert_eq!(out.len(), 1, "the SYN from {cport} goes out");
    let rip = seen(&out[0].1).dst;
    lab.rx(1, &[tcp(RS_MAC, MAC1, rip, 8080, CIP, cport, "SA", 9, b"")]);
    lab.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, cport, VIP, 80, "A", 2, b"")],
    );
    rip
}

/// Whether data of the connection from `cport` to `rip` passes both ways.
fn forwards_both_ways(lab: &mut Lab, cport: u16, rip: [u8; 4]) -> bool {
    let req = lab.rx(
        0,
        &[tcp(
            CLIENT_MAC, MAC0, CIP, cport, VIP, 80, "PA", 2, b"GET /",
        )],
    );
    let resp = lab.rx(
        1,
        &[tcp(
            RS_MAC, MAC1, rip, 8080, CIP, cport, "PA", 10, b"200 OK",
        )],
    );
    req.len() == 1
        && seen(&req[0].1).dst == rip
        && resp.len() == 1
        && (seen(&resp[0].1).src, seen(&resp[0].1).sport) == (VIP, 80)
}

#[test]
fn a_service_at_its_connection_limit_refuses_new_ones_until_one_ends() {
    // --conn-limit 2 over two real servers (one connection each, so no
    // real server's own threshold is involved).
    let mut lab = conn_limit_lab(Proto::Tcp, 2, false);
    let a = open_to_any(&mut lab, 1000);
    let b = open_to_any(&mut lab, 1001);
    assert_ne!(a, b, "rr: one connection on each real server");
    let syn = |p| tcp(CLIENT_MAC, MAC0, CIP, p, VIP, 80, "S", 1, b"");
    assert!(lab.rx(0, &[syn(1002)]).is_empty(), "the third is refused");
    assert_eq!(lab.drops(DropReason::ServiceConnLimit), 1);
    assert_eq!(service_refusals(&lab), 1, "counted on the service too");
    assert_eq!(lab.all_drops(), 1);
    assert_eq!(lab.core.conns.len(), 2, "nothing kept for it");
    // The established two go on, both ways.
    assert!(forwards_both_ways(&mut lab, 1000, a));
    assert!(forwards_both_ways(&mut lab, 1001, b));
    // The client tries again: refused again (the limit holds, no state).
    assert!(lab.rx(0, &[syn(1002)]).is_empty());
    assert_eq!(service_refusals(&lab), 2);
    // One connection is reset: it counts (InActConn) until it leaves the
    // table, as for ipvsadm's -x; then a new one is taken, and the limit
    // holds again after it.
    lab.rx(1, &[tcp(RS_MAC, MAC1, b, 8080, CIP, 1001, "R", 9, b"")]);
    assert!(lab.rx(0, &[syn(1002)]).is_empty(), "CLOSE still counts");
    advance(&mut lab, 11_000);
    assert_eq!(lab.core.conns.len(), 1);
    assert_eq!(lab.rx(0, &[syn(1002)]).len(), 1, "room again");
    assert!(lab.rx(0, &[syn(1003)]).is_empty(), "and full again");
    assert_eq!(lab.drops(DropReason::ServiceConnLimit), 4);
    assert_eq!(service_refusals(&lab), 4);
    assert!(forwards_both_ways(&mut lab, 1000, a));
}

#[test]
fn raising_or_removing_the_limit_admits_new_connections_at_once() {
    let mut lab = conn_limit_lab(Proto::Tcp, 1, false);
    open_to_any(&mut lab, 1000);
    let syn = |p| tcp(CLIENT_MAC, MAC0, CIP, p, VIP, 80, "S", 1, b"");
    assert!(lab.rx(0, &[syn(1001)]).is_empty());
    // -E --conn-limit 0: no limit; the service's count stays.
    let (mut d, e) = desc(ForwardMode::Nat, Proto::Tcp);
    d.services[0]
        .dests
        .push(dest(ip(RIP2), 8080, ForwardMode::Nat));
    lab.apply(&d, &e);
    assert_eq!(lab.rx(0, &[syn(1001)]).len(), 1);
    assert_eq!(lab.rx(0, &[syn(1002)]).len(), 1);
    assert_eq!(service_refusals(&lab), 1, "kept across the change");
}

#[test]
fn udp_flows_over_the_limit_are_refused_until_one_times_out() {
    let mut lab = conn_limit_lab(Proto::Udp, 1, false);
    let dgram = |p| udp(CLIENT_MAC, MAC0, CIP, p, VIP, 80);
    let out = lab.rx(0, &[dgram(5000)]);
    assert_eq!(out.len(), 1);
    let rip = seen(&out[0].1).dst;
    assert!(lab.rx(0, &[dgram(5001)]).is_empty(), "a second flow");
    assert_eq!(lab.drops(DropReason::ServiceConnLimit), 1);
    assert_eq!(service_refusals(&lab), 1);
    // The first flow goes on both ways.
    assert_eq!(lab.rx(0, &[dgram(5000)]).len(), 1);
    let back = lab.rx(1, &[udp(RS_MAC, MAC1, rip, 8080, CIP, 5000)]);
    assert_eq!(back.len(), 1);
    assert_eq!(seen(&back[0].1).src, VIP);
    // It falls idle and times out (the service's 5 s): room again.
    advance(&mut lab, 6_000);
    assert_eq!(lab.core.conns.len(), 0);
    assert_eq!(lab.rx(0, &[dgram(5001)]).len(), 1);
}

#[test]
fn the_syn_proxy_sends_no_cookie_over_the_limit_and_checks_again_at_the_ack() {
    let mut lab = conn_limit_lab(Proto::Tcp, 1, true);
    let cookies =
        |lab: &Lab| lab.core.shared.events[0].get(dataplane::events::Event::SynproxySynAck);
    // Two clients get a cookie while the service is empty.
    let mut cookie = Vec::new();
    for port in [40000, 40001] {
        let out = lab.rx(0, &[proxied_syn(port)]);
        assert_eq!(out.len(), 1, "a SYN-ACK");
        cookie.push(tcp_fields(&out[0].1).0);
    }
    // The first ACK opens a connection: the SYN to a real server.
    let out = lab.rx(0, &[cookie_ack(40000, cookie[0])]);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, tcp_fields(&out[0].1).3), (1, 0x02));
    // The second comes back with its cookie once the limit is reached: no
    // connection, no SYN to a real server.
    assert!(lab.rx(0, &[cookie_ack(40001, cookie[1])]).is_empty());
    assert_eq!(lab.drops(DropReason::ServiceConnLimit), 1);
    assert_eq!(lab.core.conns.len(), 1);
    // A new client's SYN gets no cookie at all.
    let before = cookies(&lab);
    let out = lab.rx(0, &[proxied_syn(40002)]);
    assert!(out.is_empty(), "no SYN-ACK over the limit");
    assert_eq!(cookies(&lab), before);
    assert_eq!(lab.drops(DropReason::ServiceConnLimit), 2);
    assert_eq!(service_refusals(&lab), 2);
    assert_eq!(lab.all_drops(), 2);
}
