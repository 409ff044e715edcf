//! keepalived's checkers (TCP_CHECK, HTTP_GET, SSL_GET, UDP_CHECK,
//! MISC_CHECK) as dpvsd health checks, with keepalived 2.2's defaults and
//! inheritance (check_api.c, check_tcp.c, check_http.c, check_udp.c,
//! check_misc.c, check_data.c `validate_check_config`).
//!
//! Timing, each taken from the checker, else its real server, else its
//! virtual server: `delay_loop` (60 s) is the interval; `connect_timeout`
//! (5 s) the timeout (MISC_CHECK: `misc_timeout`, else the virtual server's
//! `delay_loop`); `delay_before_retry` (HTTP_GET and SSL_GET 3 s, others
//! 1 s).
//!
//! Retries: keepalived counts `retry` (`nb_get_retry`: the same, deprecated)
//! as *additional* attempts. In check_tcp.c's `tcp_epilog` (and likewise for
//! HTTP, UDP, MISC) a failed probe of an up server is retried after
//! `delay_before_retry` while `retry_it < retry`; the failure that finds
//! `retry_it >= retry` takes the server down. So a server goes down on the
//! (`retry` + 1)-th failure in a row: dpvsctl's `retries` (failures in a row
//! before down) is `retry + 1`. keepalived's default `retry` is 1 (MISC_CHECK
//! 0), so `retries` 2 (MISC 1). One success brings a server back (`rise` 1).
//! (keepalived starts a checker with `retry_it = retry`, so its very first
//! failure after start-up counts as the last; dpvsd always counts from 0.)

use proto::v1 as pb;

use super::map::refused;
use super::parse::{Error, Loc, Stmt};
use super::value::{err, flag, need_block, no_block, number, one, port, seconds};
use crate::health::StatusCodes;

/// keepalived's defaults.
const DEFAULT_DELAY_LOOP: u32 = 60;
const DEFAULT_CONNECT_TIMEOUT: u32 = 5;

/// Checker timing as keepalived inherits it: checker, else real server,
/// else virtual server, else the checker type's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Timing {
    pub(super) delay_loop: Option<u32>,
    pub(super) retry: Option<u32>,
    pub(super) delay_before_retry: Option<u32>,
    pub(super) connect_timeout: Option<u32>,
}

impl Timing {
    /// `self`, with what it does not set taken from `outer`.
    pub(super) fn over(self, outer: Timing) -> Timing {
        Timing {
            delay_loop: self.delay_loop.or(outer.delay_loop),
            retry: self.retry.or(outer.retry),
            delay_before_retry: self.delay_before_retry.or(outer.delay_before_retry),
            connect_timeout: self.connect_timeout.or(outer.connect_timeout),
        }
    }

