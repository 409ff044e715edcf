//! Property test: random insert / remove / lookup / packet / expire sequences on a
//! small table against a `HashMap` model that knows nothing about hashing, slabs or
//! wheels.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use conntrack::{ConnId, ConnTable, Direction, InsertError, NewConn, TcpFlags, Timeouts, Tuple};
use proptest::prelude::*;

const CAP: u32 = 48;

#[derive(Clone, Debug)]
enum Op {
    Insert(u16, bool, bool),
    Remove(u16),
    Lookup(u16),
    Packet(u16, bool, u8),
    Advance(u32),
    Expire(u8),
}

fn op() -> impl Strategy<Value = Op> {
    // Small key space so inserts collide with existing conns and removes hit.
    prop_oneof![
        4 => (0u16..96, any::<bool>(), any::<bool>()).prop_map(|(k, v6, udp)| Op::Insert(k, v6, udp)),
        2 => (0u16..96).prop_map(Op::Remove),
        3 => (0u16..96).prop_map(Op::Lookup),
        3 => (0u16..96, any::<bool>(), any::<u8>()).prop_map(|(k, r, f)| Op::Packet(k, r, f)),
        1 => (0u32..400_000).prop_map(Op::Advance),
        1 => (0u8..8).prop_map(Op::Expire),
    ]
}

fn conn(k: u16, v6: bool, udp: bool) -> NewConn {
    let addr = |n: u32| -> IpAddr {
        if v6 {
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                0,
                0,
                0,
                (n >> 16) as u16,
                n as u16,
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | n))
        }
    };
    let proto = if udp { 17 } else { 6 };
    let cip = addr(1000 + u32::from(k % 5));
    let cport = 20000 + k;
    NewConn {
        original: Tuple::new(proto, cip, cport, addr(1), 80),
        reply: Tuple::new(proto, addr(2 + u32::from(k % 3)), 8080, cip, cport),
        service: 1,
        dest: u32::from(k),
        flags: 0,
        timeout_override_s: None,
    }
}

type K = (u16, bool, bool);

struct Model {
    /// (key, v6, udp) -> (conn, id, expiry)
    conns: HashMap<K, (NewConn, ConnId, u64)>,
}

impl Model {
    fn key_of(&self, t: &Tuple) -> Option<(K, Direction)> {
        self.conns.iter().find_map(|(&k, (c, _, _))| {
            if c.original == *t {
                Some((k, Direction::Original))
            } else if c.reply == *t {
                Some((k, Direction::Reply))
            } else {
                None
            }
        })
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn table_matches_hashmap_model(seed in any::<u64>(), ops in proptest::collection::vec(op(), 1..300)) {
        let mut ct = ConnTable::new(CAP, seed, Timeouts::default());
        let mut m = Model { conns: HashMap::new() };
        let mut now: u64 = 1;
        for op in ops {
            match op {
                Op::Insert(k, v6, udp) => {
                    let c = conn(k, v6, udp);
                    let clash = m.key_of(&c.original).or_else(|| m.key_of(&c.reply));
                    match ct.try_insert(c, now) {
                        Ok(id) => {
                            prop_assert!(clash.is_none());
                            prop_assert!(m.conns.len() < CAP as usize);
                            let t = Timeouts::default();
                            let s = if udp { t.udp_s } else { t.tcp_none_s };
                            m.conns.insert((k, v6, udp), (c, id, now + u64::from(s) * 1000));
                        }
                        Err(InsertError::Exists(id, d)) => {
                            let (ck, cd) = clash.expect("refused without a clash");
                            prop_assert_eq!(m.conns[&ck].1, id);
                            prop_assert_eq!(cd, d);
                        }
                        Err(InsertError::Full) => {
                            prop_assert!(clash.is_none());
                            prop_assert_eq!(m.conns.len(), CAP as usize);
                        }
                    }
                }
                Op::Remove(k) => {
                    let key = *m.conns.keys().filter(|kk| kk.0 == k).min().unwrap_or(&(k, false, false));
                    if let Some((c, id, _)) = m.conns.remove(&key) {
                        let gone = ct.remove(id);
                        prop_assert!(gone.is_some());
                        prop_assert_eq!(gone.unwrap().original(), c.original);
                    }
                }
                Op::Lookup(k) => {
                    for v6 in [false, true] {
                        for udp in [false, true] {
                            let c = conn(k, v6, udp);
                            for t in [c.original, c.reply, c.original.reversed()] {
                                let want = m.key_of(&t).map(|(k, d)| (m.conns[&k].1, d));
                                prop_assert_eq!(ct.lookup(&t), want);
                            }
                        }
                    }
                }
                Op::Packet(k, reply, flags) => {
                    let key = *m.conns.keys().filter(|kk| kk.0 == k).min().unwrap_or(&(k, false, false));
                    if let Some((c, id, exp)) = m.conns.get_mut(&key) {
                        let dir = if reply { Direction::Reply } else { Direction::Original };
                        let tr = ct.on_packet(*id, dir, TcpFlags::from_bits(flags), now);
                        let conn = ct.get(*id).unwrap();
                        prop_assert_eq!(conn.original(), c.original);
                        prop_assert_eq!(tr.state, conn.state());
                        prop_assert_eq!(tr.is_active, conn.is_active());
                        *exp = now + u64::from(Timeouts::default().for_state(tr.state)) * 1000;
                        prop_assert_eq!(conn.expires_at_ms(), *exp);
                    }
                }
                Op::Advance(ms) => now += u64::from(ms),
                Op::Expire(budget) => {
                    let mut expired = Vec::new();
                    let n = ct.expire(now, usize::from(budget), |c| expired.push((c.original(), c.expires_at_ms())));
                    prop_assert_eq!(n, expired.len());
                    prop_assert!(n <= usize::from(budget));
                    for (t, exp) in expired {
                        prop_assert!(exp <= now, "expired before its time");
                        let (k, _) = m.key_of(&t).expect("expired an unknown conn");
                        m.conns.remove(&k);
                    }
                    // With a generous budget, nothing due may remain.
                    if budget == 7 {
                        while ct.expire(now, 64, |c| {
                            let k = m.key_of(&c.original()).unwrap().0;
                            m.conns.remove(&k);
                        }) > 0 {}
                        for (_, _, exp) in m.conns.values() {
                            // Due but not yet on a tick boundary is the only slack.
                            prop_assert!(*exp > now - now % conntrack::TICK_MS);
                        }
                    }
                }
            }
            prop_assert_eq!(ct.len(), m.conns.len());
        }
    }
}
