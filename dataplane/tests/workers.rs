//! DPDK in-process, two workers: ring ports with two rx/tx queue pairs each,
//! where the test plays the NIC's RSS by choosing the rx queue of every frame.
//! Requests all go to queue 0 and replies all to queue 1, so about half of
//! each direction reaches a worker that does not own the connection: every
//! connection must still work, each owned by one worker in both directions,
//! with the hand-over counted.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use dataplane::dpdk::mbuf::Mbuf;
use dataplane::wire::PacketBuf;
use dataplane::*;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};

mod common;
use common::{arp, collect, dest, drain, inject_q as inject, ip, take, Env};

/// A SYN or SYN-ACK without payload.
#[allow(clippy::too_many_arguments)]
fn tcp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    syn: bool,
    ack: bool,
) -> Vec<u8> {
    common::tcp(src_mac, dst_mac, src, sport, dst, dport, syn, ack, b"")
}

const TAG: &str = "w";
const QUEUES: usize = 2;
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const RS_MACS: [[u8; 6]; 2] = [[0x02, 0, 0, 0, 1, 0x11], [0x02, 0, 0, 0, 1, 0x12]];
const RS_IPS: [[u8; 4]; 2] = [[192, 168, 0, 11], [192, 168, 0, 12]];

fn env() -> &'static Mutex<Env> {
    static ENV: OnceLock<Mutex<Env>> = OnceLock::new();
    ENV.get_or_init(|| Mutex::new(common::new_env(TAG, "0@0,1@0,2@1", QUEUES)))
}

fn spec() -> DataplaneSpec {
    let mut s = common::spec(TAG);
    s.worker_cores = vec![1, 2];
    s.adaptive_poll = true;
    s.mbufs = 8191;
    for p in &mut s.ports {
        p.queues = QUEUES as u16;
    }
    s
}

/// (src, sport, dst, dport) of an IPv4 TCP frame, checksums checked.
fn tuple(f: &[u8]) -> ([u8; 4], u16, [u8; 4], u16) {
    let p = SlicedPacket::from_ethernet(f).expect("parses");
    let Some(NetSlice::Ipv4(ip4)) = &p.net else {
        panic!("ipv4")
    };
    let h = ip4.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IP checksum");
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!("tcp")
    };
    let th = t.to_header();
    assert_eq!(
        th.checksum,
        th.calc_checksum_ipv4(&h, t.payload()).unwrap(),
        "TCP checksum"
    );
    (
        ip4.header().source(),
        t.source_port(),
        ip4.header().destination(),
        t.destination_port(),
    )
}

/// Start two workers and teach the director every neighbour's MAC.
fn start(env: &Env, desc: &ConfigDesc, ext: Option<&ExtDesc>) -> (Dataplane, [u8; 6], [u8; 6]) {
    drain(env);
    let dp = Dataplane::start_with_eal(&spec(), desc).expect("start");
    if let Some(ext) = ext {
        dp.apply_ext(desc, ext).expect("ext");
    }
    let st = dp.stats();
    assert_eq!(st.workers.len(), 2);
    let (mac0, mac1) = (st.ports[0].mac, st.ports[1].mac);
    drain(env);
    inject(
        env,
        0,
        0,
        &[arp(
            1,
            CLIENT_MAC,
            [10, 0, 0, 2],
            [0; 6],
            [10, 0, 0, 1],
            [0xff; 6],
        )],
    );
    for (mac, rip) in RS_MACS.iter().zip(RS_IPS) {
        inject(
            env,
            1,
            1,
            &[arp(1, *mac, rip, [0; 6], [192, 168, 0, 1], [0xff; 6])],
        );
    }
    assert_eq!(
        collect(env, 0, 1).len(),
        1,
        "ARP answered on the client side"
    );
    assert_eq!(
        collect(env, 1, 2).len(),
        2,
        "ARP answered on the server side"
    );
    (dp, mac0, mac1)
}

fn worker_of_conns(dp: &Dataplane) -> HashMap<u16, u32> {
    dp.connections()
        .into_iter()
        .map(|c| (c.client.1, c.worker))
        .collect()
}

const N: u16 = 64;

