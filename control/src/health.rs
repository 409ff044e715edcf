//! Health checks of real servers (keepalived's checkers, inside dpvsd).
//!
//! Each real server with a check has a task that probes it from the
//! director's kernel (so through the port's kernel interface, docs/kni.md):
//! a TCP connect, an HTTP GET (status, optional MD5 digest of the body), a UDP
//! request that must be answered, or an external command (exit status 0 = up).
//! `retries` failures in a row take it down, `rise` successes in a row bring
//! it back; a failed probe is retried after `delay_before_retry`, otherwise
//! probes are `interval` apart. A change of state is a verdict on a channel;
//! the server applies it to the configuration (the dest is inhibited: weight
//! 0 for the schedulers, existing connections continue) and logs it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use dataplane::ServiceKey;

/// What a check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// TCP_CHECK: the connection is accepted.
    Tcp,
    /// HTTP_GET (SSL_GET with `tls`): `GET path` answers a status in
    /// `status`, and the body's MD5 is `digest` (hex) when one is given. Over
    /// TLS the server's certificate is not verified (as keepalived's SSL_GET
    /// without a CA).
    Http {
        path: String,
        status: StatusCodes,
        digest: Option<String>,
        tls: bool,
    },
    /// UDP_CHECK: `payload` sent, any answer within the timeout.
    Udp { payload: String },
    /// MISC_CHECK: `sh -c command` exits 0 within the timeout.
    Misc { command: String },
}

/// The HTTP status codes a check accepts, as keepalived's `status_code`:
/// codes and ranges, `200`, `200-299`, `200-299,301`. The default is
/// keepalived's: any 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCodes(Vec<(u16, u16)>);

impl Default for StatusCodes {
    fn default() -> Self {
        StatusCodes(vec![(200, 299)])
    }
}

impl StatusCodes {
    /// Exactly `code`.
    pub fn one(code: u16) -> StatusCodes {
        StatusCodes(vec![(code, code)])
    }

    /// From ranges (each `(first, last)`, 100-599, first <= last), sorted and
    /// merged so that equal sets have one spelling.
    pub fn from_ranges(ranges: &[(u16, u16)]) -> Result<StatusCodes, String> {
        let mut v = Vec::with_capacity(ranges.len());
        for &(a, b) in ranges {
            for c in [a, b] {
                if !(100..=599).contains(&c) {
                    return Err(format!("check status {c}: not an HTTP status (100-599)"));
                }
            }
            if a > b {
                return Err(format!("check status {a}-{b}: the range is backwards"));
            }
            v.push((a, b));
        }
        if v.is_empty() {
            return Err("check status: empty".into());
        }
        v.sort_unstable();
        let mut out: Vec<(u16, u16)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        Ok(StatusCodes(out))
    }

    /// `200`, `200-299`, `200-299,301` (commas or blanks between items).
    pub fn parse(s: &str) -> Result<StatusCodes, String> {
        let mut ranges = Vec::new();
        for item in s.split([',', ' ', '\t']).filter(|w| !w.is_empty()) {
            let num = |w: &str| {
                w.parse::<u16>()
                    .map_err(|_| format!("check status \"{item}\": not a status code or range"))
            };
            ranges.push(match item.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => (num(item)?, num(item)?),
            });
        }
        StatusCodes::from_ranges(&ranges)
    }

    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|&(a, b)| (a..=b).contains(&code))
    }

    /// The code when the set is one code.
    pub fn single(&self) -> Option<u16> {
        match self.0[..] {
            [(a, b)] if a == b => Some(a),
            _ => None,
        }
    }

    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.0
    }
}

impl std::fmt::Display for StatusCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, &(a, b)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        Ok(())
    }
}

/// What the failing dest becomes (keepalived's `inhibit_on_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Weight 0: listed, no new connections (keepalived `inhibit_on_failure`).
    #[default]
    Inhibit,
    /// Taken out of the listing as well (keepalived's default); scheduling is
    /// the same, and existing connections continue either way.
    Remove,
}

/// A real server's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    pub kind: CheckKind,
    /// Port probed; `None`: the real server's port.
    pub port: Option<u16>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Failures in a row before the dest goes down.
    pub retries: u32,
    /// Successes in a row before a down dest comes back.
    pub rise: u32,
    pub delay_before_retry: Duration,
    pub on_failure: OnFailure,
}

