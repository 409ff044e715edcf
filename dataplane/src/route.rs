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
    /// Sorted by prefix length, longest first.
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(mut routes: Vec<Route>) -> RouteTable {
        for r in &mut routes {
            r.prefix = mask(r.prefix, r.prefix_len);
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix_len));
        RouteTable { routes }
    }

    pub fn lookup(&self, dst: IpAddr) -> Option<NextHop> {
        self.routes
            .iter()
            .find(|r| contains(r.prefix, r.prefix_len, dst))
            .map(|r| NextHop {
                port: r.port,
                gateway: r.via.unwrap_or(dst),
            })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
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

    #[test]
    fn mask_edges() {
        assert_eq!(mask(ip("10.1.2.3"), 0), ip("0.0.0.0"));
        assert_eq!(mask(ip("10.1.2.3"), 32), ip("10.1.2.3"));
        assert_eq!(mask(ip("10.1.2.3"), 33), ip("10.1.2.3"));
        assert_eq!(mask(ip("2001:db8::1"), 64), ip("2001:db8::"));
    }
}
