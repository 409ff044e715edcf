//! Prometheus metrics: what dpvsd's `[metrics] listen` endpoint serves.
//!
//! [`render`] turns one [`Reading`] of the dataplane's counters into the text
//! exposition format, version 0.0.4 (the one Prometheus and `promtool check
//! metrics` read natively): a pure function, unit-tested on `FakeBackend`
//! data. [`http`] serves it (`GET /metrics`, 404 elsewhere) on the control
//! runtime; dpvsd calls [`bind`] and [`serve`]. docs/metrics.md lists every
//! metric.
//!
//! The counters are the dataplane's raw ones, never the `-Z` view: a
//! Prometheus counter must only go up (`rate()` reads a decrease as a
//! restart), so `dpvsctl -Z` changes what `-Ln --stats` shows and nothing
//! here (docs/metrics.md). Until someone runs `-Z`,
//! every service and real-server counter equals `dpvsctl -Ln --stats --exact`.
//!
//! The `prometheus` crate writes the format: `prometheus-client` writes only
//! OpenMetrics text, whose counter `# TYPE` lines (without `_total`) a 0.0.4
//! reader would not apply to the `_total` samples.

use dataplane::{PortStats, Proto, Stats, WorkerStats};
use prometheus::{Encoder, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};

use crate::backend::Backend;

pub mod http;

pub use http::{bind, serve, CONTENT_TYPE};

/// One reading of everything the endpoint shows.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// Raw counters (not `-Z` adjusted).
    pub stats: Stats,
    /// `(name, count)` of the forwarded-packet events.
    pub events: Vec<(&'static str, u64)>,
    /// `(name, count)` of the connection sync daemons (`crate::sync::Counters`).
    pub sync: Vec<(&'static str, u64)>,
}

impl Reading {
    /// Reads `backend` (a few milliseconds: call from a blocking thread).
    pub fn of(backend: &dyn Backend) -> Reading {
        Reading {
            stats: backend.stats(),
            events: backend.events(),
            // Zeros until the daemons' own counters are put in.
            sync: crate::sync::Counters::default().snapshot(),
        }
    }
}

/// The label value of a protocol: `tcp`, `udp` (as dpvs.toml writes them).
fn proto_label(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
    }
}

const SERVICE_LABELS: &[&str] = &["proto", "vip", "vport"];
const DEST_LABELS: &[&str] = &["proto", "vip", "vport", "dest", "dport"];

/// The five ipvsadm `--stats` counters of a service or a real server.
struct TrafficFamilies {
    conns: IntCounterVec,
    inpkts: IntCounterVec,
    outpkts: IntCounterVec,
    inbytes: IntCounterVec,
    outbytes: IntCounterVec,
    active: GaugeVec,
    inactive: GaugeVec,
}

impl TrafficFamilies {
    /// `dpvs_<what>_...` with `labels`; `whom` names it in the help texts.
    fn new(
        reg: &Registry,
        what: &str,
        whom: &str,
        labels: &[&str],
    ) -> prometheus::Result<TrafficFamilies> {
        let c = |name: &str, help: &str| counter(reg, &format!("dpvs_{what}_{name}"), help, labels);
        let g = |name: &str, help: &str| gauge(reg, &format!("dpvs_{what}_{name}"), help, labels);
        Ok(TrafficFamilies {
            conns: c(
                "connections_total",
                &format!("Connections scheduled to the {whom} (ipvsadm --stats Conns)."),
            )?,
            inpkts: c(
                "in_packets_total",
                &format!("Packets from clients forwarded to the {whom} (InPkts)."),
            )?,
            outpkts: c(
                "out_packets_total",
                &format!("Reply packets of the {whom} forwarded to clients (OutPkts)."),
            )?,
            inbytes: c(
                "in_bytes_total",
                &format!("IP bytes from clients forwarded to the {whom} (InBytes)."),
            )?,
            outbytes: c(
                "out_bytes_total",
                &format!("IP bytes of the {whom}'s replies forwarded to clients (OutBytes)."),
            )?,
            active: g(
                "active_connections",
                &format!("Established (TCP) connections of the {whom} (ActiveConn)."),
            )?,
            inactive: g(
                "inactive_connections",
                &format!("Other tracked connections of the {whom} (InActConn)."),
            )?,
        })
    }