impl CheckSpec {
    /// A check of `kind` with the defaults: every 5 s, 3 s timeout, down after
    /// 3 failures, up after 1 success, retried after 1 s, inhibit.
    pub fn new(kind: CheckKind) -> CheckSpec {
        CheckSpec {
            kind,
            port: None,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(3),
            retries: 3,
            rise: 1,
            delay_before_retry: Duration::from_secs(1),
            on_failure: OnFailure::Inhibit,
        }
    }

    /// The check type's name as dpvsctl and dpvs.toml spell it.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            CheckKind::Tcp => "tcp",
            CheckKind::Http { tls: false, .. } => "http",
            CheckKind::Http { tls: true, .. } => "https",
            CheckKind::Udp { .. } => "udp",
            CheckKind::Misc { .. } => "misc",
        }
    }

    /// Checks the numbers; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval.is_zero() {
            return Err("check interval: must be at least 1 second".into());
        }
        if self.timeout.is_zero() {
            return Err("check timeout: must be at least 1 second".into());
        }
        if self.retries == 0 {
            return Err("check retries: must be at least 1".into());
        }
        if self.rise == 0 {
            return Err("check rise: must be at least 1".into());
        }
        match &self.kind {
            CheckKind::Http { path, .. } if !path.starts_with('/') => {
                return Err(format!("check path \"{path}\": must start with /"));
            }
            CheckKind::Misc { command } if command.trim().is_empty() => {
                return Err("check command: empty".into());
            }
            _ => {}
        }
        if let CheckKind::Http {
            digest: Some(d), ..
        } = &self.kind
        {
            if d.len() != 32 || !d.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("check digest \"{d}\": not an MD5 in hex"));
            }
        }
        Ok(())
    }
}

/// A real server of a service.
pub type DestId = (ServiceKey, IpAddr, u16);

/// A check's change of mind about a dest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub dest: DestId,
    pub up: bool,
    /// Why (the last probe's result).
    pub why: String,
}

/// Up/down with the counts that move it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthState {
    pub up: bool,
    fails: u32,
    oks: u32,
}

impl Default for HealthState {
    /// Real servers start up (as keepalived's, without `alpha`).
    fn default() -> Self {
        HealthState {
            up: true,
            fails: 0,
            oks: 0,
        }
    }
}

impl HealthState {
    /// One probe's result; `Some(new state)` when it changes.
    pub fn observe(&mut self, ok: bool, spec: &CheckSpec) -> Option<bool> {
        if ok {
            self.fails = 0;
            self.oks = self.oks.saturating_add(1);
            if !self.up && self.oks >= spec.rise {
                self.up = true;
                return Some(true);
            }
        } else {
            self.oks = 0;
            self.fails = self.fails.saturating_add(1);
            if self.up && self.fails >= spec.retries {
                self.up = false;
                return Some(false);
            }
        }
        None
    }

    /// How long until the next probe.
    pub fn next_in(&self, spec: &CheckSpec) -> Duration {
        if self.fails > 0 && self.up {
            spec.delay_before_retry
        } else {
            spec.interval
        }
    }
}

/// One probe of `addr:port`; `Err` says what failed.
pub async fn probe(spec: &CheckSpec, addr: IpAddr, port: u16) -> Result<(), String> {
    let to = SocketAddr::new(addr, spec.port.unwrap_or(port));
    let run = async {
        match &spec.kind {
            CheckKind::Tcp => tokio::net::TcpStream::connect(to)
                .await
                .map(drop)
                .map_err(|e| format!("connect {to}: {e}")),
            CheckKind::Http {
                path,
                status,
                digest,
                tls,
            } => {
                let tcp = tokio::net::TcpStream::connect(to)
                    .await
                    .map_err(|e| format!("connect {to}: {e}"))?;
                if *tls {
                    let s = tls_connect(to, tcp).await?;
                    http_get(s, to, path, status, digest.as_deref()).await
                } else {
                    http_get(tcp, to, path, status, digest.as_deref()).await
                }
            }
            CheckKind::Udp { payload } => udp(to, payload).await,
            CheckKind::Misc { command } => misc(command, addr, to.port()).await,
        }
    };
    match tokio::time::timeout(spec.timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", spec.timeout)),
    }
}

/// SSL_GET's TLS: any certificate is accepted (its signatures are still
/// checked), since real servers' certificates name the service, not the RIP.
async fn tls_connect(
    to: SocketAddr,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::IpAddress(to.ip().into());
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls handshake with {to}: {e}"))
}

