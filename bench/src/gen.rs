//! `dpvs-bench gen`: a pktgen-style generator for a director in another process
//! or on another machine. Two DPDK ports: the client port sends client flows to
//! the VIP at a given rate (or flat out) and receives what comes back; the
//! server port plays every real server: it answers ARP for them and reflects
//! what the director forwards (swapped addresses and ports, as a server's stack
//! would), so NAT and FULLNAT replies travel back through the director. For DR
//! and TUN the server port is the end of the path.
//!
//! Each data segment carries a probe payload (flow, sequence, send time), so
//! the receiving side measures latency (round trip for NAT/FULLNAT, one way for
//! DR/TUN; one clock, one process) and checks that every frame belongs to the
//! flow it is addressed to. Every frame gets the cheap checks (genwire.rs), a
//! sample the full independent parse (checksums, TTL, TOA). Everything runs on
//! the main lcore: one loop, no locks.

use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use dataplane::dpdk::eal::Eal;
use dataplane::dpdk::mbuf::Mbuf;
use dataplane::dpdk::mempool::Mempool;
use dataplane::dpdk::port::{port_by_name, rx_burst, tx_burst, vdev_init, Port};
use dataplane::wire::PacketBuf;
use dataplane::ForwardMode;
use serde::{Deserialize, Serialize};

use crate::env::remove_runtime_dir;
use crate::frames::{self, flag};
use crate::genwire::{self as gw, Payload, Target};

const BURST: usize = 32;
/// Every n-th frame also gets the full etherparse check.
const FULL_CHECK_EVERY: u64 = 16;
/// Latency samples kept at most per run (preallocated).
const MAX_SAMPLES: usize = 2_000_000;
/// SYNs in flight at most while the connections are being opened.
const SYN_WINDOW: u64 = 512;

/// One measured run: a service (mode, VIP port) at one offered rate.
#[derive(Debug, Clone, Copy)]
pub struct RunSpec {
    pub mode: ForwardMode,
    pub vport: u16,
    /// Packets per second; 0 = flat out.
    pub rate: f64,
}

/// `MODE[:VPORT][@PPS]`, e.g. `nat`, `fullnat:81`, `nat:80@200000`.
pub fn parse_run(s: &str, default_rate: f64) -> Result<RunSpec, String> {
    let (head, rate) = match s.split_once('@') {
        Some((h, r)) => (
            h,
            r.parse::<f64>()
                .ok()
                .filter(|r| *r >= 0.0)
                .ok_or_else(|| format!("run {s:?}: rate {r:?} is not a number of packets/s"))?,
        ),
        None => (s, default_rate),
    };
    let (mode, vport) = match head.split_once(':') {
        Some((m, p)) => (
            m,
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("run {s:?}: port {p:?} is not 1..65535"))?,
        ),
        None => (head, 80),
    };
    let mode = match mode {
        "nat" => ForwardMode::Nat,
        "fullnat" => ForwardMode::FullNat,
        "dr" => ForwardMode::Dr,
        "tun" => ForwardMode::Tun,
        m => {
            return Err(format!(
                "run {s:?}: mode {m:?} is not nat, fullnat, dr or tun"
            ))
        }
    };
    Ok(RunSpec { mode, vport, rate })
}

