//! ipvsadm's rule format: `-S` writes the table as command lines, `-R` reads
//! them back.
//!
//! The lines are ipvsadm 1.31's (`ipvsadm -S -n`), in its order:
//!
//! ```text
//! -A -t 10.0.0.1:80 -s wlc -p 300 -M 255.255.255.0 -b sh-fallback,sh-port
//! -a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1
//! -a -t 10.0.0.1:80 -r 10.1.0.2:80 -i -w 1 --tun-type ipip
//! ```
//!
//! plus what the director has beyond kernel IPVS, as DPVS's ipvsadm spells it:
//! `-b` on a real server (FULLNAT), `--conn-timeout` and `--proxy-protocol` on a
//! service, `-x`/`-y` thresholds when set, one `-P -t VIP:PORT -z LIP -F
//! PORT` line per FULLNAT local address after the service's real servers, then
//! one `-U -t VIP:PORT -k ADDR|CIDR` line per blacklist entry and one `-O ...
//! -2 ...` per whitelist entry (DPVS's ipvsadm saves neither; these are its
//! add commands). `-R` takes any configuration command line dpvsctl takes
//! (`-A -E -D -C -a -e -d --set -P -Q -U -V -O -Y`, and `addr`/`route`
//! changes); blank lines and `#` comments are skipped.

use std::fmt::Write;

use proto::v1 as pb;

use super::args;
use super::order::ipvsadm_order;
use super::output::addr_port;
use crate::addr::v4_netmask;

/// A restore input error, naming the line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Reads restore input: each configuration line as the change it makes, with
/// its line number. Nothing is sent when any line is wrong.
pub fn parse(text: &str) -> Result<Vec<(usize, pb::op::Op)>, LineError> {
    let mut ops = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let fail = |message: String| LineError { line, message };
        let words = split_words(raw).map_err(fail)?;
        if words.is_empty() || words[0].starts_with('#') {
            continue;
        }
        let inv = args::parse(&words).map_err(|e| fail(e.0))?;
        if inv.server.is_some() {
            return Err(fail("--server cannot be given in restore input".into()));
        }
        let op = super::command_op(&inv.command).ok_or_else(|| {
            fail(format!(
                "'{}' does not change the configuration and cannot be restored",
                words.join(" ")
            ))
        })?;
        ops.push((line, op));
    }
    Ok(ops)
}

/// A line's words: split at blanks, except inside double quotes (`\"` and
/// `\\` escape within them). ipvsadm's lines have no quotes; dpvsctl's own
/// may, for a health check's command.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err("unterminated quote".into()),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => cur.push('\n'),
                            Some('r') => cur.push('\r'),
                            Some('t') => cur.push('\t'),
                            Some(e) => cur.push(e),
                            None => return Err("unterminated quote".into()),
                        },
                        Some(x) => cur.push(x),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// `s` as one word of a line [`split_words`] reads back.
fn quoted(s: &str) -> String {
    if !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\')
    {
        return s.to_string();
    }
    // A line holds one command: line breaks (and tabs) go as escapes (a
    // UDP check payload with a newline: found by the keepalived fuzz target).
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn proto_flag(p: i32) -> &'static str {
    match pb::Protocol::try_from(p) {
        Ok(pb::Protocol::Udp) => "-u",
        _ => "-t",
    }
}

/// ipvsadm's `fwd_switch`, with DPVS's `-b` for FULLNAT.
fn fwd_switch(m: i32) -> &'static str {
    match pb::ForwardMode::try_from(m) {
        Ok(pb::ForwardMode::Nat) => "-m",
        Ok(pb::ForwardMode::Fullnat) => "-b",
        Ok(pb::ForwardMode::Tun) => "-i",
        _ => "-g",
    }
}

