//! Per-service access control, DPVS's blacklist and whitelist
//! (`ip_vs_blklst.c`, `ip_vs_whtlst.c`): the client prefixes of a service
//! compiled into sorted, disjoint address ranges, searched by bisection.
//!
//! Built on the control thread with the snapshot; the packet path only reads
//! it, on packets that find no connection (`core::Core::handle_ip`, before the
//! SYN proxy and the scheduler), in O(log n) however many
//! entries a list has. Established connections a change denies are cut by the
//! worker's sweep (`core`), so no per-packet lookup is needed for them.

use std::net::IpAddr;

use crate::config::AclSpec;
use crate::stats::DropReason;

/// A set of addresses given as prefixes: per family, the union of the
/// prefixes as sorted, non-overlapping inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddrSet {
    v4: Box<[(u32, u32)]>,
    v6: Box<[(u128, u128)]>,
}

impl AddrSet {
    /// The set of `prefixes` (`(address, length)`; host bits are ignored).
    pub fn new(prefixes: &[(IpAddr, u8)]) -> AddrSet {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for &(a, len) in prefixes {
            match a {
                IpAddr::V4(a) => {
                    let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
                    v4.push((u32::from(a) & !host, u32::from(a) | host));
                }
                IpAddr::V6(a) => {
                    let host = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
                    v6.push((u128::from(a) & !host, u128::from(a) | host));
                }
            }
        }
        AddrSet {
            v4: disjoint(v4),
            v6: disjoint(v6),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    #[inline]
    pub fn contains(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(a) => within(&self.v4, u32::from(a)),
            IpAddr::V6(a) => within(&self.v6, u128::from(a)),
        }
    }
}

/// Sorted ranges with the ones inside or overlapping an earlier one merged
/// into it (prefixes only nest or are apart, so this is their union).
fn disjoint<T: Ord + Copy>(mut v: Vec<(T, T)>) -> Box<[(T, T)]> {
    v.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for (start, end) in v {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out.into_boxed_slice()
}

/// Whether `x` lies in one of the sorted, disjoint `ranges`.
#[inline]
fn within<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|r| r.0 <= x);
    i > 0 && x <= ranges[i - 1].1
}

/// A service's compiled lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    pub blacklist: AddrSet,
    pub whitelist: AddrSet,
}

impl Acl {
    /// The lists of `spec`; `None` when both are empty (nothing to check).
    pub fn compile(spec: &AclSpec) -> Option<Acl> {
        let acl = Acl {
            blacklist: AddrSet::new(&spec.blacklist),
            whitelist: AddrSet::new(&spec.whitelist),
        };
        (!acl.blacklist.is_empty() || !acl.whitelist.is_empty()).then_some(acl)
    }

    /// Why a connection from `client` is refused, if it is: blacklisted,
    /// or not on a whitelist that is not empty (DPVS checks in that order).
    #[inline]
    pub fn denies(&self, client: IpAddr) -> Option<DropReason> {
        if self.blacklist.contains(client) {
            Some(DropReason::AclBlacklist)
        } else if !self.whitelist.is_empty() && !self.whitelist.contains(client) {
            Some(DropReason::AclWhitelist)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn set(list: &[(&str, u8)]) -> AddrSet {
        let v: Vec<(IpAddr, u8)> = list.iter().map(|(a, l)| (ip(a), *l)).collect();
        AddrSet::new(&v)
    }

    #[test]
    fn prefixes_nest_and_merge() {
        let s = set(&[
            ("10.1.0.0", 16),
            ("10.1.2.0", 24),
            ("192.168.0.7", 32),
            ("10.0.0.0", 8),
            ("172.16.0.0", 12),
        ]);
        assert_eq!(s.v4.len(), 3, "10.1/16 lies in 10/8: {:?}", s.v4);
        for a in [
            "10.0.0.0",
            "10.255.255.255",
            "10.1.2.3",
            "172.31.255.255",
            "192.168.0.7",
        ] {
            assert!(s.contains(ip(a)), "{a}");
        }
        for a in [
            "9.255.255.255",
            "11.0.0.0",
            "172.32.0.0",
            "192.168.0.6",
            "192.168.0.8",
        ] {
            assert!(!s.contains(ip(a)), "{a}");
        }
        assert!(!s.contains(ip("::ffff:10.0.0.1")), "families apart");
        assert!(set(&[("0.0.0.0", 0)]).contains(ip("255.255.255.255")));
        assert!(!set(&[]).contains(ip("1.2.3.4")));
    }

    #[test]
    fn ipv6_prefixes_and_host_bits_ignored() {
        let s = set(&[("2001:db8::", 32), ("fd00::1", 128), ("2001:db8:1::5", 48)]);
        assert!(s.contains(ip("2001:db8:ffff::1")));
        assert!(s.contains(ip("fd00::1")));
        assert!(!s.contains(ip("fd00::2")));
        assert!(!s.contains(ip("2001:db9::")));
        assert!(!s.contains(ip("10.0.0.1")));
        assert!(set(&[("::", 0)]).contains(ip("ffff::")));
    }

    /// The bisection agrees with a linear scan over many prefixes.
    #[test]
    fn many_entries_agree_with_a_linear_scan() {
        let mut prefixes = Vec::new();
        let mut x: u32 = 12345;
        for _ in 0..5000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let len = 16 + (x % 17) as u8;
            prefixes.push((IpAddr::from(x.to_be_bytes()), len));
        }
        let s = AddrSet::new(&prefixes);
        let mut y: u32 = 777;
        for _ in 0..20000 {
            y = y.wrapping_mul(22_695_477).wrapping_add(1);
            let a = IpAddr::from(y.to_be_bytes());
            let linear = prefixes
                .iter()
                .any(|&(p, l)| crate::route::contains(p, l, a));
            assert_eq!(s.contains(a), linear, "{a}");
        }
        // An address from each prefix is in.
        for &(p, _) in prefixes.iter().take(100) {
            assert!(s.contains(p));
        }
    }

    #[test]
    fn blacklist_first_then_a_whitelist_that_is_not_empty() {
        let spec = |b: &[(&str, u8)], w: &[(&str, u8)]| AclSpec {
            blacklist: b.iter().map(|(a, l)| (ip(a), *l)).collect(),
            whitelist: w.iter().map(|(a, l)| (ip(a), *l)).collect(),
        };
        assert_eq!(Acl::compile(&spec(&[], &[])), None);
        let acl = Acl::compile(&spec(&[("10.1.0.0", 16)], &[])).unwrap();
        assert_eq!(acl.denies(ip("10.1.9.9")), Some(DropReason::AclBlacklist));
        assert_eq!(acl.denies(ip("10.2.0.1")), None);
        let acl = Acl::compile(&spec(&[("10.1.1.1", 32)], &[("10.1.0.0", 16)])).unwrap();
        assert_eq!(acl.denies(ip("10.1.1.1")), Some(DropReason::AclBlacklist));
        assert_eq!(acl.denies(ip("10.1.1.2")), None);
        assert_eq!(acl.denies(ip("10.3.0.1")), Some(DropReason::AclWhitelist));
    }
}