#[test]
fn nat_connections_work_whichever_queue_each_direction_lands_on() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    let nat = |a: &str| dest(a, 8080, ForwardMode::Nat);
    let desc = common::config(
        Proto::Tcp,
        "rr",
        vec![nat("192.168.0.11"), nat("192.168.0.12")],
    );
    let (dp, mac0, mac1) = start(&env, &desc, None);

    let syns: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            tcp(
                CLIENT_MAC,
                mac0,
                [10, 0, 0, 2],
                40000 + i,
                [10, 0, 0, 100],
                80,
                true,
                false,
            )
        })
        .collect();
    inject(&env, 0, 0, &syns);
    let fwd = collect(&env, 1, N.into());
    assert_eq!(fwd.len(), usize::from(N), "every SYN reaches a real server");
    let mut rs_of = HashMap::new();
    for f in &fwd {
        let (src, sport, dst, dport) = tuple(f);
        assert_eq!((src, dport), ([10, 0, 0, 2], 8080));
        assert!(RS_IPS.contains(&dst));
        assert!(
            rs_of.insert(sport, dst).is_none(),
            "one SYN per client port"
        );
    }

    // Every SYN-ACK arrives on queue 1, whoever owns its connection.
    let acks: Vec<Vec<u8>> = rs_of
        .iter()
        .map(|(&cport, &rip)| {
            let mac = RS_MACS[RS_IPS.iter().position(|r| *r == rip).unwrap()];
            tcp(mac, mac1, rip, 8080, [10, 0, 0, 2], cport, true, true)
        })
        .collect();
    inject(&env, 1, 1, &acks);
    let back = collect(&env, 0, N.into());
    assert_eq!(
        back.len(),
        usize::from(N),
        "every SYN-ACK reaches the client"
    );
    let mut ports = HashSet::new();
    for f in &back {
        let (src, sport, dst, dport) = tuple(f);
        assert_eq!((src, sport, dst), ([10, 0, 0, 100], 80, [10, 0, 0, 2]));
        assert!(ports.insert(dport));
    }
    assert_eq!(ports.len(), usize::from(N));

    // One entry per connection, spread over both workers; both handed over.
    let owners = worker_of_conns(&dp);
    assert_eq!(owners.len(), usize::from(N), "no duplicate connections");
    let on0 = owners.values().filter(|&&w| w == 0).count();
    assert!(
        on0 > 0 && on0 < usize::from(N),
        "both workers own some: {on0}"
    );
    let st = dp.stats();
    for (i, w) in st.workers.iter().enumerate() {
        assert!(w.handed_over > 0, "worker {i} handed over: {w:?}");
        assert!(w.handover_in > 0, "worker {i} received: {w:?}");
    }
    assert_eq!(
        st.workers.iter().map(|w| w.handed_over).sum::<u64>(),
        st.workers.iter().map(|w| w.handover_in).sum::<u64>()
    );
    assert_eq!(common::drops(&dp, DropReason::HandoverFull), 0);
    assert_eq!(common::drops(&dp, DropReason::NoConnection), 0);
    // What metrics read per worker: the table as configured, drops by reason
    // adding up to each worker's total and, over workers, to the global ones.
    for (i, w) in st.workers.iter().enumerate() {
        assert_eq!(
            w.conn_capacity,
            u64::from(spec().conn_capacity),
            "worker {i}"
        );
        assert_eq!(w.drops_by_reason.len(), DropReason::COUNT);
        let by_reason: u64 = w.drops_by_reason.iter().map(|(_, n)| n).sum();
        assert_eq!(by_reason, w.drops, "worker {i}");
    }
    for (r, n) in &st.drops {
        let per_worker: u64 = st
            .workers
            .iter()
            .flat_map(|w| w.drops_by_reason.iter().filter(|(x, _)| x == r))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(per_worker, *n, "{r:?}");
    }
    let pool = st.mempool.expect("the dataplane's pool");
    assert_eq!(pool.capacity, u64::from(spec().mbufs));
    assert!(pool.in_use < pool.capacity, "{pool:?}");
    dp.stop();
}

