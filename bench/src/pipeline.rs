//! `dpvs-bench pipeline`: the real worker on lcore 1, fed through ring ports by
//! the generator on the main lcore. Scenarios: established flows (1 k, 1 M),
//! whole TCP connections per second, idle behaviour; the pieces every
//! scenario shares (configuration, start with neighbours resolved, the
//! frames and what the director must make of them). Configuration churn is
//! in `churn`, several workers in `workers`.
//!
//! Each scenario starts a fresh `Dataplane` (empty connection table), resolves
//! the neighbours first with injected ARP replies (the run measures forwarding,
//! not ARP), and checks a sample of what comes out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use dataplane::*;
use serde::{Deserialize, Serialize};

use crate::env::{Env, Pumped, CLIENT, SERVER};
use crate::frames::{self, flag, Addrs, Expect, Frames, Seg, Template};

/// Real servers behind the service under test.
pub const NRS: usize = 4;

pub fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::from(a)
}

pub fn mode_name(m: ForwardMode) -> &'static str {
    match m {
        ForwardMode::Nat => "nat",
        ForwardMode::FullNat => "fullnat",
        ForwardMode::Dr => "dr",
        ForwardMode::Tun => "tun",
    }
}

pub fn dest(addr: [u8; 4], port: u16, mode: ForwardMode, weight: u32) -> DestSpec {
    DestSpec {
        addr: v4(addr),
        port,
        weight,
        mode,
        u_threshold: 0,
        l_threshold: 0,
        inhibited: false,
    }
}

pub fn service(vport: u16, sched: &str, dests: Vec<DestSpec>) -> ServiceSpec {
    ServiceSpec {
        key: ServiceKey {
            proto: Proto::Tcp,
            vip: v4(frames::VIP),
            vport,
        },
        scheduler: sched.into(),
        sched_flags: vec![],
        persistence: None,
        conn_timeout_s: None,
        ops: false,
        dests,
    }
}

/// The service under test (VIP:80 -> NRS real servers) plus `extra` services.
pub fn config(mode: ForwardMode, extra: Vec<ServiceSpec>) -> ConfigDesc {
    let rport = if matches!(mode, ForwardMode::Dr | ForwardMode::Tun) {
        frames::VPORT
    } else {
        frames::RPORT
    };
    let mut services = vec![service(
        frames::VPORT,
        "rr",
        (0..NRS)
            .map(|i| dest(frames::rs(i).0, rport, mode, 1))
            .collect(),
    )];
    services.extend(extra);
    let addr = |port: &str, a: [u8; 4], len: u8| AddrSpec {
        port: port.into(),
        addr: v4(a),
        prefix_len: len,
    };
    ConfigDesc {
        services,
        addrs: vec![
            addr("dpdk0", frames::DIP_CLIENT, 24),
            addr("dpdk0", frames::VIP, 32),
            addr("dpdk1", frames::DIP_SERVER, 24),
            addr("dpdk1", frames::LIP, 32),
        ],
        routes: vec![RouteSpec {
            prefix: v4([0, 0, 0, 0]),
            prefix_len: 0,
            via: Some(v4(frames::GW_IP)),
            port: "dpdk0".into(),
        }],
    }
}

/// A broadcast ARP request from `smac`/`sip` for the director's `tip`: the
/// director learns its sender (it learns nothing from replies it did not
/// ask for: docs/security.md, "Neighbours").
fn arp_request(smac: [u8; 6], sip: [u8; 4], tip: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&smac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&smac);
    f.extend_from_slice(&sip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tip);
    f.resize(60, 0);
    f
}

/// A started dataplane with its neighbours resolved.
pub struct Running {
    pub dp: Dataplane,
    pub mac: [[u8; 6]; 2],
    pub mode: ForwardMode,
}

/// FULLNAT local addresses per service in the bench (192.168.0.200 ..; the
/// real servers are .11-.14).
const LIPS: u8 = 24;

