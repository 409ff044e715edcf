//! Connection sync in the workers: a master's worker queues what a backup
//! needs, and a backup's worker installs it so that the connection's next
//! packets, after a failover, are forwarded as the master would have.

use conntrack::TcpState;
use dataplane::sync::{Reject, SyncConn};
use dataplane::*;

use super::{
    dest, ip, seen, tcp, udp, Lab, CIP, CLIENT_MAC, LIP, MAC0, MAC1, RIP, RIP2, RS_MAC, VIP,
};

/// A master lab with the sync daemon on.
fn master(mode: ForwardMode) -> Lab {
    let lab = Lab::new(mode, Proto::Tcp);
    lab.core.shared.sync.set_on(true);
    lab
}

/// What the master's workers queued.
fn drained(lab: &Lab) -> Vec<SyncConn> {
    let mut v = Vec::new();
    lab.core.shared.sync.drain(1000, &mut v);
    v
}

/// The client's SYN, the real server's SYN-ACK (to where the director sent
/// the SYN), the client's ACK: returns where the real server answers (CIP or
/// LIP, and port).
fn establish(lab: &mut Lab, cport: u16) -> ([u8; 4], u16) {
    let out = lab.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, cport, VIP, 80, "S", 1, b"")],
    );
    assert_eq!(out.len(), 1, "the SYN goes on");
    let s = seen(&out[0].1);
    lab.rx(
        1,
        &[tcp(RS_MAC, MAC1, RIP, 8080, s.src, s.sport, "SA", 9, b"")],
    );
    lab.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, cport, VIP, 80, "A", 2, b"")],
    );
    (s.src, s.sport)
}

fn active_conns(lab: &Lab) -> u32 {
    lab.snap.services_by_id.values().next().unwrap().dests[0].active_conns()
}

#[test]
fn a_nat_connection_synced_to_a_backup_goes_on_there() {
    let mut m = master(ForwardMode::Nat);
    establish(&mut m, 40000);
    let recs = drained(&m);
    // Created (SYN_RECV), then ESTABLISHED on the client's ACK.
    let states: Vec<_> = recs.iter().map(|r| r.state).collect();
    assert_eq!(states, [TcpState::SynRecv, TcpState::Established]);
    let r = recs[1];
    assert_eq!(r.client, (ip(CIP), 40000));
    assert_eq!(r.vip, (ip(VIP), 80));
    assert_eq!(r.dest, (ip(RIP), 8080));
    assert_eq!((r.mode, r.local), (ForwardMode::Nat, None));
    assert!(r.timeout_s > 800, "ESTABLISHED's 900 s: {}", r.timeout_s);
    // Data passes without a state change: nothing more to tell.
    m.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, 40000, VIP, 80, "A", 2, b"GET /")],
    );
    assert!(drained(&m).is_empty());

    let mut b = Lab::new(ForwardMode::Nat, Proto::Tcp);
    let snap = b.snap.clone();
    for r in &recs {
        b.core.sync_install(&snap, r).expect("installed");
    }
    assert_eq!(b.core.conns.len(), 1);
    assert_eq!(active_conns(&b), 1, "ActiveConn as on the master");
    // The failover: the client's next segment reaches the backup.
    let out = b.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, 40000, VIP, 80, "A", 7, b"more")],
    );
    assert_eq!(out.len(), 1, "forwarded, not refused as a stray ACK");
    let s = seen(&out[0].1);
    assert_eq!((s.dst, s.dport), (RIP, 8080));
    let out = b.rx(
        1,
        &[tcp(RS_MAC, MAC1, RIP, 8080, CIP, 40000, "A", 10, b"data")],
    );
    assert_eq!(out.len(), 1);
    let s = seen(&out[0].1);
    assert_eq!((s.src, s.sport, s.dst), (VIP, 80, CIP));
    assert_eq!(b.drops(DropReason::NoConnection), 0);
}

