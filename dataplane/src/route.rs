//! Routes: connected prefixes of the port addresses plus static routes.
//!
//! Longest-prefix match over a short list sorted by prefix length. Directors
//! carry a handful of routes; an LPM trie (rte_fib) is the upgrade path when a
//! full table is needed.

use std::net::IpAddr;

/// Where a packet to some destination leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    /// Index into the dataplane's port list.
    pub port: usize,
    /// The neighbour whose MAC the frame is sent to.
    pub gateway: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub prefix: IpAddr,
    pub prefix_len: u8,
    /// `None`: connected (the destination itself is the neighbour).
    pub via: Option<IpAddr>,
    pub port: usize,
}

/// Masks `addr` to its first `len` bits.
pub fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len.min(32)))
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len.min(128)))
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// Whether `addr` lies in `prefix/len` (same family only).
pub fn contains(prefix: IpAddr, len: u8, addr: IpAddr) -> bool {
    prefix.is_ipv4() == addr.is_ipv4() && mask(prefix, len) == mask(addr, len)
}

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// Sorted by prefix length, longest first; each with its prefix as
    /// address bits, mask and family, so a lookup compares integers
    /// ([`contains`] worked out once). One list, as the table was: the
    /// snapshot's layout, and the code reading it, stay the same.
    routes: Vec<(RouteKey, Route)>,
}

/// A route's prefix in [`addr_bits`] form.
#[derive(Debug, Clone, Copy)]
struct RouteKey {
    v6: bool,
    mask: u128,
    net: u128,
}

/// An address as bits (IPv4 in the low 32) and whether it is IPv6.
#[inline]
fn addr_bits(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

impl RouteTable {
    pub fn new(mut routes: Vec<Route>) -> RouteTable {
        for r in &mut routes {
            r.prefix = mask(r.prefix, r.prefix_len);
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix_len));
        let routes = routes
            .into_iter()
            .map(|r| {
                let (v6, net) = addr_bits(r.prefix);
                let width: u32 = if v6 { 128 } else { 32 };
                let len = u32::from(r.prefix_len).min(width);
                let ones = u128::MAX >> (128 - width);
                let mask = if len == 0 {
                    0
                } else {
                    (ones << (width - len)) & ones
                };
                (RouteKey { v6, mask, net }, r)
            })
            .collect();
        RouteTable { routes }
    }

    /// The longest prefix holding `dst` (as [`contains`] decides).
    pub fn lookup(&self, dst: IpAddr) -> Option<NextHop> {
        let (v6, a) = addr_bits(dst);
        self.routes
            .iter()
            .find(|(k, _)| k.v6 == v6 && a & k.mask == k.net)
            .map(|(_, r)| NextHop {
                port: r.port,
                gateway: r.via.unwrap_or(dst),
            })
    }

    /// The routes, longest prefix first.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().map(|(_, r)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let t = RouteTable::new(vec![
            Route {
                prefix: ip("0.0.0.0"),
                prefix_len: 0,
                via: Some(ip("10.0.0.254")),
                port: 0,
            },
            Route {
                prefix: ip("192.168.0.0"),
                prefix_len: 24,
                via: None,
                port: 1,
            },
            Route {
                prefix: ip("10.0.0.0"),
                prefix_len: 24,
                via: None,
                port: 0,
            },
        ]);
        assert_eq!(
            t.lookup(ip("192.168.0.11")),
            Some(NextHop {
                port: 1,
                gateway: ip("192.168.0.11")
            })
        );
        assert_eq!(
            t.lookup(ip("8.8.8.8")),
            Some(NextHop {
                port: 0,
                gateway: ip("10.0.0.254")
            })
        );
        assert_eq!(
            t.lookup(ip("10.0.0.7")),
            Some(NextHop {
                port: 0,
                gateway: ip("10.0.0.7")
            })
        );
        assert_eq!(t.lookup(ip("2001:db8::1")), None);
    }

    /// The integer compare finds what `contains` over the sorted list finds.
    #[test]
    fn lookup_is_the_first_containing_route() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut routes = Vec::new();
        for i in 0..40 {
            let r = next();
            let prefix = if i % 3 == 0 {
                IpAddr::V6(std::net::Ipv6Addr::from(
                    u128::from(r) << 64 | u128::from(next()),
                ))
            } else {
                IpAddr::V4(std::net::Ipv4Addr::from(r as u32 & 0x0f0f_ffff))
            };
            let len = (next() % 140) as u8;
            routes.push(Route {
                prefix,
                prefix_len: len,
                via: None,
                port: i,
            });
        }
        let t = RouteTable::new(routes);
        for _ in 0..20_000 {
            let r = next();
            let dst = if r % 3 == 0 {
                IpAddr::V6(std::net::Ipv6Addr::from(
                    u128::from(next()) << 64 | u128::from(next()),
                ))
            } else {
                IpAddr::V4(std::net::Ipv4Addr::from(next() as u32 & 0x0f0f_ffff))
            };
            let want = t
                .routes()
                .find(|r| contains(r.prefix, r.prefix_len, dst))
                .map(|r| NextHop {
                    port: r.port,
                    gateway: r.via.unwrap_or(dst),
                });
            assert_eq!(t.lookup(dst), want, "{dst}");
        }
    }

    #[test]
    fn mask_edges() {
        assert_eq!(mask(ip("10.1.2.3"), 0), ip("0.0.0.0"));
        assert_eq!(mask(ip("10.1.2.3"), 32), ip("10.1.2.3"));
        assert_eq!(mask(ip("10.1.2.3"), 33), ip("10.1.2.3"));
        assert_eq!(mask(ip("2001:db8::1"), 64), ip("2001:db8::"));
    }
}