pub struct GenOpts {
    /// Device of the client-side port: vdev spec or PCI address.
    pub client: String,
    pub server: String,
    /// EAL arguments (a `--file-prefix` is added when missing).
    pub eal: Vec<String>,
    pub runs: Vec<RunSpec>,
    pub flows: u32,
    pub seconds: f64,
    /// Real servers behind each service (192.168.0.11 ..).
    pub nrs: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct GenResult {
    pub mode: String,
    pub vport: u16,
    pub flows: u32,
    /// Requested rate, packets/s (0 = flat out).
    pub rate_pps: f64,
    pub seconds: f64,
    /// Connections opened (SYN answered) before the data phase.
    pub handshakes: u64,
    pub sent: u64,
    /// Frames the port did not take (tx ring full): not offered.
    pub tx_full: u64,
    pub delivered: u64,
    pub offered_mpps: f64,
    pub delivered_mpps: f64,
    pub loss: u64,
    pub loss_pct: f64,
    /// "round trip" (NAT/FULLNAT) or "one way" (DR/TUN).
    pub latency: String,
    pub lat_p50_us: Option<f64>,
    pub lat_p90_us: Option<f64>,
    pub lat_p99_us: Option<f64>,
    pub lat_p999_us: Option<f64>,
    pub lat_max_us: Option<f64>,
    pub samples: u64,
    /// Frames fully checked with the independent parser.
    pub full_checks: u64,
    pub invalid: u64,
    /// Frames neither side expected (ARP aside).
    pub unexpected: u64,
    pub per_rs: Vec<u64>,
    pub errors: Vec<String>,
}

struct Ports {
    client: Port,
    server: Port,
}

fn open(dev: &str, name: &str, pool: &Mempool) -> Result<Port, String> {
    let devname = dev.split(',').next().unwrap_or("").trim();
    let id = match port_by_name(devname) {
        Some(id) => id,
        None if dev.contains(',') || devname.starts_with("net_") => {
            vdev_init(dev).map_err(|e| format!("{name} port: {e}"))?;
            port_by_name(devname)
                .ok_or_else(|| format!("{name} port: {devname} created but not found"))?
        }
        None => {
            return Err(format!(
                "{name} port: no device {devname:?} (bound to vfio-pci and allowed with -a?)"
            ))
        }
    };
    Port::start(id, name, 1, 0, pool).map_err(|e| format!("{name} port {dev}: {e}"))
}

/// Run every spec in `opts`; results in order.
pub fn run(opts: &GenOpts) -> Result<Vec<GenResult>, String> {
    if opts.flows == 0 || opts.flows > 10_000_000 {
        return Err(format!("--flows {}: must be 1..=10000000", opts.flows));
    }
    if !(opts.seconds > 0.0 && opts.seconds <= 3600.0) {
        return Err(format!("--seconds {}: must be in (0, 3600]", opts.seconds));
    }
    let mut eal = opts.eal.clone();
    let prefix = match eal.iter().position(|a| a == "--file-prefix") {
        Some(i) => eal
            .get(i + 1)
            .cloned()
            .ok_or("--file-prefix without a value")?,
        None => {
            let p = format!("dpvs-gen-{}", std::process::id());
            eal.extend(["--file-prefix".to_string(), p.clone()]);
            p
        }
    };
    let res = (|| {
        let _eal = Eal::init(&eal)?;
        let pool = Mempool::new("gen_pool", 32767, 256, -1)?;
        let ports = Ports {
            client: open(&opts.client, "client", &pool)?,
            server: open(&opts.server, "server", &pool)?,
        };
        let out = Gen::new(&pool, &ports, opts.nrs).map(|mut g| {
            let mut out = Vec::new();
            for (k, spec) in opts.runs.iter().enumerate() {
                // Each run has its own clients: no run meets another's conns.
                let base = k as u32 * 10_000_000;
                eprintln!(
                    "gen: {} VIP port {}, {} flows, {}, {} s",
                    crate::pipeline::mode_name(spec.mode),
                    spec.vport,
                    opts.flows,
                    if spec.rate > 0.0 {
                        format!("{:.0} pps", spec.rate)
                    } else {
                        "flat out".into()
                    },
                    opts.seconds
                );
                out.push(g.measure(spec, base, opts.flows, opts.seconds));
            }
            out
        });
        drop(ports);
        drop(pool);
        out
    })();
    remove_runtime_dir(&prefix);
    res
}

struct Gen<'a> {
    pool: &'a Mempool,
    ports: &'a Ports,
    dir_mac: [[u8; 6]; 2],
    nrs: usize,
    t0: Instant,
}

/// Per-run counters and samples.
struct Acc {
    target: Target,
    exp_req: frames::Expect,
    exp_rep: frames::Expect,
    delivered: u64,
    opened: Vec<bool>,
    handshakes: u64,
    lat: Vec<u32>,
    sample_every: u64,
    full_checks: u64,
    seen: u64,
    invalid: u64,
    unexpected: u64,
    per_rs: Vec<u64>,
    errors: Vec<String>,
    base: u32,
}

impl Acc {
    fn error(&mut self, e: String) {
        self.invalid += 1;
        if self.errors.len() < 5 {
            self.errors.push(e);
        }
    }
}

fn now_ns(t0: Instant) -> u64 {
    t0.elapsed().as_nanos() as u64
}