pub fn start(
    env: &mut Env,
    mode: ForwardMode,
    capacity: u32,
    adaptive: bool,
) -> Result<Running, String> {
    let spec = env.spec(capacity, adaptive);
    start_spec(env, mode, &spec)
}

/// The extensions of `config(mode, ..)`: with FULLNAT, a pool of LIPS local
/// addresses from LIP upward (1 M flows need more source ports than one LIP
/// has, ~64 k), as a DPVS operator would configure.
pub fn ext(desc: &ConfigDesc, mode: ForwardMode) -> dataplane::config::ExtDesc {
    if mode != ForwardMode::FullNat {
        return Default::default();
    }
    let svc = desc.services[0].key;
    dataplane::config::ExtDesc {
        laddrs: (0..LIPS)
            .map(|i| dataplane::config::LocalAddrSpec {
                service: svc,
                addr: v4([
                    frames::LIP[0],
                    frames::LIP[1],
                    frames::LIP[2],
                    frames::LIP[3] + i,
                ]),
                port: "dpdk1".into(),
            })
            .collect(),
        ..Default::default()
    }
}

/// Start a dataplane with `spec` (workers and steering of the current ports).
pub fn start_spec(
    env: &mut Env,
    mode: ForwardMode,
    spec: &DataplaneSpec,
) -> Result<Running, String> {
    env.drain();
    env.drain_rx();
    let desc = config(mode, vec![]);
    let dp = Dataplane::start_with_eal(spec, &desc).map_err(|e| e.to_string())?;
    if mode == ForwardMode::FullNat {
        dp.apply_ext(&desc, &ext(&desc, mode))
            .map_err(|e| e.to_string())?;
    }
    let st = dp.stats();
    let mac = [st.ports[0].mac, st.ports[1].mac];
    std::thread::sleep(Duration::from_millis(20));
    env.drain(); // gratuitous ARPs
    env.inject(
        CLIENT,
        &[arp_request(
            frames::GW_MAC,
            frames::GW_IP,
            frames::DIP_CLIENT,
        )],
    )?;
    let rs: Vec<Vec<u8>> = (0..NRS)
        .map(|i| {
            let (ip, m) = frames::rs(i);
            arp_request(m, ip, frames::DIP_SERVER)
        })
        .collect();
    env.inject(SERVER, &rs)?;
    let deadline = Instant::now() + Duration::from_secs(2);
    while dp.neighbours().len() < NRS + 1 {
        if Instant::now() > deadline {
            return Err(format!(
                "neighbours not learned: {:?}",
                dp.neighbours().len()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    env.drain();
    Ok(Running { dp, mac, mode })
}

/// The client's first data sequence number in the benches' flows (their
/// SYN's ISN is 1000): FULLNAT puts TOA on the segment carrying it (the
/// handshake's ACK, its retransmissions, or the first data).
pub const FIRST_DATA_SEQ: u32 = 1001;
/// What the established runs replay, per flow: the client's ACK after a
/// 16-byte request (sequence 1001..1017) and a 16-byte reply (5001..5017),
/// as the bulk of a connection's packets (no TOA: past the first data).
pub const STEADY_SEQ: u32 = FIRST_DATA_SEQ + 16;
pub const STEADY_ACK: u32 = 5017;

pub fn client_seg(r: &Running, i: u32, flags: u8, seq: u32, ack: u32, payload: usize) -> Seg {
    client_seg_to(r.mac[0], i, flags, seq, ack, payload)
}

/// Client flow `i`'s segment to the VIP, sent to the director's MAC `mac`.
pub fn client_seg_to(mac: [u8; 6], i: u32, flags: u8, seq: u32, ack: u32, payload: usize) -> Seg {
    let (cip, cport) = frames::client(i);
    Seg {
        src_mac: frames::GW_MAC,
        dst_mac: mac,
        src: cip,
        sport: cport,
        dst: frames::VIP,
        dport: frames::VPORT,
        flags,
        seq,
        ack,
        payload,
    }
}

/// What a request (client -> RS) must look like after the director.
pub fn expect_request(r: &Running) -> Expect {
    let rips: Vec<[u8; 4]> = (0..NRS).map(|i| frames::rs(i).0).collect();
    let base = Expect {
        dst_mac: None,
        src_mac: Some(r.mac[1]),
        dst_ips: rips.clone(),
        dport: Some(frames::RPORT),
        src_is_client: true,
        src_ip: None,
        sport: None,
        ttl: Some(frames::TTL - 1),
        ipip: false,
        toa: false,
    };
    match r.mode {
        ForwardMode::Nat => base,
        ForwardMode::FullNat => Expect {
            src_is_client: false,
            ..base
        },
        ForwardMode::Dr => Expect {
            dst_ips: vec![frames::VIP],
            dport: Some(frames::VPORT),
            ttl: Some(frames::TTL),
            ..base
        },
        ForwardMode::Tun => Expect {
            dport: Some(frames::VPORT),
            ttl: None,
            ipip: true,
            ..base
        },
    }
}

/// What a reply (RS -> client, NAT or FULLNAT) must look like after the director.
pub fn expect_reply(r: &Running) -> Expect {
    Expect {
        dst_mac: Some(frames::GW_MAC),
        src_mac: Some(r.mac[0]),
        dst_ips: vec![],
        dport: None,
        src_is_client: false,
        src_ip: Some(frames::VIP),
        sport: Some(frames::VPORT),
        ttl: Some(frames::TTL - 1),
        ipip: false,
        toa: false,
    }
}

/// Checks a sample of outputs: bytes, and that a flow always reaches the same RS.
pub struct Sampler {
    pub every: u64,
    pub expect: Expect,
    /// No TOA option may be on the frames (segments past the first data).
    pub no_toa: bool,
    rs_mac: HashMap<[u8; 6], usize>,
    flow_rs: HashMap<u32, usize>,
    pub checked: u64,
    pub errors: Vec<String>,
}

impl Sampler {
    pub fn new(r: &Running, every: u64) -> Sampler {
        Sampler {
            every,
            expect: expect_request(r),
            no_toa: false,
            rs_mac: (0..NRS).map(|i| (frames::rs(i).1, i)).collect(),
            flow_rs: HashMap::new(),
            checked: 0,
            errors: Vec::new(),
        }
    }

    pub fn see(&mut self, i: u64, f: &[u8]) {
        if !i.is_multiple_of(self.every) {
            return;
        }
        self.checked += 1;
        let mut err = frames::check(f, &self.expect).err();
        if err.is_none() && self.no_toa && frames::toa(f).is_some() {
            err = Some("a TOA option past the first data".into());
        }
        if err.is_none() {
            let mac: [u8; 6] = f[0..6].try_into().unwrap_or_default();
            match (self.rs_mac.get(&mac), frames::quick(f)) {
                (None, _) => err = Some(format!("dst MAC {mac:02x?} is no real server")),
                (Some(&rs), Some(q)) => {
                    if let Some(flow) = frames::flow_of(q.src, q.sport) {
                        let prev = *self.flow_rs.entry(flow).or_insert(rs);
                        if prev != rs {
                            err = Some(format!("flow {flow} moved from RS {prev} to {rs}"));
                        }
                    }
                }
                (Some(_), None) => err = Some("unparsable".into()),
            }
        }
        if let Some(e) = err {
            if self.errors.len() < 5 {
                self.errors.push(e);
            }
        }
    }
}

/// Drop counters that are not zero.
pub fn nonzero_drops(dp: &Dataplane) -> Vec<(String, u64)> {
    dp.stats()
        .drops
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| (format!("{r:?}"), *n))
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Established {
    pub mode: String,
    pub flows: u32,
    /// None when the mode is not supported by the dataplane.
    pub mpps: Option<f64>,
    pub ns_per_packet: Option<f64>,
    /// New connections per second of the SYN phase (first packets only).
    pub syn_rate: Option<f64>,
    pub runs: Vec<f64>,
    pub sampled: u64,
    pub note: String,
}

/// Whether `mode` forwards at all: one SYN in, one frame out.
pub fn probe(env: &mut Env, mode: ForwardMode) -> Result<Option<String>, String> {
    let r = start(env, mode, 4096, false)?;
    let f = Frames::build(1, |_| client_seg(&r, 4_000_000, flag::SYN, 1000, 0, 0));
    env.inject(CLIENT, &[f.get(0).to_vec()])?;
    let out = env.collect(SERVER, 1, Duration::from_millis(300));
    let drops = nonzero_drops(&r.dp);
    drop(r);
    if out.is_empty() {
        return Ok(Some(format!("unsupported: no output; drops {drops:?}")));
    }
    Ok(None)
}

/// Established flows: SYNs create `flows` connections, then ACKs cycle over them.
pub fn established(
    env: &mut Env,
    mode: ForwardMode,
    flows: u32,
    packets: u64,
    repeats: usize,
) -> Result<Established, String> {
    let mut res = Established {
        mode: mode_name(mode).into(),
        flows,
        ..Default::default()
    };
    if let Some(why) = probe(env, mode)? {
        res.note = why;
        return Ok(res);
    }
    let cap = flows + flows / 2 + 4096;
    let r = start(env, mode, cap, false)?;
    let syn = Frames::build(flows as usize, |i| {
        client_seg(&r, i as u32, flag::SYN, 1000, 0, 0)
    });
    // TOA rides on the client's first ACK/data segment, never on the SYN.
    let mut s = Sampler::new(&r, 61);
    s.expect.toa = false;
    let p = pass_once(env, &syn, &mut s);
    if p.recv != u64::from(flows) {
        return Err(format!(
            "{} SYN phase: {} of {} forwarded; drops {:?}",
            res.mode,
            p.recv,
            flows,
            nonzero_drops(&r.dp)
        ));
    }
    // A rate over a few thousand packets is mostly start-up: report large runs only.
    if flows >= 100_000 {
        res.syn_rate = Some(p.recv as f64 / p.elapsed.as_secs_f64());
    }
    // The handshake's ACK, once per flow: it carries the client's first
    // data sequence number (ISN + 1), so FULLNAT puts the TOA option on it.
    let first = Frames::build(flows as usize, |i| {
        client_seg(&r, i as u32, flag::ACK, FIRST_DATA_SEQ, 5001, 0)
    });
    s.expect.toa = mode == ForwardMode::FullNat;
    s.every = 61;
    let p = pass_once(env, &first, &mut s);
    check_loss(&r, &format!("{} handshake ACK phase", res.mode), &p)?;
    // Then the bulk of an established connection: segments past the first
    // data, which no mode grows.
    let ack = Frames::build(flows as usize, |i| {
        client_seg(&r, i as u32, flag::ACK, STEADY_SEQ, STEADY_ACK, 0)
    });
    s.expect.toa = false;
    s.no_toa = true;
    s.every = 1021;
    // Warm-up pass (caches, branch predictors), then timed runs.
    let warm = env.pump(
        &ack,
        0,
        CLIENT,
        SERVER,
        u64::from(flows).clamp(100_000, 2_000_000),
        Duration::from_secs(5),
        Duration::from_millis(300),
        |i, f| s.see(i, f),
    );
    check_loss(&r, "warm-up", &warm)?;
    for _ in 0..repeats {
        let p = env.pump(
            &ack,
            0,
            CLIENT,
            SERVER,
            packets,
            Duration::from_secs(4),
            Duration::from_millis(300),
            |i, f| s.see(i, f),
        );
        check_loss(&r, &res.mode, &p)?;
        res.runs.push(p.mpps());
    }
    if !s.errors.is_empty() {
        return Err(format!(
            "{} {} flows: wrong output: {:?}",
            res.mode, flows, s.errors
        ));
    }
    let best = res.runs.iter().cloned().fold(0.0, f64::max);
    res.mpps = Some(best);
    res.ns_per_packet = Some(1000.0 / best);
    res.sampled = s.checked;
    Ok(res)
}

/// Each of `frames` once, client to server (20 s at most), sampled by `s`.
fn pass_once(env: &mut Env, frames: &Frames, s: &mut Sampler) -> Pumped {
    env.pump(
        frames,
        0,
        CLIENT,
        SERVER,
        frames.len() as u64,
        Duration::from_secs(20),
        Duration::from_millis(300),
        |i, f| s.see(i, f),
    )
}

/// A SYN for each of `flows` client flows (opening their connections), every
/// one forwarded within `cap`.
pub fn open_flows(
    env: &mut Env,
    r: &Running,
    flows: u32,
    cap: Duration,
    what: &str,
) -> Result<(), String> {
    let syn = Frames::build(flows as usize, |i| {
        client_seg(r, i as u32, flag::SYN, 1000, 0, 0)
    });
    let p = env.pump(
        &syn,
        0,
        CLIENT,
        SERVER,
        u64::from(flows),
        cap,
        Duration::from_millis(300),
        |_, _| {},
    );
    check_loss(r, &format!("{what} SYN phase"), &p)
}

pub fn check_loss(r: &Running, what: &str, p: &Pumped) -> Result<(), String> {
    if p.recv < p.sent {
        return Err(format!(
            "{what}: {} sent, {} forwarded in {:?}; drops {:?}",
            p.sent,
            p.recv,
            p.elapsed,
            nonzero_drops(&r.dp)
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Cps {
    pub mode: String,
    pub conns: u32,
    pub packets_per_conn: u32,
    pub cps: Option<f64>,
    pub runs: Vec<f64>,
    pub note: String,
}

/// Whole TCP connections: SYN, SYN-ACK, ACK, request, reply, FIN, FIN, ACK,
/// in waves; the real-server side answers what it received, so the run works
/// for any rewrite of the server-side addresses (NAT and FULLNAT).
pub fn cps(env: &mut Env, mode: ForwardMode, conns: u32, repeats: usize) -> Result<Cps, String> {
    let mut res = Cps {
        mode: mode_name(mode).into(),
        conns,
        packets_per_conn: 8,
        ..Default::default()
    };
    if matches!(mode, ForwardMode::Dr | ForwardMode::Tun) {
        res.note = "replies bypass the director in this mode".into();
        return Ok(res);
    }
    if let Some(why) = probe(env, mode)? {
        res.note = why;
        return Ok(res);
    }
    for rep in 0..repeats {
        let r = start(env, mode, conns + conns / 2 + 4096, false)?;
        let cf = ClientFrames::build(&r, conns);
        let wave = 2048u32;
        let mut sf = ServerFrames::new(&r, wave as usize);
        let t0 = Instant::now();
        let mut base = 0u32;
        while base < conns {
            let n = wave.min(conns - base);
            one_wave(env, &r, &cf, &mut sf, base, n).map_err(|e| {
                format!(
                    "{} cps wave at {base}: {e}; drops {:?}",
                    res.mode,
                    nonzero_drops(&r.dp)
                )
            })?;
            base += n;
        }
        let secs = t0.elapsed().as_secs_f64();
        res.runs.push(f64::from(conns) / secs);
        let st = r.dp.stats();
        let created = st.services.first().map(|s| s.traffic.conns).unwrap_or(0);
        if created != u64::from(conns) {
            return Err(format!(
                "cps run {rep}: {created} connections created, {conns} expected"
            ));
        }
    }
    res.cps = Some(res.runs.iter().cloned().fold(0.0, f64::max));
    Ok(res)
}

/// Server view of one connection: (RS ip, RS port, peer ip, peer port, RS MAC).
pub type ServerView = ([u8; 4], u16, [u8; 4], u16, [u8; 6]);

/// A segment from the real server of view `v` back through the director.
pub fn server_seg(
    r: &Running,
    v: &ServerView,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: usize,
) -> Seg {
    server_seg_to(r.mac[1], v, flags, seq, ack, payload)
}

/// [`server_seg`] toward the director's MAC `mac` (its real-server side).
pub fn server_seg_to(
    mac: [u8; 6],
    v: &ServerView,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: usize,
) -> Seg {
    let (rip, rport, pip, pport, rs_mac) = *v;
    Seg {
        src_mac: rs_mac,
        dst_mac: mac,
        src: rip,
        sport: rport,
        dst: pip,
        dport: pport,
        flags,
        seq,
        ack,
        payload,
    }
}

/// Bytes of the request and of the reply of the whole-connection runs.
const REQ: usize = 16;

/// The client's five frames of every connection of a cps run (SYN, ACK,
/// request, FIN, last ACK), built before its clock starts, as a traffic
/// generator's templates: nothing of them depends on what the director does.
struct ClientFrames {
    syn: Frames,
    ack: Frames,
    req: Frames,
    fin: Frames,
    last: Frames,
}

impl ClientFrames {
    fn build(r: &Running, conns: u32) -> ClientFrames {
        let n = conns as usize;
        let c = |flags, seq, ack, pl| {
            Frames::build(n, move |i| client_seg(r, i as u32, flags, seq, ack, pl))
        };
        ClientFrames {
            syn: c(flag::SYN, 1000, 0, 0),
            ack: c(flag::ACK, 1001, 5001, 0),
            req: c(flag::PSH | flag::ACK, 1001, 5001, REQ),
            fin: c(flag::FIN | flag::ACK, 1017, 5017, 0),
            last: c(flag::ACK, 1018, 5018, 0),
        }
    }
}

/// The server's three frames of every connection of a cps wave (SYN-ACK,
/// reply, FIN), written as the client's frames come out (they depend on the
/// real server and, with FULLNAT, the local address and port the director
/// chose): from templates, as a traffic generator does, into buffers
/// allocated once per run, so the generator's share of a connection stays
/// small beside the director's.
struct ServerFrames {
    synack: Frames,
    reply: Frames,
    fin: Frames,
    t_synack: Template,
    t_reply: Template,
    t_fin: Template,
}

impl ServerFrames {
    fn new(r: &Running, n: usize) -> ServerFrames {
        let none: ServerView = ([0; 4], 0, [0; 4], 0, [0; 6]);
        let t = |flags, seq, ack, pl| Template::new(&server_seg(r, &none, flags, seq, ack, pl));
        let (t_synack, t_reply, t_fin) = (
            t(flag::SYN | flag::ACK, 5000, 1001, 0),
            t(flag::PSH | flag::ACK, 5001, 1017, REQ),
            t(flag::FIN | flag::ACK, 5017, 1018, 0),
        );
        let frames = |t: &Template| Frames::zeroed(n, t.len());
        ServerFrames {
            synack: frames(&t_synack),
            reply: frames(&t_reply),
            fin: frames(&t_fin),
            t_synack,
            t_reply,
            t_fin,
        }
    }
}

/// The fields of a server frame of view `v` toward the director's `mac`.
fn server_addrs(mac: [u8; 6], v: &ServerView) -> Addrs {
    server_seg_to(mac, v, 0, 0, 0, 0).addrs()
}

/// What a cps step does with its `k`-th output.
type StepCheck<'a> = &'a mut dyn FnMut(usize, &[u8]) -> Result<(), String>;

/// One wave of `n` connections (flows `base..base + n`). The server's three
/// frames of each connection depend on what its SYN came out as (the real
/// server, FULLNAT's local address and port), so they are written while an
/// earlier step's outputs arrive, the generator's work overlapping the
/// worker's: the SYN-ACK as the SYN comes out, the reply as the ACK does,
/// the server's FIN as the request does (one worker keeps the order: the
/// k-th output of a step is the k-th connection).
fn one_wave(
    env: &mut Env,
    r: &Running,
    cf: &ClientFrames,
    sf: &mut ServerFrames,
    base: u32,
    n: u32,
) -> Result<(), String> {
    let step = |env: &mut Env,
                frames: &Frames,
                first: usize,
                in_port: usize,
                out_port: usize,
                f: StepCheck<'_>|
     -> Result<(), String> {
        let mut err = None;
        let p = env.pump(
            frames,
            first,
            in_port,
            out_port,
            u64::from(n),
            Duration::from_secs(5),
            Duration::from_millis(300),
            |i, b| {
                if err.is_none() {
                    err = f(i as usize, b).err();
                }
            },
        );
        if let Some(e) = err {
            return Err(e);
        }
        if p.recv != u64::from(n) {
            return Err(format!("{} of {} came out", p.recv, n));
        }
        Ok(())
    };
    let n_us = n as usize;
    let at = base as usize;
    let expect_req = expect_request(r);
    let vip_expect = expect_reply(r);
    // 1. SYN: learn each connection's server view from what the RS receives.
    let mut views: Vec<Option<ServerView>> = vec![None; n_us];
    let mac_of: HashMap<[u8; 4], [u8; 6]> = (0..NRS).map(frames::rs).collect();
    let fullnat = r.mode == ForwardMode::FullNat;
    let dmac = r.mac[1];
    let mut checked = 0u32;
    let ServerFrames {
        synack,
        reply,
        fin: sfin,
        t_synack,
        t_reply,
        t_fin,
    } = sf;
    // FULLNAT hides the client (TOA only comes with the first ACK): one worker
    // forwards in order, so the k-th SYN out is the k-th SYN in.
    step(env, &cf.syn, at, CLIENT, SERVER, &mut |k, b| {
        let q = frames::quick(b).ok_or("SYN out: not TCP/IPv4")?;
        let idx = if fullnat {
            k
        } else {
            let flow = frames::flow_of(q.src, q.sport).ok_or("SYN out: unknown client")?;
            flow.checked_sub(base)
                .ok_or("SYN out: flow of another wave")? as usize
        };
        if checked < 8 {
            frames::check(b, &expect_req)?;
            checked += 1;
        }
        let mac = *mac_of.get(&q.dst).ok_or("SYN out: not to a real server")?;
        let v = (q.dst, q.dport, q.src, q.sport, mac);
        *views.get_mut(idx).ok_or("SYN out: flow out of range")? = Some(v);
        synack.set_from(idx, t_synack, &server_addrs(dmac, &v));
        Ok(())
    })?;
    let views: Vec<ServerView> = views
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or("a SYN came out twice, another never")?;
    let check_some = |every: usize, e: &Expect| {
        let e = e.clone();
        move |k: usize, b: &[u8]| {
            if k.is_multiple_of(every) {
                frames::check(b, &e)
            } else {
                Ok(())
            }
        }
    };
    // 2. SYN-ACK from the RS, back to the client from the VIP.
    step(
        env,
        synack,
        0,
        SERVER,
        CLIENT,
        &mut check_some(97, &vip_expect),
    )?;
    // 3. ACK (the reply written meanwhile), 4. request (the server's FIN).
    let chk = check_some(97, &expect_req);
    step(env, &cf.ack, at, CLIENT, SERVER, &mut |k, b| {
        chk(k, b)?;
        let v = views.get(k).ok_or("ACK out: one too many")?;
        reply.set_from(k, t_reply, &server_addrs(dmac, v));
        Ok(())
    })?;
    step(env, &cf.req, at, CLIENT, SERVER, &mut |k, b| {
        chk(k, b)?;
        let v = views.get(k).ok_or("request out: one too many")?;
        sfin.set_from(k, t_fin, &server_addrs(dmac, v));
        Ok(())
    })?;
    // 5. reply.
    step(
        env,
        reply,
        0,
        SERVER,
        CLIENT,
        &mut check_some(97, &vip_expect),
    )?;
    // 6. client FIN, 7. server FIN, 8. last ACK.
    step(
        env,
        &cf.fin,
        at,
        CLIENT,
        SERVER,
        &mut check_some(97, &expect_req),
    )?;
    step(
        env,
        sfin,
        0,
        SERVER,
        CLIENT,
        &mut check_some(97, &vip_expect),
    )?;
    step(
        env,
        &cf.last,
        at,
        CLIENT,
        SERVER,
        &mut check_some(97, &expect_req),
    )?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Idle {
    pub adaptive: bool,
    pub rtt_p50_ns: f64,
    pub rtt_p99_ns: f64,
    pub idle_cpu_pct: Option<f64>,
    pub loaded_mpps: f64,
}

/// CPU time (user + system, clock ticks) of the worker lcore thread.
fn worker_ticks() -> Option<u64> {
    let dir = std::fs::read_dir("/proc/self/task").ok()?;
    for e in dir.flatten() {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.contains("worker") {
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ut: u64 = f.get(11)?.parse().ok()?;
            let st: u64 = f.get(12)?.parse().ok()?;
            return Some(ut + st);
        }
    }
    None
}

/// Single-packet round trips after idle gaps, idle CPU of the worker, and
/// loaded throughput, with adaptive polling on or off.
pub fn idle(env: &mut Env, adaptive: bool, samples: usize) -> Result<Idle, String> {
    let flows = 1000u32;
    let r = start(env, ForwardMode::Nat, 1 << 16, adaptive)?;
    open_flows(env, &r, flows, Duration::from_secs(5), "idle")?;
    let ack = Frames::build(flows as usize, |i| {
        client_seg(&r, i as u32, flag::ACK, 1001, 5001, 0)
    });
    let mut rtts = Vec::with_capacity(samples);
    for k in 0..samples {
        // Long enough for the worker to fall into its back-off.
        std::thread::sleep(Duration::from_micros(500));
        let p = env.pump(
            &ack,
            k,
            CLIENT,
            SERVER,
            1,
            Duration::from_millis(100),
            Duration::from_millis(50),
            |_, _| {},
        );
        if p.recv == 1 {
            rtts.push(p.elapsed.as_nanos() as f64);
        }
    }
    if rtts.len() < samples / 2 {
        return Err(format!(
            "idle: only {} of {samples} round trips",
            rtts.len()
        ));
    }
    rtts.sort_by(f64::total_cmp);
    let pct = |q: f64| rtts[((rtts.len() - 1) as f64 * q) as usize];
    let idle_cpu_pct = {
        let hz = 100.0; // USER_HZ on Linux
        let a = worker_ticks();
        std::thread::sleep(Duration::from_secs(1));
        let b = worker_ticks();
        match (a, b) {
            (Some(a), Some(b)) => Some((b - a) as f64 / hz * 100.0),
            _ => None,
        }
    };
    let mut best = 0.0f64;
    for _ in 0..2 {
        let p = env.pump(
            &ack,
            0,
            CLIENT,
            SERVER,
            3_000_000,
            Duration::from_secs(3),
            Duration::from_millis(300),
            |_, _| {},
        );
        check_loss(&r, "idle loaded", &p)?;
        best = best.max(p.mpps());
    }
    Ok(Idle {
        adaptive,
        rtt_p50_ns: pct(0.5),
        rtt_p99_ns: pct(0.99),
        idle_cpu_pct,
        loaded_mpps: best,
    })
}
