//! rte_flow steering of FULLNAT replies (what DPVS's `sa_pool` does with the
//! flow director): on a port whose PMD validates such rules, each worker's
//! slice of local ports goes to its own queue, so replies need no hand-over.
//!
//! The slices are the hand-over's partition, `lport % nworkers`, which for a
//! power-of-two worker count is `lport & (nworkers - 1)`: a mask the NIC can
//! match. The owner function stays the same, so a reply that escapes the
//! rules (a rule the NIC refused, a flow created late) is still handed over to
//! the right worker. Rules cover every address of the port that is not a VIP
//! (the DIP, the LIPs): traffic to a VIP is spread by RSS as usual.
//!
//! This module only computes which rules a snapshot wants; `dpdk::flow`
//! installs them, and `Dataplane` keeps the installed set in step.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::snapshot::Snapshot;
use crate::wire::ip_proto;

/// One rule: TCP or UDP to `addr` whose destination port matches `value`
/// under `mask` goes to rx queue `queue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowRule {
    pub addr: IpAddr,
    pub proto: u8,
    pub port_mask: u16,
    pub port_value: u16,
    pub queue: u16,
}

/// Whether `nworkers` can be steered by a port mask (a power of two above 1).
pub fn maskable(nworkers: usize) -> bool {
    nworkers > 1 && nworkers.is_power_of_two()
}

/// The rule that probes whether a port's PMD validates this kind of rule.
pub fn probe(nworkers: usize) -> FlowRule {
    FlowRule {
        addr: IpAddr::from([192, 0, 2, 1]),
        proto: ip_proto::TCP,
        port_mask: (nworkers as u16).wrapping_sub(1),
        port_value: 0,
        queue: 0,
    }
}

/// Every rule port index `port` needs under `snap` with `nworkers` workers:
/// for each address of the port that is not a VIP, for TCP and UDP, one rule
/// per worker.
pub fn wanted(snap: &Snapshot, port: usize, nworkers: usize) -> BTreeSet<FlowRule> {
    let mut out = BTreeSet::new();
    if !maskable(nworkers) {
        return out;
    }
    let vips: BTreeSet<IpAddr> = snap.services.values().map(|s| s.key.vip).collect();
    let mask = (nworkers - 1) as u16;
    for l in snap.local.values().filter(|l| l.port == port) {
        if vips.contains(&l.addr) {
            continue;
        }
        for proto in [ip_proto::TCP, ip_proto::UDP] {
            for w in 0..nworkers as u16 {
                out.insert(FlowRule {
                    addr: l.addr,
                    proto,
                    port_mask: mask,
                    port_value: w,
                    queue: w,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn snapshot() -> Snapshot {
        let key = ServiceKey {
            proto: Proto::Tcp,
            vip: ip("10.0.0.100"),
            vport: 80,
        };
        let addr = |port: &str, a: &str, len| AddrSpec {
            port: port.into(),
            addr: ip(a),
            prefix_len: len,
        };
        let desc = ConfigDesc {
            services: vec![ServiceSpec {
                key,
                scheduler: "rr".into(),
                sched_flags: vec![],
                persistence: None,
                conn_timeout_s: None,
                ops: false,
                dests: vec![],
            }],
            addrs: vec![
                addr("dpdk0", "10.0.0.1", 24),
                addr("dpdk0", "10.0.0.100", 32),
                addr("dpdk1", "192.168.0.1", 24),
            ],
            routes: vec![],
        };
        let ext = ExtDesc {
            laddrs: vec![LocalAddrSpec {
                service: key,
                addr: ip("192.168.0.200"),
                port: "dpdk1".into(),
            }],
            ..Default::default()
        };
        crate::snapshot::compile_for_test(&desc, &ext)
    }

    #[test]
    fn each_worker_gets_its_slice_of_every_non_vip_address() {
        let snap = snapshot();
        let r = wanted(&snap, 1, 4);
        // DIP and LIP, TCP and UDP, 4 workers.
        assert_eq!(r.len(), 2 * 2 * 4);
        for rule in &r {
            assert!(rule.addr == ip("192.168.0.1") || rule.addr == ip("192.168.0.200"));
            assert_eq!(rule.port_mask, 3);
            assert_eq!(rule.port_value, rule.queue);
            // The slice is the hand-over's partition: the owner function agrees.
            for lport in (1024u16..1100).filter(|p| p & 3 == rule.port_value) {
                assert_eq!(crate::laddr::owner(lport, 4), usize::from(rule.queue));
            }
        }
        let client_side = wanted(&snap, 0, 4);
        assert!(
            client_side.iter().all(|r| r.addr == ip("10.0.0.1")),
            "never the VIP"
        );
        assert_eq!(client_side.len(), 2 * 4);
    }

    #[test]
    fn no_rules_without_a_maskable_worker_count() {
        let snap = snapshot();
        assert!(wanted(&snap, 1, 1).is_empty());
        assert!(wanted(&snap, 1, 3).is_empty());
        assert!(maskable(2) && maskable(8) && !maskable(6) && !maskable(1));
    }
}