#[test]
fn fullnat_replies_reach_the_worker_that_chose_the_local_port() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    let fnat = |a: &str| dest(a, 8080, ForwardMode::FullNat);
    let desc = common::config(
        Proto::Tcp,
        "rr",
        vec![fnat("192.168.0.11"), fnat("192.168.0.12")],
    );
    let ext = ExtDesc {
        laddrs: vec![LocalAddrSpec {
            service: desc.services[0].key,
            addr: ip("192.168.0.200"),
            port: "dpdk1".into(),
        }],
        ..Default::default()
    };
    let (dp, mac0, mac1) = start(&env, &desc, Some(&ext));

    let syns: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            tcp(
                CLIENT_MAC,
                mac0,
                [10, 0, 0, 2],
                41000 + i,
                [10, 0, 0, 100],
                80,
                true,
                false,
            )
        })
        .collect();
    inject(&env, 0, 0, &syns);
    let fwd = collect(&env, 1, N.into());
    assert_eq!(fwd.len(), usize::from(N), "every SYN reaches a real server");
    // (lport, rip) of each connection as the real server sees it.
    let mut seen = Vec::new();
    for f in &fwd {
        let (src, lport, dst, dport) = tuple(f);
        assert_eq!((src, dport), ([192, 168, 0, 200], 8080), "from the LIP");
        seen.push((lport, dst));
    }
    let acks: Vec<Vec<u8>> = seen
        .iter()
        .map(|&(lport, rip)| {
            let mac = RS_MACS[RS_IPS.iter().position(|r| *r == rip).unwrap()];
            tcp(mac, mac1, rip, 8080, [192, 168, 0, 200], lport, true, true)
        })
        .collect();
    inject(&env, 1, 1, &acks);
    let back = collect(&env, 0, N.into());
    assert_eq!(
        back.len(),
        usize::from(N),
        "every SYN-ACK reaches the client"
    );
    let mut cports = HashSet::new();
    for f in &back {
        let (src, sport, dst, dport) = tuple(f);
        assert_eq!((src, sport, dst), ([10, 0, 0, 100], 80, [10, 0, 0, 2]));
        cports.insert(dport);
    }
    assert_eq!(cports, (41000..41000 + N).collect());

    let conns = dp.connections();
    assert_eq!(conns.len(), usize::from(N));
    for c in &conns {
        let (_, lport) = c.local.expect("FULLNAT lists its local address");
        assert_eq!(
            usize::from(lport) % 2,
            c.worker as usize,
            "a worker hands out only the local ports it owns"
        );
    }
    let st = dp.stats();
    for (i, w) in st.workers.iter().enumerate() {
        assert!(w.handed_over > 0, "worker {i} handed over: {w:?}");
    }
    assert_eq!(common::drops(&dp, DropReason::HandoverFull), 0);
    dp.stop();
}

/// The key of Microsoft's RSS verification suite.
const RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

