//! Table behaviour the dataplane relies on: lookups both ways, removal, duplicates,
//! timers in virtual time, bounded expiry, a full table, scanning, memory per conn.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use conntrack::{
    ConnId, ConnTable, Direction, FlowKey, InsertError, KeyPlace, NewConn, TableFull, TcpFlags,
    TcpState, Timeouts, Tuple,
};

fn v4(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(n))
}

/// NAT conn number `n`: client 100.64.x.y:port -> VIP 192.0.2.10:80, RS 10.0.0.5:8080.
fn nat(n: u32) -> NewConn {
    let cip = v4(0x6440_0000 | (n >> 16));
    let cport = (n & 0xffff) as u16;
    NewConn {
        original: Tuple::tcp(cip, cport, v4(0xc000_020a), 80),
        reply: Tuple::tcp(v4(0x0a00_0005), 8080, cip, cport),
        service: 1,
        dest: n % 7,
        flags: 0,
        timeout_override_s: None,
    }
}

fn establish(ct: &mut ConnTable, id: ConnId, now: u64) {
    ct.on_packet(id, Direction::Original, TcpFlags::SYN, now);
    ct.on_packet(id, Direction::Reply, TcpFlags::SYN | TcpFlags::ACK, now);
    ct.on_packet(id, Direction::Original, TcpFlags::ACK, now);
}

#[test]
fn lookup_both_directions_and_remove_removes_both() {
    let mut ct = ConnTable::new(16, 9, Timeouts::default());
    let c = nat(1);
    let id = ct.insert(c, 0).unwrap();
    assert_eq!(ct.lookup(&c.original), Some((id, Direction::Original)));
    assert_eq!(ct.lookup(&c.reply), Some((id, Direction::Reply)));
    // The reverse of a tuple is a different flow.
    assert_eq!(ct.lookup(&c.original.reversed()), None);
    let conn = ct.get(id).unwrap();
    assert_eq!((conn.original(), conn.reply()), (c.original, c.reply));
    assert_eq!((conn.service(), conn.dest(), conn.flags()), (1, 1, 0));

    let gone = ct.remove(id).unwrap();
    assert_eq!(gone.original(), c.original);
    assert_eq!(ct.lookup(&c.original), None);
    assert_eq!(ct.lookup(&c.reply), None);
    assert!(ct.get(id).is_none());
    assert!(ct.remove(id).is_none(), "double remove");
    assert_eq!(ct.len(), 0);
}

#[test]
fn ipv6_and_fullnat_tuples() {
    let mut ct = ConnTable::new(16, 9, Timeouts::default());
    let cip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7));
    let vip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10));
    // FULLNAT v6 client -> v4 RS via a local address (NAT64).
    let c = NewConn {
        original: Tuple::tcp(cip, 5555, vip, 443),
        reply: Tuple::tcp(v4(0x0a00_0005), 443, v4(0x0a00_0101), 61000),
        service: 3,
        dest: 2,
        flags: 4,
        timeout_override_s: None,
    };
    let id = ct.insert(c, 0).unwrap();
    assert_eq!(ct.lookup(&c.original), Some((id, Direction::Original)));
    assert_eq!(ct.lookup(&c.reply), Some((id, Direction::Reply)));
    assert_eq!(ct.get(id).unwrap().original(), c.original);
    assert_eq!(ct.get(id).unwrap().reply(), c.reply);
    // Same numbers as v4-mapped v6 are not the same flow.
    let mapped = Tuple::tcp(
        IpAddr::V6(Ipv4Addr::new(10, 0, 0, 5).to_ipv6_mapped()),
        443,
        IpAddr::V6(Ipv4Addr::new(10, 0, 1, 1).to_ipv6_mapped()),
        61000,
    );
    assert_eq!(ct.lookup(&mapped), None);
}

