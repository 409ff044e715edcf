//! Every cell of the kernel's IPVS TCP state tables, driven through a real
//! `ConnTable` (state, ActiveConn/InActConn transition and the re-armed timeout),
//! plus the scenarios an operator sees in `ipvsadm -Lnc`.

use conntrack::{ConnId, ConnTable, Direction, NewConn, TcpFlags, TcpState, Timeouts, Tuple};

/// `tcp_states[]` and `tcp_states_dos[]` transcribed from
/// net/netfilter/ipvs/ip_vs_proto_tcp.c (rows syn, fin, ack, rst; columns
/// sNO sES sSS sSR sFW sTW sCL sCW sLA sLI sSA), kept as text so this test does not
/// share the crate's own table.
const KERNEL_NORMAL: &str = "
INPUT
syn sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR
fin sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sTW
ack sCL, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES
rst sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sSR
OUTPUT
syn sSS, sES, sSS, sSR, sSS, sSS, sSS, sSS, sSS, sLI, sSR
fin sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW
ack sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES
rst sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL
INPUT-ONLY
syn sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR
fin sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW
ack sCL, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES
rst sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL
";

const KERNEL_DOS: &str = "
INPUT
syn sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSA
fin sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sSA
ack sCL, sES, sSS, sSR, sFW, sTW, sCL, sCW, sCL, sLI, sSA
rst sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL
OUTPUT
syn sSS, sES, sSS, sSA, sSS, sSS, sSS, sSS, sSS, sLI, sSA
fin sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW
ack sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES
rst sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL
INPUT-ONLY
syn sSA, sES, sES, sSR, sSA, sSA, sSA, sSA, sSA, sSA, sSA
fin sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW
ack sCL, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES
rst sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL
";

fn state(abbrev: &str) -> TcpState {
    match abbrev {
        "sNO" => TcpState::None,
        "sES" => TcpState::Established,
        "sSS" => TcpState::SynSent,
        "sSR" => TcpState::SynRecv,
        "sFW" => TcpState::FinWait,
        "sTW" => TcpState::TimeWait,
        "sCL" => TcpState::Close,
        "sCW" => TcpState::CloseWait,
        "sLA" => TcpState::LastAck,
        "sLI" => TcpState::Listen,
        "sSA" => TcpState::SynAck,
        other => panic!("bad state {other}"),
    }
}

/// (half, flag row name, [next state per column])
fn parse(text: &str) -> Vec<(String, String, Vec<TcpState>)> {
    let mut half = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some((row, cells)) = line.split_once(' ') {
            let cells: Vec<TcpState> = cells.split(',').map(|c| state(c.trim())).collect();
            assert_eq!(cells.len(), 11);
            out.push((half.clone(), row.to_string(), cells));
        } else {
            half = line.to_string();
        }
    }
    assert_eq!(out.len(), 12);
    out
}