impl<'a> Gen<'a> {
    fn new(pool: &'a Mempool, ports: &'a Ports, nrs: usize) -> Result<Gen<'a>, String> {
        let mut g = Gen {
            pool,
            ports,
            dir_mac: [[0; 6]; 2],
            nrs,
            t0: Instant::now(),
        };
        g.resolve()?;
        Ok(g)
    }

    fn send_one(&self, port: u16, bytes: &[u8]) {
        let Some(mut m) = self.pool.alloc() else {
            return;
        };
        if m.write_from(bytes) {
            let mut v: ArrayVec<Mbuf, 1> = ArrayVec::new();
            v.push(m);
            tx_burst(port, 0, &mut v);
        }
    }

    fn owner_client(ip: [u8; 4]) -> Option<[u8; 6]> {
        (ip == frames::GW_IP).then_some(frames::GW_MAC)
    }

    fn owner_server(&self, ip: [u8; 4]) -> Option<[u8; 6]> {
        (0..self.nrs)
            .map(frames::rs)
            .find(|r| r.0 == ip)
            .map(|r| r.1)
    }

    /// Answer ARP for the gateway and the real servers; learn the director's MACs.
    fn handle_arp(&mut self, side: usize, f: &[u8]) -> bool {
        let Some(gw::Arp { op, smac, sip, .. }) = gw::parse_arp(f) else {
            return false;
        };
        let dip = if side == 0 {
            frames::DIP_CLIENT
        } else {
            frames::DIP_SERVER
        };
        if sip == dip {
            self.dir_mac[side] = smac;
        }
        if op == 1 {
            let rep = if side == 0 {
                gw::answer_arp(f, Self::owner_client)
            } else {
                gw::answer_arp(f, |ip| self.owner_server(ip))
            };
            if let Some(r) = rep {
                let port = if side == 0 {
                    self.ports.client.id
                } else {
                    self.ports.server.id
                };
                self.send_one(port, &r);
            }
        }
        true
    }

    /// Wait for both links, then ask the director for its MACs (ARP for its DIPs).
    fn resolve(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !(self.ports.client.link_up() && self.ports.server.link_up()) {
            if Instant::now() > deadline {
                return Err("links not up within 15 s (is the director running?)".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last_ask = Instant::now() - Duration::from_secs(1);
        let mut rx: ArrayVec<Mbuf, BURST> = ArrayVec::new();
        while self.dir_mac.contains(&[0; 6]) {
            if Instant::now() > deadline {
                return Err(format!(
                    "the director did not answer ARP for {} / {} within 10 s",
                    std::net::Ipv4Addr::from(frames::DIP_CLIENT),
                    std::net::Ipv4Addr::from(frames::DIP_SERVER)
                ));
            }
            if last_ask.elapsed() > Duration::from_millis(200) {
                last_ask = Instant::now();
                let q0 = gw::arp(1, frames::GW_MAC, frames::GW_IP, [0; 6], frames::DIP_CLIENT);
                self.send_one(self.ports.client.id, &q0);
                let (rip, rmac) = frames::rs(0);
                let q1 = gw::arp(1, rmac, rip, [0; 6], frames::DIP_SERVER);
                self.send_one(self.ports.server.id, &q1);
            }
            for side in 0..2 {
                let id = [self.ports.client.id, self.ports.server.id][side];
                rx_burst(id, 0, &mut rx);
                for m in rx.drain(..) {
                    self.handle_arp(side, m.data());
                }
            }
        }
        Ok(())
    }

    /// Receive on both ports: ARP, requests at the server side (reflected or
    /// terminated), replies at the client side.
    fn poll(&mut self, acc: &mut Acc) {
        let mut rx: ArrayVec<Mbuf, BURST> = ArrayVec::new();
        let mut tx: ArrayVec<Mbuf, BURST> = ArrayVec::new();
        // Server side.
        rx_burst(self.ports.server.id, 0, &mut rx);
        if !rx.is_empty() {
            let now = now_ns(self.t0);
            for m in rx.drain(..) {
                let f = m.data();
                if self.handle_arp(1, f) {
                    continue;
                }
                acc.seen += 1;
                let full = acc.seen.is_multiple_of(FULL_CHECK_EVERY) || acc.seen <= 8;
                acc.full_checks += u64::from(full);
                match gw::check_request(f, &acc.target, &acc.exp_req, full) {
                    Err(e) => acc.error(format!("server side: {e}")),
                    Ok(p) => {
                        if let Some(i) = (0..self.nrs).find(|&i| frames::rs(i).1[..] == f[0..6]) {
                            acc.per_rs[i] += 1;
                        }
                        if acc.target.round_trip() {
                            if let Some(mut o) = self.pool.alloc() {
                                let ok = match o.append(f.len() + 8) {
                                    Some(buf) => gw::reflect(f, buf).map(|n| (n, buf.len())),
                                    None => None,
                                };
                                if let Some((n, cap)) = ok {
                                    o.trim(cap - n);
                                    tx.push(o);
                                }
                            }
                        } else {
                            self.arrived(acc, p, f, now);
                        }
                    }
                }
            }
            tx_burst(self.ports.server.id, 0, &mut tx);
        }
        // Client side.
        rx_burst(self.ports.client.id, 0, &mut rx);
        if !rx.is_empty() {
            let now = now_ns(self.t0);
            for m in rx.drain(..) {
                let f = m.data();
                if self.handle_arp(0, f) {
                    continue;
                }
                if !acc.target.round_trip() {
                    acc.unexpected += 1;
                    continue;
                }
                acc.seen += 1;
                let full = acc.seen.is_multiple_of(FULL_CHECK_EVERY) || acc.seen <= 8;
                acc.full_checks += u64::from(full);
                match gw::check_reply(f, &acc.exp_rep, full) {
                    Err(e) => acc.error(format!("client side: {e}")),
                    Ok((p, flow)) => {
                        if p.is_none() {
                            mark_open(acc, flow);
                        }
                        self.arrived(acc, p, f, now);
                    }
                }
            }
        }
    }

    /// A frame reached the end of its path: count it, sample its latency.
    fn arrived(&self, acc: &mut Acc, p: Option<Payload>, f: &[u8], now: u64) {
        match p {
            Some(p) => {
                acc.delivered += 1;
                if p.seq.is_multiple_of(acc.sample_every) && acc.lat.len() < acc.lat.capacity() {
                    acc.lat
                        .push(now.saturating_sub(p.ts_ns).min(u64::from(u32::MAX)) as u32);
                }
            }
            None if !acc.target.round_trip() => {
                // A SYN at the end of a one-way path: the connection is open.
                if let Some(q) = frames::quick(f) {
                    if let Some(flow) = frames::flow_of(q.src, q.sport) {
                        mark_open(acc, flow);
                    }
                }
            }
            None => {}
        }
    }

    fn measure(&mut self, spec: &RunSpec, base: u32, flows: u32, seconds: f64) -> GenResult {
        let target = Target::new(spec.mode, spec.vport, self.dir_mac, self.nrs);
        let expected = if spec.rate > 0.0 {
            spec.rate * seconds
        } else {
            10e6 * seconds
        };
        let mut acc = Acc {
            target,
            exp_req: gw::expect_request(&target),
            exp_rep: gw::expect_reply(&target),
            delivered: 0,
            opened: vec![false; flows as usize],
            handshakes: 0,
            lat: Vec::with_capacity(MAX_SAMPLES),
            sample_every: ((expected / MAX_SAMPLES as f64).ceil() as u64).max(1),
            full_checks: 0,
            seen: 0,
            invalid: 0,
            unexpected: 0,
            per_rs: vec![0; self.nrs],
            errors: Vec::new(),
            base,
        };
        let mut res = GenResult {
            mode: crate::pipeline::mode_name(spec.mode).into(),
            vport: spec.vport,
            flows,
            rate_pps: spec.rate,
            latency: if target.round_trip() {
                "round trip"
            } else {
                "one way"
            }
            .into(),
            ..Default::default()
        };
        self.open_conns(&mut acc, flows);
        res.handshakes = acc.handshakes;
        if acc.handshakes < u64::from(flows) {
            acc.errors.insert(
                0,
                format!(
                    "only {} of {flows} connections opened (SYN answered)",
                    acc.handshakes
                ),
            );
        }
        acc.delivered = 0;
        // Data phase.
        let mut tcp_seq = vec![gw::CLIENT_ISN + 1; flows as usize];
        let frame_len = gw::data_len();
        let (mut sent, mut tx_full, mut next, mut seq) = (0u64, 0u64, 0u32, 0u64);
        let start = Instant::now();
        let dur = Duration::from_secs_f64(seconds);
        let mut burst: ArrayVec<Mbuf, BURST> = ArrayVec::new();
        let mut room = BURST;
        loop {
            let el = start.elapsed();
            if el >= dur {
                break;
            }
            let want = if spec.rate > 0.0 {
                ((el.as_secs_f64() * spec.rate) as u64)
                    .saturating_sub(sent + tx_full)
                    .min(room as u64) as usize
            } else {
                room
            };
            if want > 0 {
                let ts = now_ns(self.t0);
                for _ in 0..want {
                    let Some(mut m) = self.pool.alloc() else {
                        break;
                    };
                    let Some(buf) = m.append(frame_len) else {
                        break;
                    };
                    let i = next as usize;
                    let p = Payload {
                        flow: base + next,
                        seq,
                        ts_ns: ts,
                    };
                    gw::write_data(&target, &p, tcp_seq[i], buf);
                    tcp_seq[i] = tcp_seq[i].wrapping_add(gw::PAYLOAD_LEN as u32);
                    seq += 1;
                    next += 1;
                    if next == flows {
                        next = 0;
                    }
                    burst.push(m);
                }
                let (ok, full) = tx_burst(self.ports.client.id, 0, &mut burst);
                sent += ok as u64;
                tx_full += full as u64;
                // A full tx ring: write only about what it took last time, so
                // the loop spends its time receiving, not on frames freed unsent.
                room = if full > 0 {
                    (ok * 2).clamp(1, BURST)
                } else {
                    BURST
                };
            }
            self.poll(&mut acc);
        }
        let elapsed = start.elapsed().as_secs_f64();
        // What is in flight still arrives; nothing new is sent.
        let mut last = Instant::now();
        let mut got = acc.delivered;
        while last.elapsed() < Duration::from_millis(300) {
            self.poll(&mut acc);
            if acc.delivered != got {
                got = acc.delivered;
                last = Instant::now();
            }
        }
        acc.lat.sort_unstable();
        let us = |q: f64| gw::percentile(&acc.lat, q).map(|v| f64::from(v) / 1e3);
        res.seconds = elapsed;
        res.sent = sent;
        res.tx_full = tx_full;
        res.delivered = acc.delivered;
        res.offered_mpps = sent as f64 / elapsed / 1e6;
        res.delivered_mpps = acc.delivered.min(sent) as f64 / elapsed / 1e6;
        res.loss = sent.saturating_sub(acc.delivered);
        res.loss_pct = if sent > 0 {
            res.loss as f64 * 100.0 / sent as f64
        } else {
            0.0
        };
        res.lat_p50_us = us(0.5);
        res.lat_p90_us = us(0.9);
        res.lat_p99_us = us(0.99);
        res.lat_p999_us = us(0.999);
        res.lat_max_us = us(1.0);
        res.samples = acc.lat.len() as u64;
        res.full_checks = acc.full_checks;
        res.invalid = acc.invalid;
        res.unexpected = acc.unexpected;
        res.per_rs = acc.per_rs;
        res.errors = acc.errors;
        res
    }

    /// A SYN per flow, at most SYN_WINDOW unanswered, up to three passes over
    /// the flows not opened yet.
    fn open_conns(&mut self, acc: &mut Acc, flows: u32) {
        let mut burst: ArrayVec<Mbuf, BURST> = ArrayVec::new();
        let mut buf = [0u8; 64];
        for _pass in 0..3 {
            let mut sent = 0u64;
            let mut i = 0u32;
            let deadline = Instant::now() + Duration::from_secs(10);
            let start_open = acc.handshakes;
            while i < flows && Instant::now() < deadline {
                if sent.saturating_sub(acc.handshakes - start_open) < SYN_WINDOW {
                    while i < flows && burst.len() < BURST {
                        if !acc.opened[i as usize] {
                            let s = gw::client_seg(
                                &acc.target,
                                acc.base + i,
                                flag::SYN,
                                gw::CLIENT_ISN,
                                0,
                            );
                            let n = frames::write(&s, &mut buf);
                            if let Some(mut m) = self.pool.alloc() {
                                if m.write_from(&buf[..n]) {
                                    burst.push(m);
                                }
                            }
                        }
                        i += 1;
                    }
                    let (ok, _) = tx_burst(self.ports.client.id, 0, &mut burst);
                    sent += ok as u64;
                }
                self.poll(acc);
            }
            let settle = Instant::now();
            while acc.handshakes < u64::from(flows) && settle.elapsed() < Duration::from_millis(500)
            {
                self.poll(acc);
            }
            if acc.handshakes >= u64::from(flows) {
                break;
            }
        }
    }
}

fn mark_open(acc: &mut Acc, flow: u32) {
    if let Some(i) = flow.checked_sub(acc.base) {
        if let Some(o) = acc.opened.get_mut(i as usize) {
            if !*o {
                *o = true;
                acc.handshakes += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_specs_parse_and_bad_ones_are_named() {
        let r = parse_run("fullnat:81@200000", 0.0).unwrap();
        assert_eq!(r.mode, ForwardMode::FullNat);
        assert_eq!((r.vport, r.rate), (81, 200000.0));
        let r = parse_run("tun", 5.0).unwrap();
        assert_eq!((r.mode, r.vport, r.rate), (ForwardMode::Tun, 80, 5.0));
        assert!(parse_run("nta", 0.0).unwrap_err().contains("\"nta\""));
        assert!(parse_run("nat:0", 0.0).unwrap_err().contains("port"));
        assert!(parse_run("nat@fast", 0.0).unwrap_err().contains("rate"));
    }
}