#[test]
fn a_fullnat_connection_keeps_its_local_port_on_the_backup() {
    let mut m = master(ForwardMode::FullNat);
    let (lip, lport) = establish(&mut m, 40000);
    assert_eq!(lip, LIP);
    let r = *drained(&m).last().unwrap();
    assert_eq!(r.local, Some((ip(LIP), lport)));

    let mut b = Lab::new(ForwardMode::FullNat, Proto::Tcp);
    let snap = b.snap.clone();
    b.core.sync_install(&snap, &r).expect("installed");
    // The real server's next segment to LIP:lport reaches the client.
    let out = b.rx(
        1,
        &[tcp(RS_MAC, MAC1, RIP, 8080, LIP, lport, "A", 10, b"x")],
    );
    assert_eq!(out.len(), 1);
    let s = seen(&out[0].1);
    assert_eq!((s.src, s.sport, s.dst, s.dport), (VIP, 80, CIP, 40000));
    // The client's goes to the real server from the same local port.
    let out = b.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, 40000, VIP, 80, "A", 2, b"y")],
    );
    assert_eq!(out.len(), 1);
    let s = seen(&out[0].1);
    assert_eq!((s.src, s.sport, s.dst), (LIP, lport, RIP));
    // A connection the backup makes itself gets another local port.
    let (_, other) = establish(&mut b, 40001);
    assert_ne!(other, lport, "the synced connection's port is reserved");
}

#[test]
fn connections_with_traffic_are_sent_again_and_idle_ones_are_not() {
    let mut m = master(ForwardMode::Nat);
    establish(&mut m, 40000);
    establish(&mut m, 40001);
    let snap = m.snap.clone();
    // The first pass of the refresh scan sends everything there is.
    m.core.now_ms += 1;
    m.core.expire(&snap);
    drained(&m);
    for _ in 0..12 {
        m.core.now_ms += 1000;
        // Only the connection from port 40000 carries traffic.
        m.rx(
            0,
            &[tcp(CLIENT_MAC, MAC0, CIP, 40000, VIP, 80, "A", 2, b"x")],
        );
        for _ in 0..10 {
            m.core.now_ms += 1;
            m.core.expire(&snap);
        }
    }
    let again = drained(&m);
    assert!(!again.is_empty(), "refreshed within 12 s");
    assert!(again.iter().all(|r| r.client.1 == 40000), "{again:?}");
}

#[test]
fn records_that_do_not_fit_the_backup_are_refused() {
    let mut m = master(ForwardMode::FullNat);
    establish(&mut m, 40000);
    let r = *drained(&m).last().unwrap();
    let mut b = Lab::new(ForwardMode::FullNat, Proto::Tcp);
    let snap = b.snap.clone();
    let mut other = r;
    other.vip.1 = 81;
    assert_eq!(b.core.sync_install(&snap, &other), Err(Reject::NoService));
    let mut other = r;
    other.dest.0 = ip([192, 168, 0, 99]);
    assert_eq!(b.core.sync_install(&snap, &other), Err(Reject::NoDest));
    let mut other = r;
    other.local = Some((ip([192, 168, 0, 250]), 5000));
    assert_eq!(b.core.sync_install(&snap, &other), Err(Reject::NoLocalAddr));
    let mut other = r;
    other.state = TcpState::Udp;
    assert_eq!(b.core.sync_install(&snap, &other), Err(Reject::BadState));
    assert_eq!(b.core.conns.len(), 0);
    // The same record twice is one connection.
    b.core.sync_install(&snap, &r).unwrap();
    b.core.sync_install(&snap, &r).unwrap();
    assert_eq!(b.core.conns.len(), 1);
    assert_eq!(active_conns(&b), 1);
}

/// The peers' sync messages (UDP to 224.0.0.81:8848) and VRRP adverts
/// (protocol 112 to 224.0.0.18) reach the kernel's daemons through the
/// port's kernel interface; without one they are counted as not ours.
#[test]
fn group_traffic_goes_up_to_the_kernel() {
    let group_mac = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];
    let mut vrrp = Vec::new();
    etherparse::PacketBuilder::ethernet2([0x02, 0, 0, 0, 0, 0x09], group_mac)
        .ipv4([10, 0, 0, 9], [224, 0, 0, 18], 255)
        .write(
            &mut vrrp,
            etherparse::IpNumber(112),
            &[0x31, 51, 100, 1, 0, 1, 0, 0],
        )
        .unwrap();
    let sync = udp(
        [0x02, 0, 0, 0, 0, 0x09],
        [0x01, 0x00, 0x5e, 0x00, 0x00, 0x51],
        [10, 0, 0, 9],
        40000,
        [224, 0, 0, 81],
        8848,
    );
    let frames = [vrrp, sync];
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Tcp);
    assert!(lab.rx(0, &frames).is_empty());
    assert_eq!(lab.drops(DropReason::NotForUs), 2);
    let mut lab = Lab::new(ForwardMode::Nat, Proto::Tcp);
    lab.core.io.kernel = Some(Vec::new());
    assert!(lab.rx(0, &frames).is_empty());
    let up = lab.core.io.kernel.take().unwrap();
    assert_eq!(up.len(), 2);
    assert_eq!(
        (up[0].1.as_slice(), up[1].1.as_slice()),
        (&frames[0][..], &frames[1][..])
    );
    assert_eq!(lab.all_drops(), 0);
}

