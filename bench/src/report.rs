//! The results of one run: the markdown table, JSON, and the `bench:` line.

use serde::{Deserialize, Serialize};

use crate::baseline::Testpmd;
use crate::churn::Churn;
use crate::gen::GenResult;
use crate::memif::MemifRun;
use crate::memory::{Maglev, Memory};
use crate::pipeline::{Cps, Established, Idle};
use crate::plot::{Bar, Chart};

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
    /// /proc/loadavg when the run started and ended (other work on the machine).
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub errors: Vec<String>,
}

/// What deploy/netns/compare.sh prints.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Netns {
    pub seconds: u32,
    pub loadavg: String,
    pub dpvsd_cps: Option<f64>,
    pub dpvsd_gbps: Option<f64>,
    pub dpvsd_http_errors: Option<f64>,
    pub dpvsd_adapt_cps: Option<f64>,
    pub dpvsd_adapt_gbps: Option<f64>,
    pub dpvsd_adapt_http_errors: Option<f64>,
    pub kernel_cps: Option<f64>,
    pub kernel_gbps: Option<f64>,
    pub kernel_http_errors: Option<f64>,
    pub cps_ratio: Option<f64>,
    pub cps_ratio_adapt: Option<f64>,
    pub gbps_ratio: Option<f64>,
    pub gbps_ratio_adapt: Option<f64>,
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

    pub fn ratio(&self, mode: &str, big: bool) -> Option<f64> {
        Some(self.est_mpps(mode, big)? / self.testpmd_mpps("5tswap")?)
    }

    pub fn cps_of(&self, mode: &str) -> Option<f64> {
        self.cps.iter().find(|c| c.mode == mode)?.cps
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
        for e in &self.established {
            let target = match (e.mode.as_str(), e.flows > 1000) {
                ("fullnat", false) => ">= 0.8 x",
                ("fullnat", true) => ">= 0.6 x",
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
            s.push_str("| load balancer | HTTP conn/s (wrk -t1 -c32, Connection: close) | failed requests | iperf3, 1 stream | cps ratio to kernel | throughput ratio to kernel |\n|---|---|---|---|---|---|\n");
            s.push_str(&format!(
                "| dpvsd, busy polling | {} | {} | {} Gbit/s | {} | {} |\n",
                v(n.dpvsd_cps, 0),
                v(n.dpvsd_http_errors, 0),
                v(n.dpvsd_gbps, 2),
                v(n.cps_ratio, 2),
                v(n.gbps_ratio, 2)
            ));
            s.push_str(&format!(
                "| dpvsd, adaptive_poll | {} | {} | {} Gbit/s | {} | {} |\n",
                v(n.dpvsd_adapt_cps, 0),
                v(n.dpvsd_adapt_http_errors, 0),
                v(n.dpvsd_adapt_gbps, 2),
                v(n.cps_ratio_adapt, 2),
                v(n.gbps_ratio_adapt, 2)
            ));
            s.push_str(&format!(
                "| kernel nftables DNAT | {} | {} | {} Gbit/s | 1.00 | 1.00 |\n",
                v(n.kernel_cps, 0),
                v(n.kernel_http_errors, 0),
                v(n.kernel_gbps, 2)
            ));
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
        let line = format!(
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
        r.netns = Some(Netns {
            kernel_cps: Some(8000.0),
            dpvsd_adapt_cps: Some(12000.0),
            cps_ratio_adapt: Some(1.5),
            ..Default::default()
        });
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        let md = back.markdown();
        assert!(
            md.contains("| NAT :80 flat out | 2.000 Mpps | 2.000 Mpps | 0.100 |"),
            "{md}"
        );
        assert!(md.contains("| dpvsd, adaptive_poll | 12000 |"), "{md}");
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
}
