//! The results of one run: the markdown table, JSON, and the `bench:` line.

use serde::Serialize;

use crate::baseline::Testpmd;
use crate::gen::GenResult;
use crate::memory::{Maglev, Memory};
use crate::pipeline::{Churn, Cps, Established, Idle};

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

#[derive(Debug, Clone, Serialize, Default)]
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
    pub errors: Vec<String>,
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
            ..Default::default()
        }
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
        for e in &self.errors {
            s.push_str(&format!("\nERROR: {e}\n"));
        }
        s
    }

    /// The one line for scripts.
    pub fn line(&self) -> String {
        let r = |v: Option<f64>| opt(v, 2);
        let n = |v: Option<f64>| v.map_or("NA".into(), |x| format!("{x:.0}"));
        let cps = self.cps_of("fullnat").or(self.cps_of("nat"));
        format!(
            "bench: fullnat_1k_ratio={} fullnat_1m_ratio={} fullnat_1k_mpps={} cps_per_core={} bytes_per_conn={} churn_lost={} nat_1k_ratio={} nat_1m_ratio={} nat_1k_mpps={} nat_1m_mpps={} dr_1k_mpps={} tun_1k_mpps={} nat_cps={} testpmd_5tswap_mpps={} testpmd_macswap_mpps={}",
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
        )
    }

    pub fn write(&self, dir: &str) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
        let json = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(format!("{dir}/bench.json"), json).map_err(|e| e.to_string())?;
        let md = format!("{}\n```\n{}\n```\n", self.markdown(), self.line());
        std::fs::write(format!("{dir}/bench.md"), md).map_err(|e| e.to_string())?;
        Ok(())
    }
}