#[test]
fn with_rss_fullnat_needs_no_hand_over_in_either_direction() {
    use dataplane::rss::{Reta, Toeplitz};
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    let fnat = |a: &str| dest(a, 8080, ForwardMode::FullNat);
    let desc = common::config(
        Proto::Tcp,
        "rr",
        vec![fnat("192.168.0.11"), fnat("192.168.0.12")],
    );
    let ext = ExtDesc {
        laddrs: vec![LocalAddrSpec {
            service: desc.services[0].key,
            addr: ip("192.168.0.200"),
            port: "dpdk1".into(),
        }],
        ..Default::default()
    };
    // Both ports are fed by a Toeplitz RSS the test computes itself.
    let reta: Vec<u16> = (0..128).map(|i| i % 2).collect();
    let mut spec = spec();
    for p in &mut spec.ports {
        p.steering = Steering::SoftRss {
            key: RSS_KEY.to_vec(),
            reta: reta.clone(),
        };
    }
    let toeplitz = Toeplitz::new(&RSS_KEY).unwrap();
    let table = Reta::new(reta).unwrap();
    drain(&env);
    let dp = Dataplane::start_with_eal(&spec, &desc).expect("start");
    dp.apply_ext(&desc, &ext).expect("ext");
    let st = dp.stats();
    let (mac0, mac1) = (st.ports[0].mac, st.ports[1].mac);
    drain(&env);
    inject(
        &env,
        0,
        0,
        &[arp(
            1,
            CLIENT_MAC,
            [10, 0, 0, 2],
            [0; 6],
            [10, 0, 0, 1],
            [0xff; 6],
        )],
    );
    for (mac, rip) in RS_MACS.iter().zip(RS_IPS) {
        inject(
            &env,
            1,
            1,
            &[arp(1, *mac, rip, [0; 6], [192, 168, 0, 1], [0xff; 6])],
        );
    }
    assert_eq!(collect(&env, 0, 1).len() + collect(&env, 1, 2).len(), 3);

    // Each SYN goes to the queue RSS picks for it.
    for i in 0..N {
        let cport = 42000 + i;
        let syn = tcp(
            CLIENT_MAC,
            mac0,
            [10, 0, 0, 2],
            cport,
            [10, 0, 0, 100],
            80,
            true,
            false,
        );
        let h = toeplitz.hash_v4([10, 0, 0, 2].into(), [10, 0, 0, 100].into(), cport, 80);
        inject(&env, 0, usize::from(table.queue_of(h)), &[syn]);
    }
    let fwd = collect(&env, 1, N.into());
    assert_eq!(fwd.len(), usize::from(N), "every SYN reaches a real server");

    // Each SYN-ACK goes to the queue RSS picks for it.
    for f in &fwd {
        let (_, lport, rip, _) = tuple(f);
        let mac = RS_MACS[RS_IPS.iter().position(|r| *r == rip).unwrap()];
        let h = toeplitz.hash_v4(rip.into(), [192, 168, 0, 200].into(), 8080, lport);
        let q = usize::from(table.queue_of(h));
        let ack = tcp(mac, mac1, rip, 8080, [192, 168, 0, 200], lport, true, true);
        inject(&env, 1, q, &[ack]);
    }
    let back = collect(&env, 0, N.into());
    assert_eq!(
        back.len(),
        usize::from(N),
        "every SYN-ACK reaches the client"
    );

    let st = dp.stats();
    for (i, w) in st.workers.iter().enumerate() {
        assert_eq!(
            (w.handed_over, w.handover_in),
            (0, 0),
            "worker {i}: no request nor reply needed a hand-over: each landed on its owner's queue"
        );
        assert!(w.rx_packets > 0, "worker {i} received traffic");
    }
    let conns = dp.connections();
    assert_eq!(conns.len(), usize::from(N));
    let on0 = conns.iter().filter(|c| c.worker == 0).count();
    assert!(
        on0 > 0 && on0 < usize::from(N),
        "both workers own some: {on0}"
    );
    for c in &conns {
        let (lip, lport) = c.local.unwrap();
        let (IpAddr::V4(rip), IpAddr::V4(lip)) = (c.dest.0, lip) else {
            panic!("IPv4")
        };
        let h = toeplitz.hash_v4(rip, lip, c.dest.1, lport);
        assert_eq!(u32::from(table.queue_of(h)), c.worker);
    }
    dp.stop();
}

#[test]
fn a_panicking_worker_stops_the_dataplane_and_says_which_and_why() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    drain(&env);
    let desc = common::config(Proto::Tcp, "rr", vec![]);
    let dp = Dataplane::start_with_eal(&spec(), &desc).expect("start");
    assert_eq!(dp.failure(), None);
    dp.inject_worker_panic(1, "boom");
    let deadline = Instant::now() + Duration::from_secs(3);
    while dp.failure().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        dp.failure().as_deref(),
        Some("worker 1 (lcore 2) panicked: boom")
    );
    // The other worker stopped too: nothing is answered any more.
    drain(&env);
    inject(
        &env,
        0,
        0,
        &[arp(
            1,
            CLIENT_MAC,
            [10, 0, 0, 2],
            [0; 6],
            [10, 0, 0, 1],
            [0xff; 6],
        )],
    );
    assert!(collect_for(&env, 0, Duration::from_millis(200)).is_empty());
    dp.stop();
    drain(&env);
}

/// Whatever `port` transmits within `d`.
fn collect_for(env: &Env, port: usize, d: Duration) -> Vec<Vec<u8>> {
    std::thread::sleep(d);
    take(env, port)
}

