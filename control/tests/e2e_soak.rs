//! A bounded soak: connection churn (wrk, `Connection: close`) through a NAT
//! service while the configuration churns beside it (another service added,
//! edited and deleted, the service under load's weights changed), for
//! `DPVS_SOAK_SECS` seconds (45 by default; `make soak SECS=600` for longer).
//! Afterwards what an operator would check: the requests were answered, the
//! connection table drains to zero, the mempool is back at its baseline and
//! dpvsd's resident memory did not grow in the second half of the run.

mod netns;

use std::io::Read;
use std::time::{Duration, Instant};

use netns::{Dpvsd, Topology, HTTP_PORT, REAL_SERVERS, VIP};

const METRICS_PORT: u16 = 9918;

fn soak_secs() -> u64 {
    std::env::var("DPVS_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(45)
}

/// dpvsd's resident set, KiB (`VmRSS`).
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for {pid}"))
}

/// `dpvs_mempool_in_use` from the metrics endpoint (in the lb namespace).
fn mempool_in_use(topo: &Topology) -> u64 {
    let url = format!("http://127.0.0.1:{METRICS_PORT}/metrics");
    let out = topo.exec_in(
        "lb",
        &["curl", "-sS", "--max-time", "5", "--noproxy", "*", &url],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("dpvs_mempool_in_use "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no dpvs_mempool_in_use in:\n{text}")) as u64
}

/// `stats`' total of connections in the workers' tables.
fn conns_in_tables(d: &Dpvsd) -> u64 {
    let text = d.ctl_ok(&["stats"]);
    text.lines()
        .filter(|l| l.starts_with("worker.") && l.contains(".conns "))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// One round of configuration churn; `i` varies what changes.
fn churn(d: &Dpvsd, i: u64) {
    let other = format!("{VIP}:{}", HTTP_PORT + 1);
    d.ctl_ok(&[
        "-A",
        "-t",
        &other,
        "-s",
        if i.is_multiple_of(2) { "wlc" } else { "rr" },
    ]);
    for (_, _, rip) in REAL_SERVERS {
        let rs = format!("{rip}:{HTTP_PORT}");
        d.ctl_ok(&["-a", "-t", &other, "-r", &rs, "-m", "-w", "2"]);
    }
    d.ctl_ok(&["-E", "-t", &other, "-s", "sh"]);
    let vs = format!("{VIP}:{HTTP_PORT}");
    let (_, _, rip) = REAL_SERVERS[(i % 2) as usize];
    let w = (1 + i % 3).to_string();
    d.ctl_ok(&[
        "-e",
        "-t",
        &vs,
        "-r",
        &format!("{rip}:{HTTP_PORT}"),
        "-m",
        "-w",
        &w,
    ]);
    d.ctl_ok(&["-D", "-t", &other]);
}

#[test]
fn soak_connection_and_configuration_churn_leaves_nothing_behind() {
    let Some(_serial) = netns::begin("soak") else {
        return;
    };
    let secs = soak_secs();
    let topo = Topology::new("soak");
    // Closed connections leave the table 2 s after their FINs (DPVS-like
    // short TIME_WAIT and FIN_WAIT), half-open ones (wrk stops mid-handshake)
    // 2 s after their SYN, idle ones after 10 s.
    let d = topo.start_dpvsd(&format!(
        "[metrics]\nlisten = \"127.0.0.1:{METRICS_PORT}\"\n\n\
         [timeouts]\ntcp = 10\ntcpfin = 2\ntime_wait = 2\nclose = 2\nlast_ack = 2\n\
         close_wait = 2\nsyn_recv = 2\nsyn_sent = 2\nsynack = 2\n"
    ));
    d.add_nat_services();
    assert!(topo
        .http_get_from_client(&format!("http://{VIP}:{HTTP_PORT}/"))
        .is_some());
    // The baseline: idle, after one connection went through and out.
    let drained = |limit: u64| {
        netns::wait_for(Duration::from_secs(limit), || {
            (conns_in_tables(&d) == 0).then_some(())
        })
    };
    assert!(
        drained(10).is_some(),
        "the first connection drains:\n{}\n{}\n{}",
        d.ctl_ok(&["stats"]),
        d.ctl_ok(&["-Lnc"]),
        d.ctl_ok(&["-L", "--timeout"])
    );
    let pool_before = mempool_in_use(&topo);

    let url = format!("http://{VIP}:{HTTP_PORT}/");
    let dur = format!("{secs}s");
    let mut wrk = topo.spawn_in(
        "cli",
        &[
            "wrk",
            "-t1",
            "-c16",
            "-d",
            &dur,
            "-H",
            "Connection: close",
            &url,
        ],
    );
    let start = Instant::now();
    let (mut rounds, mut rss_mid) = (0u64, None);
    while start.elapsed() < Duration::from_secs(secs) {
        churn(&d, rounds);
        rounds += 1;
        if rss_mid.is_none() && start.elapsed() >= Duration::from_secs(secs / 2) {
            rss_mid = Some(rss_kib(d.pid()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = netns::wait_for(Duration::from_secs(30), || wrk.try_wait().ok().flatten())
        .expect("wrk ends by itself");
    let mut report = String::new();
    if let Some(mut o) = wrk.stdout.take() {
        o.read_to_string(&mut report).ok();
    }
    assert!(status.success(), "wrk failed:\n{report}");
    let rss_end = rss_kib(d.pid());
    let requests: u64 = report
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in:\n{report}"));
    let errors: u64 = report
        .lines()
        .filter(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
        .flat_map(|l| l.split(|c: char| !c.is_ascii_digit()))
        .filter_map(|w| w.parse::<u64>().ok())
        .sum();
    eprintln!(
        "soak: {secs} s, {requests} requests, {errors} errors, {rounds} configuration rounds, \
         RSS {} -> {rss_end} KiB",
        rss_mid.unwrap_or(0)
    );
    assert!(rounds >= secs, "the configuration churned: {rounds} rounds");
    assert!(requests >= 100 * secs, "load went through: {report}");
    assert!(
        errors * 1000 <= requests,
        "at most 0.1 % of the requests failed:\n{report}"
    );
    // Afterwards: nothing left behind.
    assert!(
        drained(20).is_some(),
        "the connection table drains to zero:\n{}\n{}",
        d.ctl_ok(&["-Lnc"]),
        d.ctl_ok(&["stats"])
    );
    let pool_after = mempool_in_use(&topo);
    assert!(
        pool_after <= pool_before + 64,
        "mempool use back at its baseline: {pool_before} before, {pool_after} after"
    );
    let mid = rss_mid.expect("RSS sampled at half time");
    assert!(
        rss_end <= mid + mid / 20 + 4096,
        "dpvsd's RSS flat over the second half: {mid} KiB -> {rss_end} KiB"
    );
    assert_eq!(
        d.services().len(),
        2,
        "the churned service is gone, the others stay"
    );
}
