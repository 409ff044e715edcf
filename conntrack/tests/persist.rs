//! Persistence templates: the same client keeps its real server until the template
//! times out.

use std::net::IpAddr;

use conntrack::{mask_addr, PersistTable, TableFull};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn persistence_holds_then_expires() {
    let mut p = PersistTable::new(16, 3);
    let client = mask_addr(ip("198.51.100.77"), 24);
    assert_eq!(p.lookup(1, client, 0), None);
    p.insert_or_refresh(1, client, 9, 300, 0).unwrap();
    // Another client in the same /24 gets the same dest; another service does not.
    assert_eq!(
        p.lookup(1, mask_addr(ip("198.51.100.3"), 24), 1_000),
        Some(9)
    );
    assert_eq!(p.lookup(2, client, 1_000), None);
    // A new conn at 200 s refreshes it to 500 s.
    p.insert_or_refresh(1, client, 9, 300, 200_000).unwrap();
    assert_eq!(p.expire(499_900, 16), 0);
    assert_eq!(p.lookup(1, client, 499_999), Some(9));
    assert_eq!(p.expire(500_000, 16), 1);
    assert_eq!(p.lookup(1, client, 500_000), None);
    assert!(p.is_empty());
}

#[test]
fn lookup_never_returns_an_expired_template() {
    let mut p = PersistTable::new(4, 3);
    let c = ip("2001:db8::");
    p.insert_or_refresh(7, c, 1, 60, 0).unwrap();
    assert_eq!(p.lookup(7, c, 59_999), Some(1));
    assert_eq!(p.lookup(7, c, 60_000), None); // before expire() ran
    assert_eq!(p.len(), 0);
}

#[test]
fn full_refresh_remove_scan() {
    let mut p = PersistTable::new(2, 3);
    p.insert_or_refresh(1, ip("10.0.0.0"), 1, 60, 0).unwrap();
    p.insert_or_refresh(1, ip("10.0.1.0"), 2, 60, 0).unwrap();
    assert_eq!(
        p.insert_or_refresh(1, ip("10.0.2.0"), 3, 60, 0),
        Err(TableFull)
    );
    // Refreshing an existing one still works when full, and can move it.
    p.insert_or_refresh(1, ip("10.0.1.0"), 5, 60, 10).unwrap();
    assert_eq!(p.lookup(1, ip("10.0.1.0"), 20), Some(5));
    let mut listed = Vec::new();
    assert_eq!(
        p.scan(0, 10, |t| listed.push((
            t.client(),
            t.dest(),
            t.expires_at_ms()
        ))),
        None
    );
    listed.sort();
    assert_eq!(
        listed,
        vec![(ip("10.0.0.0"), 1, 60_000), (ip("10.0.1.0"), 5, 60_010)]
    );
    assert!(p.remove(1, ip("10.0.0.0")));
    assert!(!p.remove(1, ip("10.0.0.0")));
    p.insert_or_refresh(1, ip("10.0.2.0"), 3, 60, 0).unwrap();
    assert_eq!(p.len(), 2);
}