    fn set(
        &self,
        labels: &[&str],
        t: &dataplane::TrafficStats,
        active: u64,
        inactive: u64,
    ) -> prometheus::Result<()> {
        self.conns
            .get_metric_with_label_values(labels)?
            .inc_by(t.conns);
        self.inpkts
            .get_metric_with_label_values(labels)?
            .inc_by(t.inpkts);
        self.outpkts
            .get_metric_with_label_values(labels)?
            .inc_by(t.outpkts);
        self.inbytes
            .get_metric_with_label_values(labels)?
            .inc_by(t.inbytes);
        self.outbytes
            .get_metric_with_label_values(labels)?
            .inc_by(t.outbytes);
        self.active
            .get_metric_with_label_values(labels)?
            .set(active as f64);
        self.inactive
            .get_metric_with_label_values(labels)?
            .set(inactive as f64);
        Ok(())
    }
}

fn counter(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let v = IntCounterVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(v.clone()))?;
    Ok(v)
}

fn gauge(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
    let v = GaugeVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(v.clone()))?;
    Ok(v)
}

/// `r` in the text exposition format 0.0.4. Families are sorted by name and
/// their samples by label values; a family with no samples (no services yet)
/// is left out. An error means a bug here (an invalid name), never bad data.
pub fn render(r: &Reading) -> Result<String, String> {
    render_families(r).map_err(|e| format!("cannot render metrics: {e}"))
}

