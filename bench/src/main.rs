//! `dpvs-bench`: pktgen-style benchmark runs of the director.
//!
//! `run` does everything (testpmd baseline, memory, Maglev, the in-process
//! pipeline) and prints the table and one `bench:` line for scripts; `--out`
//! also writes JSON and markdown. The other subcommands run one part.

mod baseline;
mod ceiling;
mod churn;
mod env;
mod frames;
mod gen;
mod genwire;
mod handover;
mod memif;
mod memory;
mod pipeline;
mod plot;
mod report;
mod stages;
mod workers;

use clap::{Parser, Subcommand};
use dataplane::ForwardMode;

use report::Report;

#[derive(Parser)]
#[command(name = "dpvs-bench", about = "Benchmarks of the dpvs director")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Everything: baseline, memory, Maglev and the pipeline scenarios.
    Run {
        /// Short runs (under two minutes).
        #[arg(long)]
        quick: bool,
        /// Directory for bench.json and bench.md (e.g. docs/bench).
        #[arg(long)]
        out: Option<String>,
        /// Workers of the several-worker runs (also run with 1, 2 and the
        /// powers of two in between); EAL lcore i goes on the i-th CPU this
        /// process may use (taskset), wrapping around.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(2..=32))]
        workers: u16,
    },
    /// Only the in-process pipeline scenarios.
    Pipeline {
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(2..=32))]
        workers: u16,
    },
    /// Only the several-worker scenarios of the pipeline (established flows
    /// through 1, 2 .. N workers, hand-over share and cost, churn with two
    /// workers).
    Workers {
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(2..=32))]
        workers: u16,
    },
    /// Only the per-stage figures of the LVS core (no EAL; `output` needs
    /// the pipeline's figures, so it is NA here).
    Stages {
        #[arg(long)]
        quick: bool,
        /// Only this mode (nat, fullnat, dr, tun).
        #[arg(long)]
        mode: Option<String>,
        /// Packets per timed run (default: the plan's); small counts suit
        /// `valgrind --tool=callgrind`, which counts instructions exactly.
        #[arg(long)]
        packets: Option<u64>,
        /// Only the new-connection figure (SYNs of unseen flows).
        #[arg(long)]
        new_only: bool,
        /// Without the new-connection figure.
        #[arg(long, conflicts_with = "new_only")]
        established_only: bool,
        /// Established flows of the per-stage figures (default 1000; e.g.
        /// 1000000 for the connection table out of cache, as the
        /// pipeline's 1 M-flow runs).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4_000_000))]
        flows: Option<u32>,
        /// Only the whole-connection figure: `--packets` connections each
        /// through the pipeline's cps exchange (SYN, SYN-ACK, ACK, request,
        /// reply, FIN, FIN, ACK) and freed by expiry; NAT and FULLNAT.
        #[arg(long, conflicts_with_all = ["new_only", "established_only"])]
        whole_conns: bool,
        /// The established packets are the handshake's ACK replayed (FULLNAT:
        /// TOA in every packet) instead of segments past the first data.
        #[arg(long, conflicts_with_all = ["new_only", "whole_conns"])]
        toa_every_packet: bool,
    },
    /// Only the dpdk-testpmd baseline.
    Testpmd {
        #[arg(long, default_value_t = 5)]
        seconds: u32,
    },
    /// Memory per connection (the parent spawns `--child N`).
    Memory {
        #[arg(long)]
        child: Option<u64>,
        #[arg(long, default_value = "1000000")]
        conns: Vec<u64>,
    },
    /// pktgen-style generator on two DPDK ports (client side, real-server side)
    /// against a director in another process or on another machine.
    Gen(GenArgs),
    /// dpvsd on memif ports in its own process, `gen` against it.
    Memif {
        #[arg(long = "run", default_values_t = default_memif_runs())]
        runs: Vec<String>,
        #[arg(long, default_value_t = 1000)]
        flows: u32,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// dpvsd binary (default: next to this one).
        #[arg(long)]
        dpvsd: Option<String>,
    },
    /// dpvsd NAT vs kernel nftables DNAT in network namespaces
    /// (deploy/netns/compare.sh: wrk Connection: close, iperf3).
    Netns {
        #[arg(long, default_value_t = 5)]
        seconds: u32,
    },
    /// Redraw the plots (and bench.md) of a run from its bench.json.
    Plot {
        /// Directory holding bench.json; the plots are written next to it.
        #[arg(long, default_value = "docs/bench")]
        dir: String,
    },
    /// Maglev table build time.
    Maglev {
        #[arg(long, default_value_t = 1000)]
        dests: usize,
        #[arg(long, default_value_t = 65537)]
        size: u32,
    },
}