#[derive(Debug)]
struct AnyCertificate(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn http_get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    to: SocketAddr,
    path: &str,
    want: &StatusCodes,
    digest: Option<&str>,
) -> Result<(), String> {
    let host = match to.ip() {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: dpvsd-healthcheck\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("send to {to}: {e}"))?;
    let mut resp = Vec::new();
    // A health page is small; a megabyte is plenty and bounds a hostile one.
    s.take(1 << 20)
        .read_to_end(&mut resp)
        .await
        .map_err(|e| format!("read from {to}: {e}"))?;
    let (status, body) = parse_http(&resp).ok_or_else(|| format!("{to}: not an HTTP answer"))?;
    if !want.contains(status) {
        return Err(format!("GET {path}: status {status}, want {want}"));
    }
    if let Some(d) = digest {
        use md5::Digest;
        let got = hex(&md5::Md5::digest(body));
        if !got.eq_ignore_ascii_case(d) {
            return Err(format!("GET {path}: body digest {got}, want {d}"));
        }
    }
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The status code and body of an HTTP/1.x answer.
pub fn parse_http(resp: &[u8]) -> Option<(u16, &[u8])> {
    let end = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&resp[..end]).ok()?;
    let mut status = head.lines().next()?.split_whitespace();
    if !status.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = status.next()?.parse().ok()?;
    Some((code, &resp[end + 4..]))
}

async fn udp(to: SocketAddr, payload: &str) -> Result<(), String> {
    let bind: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let s = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("udp socket: {e}"))?;
    s.connect(to).await.map_err(|e| format!("udp {to}: {e}"))?;
    s.send(payload.as_bytes())
        .await
        .map_err(|e| format!("send to {to}: {e}"))?;
    let mut buf = [0u8; 2048];
    s.recv(&mut buf)
        .await
        .map(drop)
        .map_err(|e| format!("udp {to}: {e}"))
}

/// MISC_CHECK: `sh -c command`, with the dest in `$DPVS_RS_ADDR` /
/// `$DPVS_RS_PORT`; killed when the timeout fires.
async fn misc(command: &str, addr: IpAddr, port: u16) -> Result<(), String> {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("DPVS_RS_ADDR", addr.to_string())
        .env("DPVS_RS_PORT", port.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?}: {status}"))
    }
}

/// keepalived's `quorum_up` / `quorum_down`: `sh -c command` with the
/// service in `$DPVS_SERVICE` ("TCP 10.0.0.100:80"), `$DPVS_QUORUM` ("up"
/// or "down") and `$DPVS_ALIVE_WEIGHT`; not waited for (a thread reaps it).
pub fn run_quorum_script(
    command: &str,
    service: &str,
    up: bool,
    alive: u64,
) -> std::io::Result<()> {
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("DPVS_SERVICE", service)
        .env("DPVS_QUORUM", if up { "up" } else { "down" })
        .env("DPVS_ALIVE_WEIGHT", alive.to_string())
        .stdin(std::process::Stdio::null())
        .spawn()?;
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(())
}

/// The running checks, one task per checked dest.
pub struct Checkers {
    verdicts: mpsc::UnboundedSender<Verdict>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Verdict>>>,
    running: Mutex<HashMap<DestId, (CheckSpec, tokio::task::AbortHandle)>>,
}

impl Default for Checkers {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Checkers {
            verdicts: tx,
            receiver: Mutex::new(Some(rx)),
            running: Mutex::new(HashMap::new()),
        }
    }
}

impl Checkers {
    /// The verdicts, for the one task that applies them (taken once).
    pub fn take_verdicts(&self) -> Option<mpsc::UnboundedReceiver<Verdict>> {
        self.receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Runs exactly the checks in `wanted` (with `down`: the dests that are
    /// down now, so a restarted check starts from their state): new ones
    /// start, changed ones restart, gone ones stop. Outside a tokio runtime
    /// nothing runs.
    pub fn reconcile(&self, wanted: &[(DestId, CheckSpec, bool)]) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|id, (spec, h)| {
            let keep = wanted.iter().any(|(w, s, _)| w == id && s == spec);
            if !keep {
                h.abort();
            }
            keep
        });
        for (id, spec, down) in wanted {
            if running.contains_key(id) {
                continue;
            }
            let task = rt.spawn(check_loop(*id, spec.clone(), !down, self.verdicts.clone()));
            running.insert(*id, (spec.clone(), task.abort_handle()));
        }
    }

