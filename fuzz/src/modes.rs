//! One configuration with every forwarding mode side by side, so a frame
//! reaches a mode by its destination (VIP, port, protocol) and a mutation of
//! those bytes moves it to another mode:
//!
//! | VIP:port | mode | real server |
//! |---|---|---|
//! | 10.0.0.100:80 tcp/udp | NAT | 192.168.0.11:8080 |
//! | 10.0.0.100:81 tcp/udp | FULLNAT, TOA | 192.168.0.12:8080 from LIP 192.168.0.200 |
//! | 10.0.0.100:82 tcp | FULLNAT, Proxy Protocol v1 | 192.168.0.13:8080 |
//! | 10.0.0.100:83 tcp | FULLNAT, Proxy Protocol v2 | 192.168.0.14:8080 |
//! | 10.0.0.100:84 tcp/udp | DR | 192.168.0.15:84 |
//! | 10.0.0.100:85 tcp/udp | TUN | 192.168.0.16:85 |
//! | 10.0.0.100:86 udp | NAT, one-packet scheduling | 192.168.0.17:8080 |
//! | [fd00:10::100]:80 tcp/udp | NAT66 | [fd00:192::11]:8080 |
//! | [fd00:10::100]:81 tcp/udp | FULLNAT66, TOA | [fd00:192::12]:8080 from LIP fd00:192::200 |
//! | [fd00:10::100]:82 tcp/udp | FULLNAT64, TOA | 192.168.0.18:8080 from LIP 192.168.0.200 |
//! | [fd00:10::100]:84 tcp/udp | DR6 | [fd00:192::15]:84 |
//! | [fd00:10::100]:85 tcp/udp | TUN6 | [fd00:192::16]:85 |
//! | 10.0.0.100:87 tcp | NAT behind the SYN proxy | 192.168.0.19:8080 |
//! | 10.0.0.100:88 tcp | FULLNAT, TOA, behind the SYN proxy | 192.168.0.20:8080 from LIP 192.168.0.200 |
//! | 10.0.0.100:89 tcp/udp | NAT, blacklist 10.0.0.128/25, whitelist 10.0.0.0/24 | 192.168.0.21:8080 |
//!
//! Clients are 10.0.0.2 and fd00:10::2 behind port 0 ([`CLIENT_MAC`]); the
//! real servers are on port 1 ([`RS_MAC`]). Other client addresses on
//! 10.0.0.0/24 have no known MAC: their replies wait for ARP.

use std::net::IpAddr;

use dataplane::core::{Arrival, BURST};
use dataplane::testkit::{
    self, addr, dest, service, Lab, CIP, CLIENT_MAC, DIP, DIP_CLIENT, LIP, MAC0, MAC1, RS_MAC, VIP,
};
use dataplane::wire::VecBuf;
use dataplane::{
    AclSpec, ConfigDesc, ExtDesc, ForwardMode, LocalAddrSpec, Proto, ProxyProtocol, ServiceKey,
};

pub const CIP6: [u8; 16] = v6(0x10, 2);
pub const VIP6: [u8; 16] = v6(0x10, 0x100);
pub const DIP6_CLIENT: [u8; 16] = v6(0x10, 1);
pub const DIP6: [u8; 16] = v6(0x192, 1);
pub const LIP6: [u8; 16] = v6(0x192, 0x200);

/// `fd00:NET::HOST`.
const fn v6(net: u16, host: u16) -> [u8; 16] {
    let n = net.to_be_bytes();
    let h = host.to_be_bytes();
    [
        0xfd, 0, n[0], n[1], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, h[0], h[1],
    ]
}

/// One configured service kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Nat,
    FullNatToa,
    FullNatPp1,
    FullNatPp2,
    Dr,
    Tun,
    NatOps,
    Nat6,
    FullNat6,
    FullNat64,
    Dr6,
    Tun6,
    NatSynproxy,
    FullNatSynproxy,
    NatAcl,
}