fn render_families(r: &Reading) -> prometheus::Result<String> {
    let reg = Registry::new();
    let st = &r.stats;

    let services = TrafficFamilies::new(&reg, "service", "virtual service", SERVICE_LABELS)?;
    let dests = TrafficFamilies::new(&reg, "dest", "real server", DEST_LABELS)?;
    let acl_drops = counter(
        &reg,
        "dpvs_service_acl_drops_total",
        "Packets from clients the virtual service's access lists refused: list=\"blacklist\" \
         (on it), list=\"whitelist\" (not on a whitelist that is not empty).",
        &["proto", "vip", "vport", "list"],
    )?;
    let conn_limit_drops = counter(
        &reg,
        "dpvs_service_conn_limit_drops_total",
        "New connections the virtual service refused at its connection limit (--conn-limit).",
        SERVICE_LABELS,
    )?;
    let weight = gauge(
        &reg,
        "dpvs_dest_weight",
        "Scheduling weight of the real server (0: quiescent or inhibited by a health check).",
        DEST_LABELS,
    )?;
    let inhibited = gauge(
        &reg,
        "dpvs_dest_inhibited",
        "1 while a health check (active or passive) has the real server down, else 0.",
        DEST_LABELS,
    )?;
    for s in &st.services {
        let (proto, vip, vport) = (
            proto_label(s.key.proto),
            s.key.vip.to_string(),
            s.key.vport.to_string(),
        );
        let active: u64 = s.dests.iter().map(|d| u64::from(d.active_conns)).sum();
        let inactive: u64 = s.dests.iter().map(|d| u64::from(d.inactive_conns)).sum();
        services.set(&[proto, &vip, &vport], &s.traffic, active, inactive)?;
        conn_limit_drops
            .get_metric_with_label_values(&[proto, &vip, &vport])?
            .inc_by(s.conn_limit_drops);
        for (list, n) in [
            ("blacklist", s.acl_drops.blacklist),
            ("whitelist", s.acl_drops.whitelist),
        ] {
            acl_drops
                .get_metric_with_label_values(&[proto, &vip, &vport, list])?
                .inc_by(n);
        }
        for d in &s.dests {
            let (dest, dport) = (d.addr.to_string(), d.port.to_string());
            let labels = [proto, &vip, &vport, &dest, &dport];
            dests.set(
                &labels,
                &d.traffic,
                u64::from(d.active_conns),
                u64::from(d.inactive_conns),
            )?;
            weight
                .get_metric_with_label_values(&labels)?
                .set(f64::from(d.weight));
            inhibited
                .get_metric_with_label_values(&labels)?
                .set(f64::from(u8::from(d.inhibited)));
        }
    }

    type WorkerField = fn(&WorkerStats) -> u64;
    let worker_counters: [(&str, &str, WorkerField); 4] = [
        (
            "dpvs_worker_rx_packets_total",
            "Packets the worker received from its NIC queues.",
            |w| w.rx_packets,
        ),
        (
            "dpvs_worker_tx_packets_total",
            "Packets the worker's NIC queues took for transmission.",
            |w| w.tx_packets,
        ),
        (
            "dpvs_worker_handed_over_packets_total",
            "Packets the worker passed to the worker owning their connection.",
            |w| w.handed_over,
        ),
        (
            "dpvs_worker_handover_in_packets_total",
            "Packets other workers passed to this worker.",
            |w| w.handover_in,
        ),
    ];
    let worker_gauges: [(&str, &str, WorkerField); 2] = [
        (
            "dpvs_conn_table_entries",
            "Connections in the worker's connection table.",
            |w| w.conns,
        ),
        (
            "dpvs_conn_table_capacity",
            "Connections the worker's connection table can hold.",
            |w| w.conn_capacity,
        ),
    ];
    // Workers by index, as `dpvsctl stats` numbers them.
    let workers: Vec<(String, &WorkerStats)> = st
        .workers
        .iter()
        .enumerate()
        .map(|(i, w)| (i.to_string(), w))
        .collect();
    for (name, help, field) in worker_counters {
        let c = counter(&reg, name, help, &["worker"])?;
        for (i, w) in &workers {
            c.get_metric_with_label_values(&[i])?.inc_by(field(w));
        }
    }
    for (name, help, field) in worker_gauges {
        let g = gauge(&reg, name, help, &["worker"])?;
        // A capacity of 0: the worker has not built its table yet (the first
        // moments after start); no sample rather than a fill of +Inf.
        for (i, w) in workers.iter().filter(|(_, w)| w.conn_capacity > 0) {
            g.get_metric_with_label_values(&[i])?.set(field(w) as f64);
        }
    }
    let drops = counter(
        &reg,
        "dpvs_worker_drops_total",
        "Packets the worker did not forward, by reason (each dropped packet counts under exactly one).",
        &["worker", "reason"],
    )?;
    for (i, w) in &workers {
        for (reason, n) in &w.drops_by_reason {
            drops
                .get_metric_with_label_values(&[i.as_str(), reason.name()])?
                .inc_by(*n);
        }
    }

    type PortField = fn(&PortStats) -> u64;
    let port_counters: [(&str, &str, PortField); 7] = [
        (
            "dpvs_port_rx_packets_total",
            "Packets the port received (NIC statistics).",
            |p| p.rx_packets,
        ),
        (
            "dpvs_port_tx_packets_total",
            "Packets the port sent.",
            |p| p.tx_packets,
        ),
        (
            "dpvs_port_rx_bytes_total",
            "Bytes the port received.",
            |p| p.rx_bytes,
        ),
        ("dpvs_port_tx_bytes_total", "Bytes the port sent.", |p| {
            p.tx_bytes
        }),
        (
            "dpvs_port_rx_missed_total",
            "Packets the NIC dropped because its rx queues were full.",
            |p| p.rx_missed,
        ),
        (
            "dpvs_port_rx_errors_total",
            "Erroneous received packets.",
            |p| p.rx_errors,
        ),
        ("dpvs_port_tx_errors_total", "Failed transmissions.", |p| {
            p.tx_errors
        }),
    ];
    for (name, help, field) in port_counters {
        let c = counter(&reg, name, help, &["port"])?;
        for ps in &st.ports {
            c.get_metric_with_label_values(&[ps.name.as_str()])?
                .inc_by(field(ps));
        }
    }
    let link = gauge(
        &reg,
        "dpvs_port_link_up",
        "1 when the port's link is up, else 0.",
        &["port"],
    )?;
    for ps in &st.ports {
        link.get_metric_with_label_values(&[ps.name.as_str()])?
            .set(if ps.link_up { 1.0 } else { 0.0 });
    }

    let events = counter(
        &reg,
        "dpvs_events_total",
        "Things done to forwarded packets, summed over workers (toa_inserted, mss_clamped, ...).",
        &["event"],
    )?;
    for (name, n) in &r.events {
        events.get_metric_with_label_values(&[*name])?.inc_by(*n);
    }

    for (name, n) in &r.sync {
        let c = counter(
            &reg,
            &format!("dpvs_sync_{name}_total"),
            "Connection sync daemons (docs/ha.md): messages and connections sent and received.",
            &[],
        )?;
        c.get_metric_with_label_values(&[] as &[&str])?.inc_by(*n);
    }

    if let Some(m) = st.mempool {
        let in_use = gauge(
            &reg,
            "dpvs_mempool_in_use",
            "Packet mbufs taken from the pool (rte_mempool_in_use_count).",
            &[],
        )?;
        let cap = gauge(
            &reg,
            "dpvs_mempool_capacity",
            "Packet mbufs in the pool.",
            &[],
        )?;
        in_use
            .get_metric_with_label_values::<&str>(&[])?
            .set(m.in_use as f64);
        cap.get_metric_with_label_values::<&str>(&[])?
            .set(m.capacity as f64);
    }

    let mut buf = Vec::new();
    TextEncoder::new().encode(&reg.gather(), &mut buf)?;
    String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use dataplane::{
        DestStats, DropReason, ForwardMode, MempoolStats, PortStats, ServiceKey, ServiceStats,
        TrafficStats,
    };

    use super::*;
    use crate::backend::FakeBackend;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn traffic(conns: u64, inpkts: u64, outpkts: u64, inbytes: u64, outbytes: u64) -> TrafficStats {
        TrafficStats {
            conns,
            inpkts,
            outpkts,
            inbytes,
            outbytes,
        }
    }

    fn dest(
        addr: &str,
        port: u16,
        weight: u32,
        active: u32,
        inactive: u32,
        t: TrafficStats,
    ) -> DestStats {
        DestStats {
            addr: ip(addr),
            port,
            mode: ForwardMode::Nat,
            weight,
            inhibited: false,
            active_conns: active,
            inactive_conns: inactive,
            traffic: t,
            syn_unanswered: 0,
            syn_answered: 0,
        }
    }

    /// Two services (TCP over IPv4 with two real servers, UDP over IPv6),
    /// two workers, two ports, events and a mempool.
    fn fake() -> FakeBackend {
        let b = FakeBackend::new(&["dpdk0", "dpdk1"]);
        let worker = |rx, tx, conns, no_service, handed| WorkerStats {
            rx_packets: rx,
            tx_packets: tx,
            drops: no_service + 1,
            drops_by_reason: DropReason::ALL
                .iter()
                .map(|&r| {
                    let n = match r {
                        DropReason::NoService => no_service,
                        DropReason::BadIpv4 => 1,
                        _ => 0,
                    };
                    (r, n)
                })
                .collect(),
            handed_over: handed,
            handover_in: 3,
            conns,
            conn_capacity: 1 << 20,
            sched_tables_built: 0,
        };
        b.set_stats(Stats {
            services: vec![
                ServiceStats {
                    acl_drops: dataplane::AclDrops {
                        blacklist: 9,
                        whitelist: 2,
                    },
                    conn_limit_drops: 4,
                    key: ServiceKey {
                        proto: Proto::Tcp,
                        vip: ip("10.0.0.100"),
                        vport: 80,
                    },
                    traffic: traffic(12, 72, 48, 4560, 5280),
                    dests: vec![
                        dest("192.168.0.11", 80, 1, 2, 3, traffic(7, 42, 28, 2660, 3080)),
                        // Down by its health check.
                        DestStats {
                            inhibited: true,
                            ..dest(
                                "192.168.0.12",
                                8080,
                                0,
                                1,
                                0,
                                traffic(5, 30, 20, 1900, 2200),
                            )
                        },
                    ],
                },
                ServiceStats {
                    acl_drops: Default::default(),
                    conn_limit_drops: 0,
                    key: ServiceKey {
                        proto: Proto::Udp,
                        vip: ip("fd00:10::100"),
                        vport: 53,
                    },
                    traffic: traffic(4, 4, 4, 240, 400),
                    dests: vec![dest(
                        "fd00:192::11",
                        53,
                        3,
                        0,
                        4,
                        traffic(4, 4, 4, 240, 400),
                    )],
                },
            ],
            drops: Vec::new(),
            ports: vec![
                PortStats {
                    name: "dpdk0".into(),
                    link_up: true,
                    rx_packets: 100,
                    tx_packets: 90,
                    rx_bytes: 6000,
                    tx_bytes: 5400,
                    rx_missed: 2,
                    ..Default::default()
                },
                PortStats {
                    name: "dpdk1".into(),
                    link_up: false,
                    ..Default::default()
                },
            ],
            rx_packets: 110,
            tx_packets: 95,
            workers: vec![worker(60, 50, 9, 4, 7), worker(50, 45, 8, 0, 0)],
            mempool: Some(MempoolStats {
                in_use: 1500,
                capacity: 8191,
            }),
        });
        b.set_events(vec![("toa_inserted", 0), ("icmp_translated", 2)]);
        b
    }

    fn rendered() -> String {
        render(&Reading::of(&fake())).unwrap()
    }

    /// `name{labels} value` lines of `text`, labels as written.
    fn samples(text: &str) -> Vec<(String, f64)> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("series value");
                (series.to_string(), value.parse().expect("a number"))
            })
            .collect()
    }

    fn value(text: &str, series: &str) -> f64 {
        samples(text)
            .into_iter()
            .find(|(s, _)| s == series)
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .1
    }

    /// The families `text` declares: (name, type).
    fn families(text: &str) -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| {
                let (n, t) = l.split_once(' ').expect("name type");
                (n.to_string(), t.to_string())
            })
            .collect()
    }

    #[test]
    fn services_and_dests_carry_the_stats_numbers() {
        let t = rendered();
        let tcp = r#"{proto="tcp",vip="10.0.0.100",vport="80"}"#;
        let udp = r#"{proto="udp",vip="fd00:10::100",vport="53"}"#;
        for (name, want_tcp, want_udp) in [
            ("dpvs_service_connections_total", 12.0, 4.0),
            ("dpvs_service_in_packets_total", 72.0, 4.0),
            ("dpvs_service_out_packets_total", 48.0, 4.0),
            ("dpvs_service_in_bytes_total", 4560.0, 240.0),
            ("dpvs_service_out_bytes_total", 5280.0, 400.0),
            // Summed over the service's real servers.
            ("dpvs_service_active_connections", 3.0, 0.0),
            ("dpvs_service_inactive_connections", 3.0, 4.0),
        ] {
            assert_eq!(value(&t, &format!("{name}{tcp}")), want_tcp, "{name} tcp");
            assert_eq!(value(&t, &format!("{name}{udp}")), want_udp, "{name} udp");
        }
        let rs2 = r#"{dest="192.168.0.12",dport="8080",proto="tcp",vip="10.0.0.100",vport="80"}"#;
        for (name, want) in [
            ("dpvs_dest_connections_total", 5.0),
            ("dpvs_dest_in_packets_total", 30.0),
            ("dpvs_dest_out_packets_total", 20.0),
            ("dpvs_dest_in_bytes_total", 1900.0),
            ("dpvs_dest_out_bytes_total", 2200.0),
            ("dpvs_dest_active_connections", 1.0),
            ("dpvs_dest_inactive_connections", 0.0),
            ("dpvs_dest_weight", 0.0),
            ("dpvs_dest_inhibited", 1.0),
        ] {
            assert_eq!(value(&t, &format!("{name}{rs2}")), want, "{name}");
        }
        let rs6 = r#"{dest="fd00:192::11",dport="53",proto="udp",vip="fd00:10::100",vport="53"}"#;
        assert_eq!(
            value(&t, &format!("dpvs_dest_inactive_connections{rs6}")),
            4.0
        );
        assert_eq!(value(&t, &format!("dpvs_dest_weight{rs6}")), 3.0);
        assert_eq!(value(&t, &format!("dpvs_dest_inhibited{rs6}")), 0.0);
        // Access-list drops per service and list, zeros included.
        for (series, want) in [
            (
                r#"{list="blacklist",proto="tcp",vip="10.0.0.100",vport="80"}"#,
                9.0,
            ),
            (
                r#"{list="whitelist",proto="tcp",vip="10.0.0.100",vport="80"}"#,
                2.0,
            ),
            (
                r#"{list="blacklist",proto="udp",vip="fd00:10::100",vport="53"}"#,
                0.0,
            ),
        ] {
            assert_eq!(
                value(&t, &format!("dpvs_service_acl_drops_total{series}")),
                want
            );
        }
        // Connection-limit refusals per service, zeros included.
        for (series, want) in [
            (r#"{proto="tcp",vip="10.0.0.100",vport="80"}"#, 4.0),
            (r#"{proto="udp",vip="fd00:10::100",vport="53"}"#, 0.0),
        ] {
            assert_eq!(
                value(&t, &format!("dpvs_service_conn_limit_drops_total{series}")),
                want
            );
        }
        // Exactly one series per service and per real server.
        let n = |prefix: &str| {
            samples(&t)
                .iter()
                .filter(|(s, _)| s.starts_with(prefix))
                .count()
        };
        assert_eq!(n("dpvs_service_connections_total{"), 2);
        assert_eq!(n("dpvs_dest_connections_total{"), 3);
    }

    #[test]
    fn workers_ports_events_and_pool() {
        let t = rendered();
        for (series, want) in [
            (r#"dpvs_worker_rx_packets_total{worker="0"}"#, 60.0),
            (r#"dpvs_worker_rx_packets_total{worker="1"}"#, 50.0),
            (r#"dpvs_worker_tx_packets_total{worker="1"}"#, 45.0),
            (
                r#"dpvs_worker_drops_total{reason="no_service",worker="0"}"#,
                4.0,
            ),
            (
                r#"dpvs_worker_drops_total{reason="no_service",worker="1"}"#,
                0.0,
            ),
            (
                r#"dpvs_worker_drops_total{reason="bad_ipv4",worker="1"}"#,
                1.0,
            ),
            (r#"dpvs_worker_handed_over_packets_total{worker="0"}"#, 7.0),
            (r#"dpvs_worker_handover_in_packets_total{worker="1"}"#, 3.0),
            (r#"dpvs_conn_table_entries{worker="0"}"#, 9.0),
            (r#"dpvs_conn_table_entries{worker="1"}"#, 8.0),
            (r#"dpvs_conn_table_capacity{worker="1"}"#, 1048576.0),
            (r#"dpvs_port_rx_packets_total{port="dpdk0"}"#, 100.0),
            (r#"dpvs_port_tx_bytes_total{port="dpdk0"}"#, 5400.0),
            (r#"dpvs_port_rx_missed_total{port="dpdk0"}"#, 2.0),
            (r#"dpvs_port_link_up{port="dpdk0"}"#, 1.0),
            (r#"dpvs_port_link_up{port="dpdk1"}"#, 0.0),
            (r#"dpvs_events_total{event="icmp_translated"}"#, 2.0),
            (r#"dpvs_events_total{event="toa_inserted"}"#, 0.0),
            ("dpvs_mempool_in_use", 1500.0),
            ("dpvs_mempool_capacity", 8191.0),
        ] {
            assert_eq!(value(&t, series), want, "{series}");
        }
        // Every drop reason of every worker, zeros included.
        let drops = samples(&t)
            .iter()
            .filter(|(s, _)| s.starts_with("dpvs_worker_drops_total{"))
            .count();
        assert_eq!(drops, 2 * DropReason::COUNT);
    }

    #[test]
    fn every_family_is_typed_and_documented() {
        let t = rendered();
        let fams = families(&t);
        for (name, ty) in &fams {
            assert!(
                t.contains(&format!("# HELP {name} ")),
                "{name} has no help text"
            );
            // Prometheus' conventions, which `promtool check metrics` lints too.
            assert_eq!(
                name.ends_with("_total"),
                ty == "counter",
                "{name} is a {ty}"
            );
        }
        // docs/metrics.md lists exactly these families, with their types.
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md"),
        )
        .expect("docs/metrics.md");
        let documented: std::collections::BTreeSet<(String, String)> = doc
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let name = cells.get(1)?.strip_prefix("`dpvs_")?.strip_suffix('`')?;
                Some((format!("dpvs_{name}"), cells.get(2)?.to_string()))
            })
            .collect();
        let rendered: std::collections::BTreeSet<(String, String)> = fams.into_iter().collect();
        assert_eq!(
            documented, rendered,
            "docs/metrics.md's table and the endpoint differ"
        );
    }

    #[test]
    fn a_worker_without_its_table_yet_has_no_table_figures() {
        let b = fake();
        let mut st = b.stats();
        st.workers[1].conn_capacity = 0;
        b.set_stats(st);
        let t = render(&Reading::of(&b)).unwrap();
        assert_eq!(value(&t, r#"dpvs_conn_table_entries{worker="0"}"#), 9.0);
        assert!(!t.contains(r#"dpvs_conn_table_entries{worker="1"}"#), "{t}");
        assert!(
            !t.contains(r#"dpvs_conn_table_capacity{worker="1"}"#),
            "{t}"
        );
        assert_eq!(
            value(&t, r#"dpvs_worker_rx_packets_total{worker="1"}"#),
            50.0
        );
    }

    #[test]
    fn nothing_to_show_renders_nothing() {
        assert_eq!(render(&Reading::default()).unwrap(), "");
    }

    #[test]
    fn label_values_are_escaped() {
        let b = FakeBackend::new(&[]);
        b.set_stats(Stats {
            ports: vec![PortStats {
                name: "odd\"port\\x\ny".into(),
                ..Default::default()
            }],
            ..Stats::default()
        });
        let t = render(&Reading::of(&b)).unwrap();
        assert!(
            t.contains(r#"dpvs_port_link_up{port="odd\"port\\x\ny"} 0"#),
            "{t}"
        );
        promtool_accepts(&t);
    }

    /// `promtool check metrics` (Debian's prometheus package) passes on `text`.
    /// Without promtool the check is skipped, except under CI=true.
    fn promtool_accepts(text: &str) {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
                assert!(!ci, "promtool: {e} (deploy/deps.sh installs it)");
                let _ = writeln!(std::io::stderr(), "SKIPPED promtool check: {e}");
                return;
            }
        };
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write to promtool");
        let out = child.wait_with_output().expect("promtool");
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn promtool_accepts_the_text() {
        promtool_accepts(&rendered());
    }

    /// Every `expr` in deploy/grafana/dpvs-dashboard.json.
    fn dashboard_queries() -> Vec<String> {
        fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        match (k.as_str(), v.as_str()) {
                            ("expr", Some(e)) => out.push(e.to_string()),
                            _ => walk(v, out),
                        }
                    }
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/grafana/dpvs-dashboard.json");
        let text = std::fs::read_to_string(&path).expect("the dashboard");
        let json: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
        let mut out = Vec::new();
        walk(&json, &mut out);
        out
    }

    #[test]
    fn the_dashboard_queries_metrics_the_endpoint_has() {
        let have: std::collections::BTreeSet<String> =
            families(&rendered()).into_iter().map(|(n, _)| n).collect();
        let queries = dashboard_queries();
        let mut used = std::collections::BTreeSet::new();
        for q in &queries {
            let names: Vec<&str> = q
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("dpvs_"))
                .collect();
            assert!(!names.is_empty(), "{q} uses no dpvs metric");
            for n in names {
                assert!(
                    have.contains(n),
                    "the dashboard queries {n}, which is not served"
                );
                used.insert(n.to_string());
            }
        }
        for must in [
            "dpvs_service_connections_total",
            "dpvs_service_in_packets_total",
            "dpvs_service_out_packets_total",
            "dpvs_service_in_bytes_total",
            "dpvs_service_out_bytes_total",
            "dpvs_service_active_connections",
            "dpvs_worker_drops_total",
            "dpvs_conn_table_entries",
            "dpvs_conn_table_capacity",
        ] {
            assert!(used.contains(must), "the dashboard does not show {must}");
        }
    }

    /// The dashboard's PromQL parses: `promtool check rules` over recording
    /// rules made of the queries, Grafana's variables given plain values.
    #[test]
    fn the_dashboard_queries_parse() {
        let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
        for (i, q) in dashboard_queries().iter().enumerate() {
            let q = q
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*")
                .replace("$vip", ".*");
            rules.push_str(&format!(
                "      - record: dashboard:query{i}\n        expr: '{}'\n",
                q.replace('\'', "''")
            ));
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rules.yml");
        std::fs::write(&file, &rules).unwrap();
        let out = match std::process::Command::new("promtool")
            .args(["check", "rules"])
            .arg(&file)
            .output()
        {
            Ok(o) => o,
            Err(e) => {
                let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
                assert!(!ci, "promtool: {e} (deploy/deps.sh installs it)");
                eprintln!("SKIPPED dashboard query check: promtool: {e}");
                return;
            }
        };
        assert!(
            out.status.success(),
            "promtool check rules: {}{}\n{rules}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `-Z` changes what `-Ln --stats` shows, never the endpoint's counters.
    #[tokio::test]
    async fn zeroing_leaves_the_metrics_counters_alone() {
        use proto::v1 as pb;
        use proto::v1::dpvs_server::Dpvs;

        let fake = std::sync::Arc::new(fake());
        let mut store = crate::store::Store::new(vec!["dpdk0".into(), "dpdk1".into()]);
        store
            .add_service(dataplane::ServiceSpec {
                key: ServiceKey {
                    proto: Proto::Tcp,
                    vip: ip("10.0.0.100"),
                    vport: 80,
                },
                scheduler: "rr".into(),
                sched_flags: Vec::new(),
                persistence: None,
                conn_timeout_s: None,
                ops: false,
                dests: Vec::new(),
            })
            .unwrap();
        let svc = crate::server::DpvsService::new(store, fake.clone());
        let listed = |r: pb::ListServicesResponse| {
            r.services[0].traffic.as_ref().map(|t| t.conns).unwrap_or(0)
        };
        let req = || tonic::Request::new(pb::ListServicesRequest { key: None });
        assert_eq!(
            listed(svc.list_services(req()).await.unwrap().into_inner()),
            12
        );
        svc.zero_stats(tonic::Request::new(pb::ZeroStatsRequest { key: None }))
            .await
            .unwrap();
        assert_eq!(
            listed(svc.list_services(req()).await.unwrap().into_inner()),
            0
        );
        let t = render(&Reading::of(fake.as_ref())).unwrap();
        assert_eq!(
            value(
                &t,
                r#"dpvs_service_connections_total{proto="tcp",vip="10.0.0.100",vport="80"}"#
            ),
            12.0
        );
    }
}