/// A persistent service's template goes to the backup too: after a
/// failover the client's new connections go to the real server it had.
#[test]
fn persistence_templates_are_synced() {
    let persistent = || {
        let (mut d, e) = dataplane::testkit::desc(ForwardMode::Nat, Proto::Tcp);
        let s = &mut d.services[0];
        s.dests.push(dest(RIP2, 8080, ForwardMode::Nat));
        s.persistence = Some(Persistence {
            timeout_s: 300,
            netmask_len: 24,
        });
        Lab::with_desc(&d, &e, 0, 1)
    };
    let mut m = persistent();
    m.core.shared.sync.set_on(true);
    let out = m.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, 40000, VIP, 80, "S", 1, b"")],
    );
    let chosen = seen(&out[0].1).dst;
    let recs = drained(&m);
    let t: Vec<_> = recs.iter().filter(|r| r.template).collect();
    assert_eq!(t.len(), 1, "{recs:?}");
    assert_eq!(t[0].client, (ip([10, 0, 0, 0]), 0), "the client's /24");
    assert_eq!(ip(t[0].dest.0), ip(chosen));
    assert_eq!(t[0].timeout_s, 300);
    // The next connection of that client refreshes the template: nothing
    // new to tell while most of its life is left.
    m.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, 40001, VIP, 80, "S", 1, b"")],
    );
    assert!(drained(&m).iter().all(|r| !r.template));

    // On the backup, each of a few new connections (rr would alternate)
    // goes where the template says.
    let mut b = persistent();
    let snap = b.snap.clone();
    b.core.sync_install(&snap, t[0]).expect("installed");
    for cport in 41000..41004 {
        let out = b.rx(
            0,
            &[tcp(CLIENT_MAC, MAC0, CIP, cport, VIP, 80, "S", 1, b"")],
        );
        assert_eq!(seen(&out[0].1).dst, chosen);
    }
}

/// Two directors that are each other's backup: what one installs it does
/// not send back, and an echoed old record does not override a connection
/// that carries traffic on the director that made it. Once a packet of an
/// installed connection passes the other director, that one sends it.
#[test]
fn installed_connections_are_not_echoed_nor_override_live_ones() {
    let mut m = master(ForwardMode::Nat);
    establish(&mut m, 40000);
    let recs = drained(&m);
    let mut b = master(ForwardMode::Nat);
    let snap_b = b.snap.clone();
    for r in &recs {
        b.core.sync_install(&snap_b, r).unwrap();
    }
    b.core.expire(&snap_b); // the refresh scan's first pass
    assert!(drained(&b).is_empty(), "an installed connection echoed");

    let snap_m = m.snap.clone();
    m.core.sync_install(&snap_m, &recs[0]).unwrap();
    let c = m.core.conns.lookup(&recs[0].original()).unwrap().0;
    assert_eq!(
        m.core.conns.get(c).unwrap().state(),
        TcpState::Established,
        "an old SYN_RECV record took a live connection back"
    );
    assert_eq!(
        m.core.shared.events[0].get(dataplane::events::Event::SyncIgnored),
        1
    );

    // The failover: traffic reaches the other director, which sends the
    // connection from its next refresh pass on.
    let out = b.rx(
        0,
        &[tcp(CLIENT_MAC, MAC0, CIP, 40000, VIP, 80, "A", 2, b"x")],
    );
    assert_eq!(out.len(), 1);
    for _ in 0..11 {
        b.core.now_ms += 1000;
        b.core.expire(&snap_b);
    }
    let sent = drained(&b);
    assert!(
        sent.iter().any(|r| r.client == (ip(CIP), 40000)),
        "{sent:?}"
    );
}
