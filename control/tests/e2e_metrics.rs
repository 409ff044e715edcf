//! The Prometheus endpoint end to end: a real dpvsd with `[metrics] listen`
//! in the netns topology, a known number of requests through a NAT service,
//! then what an operator's monitoring sees: the endpoint's counters equal
//! `dpvsctl -Ln --stats --exact`, `promtool check metrics` accepts the live
//! text, and a real Prometheus server scraping dpvsd every second answers a
//! PromQL query over its HTTP API with the same number.
//!
//! dpvsd runs in the director's namespace, so its loopback listener and the
//! Prometheus server beside it live there too: both ports are free by
//! construction (the namespace is this test's own), and nothing listens on
//! the host. Prometheus is stopped by PID and its storage removed on drop.

mod netns;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use netns::{parse_stats, Dpvsd, ServiceStats, Topology, HTTP_PORT, UDP_ECHO_PORT, VIP};

/// dpvsd's metrics listener and the Prometheus server, in the lb namespace.
const METRICS_PORT: u16 = 9917;
const PROMETHEUS_PORT: u16 = 9090;
/// Set in dpvs.toml, to see them come back as metrics.
const CONN_CAPACITY: u64 = 65536;
const MBUFS: u64 = 4095;

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of a text exposition (the values here need no unescaping:
/// addresses, numbers, snake_case names).
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                let labels = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p
                            .split_once("=\"")
                            .unwrap_or_else(|| panic!("bad label {p:?} in {line:?}"));
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (name, labels)
            }
        };
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    out
}

/// The value of `name` with exactly `labels`; panics when absent.
fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == want)
        .unwrap_or_else(|| panic!("no {name}{want:?} among the metrics"))
        .value
}

/// Whether `tool --version` runs.
fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `curl -i` inside the director's namespace: (status line, headers, body).
fn http_in_lb(topo: &Topology, url: &str) -> (String, String, String) {
    let out = topo.exec_in(
        "lb",
        &[
            "curl",
            "-sS",
            "-i",
            "--max-time",
            "5",
            "--noproxy",
            "*",
            url,
        ],
    );
    assert!(
        out.status.success(),
        "curl {url} in the lb namespace: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {text:?}"));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_lowercase(), body.to_string())
}

fn metrics_url(path: &str) -> String {
    format!("http://127.0.0.1:{METRICS_PORT}{path}")
}

/// `-Ln --stats --exact` and the endpoint's text, read while the counters stand
/// still: `-Ln` before and after the scrape agree (counters only grow, so the
/// scrape between them saw the same numbers).
fn steady_reading(topo: &Topology, d: &Dpvsd) -> (Vec<ServiceStats>, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let before = parse_stats(&d.ctl_ok(&["-Ln", "--stats", "--exact"]));
        let (status, _, text) = http_in_lb(topo, &metrics_url("/metrics"));
        assert!(status.contains(" 200 "), "{status}");
        let after = parse_stats(&d.ctl_ok(&["-Ln", "--stats", "--exact"]));
        if before == after {
            return (after, text);
        }
        assert!(
            Instant::now() < deadline,
            "the counters never stood still for a scrape:\n{before:?}\n{after:?}"
        );
        thread::sleep(Duration::from_millis(300));
    }
}