/// SYNs from `client` ports `ports`, alternating between the two rx queues
/// of the client-side port; the real server each one was sent to.
fn syns_over_both_queues(
    env: &Env,
    mac0: [u8; 6],
    client: [u8; 4],
    ports: std::ops::Range<u16>,
) -> HashMap<u16, [u8; 4]> {
    let n = ports.len();
    for p in ports {
        let syn = tcp(
            CLIENT_MAC,
            mac0,
            client,
            p,
            [10, 0, 0, 100],
            80,
            true,
            false,
        );
        inject(env, 0, usize::from(p % 2), &[syn]);
    }
    let fwd = collect(env, 1, n);
    assert_eq!(fwd.len(), n, "every SYN reaches a real server");
    fwd.iter()
        .map(|f| {
            let (_, sport, dst, _) = tuple(f);
            (sport, dst)
        })
        .collect()
}

#[test]
fn persistence_holds_whichever_worker_a_connection_lands_on() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    let nat = |a: &str| dest(a, 8080, ForwardMode::Nat);
    let mut desc = common::config(
        Proto::Tcp,
        "rr",
        vec![nat("192.168.0.11"), nat("192.168.0.12")],
    );
    desc.services[0].persistence = Some(Persistence {
        timeout_s: 300,
        netmask_len: 32,
    });
    let (dp, mac0, _) = start(&env, &desc, None);
    // Two clients, each with 32 connections spread over both queues: each
    // client sticks to one real server.
    for client in [[10, 0, 0, 2], [10, 0, 0, 3]] {
        let got = syns_over_both_queues(&env, mac0, client, 43000..43032);
        let servers: HashSet<[u8; 4]> = got.values().copied().collect();
        assert_eq!(servers.len(), 1, "{client:?} went to {servers:?}");
    }
    // All of a client's connections live on one worker (its template's).
    let conns = dp.connections();
    for client in ["10.0.0.2", "10.0.0.3"] {
        let workers: HashSet<u32> = conns
            .iter()
            .filter(|c| c.client.0 == ip(client) && c.state != "NONE")
            .map(|c| c.worker)
            .collect();
        assert_eq!(workers.len(), 1, "{client}: {workers:?}");
    }
    assert!(dp.stats().workers.iter().any(|w| w.handed_over > 0));
    dp.stop();
}

#[test]
fn round_robin_stays_fair_across_workers_and_workers_build_no_tables() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    let nat = |a: &str| dest(a, 8080, ForwardMode::Nat);
    let desc = common::config(
        Proto::Tcp,
        "rr",
        vec![nat("192.168.0.11"), nat("192.168.0.12")],
    );
    let (dp, mac0, _) = start(&env, &desc, None);
    let got = syns_over_both_queues(&env, mac0, [10, 0, 0, 2], 44000..44064);
    let to_rs1 = got.values().filter(|&&r| r == RS_IPS[0]).count();
    // Each worker's cursor alternates on its own: the total is within one
    // per worker of an even split.
    assert!((30..=34).contains(&to_rs1), "rs1 got {to_rs1} of 64");

    // A 1000-dest Maglev service applied over and over: the tables come
    // built in the snapshots, the workers never build one.
    let mut big = desc.clone();
    big.services[0].scheduler = "mh".into();
    big.services[0].dests = (0..1000u32)
        .map(|i| nat(&format!("172.16.{}.{}", i / 250, i % 250 + 1)))
        .collect();
    let built = sched::tables_built_on_this_thread();
    for i in 0..20u32 {
        big.services[0].dests[0].weight = 1 + i % 3;
        dp.apply(&big).expect("apply");
        // New connections make both workers schedule on the new snapshot.
        for q in 0..2u16 {
            let p = 45000 + 2 * i as u16 + q;
            let syn = tcp(
                CLIENT_MAC,
                mac0,
                [10, 0, 0, 9],
                p,
                [10, 0, 0, 100],
                80,
                true,
                false,
            );
            inject(&env, 0, usize::from(q), &[syn]);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        sched::tables_built_on_this_thread() - built,
        20,
        "the applying thread built each snapshot's table"
    );
    std::thread::sleep(Duration::from_millis(100));
    let scheduled: u64 = dp.stats().services[0].traffic.conns;
    assert!(
        scheduled >= 64 + 40,
        "the churn's SYNs were scheduled: {scheduled}"
    );
    let st = dp.stats();
    for (i, w) in st.workers.iter().enumerate() {
        assert_eq!(w.sched_tables_built, 0, "worker {i} built a table");
    }
    dp.stop();
}