impl Mode {
    pub const ALL: [Mode; 15] = [
        Mode::Nat,
        Mode::FullNatToa,
        Mode::FullNatPp1,
        Mode::FullNatPp2,
        Mode::Dr,
        Mode::Tun,
        Mode::NatOps,
        Mode::Nat6,
        Mode::FullNat6,
        Mode::FullNat64,
        Mode::Dr6,
        Mode::Tun6,
        Mode::NatSynproxy,
        Mode::FullNatSynproxy,
        Mode::NatAcl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Nat => "nat",
            Mode::FullNatToa => "fnat-toa",
            Mode::FullNatPp1 => "fnat-pp1",
            Mode::FullNatPp2 => "fnat-pp2",
            Mode::Dr => "dr",
            Mode::Tun => "tun",
            Mode::NatOps => "nat-ops",
            Mode::Nat6 => "nat6",
            Mode::FullNat6 => "fnat6",
            Mode::FullNat64 => "fnat64",
            Mode::Dr6 => "dr6",
            Mode::Tun6 => "tun6",
            Mode::NatSynproxy => "nat-synproxy",
            Mode::FullNatSynproxy => "fnat-synproxy",
            Mode::NatAcl => "nat-acl",
        }
    }

    /// The client side is IPv6.
    pub fn v6(self) -> bool {
        matches!(
            self,
            Mode::Nat6 | Mode::FullNat6 | Mode::FullNat64 | Mode::Dr6 | Mode::Tun6
        )
    }

    pub fn vport(self) -> u16 {
        match self {
            Mode::Nat | Mode::Nat6 => 80,
            Mode::FullNatToa | Mode::FullNat6 => 81,
            Mode::FullNatPp1 | Mode::FullNat64 => 82,
            Mode::FullNatPp2 => 83,
            Mode::Dr | Mode::Dr6 => 84,
            Mode::Tun | Mode::Tun6 => 85,
            Mode::NatOps => 86,
            Mode::NatSynproxy => 87,
            Mode::FullNatSynproxy => 88,
            Mode::NatAcl => 89,
        }
    }

    pub fn forward(self) -> ForwardMode {
        match self {
            Mode::Nat | Mode::NatOps | Mode::Nat6 | Mode::NatSynproxy | Mode::NatAcl => {
                ForwardMode::Nat
            }
            Mode::Dr | Mode::Dr6 => ForwardMode::Dr,
            Mode::Tun | Mode::Tun6 => ForwardMode::Tun,
            _ => ForwardMode::FullNat,
        }
    }

    /// The real server's address.
    pub fn rip(self) -> IpAddr {
        let host: u16 = match self {
            Mode::Nat | Mode::Nat6 => 0x11,
            Mode::FullNatToa | Mode::FullNat6 => 0x12,
            Mode::FullNatPp1 => 0x13,
            Mode::FullNatPp2 => 0x14,
            Mode::Dr | Mode::Dr6 => 0x15,
            Mode::Tun | Mode::Tun6 => 0x16,
            Mode::NatOps => 0x17,
            Mode::FullNat64 => 0x18,
            Mode::NatSynproxy => 0x19,
            Mode::FullNatSynproxy => 0x20,
            Mode::NatAcl => 0x21,
        };
        match self {
            Mode::Nat6 | Mode::FullNat6 | Mode::Dr6 | Mode::Tun6 => IpAddr::from(v6(0x192, host)),
            // 0x11 -> 192.168.0.11, as the testkit's RIP.
            _ => IpAddr::from([192, 168, 0, ((host >> 4) * 10 + (host & 0xf)) as u8]),
        }
    }

    pub fn rport(self) -> u16 {
        match self.forward() {
            ForwardMode::Dr | ForwardMode::Tun => self.vport(),
            _ => 8080,
        }
    }

    pub fn protos(self) -> &'static [Proto] {
        match self {
            Mode::FullNatPp1 | Mode::FullNatPp2 | Mode::NatSynproxy | Mode::FullNatSynproxy => {
                &[Proto::Tcp]
            }
            Mode::NatOps => &[Proto::Udp],
            _ => &[Proto::Tcp, Proto::Udp],
        }
    }

    pub fn vip(self) -> IpAddr {
        if self.v6() {
            IpAddr::from(VIP6)
        } else {
            IpAddr::from(VIP)
        }
    }

    pub fn cip(self) -> IpAddr {
        if self.v6() {
            IpAddr::from(CIP6)
        } else {
            IpAddr::from(CIP)
        }
    }

    /// The FULLNAT local address (of the real server's family).
    pub fn lip(self) -> Option<IpAddr> {
        match (self.forward(), self.rip()) {
            (ForwardMode::FullNat, IpAddr::V4(_)) => Some(IpAddr::from(LIP)),
            (ForwardMode::FullNat, IpAddr::V6(_)) => Some(IpAddr::from(LIP6)),
            _ => None,
        }
    }

    /// New connections go through the SYN proxy.
    pub fn synproxy(self) -> bool {
        matches!(self, Mode::NatSynproxy | Mode::FullNatSynproxy)
    }

    fn key(self, proto: Proto) -> ServiceKey {
        ServiceKey {
            proto,
            vip: self.vip(),
            vport: self.vport(),
        }
    }
}