    /// How many checks run (tests, logs).
    pub fn len(&self) -> usize {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Checkers {
    fn drop(&mut self) {
        for (_, h) in self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            h.abort();
        }
    }
}

async fn check_loop(id: DestId, spec: CheckSpec, up: bool, out: mpsc::UnboundedSender<Verdict>) {
    let mut state = HealthState {
        up,
        ..HealthState::default()
    };
    loop {
        let r = probe(&spec, id.1, id.2).await;
        let why = match &r {
            Ok(()) => "check passed".to_string(),
            Err(e) => e.clone(),
        };
        if let Some(up) = state.observe(r.is_ok(), &spec) {
            if out.send(Verdict { dest: id, up, why }).is_err() {
                return;
            }
        }
        tokio::time::sleep(state.next_in(&spec)).await;
    }
}

/// How the passive check judges (DPVS's `dest-check internal` defaults):
/// this many unanswered SYNs with no SYN-ACK in between take a real server
/// down, first for `PASSIVE_INHIBIT_MIN`, doubling each time it is found dead
/// again, up to `PASSIVE_INHIBIT_MAX`.
pub const PASSIVE_FAILURES: u64 = 3;
pub const PASSIVE_INHIBIT_MIN: Duration = Duration::from_secs(5);
pub const PASSIVE_INHIBIT_MAX: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy)]
struct PassiveDest {
    last: (u64, u64),
    fails: u64,
    until: Option<std::time::Instant>,
    backoff: Duration,
}

/// The passive check's memory between samples of the dataplane's counters.
#[derive(Debug, Default)]
pub struct Passive {
    dests: HashMap<DestId, PassiveDest>,
}

/// A passive verdict: (dest, down, why).
pub type PassiveChange = (DestId, bool, String);