    /// The timing keywords every level has; false: not one of them.
    pub(super) fn keyword(&mut self, s: &Stmt) -> Result<bool, Error> {
        match s.keyword() {
            "delay_loop" => self.delay_loop = Some(seconds(s, 1)?),
            // dpvsctl's retries (retry + 1) go up to 1000.
            "retry" => self.retry = Some(number(s, 0, 999)?),
            "delay_before_retry" => self.delay_before_retry = Some(seconds(s, 1)?),
            "connect_timeout" => self.connect_timeout = Some(seconds(s, 1)?),
            "warmup" => {
                // keepalived delays a check's first probe by a random time up
                // to its value (default delay_loop); dpvsd probes at once.
                if seconds(s, 0)? != 0 {
                    return err(
                        &s.loc,
                        "warmup is not supported: dpvsd's checks start at once (warmup 0)",
                    );
                }
            }
            "alpha" => {
                if flag(s)? {
                    return err(
                        &s.loc,
                        "alpha (real servers start down until checked) is not supported: \
                         dpvsd's real servers start up",
                    );
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    Tcp,
    /// HTTP_GET, or SSL_GET (`tls`).
    Http {
        tls: bool,
        path: String,
        status: StatusCodes,
        digest: String,
    },
    Udp {
        payload: String,
    },
    Misc {
        command: String,
        timeout: Option<u32>,
    },
}

#[derive(Debug, Clone)]
pub(super) struct Checker {
    pub(super) loc: Loc,
    pub(super) kind: Kind,
    pub(super) timing: Timing,
    pub(super) port: Option<u16>,
}

/// TCP_CHECK, HTTP_GET, SSL_GET, UDP_CHECK, MISC_CHECK blocks.
pub(super) fn checker(s: &Stmt) -> Result<Checker, Error> {
    if !s.args().is_empty() {
        return err(&s.loc, format!("{} takes a block, not values", s.keyword()));
    }
    let kind_name = s.keyword();
    // SSL_GET is HTTP_GET over TLS, with the same keywords.
    let http = matches!(kind_name, "HTTP_GET" | "SSL_GET");
    let misc = kind_name == "MISC_CHECK";
    let mut c = Checker {
        loc: s.loc.clone(),
        kind: Kind::Tcp,
        timing: Timing::default(),
        port: None,
    };
    let mut urls: Vec<&Stmt> = Vec::new();
    let mut payload = String::new();
    let mut require_reply = false;
    let mut misc_path: Option<String> = None;
    let mut misc_timeout = None;
    for k in s.block.as_deref().unwrap_or(&[]) {
        if c.timing.keyword(k)? {
            continue;
        }
        let kw = k.keyword();
        match (kind_name, kw) {
            (_, "log_all_failures") => {
                if flag(k)? {
                    return err(
                        &k.loc,
                        "log_all_failures is not supported: dpvsd logs state changes",
                    );
                }
            }
            (_, "connect_port") if !misc => c.port = Some(port(&k.loc, one(k, "a port")?)?),
            (_, "connect_ip" | "bindto" | "bind_if" | "bind_port") if !misc => {
                return err(
                    &k.loc,
                    format!(
                        "{kw} is not supported: dpvsd's checks connect from the director \
                         to the real server's address"
                    ),
                )
            }
            (_, "fwmark") if !misc => {
                return err(&k.loc, "fwmark (marking check packets) is not supported")
            }
            (_, "url") if http => urls.push(k),
            (_, "nb_get_retry") if http => c.timing.retry = Some(number(k, 0, 999)?),
            (_, "http_protocol") if http => match one(k, "1.0, 1.0C or 1.1")? {
                // dpvsd sends HTTP/1.0 with Connection: close.
                "1.0" | "1.0C" | "1.0c" => {}
                v => {
                    return err(
                        &k.loc,
                        format!(
                            "http_protocol {v} is not supported: dpvsd's check speaks HTTP/1.0"
                        ),
                    )
                }
            },
            // It only changes how several urls are retried; dpvsd checks one.
            (_, "fast_recovery") if http => {
                flag(k)?;
            }
            (_, "enable_sni") if http => {
                if flag(k)? {
                    return err(
                        &k.loc,
                        "enable_sni is not supported: dpvsd's https check connects to the \
                         real server's address and sends no server name",
                    );
                }
            }
            ("UDP_CHECK", "payload") => payload = hex_payload(k)?,
            ("UDP_CHECK", "require_reply") => {
                no_block(k)?;
                if !k.args().is_empty() {
                    return err(
                        &k.loc,
                        "require_reply with data is not supported: dpvsd's UDP check takes \
                         any answer",
                    );
                }
                require_reply = true;
            }
            ("UDP_CHECK", "min_reply_length" | "max_reply_length") => {
                return err(
                    &k.loc,
                    format!("{kw} is not supported: dpvsd's UDP check takes any answer"),
                )
            }
            ("MISC_CHECK", "misc_path") => {
                let v = one(k, "a command")?;
                if v.trim().is_empty() {
                    return err(&k.loc, "misc_path is empty");
                }
                misc_path = Some(v.to_string());
            }
            ("MISC_CHECK", "misc_timeout") => misc_timeout = Some(seconds(k, 1)?),
            ("MISC_CHECK", "misc_dynamic") => {
                return err(
                    &k.loc,
                    "misc_dynamic (weight from the exit status) is not supported",
                )
            }
            ("MISC_CHECK", "user") => {
                return err(
                    &k.loc,
                    "user is not supported: dpvsd runs MISC_CHECK commands as itself",
                )
            }
            _ => {
                if let Some(why) = refused(kw) {
                    return err(&k.loc, format!("{kw}: {why}"));
                }
                return err(&k.loc, format!("unknown keyword '{kw}' in {kind_name}"));
            }
        }
    }
    c.kind = match kind_name {
        "TCP_CHECK" => Kind::Tcp,
        "HTTP_GET" | "SSL_GET" => match urls.as_slice() {
            [] => return err(&s.loc, format!("{kind_name} needs a url {{ path ... }}")),
            [u] => url(u, kind_name == "SSL_GET")?,
            [_, second, ..] => {
                return err(
                    &second.loc,
                    "a second url: dpvsd's HTTP check gets one url per real server",
                )
            }
        },
        "UDP_CHECK" => {
            if !require_reply {
                return err(
                    &s.loc,
                    "UDP_CHECK without require_reply passes unless an ICMP error comes back; \
                     dpvsd's UDP check needs an answer: add require_reply",
                );
            }
            Kind::Udp { payload }
        }
        _ => Kind::Misc {
            command: misc_path.ok_or_else(|| Error::at(&s.loc, "MISC_CHECK needs misc_path"))?,
            timeout: misc_timeout,
        },
    };
    Ok(c)
}

/// `url { path P  status_code N [N-M ...]  digest MD5 }`.
pub(super) fn url(s: &Stmt, tls: bool) -> Result<Kind, Error> {
    if !s.args().is_empty() {
        return err(&s.loc, "url takes a block, not values");
    }
    let mut path = None;
    let mut status = Vec::new();
    let mut digest = String::new();
    for k in need_block(s)? {
        match k.keyword() {
            "path" => path = Some(one(k, "a path")?.to_string()),
            "digest" => {
                let d = one(k, "an MD5 digest in hex")?;
                if d.len() != 32 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return err(
                        &k.loc,
                        format!("digest '{d}': not an MD5 in hex (32 digits)"),
                    );
                }
                digest = d.to_ascii_lowercase();
            }
            "status_code" => {
                no_block(k)?;
                if k.args().is_empty() {
                    return err(&k.loc, "status_code needs codes (200, 200-299)");
                }
                // Each line adds its codes, as in keepalived.
                let codes = k.args().join(" ");
                let more = StatusCodes::parse(&codes)
                    .map_err(|e| Error::at(&k.loc, format!("status_code {codes}: {e}")))?;
                status.extend(more.ranges());
            }
            "virtualhost" => {
                let why = refused("virtualhost").unwrap_or_default();
                return err(&k.loc, format!("virtualhost: {why}"));
            }
            kw @ ("regex" | "regex_no_match" | "regex_options" | "regex_stack"
            | "regex_min_offset" | "regex_max_offset") => {
                return err(
                    &k.loc,
                    format!("{kw}: matching the body is not supported (digest is)"),
                )
            }
            kw => return err(&k.loc, format!("unknown keyword '{kw}' in url")),
        }
    }
    let path = path.ok_or_else(|| Error::at(&s.loc, "url needs a path"))?;
    // No status_code: keepalived's default, any 2xx.
    let status = match status.is_empty() {
        true => StatusCodes::default(),
        false => StatusCodes::from_ranges(&status).map_err(|e| Error::at(&s.loc, e))?,
    };
    Ok(Kind::Http {
        tls,
        path,
        status,
        digest,
    })
}

/// UDP_CHECK `payload HEX`: keepalived's free hex format, pairs of digits
/// within each word, a last odd digit a byte of its own (`Ab12f 3` is AB 12
/// 0F 03). dpvsd sends text, so the bytes must be UTF-8.
pub(super) fn hex_payload(s: &Stmt) -> Result<String, Error> {
    no_block(s)?;
    if s.args().is_empty() {
        return err(&s.loc, "payload needs hex digits");
    }
    let mut bytes = Vec::new();
    for w in s.args() {
        let digits: Vec<u8> = w
            .chars()
            .map(|c| c.to_digit(16).map(|d| d as u8))
            .collect::<Option<_>>()
            .ok_or_else(|| Error::at(&s.loc, format!("payload '{w}': not hex digits")))?;
        for pair in digits.chunks(2) {
            bytes.push(match pair {
                [h, l] => h << 4 | l,
                [l] => *l,
                _ => unreachable!("chunks(2)"),
            });
        }
    }
    String::from_utf8(bytes).map_err(|_| {
        Error::at(
            &s.loc,
            "payload: the bytes are not text, and dpvsd's UDP check sends text",
        )
    })
}

/// The dest's health check: the checker's settings over its real server's
/// (`rs`) over its virtual server's (`vs`), with keepalived's defaults;
/// `inhibit`: the real server's (else the virtual server's)
/// `inhibit_on_failure`; `rport`: the real server's port.
pub(super) fn health_check(
    c: &Checker,
    rs: Timing,
    vs: Timing,
    inhibit: bool,
    rport: u16,
) -> Result<pb::HealthCheck, Error> {
    let t = c.timing.over(rs).over(vs);
    let default_retry = if matches!(c.kind, Kind::Misc { .. }) {
        0
    } else {
        1
    };
    let retry = t.retry.unwrap_or(default_retry);
    let default_delay = if matches!(c.kind, Kind::Http { .. }) {
        3
    } else {
        1
    };
    let mut hc = pb::HealthCheck {
        r#type: String::new(),
        port: c.port.filter(|p| *p != rport).map_or(0, u32::from),
        interval_s: t.delay_loop.unwrap_or(DEFAULT_DELAY_LOOP),
        timeout_s: t.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        retries: retry + 1,
        rise: 1,
        delay_before_retry_s: t.delay_before_retry.unwrap_or(default_delay),
        on_failure: if inhibit { "inhibit" } else { "remove" }.into(),
        ..Default::default()
    };
    match &c.kind {
        Kind::Tcp => hc.r#type = "tcp".into(),
        Kind::Http {
            tls,
            path,
            status,
            digest,
        } => {
            hc.r#type = if *tls { "https" } else { "http" }.into();
            hc.path = path.clone();
            hc.status_codes = status.to_string();
            hc.digest = digest.clone();
        }
        Kind::Udp { payload } => {
            hc.r#type = "udp".into();
            hc.payload = payload.clone();
        }
        Kind::Misc { command, timeout } => {
            hc.r#type = "misc".into();
            hc.command = command.clone();
            // keepalived: misc_timeout, else the virtual server's delay_loop.
            hc.timeout_s = timeout.unwrap_or(vs.delay_loop.unwrap_or(DEFAULT_DELAY_LOOP));
        }
    }
    crate::convert::check_from_pb(&hc).map_err(|e| Error::at(&c.loc, e))?;
    Ok(hc)
}

#[cfg(test)]
mod tests {
    use crate::ctl::keepalived::parse::{Error, MemFiles};
    use crate::ctl::keepalived::{load_from, Plan};
    use pb::op::Op;
    use proto::v1 as pb;
    use std::path::{Path, PathBuf};

    fn plan_of(text: &str) -> Result<Plan, Error> {
        let files = MemFiles([(PathBuf::from("k.conf"), text.to_string())].into());
        load_from(Path::new("k.conf"), &files)
    }

    fn dests(p: &Plan) -> Vec<pb::Dest> {
        p.ops
            .iter()
            .filter_map(|(_, op)| match op {
                Op::AddDest(r) => r.dest.clone(),
                _ => None,
            })
            .collect()
    }

    fn checks(text: &str) -> Vec<pb::HealthCheck> {
        dests(&plan_of(text).unwrap())
            .into_iter()
            .map(|d| d.check.expect("a check"))
            .collect()
    }

    #[test]
    fn retry_counts_become_failures_in_a_row_and_timing_is_inherited() {
        let text = "\
virtual_server 10.0.0.1 80 {
    protocol TCP
    delay_loop 10
    retry 4
    connect_timeout 7
    inhibit_on_failure
    real_server 10.1.0.1 80 {
        TCP_CHECK {
        }
    }
    real_server 10.1.0.2 80 {
        retry 0
        delay_before_retry 2
        inhibit_on_failure no
        TCP_CHECK {
            connect_port 81
            connect_timeout 3
        }
    }
    real_server 10.1.0.3 80 {
        HTTP_GET {
            url {
                path /health
                status_code 204
                digest 9B3A0C85A887A256D6939DA88AABD8CD
            }
            nb_get_retry 2
        }
    }
    real_server 10.1.0.4 80 {
        MISC_CHECK {
            misc_path \"/usr/local/bin/check 10.1.0.4\"
        }
    }
    real_server 10.1.0.5 80 {
        MISC_CHECK {
            misc_path /bin/true
            misc_timeout 2
            retry 1
        }
    }
}
";
        let c = checks(text);
        // retry R: down on the R+1-th failure in a row.
        let r: Vec<u32> = c.iter().map(|c| c.retries).collect();
        assert_eq!(r, [5, 1, 3, 5, 2]);
        let t: Vec<(u32, u32, u32)> = c
            .iter()
            .map(|c| (c.interval_s, c.timeout_s, c.delay_before_retry_s))
            .collect();
        // MISC: misc_timeout, else the virtual server's delay_loop; HTTP's
        // delay_before_retry defaults to 3, the others' to 1.
        assert_eq!(
            t,
            [(10, 7, 1), (10, 3, 2), (10, 7, 3), (10, 10, 1), (10, 2, 1)]
        );
        let f: Vec<&str> = c.iter().map(|c| c.on_failure.as_str()).collect();
        assert_eq!(f, ["inhibit", "remove", "inhibit", "inhibit", "inhibit"]);
        assert_eq!((c[1].r#type.as_str(), c[1].port), ("tcp", 81));
        assert_eq!(
            (
                c[2].r#type.as_str(),
                c[2].path.as_str(),
                c[2].status_codes.as_str(),
                c[2].digest.as_str()
            ),
            ("http", "/health", "204", "9b3a0c85a887a256d6939da88aabd8cd")
        );
        assert_eq!(c[3].command, "/usr/local/bin/check 10.1.0.4");
        assert!(c.iter().all(|c| c.rise == 1));
    }

    #[test]
    fn http_status_codes_and_udp_payloads() {
        let text = "\
virtual_server 10.0.0.1 53 {
    protocol UDP
    real_server 10.1.0.1 53 {
        UDP_CHECK {
            payload 68 656c6c 6f
            require_reply
        }
    }
    real_server 10.1.0.2 53 {
        HTTP_GET {
            url {
                path /
            }
        }
    }
    real_server 10.1.0.3 53 {
        SSL_GET {
            url {
                path /
                status_code 301 200-299
                status_code 404
            }
        }
    }
}
";
        let p = plan_of(text).unwrap();
        let c: Vec<pb::HealthCheck> = dests(&p).into_iter().filter_map(|d| d.check).collect();
        assert_eq!(
            (c[0].r#type.as_str(), c[0].payload.as_str()),
            ("udp", "hello")
        );
        // Without status_code: keepalived's any 2xx.
        assert_eq!(c[1].status_codes, "200-299");
        // Codes and ranges, over several lines as keepalived adds them up.
        assert_eq!(c[2].status_codes, "200-299,301,404");
        assert!(
            p.notes.iter().all(|n| !n.contains("status")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn checker_contents_that_are_refused() {
        let rs = |s: &str| {
            format!("virtual_server 10.0.0.1 80 {{\n protocol TCP\n real_server 10.1.0.1 80 {{\n{s}\n }}\n}}\n")
        };
        let cases: &[(&str, usize, &str)] = &[
            (
                "TCP_CHECK {\n}\nHTTP_GET {\n url {\n path /\n }\n}",
                6,
                "a second checker on real_server 10.1.0.1",
            ),
            ("HTTP_GET {\n}", 4, "HTTP_GET needs a url"),
            (
                "HTTP_GET {\n url {\n path /a\n }\n url {\n path /b\n }\n}",
                8,
                "a second url",
            ),
            (
                "HTTP_GET {\n url {\n path /\n status_code 299-200\n }\n}",
                7,
                "status_code 299-200: check status 299-200: the range is backwards",
            ),
            (
                "HTTP_GET {\n url {\n path /\n status_code 200 2xx\n }\n}",
                7,
                "status_code 200 2xx: check status \"2xx\": not a status code or range",
            ),
            (
                "HTTP_GET {\n url {\n path /\n status_code\n }\n}",
                7,
                "status_code needs codes",
            ),
            (
                "HTTP_GET {\n url {\n path /\n regex ok\n }\n}",
                7,
                "regex: matching the body is not supported",
            ),
            (
                "HTTP_GET {\n url {\n digest 00\n }\n}",
                6,
                "digest '00': not an MD5",
            ),
            (
                "HTTP_GET {\n url {\n status_code 200\n }\n}",
                5,
                "url needs a path",
            ),
            (
                "HTTP_GET {\n http_protocol 1.1\n url {\n path /\n }\n}",
                5,
                "http_protocol 1.1 is not supported",
            ),
            (
                "HTTP_GET {\n url {\n path relative\n }\n}",
                4,
                "check path \"relative\": must start with /",
            ),
            ("UDP_CHECK {\n}", 4, "UDP_CHECK without require_reply"),
            (
                "UDP_CHECK {\n require_reply 0a\n}",
                5,
                "require_reply with data is not supported",
            ),
            (
                "UDP_CHECK {\n require_reply\n payload ff fe\n}",
                6,
                "payload: the bytes are not text",
            ),
            (
                "UDP_CHECK {\n require_reply\n payload zz\n}",
                6,
                "payload 'zz': not hex digits",
            ),
            ("MISC_CHECK {\n}", 4, "MISC_CHECK needs misc_path"),
            (
                "MISC_CHECK {\n misc_path /bin/x\n misc_dynamic\n}",
                6,
                "misc_dynamic",
            ),
            (
                "MISC_CHECK {\n misc_path /bin/x\n user nobody\n}",
                6,
                "user is not supported",
            ),
            (
                "MISC_CHECK {\n misc_path /bin/x\n connect_port 80\n}",
                6,
                "unknown keyword 'connect_port' in MISC_CHECK",
            ),
        ];
        for (snippet, line, want) in cases {
            let e = plan_of(&rs(snippet)).unwrap_err();
            assert_eq!(e.loc.as_ref().map(|l| l.line), Some(*line), "{want}: {e}");
            assert!(e.message.contains(want), "want {want:?} in {e}");
        }
    }
}
