//! The results of one run: the markdown table, JSON, and the `bench:` line.

use serde::{Deserialize, Serialize};

use crate::baseline::Testpmd;
use crate::ceiling::Ceiling;
use crate::churn::Churn;
use crate::gen::GenResult;
use crate::handover::Handover;
use crate::memif::MemifRun;
use crate::memory::{Maglev, Memory};
use crate::pipeline::{Cps, Established, Idle};
use crate::plot::{Bar, Chart};
use crate::stages::Stages;
use crate::workers::WorkersRun;

/// One line per gen run, for the terminal.
pub fn gen_line(r: &GenResult) -> String {
    let us = |v: Option<f64>| opt(v, 1);
    format!(
        "gen {} :{} {} flows {}: offered {:.3} Mpps, delivered {:.3} Mpps, loss {} ({:.3} %), {} latency p50/p90/p99/p99.9/max {} / {} / {} / {} / {} us, {} invalid{}",
        r.mode,
        r.vport,
        r.flows,
        if r.rate_pps > 0.0 { format!("@{:.0} pps", r.rate_pps) } else { "flat out".into() },
        r.offered_mpps,
        r.delivered_mpps,
        r.loss,
        r.loss_pct,
        r.latency,
        us(r.lat_p50_us),
        us(r.lat_p90_us),
        us(r.lat_p99_us),
        us(r.lat_p999_us),
        us(r.lat_max_us),
        r.invalid,
        if r.errors.is_empty() { String::new() } else { format!(": {:?}", r.errors) }
    )
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Report {
    pub quick: bool,
    pub machine: String,
    pub unix_time: u64,
    pub testpmd: Vec<Testpmd>,
    pub established: Vec<Established>,
    /// The pipeline harness with a worker that only swaps MACs.
    pub ceiling: Option<Ceiling>,
    /// Per mode: where an established packet's nanoseconds go.
    pub stages: Vec<Stages>,
    pub cps: Vec<Cps>,
    pub churn: Option<Churn>,
    pub idle: Vec<Idle>,
    pub memory: Vec<Memory>,
    pub maglev: Option<Maglev>,
    /// `dpvs-bench gen` against dpvsd over memif (two processes).
    pub memif: Option<MemifRun>,
    /// deploy/netns/compare.sh: dpvsd NAT vs kernel nftables DNAT.
    pub netns: Option<Netns>,
    /// EAL `--lcores` of the pipeline (lcore@cpu; lcore 0 is the generator).
    pub lcores: String,
    /// Established flows through one and several workers.
    pub workers: Vec<WorkersRun>,
    /// What handing a packet to another worker costs.
    pub handover: Option<Handover>,
    /// Configuration churn with two workers and a churned 1000-dest `mh` service.
    pub churn2: Option<Churn>,
    /// /proc/loadavg when the run started and ended (other work on the machine).
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub errors: Vec<String>,
}

/// What deploy/netns/compare.sh prints (dpvsd = on af_packet, dpvsd_xdp = on
/// af_xdp; `_adapt` with adaptive_poll; `_rps` keep-alive requests/s).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Netns {
    pub seconds: u32,
    pub rounds: Option<u32>,
    pub loadavg: String,
    /// The driver `make demo` would pick here (af_xdp or af_packet).
    pub driver: Option<String>,
    pub af_xdp_error: Option<String>,
    pub dpvsd_cps: Option<f64>,
    pub dpvsd_gbps: Option<f64>,
    pub dpvsd_rps: Option<f64>,
    pub dpvsd_http_errors: Option<f64>,
    pub dpvsd_adapt_cps: Option<f64>,
    pub dpvsd_adapt_gbps: Option<f64>,
    pub dpvsd_adapt_rps: Option<f64>,
    pub dpvsd_adapt_http_errors: Option<f64>,
    pub dpvsd_xdp_cps: Option<f64>,
    pub dpvsd_xdp_gbps: Option<f64>,
    pub dpvsd_xdp_rps: Option<f64>,
    pub dpvsd_xdp_http_errors: Option<f64>,
    pub dpvsd_xdp_adapt_cps: Option<f64>,
    pub dpvsd_xdp_adapt_gbps: Option<f64>,
    pub dpvsd_xdp_adapt_rps: Option<f64>,
    pub dpvsd_xdp_adapt_http_errors: Option<f64>,
    pub kernel_cps: Option<f64>,
    pub kernel_gbps: Option<f64>,
    pub kernel_rps: Option<f64>,
    pub kernel_http_errors: Option<f64>,
    pub cps_ratio: Option<f64>,
    pub cps_ratio_adapt: Option<f64>,
    pub gbps_ratio: Option<f64>,
    pub gbps_ratio_adapt: Option<f64>,
    pub rps_ratio: Option<f64>,
    pub rps_ratio_adapt: Option<f64>,
    pub cps_ratio_xdp: Option<f64>,
    pub rps_ratio_xdp: Option<f64>,
    pub gbps_ratio_xdp: Option<f64>,
    pub cps_ratio_xdp_adapt: Option<f64>,
    pub rps_ratio_xdp_adapt: Option<f64>,
    pub gbps_ratio_xdp_adapt: Option<f64>,
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let cores = cpu.lines().filter(|l| l.starts_with("processor")).count();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    format!(
        "{model}, {cores} cores, {:.0} GiB",
        mem as f64 / 1024.0 / 1024.0
    )
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("NA".into(), |x| format!("{x:.digits$}"))
}

