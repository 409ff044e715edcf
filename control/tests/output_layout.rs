//! Golden strings: dpvsctl prints exactly what ipvsadm prints for the same table.

use control::ctl::output::{self, ListFormat};
use proto::v1 as pb;

fn key(p: pb::Protocol, vip: &str, port: u32) -> Option<pb::ServiceKey> {
    Some(pb::ServiceKey {
        protocol: p as i32,
        vip: vip.into(),
        vport: port,
    })
}

fn dest(
    addr: &str,
    port: u32,
    mode: pb::ForwardMode,
    w: u32,
    act: u32,
    inact: u32,
) -> pb::DestStatus {
    pb::DestStatus {
        dest: Some(pb::Dest {
            addr: addr.into(),
            port,
            weight: w,
            mode: mode as i32,
            u_threshold: 100,
            l_threshold: 10,
            inhibited: false,
            check: None,
            sorry: false,
        }),
        active_conns: act,
        inactive_conns: inact,
        traffic: Some(pb::Traffic {
            conns: 12,
            inpkts: 345,
            outpkts: 300,
            inbytes: 123_456_789,
            outbytes: 45_678_901_234,
        }),
        rate: (w == 1 && act == 3).then_some(pb::Rate {
            cps: 2,
            inpps: 150,
            outpps: 120,
            inbps: 123_456_789,
            outbps: 45_000,
        }),
    }
}

fn table() -> pb::ListServicesResponse {
    pb::ListServicesResponse {
        table_size: 4096,
        services: vec![
            pb::ServiceStatus {
                service: Some(pb::Service {
                    key: key(pb::Protocol::Tcp, "10.0.0.100", 80),
                    scheduler: "rr".into(),
                    ..Default::default()
                }),
                traffic: Some(pb::Traffic {
                    conns: 24,
                    inpkts: 690,
                    outpkts: 600,
                    inbytes: 246_913_578,
                    outbytes: 91_357_802_468,
                }),
                dests: vec![
                    dest("192.168.0.11", 80, pb::ForwardMode::Nat, 1, 3, 7),
                    dest("192.168.0.12", 8080, pb::ForwardMode::Fullnat, 100, 0, 0),
                ],
                rate: Some(pb::Rate {
                    cps: 4,
                    inpps: 300,
                    outpps: 240,
                    inbps: 246_913_578,
                    outbps: 90_000,
                }),
                ..Default::default()
            },
            pb::ServiceStatus {
                service: Some(pb::Service {
                    key: key(pb::Protocol::Udp, "10.0.0.100", 53),
                    scheduler: "wlc".into(),
                    persistence: Some(pb::Persistence {
                        timeout_s: 300,
                        netmask_len: Some(24),
                    }),
                    ..Default::default()
                }),
                traffic: Some(pb::Traffic::default()),
                dests: vec![dest("192.168.0.13", 53, pb::ForwardMode::Dr, 2, 0, 15)],
                rate: None,
                ..Default::default()
            },
            pb::ServiceStatus {
                service: Some(pb::Service {
                    key: key(pb::Protocol::Tcp, "2001:db8::100", 443),
                    scheduler: "sh".into(),
                    sched_flags: vec!["sh-fallback".into(), "sh-port".into()],
                    persistence: Some(pb::Persistence {
                        timeout_s: 60,
                        netmask_len: Some(128),
                    }),
                    ..Default::default()
                }),
                traffic: None,
                dests: vec![dest("2001:db8::11", 443, pb::ForwardMode::Tun, 1, 0, 0)],
                rate: None,
                ..Default::default()
            },
        ],
    }
}

#[test]
fn list_numeric() {
    let got = output::services(&table(), true, ListFormat::default());
    let want = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.100:80 rr
  -> 192.168.0.11:80              Masq    1      3          7         
  -> 192.168.0.12:8080            FullNat 100    0          0         
UDP  10.0.0.100:53 wlc persistent 300 mask 255.255.255.0
  -> 192.168.0.13:53              Route   2      0          15        
TCP  [2001:db8::100]:443 sh (sh-fallback,sh-port) persistent 60
  -> [2001:db8::11]:443           Tunnel  1      0          0         
";
    assert_eq!(got, want);
}