#[test]
fn duplicate_original_refused_by_try_insert_documented_for_insert() {
    let mut ct = ConnTable::new(16, 9, Timeouts::default());
    let c = nat(2);
    let id = ct.try_insert(c, 0).unwrap();
    assert_eq!(
        ct.try_insert(c, 0),
        Err(InsertError::Exists(id, Direction::Original))
    );
    // A conn whose reply tuple collides (NAT ambiguity) is refused too.
    let mut other = nat(3);
    other.reply = c.reply;
    assert_eq!(
        ct.try_insert(other, 0),
        Err(InsertError::Exists(id, Direction::Reply))
    );
    assert_eq!(ct.len(), 1);
    // Unchecked insert stores a second conn; removing either leaves the other found.
    let id2 = ct.insert(c, 0).unwrap();
    assert_ne!(id, id2);
    assert!(ct.lookup(&c.original).is_some());
    ct.remove(id).unwrap();
    assert_eq!(ct.lookup(&c.original), Some((id2, Direction::Original)));
    assert_eq!(ct.lookup(&c.reply), Some((id2, Direction::Reply)));
}

#[test]
fn established_expires_at_900s_not_before() {
    let mut ct = ConnTable::new(16, 9, Timeouts::default());
    let t0 = 5_000;
    let id = ct.insert(nat(4), t0).unwrap();
    establish(&mut ct, id, t0);
    assert_eq!(ct.expire(t0 + 899_999, 64, |_| panic!("expired early")), 0);
    assert!(ct.get(id).is_some());
    let mut seen = Vec::new();
    assert_eq!(
        ct.expire(t0 + 900_000, 64, |c| seen.push((
            c.dest(),
            c.is_active(),
            c.state()
        ))),
        1
    );
    assert_eq!(seen, vec![(4, true, TcpState::Established)]);
    assert!(ct.get(id).is_none());
    assert_eq!(ct.lookup(&nat(4).original), None);
    assert_eq!(ct.len(), 0);
}

#[test]
fn a_rearmed_conn_does_not_expire() {
    let mut ct = ConnTable::new(16, 9, Timeouts::default());
    let id = ct.insert(nat(5), 0).unwrap();
    establish(&mut ct, id, 0);
    let quiet = ct.insert(nat(6), 0).unwrap();
    establish(&mut ct, quiet, 0);
    // Traffic every 600 s for an hour keeps conn 5; conn 6 goes at 900 s.
    let mut now = 0;
    while now < 3_600_000 {
        now += 600_000;
        ct.on_packet(id, Direction::Reply, TcpFlags::ACK, now);
        ct.expire(now, 64, |_| {});
        ct.expire(now + 100, 64, |_| {});
    }
    assert!(ct.get(id).is_some());
    assert!(ct.get(quiet).is_none());
    // Then silence: gone 900 s after the last packet.
    assert_eq!(ct.expire(now + 899_900, 64, |_| {}), 0);
    assert_eq!(ct.expire(now + 900_000, 64, |_| {}), 1);
}

#[test]
fn shorter_timeout_after_state_change_fires_early() {
    let mut ct = ConnTable::new(16, 9, Timeouts::default());
    let id = ct.insert(nat(7), 0).unwrap();
    establish(&mut ct, id, 0);
    ct.on_packet(id, Direction::Original, TcpFlags::RST, 1_000);
    assert_eq!(ct.expire(10_999, 64, |_| {}), 0);
    assert_eq!(
        ct.expire(11_000, 64, |c| assert_eq!(c.state(), TcpState::Close)),
        1
    );
}

#[test]
fn expire_respects_budget_and_finishes_later() {
    let mut ct = ConnTable::new(1000, 9, Timeouts::default());
    for n in 0..1000 {
        let id = ct.insert(nat(n), 0).unwrap();
        ct.on_packet(id, Direction::Original, TcpFlags::SYN, 0); // SYN_RECV: 30 s
    }
    let now = 30_000;
    let mut total = 0;
    let mut calls = 0;
    loop {
        let n = ct.expire(now, 32, |c| assert_eq!(c.state(), TcpState::SynRecv));
        assert!(n <= 32);
        total += n;
        calls += 1;
        if n == 0 {
            break;
        }
    }
    assert_eq!(total, 1000);
    assert!(calls > 1000 / 32);
    assert!(ct.is_empty());
    assert_eq!(ct.expire(now, 0, |_| {}), 0);
}