/// The configuration of the table above.
pub fn desc() -> (ConfigDesc, ExtDesc) {
    let mut d = ConfigDesc {
        services: vec![],
        addrs: vec![
            addr("dpdk0", DIP_CLIENT, 24),
            addr("dpdk0", VIP, 32),
            addr("dpdk0", DIP6_CLIENT, 64),
            addr("dpdk0", VIP6, 128),
            addr("dpdk1", DIP, 24),
            addr("dpdk1", DIP6, 64),
        ],
        routes: vec![],
    };
    // A small local port range: cheap to build per run, and exhaustible.
    let mut e = ExtDesc {
        local_port_range: (5000, 5063),
        ..Default::default()
    };
    for m in Mode::ALL {
        for &proto in m.protos() {
            let key = m.key(proto);
            let mut s = service(key, vec![dest(m.rip(), m.rport(), m.forward())]);
            s.ops = m == Mode::NatOps;
            d.services.push(s);
            if let Some(lip) = m.lip() {
                e.laddrs.push(LocalAddrSpec {
                    service: key,
                    addr: lip,
                    port: "dpdk1".into(),
                });
            }
            let pp = match m {
                Mode::FullNatPp1 => Some(ProxyProtocol::V1),
                Mode::FullNatPp2 => Some(ProxyProtocol::V2),
                _ => None,
            };
            if let Some(v) = pp {
                e.proxy_protocol.push((key, v));
            }
            if m.synproxy() {
                e.synproxy.push(key);
            }
            if m == Mode::NatAcl {
                e.acl.push((
                    key,
                    AclSpec {
                        blacklist: vec![(IpAddr::from([10, 0, 0, 128]), 25)],
                        whitelist: vec![(IpAddr::from([10, 0, 0, 0]), 24)],
                    },
                ));
            }
        }
    }
    (d, e)
}

/// How a run's lab is set up: the first byte of an input.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options(pub u8);