impl Report {
    pub fn new(quick: bool) -> Report {
        Report {
            quick,
            machine: machine(),
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            loadavg_start: loadavg(),
            ..Default::default()
        }
    }

    /// gen's result for a mode at flat out (rate 0) or at a fixed rate.
    pub fn gen(&self, mode: &str, flat: bool) -> Option<&GenResult> {
        self.memif
            .as_ref()?
            .results
            .iter()
            .find(|r| r.mode == mode && (r.rate_pps == 0.0) == flat)
    }

    pub fn testpmd_mpps(&self, mode: &str) -> Option<f64> {
        self.testpmd.iter().find(|t| t.mode == mode)?.mpps
    }

    pub fn est(&self, mode: &str, big: bool) -> Option<&Established> {
        self.established
            .iter()
            .find(|e| e.mode == mode && (e.flows > 1000) == big)
    }

    pub fn est_mpps(&self, mode: &str, big: bool) -> Option<f64> {
        self.est(mode, big)?.mpps
    }

    pub fn est_ns(&self, mode: &str, big: bool) -> Option<f64> {
        self.est(mode, big)?.ns_per_packet
    }

    pub fn stage(&self, mode: &str) -> Option<&Stages> {
        self.stages.iter().find(|s| s.mode == mode)
    }

    pub fn ratio(&self, mode: &str, big: bool) -> Option<f64> {
        Some(self.est_mpps(mode, big)? / self.testpmd_mpps("5tswap")?)
    }

    pub fn cps_of(&self, mode: &str) -> Option<f64> {
        self.cps.iter().find(|c| c.mode == mode)?.cps
    }

    /// The several-worker run of `mode` on `n` workers with this server-side
    /// steering (any with one worker).
    pub fn workers_run(&self, mode: &str, n: usize, steering: &str) -> Option<&WorkersRun> {
        self.workers
            .iter()
            .find(|w| w.mode == mode && w.workers == n && (n == 1 || w.steering == steering))
    }

    pub fn workers_mpps(&self, mode: &str, n: usize) -> Option<f64> {
        self.workers_run(mode, n, "soft-rss")?.mpps
    }

    pub fn handover_share(&self, mode: &str, steering: &str) -> Option<f64> {
        self.workers_run(mode, 2, steering)?.handover_share
    }

    /// Lcores and the distinct CPUs under them, from `lcores` ("0@0,1@1,2@0").
    fn lcore_cpus(&self) -> (usize, usize) {
        let mut cpus: Vec<&str> = self
            .lcores
            .split(',')
            .filter_map(|l| l.split_once('@').map(|(_, c)| c))
            .collect();
        let lcores = cpus.len();
        cpus.sort_unstable();
        cpus.dedup();
        (lcores, cpus.len())
    }

