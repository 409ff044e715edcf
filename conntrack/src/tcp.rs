//! The IPVS TCP state machine, table-driven exactly as `ip_vs_proto_tcp.c`.
//!
//! The director sees only some of the segments of a connection (in DR/TUN mode only
//! the client's), so this is not a TCP endpoint machine: it is IPVS's coarse guess
//! used to pick a timeout and to count a conn as active (ESTABLISHED) or inactive.
//! Rows are chosen by the packet's direction (INPUT = client side, OUTPUT = real
//! server side, INPUT-ONLY when the director never sees replies) and by one flag with
//! priority RST > SYN > FIN > ACK; a segment with none of them moves to CLOSE, as in
//! the kernel. `secure_tcp` selects the kernel's `tcp_states_dos` table. Pure
//! functions only: no timers, no table access.

use core::fmt;
use core::ops::BitOr;

/// Connection state as `ipvsadm -Lnc` prints it. `Udp` is not a TCP state: it is
/// the single state of every non-TCP conn (printed "UDP").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpState {
    None = 0,
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait = 4,
    TimeWait = 5,
    Close = 6,
    CloseWait = 7,
    LastAck = 8,
    Listen = 9,
    SynAck = 10,
    Udp = 11,
}

/// Alias for readers who think of UDP conns too.
pub type ConnState = TcpState;

impl TcpState {
    /// Every TCP state, in the kernel's column order (not `Udp`): the
    /// first of [`TcpState::ALL`].
    pub const TCP_ALL: [TcpState; 11] = {
        let mut a = [TcpState::None; 11];
        let mut i = 0;
        while i < a.len() {
            a[i] = TcpState::ALL[i];
            i += 1;
        }
        a
    };

    /// How many states there are (`Udp` included).
    pub const COUNT: usize = 12;

    /// Every state, in discriminant order (`TcpState::ALL[s as usize] == s`).
    pub const ALL: [TcpState; TcpState::COUNT] = [
        TcpState::None,
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::SynAck,
        TcpState::Udp,
    ];