impl Options {
    /// The core is worker 0 of 2: packets the other owns are handed over.
    pub const TWO_WORKERS: u8 = 0x01;
    /// The ports have kernel interfaces (the exception path takes frames).
    pub const KERNEL: u8 = 0x02;
    /// `alloc` fails: no buffer for ARP requests, ICMP errors.
    pub const NO_BUFFERS: u8 = 0x04;
    /// Every service has one established connection (client port 40000)
    /// before the input's frames arrive.
    pub const WARM: u8 = 0x08;
    /// The connection sync master runs: the workers queue records
    /// (`dataplane::sync`) for every new connection and state change.
    pub const SYNC: u8 = 0x10;
    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// A lab on [`desc`] set up as `o` says; nothing in its I/O yet.
pub fn lab(o: Options) -> Lab {
    let (d, e) = desc();
    let n = if o.has(Options::TWO_WORKERS) { 2 } else { 1 };
    let mut lab = Lab::with_desc(&d, &e, 0, n);
    let neigh = &lab.core.shared.neigh;
    neigh.learn(0, IpAddr::from(CIP6), CLIENT_MAC, 0);
    for m in Mode::ALL {
        neigh.learn(1, m.rip(), RS_MAC, 0);
    }
    if o.has(Options::SYNC) {
        lab.core.shared.sync.set_on(true);
    }
    if o.has(Options::WARM) {
        warm(&mut lab);
    }
    lab.core.io = testkit::TestIo {
        kernel: o.has(Options::KERNEL).then(Vec::new),
        no_buffers: o.has(Options::NO_BUFFERS),
        ..Default::default()
    };
    lab
}

/// Takes a frame and its rx port to the director; gives back the last frame
/// it sent, if any.
pub type Deliver<'a> = dyn FnMut(&[u8], usize) -> Option<Vec<u8>> + 'a;

/// Client port of the warm-up connections.
pub const WARM_PORT: u16 = 40000;

/// One connection per service through a whole handshake (TCP) or one
/// datagram each way (UDP), from the client's port [`WARM_PORT`].
fn warm(lab: &mut Lab) {
    for m in Mode::ALL {
        for &proto in m.protos() {
            conversation(m, proto, &mut |frame, port| {
                run_one(lab, frame, port);
                lab.core.io.sent.last().map(|(_, f)| f.clone())
            });
        }
    }
}

fn run_one(lab: &mut Lab, frame: &[u8], port: usize) {
    let mut b: arrayvec::ArrayVec<VecBuf, BURST> = arrayvec::ArrayVec::new();
    b.push(VecBuf::new(frame));
    let snap = lab.snap.clone();
    lab.core.handle_burst(&snap, &mut b, Arrival::Port(port));
}

/// The frames of one conversation with service `m`/`proto` from the client's
/// port [`WARM_PORT`]: the client's first packet, the real server's answer
/// (addressed as the director sent the first one on), and for TCP the
/// client's ACK with data and the server's data. `deliver` gets each frame and
/// its rx port and returns the last frame the director sent, if any, which
/// tells the real server's side where to answer (FULLNAT's local port).
/// Returns the frames with their rx ports.
pub fn conversation(m: Mode, proto: Proto, deliver: &mut Deliver<'_>) -> Vec<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let (cip, vip, vport) = (m.cip(), m.vip(), m.vport());
    let client = |flags: &str, seq: u32, payload: &[u8]| {
        frame(
            proto,
            (CLIENT_MAC, MAC0),
            (cip, WARM_PORT),
            (vip, vport),
            flags,
            seq,
            payload,
        )
    };
    let first = client("S", 1000, b"");
    let mut sent = deliver(&first, 0);
    out.push((first, 0));
    if m.synproxy() {
        // The director answered with a cookie: the client's ACK returns it,
        // and what the director sends on is the SYN to the real server.
        let cookie = sent.as_deref().and_then(tcp_seq).unwrap_or(0);
        let ack = tcp_acking(
            (CLIENT_MAC, MAC0),
            (cip, WARM_PORT),
            (vip, vport),
            1001,
            cookie.wrapping_add(1),
        );
        sent = deliver(&ack, 0);
        out.push((ack, 0));
    }
    if matches!(m.forward(), ForwardMode::Dr | ForwardMode::Tun) {
        // The real server answers the client directly.
        if proto == Proto::Tcp {
            let ack = client("A", 1001, b"GET / HTTP/1.0\r\n\r\n");
            deliver(&ack, 0);
            out.push((ack, 0));
        }
        return out;
    }
    // Where the director sent it: the real server answers that (FULLNAT: to
    // the LIP and local port).
    let (to, to_port) = sent
        .as_deref()
        .and_then(crate::check::l4_source)
        .unwrap_or((cip, WARM_PORT));
    let (rip, rport) = (m.rip(), m.rport());
    let server = |flags: &str, seq: u32, payload: &[u8]| {
        frame(
            proto,
            (RS_MAC, MAC1),
            (rip, rport),
            (to, to_port),
            flags,
            seq,
            payload,
        )
    };
    let answer = server("SA", 5000, b"");
    deliver(&answer, 1);
    out.push((answer, 1));
    if proto == Proto::Tcp {
        let ack = client("A", 1001, b"GET / HTTP/1.0\r\n\r\n");
        deliver(&ack, 0);
        out.push((ack, 0));
        let data = server("AP", 5001, b"HTTP/1.0 200 OK\r\n\r\nhello");
        deliver(&data, 1);
        out.push((data, 1));
    }
    out
}

/// A TCP (`flags` as [`testkit::tcp`]) or UDP frame `from` -> `to`, with
/// the (source, destination) MACs.
pub fn frame(
    proto: Proto,
    macs: ([u8; 6], [u8; 6]),
    from: (IpAddr, u16),
    to: (IpAddr, u16),
    flags: &str,
    seq: u32,
    payload: &[u8],
) -> Vec<u8> {
    let ((smac, dmac), (src, sport), (dst, dport)) = (macs, from, to);
    match proto {
        Proto::Tcp => testkit::tcp(smac, dmac, src, sport, dst, dport, flags, seq, payload),
        Proto::Udp => testkit::udp(smac, dmac, src, sport, dst, dport),
    }
}

/// The sequence number of a TCP frame.
fn tcp_seq(f: &[u8]) -> Option<u32> {
    match etherparse::SlicedPacket::from_ethernet(f).ok()?.transport? {
        etherparse::TransportSlice::Tcp(t) => Some(t.sequence_number()),
        _ => None,
    }
}

/// A bare ACK `from` -> `to` with sequence `seq`, acknowledging `ack`.
fn tcp_acking(
    macs: ([u8; 6], [u8; 6]),
    from: (IpAddr, u16),
    to: (IpAddr, u16),
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    let eth = etherparse::PacketBuilder::ethernet2(macs.0, macs.1);
    let ip = match (from.0, to.0) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => return Vec::new(),
    };
    let mut v = Vec::new();
    let _ = ip.tcp(from.1, to.1, seq, 64000).ack(ack).write(&mut v, b"");
    v
}