    fn workers_markdown(&self, s: &mut String) {
        if self.workers.is_empty() && self.handover.is_none() && self.churn2.is_none() {
            return;
        }
        let (lcores, cpus) = self.lcore_cpus();
        s.push_str(&format!(
            "\n#### Several workers (EAL --lcores {}; lcore 0 is the generator)\n\n",
            self.lcores
        ));
        if cpus < lcores {
            s.push_str(&format!(
                "The generator and {} workers share {cpus} CPUs here: figures with more than one worker are not a scaling measurement (a worker shares its CPU with the generator or another worker).\n\n",
                lcores - 1
            ));
        }
        s.push_str("| run | value | handed over (measured) | predicted: requests / replies | per worker: rx / handed over / taken over |\n|---|---|---|---|---|\n");
        let pct = |v: f64| format!("{:.1} %", v * 100.0);
        for w in &self.workers {
            let steering = match w.steering.as_str() {
                "" => String::new(),
                "soft-rss" if w.mode == "fullnat" => ", RSS pre-calculation (soft-rss)".into(),
                "handover" => ", no pre-calculation (steering handover)".into(),
                other => format!(", steering {other}"),
            };
            let value = match w.mpps {
                Some(m) => format!(
                    "{m:.2} Mpps ({:.0} ns/pkt), {} sampled",
                    w.ns_per_packet.unwrap_or(0.0),
                    w.sampled
                ),
                None => "NA".into(),
            };
            let per: Vec<String> = w
                .per_worker
                .iter()
                .enumerate()
                .map(|(i, d)| format!("w{i} {} / {} / {}", d.rx, d.handed_over, d.handover_in))
                .collect();
            s.push_str(&format!(
                "| {} established, {} flows, requests + replies, {} worker{}{steering}{} | {value} | {} | {} / {} | {} |\n",
                w.mode.to_uppercase(),
                w.flows,
                w.workers,
                if w.workers == 1 { "" } else { "s" },
                if w.adaptive_poll { ", adaptive_poll" } else { "" },
                w.handover_share.map_or("NA".into(), pct),
                pct(w.predicted_request_share),
                pct(w.predicted_reply_share),
                per.join("; ")
            ));
        }
        if let Some(r) = self.handover.as_ref().and_then(|h| h.ring.as_ref()) {
            s.push_str(&format!(
                "| hand-over ring path, bursts of {}, lcore {} (CPU time per packet, both sides, best of {}) | {:.1} ns = enqueue {:.1} + dequeue {:.1} + owner's first touch {:.1}; wall {:.1} ns/pkt; one cache line between these CPUs {:.1} ns | | | |\n",
                r.burst, r.lcores, r.runs.len(), r.ns_per_packet, r.enqueue_ns, r.dequeue_ns, r.touch_ns, r.wall_ns_per_packet, r.line_ns
            ));
        }
        if let Some(p) = self.handover.as_ref().and_then(|h| h.pipeline.as_ref()) {
            s.push_str(&format!(
                "| hand-over in the pipeline: NAT requests, {} flows owned by worker 0, on its own queue vs on worker 1's{} | {:.2} vs {:.2} Mpps: {:+.1} ns/pkt | {} / {} | | |\n",
                p.flows,
                if p.adaptive_poll { ", adaptive_poll" } else { "" },
                p.local_mpps,
                p.handed_mpps,
                p.delta_ns,
                pct(p.local_share),
                pct(p.handed_share)
            ));
        }
        if let Some(c) = &self.churn2 {
            s.push_str(&format!(
                "| loss under config churn, {} workers{}, {}-dest mh service changed each apply ({} applies in {:.1} s, {:.2} Mpps, {} mh connections) | {} of {} lost; scheduler tables built by workers {:?} | {} | | {} |\n",
                c.workers,
                if c.adaptive_poll { ", adaptive_poll" } else { "" },
                c.mh_dests,
                c.applies,
                c.seconds,
                c.mpps,
                c.mh_conns,
                c.lost,
                c.sent,
                c.sched_tables_built,
                pct(c.handed_over.iter().sum::<u64>() as f64 / c.rx.iter().sum::<u64>().max(1) as f64),
                c.rx
                    .iter()
                    .zip(&c.handed_over)
                    .enumerate()
                    .map(|(i, (rx, h))| format!("w{i} {rx} / {h}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
    }

    pub fn bytes_per_conn(&self) -> Option<f64> {
        let m = self.memory.iter().find(|m| m.conns == 1_000_000)?;
        Some(m.bytes_per_conn_rss.max(m.bytes_per_conn_table))
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let tp = self.testpmd_mpps("5tswap");
        s.push_str(&format!(
            "### dpvs-bench ({}) on {}\n\n",
            if self.quick { "quick" } else { "full" },
            self.machine
        ));
        s.push_str("| figure | value | ratio to testpmd 5tswap | target |\n|---|---|---|---|\n");
        for t in &self.testpmd {
            s.push_str(&format!(
                "| testpmd {} (1 core, net_null copy=1) | {} Mpps | {} | baseline |\n",
                t.mode,
                opt(t.mpps, 2),
                opt(t.mpps.zip(tp).map(|(a, b)| a / b), 2)
            ));
        }
        if let Some(c) = &self.ceiling {
            s.push_str(&format!(
                "| harness ceiling: the same generator and rings, a worker that only swaps MACs, {} flows | {} | {} | above every target |\n",
                c.flows,
                match c.mpps {
                    Some(m) => format!("{m:.2} Mpps ({:.0} ns/pkt)", 1000.0 / m),
                    None => format!("NA ({})", c.note),
                },
                opt(c.mpps.zip(tp).map(|(a, b)| a / b), 2),
            ));
        }
        for e in &self.established {
            let target = match (e.mode.as_str(), e.flows > 1000) {
                ("fullnat", false) => ">= 0.5 x",
                ("fullnat", true) => ">= 0.35 x",
                ("dr", false) => ">= 0.6 x",
                _ => "",
            };
            let value = match e.mpps {
                Some(m) => format!("{m:.2} Mpps ({:.0} ns/pkt)", e.ns_per_packet.unwrap_or(0.0)),
                None => format!("NA ({})", e.note),
            };
            s.push_str(&format!(
                "| {} established, {} flows | {value} | {} | {target} |\n",
                e.mode.to_uppercase(),
                e.flows,
                opt(e.mpps.zip(tp).map(|(a, b)| a / b), 2),
            ));
            if let Some(r) = e.syn_rate {
                s.push_str(&format!(
                    "| {} first packets (SYN, new conn), {} flows | {:.2} M/s | | |\n",
                    e.mode.to_uppercase(),
                    e.flows,
                    r / 1e6
                ));
            }
        }
        for c in &self.cps {
            let v = match c.cps {
                Some(x) => format!("{:.0} conn/s ({} packets each)", x, c.packets_per_conn),
                None => format!("NA ({})", c.note),
            };
            s.push_str(&format!(
                "| {} whole TCP connections per core | {v} | | >= 1 M |\n",
                c.mode.to_uppercase()
            ));
        }
        if let Some(c) = &self.churn {
            s.push_str(&format!(
                "| loss under config churn ({} applies in {:.1} s, {:.2} Mpps) | {} of {} lost | | 0 |\n",
                c.applies, c.seconds, c.mpps, c.lost, c.sent
            ));
        }
        for m in &self.memory {
            s.push_str(&format!(
                "| memory per connection at {} conns | {:.0} B (RSS), {:.0} B (table), {} B (static) | | <= 160 B |\n",
                m.conns, m.bytes_per_conn_rss, m.bytes_per_conn_table, m.bytes_per_conn_static
            ));
        }
        if let Some(m) = &self.maglev {
            s.push_str(&format!(
                "| Maglev build, {} dests, M={} | {:.2} ms (best of {}) | | |\n",
                m.dests,
                m.table_size,
                m.best_ms,
                m.runs_ms.len()
            ));
        }
        for i in &self.idle {
            s.push_str(&format!(
                "| adaptive_poll={}: 1-packet round trip after idle p50 / p99 | {:.1} / {:.1} us; idle worker CPU {}%; loaded {:.2} Mpps | | |\n",
                i.adaptive,
                i.rtt_p50_ns / 1e3,
                i.rtt_p99_ns / 1e3,
                opt(i.idle_cpu_pct, 0),
                i.loaded_mpps
            ));
        }
        if !self.stages.is_empty() {
            s.push_str("\n#### Where an established packet's time goes (ns/packet, 1000 flows; the core timed without EAL on byte buffers, output = pipeline - core)\n\n");
            s.push_str("| mode | classify | lookup | rewrite (state, rewrite, checksums, next hop, counters) | core | output (PMD rx/tx, mbufs, worker loop) | pipeline | new connection (core) | core, TOA in every packet |\n|---|---|---|---|---|---|---|---|---|\n");
            for g in &self.stages {
                s.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    g.mode.to_uppercase(),
                    opt(g.classify_ns, 1),
                    opt(g.lookup_ns, 1),
                    opt(g.rewrite_ns, 1),
                    opt(g.core_ns, 1),
                    opt(g.output_ns, 1),
                    opt(g.pipeline_ns, 1),
                    opt(g.new_conn_ns, 1),
                    opt(g.toa_core_ns, 1),
                ));
            }
        }
        self.workers_markdown(&mut s);
        if let Some(m) = &self.memif {
            s.push_str(&format!(
                "\n#### `dpvs-bench gen` against dpvsd over memif (two processes, {} flows per run, {:.1} s each; load {})\n\n",
                m.flows, m.seconds, m.loadavg
            ));
            s.push_str("| run | offered | delivered | ratio to testpmd | loss | latency | p50 | p90 | p99 | p99.9 | max | checked (full) / invalid |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
            for r in &m.results {
                let us = |v: Option<f64>| v.map_or("NA".into(), |x| format!("{x:.1} us"));
                s.push_str(&format!(
                    "| {} :{} {} | {:.3} Mpps | {:.3} Mpps | {} | {} ({:.3} %) | {} | {} | {} | {} | {} | {} | {} / {} |\n",
                    r.mode.to_uppercase(),
                    r.vport,
                    if r.rate_pps > 0.0 { format!("@ {:.0} pps", r.rate_pps) } else { "flat out".into() },
                    r.offered_mpps,
                    r.delivered_mpps,
                    opt(tp.map(|t| r.delivered_mpps / t), 3),
                    r.loss,
                    r.loss_pct,
                    r.latency,
                    us(r.lat_p50_us),
                    us(r.lat_p90_us),
                    us(r.lat_p99_us),
                    us(r.lat_p999_us),
                    us(r.lat_max_us),
                    r.full_checks,
                    r.invalid
                ));
                for e in &r.errors {
                    s.push_str(&format!("\n{} :{}: {e}\n", r.mode, r.vport));
                }
            }
            if !m.note.is_empty() {
                s.push_str(&format!("\nmemif: {}\n", m.note));
            }
        }
        if let Some(n) = &self.netns {
            let v = |x: Option<f64>, d: usize| opt(x, d);
            s.push_str(&format!(
                "\n#### Namespaces: dpvsd NAT vs kernel nftables DNAT (same topology and load, {} s each; load {})\n\n",
                n.seconds, n.loadavg
            ));
            s.push_str("| load balancer | HTTP conn/s (wrk -t1 -c32, Connection: close) | failed requests | keep-alive requests/s | iperf3, 1 stream | ratios to kernel: conn/s, keep-alive, iperf3 |\n|---|---|---|---|---|---|\n");
            let rows = [
                (
                    "dpvsd on af_packet, busy polling",
                    n.dpvsd_cps,
                    n.dpvsd_http_errors,
                    n.dpvsd_rps,
                    n.dpvsd_gbps,
                    [n.cps_ratio, n.rps_ratio, n.gbps_ratio],
                ),
                (
                    "dpvsd on af_packet, adaptive_poll",
                    n.dpvsd_adapt_cps,
                    n.dpvsd_adapt_http_errors,
                    n.dpvsd_adapt_rps,
                    n.dpvsd_adapt_gbps,
                    [n.cps_ratio_adapt, n.rps_ratio_adapt, n.gbps_ratio_adapt],
                ),
                (
                    "dpvsd on af_xdp, busy polling",
                    n.dpvsd_xdp_cps,
                    n.dpvsd_xdp_http_errors,
                    n.dpvsd_xdp_rps,
                    n.dpvsd_xdp_gbps,
                    [n.cps_ratio_xdp, n.rps_ratio_xdp, n.gbps_ratio_xdp],
                ),
                (
                    "dpvsd on af_xdp, adaptive_poll",
                    n.dpvsd_xdp_adapt_cps,
                    n.dpvsd_xdp_adapt_http_errors,
                    n.dpvsd_xdp_adapt_rps,
                    n.dpvsd_xdp_adapt_gbps,
                    [
                        n.cps_ratio_xdp_adapt,
                        n.rps_ratio_xdp_adapt,
                        n.gbps_ratio_xdp_adapt,
                    ],
                ),
                (
                    "kernel nftables DNAT",
                    n.kernel_cps,
                    n.kernel_http_errors,
                    n.kernel_rps,
                    n.kernel_gbps,
                    [Some(1.0); 3],
                ),
            ];
            for (name, cps, errs, rps, gbps, r) in rows {
                // af_xdp rows only where the script measured them.
                if name.contains("af_xdp") && cps.is_none() && gbps.is_none() {
                    continue;
                }
                s.push_str(&format!(
                    "| {name} | {} | {} | {} | {} Gbit/s | {} / {} / {} |\n",
                    v(cps, 0),
                    v(errs, 0),
                    v(rps, 0),
                    v(gbps, 2),
                    v(r[0], 2),
                    v(r[1], 2),
                    v(r[2], 2)
                ));
            }
            if let Some(e) = &n.af_xdp_error {
                s.push_str(&format!("\naf_xdp did not run here: {e}\n"));
            }
        }
        s.push_str(&format!(
            "\nMachine load (/proc/loadavg) at start: {}; at end: {}\n",
            self.loadavg_start, self.loadavg_end
        ));
        for e in &self.errors {
            s.push_str(&format!("\nERROR: {e}\n"));
        }
        s
    }

    /// The SVG plots of this run: (file name, contents).
    pub fn plots(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut groups: Vec<(String, Vec<Bar>)> = Vec::new();
        if !self.testpmd.is_empty() {
            groups.push((
                "testpmd (DPDK, 1 core)".into(),
                self.testpmd
                    .iter()
                    .map(|t| (format!("testpmd {}", t.mode), t.mpps))
                    .collect(),
            ));
        }
        for mode in ["nat", "fullnat", "dr", "tun"] {
            let bars: Vec<Bar> = [false, true]
                .iter()
                .filter_map(|&big| {
                    let e = self.est(mode, big)?;
                    Some((
                        if big { "1 M flows" } else { "1 k flows" }.to_string(),
                        e.mpps,
                    ))
                })
                .collect();
            if !bars.is_empty() {
                groups.push((format!("{} established", mode.to_uppercase()), bars));
            }
        }
        if let Some(m) = &self.memif {
            let bars: Vec<Bar> = m
                .results
                .iter()
                .filter(|r| r.rate_pps == 0.0)
                .map(|r| {
                    (
                        format!("gen/memif {}", r.mode.to_uppercase()),
                        Some(r.delivered_mpps),
                    )
                })
                .collect();
            if !bars.is_empty() {
                groups.push(("dpvsd over memif (gen)".into(), bars));
            }
        }
        if !groups.is_empty() {
            out.push((
                "mpps.svg",
                Chart {
                    title:
                        "Packets per second, one worker core (pipeline: 64-byte TCP; gen: 78-byte)"
                            .into(),
                    unit: "Mpps".into(),
                    log: false,
                    groups,
                }
                .svg(),
            ));
        }
        let mut cps: Vec<(String, Vec<Bar>)> = self
            .cps
            .iter()
            .map(|c| {
                (
                    format!("{} (pipeline)", c.mode.to_uppercase()),
                    vec![("measured".to_string(), c.cps)],
                )
            })
            .collect();
        if !cps.is_empty() {
            cps.push(("target".into(), vec![("target".to_string(), Some(1e6))]));
            out.push((
                "cps.svg",
                Chart {
                    title: "New TCP connections per second, one worker core".into(),
                    unit: "connections/s".into(),
                    log: false,
                    groups: cps,
                }
                .svg(),
            ));
        }
        if let Some(m) = &self.memif {
            let groups: Vec<(String, Vec<Bar>)> = m
                .results
                .iter()
                .map(|r| {
                    (
                        format!(
                            "{} {} ({})",
                            r.mode.to_uppercase(),
                            if r.rate_pps > 0.0 {
                                format!("@{:.0} kpps", r.rate_pps / 1e3)
                            } else {
                                "flat out".into()
                            },
                            r.latency
                        ),
                        vec![
                            ("p50".to_string(), r.lat_p50_us),
                            ("p90".to_string(), r.lat_p90_us),
                            ("p99".to_string(), r.lat_p99_us),
                            ("p99.9".to_string(), r.lat_p999_us),
                        ],
                    )
                })
                .collect();
            out.push((
                "latency.svg",
                Chart {
                    title: "Latency through dpvsd over memif (dpvs-bench gen)".into(),
                    unit: "microseconds".into(),
                    log: true,
                    groups,
                }
                .svg(),
            ));
        }
        if let Some(n) = &self.netns {
            let lbs = |a: Option<f64>, b: Option<f64>, c: Option<f64>| -> Vec<Bar> {
                vec![
                    ("dpvsd (busy poll)".to_string(), a),
                    ("dpvsd (adaptive_poll)".to_string(), b),
                    ("kernel nftables DNAT".to_string(), c),
                ]
            };
            out.push((
                "kernel_cps.svg",
                Chart {
                    title: "Namespaces: HTTP connections per second (wrk, Connection: close)"
                        .into(),
                    unit: "connections/s".into(),
                    log: false,
                    groups: vec![(
                        "NAT, 2 real servers".into(),
                        lbs(n.dpvsd_cps, n.dpvsd_adapt_cps, n.kernel_cps),
                    )],
                }
                .svg(),
            ));
            out.push((
                "kernel_iperf3.svg",
                Chart {
                    title: "Namespaces: iperf3 throughput, one TCP stream".into(),
                    unit: "Gbit/s".into(),
                    log: false,
                    groups: vec![(
                        "NAT".into(),
                        lbs(n.dpvsd_gbps, n.dpvsd_adapt_gbps, n.kernel_gbps),
                    )],
                }
                .svg(),
            ));
        }
        out
    }

    /// The one line for scripts.
    pub fn line(&self) -> String {
        let r = |v: Option<f64>| opt(v, 2);
        let n = |v: Option<f64>| v.map_or("NA".into(), |x| format!("{x:.0}"));
        let cps = self.cps_of("fullnat").or(self.cps_of("nat"));
        let mut line = format!(
            "bench: fullnat_1k_ratio={} fullnat_1m_ratio={} fullnat_1k_mpps={} cps_per_core={} bytes_per_conn={} churn_lost={} nat_1k_ratio={} nat_1m_ratio={} nat_1k_mpps={} nat_1m_mpps={} dr_1k_mpps={} tun_1k_mpps={} nat_cps={} testpmd_5tswap_mpps={} testpmd_macswap_mpps={} memif_nat_mpps={} memif_fullnat_mpps={} memif_nat_p99_us={} netns_cps_ratio={} netns_cps_ratio_adapt={} netns_gbps_ratio={}",
            r(self.ratio("fullnat", false)),
            r(self.ratio("fullnat", true)),
            r(self.est_mpps("fullnat", false)),
            n(cps),
            n(self.bytes_per_conn()),
            self.churn.as_ref().map_or("NA".into(), |c| c.lost.to_string()),
            r(self.ratio("nat", false)),
            r(self.ratio("nat", true)),
            r(self.est_mpps("nat", false)),
            r(self.est_mpps("nat", true)),
            r(self.est_mpps("dr", false)),
            r(self.est_mpps("tun", false)),
            n(self.cps_of("nat")),
            r(self.testpmd_mpps("5tswap")),
            r(self.testpmd_mpps("macswap")),
            r(self.gen("nat", true).map(|g| g.delivered_mpps)),
            r(self.gen("fullnat", true).map(|g| g.delivered_mpps)),
            r(self.gen("nat", false).and_then(|g| g.lat_p99_us)),
            r(self.netns.as_ref().and_then(|n| n.cps_ratio)),
            r(self.netns.as_ref().and_then(|n| n.cps_ratio_adapt)),
            r(self.netns.as_ref().and_then(|n| n.gbps_ratio)),
        );
        let nn = |f: fn(&Netns) -> Option<f64>| r(self.netns.as_ref().and_then(f));
        line.push_str(&format!(
            " netns_rps_ratio={} netns_cps_ratio_xdp={} netns_rps_ratio_xdp={} netns_gbps_ratio_xdp={}",
            nn(|n| n.rps_ratio),
            nn(|n| n.cps_ratio_xdp),
            nn(|n| n.rps_ratio_xdp),
            nn(|n| n.gbps_ratio_xdp),
        ));
        let share = |v: Option<f64>| opt(v, 3);
        line.push_str(&format!(
            " workers1_fullnat_1k_mpps={} workers2_fullnat_1k_mpps={} workers1_nat_1k_mpps={} workers2_nat_1k_mpps={} handover_share_fullnat_rss={} handover_share_fullnat_none={} handover_share_nat={} handover_ns={} churn2_lost={}",
            r(self.workers_mpps("fullnat", 1)),
            r(self.workers_mpps("fullnat", 2)),
            r(self.workers_mpps("nat", 1)),
            r(self.workers_mpps("nat", 2)),
            share(self.handover_share("fullnat", "soft-rss")),
            share(self.handover_share("fullnat", "handover")),
            share(self.handover_share("nat", "soft-rss")),
            r(self.handover.as_ref().and_then(Handover::ns)),
            self.churn2.as_ref().map_or("NA".into(), |c| c.lost.to_string()),
        ));
        let ns = |v: Option<f64>| opt(v, 1);
        line.push_str(&format!(
            " harness_ceiling_mpps={}",
            r(self.ceiling.as_ref().and_then(|c| c.mpps))
        ));
        for mode in ["nat", "fullnat", "dr", "tun"] {
            line.push_str(&format!(
                " {mode}_core_ns={}",
                ns(self.stage(mode).and_then(|g| g.core_ns))
            ));
        }
        for mode in ["nat", "fullnat"] {
            line.push_str(&format!(
                " {mode}_new_conn_ns={}",
                ns(self.stage(mode).and_then(|g| g.new_conn_ns))
            ));
        }
        let f = self.stage("fullnat");
        line.push_str(&format!(
            " fullnat_classify_ns={} fullnat_lookup_ns={} fullnat_rewrite_ns={} fullnat_output_ns={} fullnat_toa_core_ns={}",
            ns(f.and_then(|g| g.classify_ns)),
            ns(f.and_then(|g| g.lookup_ns)),
            ns(f.and_then(|g| g.rewrite_ns)),
            ns(f.and_then(|g| g.output_ns)),
            ns(f.and_then(|g| g.toa_core_ns)),
        ));
        // Runs with more workers (`--workers N` on a larger machine).
        let mut more: Vec<usize> = self
            .workers
            .iter()
            .map(|w| w.workers)
            .filter(|&n| n > 2)
            .collect();
        more.dedup();
        for n in more {
            for mode in ["fullnat", "nat"] {
                line.push_str(&format!(
                    " workers{n}_{mode}_1k_mpps={}",
                    r(self.workers_mpps(mode, n))
                ));
            }
        }
        line
    }

    pub fn write(&self, dir: &str) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
        let json = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(format!("{dir}/bench.json"), json).map_err(|e| e.to_string())?;
        let md = format!("{}\n```\n{}\n```\n", self.markdown(), self.line());
        std::fs::write(format!("{dir}/bench.md"), md).map_err(|e| e.to_string())?;
        for (name, svg) in self.plots() {
            std::fs::write(format!("{dir}/{name}"), svg)
                .map_err(|e| format!("{dir}/{name}: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gen_and_netns_figures_reach_the_table_the_line_and_survive_json() {
        let mut r = Report::new(false);
        r.testpmd.push(Testpmd {
            mode: "5tswap".into(),
            mpps: Some(20.0),
            note: String::new(),
        });
        r.memif = Some(MemifRun {
            flows: 1000,
            seconds: 3.0,
            results: vec![
                GenResult {
                    mode: "nat".into(),
                    vport: 80,
                    delivered_mpps: 2.0,
                    offered_mpps: 2.0,
                    latency: "round trip".into(),
                    ..Default::default()
                },
                GenResult {
                    mode: "nat".into(),
                    vport: 80,
                    rate_pps: 100_000.0,
                    lat_p99_us: Some(12.5),
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        // As compare.sh prints it (keys it adds later are ignored).
        let netns: Netns = serde_json::from_str(
            r#"{"seconds": 5, "kernel_cps": 8000, "dpvsd_adapt_cps": 12000, "cps_ratio_adapt": 1.5,
                "dpvsd_xdp_cps": 16000, "dpvsd_xdp_rps": 64000, "dpvsd_xdp_gbps": 1.5,
                "cps_ratio_xdp": 2.0, "rps_ratio_xdp": 1.1, "gbps_ratio_xdp": 0.5,
                "driver": "af_xdp", "something_new": 1}"#,
        )
        .unwrap();
        r.netns = Some(netns);
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        let md = back.markdown();
        assert!(
            md.contains("| NAT :80 flat out | 2.000 Mpps | 2.000 Mpps | 0.100 |"),
            "{md}"
        );
        assert!(
            md.contains("| dpvsd on af_packet, adaptive_poll | 12000 |"),
            "{md}"
        );
        assert!(
            md.contains("| dpvsd on af_xdp, busy polling | 16000 | NA | 64000 | 1.50 Gbit/s | 2.00 / 1.10 / 0.50 |"),
            "{md}"
        );
        assert!(!md.contains("af_xdp, adaptive_poll"), "{md}");
        assert!(
            back.line().contains(
                " netns_cps_ratio_xdp=2.00 netns_rps_ratio_xdp=1.10 netns_gbps_ratio_xdp=0.50"
            ),
            "{}",
            back.line()
        );
        let line = back.line();
        assert!(line.starts_with("bench: fullnat_1k_ratio="));
        assert!(line.contains(" memif_nat_mpps=2.00 "), "{line}");
        assert!(line.contains(" memif_nat_p99_us=12.50 "), "{line}");
        assert!(
            line.contains(" netns_cps_ratio=NA netns_cps_ratio_adapt=1.50 "),
            "{line}"
        );
        let names: Vec<&str> = back.plots().iter().map(|p| p.0).collect();
        assert_eq!(
            names,
            [
                "mpps.svg",
                "latency.svg",
                "kernel_cps.svg",
                "kernel_iperf3.svg"
            ]
        );
    }

    fn run(mode: &str, n: usize, steering: &str, mpps: f64, share: f64) -> WorkersRun {
        WorkersRun {
            mode: mode.into(),
            workers: n,
            steering: steering.into(),
            flows: 1000,
            mpps: Some(mpps),
            ns_per_packet: Some(1000.0 / mpps),
            handover_share: Some(share),
            predicted_request_share: 0.5,
            per_worker: vec![crate::workers::WorkerDelta {
                rx: 10,
                handed_over: 5,
                handover_in: 4,
                ..Default::default()
            }],
            adaptive_poll: n > 1,
            ..Default::default()
        }
    }

    #[test]
    fn several_worker_figures_reach_the_table_the_line_and_survive_json() {
        let mut r = Report::new(true);
        r.lcores = "0@0,1@1,2@0".into();
        r.churn = Some(Churn {
            lost: 0,
            ..Default::default()
        });
        r.workers = vec![
            run("fullnat", 1, "", 4.0, 0.0),
            run("fullnat", 2, "soft-rss", 2.5, 0.26),
            run("fullnat", 2, "handover", 2.25, 0.51),
            run("nat", 1, "", 5.5, 0.0),
            run("nat", 2, "soft-rss", 3.75, 0.5),
            run("nat", 4, "soft-rss", 9.0, 0.75),
        ];
        r.handover = Some(Handover {
            ring: Some(crate::handover::RingCost {
                burst: 32,
                ns_per_packet: 29.5,
                enqueue_ns: 8.0,
                dequeue_ns: 3.0,
                touch_ns: 18.5,
                line_ns: 40.0,
                lcores: "0 -> 1".into(),
                ..Default::default()
            }),
            pipeline: Some(crate::handover::PipelineCost {
                flows: 1000,
                local_mpps: 6.0,
                handed_mpps: 4.0,
                handed_share: 1.0,
                delta_ns: 83.3,
                ..Default::default()
            }),
        });
        r.churn2 = Some(Churn {
            workers: 2,
            mh_dests: 1000,
            lost: 3,
            sent: 100,
            mh_conns: 7,
            sched_tables_built: vec![0, 0],
            rx: vec![60, 40],
            handed_over: vec![30, 20],
            ..Default::default()
        });
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        let line = back.line();
        for key in [
            " churn_lost=0 ",
            " workers1_fullnat_1k_mpps=4.00 workers2_fullnat_1k_mpps=2.50 workers1_nat_1k_mpps=5.50 workers2_nat_1k_mpps=3.75 ",
            " handover_share_fullnat_rss=0.260 handover_share_fullnat_none=0.510 handover_share_nat=0.500 ",
            " handover_ns=29.50 churn2_lost=3",
            " workers4_fullnat_1k_mpps=NA workers4_nat_1k_mpps=9.00",
        ] {
            assert!(line.contains(key), "{key} in {line}");
        }
        assert!(line.starts_with("bench: fullnat_1k_ratio="), "{line}");
        let md = back.markdown();
        for row in [
            "The generator and 2 workers share 2 CPUs here: figures with more than one worker are not a scaling measurement",
            "| FULLNAT established, 1000 flows, requests + replies, 2 workers, RSS pre-calculation (soft-rss), adaptive_poll | 2.50 Mpps (400 ns/pkt), 0 sampled | 26.0 % | 50.0 % / 0.0 % | w0 10 / 5 / 4 |",
            "| FULLNAT established, 1000 flows, requests + replies, 2 workers, no pre-calculation (steering handover), adaptive_poll | 2.25 Mpps",
            "| NAT established, 1000 flows, requests + replies, 1 worker | 5.50 Mpps (182 ns/pkt)",
            "| 29.5 ns = enqueue 8.0 + dequeue 3.0 + owner's first touch 18.5;",
            "; one cache line between these CPUs 40.0 ns |",
            "| 6.00 vs 4.00 Mpps: +83.3 ns/pkt | 0.0 % / 100.0 % |",
            "| 3 of 100 lost; scheduler tables built by workers [0, 0] | 50.0 % | | w0 60 / 30; w1 40 / 20 |",
        ] {
            assert!(md.contains(row), "{row} in {md}");
        }
        // A report from before several workers still reads, and says NA.
        let old: Report = serde_json::from_str(r#"{"quick": true, "churn": {"lost": 0}}"#).unwrap();
        assert!(
            old.line().contains(" handover_ns=NA churn2_lost=NA "),
            "{}",
            old.line()
        );
        assert!(
            old.line()
                .ends_with(" harness_ceiling_mpps=NA nat_core_ns=NA fullnat_core_ns=NA dr_core_ns=NA tun_core_ns=NA nat_new_conn_ns=NA fullnat_new_conn_ns=NA fullnat_classify_ns=NA fullnat_lookup_ns=NA fullnat_rewrite_ns=NA fullnat_output_ns=NA fullnat_toa_core_ns=NA"),
            "{}",
            old.line()
        );
        assert!(!old.markdown().contains("Several workers"));
    }

    #[test]
    fn ceiling_and_stages_reach_the_table_and_the_line() {
        let mut r = Report::new(true);
        r.testpmd.push(Testpmd {
            mode: "5tswap".into(),
            mpps: Some(40.0),
            note: String::new(),
        });
        r.ceiling = Some(Ceiling {
            flows: 1000,
            mpps: Some(20.0),
            runs: vec![19.0, 20.0],
            note: String::new(),
        });
        r.stages.push(Stages {
            mode: "fullnat".into(),
            flows: 1000,
            classify_ns: Some(10.0),
            lookup_ns: Some(12.5),
            rewrite_ns: Some(40.0),
            core_ns: Some(62.5),
            pipeline_ns: Some(100.0),
            output_ns: Some(37.5),
            new_conn_ns: Some(250.0),
            toa_core_ns: Some(75.0),
            note: String::new(),
        });
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        let line = back.line();
        for kv in [
            " harness_ceiling_mpps=20.00 ",
            " fullnat_core_ns=62.5 ",
            " nat_core_ns=NA ",
            " fullnat_new_conn_ns=250.0 ",
            " fullnat_classify_ns=10.0 fullnat_lookup_ns=12.5 fullnat_rewrite_ns=40.0 fullnat_output_ns=37.5 fullnat_toa_core_ns=75.0",
        ] {
            assert!(line.contains(kv), "{kv} in {line}");
        }
        let md = back.markdown();
        for row in [
            "| harness ceiling: the same generator and rings, a worker that only swaps MACs, 1000 flows | 20.00 Mpps (50 ns/pkt) | 0.50 |",
            "| FULLNAT | 10.0 | 12.5 | 40.0 | 62.5 | 37.5 | 100.0 | 250.0 | 75.0 |",
        ] {
            assert!(md.contains(row), "{row} in {md}");
        }
    }
}
