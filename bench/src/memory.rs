//! Memory per connection, and the Maglev table build time.
//!
//! The connection figure is measured in a child process (this binary, `memory
//! --child N`) so the resident-set delta is the table's alone: it creates a
//! worker's `ConnTable` for N connections, fills it, and reports RSS before and
//! after next to the table's own accounting.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Instant;

use conntrack::{ConnTable, Direction, NewConn, TcpFlags, Timeouts, Tuple};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Memory {
    pub conns: u64,
    /// `ConnTable::bytes_per_conn()`: slot plus both index entries at the provisioned load.
    pub bytes_per_conn_static: u64,
    /// `memory_bytes() / conns` of a full table.
    pub bytes_per_conn_table: f64,
    /// Resident-set growth of a process creating and filling the table, per conn.
    pub bytes_per_conn_rss: f64,
    pub fill_seconds: f64,
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn conn(n: u64) -> NewConn {
    let cip = IpAddr::V4(Ipv4Addr::from(0x6440_0000u32 + (n / 50_000) as u32));
    let cport = 10_000 + (n % 50_000) as u16;
    let rip = IpAddr::V4(Ipv4Addr::from(0xc0a8_000b + (n % 4) as u32));
    NewConn {
        original: Tuple::tcp(cip, cport, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)), 80),
        reply: Tuple::tcp(rip, 8080, cip, cport),
        service: 1,
        dest: (n % 4) as u32,
        flags: 0,
        timeout_override_s: None,
    }
}

/// In the child: build and fill a table of `n`, report as JSON on stdout.
pub fn child(n: u64) -> Memory {
    let before = rss_bytes();
    let t = Instant::now();
    let mut ct = ConnTable::new(n as u32, 0x5eed_1234_abcd_9876, Timeouts::default());
    for i in 0..n {
        let id = ct.insert(conn(i), 0).expect("table sized for n");
        ct.on_packet(id, Direction::Original, TcpFlags::SYN, 0);
    }
    let fill = t.elapsed().as_secs_f64();
    let after = rss_bytes();
    let m = Memory {
        conns: n,
        bytes_per_conn_static: ConnTable::bytes_per_conn() as u64,
        bytes_per_conn_table: ct.memory_bytes() as f64 / n as f64,
        bytes_per_conn_rss: after.saturating_sub(before) as f64 / n as f64,
        fill_seconds: fill,
    };
    black_box(&ct);
    m
}

/// Run the child for `n` connections.
pub fn measure(n: u64) -> Result<Memory, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args(["memory", "--child", &n.to_string()])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "memory child for {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("memory child output: {e}"))
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Maglev {
    pub dests: usize,
    pub table_size: u32,
    pub best_ms: f64,
    pub runs_ms: Vec<f64>,
}

/// Build a Maglev table of `size` slots for `dests` dests, best of `repeats`.
pub fn maglev(dests: usize, size: u32, repeats: usize) -> Maglev {
    let ds: Vec<sched::Dest> = (0..dests)
        .map(|i| {
            let ip = Ipv4Addr::from(0x0a00_0000u32 + i as u32);
            sched::Dest::new(IpAddr::V4(ip), 8080, 1 + (i % 3) as u32)
        })
        .collect();
    let mut runs = Vec::new();
    let mut table_size = 0;
    for _ in 0..repeats {
        let t = Instant::now();
        let tab = sched::mh::MaglevTable::build(&ds, size);
        runs.push(t.elapsed().as_secs_f64() * 1e3);
        table_size = tab.size();
        black_box(tab);
    }
    Maglev {
        dests,
        table_size,
        best_ms: runs.iter().cloned().fold(f64::INFINITY, f64::min),
        runs_ms: runs,
    }
}