    /// The name `ipvsadm -Lnc` prints.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::SynAck => "SYNACK",
            TcpState::Udp => "UDP",
        }
    }

    /// IPVS counts a conn in ActiveConn only while ESTABLISHED; all else is InActConn.
    pub fn is_active(self) -> bool {
        self == TcpState::Established
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// TCP header flags, using the wire bit positions so the dataplane can pass byte 13
/// of the TCP header straight through with [`TcpFlags::from_bits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(u8);

impl TcpFlags {
    pub const NONE: TcpFlags = TcpFlags(0);
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);

    pub const fn from_bits(b: u8) -> TcpFlags {
        TcpFlags(b)
    }
    pub const fn bits(self) -> u8 {
        self.0
    }
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
    pub const fn syn(self) -> bool {
        self.0 & 0x02 != 0
    }
    pub const fn ack(self) -> bool {
        self.0 & 0x10 != 0
    }
    pub const fn fin(self) -> bool {
        self.0 & 0x01 != 0
    }
    pub const fn rst(self) -> bool {
        self.0 & 0x04 != 0
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

/// Which half of the kernel table applies to a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpDir {
    /// Client -> director (Direction::Original) while replies are also seen.
    Input,
    /// Real server -> director (Direction::Reply).
    Output,
    /// Client -> director for a conn whose replies bypass the director (DR/TUN).
    InputOnly,
}

const ES: TcpState = TcpState::Established;
const SS: TcpState = TcpState::SynSent;
const SR: TcpState = TcpState::SynRecv;
const FW: TcpState = TcpState::FinWait;
const TW: TcpState = TcpState::TimeWait;
const CL: TcpState = TcpState::Close;
const CW: TcpState = TcpState::CloseWait;
const LA: TcpState = TcpState::LastAck;
const LI: TcpState = TcpState::Listen;
const SA: TcpState = TcpState::SynAck;

type Rows = [[TcpState; 11]; 4];

/// `tcp_states[]`: [INPUT, OUTPUT, INPUT-ONLY] x rows [syn, fin, ack, rst] x column
/// = current state (sNO sES sSS sSR sFW sTW sCL sCW sLA sLI sSA).
pub const TCP_STATES: [Rows; 3] = [
    // INPUT
    [
        /*syn*/ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        /*fin*/ [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
        /*ack*/ [CL, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /*rst*/ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
    ],
    // OUTPUT
    [
        /*syn*/ [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
        /*fin*/ [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
        /*ack*/ [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
        /*rst*/ [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    ],
    // INPUT-ONLY
    [
        /*syn*/ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        /*fin*/ [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        /*ack*/ [CL, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /*rst*/ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
];

/// `tcp_states_dos[]`, used while `secure_tcp` defense is on.
pub const TCP_STATES_DOS: [Rows; 3] = [
    // INPUT
    [
        /*syn*/ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SA],
        /*fin*/ [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, SA],
        /*ack*/ [CL, ES, SS, SR, FW, TW, CL, CW, CL, LI, SA],
        /*rst*/ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
    // OUTPUT
    [
        /*syn*/ [SS, ES, SS, SA, SS, SS, SS, SS, SS, LI, SA],
        /*fin*/ [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
        /*ack*/ [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
        /*rst*/ [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    ],
    // INPUT-ONLY
    [
        /*syn*/ [SA, ES, ES, SR, SA, SA, SA, SA, SA, SA, SA],
        /*fin*/ [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        /*ack*/ [CL, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /*rst*/ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
];

/// Row of the table a segment selects: RST > SYN > FIN > ACK, `None` for none.
pub fn flag_row(flags: TcpFlags) -> Option<usize> {
    if flags.rst() {
        Some(3)
    } else if flags.syn() {
        Some(0)
    } else if flags.fin() {
        Some(1)
    } else if flags.ack() {
        Some(2)
    } else {
        None
    }
}

/// [`flag_row`] of every combination of the low five flag bits (FIN SYN
/// RST PSH ACK; the higher ones choose no row), row 4 for none.
const ROW_OF: [u8; 32] = {
    let mut r = [4u8; 32];
    let mut b = 0;
    while b < 32 {
        r[b] = if b & 0x04 != 0 {
            3
        } else if b & 0x02 != 0 {
            0
        } else if b & 0x01 != 0 {
            1
        } else if b & 0x10 != 0 {
            2
        } else {
            4
        };
        b += 1;
    }
    r
};

/// Both tables, each direction's rows plus row 4 (no flag: CLOSE), each row
/// with a twelfth column for `Udp` (not a TCP state: CLOSE), so
/// [`next_state`] is one index per level, nothing to check.
type Wide = [[[TcpState; 12]; 5]; 3];

const fn widen(t: &[Rows; 3]) -> Wide {
    let mut w = [[[TcpState::Close; 12]; 5]; 3];
    let mut d = 0;
    while d < 3 {
        let mut r = 0;
        while r < 4 {
            let mut c = 0;
            while c < 11 {
                w[d][r][c] = t[d][r][c];
                c += 1;
            }
            r += 1;
        }
        d += 1;
    }
    w
}

static NEXT: [Wide; 2] = [widen(&TCP_STATES), widen(&TCP_STATES_DOS)];

/// `set_tcp_state`'s lookup: the next state for a segment with `flags` seen in `dir`.
/// A segment without RST/SYN/FIN/ACK moves to CLOSE (kernel behaviour).
#[inline]
pub fn next_state(secure_tcp: bool, dir: TcpDir, flags: TcpFlags, cur: TcpState) -> TcpState {
    let half = match dir {
        TcpDir::Input => 0,
        TcpDir::Output => 1,
        TcpDir::InputOnly => 2,
    };
    let row = ROW_OF[usize::from(flags.bits() & 0x1f)];
    NEXT[usize::from(secure_tcp)][half][usize::from(row)][cur as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_states_in_discriminant_order() {
        for (i, s) in TcpState::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
        }
        assert_eq!(TcpState::TCP_ALL[..], TcpState::ALL[..11]);
        assert_eq!(TcpState::ALL[11], TcpState::Udp);
    }

    #[test]
    fn names_match_ipvsadm() {
        let names: Vec<&str> = TcpState::TCP_ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "NONE",
                "ESTABLISHED",
                "SYN_SENT",
                "SYN_RECV",
                "FIN_WAIT",
                "TIME_WAIT",
                "CLOSE",
                "CLOSE_WAIT",
                "LAST_ACK",
                "LISTEN",
                "SYNACK"
            ]
        );
        assert_eq!(TcpState::Udp.to_string(), "UDP");
    }

    #[test]
    fn flag_priority_is_rst_syn_fin_ack() {
        let all = TcpFlags::RST | TcpFlags::SYN | TcpFlags::FIN | TcpFlags::ACK;
        assert_eq!(flag_row(all), Some(3));
        assert_eq!(
            flag_row(TcpFlags::SYN | TcpFlags::FIN | TcpFlags::ACK),
            Some(0)
        );
        assert_eq!(flag_row(TcpFlags::FIN | TcpFlags::ACK), Some(1));
        assert_eq!(flag_row(TcpFlags::ACK | TcpFlags::PSH), Some(2));
        assert_eq!(flag_row(TcpFlags::PSH), None);
    }

    /// The lookup before its flattened table, kept as the reference.
    fn next_state_ref(secure_tcp: bool, dir: TcpDir, flags: TcpFlags, cur: TcpState) -> TcpState {
        let table = if secure_tcp {
            &TCP_STATES_DOS
        } else {
            &TCP_STATES
        };
        let half = match dir {
            TcpDir::Input => 0,
            TcpDir::Output => 1,
            TcpDir::InputOnly => 2,
        };
        match flag_row(flags) {
            Some(row) => table[half][row]
                .get(cur as usize)
                .copied()
                .unwrap_or(TcpState::Close),
            None => TcpState::Close,
        }
    }

    /// Every table, direction, flag byte and state: the same next state.
    #[test]
    fn next_state_matches_the_reference_everywhere() {
        let mut states = TcpState::TCP_ALL.to_vec();
        states.push(TcpState::Udp);
        for secure in [false, true] {
            for dir in [TcpDir::Input, TcpDir::Output, TcpDir::InputOnly] {
                for b in 0..=255u8 {
                    for &cur in &states {
                        let f = TcpFlags::from_bits(b);
                        assert_eq!(
                            next_state(secure, dir, f, cur),
                            next_state_ref(secure, dir, f, cur),
                            "{secure} {dir:?} {b:#x} {cur:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn flags_from_wire_byte() {
        let f = TcpFlags::from_bits(0x12); // SYN+ACK as on the wire
        assert!(f.syn() && f.ack() && !f.fin() && !f.rst());
        assert!(f.contains(TcpFlags::SYN));
    }
}