#[test]
fn table_full_refuses_new_conns_existing_continue() {
    let mut ct = ConnTable::new(100, 9, Timeouts::default());
    let ids: Vec<ConnId> = (0..100).map(|n| ct.insert(nat(n), 0).unwrap()).collect();
    assert_eq!(ct.insert(nat(100), 0), Err(TableFull));
    assert_eq!(ct.try_insert(nat(101), 0), Err(InsertError::Full));
    assert_eq!(ct.lookup(&nat(100).original), None);
    for (n, &id) in ids.iter().enumerate() {
        assert_eq!(
            ct.lookup(&nat(n as u32).original),
            Some((id, Direction::Original))
        );
        assert_eq!(
            ct.lookup(&nat(n as u32).reply),
            Some((id, Direction::Reply))
        );
        establish(&mut ct, id, 10);
        assert_eq!(ct.get(id).unwrap().state(), TcpState::Established);
    }
    // One leaves, one more fits.
    ct.remove(ids[42]).unwrap();
    let id = ct.insert(nat(100), 20).unwrap();
    assert_eq!(
        ct.lookup(&nat(100).original),
        Some((id, Direction::Original))
    );
    assert_eq!(ct.insert(nat(101), 0), Err(TableFull));
}

#[test]
fn zero_capacity_and_bad_ids_do_not_panic() {
    let mut ct = ConnTable::new(0, 9, Timeouts::default());
    assert_eq!(ct.insert(nat(1), 0), Err(TableFull));
    assert_eq!(ct.lookup(&nat(1).original), None);
    let tr = ct.on_packet(ConnId(12345), Direction::Original, TcpFlags::SYN, 0);
    assert!(!tr.is_active);
    assert!(ct.get(ConnId(u32::MAX)).is_none());
    assert!(ct.remove(ConnId(0)).is_none());
    assert_eq!(ct.expire(u64::MAX, 10, |_| {}), 0);
    assert_eq!(ct.scan(0, 10, |_, _| {}), None);
}

