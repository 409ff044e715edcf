//! Per-state timeouts in seconds, with IPVS defaults and the `ipvsadm --set` triple.
//!
//! Only configuration: the table reads these when a conn's timer is (re)armed, so a
//! change applies to each conn at its next packet, as in IPVS.

use crate::tcp::TcpState;

/// Timeout per state in seconds. `Default` is the IPVS table (`tcp_timeouts[]`,
/// `udp_timeouts[]`), except SYN_RECV which follows this project's spec (30 s; the
/// kernel uses 60 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// A new TCP conn before its first segment updated the state (kernel: 2 s).
    pub tcp_none_s: u32,
    pub tcp_established_s: u32,
    pub tcp_syn_sent_s: u32,
    pub tcp_syn_recv_s: u32,
    pub tcp_fin_wait_s: u32,
    pub tcp_time_wait_s: u32,
    pub tcp_close_s: u32,
    pub tcp_close_wait_s: u32,
    pub tcp_last_ack_s: u32,
    pub tcp_listen_s: u32,
    pub tcp_synack_s: u32,
    /// Every non-TCP conn.
    pub udp_s: u32,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            tcp_none_s: 2,
            tcp_established_s: 900,
            tcp_syn_sent_s: 120,
            tcp_syn_recv_s: 30,
            tcp_fin_wait_s: 120,
            tcp_time_wait_s: 120,
            tcp_close_s: 10,
            tcp_close_wait_s: 60,
            tcp_last_ack_s: 30,
            tcp_listen_s: 120,
            tcp_synack_s: 120,
            udp_s: 300,
        }
    }
}

impl Timeouts {
    /// Timeout of a state in seconds (`Udp` gives `udp_s`).
    pub fn for_state(&self, s: TcpState) -> u32 {
        match s {
            TcpState::None => self.tcp_none_s,
            TcpState::Established => self.tcp_established_s,
            TcpState::SynSent => self.tcp_syn_sent_s,
            TcpState::SynRecv => self.tcp_syn_recv_s,
            TcpState::FinWait => self.tcp_fin_wait_s,
            TcpState::TimeWait => self.tcp_time_wait_s,
            TcpState::Close => self.tcp_close_s,
            TcpState::CloseWait => self.tcp_close_wait_s,
            TcpState::LastAck => self.tcp_last_ack_s,
            TcpState::Listen => self.tcp_listen_s,
            TcpState::SynAck => self.tcp_synack_s,
            TcpState::Udp => self.udp_s,
        }
    }

    /// Every state's timeout in milliseconds, indexed by `TcpState as usize`:
    /// what the table adds to the clock when it (re)arms a timer, read with
    /// one index instead of [`Timeouts::for_state`]'s match and a multiply.
    pub fn ms_by_state(&self) -> [u64; TcpState::COUNT] {
        let mut ms = [0; TcpState::COUNT];
        for (i, m) in ms.iter_mut().enumerate() {
            *m = u64::from(self.for_state(TcpState::ALL[i])) * 1000;
        }
        ms
    }

    /// `ipvsadm --set tcp tcpfin udp`: ESTABLISHED, FIN_WAIT and UDP timeouts in
    /// seconds; 0 leaves a value unchanged, as ipvsadm does.
    pub fn set_ipvsadm(&mut self, tcp: u32, tcpfin: u32, udp: u32) {
        if tcp != 0 {
            self.tcp_established_s = tcp;
        }
        if tcpfin != 0 {
            self.tcp_fin_wait_s = tcpfin;
        }
        if udp != 0 {
            self.udp_s = udp;
        }
    }

    /// Builder form of [`Timeouts::set_ipvsadm`].
    pub fn with_ipvsadm(mut self, tcp: u32, tcpfin: u32, udp: u32) -> Timeouts {
        self.set_ipvsadm(tcp, tcpfin, udp);
        self
    }

    /// The triple `ipvsadm -L --timeout` prints: (tcp, tcpfin, udp).
    pub fn ipvsadm(&self) -> (u32, u32, u32) {
        (self.tcp_established_s, self.tcp_fin_wait_s, self.udp_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_ipvs() {
        let t = Timeouts::default();
        assert_eq!(t.ipvsadm(), (900, 120, 300));
        assert_eq!(t.for_state(TcpState::Close), 10);
        assert_eq!(t.for_state(TcpState::SynRecv), 30);
    }

    #[test]
    fn ms_by_state_is_for_state_in_ms() {
        let t = Timeouts::default().with_ipvsadm(7200, 33, 61);
        let ms = t.ms_by_state();
        for s in TcpState::ALL {
            assert_eq!(ms[s as usize], u64::from(t.for_state(s)) * 1000, "{s:?}");
        }
    }

    #[test]
    fn ipvsadm_set_zero_means_unchanged() {
        let t = Timeouts::default().with_ipvsadm(7200, 0, 60);
        assert_eq!(t.ipvsadm(), (7200, 120, 60));
    }
}