impl Passive {
    /// One sample: `seen` lists each watched real server with its counters
    /// (unanswered SYNs, SYN-ACKs) and whether the passive check has it down
    /// now. Returns the changes to make.
    pub fn sample(
        &mut self,
        seen: &[(DestId, (u64, u64), bool)],
        now: std::time::Instant,
    ) -> Vec<PassiveChange> {
        let mut out = Vec::new();
        let mut next = HashMap::with_capacity(seen.len());
        for &(id, counts, down) in seen {
            let mut p = self.dests.remove(&id).unwrap_or(PassiveDest {
                last: counts,
                fails: 0,
                until: None,
                backoff: PASSIVE_INHIBIT_MIN,
            });
            let unanswered = counts.0.saturating_sub(p.last.0);
            let answered = counts.1.saturating_sub(p.last.1);
            p.last = counts;
            if down {
                if p.until.is_none_or(|u| now >= u) {
                    p.until = None;
                    p.fails = 0;
                    out.push((id, false, "inhibit period over: trying it again".into()));
                }
            } else if answered > 0 {
                p.fails = 0;
                p.backoff = PASSIVE_INHIBIT_MIN;
            } else if unanswered > 0 {
                p.fails += unanswered;
                if p.fails >= PASSIVE_FAILURES {
                    out.push((
                        id,
                        true,
                        format!(
                            "{} new connections without a SYN-ACK; inhibited for {:?}",
                            p.fails, p.backoff
                        ),
                    ));
                    p.until = Some(now + p.backoff);
                    p.backoff = (p.backoff * 2).min(PASSIVE_INHIBIT_MAX);
                    p.fails = 0;
                }
            }
            next.insert(id, p);
        }
        self.dests = next;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(retries: u32, rise: u32) -> CheckSpec {
        CheckSpec {
            retries,
            rise,
            ..CheckSpec::new(CheckKind::Tcp)
        }
    }

    #[test]
    fn down_after_retries_failures_in_a_row_up_after_rise_successes() {
        let s = spec(3, 2);
        let mut h = HealthState::default();
        assert_eq!(h.observe(false, &s), None);
        assert_eq!(
            h.next_in(&s),
            s.delay_before_retry,
            "a failure is retried soon"
        );
        assert_eq!(h.observe(true, &s), None, "a success resets the count");
        assert_eq!(h.next_in(&s), s.interval);
        assert_eq!(h.observe(false, &s), None);
        assert_eq!(h.observe(false, &s), None);
        assert_eq!(h.observe(false, &s), Some(false));
        assert_eq!(
            h.next_in(&s),
            s.interval,
            "a down dest is probed at the interval"
        );
        assert_eq!(h.observe(false, &s), None);
        assert_eq!(h.observe(true, &s), None);
        assert_eq!(h.observe(false, &s), None, "rise needs successes in a row");
        assert_eq!(h.observe(true, &s), None);
        assert_eq!(h.observe(true, &s), Some(true));
        assert!(h.up);
    }

    #[test]
    fn passive_check_inhibits_on_unanswered_syns_with_a_growing_period() {
        use std::time::Instant;
        let id: DestId = (
            ServiceKey {
                proto: dataplane::Proto::Tcp,
                vip: "10.0.0.1".parse().unwrap(),
                vport: 80,
            },
            "10.1.0.1".parse().unwrap(),
            80,
        );
        let t0 = Instant::now();
        let mut p = Passive::default();
        assert!(
            p.sample(&[(id, (0, 5), false)], t0).is_empty(),
            "first sight"
        );
        // Two unanswered, then an answer: no verdict.
        assert!(p.sample(&[(id, (2, 5), false)], t0).is_empty());
        assert!(p.sample(&[(id, (2, 6), false)], t0).is_empty());
        assert!(p.sample(&[(id, (4, 6), false)], t0).is_empty());
        // A third in a row: down for the first period.
        let c = p.sample(&[(id, (5, 6), false)], t0);
        assert_eq!(c.len(), 1);
        assert!(
            c[0].1 && c[0].2.contains("3 new connections without a SYN-ACK"),
            "{c:?}"
        );
        // Still within the period: nothing; after it: restored.
        assert!(p
            .sample(&[(id, (5, 6), true)], t0 + Duration::from_secs(4))
            .is_empty());
        let c = p.sample(&[(id, (5, 6), true)], t0 + Duration::from_secs(5));
        assert_eq!((c.len(), c[0].1), (1, false));
        // Dead again at once: twice as long this time.
        let t1 = t0 + Duration::from_secs(6);
        let c = p.sample(&[(id, (8, 6), false)], t1);
        assert!(c[0].1 && c[0].2.contains("10s"), "{c:?}");
        assert!(p
            .sample(&[(id, (8, 6), true)], t1 + Duration::from_secs(9))
            .is_empty());
        assert!(!p.sample(&[(id, (8, 6), true)], t1 + Duration::from_secs(10))[0].1);
        // Answering again resets the period.
        assert!(p
            .sample(&[(id, (8, 7), false)], t1 + Duration::from_secs(11))
            .is_empty());
        let c = p.sample(&[(id, (11, 7), false)], t1 + Duration::from_secs(12));
        assert!(c[0].2.contains("5s"), "{c:?}");
    }

    #[test]
    fn http_answers_parse() {
        let r = b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\nbody";
        assert_eq!(parse_http(r), Some((204, &b"body"[..])));
        assert_eq!(parse_http(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
        assert_eq!(parse_http(b"HTTP/1.1 200 OK\r\n"), None, "no end of head");
        assert_eq!(parse_http(b"HTTP/1.0 abc\r\n\r\n"), None);
    }

    #[test]
    fn status_codes_parse_as_keepalived_writes_them() {
        let p = |s: &str| StatusCodes::parse(s).map(|c| c.to_string());
        assert_eq!(StatusCodes::default().to_string(), "200-299");
        assert_eq!(p("200").unwrap(), "200");
        assert_eq!(p("200-299").unwrap(), "200-299");
        // Sorted and merged: one spelling per set.
        assert_eq!(p("301 200-299").unwrap(), "200-299,301");
        assert_eq!(p("200-250,240-299,300").unwrap(), "200-300");
        assert_eq!(p("204,204").unwrap(), "204");
        let c = StatusCodes::parse("200-299,301").unwrap();
        assert!(c.contains(204) && c.contains(301) && !c.contains(300) && !c.contains(404));
        assert_eq!(c.single(), None);
        assert_eq!(StatusCodes::parse("503").unwrap().single(), Some(503));
        assert_eq!(
            p("99").unwrap_err(),
            "check status 99: not an HTTP status (100-599)"
        );
        assert_eq!(
            p("299-200").unwrap_err(),
            "check status 299-200: the range is backwards"
        );
        assert_eq!(
            p("2xx").unwrap_err(),
            "check status \"2xx\": not a status code or range"
        );
        assert_eq!(p(" ").unwrap_err(), "check status: empty");
        assert!(p("200-").is_err() && p("-200").is_err() && p("600").is_err());
    }

    #[test]
    fn specs_are_checked() {
        let http = |path: &str| {
            CheckSpec::new(CheckKind::Http {
                path: path.into(),
                status: StatusCodes::default(),
                digest: None,
                tls: false,
            })
        };
        assert!(http("/health").validate().is_ok());
        assert_eq!(
            http("health").validate().unwrap_err(),
            "check path \"health\": must start with /"
        );
        assert!(spec(0, 1).validate().unwrap_err().contains("retries"));
        let mut d = http("/");
        d.kind = CheckKind::Http {
            path: "/".into(),
            status: StatusCodes::one(200),
            digest: Some("xyz".into()),
            tls: false,
        };
        assert!(d.validate().unwrap_err().contains("MD5"));
    }

    #[tokio::test]
    async fn probes_against_local_servers() {
        // TCP: a listener accepts; a closed port refuses.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let tcp = CheckSpec::new(CheckKind::Tcp);
        assert!(probe(&tcp, lo, port).await.is_ok());
        drop(l);
        let e = probe(&tcp, lo, port).await.unwrap_err();
        assert!(e.contains("connect"), "{e}");

        // HTTP: status and digest.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                    .await;
            }
        });
        let http = |status: &str, digest: Option<&str>| {
            CheckSpec::new(CheckKind::Http {
                path: "/".into(),
                status: StatusCodes::parse(status).unwrap(),
                digest: digest.map(str::to_string),
                tls: false,
            })
        };
        assert!(probe(&http("200", None), lo, port).await.is_ok());
        // keepalived's default, any 2xx.
        assert!(probe(&http("200-299", None), lo, port).await.is_ok());
        let e = probe(&http("204", None), lo, port).await.unwrap_err();
        assert_eq!(e, "GET /: status 200, want 204");
        let e = probe(&http("201-299,301", None), lo, port)
            .await
            .unwrap_err();
        assert_eq!(e, "GET /: status 200, want 201-299,301");
        // md5("ok\n")
        let md5 = "ff8f62e8ab21cba4d6a9a8a6a4a2c8a7";
        let e = probe(&http("200", Some(md5)), lo, port).await.unwrap_err();
        assert!(e.contains("body digest"), "{e}");
        use md5::Digest;
        let right = hex(&md5::Md5::digest(b"ok\n"));
        assert!(probe(&http("200", Some(&right)), lo, port).await.is_ok());

        // HTTPS (SSL_GET): a self-signed certificate for another name is fine.
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["www.example.com".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tport = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = l.accept().await else {
                    return;
                };
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
                    .await;
                let _ = s.shutdown().await;
            }
        });
        let https = |status| {
            CheckSpec::new(CheckKind::Http {
                path: "/".into(),
                status: StatusCodes::one(status),
                digest: None,
                tls: true,
            })
        };
        assert!(probe(&https(503), lo, tport).await.is_ok());
        let e = probe(&https(200), lo, tport).await.unwrap_err();
        assert_eq!(e, "GET /: status 503, want 200");
        let any_2xx = CheckSpec::new(CheckKind::Http {
            path: "/".into(),
            status: StatusCodes::default(),
            digest: None,
            tls: true,
        });
        let e = probe(&any_2xx, lo, tport).await.unwrap_err();
        assert_eq!(e, "GET /: status 503, want 200-299");
        // A plain HTTP server is no TLS server.
        let e = probe(&https(200), lo, port).await.unwrap_err();
        assert!(e.contains("tls handshake"), "{e}");

        // MISC: the exit status, and the timeout.
        let misc = |c: &str| CheckSpec::new(CheckKind::Misc { command: c.into() });
        assert!(probe(&misc("test \"$DPVS_RS_PORT\" = 80"), lo, 80)
            .await
            .is_ok());
        assert!(probe(&misc("exit 1"), lo, 80).await.is_err());
        let mut slow = misc("sleep 5");
        slow.timeout = Duration::from_millis(200);
        let e = probe(&slow, lo, 80).await.unwrap_err();
        assert!(e.starts_with("no answer within"), "{e}");

        // UDP: an answer, or none within the timeout.
        let u = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let uport = u.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut b = [0u8; 64];
            while let Ok((n, p)) = u.recv_from(&mut b).await {
                let _ = u.send_to(&b[..n], p).await;
            }
        });
        let mut udp = CheckSpec::new(CheckKind::Udp {
            payload: "ping".into(),
        });
        udp.timeout = Duration::from_millis(300);
        assert!(probe(&udp, lo, uport).await.is_ok());
        let quiet = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let qport = quiet.local_addr().unwrap().port();
        assert!(probe(&udp, lo, qport).await.is_err());
    }
}
