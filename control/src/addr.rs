//! Parsing and printing of the address forms users type: `VIP:PORT` (IPv6 in
//! brackets), `ADDR/LEN` prefixes, dotted netmasks.
//!
//! Shared by the config file, the gRPC conversions and `dpvsctl`; every function
//! returns a message that quotes the offending text, never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Maximum prefix length for the address family of `addr`.
pub fn max_prefix(addr: &IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// Parses an IP address, accepting IPv6 in brackets too (`[2001:db8::1]`).
pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    let t = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    t.parse::<IpAddr>()
        .map_err(|_| format!("invalid address \"{s}\""))
}

/// Parses `ADDR:PORT`, `[V6]:PORT`, or (when `port_optional`) a bare address, which
/// yields port `None`. A bare IPv6 address without brackets is accepted too.
pub fn parse_addr_port(s: &str, port_optional: bool) -> Result<(IpAddr, Option<u16>), String> {
    let bad = || format!("invalid address \"{s}\"");
    if let Some(rest) = s.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or_else(bad)?;
        let ip = host.parse::<Ipv6Addr>().map_err(|_| bad())?;
        if tail.is_empty() {
            return if port_optional {
                Ok((IpAddr::V6(ip), None))
            } else {
                Err(format!("missing port in \"{s}\""))
            };
        }
        let port = tail.strip_prefix(':').ok_or_else(bad)?;
        return Ok((IpAddr::V6(ip), Some(parse_port(port)?)));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return if port_optional {
            Ok((ip, None))
        } else {
            Err(format!("missing port in \"{s}\""))
        };
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let ip = host.parse::<Ipv4Addr>().map_err(|_| bad())?;
    Ok((IpAddr::V4(ip), Some(parse_port(port)?)))
}

/// Parses a port number 0..=65535.
pub fn parse_port(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| format!("invalid port \"{s}\""))
}

/// Parses `ADDR/LEN`; without `/LEN` the host length (32 or 128) when `len_optional`.
pub fn parse_prefix(s: &str, len_optional: bool) -> Result<(IpAddr, u8), String> {
    let bad = || format!("invalid address \"{s}\"");
    match s.split_once('/') {
        Some((a, l)) => {
            let ip = parse_ip(a).map_err(|_| bad())?;
            let len: u8 = l.parse().map_err(|_| bad())?;
            if len > max_prefix(&ip) {
                return Err(format!(
                    "invalid prefix length /{len} in \"{s}\" (at most /{})",
                    max_prefix(&ip)
                ));
            }
            Ok((ip, len))
        }
        None if len_optional => {
            let ip = parse_ip(s)?;
            Ok((ip, max_prefix(&ip)))
        }
        None => Err(format!("missing prefix length in \"{s}\" (ADDR/LEN)")),
    }
}

/// An access-list entry as users write it: `ADDR` (that host) or
/// `ADDR/LEN`, the address being the network (no host bits set).
pub fn parse_acl_entry(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = parse_prefix(s, true)?;
    let (net, _) = network_of(&addr, len);
    if net != addr {
        return Err(format!(
            "invalid prefix \"{s}\": host bits set (the network is {net}/{len})"
        ));
    }
    Ok((addr, len))
}

/// An access-list entry as listings print it: a host as its address (as
/// DPVS prints its entries), a prefix as `ADDR/LEN`.
pub fn fmt_acl_entry(addr: &IpAddr, len: u8) -> String {
    if len == max_prefix(addr) {
        addr.to_string()
    } else {
        format!("{addr}/{len}")
    }
}

/// Whether `addr` lies inside `prefix/len` (same family only).
pub fn prefix_contains(prefix: &IpAddr, len: u8, addr: &IpAddr) -> bool {
    match (prefix, addr) {
        (IpAddr::V4(p), IpAddr::V4(a)) => {
            let len = u32::from(len.min(32));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(*p) & mask == u32::from(*a) & mask
        }
        (IpAddr::V6(p), IpAddr::V6(a)) => {
            let len = u32::from(len.min(128));
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(*p) & mask == u128::from(*a) & mask
        }
        _ => false,
    }
}

/// The network of `addr/len` (host bits cleared), for connected routes.
pub fn network_of(addr: &IpAddr, len: u8) -> (IpAddr, u8) {
    match addr {
        IpAddr::V4(a) => {
            let l = u32::from(len.min(32));
            let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
            (
                IpAddr::V4(Ipv4Addr::from(u32::from(*a) & mask)),
                len.min(32),
            )
        }
        IpAddr::V6(a) => {
            let l = u32::from(len.min(128));
            let mask = if l == 0 { 0 } else { u128::MAX << (128 - l) };
            (
                IpAddr::V6(Ipv6Addr::from(u128::from(*a) & mask)),
                len.min(128),
            )
        }
    }
}