#[derive(clap::Args)]
struct GenArgs {
    /// Client-side port: vdev spec (net_memif0,role=client,socket=...) or PCI address.
    #[arg(long)]
    client: String,
    /// Real-server-side port: vdev spec or PCI address.
    #[arg(long)]
    server: String,
    /// EAL arguments, space separated (a --file-prefix is added when missing).
    #[arg(
        long,
        allow_hyphen_values = true,
        default_value = "--no-huge --no-pci -m 1024 -l 0 --log-level 3"
    )]
    eal: String,
    /// MODE[:VPORT][@PPS], repeatable: nat, fullnat, dr, tun; PPS 0 = flat out.
    #[arg(long = "run", default_value = "nat:80")]
    runs: Vec<String>,
    /// Packets per second for runs without @PPS (0 = flat out).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Client flows (connections) per run.
    #[arg(long, default_value_t = 1000)]
    flows: u32,
    /// Length of each run's data phase.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Real servers behind each service (192.168.0.11 ..).
    #[arg(long, default_value_t = 4)]
    rs: usize,
    /// One JSON object per run on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

fn default_memif_runs() -> Vec<String> {
    let mut v: Vec<String> = memif::SERVICES
        .iter()
        .map(|(m, p)| format!("{m}:{p}"))
        .collect();
    v.push("nat:80@100000".into());
    v.push("fullnat:81@100000".into());
    v
}

fn gen_cmd(a: GenArgs) -> Result<(), String> {
    if a.rs == 0 || a.rs > 200 {
        return Err(format!("--rs {}: must be 1..=200", a.rs));
    }
    let opts = gen::GenOpts {
        client: a.client,
        server: a.server,
        eal: a.eal.split_whitespace().map(str::to_string).collect(),
        runs: a
            .runs
            .iter()
            .map(|r| gen::parse_run(r, a.rate))
            .collect::<Result<_, _>>()?,
        flows: a.flows,
        seconds: a.seconds,
        nrs: a.rs,
    };
    let res = gen::run(&opts)?;
    for r in &res {
        if a.json {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        } else {
            println!("{}", report::gen_line(r));
        }
    }
    Ok(())
}

/// How long and how often each scenario runs.
#[derive(Clone, Copy)]
pub struct Plan {
    pub quick: bool,
    pub packets: u64,
    pub repeats: usize,
    pub big_flows: u32,
    pub cps_conns: u32,
    pub cps_repeats: usize,
    pub churn_seconds: f64,
    pub idle_samples: usize,
    pub testpmd_seconds: u32,
    pub memory_conns: &'static [u64],
    /// Several workers: most workers, packets per timed run and repeats.
    pub workers: usize,
    pub workers_packets: u64,
    pub workers_repeats: usize,
    /// Packets per run of the hand-over ring test (best of `repeats`).
    pub ring_packets: u64,
}

impl Plan {
    fn new(quick: bool, workers: usize) -> Plan {
        if quick {
            Plan {
                quick,
                packets: 4_000_000,
                repeats: 3,
                big_flows: 1_000_000,
                cps_conns: 40_960,
                cps_repeats: 2,
                churn_seconds: 2.0,
                idle_samples: 200,
                testpmd_seconds: 4,
                memory_conns: &[1_000_000],
                workers,
                workers_packets: 2_000_000,
                workers_repeats: 2,
                ring_packets: 10_000_000,
            }
        } else {
            Plan {
                quick,
                packets: 15_000_000,
                repeats: 5,
                big_flows: 1_000_000,
                cps_conns: 204_800,
                cps_repeats: 3,
                churn_seconds: 5.0,
                idle_samples: 1000,
                testpmd_seconds: 7,
                memory_conns: &[1_000_000, 10_000_000],
                workers,
                workers_packets: 8_000_000,
                workers_repeats: 4,
                ring_packets: 30_000_000,
            }
        }
    }

