//! `dpvs-bench memif`: the two-process run. It starts a real `dpvsd` whose two
//! ports are net_memif servers (one service per forwarding mode), runs `dpvs-bench
//! gen` in a second process (its own EAL, its own `--file-prefix`) as the memif
//! client, collects gen's JSON, and stops dpvsd by PID. Both processes' runtime
//! directories and the run directory are removed, also on failure.
//!
//! Cores: dpvsd's worker on lcore 1, its main thread and gRPC on 0; gen's loop
//! on 0 (dpvsd's main lcore is idle while traffic flows).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::env::remove_runtime_dir;
use crate::gen::GenResult;

/// The services dpvsd gets: (mode, VIP port); real servers 192.168.0.11-14.
pub const SERVICES: [(&str, u16); 4] = [("nat", 80), ("fullnat", 81), ("dr", 82), ("tun", 83)];
const NRS: usize = 4;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct MemifRun {
    pub flows: u32,
    pub seconds: f64,
    pub results: Vec<GenResult>,
    /// dpvsd's non-zero counters after the runs (`dpvsctl stats` lines), if read.
    pub dpvsd_stats: Vec<String>,
    pub loadavg: String,
    pub note: String,
}

/// dpvs.toml for the memif director.
pub fn config(dir: &Path, prefix: &str) -> String {
    let mut s = format!(
        r#"# written by dpvs-bench memif
[eal]
args = ["--no-huge", "--no-pci", "-m", "1024", "-l", "0,1", "--file-prefix", "{prefix}", "--log-level", "3"]
[workers]
cores = [1]
[dataplane]
mbufs = 16383
[[port]]
name = "dpdk0"
device = "net_memif0,role=server,id=0,socket={d}/memif0.sock"
queues = 1
addresses = ["10.0.0.1/24"]
[[port]]
name = "dpdk1"
device = "net_memif1,role=server,id=0,socket={d}/memif1.sock"
queues = 1
addresses = ["192.168.0.1/24"]
[[route]]
prefix = "0.0.0.0/0"
via = "10.0.0.2"
port = "dpdk0"
[control]
listen = "unix:{d}/dpvs.sock"
"#,
        d = dir.display()
    );
    for (mode, vport) in SERVICES {
        let rport = if matches!(mode, "nat" | "fullnat") {
            8080
        } else {
            vport
        };
        s.push_str(&format!(
            "\n[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = {vport}\nscheduler = \"rr\"\n"
        ));
        for i in 0..NRS {
            s.push_str(&format!(
                "[[service.dest]]\naddr = \"192.168.0.{}\"\nport = {rport}\nmode = \"{mode}\"\n",
                11 + i
            ));
        }
    }
    s
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// A process we started; stopped by PID on drop (TERM, bounded wait, KILL).
struct Proc {
    child: Child,
    what: &'static str,
}

impl Proc {
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("memif: {} did not stop on TERM; killing", self.what);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Removes the run directory and dpvsd's EAL runtime directory on drop.
struct Cleanup {
    dir: PathBuf,
    prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        remove_runtime_dir(&self.prefix);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn dpvsctl(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("timeout")
        .arg("10")
        .arg(sibling("dpvsctl"))
        .arg("--server")
        .arg(format!("unix:{}/dpvs.sock", dir.display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Start dpvsd on memif, run gen against it (`runs` as gen's `--run` values),
/// stop dpvsd.
pub fn run(
    runs: &[String],
    flows: u32,
    seconds: f64,
    dpvsd: Option<&str>,
) -> Result<MemifRun, String> {
    let pid = std::process::id();
    let dir = PathBuf::from(format!("/tmp/dpvs-bench-memif-{pid}"));
    let prefix = format!("dpvs-bench-d-{pid}");
    let _cleanup = Cleanup {
        dir: dir.clone(),
        prefix: prefix.clone(),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cfg = dir.join("dpvs.toml");
    std::fs::write(&cfg, config(&dir, &prefix)).map_err(|e| e.to_string())?;
    let bin = dpvsd.map(PathBuf::from).unwrap_or_else(|| sibling("dpvsd"));
    if !bin.exists() {
        return Err(format!(
            "{}: not found (cargo build --release -p dpvs-control, or --dpvsd PATH)",
            bin.display()
        ));
    }
    let log = dir.join("dpvsd.log");
    let logf = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let child = Command::new(&bin)
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(logf.try_clone().map_err(|e| e.to_string())?)
        .stderr(logf)
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let mut d = Proc {
        child,
        what: "dpvsd",
    };
    let log_tail = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(st)) = d.child.try_wait() {
            return Err(format!(
                "dpvsd exited during start-up ({st}): {}",
                log_tail()
            ));
        }
        if dpvsctl(&dir, &["-Ln"]).is_some() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("dpvsd did not answer within 30 s: {}", log_tail()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let gen_prefix = format!("dpvs-bench-g-{pid}");
    let mut cmd = Command::new("timeout");
    cmd.args([
        "-k",
        "5",
        &format!("{}", (seconds * runs.len() as f64 + 60.0) as u64),
    ])
    .arg(std::env::current_exe().map_err(|e| e.to_string())?)
    .arg("gen")
    .arg("--client")
    .arg(format!(
        "net_memif0,role=client,id=0,socket={}/memif0.sock",
        dir.display()
    ))
    .arg("--server")
    .arg(format!(
        "net_memif1,role=client,id=0,socket={}/memif1.sock",
        dir.display()
    ))
    .arg(format!(
        "--eal=--no-huge --no-pci -m 1024 -l 0 --log-level 3 --file-prefix {gen_prefix}"
    ))
    .args(["--flows", &flows.to_string()])
    .args(["--seconds", &seconds.to_string()])
    .arg("--json");
    for r in runs {
        cmd.args(["--run", r]);
    }
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("gen: {e}"));
    remove_runtime_dir(&gen_prefix);
    let out = out?;
    let mut res = MemifRun {
        flows,
        seconds,
        loadavg: std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_string(),
        ..Default::default()
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Ok(r) = serde_json::from_str::<GenResult>(line) {
            res.results.push(r);
        }
    }
    // Non-zero counters of the director (drops by reason, port counters).
    if let Some(stats) = dpvsctl(&dir, &["stats"]) {
        res.dpvsd_stats = stats
            .lines()
            .filter(|l| {
                l.rsplit(' ')
                    .next()
                    .is_some_and(|v| v != "0" && v.parse::<u64>().is_ok())
            })
            .map(str::to_string)
            .collect();
    }
    d.stop();
    if !out.status.success() {
        res.note = format!("gen exited with {}; dpvsd log: {}", out.status, log_tail());
    }
    if res.results.is_empty() {
        return Err(format!("gen produced no results: {}", res.note));
    }
    Ok(res)
}