#[test]
fn list_one_service_has_no_version_line() {
    let mut t = table();
    t.services.truncate(1);
    let got = output::services(&t, false, ListFormat::default());
    assert!(got.starts_with("Prot LocalAddress:Port Scheduler Flags\n"));
}

#[test]
fn list_stats() {
    let got = output::services(
        &table(),
        true,
        ListFormat {
            stats: true,
            ..Default::default()
        },
    );
    let want = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  10.0.0.100:80                      24      690      600  246913K   91357M
  -> 192.168.0.11:80                    12      345      300  123456K   45678M
  -> 192.168.0.12:8080                  12      345      300  123456K   45678M
UDP  10.0.0.100:53                       0        0        0        0        0
  -> 192.168.0.13:53                    12      345      300  123456K   45678M
TCP  [2001:db8::100]:443                 0        0        0        0        0
  -> [2001:db8::11]:443                 12      345      300  123456K   45678M
";
    assert_eq!(got, want);
}

#[test]
fn list_stats_exact() {
    let mut t = table();
    t.services.truncate(1);
    let got = output::services(
        &t,
        false,
        ListFormat {
            stats: true,
            exact: true,
            ..Default::default()
        },
    );
    let want = "\
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  10.0.0.100:80                      24      690      600 246913578 91357802468
  -> 192.168.0.11:80                    12      345      300 123456789 45678901234
  -> 192.168.0.12:8080                  12      345      300 123456789 45678901234
";
    assert_eq!(got, want);
}

#[test]
fn list_thresholds() {
    let mut t = table();
    t.services.truncate(1);
    let got = output::services(
        &t,
        false,
        ListFormat {
            thresholds: true,
            ..Default::default()
        },
    );
    let want = "\
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  10.0.0.100:80 rr
  -> 192.168.0.11:80              100        10         3          7         
  -> 192.168.0.12:8080            100        10         0          0         
";
    assert_eq!(got, want);
}

fn conn(state: &str, expires: u32, local: Option<(&str, u32)>) -> pb::Connection {
    pb::Connection {
        protocol: pb::Protocol::Tcp as i32,
        client_addr: "172.16.0.5".into(),
        client_port: 35672,
        virtual_addr: "10.0.0.100".into(),
        virtual_port: 80,
        local_addr: local.map(|l| l.0.to_string()).unwrap_or_default(),
        local_port: local.map(|l| l.1).unwrap_or(0),
        dest_addr: "192.168.0.11".into(),
        dest_port: 80,
        state: state.into(),
        expires_s: expires,
        worker: 0,
    }
}

#[test]
fn list_connections() {
    let got = output::connections(
        &[conn("TIME_WAIT", 114, None), conn("ESTABLISHED", 899, None)],
        false,
    );
    let want = "\
IPVS connection entries
pro expire state       source             virtual            destination
TCP 01:54  TIME_WAIT   172.16.0.5:35672   10.0.0.100:80      192.168.0.11:80
TCP 14:59  ESTABLISHED 172.16.0.5:35672   10.0.0.100:80      192.168.0.11:80
";
    assert_eq!(got, want);
    assert_eq!(
        output::connections(&[], false),
        "IPVS connection entries\npro expire state       source             virtual            destination\n"
    );
}

#[test]
fn list_connections_fullnat_local_column() {
    let got = output::connections(
        &[
            conn("ESTABLISHED", 60, Some(("192.168.0.1", 1025))),
            conn("SYN_RECV", 5, None),
        ],
        false,
    );
    let want = "\
IPVS connection entries
pro expire state       source             virtual            local              destination
TCP 01:00  ESTABLISHED 172.16.0.5:35672   10.0.0.100:80      192.168.0.1:1025   192.168.0.11:80
TCP 00:05  SYN_RECV    172.16.0.5:35672   10.0.0.100:80      -                  192.168.0.11:80
";
    assert_eq!(got, want);
}