    /// Worker counts of the several-worker runs: 1, 2, 4, .. and the most.
    pub fn worker_counts(&self) -> Vec<usize> {
        let mut v: Vec<usize> = std::iter::successors(Some(1usize), |n| Some(n * 2))
            .take_while(|&n| n < self.workers)
            .collect();
        v.push(self.workers);
        v
    }
}

const MODES: [ForwardMode; 4] = [
    ForwardMode::Nat,
    ForwardMode::FullNat,
    ForwardMode::Dr,
    ForwardMode::Tun,
];

/// The stage figures alone.
/// What `dpvs-bench stages` was asked for.
struct StageArgs {
    quick: bool,
    only: Option<String>,
    packets: Option<u64>,
    new_only: bool,
    established_only: bool,
    whole_conns: bool,
    toa_every: bool,
    flows: Option<u32>,
}

fn stages_only(a: StageArgs) -> Result<(), String> {
    let StageArgs {
        quick,
        only,
        packets,
        new_only,
        established_only,
        whole_conns,
        toa_every,
        flows,
    } = a;
    let mut plan = Plan::new(quick, 2);
    if let Some(p) = packets {
        plan.packets = p.max(32);
    }
    if let Some(m) = &only {
        if !MODES.iter().any(|&x| pipeline::mode_name(x) == m) {
            return Err(format!("--mode {m}: one of nat, fullnat, dr, tun"));
        }
    }
    for mode in MODES {
        if only
            .as_deref()
            .is_some_and(|m| m != pipeline::mode_name(mode))
        {
            continue;
        }
        if whole_conns {
            if matches!(mode, ForwardMode::Dr | ForwardMode::Tun) {
                if only.is_some() {
                    return Err("--whole-conns: NAT and FULLNAT only".into());
                }
                continue;
            }
            let ns = stages::whole_conns(mode, plan.packets, plan.repeats)?;
            println!(
                "stages {}: whole connection {ns:.1} ns",
                pipeline::mode_name(mode)
            );
            continue;
        }
        if new_only {
            let ns = stages::new_conns(mode, plan.packets, plan.repeats)?;
            println!(
                "stages {}: new connection {ns:.1} ns",
                pipeline::mode_name(mode)
            );
            continue;
        }
        // One kind of established packet per run (callgrind counts the
        // whole run): segments past the first data, or with
        // `--toa-every-packet` the handshake's ACK.
        let mut s = stages::measure_seg(
            mode,
            flows.unwrap_or(1000),
            plan.packets,
            plan.repeats,
            None,
            toa_every,
        )?;
        if toa_every {
            s.toa_core_ns = s.core_ns;
        }
        if !established_only {
            s.new_conn_ns = Some(stages::new_conns(mode, plan.packets, plan.repeats)?);
        }
        println!("{}", stages::line(&s));
    }
    Ok(())
}

/// What a `run` covers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    All,
    Pipeline,
    Workers,
}