/// Formats `addr:port` the way ipvsadm -n does: IPv6 in brackets.
pub fn fmt_addr_port(addr: &IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// Parses ipvsadm's `-M` netmask into a prefix length: dotted IPv4 (`255.255.255.0`)
/// or a plain length (`24`, and for IPv6 services `64`).
pub fn parse_netmask(s: &str) -> Result<u8, String> {
    if let Ok(len) = s.parse::<u8>() {
        if len <= 128 {
            return Ok(len);
        }
    }
    let mask: Ipv4Addr = s.parse().map_err(|_| format!("invalid netmask \"{s}\""))?;
    let bits = u32::from(mask);
    let len = bits.leading_ones();
    if bits.checked_shl(len).unwrap_or(0) != 0 {
        return Err(format!("invalid netmask \"{s}\": not contiguous"));
    }
    // leading_ones of a u32 is at most 32.
    Ok(len as u8)
}

/// Dotted form of an IPv4 prefix length (ipvsadm prints `mask 255.255.255.0`).
pub fn v4_netmask(len: u8) -> Ipv4Addr {
    let len = u32::from(len.min(32));
    Ipv4Addr::from(if len == 0 { 0 } else { u32::MAX << (32 - len) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_port_forms() {
        assert_eq!(
            parse_addr_port("10.0.0.1:80", false).unwrap(),
            ("10.0.0.1".parse().unwrap(), Some(80))
        );
        assert_eq!(
            parse_addr_port("[2001:db8::1]:443", false).unwrap(),
            ("2001:db8::1".parse().unwrap(), Some(443))
        );
        assert_eq!(
            parse_addr_port("10.0.0.1", true).unwrap(),
            ("10.0.0.1".parse().unwrap(), None)
        );
        assert_eq!(
            parse_addr_port("2001:db8::1", true).unwrap(),
            ("2001:db8::1".parse().unwrap(), None)
        );
        assert_eq!(
            parse_addr_port("10.0.0.1", false).unwrap_err(),
            "missing port in \"10.0.0.1\""
        );
        assert_eq!(
            parse_addr_port("10.0.0.300:80", false).unwrap_err(),
            "invalid address \"10.0.0.300:80\""
        );
        assert_eq!(
            parse_addr_port("10.0.0.1:99999", false).unwrap_err(),
            "invalid port \"99999\""
        );
        assert!(parse_addr_port("[::1:80", false).is_err());
    }

    #[test]
    fn prefixes_and_masks() {
        assert_eq!(
            parse_prefix("10.0.0.1/24", false).unwrap(),
            ("10.0.0.1".parse().unwrap(), 24)
        );
        assert!(parse_prefix("10.0.0.1/33", false).is_err());
        assert_eq!(parse_prefix("10.0.0.1", true).unwrap().1, 32);
        assert!(prefix_contains(
            &"10.0.0.0".parse().unwrap(),
            24,
            &"10.0.0.100".parse().unwrap()
        ));
        assert!(!prefix_contains(
            &"10.0.0.0".parse().unwrap(),
            24,
            &"10.0.1.1".parse().unwrap()
        ));
        assert!(prefix_contains(
            &"0.0.0.0".parse().unwrap(),
            0,
            &"1.2.3.4".parse().unwrap()
        ));
        assert_eq!(parse_netmask("255.255.255.0").unwrap(), 24);
        assert_eq!(parse_netmask("255.255.255.255").unwrap(), 32);
        assert!(parse_netmask("255.0.255.0").is_err());
        assert_eq!(v4_netmask(24).to_string(), "255.255.255.0");
    }

    #[test]
    fn access_list_entries() {
        let e = |s: &str| parse_acl_entry(s).map(|(a, l)| fmt_acl_entry(&a, l));
        assert_eq!(e("10.1.0.0/16").unwrap(), "10.1.0.0/16");
        assert_eq!(e("10.1.2.3").unwrap(), "10.1.2.3");
        assert_eq!(e("10.1.2.3/32").unwrap(), "10.1.2.3");
        assert_eq!(e("2001:db8::/32").unwrap(), "2001:db8::/32");
        assert_eq!(e("[2001:db8::7]").unwrap(), "2001:db8::7");
        assert_eq!(e("0.0.0.0/0").unwrap(), "0.0.0.0/0");
        assert_eq!(
            e("10.1.2.3/16").unwrap_err(),
            "invalid prefix \"10.1.2.3/16\": host bits set (the network is 10.1.0.0/16)"
        );
        assert_eq!(
            e("10.1.0.0/33").unwrap_err(),
            "invalid prefix length /33 in \"10.1.0.0/33\" (at most /32)"
        );
        assert_eq!(e("10.1.0/16").unwrap_err(), "invalid address \"10.1.0/16\"");
    }
}