#[test]
fn list_connections_with_their_worker() {
    let mut second = conn("SYN_RECV", 5, None);
    second.worker = 1;
    let got = output::connections(
        &[conn("ESTABLISHED", 60, Some(("192.168.0.1", 1025))), second],
        true,
    );
    let want = "\
IPVS connection entries
pro expire state       source             virtual            local              destination        worker
TCP 01:00  ESTABLISHED 172.16.0.5:35672   10.0.0.100:80      192.168.0.1:1025   192.168.0.11:80    0
TCP 00:05  SYN_RECV    172.16.0.5:35672   10.0.0.100:80      -                  192.168.0.11:80    1
";
    assert_eq!(got, want);
}

#[test]
fn stats_has_a_section_per_worker() {
    let s = pb::StatsResponse {
        rx_packets: 30,
        workers: vec![
            pb::WorkerStats {
                worker: 0,
                rx_packets: 10,
                handed_over: 4,
                conns: 2,
                ..Default::default()
            },
            pb::WorkerStats {
                worker: 1,
                rx_packets: 20,
                handover_in: 4,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let got = output::stats(&s);
    for line in [
        "rx_packets 30\n",
        "worker.0.rx_packets 10\n",
        "worker.0.handed_over 4\n",
        "worker.0.conns 2\n",
        "worker.1.rx_packets 20\n",
        "worker.1.handover_in 4\n",
        "worker.1.drops 0\n",
    ] {
        assert!(got.contains(line), "{line:?} in\n{got}");
    }
}

#[test]
fn timeout_line() {
    assert_eq!(
        output::timeouts(&pb::Timeouts {
            tcp_s: 900,
            tcp_fin_s: 120,
            udp_s: 300
        }),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
}

#[test]
fn list_rate() {
    // ipvsadm's FMT_RATE: the title, "%-33s" + print_largenum x5 per service,
    // "  -> %-28s %8u %8u %8u" + print_largenum x2 per real server.
    let got = output::services(
        &table(),
        true,
        ListFormat {
            rate: true,
            ..Default::default()
        },
    );
    let want = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS
  -> RemoteAddress:Port
TCP  10.0.0.100:80                       4      300      240  246913K    90000
  -> 192.168.0.11:80                     2      150      120  123456K    45000
  -> 192.168.0.12:8080                   0        0        0        0        0
UDP  10.0.0.100:53                       0        0        0        0        0
  -> 192.168.0.13:53                     0        0        0        0        0
TCP  [2001:db8::100]:443                 0        0        0        0        0
  -> [2001:db8::11]:443                  0        0        0        0        0
";
    assert_eq!(got, want);
}

#[test]
fn list_persistent_conn() {
    // ipvsadm's FMT_PERSISTENTCONN: its own title, the plain service line,
    // "  -> %-28s %-9u %-11u %-10u %-10u" per real server.
    let template = |port: u32| pb::Connection {
        client_port: 0,
        state: "NONE".into(),
        dest_port: port,
        ..conn("NONE", 300, None)
    };
    let conns = [template(80), template(80), conn("ESTABLISHED", 900, None)];
    let got = output::services_persistent(&table(), true, &conns);
    let want = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  10.0.0.100:80 rr
  -> 192.168.0.11:80              1         2           3          7         
  -> 192.168.0.12:8080            100       0           0          0         
UDP  10.0.0.100:53 wlc persistent 300 mask 255.255.255.0
  -> 192.168.0.13:53              2         0           0          15        
TCP  [2001:db8::100]:443 sh (sh-fallback,sh-port) persistent 60
  -> [2001:db8::11]:443           1         0           0          0         
";
    assert_eq!(got, want);
}