#[test]
fn scan_visits_every_conn_in_bounded_steps() {
    let mut ct = ConnTable::new(5000, 9, Timeouts::default());
    let ids: Vec<ConnId> = (0..3000).map(|n| ct.insert(nat(n), 0).unwrap()).collect();
    for id in ids.iter().step_by(3) {
        ct.remove(*id).unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    let mut cursor = Some(0);
    let mut calls = 0;
    while let Some(c) = cursor {
        let mut k = 0;
        cursor = ct.scan(c, 64, |id, conn| {
            assert_eq!(ct.lookup(&conn.original()), Some((id, Direction::Original)));
            assert!(seen.insert(id));
            k += 1;
        });
        assert!(k <= 64);
        calls += 1;
    }
    assert_eq!(seen.len(), ct.len());
    assert!(calls >= ct.len() / 64);
}

#[test]
fn user_scratch_and_timeouts_setting() {
    let mut ct = ConnTable::new(4, 9, Timeouts::default());
    let id = ct.insert(nat(1), 0).unwrap();
    ct.get_mut(id).unwrap().user = 0xdead_beef;
    assert_eq!(ct.get(id).unwrap().user, 0xdead_beef);
    ct.set_timeouts(Timeouts::default().with_ipvsadm(60, 0, 0));
    assert_eq!(ct.timeouts().ipvsadm(), (60, 120, 300));
    establish(&mut ct, id, 0);
    assert_eq!(ct.get(id).unwrap().expires_at_ms(), 60_000);
    // Freed and reused slots start clean.
    ct.remove(id).unwrap();
    let id2 = ct.insert(nat(2), 0).unwrap();
    assert_eq!(ct.get(id2).unwrap().user, 0);
}

#[test]
fn bytes_per_conn_within_budget() {
    const { assert!(ConnTable::bytes_per_conn() <= 160) };
    assert!(
        ConnTable::bytes_per_conn() <= 160,
        "{}",
        ConnTable::bytes_per_conn()
    );
    // Two cache lines and a little: the tuples, state, and the dataplane's
    // per-direction next hop.
    assert!(std::mem::size_of::<conntrack::Conn>() <= 136);
    let ct = ConnTable::new(100_000, 1, Timeouts::default());
    let per = ct.memory_bytes() as f64 / 100_000.0;
    assert!(per <= 161.0, "measured {per} bytes per conn");
}

#[test]
fn fill_100k_all_found_both_ways() {
    let n = 100_000;
    let mut ct = ConnTable::new(n, 0x5eed, Timeouts::default());
    let ids: Vec<ConnId> = (0..n).map(|i| ct.insert(nat(i), 0).unwrap()).collect();
    assert_eq!(ct.len(), n as usize);
    for i in 0..n {
        let c = nat(i);
        assert_eq!(
            ct.lookup(&c.original),
            Some((ids[i as usize], Direction::Original))
        );
        assert_eq!(
            ct.lookup(&c.reply),
            Some((ids[i as usize], Direction::Reply))
        );
    }
    // Burst lookups agree, misses included.
    let tuples: Vec<Tuple> = (0..64)
        .map(|i| nat(i * 1500 + 1).original)
        .chain((0..8).map(|i| nat(n + i).original))
        .chain((0..24).map(|i| nat(i * 4001 + 7).reply))
        .collect();
    let mut out = vec![None; tuples.len()];
    ct.lookup_burst(&tuples, &mut out);
    for (t, o) in tuples.iter().zip(&out) {
        assert_eq!(*o, ct.lookup(t));
    }
    assert!(out[64..72].iter().all(Option::is_none));
    assert!(out[72..]
        .iter()
        .all(|o| matches!(o, Some((_, Direction::Reply)))));
}

#[test]
fn a_placed_burst_lookup_finds_what_was_inserted_after_it() {
    let mut ct = ConnTable::new(1024, 0x5eed, Timeouts::default());
    let ids: Vec<ConnId> = (0..16).map(|i| ct.insert(nat(i), 0).unwrap()).collect();
    // 16 tracked, 16 not yet.
    let keys: Vec<FlowKey> = (0..32)
        .map(|i| FlowKey::from_tuple(&nat(i).original))
        .collect();
    let mut out = [None; 32];
    let mut places = [KeyPlace::default(); 32];
    ct.mark_inserts();
    ct.lookup_burst_placed(&keys, &mut out, &mut places);
    for i in 0..32 {
        assert_eq!(out[i], ct.lookup_wire(&keys[i]));
        assert_eq!(out[i].is_some(), i < 16);
    }
    assert_eq!(out[3], Some((ids[3], Direction::Original)));
    // Nothing inserted since the mark: every miss stays one.
    assert!((0..32).all(|i| !ct.maybe_inserted(places[i])));
    // Inserted after the burst's lookup: noted, and found again from the
    // noted place.
    let late = ct.insert(nat(20), 0).unwrap();
    assert!(ct.maybe_inserted(places[20]));
    // The filter's bits are a few of 256: most other keys stay clear.
    assert!((16..32).filter(|&i| ct.maybe_inserted(places[i])).count() < 8);
    for i in 0..32 {
        let want = match i {
            0..16 => Some((ids[i], Direction::Original)),
            20 => Some((late, Direction::Original)),
            _ => None,
        };
        assert_eq!(ct.lookup_placed(&keys[i], places[i]), want);
    }
}

#[test]
fn a_conn_inserted_at_its_noted_place_is_found_both_ways() {
    let mut ct = ConnTable::new(1024, 0x5eed, Timeouts::default());
    let keys: Vec<FlowKey> = (0..32)
        .map(|i| FlowKey::from_tuple(&nat(i).original))
        .collect();
    let mut out = [None; 32];
    let mut places = [KeyPlace::default(); 32];
    ct.mark_inserts();
    ct.lookup_burst_placed(&keys, &mut out, &mut places);
    assert!(out.iter().all(Option::is_none));
    // Each miss becomes a conn inserted at the place its lookup noted, the
    // same place `place_of` gives (what `insert` uses).
    let ids: Vec<ConnId> = (0..32)
        .map(|i| {
            assert_eq!(
                format!("{:?}", places[i as usize]),
                format!("{:?}", ct.place_of(&nat(i).original))
            );
            ct.insert_placed(nat(i), places[i as usize], 0).unwrap()
        })
        .collect();
    for i in 0..32u32 {
        let c = nat(i);
        assert_eq!(
            ct.lookup(&c.original),
            Some((ids[i as usize], Direction::Original))
        );
        assert_eq!(
            ct.lookup(&c.reply),
            Some((ids[i as usize], Direction::Reply))
        );
        assert_eq!(
            ct.lookup_wire_placed(&keys[i as usize]).0,
            Some((ids[i as usize], Direction::Original))
        );
    }
    // Removed, it is gone from both places.
    ct.remove(ids[5]).unwrap();
    assert_eq!(ct.lookup(&nat(5).original), None);
    assert_eq!(ct.lookup(&nat(5).reply), None);
}

/// `insert_placed_first` leaves the same conn, state, expiry and
/// transition as `insert_placed`, `set_input_only` and the first
/// `on_packet`, for every flag byte, both state tables, TCP and UDP, with
/// and without the INPUT-ONLY mark and a timeout override; and the conn
/// expires at the same time.
#[test]
fn insert_placed_first_is_insert_then_first_packet() {
    use std::net::{IpAddr, Ipv4Addr};
    let a = |n: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | n));
    for secure in [false, true] {
        for proto in [6u8, 17] {
            for input_only in [false, true] {
                for ovr in [None, Some(7)] {
                    for f in 0..=255u8 {
                        let c = NewConn {
                            original: Tuple::new(proto, a(1), 1000, a(2), 80),
                            reply: Tuple::new(proto, a(3), 8080, a(1), 1000),
                            service: 1,
                            dest: 2,
                            flags: 3,
                            timeout_override_s: ovr,
                        };
                        let flags = TcpFlags::from_bits(f);
                        let mut t1 = ConnTable::new(8, 5, Timeouts::default());
                        let mut t2 = ConnTable::new(8, 5, Timeouts::default());
                        t1.set_secure_tcp(secure);
                        t2.set_secure_tcp(secure);
                        let p1 = t1.place_of(&c.original);
                        let id1 = t1.insert_placed(c, p1, 1000).unwrap();
                        if input_only {
                            t1.set_input_only(id1, true);
                        }
                        let tr1 = t1.on_packet(id1, Direction::Original, flags, 1000);
                        let p2 = t2.place_of(&c.original);
                        let (id2, tr2) = t2
                            .insert_placed_first(c, p2, input_only, flags, 1000, |_| {})
                            .unwrap();
                        assert_eq!(
                            (id1, tr1),
                            (id2, tr2),
                            "{secure} {proto} {input_only} {f:#x}"
                        );
                        let (c1, c2) = (t1.get(id1).unwrap(), t2.get(id2).unwrap());
                        assert_eq!(format!("{c1:?}"), format!("{c2:?}"));
                        assert_eq!(c1.is_input_only(), c2.is_input_only());
                        assert_eq!(t2.lookup(&c.original), Some((id2, Direction::Original)));
                        assert_eq!(t2.lookup(&c.reply), Some((id2, Direction::Reply)));
                        let exp = c1.expires_at_ms();
                        for t in [&mut t1, &mut t2] {
                            assert_eq!(t.expire(exp - 1, 64, |_| {}), 0);
                            assert_eq!(t.expire(exp + 100, 64, |_| {}), 1);
                            assert!(t.is_empty());
                        }
                    }
                }
            }
        }
    }
}
