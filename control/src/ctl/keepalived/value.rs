//! keepalived's parameter syntax (keepalived.conf(5), "PARAMETER SYNTAX";
//! lib/parser.c): a statement's values as booleans, numbers, timers, ports,
//! addresses and address ranges, each refused with the statement's line when
//! it does not fit. Shared by `map` and `check`; no keyword meanings here.

use std::net::IpAddr;

use super::parse::{Error, Loc, Stmt};
use crate::addr::{max_prefix, parse_ip};

/// Timers above a day are surely a mistake (dpvsctl's limit too).
pub(super) const MAX_SECONDS: u32 = 86400;
/// A range (a virtual_server_group, a local_address_group) expands to at
/// most this many addresses.
pub(super) const MAX_TARGETS: usize = 65536;

pub(super) fn err<T>(loc: &Loc, m: impl Into<String>) -> Result<T, Error> {
    Err(Error::at(loc, m))
}

/// One argument; `what` names the value in the error.
pub(super) fn one<'a>(s: &'a Stmt, what: &str) -> Result<&'a str, Error> {
    no_block(s)?;
    match s.args() {
        [v] => Ok(v),
        [] => err(&s.loc, format!("{} needs {what}", s.keyword())),
        _ => err(
            &s.loc,
            format!(
                "{} takes one value ({what}), not {}",
                s.keyword(),
                s.args().len()
            ),
        ),
    }
}

pub(super) fn no_args(s: &Stmt) -> Result<(), Error> {
    no_block(s)?;
    if let Some(a) = s.args().first() {
        return err(&s.loc, format!("{} takes no value, not '{a}'", s.keyword()));
    }
    Ok(())
}

pub(super) fn no_block(s: &Stmt) -> Result<(), Error> {
    if s.block.is_some() {
        return err(&s.loc, format!("{} takes no block", s.keyword()));
    }
    Ok(())
}

pub(super) fn need_block(s: &Stmt) -> Result<&[Stmt], Error> {
    s.block
        .as_deref()
        .ok_or_else(|| Error::at(&s.loc, format!("{} needs a block {{ ... }}", s.keyword())))
}

/// keepalived's booleans: no value is true; true/on/yes, false/off/no.
pub(super) fn flag(s: &Stmt) -> Result<bool, Error> {
    no_block(s)?;
    match s.args() {
        [] => Ok(true),
        [v] => match v.as_str() {
            "true" | "on" | "yes" => Ok(true),
            "false" | "off" | "no" => Ok(false),
            _ => err(
                &s.loc,
                format!(
                    "{}: '{v}' is not a boolean (yes/no, on/off, true/false)",
                    s.keyword()
                ),
            ),
        },
        _ => err(&s.loc, format!("{} takes at most one value", s.keyword())),
    }
}

pub(super) fn number(s: &Stmt, min: u32, max: u32) -> Result<u32, Error> {
    let v = one(s, "a number")?;
    match v.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => err(
            &s.loc,
            format!("{} '{v}': not a number in {min}..{max}", s.keyword()),
        ),
    }
}

/// A keepalived timer in whole seconds (keepalived takes fractions; dpvsd's
/// checks count whole seconds, so `1.5` is refused, `2.0` is 2).
pub(super) fn seconds(s: &Stmt, min: u32) -> Result<u32, Error> {
    let v = one(s, "seconds")?;
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    let n = if !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b == b'0')
    {
        int.parse::<u64>().ok()
    } else {
        None
    };
    match n {
        Some(n) if n >= u64::from(min) && n <= u64::from(MAX_SECONDS) => Ok(n as u32),
        Some(n) if n < u64::from(min) => err(
            &s.loc,
            format!("{} {v}: dpvsd needs at least {min} s", s.keyword()),
        ),
        _ => err(
            &s.loc,
            format!(
                "{} '{v}': not a whole number of seconds (at most {MAX_SECONDS})",
                s.keyword()
            ),
        ),
    }
}

pub(super) fn port(loc: &Loc, v: &str) -> Result<u16, Error> {
    v.parse::<u16>()
        .map_err(|_| Error::at(loc, format!("invalid port '{v}'")))
}

pub(super) fn ip(loc: &Loc, v: &str) -> Result<IpAddr, Error> {
    parse_ip(v).map_err(|e| Error::at(loc, e))
}