/// A Prometheus server in the director's namespace. Dropping it stops it by
/// PID and removes its configuration and storage.
struct Prometheus {
    child: Child,
    dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(topo: &Topology) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("dpvs-e2e-prometheus-")
            .tempdir()
            .expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: dpvsd\n    static_configs:\n      \
                 - targets: [\"127.0.0.1:{METRICS_PORT}\"]\n"
            ),
        )
        .expect("write prometheus.yml");
        let log = fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &topo.ns("lb"), "prometheus"])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        Prometheus { child, dir }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("prometheus.log")
    }

    /// The instant query `q` over the HTTP API: the value of each series.
    fn query(&mut self, topo: &Topology, q: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        assert!(
            matches!(self.child.try_wait(), Ok(None)),
            "prometheus exited:\n{}",
            self.log()
        );
        let url = format!("http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/query");
        let out = topo.exec_in(
            "lb",
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                "--noproxy",
                "*",
                "-G",
                &url,
                "--data-urlencode",
                &format!("query={q}"),
            ],
        );
        if !out.status.success() {
            return Vec::new(); // not listening yet
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
            return Vec::new();
        };
        assert_eq!(v["status"], "success", "{q}: {v}");
        v["data"]["result"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|s| {
                        let labels = s["metric"]
                            .as_object()
                            .map(|m| {
                                m.iter()
                                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").into()))
                                    .collect()
                            })
                            .unwrap_or_default();
                        let value = s["value"][1]
                            .as_str()
                            .and_then(|x| x.parse().ok())
                            .unwrap_or_else(|| panic!("no value in {s}"));
                        (labels, value)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!(
                "--- prometheus log (last lines) ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
            if matches!(self.child.try_wait(), Ok(None)) {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
        // `dir` goes after this: the storage, config and log with it.
    }
}

#[test]
fn metrics_equal_dpvsctl_and_prometheus_scrapes_them() {
    let Some(_serial) = netns::begin("metrics") else {
        return;
    };
    for tool in ["promtool", "prometheus"] {
        if !have(tool) {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "{tool} is missing (deploy/deps.sh installs it)");
            eprintln!("SKIPPED metrics: {tool} is missing (deploy/deps.sh installs it)");
            return;
        }
    }
    let topo = Topology::new("metrics");
    let d = topo.start_dpvsd(&format!(
        "[dataplane]\nconn_capacity = {CONN_CAPACITY}\nmbufs = {MBUFS}\n\n\
         [metrics]\nlisten = \"127.0.0.1:{METRICS_PORT}\"\n"
    ));
    assert!(
        d.log().contains(&format!(
            "metrics on http://127.0.0.1:{METRICS_PORT}/metrics"
        )),
        "{}",
        d.log()
    );
    d.add_nat_services();

    const HTTP_REQUESTS: u64 = 10;
    const DATAGRAMS: u64 = 3;
    for i in 0..HTTP_REQUESTS {
        topo.http_get_from_client(&format!("http://{VIP}:{HTTP_PORT}/"))
            .unwrap_or_else(|| panic!("request {i} through the VIP got no answer"));
    }
    for i in 0..DATAGRAMS {
        topo.udp_echo_from_client(VIP, UDP_ECHO_PORT, &format!("m{i}"))
            .unwrap_or_else(|| panic!("datagram {i} got no answer"));
    }

    // (a) The endpoint's counters are dpvsctl's, service by service and
    // real server by real server.
    let (ctl, text) = steady_reading(&topo, &d);
    let m = parse_exposition(&text);
    assert_eq!(ctl.len(), 2, "{ctl:?}");
    for s in &ctl {
        let proto = s.proto.to_lowercase();
        let (vip, vport) = s.addr.rsplit_once(':').expect("VIP:port");
        let svc = [("proto", proto.as_str()), ("vip", vip), ("vport", vport)];
        let want_conns = if proto == "tcp" {
            HTTP_REQUESTS
        } else {
            DATAGRAMS
        };
        assert_eq!(
            s.total.conns, want_conns,
            "every request a connection: {s:?}"
        );
        for (name, v) in [
            ("dpvs_service_connections_total", s.total.conns),
            ("dpvs_service_in_packets_total", s.total.inpkts),
            ("dpvs_service_out_packets_total", s.total.outpkts),
            ("dpvs_service_in_bytes_total", s.total.inbytes),
            ("dpvs_service_out_bytes_total", s.total.outbytes),
        ] {
            assert_eq!(sample(&m, name, &svc), v as f64, "{name} of {}", s.addr);
        }
        assert_eq!(s.dests.len(), 2, "{s:?}");
        for (rs, row) in &s.dests {
            let (dest, dport) = rs.rsplit_once(':').expect("RIP:port");
            let mut labels = svc.to_vec();
            labels.extend([("dest", dest), ("dport", dport)]);
            for (name, v) in [
                ("dpvs_dest_connections_total", row.conns),
                ("dpvs_dest_in_packets_total", row.inpkts),
                ("dpvs_dest_out_packets_total", row.outpkts),
                ("dpvs_dest_in_bytes_total", row.inbytes),
                ("dpvs_dest_out_bytes_total", row.outbytes),
            ] {
                assert_eq!(sample(&m, name, &labels), v as f64, "{name} of {rs}");
            }
            assert_eq!(sample(&m, "dpvs_dest_weight", &labels), 1.0);
        }
    }
    assert!(
        ctl.iter()
            .all(|s| s.total.inpkts > 0 && s.total.outpkts > 0),
        "traffic both ways: {ctl:?}"
    );

    // What the dataplane itself says: one worker with the configured table,
    // the configured pool, every mbuf back in it once traffic stopped (af_packet
    // holds none in its rx queues; a leak would show here), the connections
    // dpvsctl -Lnc lists (the gauge follows within a few poll loops).
    let w0 = [("worker", "0")];
    assert_eq!(
        sample(&m, "dpvs_conn_table_capacity", &w0),
        CONN_CAPACITY as f64
    );
    assert_eq!(sample(&m, "dpvs_mempool_capacity", &[]), MBUFS as f64);
    let in_use = sample(&m, "dpvs_mempool_in_use", &[]);
    assert!(in_use <= 32.0, "{in_use} mbufs out of the pool when idle");
    let listed = d.conns().len() as f64;
    assert_eq!(
        listed,
        (HTTP_REQUESTS + DATAGRAMS) as f64,
        "{:?}",
        d.conns()
    );
    let entries = netns::wait_for(Duration::from_secs(10), || {
        let (_, _, t) = http_in_lb(&topo, &metrics_url("/metrics"));
        let v = sample(&parse_exposition(&t), "dpvs_conn_table_entries", &w0);
        (v == listed).then_some(v)
    });
    assert_eq!(entries, Some(listed), "dpvs_conn_table_entries vs -Lnc");
    let rx = sample(&m, "dpvs_worker_rx_packets_total", &w0);
    let forwarded: u64 = ctl.iter().map(|s| s.total.inpkts + s.total.outpkts).sum();
    assert!(
        rx >= forwarded as f64,
        "worker rx {rx} < {forwarded} packets forwarded"
    );
    let drops: Vec<&Sample> = m
        .iter()
        .filter(|s| s.name == "dpvs_worker_drops_total")
        .collect();
    assert!(
        drops.len() > 20 && drops.iter().all(|s| s.labels["worker"] == "0"),
        "every reason of the one worker: {drops:?}"
    );

    // The wire: content type, 404 elsewhere.
    let (status, headers, _) = http_in_lb(&topo, &metrics_url("/metrics"));
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        headers.contains("content-type: text/plain; version=0.0.4"),
        "{headers}"
    );
    let (status, _, _) = http_in_lb(&topo, &metrics_url("/"));
    assert!(status.contains(" 404 "), "{status}");

    // (b) promtool accepts the live text.
    let scraped = tempfile::NamedTempFile::new().expect("temp file");
    fs::write(scraped.path(), &text).expect("write the scrape");
    let out = netns::run_bounded(
        Command::new("sh")
            .args(["-c", "promtool check metrics < \"$1\"", "sh"])
            .arg(scraped.path()),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // (c) A real Prometheus scraping dpvsd every second has the same number.
    let mut prom = Prometheus::start(&topo);
    let q = format!("dpvs_service_connections_total{{vport=\"{HTTP_PORT}\"}}");
    let result = netns::wait_for(Duration::from_secs(60), || {
        let r = prom.query(&topo, &q);
        (!r.is_empty()).then_some(r)
    })
    .unwrap_or_else(|| panic!("prometheus never answered {q}:\n{}", prom.log()));
    assert_eq!(result.len(), 1, "{result:?}");
    let (labels, value) = &result[0];
    assert_eq!(value, &(HTTP_REQUESTS as f64), "{q}: {result:?}");
    assert_eq!(labels["proto"], "tcp");
    assert_eq!(labels["vip"], VIP);
    assert_eq!(labels["job"], "dpvsd");
    let up = prom.query(&topo, "up{job=\"dpvsd\"}");
    assert_eq!(up.first().map(|u| u.1), Some(1.0), "{up:?}");

    // -Z zeroes what dpvsctl shows, never the counters Prometheus sees.
    d.ctl_ok(&["-Z"]);
    let zeroed = parse_stats(&d.ctl_ok(&["-Ln", "--stats", "--exact"]));
    assert!(zeroed.iter().all(|s| s.total.conns == 0), "{zeroed:?}");
    let (_, _, after) = http_in_lb(&topo, &metrics_url("/metrics"));
    let tcp = [("proto", "tcp"), ("vip", VIP), ("vport", "80")];
    assert_eq!(
        sample(
            &parse_exposition(&after),
            "dpvs_service_connections_total",
            &tcp
        ),
        HTTP_REQUESTS as f64
    );
}