/// A health check as `-a` options (dpvsctl's, not ipvsadm's): the type and
/// what differs from the defaults.
fn check_flags(c: &pb::HealthCheck) -> String {
    let mut out = format!(" --check {}", c.r#type);
    let mut num = |flag: &str, v: u32, default: u32| {
        if v != 0 && v != default {
            let _ = write!(out, " --{flag} {v}");
        }
    };
    num("check-port", c.port, 0);
    num("check-interval", c.interval_s, 5);
    num("check-timeout", c.timeout_s, 3);
    num("check-retries", c.retries, 3);
    num("check-rise", c.rise, 1);
    num("check-delay", c.delay_before_retry_s, 1);
    for (flag, v, default) in [
        ("check-path", &c.path, "/"),
        ("check-status", &c.status_codes, "200-299"),
        ("check-digest", &c.digest, ""),
        ("on-failure", &c.on_failure, "inhibit"),
        ("check-payload", &c.payload, ""),
        ("check-command", &c.command, ""),
    ] {
        if !v.is_empty() && v != default {
            text_opt(&mut out, flag, v);
        }
    }
    out
}

/// ` --FLAG VALUE` for free text: quoted when it has blanks or quotes, and
/// one `--FLAG=VALUE` word when it starts with `-`, so that no reader takes
/// the value for an option (dpvsctl's own `--tls-key` anywhere on a line, for
/// one: found by the keepalived fuzz target with a MISC_CHECK command
/// `--tls-key`).
fn text_opt(out: &mut String, flag: &str, v: &str) {
    if v.starts_with('-') {
        let _ = write!(out, " {}", quoted(&format!("--{flag}={v}")));
    } else {
        let _ = write!(out, " --{flag} {}", quoted(v));
    }
}

/// `-S -n`: the services (ipvsadm's order) with their real servers and local
/// addresses, as command lines that `-R` (ours, or ipvsadm's for the kernel
/// part) applies as they are.
pub fn save(resp: &pb::ListServicesResponse, laddrs: &[pb::LocalAddr]) -> String {
    let mut services = resp.services.clone();
    ipvsadm_order(&mut services);
    let mut out = String::new();
    for st in &services {
        let Some(svc) = &st.service else { continue };
        let key = svc.key.clone().unwrap_or_default();
        let v6 = key.vip.contains(':');
        let name = format!(
            "{} {}",
            proto_flag(key.protocol),
            addr_port(&key.vip, key.vport)
        );
        let _ = write!(out, "-A {name} -s {}", svc.scheduler);
        if let Some(p) = &svc.persistence {
            let _ = write!(out, " -p {}", p.timeout_s);
            let full = if v6 { 128 } else { 32 };
            let len = p.netmask_len.unwrap_or(full);
            if len != full {
                if v6 {
                    let _ = write!(out, " -M {len}");
                } else {
                    let _ = write!(out, " -M {}", v4_netmask(u8::try_from(len).unwrap_or(0)));
                }
            }
        }
        if svc.ops {
            out.push_str(" -o");
        }
        // dpvsd keeps them in ipvsadm's spelling and order.
        if !svc.sched_flags.is_empty() {
            let _ = write!(out, " -b {}", svc.sched_flags.join(","));
        }
        if let Some(t) = svc.conn_timeout_s {
            let _ = write!(out, " --conn-timeout {t}");
        }
        match pb::ProxyProtocol::try_from(svc.proxy_protocol) {
            Ok(pb::ProxyProtocol::V1) => out.push_str(" --proxy-protocol v1"),
            Ok(pb::ProxyProtocol::V2) => out.push_str(" --proxy-protocol v2"),
            _ => {}
        }
        if !svc.sorry_server.is_empty() {
            let _ = write!(out, " --sorry-server {}", svc.sorry_server);
        }
        if svc.passive_check {
            out.push_str(" --passive-check");
        }
        if svc.synproxy == Some(true) {
            out.push_str(" -j enable");
        }
        if let Some(n) = svc.conn_limit.filter(|&n| n > 0) {
            let _ = write!(out, " --conn-limit {n}");
        }
        if svc.quorum > 1 {
            let _ = write!(out, " --quorum {}", svc.quorum);
        }
        if svc.hysteresis > 0 {
            let _ = write!(out, " --hysteresis {}", svc.hysteresis);
        }
        for (flag, c) in [
            ("quorum-up", &svc.quorum_up),
            ("quorum-down", &svc.quorum_down),
        ] {
            if !c.is_empty() {
                text_opt(&mut out, flag, c);
            }
        }
        out.push('\n');
        for ds in &st.dests {
            let Some(d) = &ds.dest else { continue };
            if d.sorry {
                // In the table while in use; configured on the -A line.
                continue;
            }
            let _ = write!(
                out,
                "-a {name} -r {} {} -w {}",
                addr_port(&d.addr, d.port),
                fwd_switch(d.mode),
                d.weight
            );
            if d.mode == pb::ForwardMode::Tun as i32 {
                out.push_str(" --tun-type ipip");
            }
            if d.u_threshold != 0 {
                let _ = write!(out, " -x {}", d.u_threshold);
            }
            if d.l_threshold != 0 {
                let _ = write!(out, " -y {}", d.l_threshold);
            }
            if let Some(c) = &d.check {
                out.push_str(&check_flags(c));
            }
            out.push('\n');
        }
        for l in laddrs.iter().filter(|l| l.service.as_ref() == Some(&key)) {
            let _ = writeln!(out, "-P {name} -z {} -F {}", l.addr, l.port);
        }
        for e in &svc.blacklist {
            let _ = writeln!(out, "-U {name} -k {e}");
        }
        for e in &svc.whitelist {
            let _ = writeln!(out, "-O {name} -2 {e}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names_lines_and_skips_comments() {
        let ops = parse("# saved\n\n-A -t 10.0.0.1:80 -s rr\n  -a -t 10.0.0.1:80 -r 10.1.0.1 -m\n")
            .unwrap();
        assert_eq!(ops.iter().map(|o| o.0).collect::<Vec<_>>(), [3, 4]);
        assert!(matches!(ops[0].1, pb::op::Op::AddService(_)));
        assert!(matches!(ops[1].1, pb::op::Op::AddDest(_)));
    }

    #[test]
    fn words_split_at_blanks_except_in_quotes() {
        let w = split_words(r#"-a -t x --check-command "test -e /tmp/a\"b" -m"#).unwrap();
        assert_eq!(
            w,
            [
                "-a",
                "-t",
                "x",
                "--check-command",
                "test -e /tmp/a\"b",
                "-m"
            ]
        );
        assert_eq!(split_words("  a   b ").unwrap(), ["a", "b"]);
        assert_eq!(split_words(r#"a "" b"#).unwrap(), ["a", "", "b"]);
        assert!(split_words(r#"a "b"#).is_err());
        for s in [
            "plain",
            "two words",
            r#"q"uote"#,
            r"back\slash",
            "",
            "line\nbreak",
        ] {
            assert_eq!(split_words(&quoted(s)).unwrap(), [s]);
        }
    }

    #[test]
    fn check_text_that_looks_like_an_option_or_has_blanks_reads_back() {
        let hc = pb::HealthCheck {
            r#type: "misc".into(),
            command: "--tls-key".into(),
            path: "/a b".into(),
            payload: "-x \"y\"\nz\r\t".into(),
            ..Default::default()
        };
        let line = format!("-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m{}", check_flags(&hc));
        let ops = parse(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let pb::op::Op::AddDest(r) = &ops[0].1 else {
            panic!("{line}: not -a")
        };
        let c = r
            .dest
            .as_ref()
            .and_then(|d| d.check.as_ref())
            .expect("a check");
        assert_eq!(
            (c.command.as_str(), c.path.as_str(), c.payload.as_str()),
            ("--tls-key", "/a b", "-x \"y\"\nz\r\t")
        );
    }

    #[test]
    fn parse_refuses_what_is_not_a_change() {
        let e = parse("-A -t 10.0.0.1:80\n-Ln\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("-Ln"), "{e}");
        let e = parse("-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.1.0.300\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("line 2: "), "{e}");
        let e = parse("-a -t 10.0.0.1:80 -r 10.1.0.3 -i --tun-type gue\n").unwrap_err();
        assert!(e.message.contains("gue"), "{e}");
    }
}