mod ring_property {
    use super::*;
    use dataplane::handover::{Outbox, Rings};
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    static NEXT_TAG: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        /// Worker 0 hands `n` numbered mbufs to worker 1 in bursts of random
        /// sizes while worker 1 (another thread, fast or slow) drains them in
        /// bursts: every mbuf arrives once, in order, or was counted as dropped
        /// on a full ring; none is lost or duplicated.
        #[test]
        fn the_handover_ring_never_loses_or_duplicates_an_mbuf(
            n in 1usize..6000,
            bursts in prop::collection::vec(1usize..40, 1..16),
            slow_consumer in any::<bool>(),
        ) {
            let env = env().lock().unwrap_or_else(|e| e.into_inner());
            let tag = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
            let rings = Arc::new(Rings::new(2, &format!("p{tag}")).unwrap());
            let done = Arc::new(AtomicBool::new(false));
            let consumer = {
                let (rings, done) = (rings.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let ring = rings.ring(0, 1).unwrap();
                    loop {
                        let finished = done.load(Ordering::Acquire);
                        let mut b: arrayvec::ArrayVec<Mbuf, 32> = arrayvec::ArrayVec::new();
                        if ring.dequeue_burst(&mut b) == 0 {
                            if finished {
                                break;
                            }
                            if slow_consumer {
                                std::thread::sleep(Duration::from_micros(200));
                            }
                            std::thread::yield_now();
                            continue;
                        }
                        for m in b {
                            got.push(u32::from_be_bytes(m.data()[..4].try_into().unwrap()));
                        }
                    }
                    got
                })
            };
            let mut out = Outbox::new(0, 2);
            let (mut sent, mut dropped) = (0u64, 0u64);
            let mut i = 0usize;
            let mut k = 0usize;
            while i < n {
                let b = bursts[k % bursts.len()].min(n - i);
                k += 1;
                for _ in 0..b {
                    let mut m = env.pool.alloc().expect("mbuf");
                    assert!(m.write_from(&(i as u32).to_be_bytes()));
                    let f = out.push(&rings, 1, m);
                    sent += f.sent;
                    dropped += f.dropped;
                    i += 1;
                }
                let f = out.flush(&rings);
                sent += f.sent;
                dropped += f.dropped;
            }
            done.store(true, Ordering::Release);
            let got = consumer.join().unwrap();
            prop_assert_eq!(sent + dropped, n as u64, "every mbuf sent or counted");
            prop_assert_eq!(got.len() as u64, sent, "everything sent arrived");
            prop_assert!(got.windows(2).all(|w| w[0] < w[1]), "in order, no duplicate");
            prop_assert!(got.iter().all(|&x| (x as usize) < n));
            if !slow_consumer {
                prop_assert!(dropped < n as u64);
            }
        }
    }
}

#[test]
fn configuration_that_cannot_work_is_refused_with_one_clear_line() {
    let env = env().lock().unwrap_or_else(|e| e.into_inner());
    drain(&env);
    let desc = common::config(Proto::Tcp, "rr", vec![]);
    let refused = |spec: &DataplaneSpec| match Dataplane::start_with_eal(spec, &desc) {
        Ok(dp) => {
            dp.stop();
            panic!("started: {spec:?}")
        }
        Err(e) => e.to_string(),
    };
    let mut s = spec();
    s.ports[0].queues = 1;
    assert_eq!(
        refused(&s),
        "port dpdk0: 1 queue(s) for 2 workers: every worker needs its own rx/tx queue pair"
    );
    let mut s = spec();
    s.worker_cores = vec![0, 1];
    assert_eq!(
        refused(&s),
        "workers: lcore 0 is the main lcore; workers need their own cores"
    );
    let mut s = spec();
    s.ports[1].steering = Steering::Rss;
    let e = refused(&s);
    assert!(
        e.starts_with("port dpdk1: steering = \"rss\" is not possible: the device offers no RSS"),
        "{e}"
    );
    let mut s = spec();
    s.ports[1].steering = Steering::Flow;
    let e = refused(&s);
    assert!(
        e.starts_with("port dpdk1: steering = \"flow\" is not possible: rte_flow: "),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    // The default picks what the ring ports can do: the hand-over.
    let dp = Dataplane::start_with_eal(&spec(), &desc).expect("auto starts");
    dp.stop();
    drain(&env);
}
