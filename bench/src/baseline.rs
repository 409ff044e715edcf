//! The baseline: DPDK's own `dpdk-testpmd` forwarding on one core of this
//! machine (lcore 1, as our worker), between two net_null ports with `copy=1`,
//! in 5tswap and macswap modes. Every pipeline figure is also given as a ratio
//! to it.

use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::env::remove_runtime_dir;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Testpmd {
    pub mode: String,
    /// Packets forwarded per second by the one forwarding core (both ports summed).
    pub mpps: Option<f64>,
    pub note: String,
}

pub const BINARY: &str = "dpdk-testpmd";

/// Run testpmd for `seconds` in `mode` and take the best 1 s stats period.
pub fn run(mode: &str, seconds: u32) -> Testpmd {
    let mut res = Testpmd {
        mode: mode.into(),
        ..Default::default()
    };
    let prefix = format!("dpvs-bench-tpmd-{}-{mode}", std::process::id());
    let out = Command::new("timeout")
        .args(["-k", "5", "-s", "INT", &seconds.to_string(), BINARY])
        .args(["-l", "0,1", "--no-huge", "--no-pci", "-m", "512"])
        .args(["--file-prefix", &prefix, "--log-level", "3"])
        .args(["--vdev", "net_null0,copy=1", "--vdev", "net_null1,copy=1"])
        .arg("--")
        .arg(format!("--forward-mode={mode}"))
        .args(["--auto-start", "--stats-period", "1", "--nb-cores=1"])
        .arg("--total-num-mbufs=16384")
        .stdin(Stdio::null())
        .output();
    remove_runtime_dir(&prefix);
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            res.note = format!("cannot run {BINARY}: {e} (apt-get install dpdk-dev)");
            return res;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    res.mpps = parse_best(&text);
    if res.mpps.is_none() {
        res.note = format!(
            "no Rx-pps in testpmd output (exit {:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    res
}

/// testpmd prints, each period, `Rx-pps:` for port 0 then port 1: the forwarding
/// core's rate is their sum. Best period, in Mpps.
pub fn parse_best(text: &str) -> Option<f64> {
    let rx: Vec<f64> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("Rx-pps:")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect();
    rx.chunks_exact(2)
        .map(|p| (p[0] + p[1]) / 1e6)
        .fold(None, |b: Option<f64>, x| Some(b.map_or(x, |b| b.max(x))))
        .filter(|&b| b > 0.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_both_ports_of_the_best_period() {
        let t = "  Rx-pps:            0          Rx-bps:            0\n  Tx-pps: 0\n  Rx-pps: 0 Rx-bps: 0\n\
                 Rx-pps:      8389488          Rx-bps:            0\n Tx-pps: 1\n Rx-pps:      8389502  Rx-bps: 0\n";
        let b = super::parse_best(t).unwrap();
        assert!((b - 16.77899).abs() < 1e-3, "{b}");
    }
}