/// An address or a range: `A.B.C.D-E` (last part), `A-B` (full addresses),
/// `A/LEN` (the whole prefix), as keepalived's virtual_server_group and
/// DPVS's local_address_group read them.
pub(super) fn range(loc: &Loc, v: &str) -> Result<Vec<IpAddr>, Error> {
    let bad = || Error::at(loc, format!("invalid address or range '{v}'"));
    let (start, end) = if let Some((a, len)) = v.split_once('/') {
        let a = parse_ip(a).map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        if len == 0 || len > max_prefix(&a) {
            return Err(bad());
        }
        let host_bits = u32::from(max_prefix(&a) - len);
        let mask = (1u128 << host_bits) - 1;
        if to_u128(a) & mask != 0 {
            return err(loc, format!("'{v}': the address has host bits set"));
        }
        (a, to_u128(a) | mask)
    } else if let Some((a, b)) = v.split_once('-') {
        let a = parse_ip(a).map_err(|_| bad())?;
        let n = to_u128(a);
        let end = match (a, parse_ip(b)) {
            (IpAddr::V4(_), Ok(e @ IpAddr::V4(_))) | (IpAddr::V6(_), Ok(e @ IpAddr::V6(_))) => {
                to_u128(e)
            }
            (IpAddr::V4(_), _) => (n & !0xff) | u128::from(b.parse::<u8>().map_err(|_| bad())?),
            (IpAddr::V6(_), _) => {
                (n & !0xffff) | u128::from(u16::from_str_radix(b, 16).map_err(|_| bad())?)
            }
        };
        if end <= n {
            return err(loc, format!("'{v}': the range ends before it starts"));
        }
        (a, end)
    } else {
        let a = parse_ip(v).map_err(|_| bad())?;
        (a, to_u128(a))
    };
    let first = to_u128(start);
    if end - first >= MAX_TARGETS as u128 {
        return err(loc, format!("'{v}': more than {MAX_TARGETS} addresses"));
    }
    Ok((first..=end)
        .map(|n| from_u128(n, start.is_ipv4()))
        .collect())
}

pub(super) fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

pub(super) fn from_u128(n: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(std::net::Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(std::net::Ipv6Addr::from(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt(words: &str) -> Stmt {
        Stmt {
            loc: Loc {
                file: "k.conf".into(),
                line: 3,
            },
            words: words.split_whitespace().map(str::to_string).collect(),
            block: None,
        }
    }

    #[test]
    fn timers_are_whole_seconds() {
        assert_eq!(seconds(&stmt("delay_loop 6"), 1), Ok(6));
        assert_eq!(seconds(&stmt("delay_loop 6.000"), 1), Ok(6));
        for (v, want) in [
            (
                "1.5",
                "k.conf:3: delay_loop '1.5': not a whole number of seconds (at most 86400)",
            ),
            (
                "-1",
                "k.conf:3: delay_loop '-1': not a whole number of seconds (at most 86400)",
            ),
            (
                "86401",
                "k.conf:3: delay_loop '86401': not a whole number of seconds (at most 86400)",
            ),
            ("0", "k.conf:3: delay_loop 0: dpvsd needs at least 1 s"),
            (
                ".5",
                "k.conf:3: delay_loop '.5': not a whole number of seconds (at most 86400)",
            ),
        ] {
            let e = seconds(&stmt(&format!("delay_loop {v}")), 1).unwrap_err();
            assert_eq!(e.to_string(), want);
        }
        assert_eq!(
            seconds(&stmt("delay_loop"), 1).unwrap_err().to_string(),
            "k.conf:3: delay_loop needs seconds"
        );
    }

    #[test]
    fn booleans_as_keepalived_reads_them() {
        for (w, v) in [
            ("", true),
            (" yes", true),
            (" on", true),
            (" true", true),
            (" no", false),
            (" off", false),
            (" false", false),
        ] {
            assert_eq!(flag(&stmt(&format!("alpha{w}"))), Ok(v), "{w}");
        }
        assert!(flag(&stmt("alpha maybe")).is_err());
        assert!(flag(&stmt("alpha yes no")).is_err());
    }

    #[test]
    fn address_ranges() {
        let loc = Loc {
            file: "k".into(),
            line: 1,
        };
        let r =
            |v: &str| range(&loc, v).map(|a| a.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(r("10.0.0.1").unwrap(), ["10.0.0.1"]);
        assert_eq!(r("10.0.0.254-255").unwrap(), ["10.0.0.254", "10.0.0.255"]);
        assert_eq!(
            r("10.0.0.255-10.0.1.0").unwrap(),
            ["10.0.0.255", "10.0.1.0"]
        );
        assert_eq!(r("10.0.0.4/30").unwrap().len(), 4);
        assert_eq!(
            r("2001:db8::8-a").unwrap(),
            ["2001:db8::8", "2001:db8::9", "2001:db8::a"]
        );
        assert_eq!(r("2001:db8::/126").unwrap().len(), 4);
        for bad in [
            "10.0.0.5-3",
            "10.0.0.1/24",
            "10.0.0.0/33",
            "10.0.0.1-300",
            "10.0.0.0/8",
            "x",
            "::/0",
        ] {
            assert!(r(bad).is_err(), "{bad}");
        }
    }
}