fn pipeline(plan: &Plan, rep: &mut Report, part: Part) -> Result<(), String> {
    let mut env = env::Env::init(plan.workers)?;
    rep.lcores = env.lcores.clone();
    if part == Part::Workers {
        return several_workers(plan, rep, &mut env);
    }
    eprintln!("pipeline: harness ceiling (a worker that only swaps MACs)");
    match ceiling::measure(&mut env, 1000, plan.packets, plan.repeats) {
        Ok(c) => rep.ceiling = Some(c),
        Err(e) => rep.errors.push(e),
    }
    for mode in MODES {
        for flows in [1000, plan.big_flows] {
            eprintln!(
                "pipeline: {} established, {flows} flows",
                pipeline::mode_name(mode)
            );
            let r = pipeline::established(&mut env, mode, flows, plan.packets, plan.repeats)?;
            let unsupported = r.mpps.is_none();
            rep.established.push(r);
            if unsupported {
                break;
            }
        }
    }
    for mode in MODES {
        eprintln!("pipeline: {} stages", pipeline::mode_name(mode));
        let p = rep.est_ns(pipeline::mode_name(mode), false);
        let mut s = stages::measure(mode, 1000, plan.packets, plan.repeats, p)?;
        s.new_conn_ns = Some(stages::new_conns(mode, plan.packets, plan.repeats)?);
        eprintln!("{}", stages::line(&s));
        rep.stages.push(s);
    }
    for mode in [ForwardMode::Nat, ForwardMode::FullNat] {
        eprintln!(
            "pipeline: {} connections per second",
            pipeline::mode_name(mode)
        );
        rep.cps.push(pipeline::cps(
            &mut env,
            mode,
            plan.cps_conns,
            plan.cps_repeats,
        )?);
    }
    eprintln!("pipeline: configuration churn");
    let one = churn::ChurnOpts {
        workers: 1,
        mh_dests: 0,
    };
    rep.churn = Some(churn::churn(&mut env, 1000, plan.churn_seconds, one)?);
    for adaptive in [false, true] {
        eprintln!("pipeline: idle behaviour, adaptive_poll={adaptive}");
        rep.idle
            .push(pipeline::idle(&mut env, adaptive, plan.idle_samples)?);
    }
    several_workers(plan, rep, &mut env)
}

/// The several-worker scenarios (docs/benchmarks.md, "Several workers").
fn several_workers(plan: &Plan, rep: &mut Report, env: &mut env::Env) -> Result<(), String> {
    rep.workers = workers::all(
        env,
        &plan.worker_counts(),
        1000,
        plan.workers_packets,
        plan.workers_repeats,
    )?;
    eprintln!("pipeline: configuration churn, 2 workers, 1000-dest mh service");
    let two = churn::ChurnOpts {
        workers: 2,
        mh_dests: 1000,
    };
    rep.churn2 = Some(churn::churn(env, 1000, plan.churn_seconds, two)?);
    env.use_workers(1)?;
    eprintln!("hand-over: ring path between two lcores");
    let mut h = handover::Handover {
        ring: Some(handover::ring_cost(plan.ring_packets, plan.repeats)?),
        pipeline: None,
    };
    eprintln!("hand-over: in the pipeline, 0 % vs 100 %");
    h.pipeline = Some(handover::pipeline(
        env,
        1000,
        plan.workers_packets,
        plan.workers_repeats,
    )?);
    rep.handover = Some(h);
    Ok(())
}

fn run(quick: bool, out: Option<String>, part: Part, workers: u16) -> Result<(), String> {
    let plan = Plan::new(quick, usize::from(workers));
    let only_pipeline = part != Part::All;
    let mut rep = Report::new(quick);
    if !only_pipeline {
        for mode in ["5tswap", "macswap"] {
            eprintln!("baseline: dpdk-testpmd {mode}");
            rep.testpmd.push(baseline::run(mode, plan.testpmd_seconds));
        }
        for &n in plan.memory_conns {
            eprintln!("memory: {n} connections");
            rep.memory.push(memory::measure(n)?);
        }
        eprintln!("maglev: build 1000 dests, M=65537");
        rep.maglev = Some(memory::maglev(1000, 65537, if quick { 5 } else { 10 }));
    }
    let res = pipeline(&plan, &mut rep, part);
    if let Err(e) = &res {
        rep.errors.push(e.clone());
    }
    if !only_pipeline {
        eprintln!("memif: dpvsd in its own process, dpvs-bench gen against it");
        let (runs, seconds) = if quick {
            (
                vec![
                    "nat:80".to_string(),
                    "fullnat:81".to_string(),
                    "nat:80@100000".to_string(),
                ],
                1.5,
            )
        } else {
            (default_memif_runs(), 3.0)
        };
        match memif::run(&runs, 1000, seconds, None) {
            Ok(m) => rep.memif = Some(m),
            Err(e) => rep.errors.push(format!("memif: {e}")),
        }
    }
    if !only_pipeline && !quick {
        eprintln!("netns: dpvsd vs kernel nftables DNAT (deploy/netns/compare.sh)");
        match netns(5) {
            Ok(n) => rep.netns = Some(n),
            Err(e) => rep.errors.push(format!("netns: {e}")),
        }
    }
    rep.loadavg_end = report::loadavg();
    println!("{}", rep.markdown());
    if let Some(dir) = out {
        rep.write(&dir)?;
        eprintln!("wrote {dir}/bench.json and {dir}/bench.md");
    }
    println!("{}", rep.line());
    res
}

