//! The order in which ipvsadm lists services and real servers.
//!
//! ipvsadm sorts with libipvs's `ipvs_cmp_services` / `ipvs_cmp_dests` through
//! glibc's `qsort` (a merge sort on Debian 12). The comparisons subtract
//! addresses as 32-bit words and return the difference as an `int`, so two
//! addresses more than 2^31 apart compare "backwards": 192.168.0.1 lists before
//! 10.0.0.1. Scripts and eyes are used to that order, so it is kept here: the
//! same comparisons, wrapped the same way, in the same merge sort (which never
//! fails on a comparison that is not a total order).

use std::net::IpAddr;

use proto::v1 as pb;

/// `AF_INET`, `AF_INET6` as Linux numbers them: IPv4 services come first.
fn af(a: &IpAddr) -> i32 {
    if a.is_ipv4() {
        2
    } else {
        10
    }
}

/// The address as `union nf_inet_addr` holds it, in host-order words.
fn words(a: &IpAddr) -> [u32; 4] {
    match a {
        IpAddr::V4(v4) => [u32::from(*v4), 0, 0, 0],
        IpAddr::V6(v6) => {
            let o = v6.octets();
            std::array::from_fn(|i| {
                u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
            })
        }
    }
}

/// `ntohl(a) - ntohl(b)` as C computes it into an `int`.
fn word_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// libipvs's address comparison: four words for IPv6 (`v6`), one for IPv4.
fn addr_cmp(a: &IpAddr, b: &IpAddr, v6: bool) -> i32 {
    let (wa, wb) = (words(a), words(b));
    let n = if v6 { 4 } else { 1 };
    (0..n)
        .map(|i| word_diff(wa[i], wb[i]))
        .find(|r| *r != 0)
        .unwrap_or(0)
}

fn ip(s: &str) -> IpAddr {
    s.parse()
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// IPPROTO_TCP = 6, IPPROTO_UDP = 17.
fn proto_number(p: i32) -> i32 {
    match pb::Protocol::try_from(p) {
        Ok(pb::Protocol::Tcp) => 6,
        Ok(pb::Protocol::Udp) => 17,
        _ => 0,
    }
}

/// `ipvs_cmp_services`: family, protocol, address, port.
pub fn cmp_services(a: &pb::ServiceKey, b: &pb::ServiceKey) -> i32 {
    let (ia, ib) = (ip(&a.vip), ip(&b.vip));
    let r = af(&ia) - af(&ib);
    if r != 0 {
        return r;
    }
    let r = proto_number(a.protocol) - proto_number(b.protocol);
    if r != 0 {
        return r;
    }
    let r = addr_cmp(&ia, &ib, ia.is_ipv6());
    if r != 0 {
        return r;
    }
    a.vport as i32 - b.vport as i32
}

/// `ipvs_cmp_dests`: address (with the first dest's family), then port.
pub fn cmp_dests(a: &pb::Dest, b: &pb::Dest) -> i32 {
    let (ia, ib) = (ip(&a.addr), ip(&b.addr));
    let r = addr_cmp(&ia, &ib, ia.is_ipv6());
    if r != 0 {
        return r;
    }
    a.port as i32 - b.port as i32
}

/// glibc's `msort_with_tmp`: split in halves (the first one shorter or
/// equal), sort each, merge taking from the left while `cmp <= 0`.
pub fn msort<T: Clone>(v: &mut [T], cmp: &impl Fn(&T, &T) -> i32) {
    let n = v.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    msort(&mut v[..n1], cmp);
    msort(&mut v[n1..], cmp);
    let (left, right) = (v[..n1].to_vec(), v[n1..].to_vec());
    let (mut i, mut j) = (0, 0);
    for slot in v.iter_mut() {
        let take_left = j >= right.len() || (i < left.len() && cmp(&left[i], &right[j]) <= 0);
        if take_left {
            *slot = left[i].clone();
            i += 1;
        } else {
            *slot = right[j].clone();
            j += 1;
        }
    }
}

/// Puts services, and the dests of each, in ipvsadm's order.
pub fn ipvsadm_order(services: &mut [pb::ServiceStatus]) {
    let key = |s: &pb::ServiceStatus| {
        s.service
            .as_ref()
            .and_then(|x| x.key.clone())
            .unwrap_or_default()
    };
    msort(services, &|a, b| cmp_services(&key(a), &key(b)));
    for s in services.iter_mut() {
        let dest = |d: &pb::DestStatus| d.dest.clone().unwrap_or_default();
        msort(&mut s.dests, &|a, b| cmp_dests(&dest(a), &dest(b)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: pb::Protocol, vip: &str, port: u32) -> pb::ServiceKey {
        pb::ServiceKey {
            protocol: p as i32,
            vip: vip.into(),
            vport: port,
        }
    }

    fn sorted(keys: &[pb::ServiceKey]) -> Vec<String> {
        let mut v = keys.to_vec();
        msort(&mut v, &cmp_services);
        v.iter().map(|k| format!("{}:{}", k.vip, k.vport)).collect()
    }

    #[test]
    fn services_in_ipvsadm_order() {
        use pb::Protocol::{Tcp, Udp};
        let keys = [
            key(Udp, "10.0.0.1", 53),
            key(Tcp, "2001:db8::1", 80),
            key(Tcp, "10.0.0.2", 80),
            key(Tcp, "192.168.1.1", 80),
            key(Tcp, "10.0.0.1", 443),
            key(Tcp, "10.0.0.1", 80),
            key(Tcp, "192.168.1.1", 22),
        ];
        assert_eq!(
            sorted(&keys),
            [
                // TCP before UDP, IPv4 before IPv6; 192.168.x before 10.x
                // (the difference overflows an int, as in ipvsadm).
                "192.168.1.1:22",
                "192.168.1.1:80",
                "10.0.0.1:80",
                "10.0.0.1:443",
                "10.0.0.2:80",
                "10.0.0.1:53",
                "2001:db8::1:80",
            ]
        );
    }

    #[test]
    fn merge_sort_survives_a_cyclic_order() {
        // 10.x < 100.x < 192.x < 10.x under the wrapped comparison: the sort
        // must still end, keep every element, and give glibc's answer.
        let keys = [
            key(pb::Protocol::Tcp, "192.168.0.1", 1),
            key(pb::Protocol::Tcp, "100.0.0.1", 1),
            key(pb::Protocol::Tcp, "10.0.0.1", 1),
        ];
        let out = sorted(&keys);
        assert_eq!(out.len(), 3);
        // glibc: sort [192] and [100, 10] -> [10, 100]; merge 192 vs 10:
        // 192 - 10 wraps negative, so 192 first; then 10, 100.
        assert_eq!(out, ["192.168.0.1:1", "10.0.0.1:1", "100.0.0.1:1"]);
    }

    #[test]
    fn dests_by_address_then_port() {
        let d = |a: &str, p: u32| pb::Dest {
            addr: a.into(),
            port: p,
            ..Default::default()
        };
        let mut v = vec![d("10.1.0.2", 80), d("10.1.0.1", 8080), d("10.1.0.1", 80)];
        msort(&mut v, &cmp_dests);
        let got: Vec<_> = v.iter().map(|d| (d.addr.as_str(), d.port)).collect();
        assert_eq!(
            got,
            [("10.1.0.1", 80), ("10.1.0.1", 8080), ("10.1.0.2", 80)]
        );
    }
}