fn flags(row: &str) -> TcpFlags {
    match row {
        "syn" => TcpFlags::SYN,
        "fin" => TcpFlags::FIN | TcpFlags::ACK,
        "ack" => TcpFlags::ACK,
        "rst" => TcpFlags::RST | TcpFlags::ACK,
        _ => unreachable!(),
    }
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

fn nat_conn(cport: u16) -> NewConn {
    NewConn {
        original: Tuple::tcp(ip("198.51.100.7"), cport, ip("192.0.2.10"), 80),
        reply: Tuple::tcp(ip("10.0.0.5"), 8080, ip("198.51.100.7"), cport),
        service: 1,
        dest: 5,
        flags: 0,
        timeout_override_s: None,
    }
}

fn check_tables(secure: bool, text: &str) {
    let t = Timeouts::default();
    let mut ct = ConnTable::new(64, 42, t);
    ct.set_secure_tcp(secure);
    let now = 1_000_000;
    let mut cases = 0;
    for (half, row, cells) in parse(text) {
        for (col, &want) in cells.iter().enumerate() {
            let from = TcpState::TCP_ALL[col];
            let id = ct.insert(nat_conn(1000), now).unwrap();
            let dir = match half.as_str() {
                "INPUT" => Direction::Original,
                "OUTPUT" => Direction::Reply,
                "INPUT-ONLY" => {
                    ct.set_input_only(id, true);
                    Direction::Original
                }
                _ => unreachable!(),
            };
            ct.force_state(id, from, now).unwrap();
            let tr = ct.on_packet(id, dir, flags(&row), now + 5);
            let ctx = format!("{half} {row} from {}", from.name());
            assert_eq!(tr.state, want, "{ctx}");
            assert_eq!(ct.get(id).unwrap().state(), want, "{ctx}");
            assert_eq!(tr.was_active, from == TcpState::Established, "{ctx}");
            assert_eq!(tr.is_active, want == TcpState::Established, "{ctx}");
            assert_eq!(ct.get(id).unwrap().is_active(), tr.is_active, "{ctx}");
            assert_eq!(
                ct.get(id).unwrap().expires_at_ms(),
                now + 5 + u64::from(t.for_state(want)) * 1000,
                "{ctx}"
            );
            // A segment with none of RST/SYN/FIN/ACK closes, as in the kernel.
            ct.force_state(id, from, now).unwrap();
            let tr = ct.on_packet(id, dir, TcpFlags::PSH, now);
            assert_eq!(tr.state, TcpState::Close, "{ctx} no flags");
            ct.remove(id).unwrap();
            cases += 1;
        }
    }
    assert_eq!(cases, 3 * 4 * 11);
    assert!(ct.is_empty());
}

#[test]
fn every_cell_of_tcp_states() {
    check_tables(false, KERNEL_NORMAL);
}

#[test]
fn every_cell_of_tcp_states_dos() {
    check_tables(true, KERNEL_DOS);
}

#[test]
fn pure_next_state_agrees_with_kernel_text() {
    use conntrack::{next_state, TcpDir};
    for (secure, text) in [(false, KERNEL_NORMAL), (true, KERNEL_DOS)] {
        for (half, row, cells) in parse(text) {
            let dir = match half.as_str() {
                "INPUT" => TcpDir::Input,
                "OUTPUT" => TcpDir::Output,
                _ => TcpDir::InputOnly,
            };
            for (col, &want) in cells.iter().enumerate() {
                assert_eq!(
                    next_state(secure, dir, flags(&row), TcpState::TCP_ALL[col]),
                    want
                );
            }
        }
    }
}

/// Drive one conn through a script of (direction, flags, expected state).
fn script(
    ct: &mut ConnTable,
    id: ConnId,
    steps: &[(Direction, TcpFlags, TcpState)],
) -> Vec<(bool, bool)> {
    let mut now = 0;
    steps
        .iter()
        .map(|&(d, f, want)| {
            now += 10;
            let tr = ct.on_packet(id, d, f, now);
            assert_eq!(tr.state, want, "after {d:?} {f:?}");
            (tr.was_active, tr.is_active)
        })
        .collect()
}

use Direction::{Original as IN, Reply as OUT};
const SYN: TcpFlags = TcpFlags::SYN;
const SYNACK: TcpFlags = TcpFlags::from_bits(0x12);
const ACK: TcpFlags = TcpFlags::ACK;
const FIN: TcpFlags = TcpFlags::from_bits(0x11);
const RST: TcpFlags = TcpFlags::RST;

#[test]
fn nat_handshake_and_client_close() {
    let mut ct = ConnTable::new(8, 1, Timeouts::default());
    let id = ct.insert(nat_conn(40000), 0).unwrap();
    assert_eq!(ct.get(id).unwrap().state(), TcpState::None);
    assert!(!ct.get(id).unwrap().is_active());
    let act = script(
        &mut ct,
        id,
        &[
            (IN, SYN, TcpState::SynRecv),
            (OUT, SYNACK, TcpState::SynRecv),
            (IN, ACK, TcpState::Established),
            (OUT, ACK, TcpState::Established),
            (IN, FIN, TcpState::CloseWait),
            (OUT, FIN, TcpState::TimeWait),
            (IN, ACK, TcpState::TimeWait),
        ],
    );
    // Exactly one inactive->active and one active->inactive edge.
    assert_eq!(act.iter().filter(|(w, i)| !w && *i).count(), 1);
    assert_eq!(act.iter().filter(|(w, i)| *w && !i).count(), 1);
    assert_eq!(act[2], (false, true));
    assert_eq!(act[4], (true, false));
}

#[test]
fn server_fin_first() {
    let mut ct = ConnTable::new(8, 1, Timeouts::default());
    let id = ct.insert(nat_conn(40001), 0).unwrap();
    script(
        &mut ct,
        id,
        &[
            (IN, SYN, TcpState::SynRecv),
            (OUT, SYNACK, TcpState::SynRecv),
            (IN, ACK, TcpState::Established),
            (OUT, FIN, TcpState::FinWait),
            (IN, ACK, TcpState::FinWait),
            (IN, FIN, TcpState::TimeWait),
            (OUT, ACK, TcpState::TimeWait),
        ],
    );
}

#[test]
fn simultaneous_close_both_orders() {
    let mut ct = ConnTable::new(8, 1, Timeouts::default());
    for (first, second, mid) in [(IN, OUT, TcpState::CloseWait), (OUT, IN, TcpState::FinWait)] {
        let id = ct.insert(nat_conn(40002), 0).unwrap();
        script(
            &mut ct,
            id,
            &[
                (IN, SYN, TcpState::SynRecv),
                (OUT, SYNACK, TcpState::SynRecv),
                (IN, ACK, TcpState::Established),
                (first, FIN, mid),
                (second, FIN, TcpState::TimeWait),
                (first, ACK, TcpState::TimeWait),
                (second, ACK, TcpState::TimeWait),
            ],
        );
        ct.remove(id).unwrap();
    }
}

#[test]
fn retransmitted_syn_rearms_syn_recv() {
    let t = Timeouts::default();
    let mut ct = ConnTable::new(8, 1, t);
    let id = ct.insert(nat_conn(40003), 0).unwrap();
    ct.on_packet(id, IN, SYN, 0);
    let tr = ct.on_packet(id, IN, SYN, 3_000);
    assert_eq!(tr.state, TcpState::SynRecv);
    assert_eq!(
        ct.get(id).unwrap().expires_at_ms(),
        3_000 + u64::from(t.tcp_syn_recv_s) * 1000
    );
    // A SYN retransmitted on an established conn leaves it established.
    ct.on_packet(id, IN, ACK, 3_010);
    assert_eq!(
        ct.on_packet(id, IN, SYN, 3_020).state,
        TcpState::Established
    );
}

#[test]
fn rst_from_either_side_closes_and_deactivates() {
    let t = Timeouts::default();
    for rst_dir in [IN, OUT] {
        let mut ct = ConnTable::new(8, 1, t);
        let id = ct.insert(nat_conn(40004), 0).unwrap();
        script(
            &mut ct,
            id,
            &[
                (IN, SYN, TcpState::SynRecv),
                (IN, ACK, TcpState::Established),
            ],
        );
        let tr = ct.on_packet(id, rst_dir, RST | ACK, 100);
        assert_eq!(tr.state, TcpState::Close);
        assert!(tr.was_active && !tr.is_active);
        assert_eq!(
            ct.get(id).unwrap().expires_at_ms(),
            100 + u64::from(t.tcp_close_s) * 1000
        );
    }
}

#[test]
fn dr_conn_uses_input_only_until_a_reply_is_seen() {
    let mut ct = ConnTable::new(8, 1, Timeouts::default());
    let id = ct.insert(nat_conn(40005), 0).unwrap();
    ct.set_input_only(id, true);
    script(
        &mut ct,
        id,
        &[
            (IN, SYN, TcpState::SynRecv),
            (IN, ACK, TcpState::Established),
            (IN, FIN, TcpState::FinWait), // INPUT would say CLOSE_WAIT
            (IN, ACK, TcpState::FinWait),
        ],
    );
    assert!(ct.get(id).unwrap().is_input_only());
    ct.on_packet(id, OUT, ACK, 100);
    assert!(!ct.get(id).unwrap().is_input_only());
}

#[test]
fn udp_is_its_own_state_and_just_rearms() {
    let t = Timeouts::default();
    let mut ct = ConnTable::new(8, 1, t);
    let mut c = nat_conn(5353);
    c.original.proto = 17;
    c.reply.proto = 17;
    let id = ct.insert(c, 0).unwrap();
    assert_eq!(ct.get(id).unwrap().state(), TcpState::Udp);
    assert_eq!(ct.get(id).unwrap().state().name(), "UDP");
    let tr = ct.on_packet(id, OUT, RST | SYN, 7_000);
    assert_eq!(tr.state, TcpState::Udp);
    assert!(!tr.was_active && !tr.is_active);
    assert_eq!(
        ct.get(id).unwrap().expires_at_ms(),
        7_000 + u64::from(t.udp_s) * 1000
    );
}

#[test]
fn conn_timeout_override_applies_to_established_only() {
    let mut ct = ConnTable::new(8, 1, Timeouts::default());
    let mut c = nat_conn(40006);
    c.timeout_override_s = Some(7200);
    let id = ct.insert(c, 0).unwrap();
    ct.on_packet(id, IN, SYN, 0);
    assert_eq!(ct.get(id).unwrap().expires_at_ms(), 30_000);
    ct.on_packet(id, IN, ACK, 0);
    assert_eq!(ct.get(id).unwrap().expires_at_ms(), 7_200_000);
    ct.on_packet(id, IN, FIN, 0);
    assert_eq!(ct.get(id).unwrap().expires_at_ms(), 60_000);
}