/// Run deploy/netns/compare.sh (it takes the e2e lock and cleans up after itself).
fn netns(seconds: u32) -> Result<report::Netns, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/netns/compare.sh");
    let dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
        .ok_or("cannot locate this binary's directory")?;
    let out = std::process::Command::new("timeout")
        .args(["-k", "10", "1800", "bash", script, &seconds.to_string()])
        .env("DPVSD", dir.join("dpvsd"))
        .env("DPVSCTL", dir.join("dpvsctl"))
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("{script}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("{script} exited with {} and printed no result", out.status))?;
    serde_json::from_str(line).map_err(|e| format!("{script}: {e}: {line}"))
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Run {
            quick,
            out,
            workers,
        } => run(quick, out, Part::All, workers),
        Cmd::Pipeline { quick, workers } => run(quick, None, Part::Pipeline, workers),
        Cmd::Workers { quick, workers } => run(quick, None, Part::Workers, workers),
        Cmd::Stages {
            quick,
            mode,
            packets,
            new_only,
            established_only,
            whole_conns,
            toa_every_packet,
            flows,
        } => stages_only(StageArgs {
            quick,
            only: mode,
            packets,
            new_only,
            established_only,
            whole_conns,
            toa_every: toa_every_packet,
            flows,
        }),
        Cmd::Testpmd { seconds } => {
            for mode in ["5tswap", "macswap"] {
                let r = baseline::run(mode, seconds);
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            }
            Ok(())
        }
        Cmd::Memory { child, conns } => match child {
            Some(n) => {
                let m = memory::child(n);
                println!("{}", serde_json::to_string(&m).unwrap_or_default());
                Ok(())
            }
            None => conns.iter().try_for_each(|&n| {
                let m = memory::measure(n)?;
                println!("{}", serde_json::to_string(&m).unwrap_or_default());
                Ok(())
            }),
        },
        Cmd::Gen(a) => gen_cmd(a),
        Cmd::Memif {
            runs,
            flows,
            seconds,
            dpvsd,
        } => memif::run(&runs, flows, seconds, dpvsd.as_deref()).map(|m| {
            for r in &m.results {
                println!("{}", report::gen_line(r));
            }
            for l in &m.dpvsd_stats {
                println!("dpvsd: {l}");
            }
        }),
        Cmd::Netns { seconds } => netns(seconds).map(|n| {
            println!("{}", serde_json::to_string(&n).unwrap_or_default());
        }),
        Cmd::Plot { dir } => std::fs::read_to_string(format!("{dir}/bench.json"))
            .map_err(|e| format!("{dir}/bench.json: {e}"))
            .and_then(|j| {
                serde_json::from_str::<Report>(&j).map_err(|e| format!("{dir}/bench.json: {e}"))
            })
            .and_then(|r| r.write(&dir)),
        Cmd::Maglev { dests, size } => {
            let m = memory::maglev(dests, size, 10);
            println!("{}", serde_json::to_string(&m).unwrap_or_default());
            Ok(())
        }
    };
    if let Err(e) = res {
        eprintln!("dpvs-bench: {e}");
        std::process::exit(1);
    }
}
