//! dpvsctl -> gRPC -> dpvsd's service -> backend, in one process: the tonic server
//! on a temporary unix socket over a `FakeBackend` (`inproc::Daemon`), driven by
//! the same `run_args` that the `dpvsctl` binary calls.

mod inproc;

use std::net::IpAddr;
use std::sync::Arc;

use control::backend::FakeBackend;
use control::config::Listen;
use control::ctl::run_args;
use control::server::{bind, DpvsService};
use dataplane::{
    ConnEntry, DestStats, ForwardMode, Proto, ServiceKey, ServiceStats, Stats, TrafficStats,
};
use inproc::{Daemon, CONFIG};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn services_and_dests_reach_the_backend_and_list_like_ipvsadm() {
    let d = Daemon::start().await;
    d.ok("-A -t 10.0.0.100:80 -s rr").await;
    d.ok("-a -t 10.0.0.100:80 -r 192.168.0.11:80 -m").await;
    d.ok("-a -t 10.0.0.100:80 -r 192.168.0.12:8080 -b -w 3")
        .await;
    d.ok("-A -u 10.0.0.100:53 -p -M 255.255.255.0").await;
    d.ok("-a -u 10.0.0.100:53 -r 192.168.0.13").await;

    let desc = d.backend.current().unwrap();
    assert_eq!(desc.services.len(), 2);
    let tcp = desc
        .services
        .iter()
        .find(|s| s.key.proto == Proto::Tcp)
        .unwrap();
    assert_eq!(tcp.scheduler, "rr");
    assert_eq!(tcp.dests.len(), 2);
    assert_eq!(tcp.dests[0].mode, ForwardMode::Nat);
    assert_eq!((tcp.dests[1].port, tcp.dests[1].weight), (8080, 3));
    assert_eq!(tcp.dests[1].mode, ForwardMode::FullNat);
    let udp = desc
        .services
        .iter()
        .find(|s| s.key.proto == Proto::Udp)
        .unwrap();
    assert_eq!(udp.scheduler, "wlc");
    let p = udp.persistence.unwrap();
    assert_eq!((p.timeout_s, p.netmask_len), (300, 24));
    // No port on -r: the virtual port; no -g/-m/-i/-b: DR.
    assert_eq!(
        (udp.dests[0].port, udp.dests[0].mode),
        (53, ForwardMode::Dr)
    );
    // The VIP was put on dpdk0 as a host address.
    assert!(desc
        .addrs
        .iter()
        .any(|a| a.addr == ip("10.0.0.100") && a.port == "dpdk0" && a.prefix_len == 32));

    // Counters from the dataplane show up in the listing.
    let key = ServiceKey {
        proto: Proto::Tcp,
        vip: ip("10.0.0.100"),
        vport: 80,
    };
    d.backend.set_stats(Stats {
        services: vec![ServiceStats {
            key,
            acl_drops: Default::default(),
            conn_limit_drops: 0,
            traffic: TrafficStats {
                conns: 5,
                inpkts: 50,
                outpkts: 40,
                inbytes: 5000,
                outbytes: 4000,
            },
            dests: vec![DestStats {
                addr: ip("192.168.0.11"),
                port: 80,
                mode: ForwardMode::Nat,
                weight: 1,
                inhibited: false,
                active_conns: 2,
                inactive_conns: 3,
                traffic: TrafficStats {
                    conns: 5,
                    inpkts: 50,
                    outpkts: 40,
                    inbytes: 5000,
                    outbytes: 4000,
                },
                syn_unanswered: 0,
                syn_answered: 0,
            }],
        }],
        ..Stats::default()
    });

    let out = d.ok("-Ln").await;
    assert_eq!(
        out,
        "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.100:80 rr
  -> 192.168.0.11:80              Masq    1      2          3         
  -> 192.168.0.12:8080            FullNat 3      0          0         
UDP  10.0.0.100:53 wlc persistent 300 mask 255.255.255.0
  -> 192.168.0.13:53              Route   1      0          0         
"
    );

    let out = d.ok("-L -n --stats -t 10.0.0.100:80").await;
    assert_eq!(
        out,
        "\
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  10.0.0.100:80                       5       50       40     5000     4000
  -> 192.168.0.11:80                     5       50       40     5000     4000
  -> 192.168.0.12:8080                   0        0        0        0        0
"
    );

    // Edit and delete.
    d.ok("-E -t 10.0.0.100:80 -s wrr").await;
    d.ok("-e -t 10.0.0.100:80 -r 192.168.0.11:80 -m -w 7").await;
    d.ok("-d -t 10.0.0.100:80 -r 192.168.0.12:8080").await;
    let tcp = d.backend.current().unwrap().services[0].clone();
    assert_eq!(tcp.scheduler, "wrr");
    assert_eq!(tcp.dests.len(), 1);
    assert_eq!(tcp.dests[0].weight, 7);

    d.ok("-D -u 10.0.0.100:53").await;
    assert_eq!(d.backend.current().unwrap().services.len(), 1);
    d.ok("-C").await;
    let desc = d.backend.current().unwrap();
    assert!(desc.services.is_empty());
    // The auto-added VIP went with the last service using it.
    assert!(!desc.addrs.iter().any(|a| a.addr == ip("10.0.0.100")));
    assert_eq!(
        d.ok("-Ln").await,
        "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
    );
    d.stop().await;
}

#[tokio::test]
async fn errors_are_one_line_and_change_nothing() {
    let d = Daemon::start().await;
    d.ok("-A -t 10.0.0.100:80 -s rr").await;
    let applied = d.backend.applied().len();

    let cases: &[(&str, i32, &str)] = &[
        ("-A -t 10.0.0.100:80 -s rr", 1, "service already exists: TCP 10.0.0.100:80"),
        ("-D -t 10.0.0.101:80", 1, "no such service TCP 10.0.0.101:80"),
        ("-E -t 10.0.0.101:80 -s rr", 1, "no such service TCP 10.0.0.101:80"),
        ("-a -t 10.0.0.101:80 -r 192.168.0.11", 1, "no such service TCP 10.0.0.101:80"),
        ("-L -t 10.0.0.101:80", 1, "no such service TCP 10.0.0.101:80"),
        ("-A -t 10.0.0.102:80 -s fastest", 1, "scheduler: unknown scheduler \"fastest\" (one of rr, wrr, lc, wlc, sed, nq, lblc, lblcr, dh, sh, mh, conhash, fo, ovf, twos)"),
        ("-A -t 10.0.0.300:80", 2, "invalid address \"10.0.0.300:80\""),
        ("-a -t 10.0.0.100:80 -r 192.168.0.11:8080 -g", 1, "port: DR and TUN forward to the virtual port: real server port 8080 != 80"),
        ("-d -t 10.0.0.100:80 -r 192.168.0.99", 1, "no such real server 192.168.0.99:80 in TCP 10.0.0.100:80"),
        ("addr add 10.0.0.5/32 dev dpdk9", 1, "port: unknown port \"dpdk9\""),
        ("addr del 10.0.0.5 dev dpdk0", 1, "no such address 10.0.0.5 on dpdk0"),
        ("route del 10.9.0.0/16", 1, "no such route 10.9.0.0/16"),
        ("-Lq", 2, "unknown option '-q'"),
        ("-A -t 10.0.0.103:80 -s rr -b sh-port", 1, "sched_flags: incompatible scheduler flag \"sh-port\": it is for the sh scheduler, not rr"),
        ("-A -f 7 -s rr", 2, "fwmark services (-f) are not supported: no netfilter rule marks packets before dpvsd; use -t/-u VIP:PORT services"),
    ];
    d.refuses(cases).await;
    d.ok("-a -t 10.0.0.100:80 -r 192.168.0.11 -m").await;
    let e = d.err("-a -t 10.0.0.100:80 -r 192.168.0.11:80").await;
    assert_eq!(
        e.message,
        "real server already exists: 192.168.0.11:80 in TCP 10.0.0.100:80"
    );
    assert_eq!(d.backend.applied().len(), applied + 1);

    // The dataplane refusing a change leaves the old configuration in force.
    d.backend.fail_next_apply("out of memory");
    let e = d.err("-a -t 10.0.0.100:80 -r 192.168.0.12 -m").await;
    assert_eq!(e.message, "dataplane rejected the change: out of memory");
    let out = d.ok("-Ln").await;
    assert!(!out.contains("192.168.0.12"), "{out}");
    d.ok("-a -t 10.0.0.100:80 -r 192.168.0.12 -m").await;
    assert!(d.ok("-Ln").await.contains("192.168.0.12:80"));
    d.stop().await;
}

#[tokio::test]
async fn unreachable_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let argv: Vec<String> = vec![
        "--server".into(),
        format!("unix:{}", sock.display()),
        "-Ln".into(),
    ];
    let mut out = String::new();
    let e = run_args(&argv, None, &mut out).await.unwrap_err();
    assert_eq!(e.code, 1);
    assert_eq!(
        e.message,
        format!(
            "cannot reach dpvsd at unix:{}: No such file or directory (os error 2)",
            sock.display()
        )
    );
    // $DPVS_SERVER is used when --server is absent.
    let e = run_args(
        &["-Ln".to_string()],
        Some(format!("unix:{}", sock.display())),
        &mut out,
    )
    .await
    .unwrap_err();
    assert!(
        e.message.starts_with("cannot reach dpvsd at unix:"),
        "{e:?}"
    );
}

#[tokio::test]
async fn addrs_routes_timeouts_connections_stats() {
    let d = Daemon::start().await;
    d.ok("addr add 10.0.0.100/32 dev dpdk0").await;
    d.ok("route add 0.0.0.0/0 via 10.0.0.254 dev dpdk0").await;
    d.ok("route add 192.168.5.0/24 dev dpdk1").await;
    let desc = d.backend.current().unwrap();
    assert!(desc
        .addrs
        .iter()
        .any(|a| a.addr == ip("10.0.0.100") && a.prefix_len == 32 && a.port == "dpdk0"));
    assert_eq!(desc.routes.len(), 2);
    assert_eq!(desc.routes[0].via, Some(ip("10.0.0.254")));
    assert_eq!(desc.routes[1].via, None);

    assert_eq!(
        d.ok("addr show").await,
        "inet 10.0.0.1/24 dev dpdk0\ninet 192.168.0.1/24 dev dpdk1\ninet 10.0.0.100/32 dev dpdk0\n"
    );
    assert_eq!(
        d.ok("addr show dev dpdk1").await,
        "inet 192.168.0.1/24 dev dpdk1\n"
    );
    assert_eq!(
        d.ok("route show").await,
        "\
inet 10.0.0.0/24 dev dpdk0 scope link
inet 192.168.0.0/24 dev dpdk1 scope link
inet 0.0.0.0/0 via 10.0.0.254 dev dpdk0
inet 192.168.5.0/24 dev dpdk1
"
    );
    d.ok("route del 192.168.5.0/24").await;
    d.ok("addr del 10.0.0.100/32 dev dpdk0").await;
    let desc = d.backend.current().unwrap();
    assert_eq!(desc.routes.len(), 1);
    assert_eq!(desc.addrs.len(), 2);

    assert_eq!(
        d.ok("-L --timeout").await,
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    d.ok("--set 600 0 60").await;
    assert_eq!(
        d.ok("-Ln --timeout").await,
        "Timeout (tcp tcpfin udp): 600 120 60\n"
    );
    let t = d.backend.timeouts().unwrap();
    assert_eq!((t.tcp_s, t.tcp_fin_s, t.udp_s), (600, 120, 60));

    d.backend.set_connections(vec![ConnEntry {
        proto: Proto::Tcp,
        client: (ip("172.16.0.5"), 40000),
        virt: (ip("10.0.0.100"), 80),
        local: None,
        dest: (ip("192.168.0.11"), 80),
        state: "ESTABLISHED".into(),
        expires_s: 899,
        worker: 0,
    }]);
    assert_eq!(
        d.ok("-Lnc").await,
        "\
IPVS connection entries
pro expire state       source             virtual            destination
TCP 14:59  ESTABLISHED 172.16.0.5:40000   10.0.0.100:80      192.168.0.11:80
"
    );

    let mut stats = Stats {
        rx_packets: 10,
        tx_packets: 8,
        ..Stats::default()
    };
    stats.drops = dataplane::DropReason::ALL.iter().map(|r| (*r, 0)).collect();
    stats.drops[0].1 = 2;
    stats.ports.push(dataplane::PortStats {
        name: "dpdk0".into(),
        mac: [2, 0, 0, 0, 0, 1],
        link_up: true,
        rx_packets: 10,
        ..Default::default()
    });
    d.backend.set_stats(stats);
    let out = d.ok("stats").await;
    assert!(
        out.starts_with("rx_packets 10\ntx_packets 8\ntruncated 2\nunknown_ethertype 0\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "\nport.dpdk0.link_up 1\nport.dpdk0.mac 02:00:00:00:00:01\nport.dpdk0.rx_packets 10\n"
        ),
        "{out}"
    );
    d.stop().await;
}

#[tokio::test]
async fn socket_file_is_removed_on_shutdown() {
    let d = Daemon::start().await;
    let path = d.server.trim_start_matches("unix:").to_string();
    assert!(std::path::Path::new(&path).exists());
    // Owner only: whoever connects may reconfigure the director.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // socket_group: group members too (mode 0660, that group); chown needs root.
    let as_root = meta.uid() == 0;
    let gid = control::server::group_id("daemon", &std::fs::read_to_string("/etc/group").unwrap())
        .expect("Debian has a daemon group");
    if as_root {
        control::server::share_socket(std::path::Path::new(&path), "daemon").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (meta.permissions().mode() & 0o777, meta.gid()),
            (0o660, gid)
        );
    }
    let e = control::server::share_socket(std::path::Path::new(&path), "no-such-group-here")
        .unwrap_err();
    assert_eq!(
        e,
        "control.socket_group: no group \"no-such-group-here\" in /etc/group"
    );
    d.ok("-C").await;
    let dir = tempfile::tempdir().unwrap();
    // A second server on the same live socket is refused.
    let e = bind(&Listen::Unix(path.clone().into()))
        .await
        .err()
        .unwrap();
    assert!(e.contains("is in use"), "{e}");
    drop(dir);
    d.stop().await;
    assert!(!std::path::Path::new(&path).exists());
}

#[tokio::test]
async fn proxy_protocol_per_service_and_events_in_stats() {
    let d = Daemon::start().await;
    d.ok("-A -t 10.0.0.100:80 -s rr --proxy-protocol v2").await;
    d.ok("-a -t 10.0.0.100:80 -r 192.168.0.11:80 -b").await;
    let key = ServiceKey {
        proto: Proto::Tcp,
        vip: ip("10.0.0.100"),
        vport: 80,
    };
    let ext = d.backend.current_ext().expect("extras applied");
    assert_eq!(
        ext.proxy_protocol,
        vec![(key, dataplane::ProxyProtocol::V2)]
    );
    let list = d.ok("-Ln").await;
    assert!(list.contains("TCP  10.0.0.100:80 rr ppv2\n"), "{list}");

    // -E without --proxy-protocol keeps it; v1 changes it; none turns it off.
    d.ok("-E -t 10.0.0.100:80 -s wrr").await;
    assert!(d.ok("-Ln").await.contains("10.0.0.100:80 wrr ppv2\n"));
    d.ok("-E -t 10.0.0.100:80 -s wrr --proxy-protocol v1").await;
    let ext = d.backend.current_ext().unwrap();
    assert_eq!(
        ext.proxy_protocol,
        vec![(key, dataplane::ProxyProtocol::V1)]
    );
    d.ok("-E -t 10.0.0.100:80 -s wrr --proxy-protocol none")
        .await;
    assert!(d.backend.current_ext().unwrap().proxy_protocol.is_empty());
    assert!(d.ok("-Ln").await.contains("10.0.0.100:80 wrr\n"));

    // Bad values and UDP: one clear line, nothing changed.
    let e = d.err("-E -t 10.0.0.100:80 --proxy-protocol v9").await;
    assert_eq!(e.code, 2);
    assert!(
        e.message.contains("invalid proxy protocol \"v9\""),
        "{}",
        e.message
    );
    d.ok("-A -u 10.0.0.100:53").await;
    let e = d.err("-E -u 10.0.0.100:53 --proxy-protocol v2").await;
    assert!(e.message.contains("TCP services only"), "{}", e.message);

    d.backend
        .set_events(vec![("toa_inserted", 3), ("proxy_protocol_sent", 7)]);
    let stats = d.ok("stats").await;
    assert!(stats.contains("\nproxy_protocol_sent 7\n"), "{stats}");
    assert!(stats.contains("\ntoa_inserted 3\n"), "{stats}");
    d.stop().await;
}

#[tokio::test]
async fn synproxy_per_service_with_dpvs_flag() {
    let d = Daemon::start().await;
    d.ok("-A -t 10.0.0.100:80 -s rr -j enable").await;
    d.ok("-a -t 10.0.0.100:80 -r 192.168.0.11:80 -m").await;
    let key = ServiceKey {
        proto: Proto::Tcp,
        vip: ip("10.0.0.100"),
        vport: 80,
    };
    assert_eq!(d.backend.current_ext().unwrap().synproxy, vec![key]);
    assert!(d
        .ok("-Ln")
        .await
        .contains("TCP  10.0.0.100:80 rr synproxy\n"));
    let saved = d.ok("-S -n").await;
    assert!(
        saved.contains("-A -t 10.0.0.100:80 -s rr -j enable\n"),
        "{saved}"
    );
    let json = d.ok("-Ln --json").await;
    assert!(json.contains("\"synproxy\": true"), "{json}");

    // Real servers that answer around the director are refused while it is on.
    let e = d.err("-a -t 10.0.0.100:80 -r 192.168.0.12:80 -g").await;
    assert!(
        e.message
            .contains("the SYN proxy needs NAT or FULLNAT real servers"),
        "{}",
        e.message
    );
    // -E without -j keeps it; -j disable turns it off.
    d.ok("-E -t 10.0.0.100:80 -s wrr").await;
    assert_eq!(d.backend.current_ext().unwrap().synproxy, vec![key]);
    d.ok("-E -t 10.0.0.100:80 -s wrr -j disable").await;
    assert!(d.backend.current_ext().unwrap().synproxy.is_empty());
    assert!(d.ok("-Ln").await.contains("10.0.0.100:80 wrr\n"));
    d.ok("-a -t 10.0.0.100:80 -r 192.168.0.12:80 -g").await;
    let e = d.err("-E -t 10.0.0.100:80 -j enable").await;
    assert!(
        e.message.contains("192.168.0.12:80 is Route"),
        "{}",
        e.message
    );
    assert!(d.backend.current_ext().unwrap().synproxy.is_empty());

    // Bad switches and UDP: one clear line, nothing changed.
    let e = d.err("-E -t 10.0.0.100:80 -j on").await;
    assert_eq!(e.code, 2);
    assert!(
        e.message
            .contains("invalid synproxy switch \"on\": must be enable or disable"),
        "{}",
        e.message
    );
    let e = d.err("-A -u 10.0.0.100:53 -j enable").await;
    assert!(e.message.contains("TCP services only"), "{}", e.message);
    assert!(!d.ok("-Ln").await.contains(":53"));
    d.stop().await;
}

#[tokio::test]
async fn conn_limit_per_service_lists_saves_and_restores() {
    let d = Daemon::start().await;
    let key = |proto, vport| ServiceKey {
        proto,
        vip: ip("10.0.0.100"),
        vport,
    };
    let (tcp, udp) = (key(Proto::Tcp, 80), key(Proto::Udp, 53));
    let limits = || d.backend.current_ext().unwrap().conn_limit;
    d.ok("-A -t 10.0.0.100:80 -s rr --conn-limit 2").await;
    d.ok("-a -t 10.0.0.100:80 -r 192.168.0.11:80 -m").await;
    d.ok("-A -u 10.0.0.100:53 -s rr").await;
    assert_eq!(limits(), vec![(tcp, 2)], "-A without it: no limit");
    assert!(d
        .ok("-Ln")
        .await
        .contains("TCP  10.0.0.100:80 rr conn-limit 2\n"));
    assert!(d.ok("-Ln").await.contains("UDP  10.0.0.100:53 rr\n"));

    // What it refused, per service, in the API's stats and --json.
    d.backend.set_stats(Stats {
        services: vec![ServiceStats {
            key: tcp,
            traffic: Default::default(),
            dests: vec![],
            acl_drops: Default::default(),
            conn_limit_drops: 7,
        }],
        ..Default::default()
    });
    let j: serde_json::Value = serde_json::from_str(&d.ok("-Ln --json").await).unwrap();
    let svc = |vport: u64| {
        j["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["vport"] == vport)
            .unwrap()
            .clone()
    };
    assert_eq!(
        (
            svc(80)["conn_limit"].clone(),
            svc(80)["conn_limit_drops"].clone()
        ),
        (serde_json::json!(2), serde_json::json!(7))
    );
    assert_eq!(
        (
            svc(53)["conn_limit"].clone(),
            svc(53)["conn_limit_drops"].clone()
        ),
        (serde_json::json!(0), serde_json::json!(0))
    );

    // -E without --conn-limit keeps it; UDP services take one too.
    d.ok("-E -t 10.0.0.100:80 -s wrr").await;
    d.ok("-E -u 10.0.0.100:53 -s rr --conn-limit 100000").await;
    assert_eq!(limits(), vec![(tcp, 2), (udp, 100000)]);

    // -S writes it, and -C then -R gives the same table back.
    let saved = d.ok("-S -n").await;
    assert!(
        saved.contains("-A -t 10.0.0.100:80 -s wrr --conn-limit 2\n"),
        "{saved}"
    );
    assert!(
        saved.contains("-A -u 10.0.0.100:53 -s rr --conn-limit 100000\n"),
        "{saved}"
    );
    d.ok("-C").await;
    assert!(limits().is_empty(), "gone with its service");
    d.restore(&saved).await.unwrap();
    assert_eq!(d.ok("-S -n").await, saved);
    assert_eq!(limits(), vec![(tcp, 2), (udp, 100000)]);

    // Bad values: one line naming the option, exit 2, nothing changed.
    let applied = d.backend.applied().len();
    for bad in ["-1", "lots", "4294967296"] {
        let e = d
            .err(&format!("-E -t 10.0.0.100:80 -s wrr --conn-limit {bad}"))
            .await;
        assert_eq!(
            (e.code, e.message),
            (
                2,
                format!(
                    "invalid --conn-limit \"{bad}\": a number of connections 0..4294967295 \
                     (0 = no limit)"
                )
            )
        );
    }
    let e = d
        .restore("-A -t 10.0.0.101:80 --conn-limit -5\n")
        .await
        .unwrap_err();
    assert!(
        e.message.starts_with("line 1: invalid --conn-limit \"-5\""),
        "{}",
        e.message
    );
    assert_eq!(d.backend.applied().len(), applied);
    assert_eq!(d.ok("-S -n").await, saved);

    // 0 takes it off.
    d.ok("-E -t 10.0.0.100:80 -s wrr --conn-limit 0").await;
    assert_eq!(limits(), vec![(udp, 100000)]);
    assert!(d.ok("-Ln").await.contains("TCP  10.0.0.100:80 wrr\n"));
    assert!(!d
        .ok("-S -n")
        .await
        .contains("-A -t 10.0.0.100:80 -s wrr --conn-limit"));
    d.stop().await;
}

/// Traffic of one service with one real server: `n` connections, 10 packets
/// and 1000 bytes in each direction per connection.
fn traffic(key: ServiceKey, rip: &str, n: u64) -> ServiceStats {
    let t = TrafficStats {
        conns: n,
        inpkts: 10 * n,
        outpkts: 10 * n,
        inbytes: 1000 * n,
        outbytes: 1000 * n,
    };
    ServiceStats {
        acl_drops: Default::default(),
        conn_limit_drops: 0,
        key,
        traffic: t,
        dests: vec![DestStats {
            addr: ip(rip),
            port: 80,
            mode: ForwardMode::Nat,
            weight: 1,
            inhibited: false,
            active_conns: 0,
            inactive_conns: 0,
            traffic: t,
            syn_unanswered: 0,
            syn_answered: 0,
        }],
    }
}

#[tokio::test]
async fn zero_resets_what_stats_show_for_one_service_or_all() {
    let d = Daemon::start().await;
    let web = ServiceKey {
        proto: Proto::Tcp,
        vip: ip("10.0.0.100"),
        vport: 80,
    };
    let api = ServiceKey { vport: 81, ..web };
    d.ok("-A -t 10.0.0.100:80 -s rr").await;
    d.ok("-a -t 10.0.0.100:80 -r 192.168.0.11:80 -m").await;
    d.ok("-A -t 10.0.0.100:81 -s rr").await;
    d.ok("-a -t 10.0.0.100:81 -r 192.168.0.12:80 -m").await;
    let set = |w: u64, a: u64| {
        d.backend.set_stats(Stats {
            services: vec![
                traffic(web, "192.168.0.11", w),
                traffic(api, "192.168.0.12", a),
            ],
            ..Stats::default()
        })
    };
    let row = |out: &str, addr: &str| -> Vec<u64> {
        out.lines()
            .find(|l| l.contains(addr))
            .unwrap_or_else(|| panic!("{addr} in {out}"))
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect()
    };
    set(5, 7);
    let out = d.ok("-Ln --stats --exact").await;
    assert_eq!(row(&out, "10.0.0.100:80"), [5, 50, 50, 5000, 5000]);

    // One service: its counters and its real servers' read zero, the other's not.
    d.ok("-Z -t 10.0.0.100:80").await;
    let out = d.ok("-Ln --stats --exact").await;
    assert_eq!(row(&out, "10.0.0.100:80"), [0, 0, 0, 0, 0]);
    assert_eq!(row(&out, "192.168.0.11:80"), [0, 0, 0, 0, 0]);
    assert_eq!(row(&out, "10.0.0.100:81"), [7, 70, 70, 7000, 7000]);
    // Traffic after zeroing counts from zero.
    set(8, 9);
    let out = d.ok("-Ln --stats --exact").await;
    assert_eq!(row(&out, "10.0.0.100:80"), [3, 30, 30, 3000, 3000]);
    assert_eq!(row(&out, "192.168.0.11:80"), [3, 30, 30, 3000, 3000]);
    // All services (long option), and `dpvsctl stats` agrees.
    d.ok("--zero").await;
    let out = d.ok("-Ln --stats --exact").await;
    assert_eq!(row(&out, "10.0.0.100:81"), [0, 0, 0, 0, 0]);
    assert_eq!(row(&out, "10.0.0.100:80"), [0, 0, 0, 0, 0]);
    // A real server deleted and added again starts from its new counters.
    d.ok("-d -t 10.0.0.100:81 -r 192.168.0.12:80").await;
    d.ok("-a -t 10.0.0.100:81 -r 192.168.0.12:80 -m").await;
    set(8, 2);
    let out = d.ok("-Ln --stats --exact").await;
    assert_eq!(row(&out, "192.168.0.12:80"), [2, 20, 20, 2000, 2000]);
    // An unknown service: NOT_FOUND, nothing zeroed.
    let e = d.err("-Z -t 10.0.0.100:99").await;
    assert!(format!("{e:?}").contains("10.0.0.100:99"), "{e:?}");
    assert_eq!(
        row(&d.ok("-Ln --stats --exact").await, "192.168.0.12:80"),
        [2, 20, 20, 2000, 2000]
    );
    d.stop().await;
}

/// A table in ipvsadm 1.31's `-S -n` format, in its order (IPv4 before IPv6,
/// TCP before UDP, 192.168.x before 10.x), with every forwarding method,
/// weights 0..5, persistence with IPv4 and IPv6 masks (and the real mask
/// 0.0.0.0), scheduler flags, and the DPVS extras.
const SAVED: &str = "\
-A -t 192.168.0.80:80 -s wlc -p 600 -M 255.255.255.0
-a -t 192.168.0.80:80 -r 10.1.0.1:8080 -m -w 0
-a -t 192.168.0.80:80 -r 10.1.0.2:8080 -m -w 3
-A -t 10.0.0.10:443 -s sh -b sh-fallback,sh-port
-a -t 10.0.0.10:443 -r 10.1.0.3:443 -g -w 1
-a -t 10.0.0.10:443 -r 10.1.0.4:443 -i -w 2 --tun-type ipip
-A -t 10.0.0.12:80 -s rr --conn-timeout 90 --proxy-protocol v2
-a -t 10.0.0.12:80 -r 10.1.0.6:80 -b -w 1 -x 100 -y 10
-P -t 10.0.0.12:80 -z 10.0.0.200 -F dpdk0
-A -u 10.0.0.10:53 -s rr
-a -u 10.0.0.10:53 -r 10.1.0.5:53 -m -w 1
-A -u 10.0.0.11:53 -s rr -p 60 -M 0.0.0.0
-A -u 10.0.0.13:53 -s rr -o
-a -u 10.0.0.13:53 -r 10.1.0.7:53 -g -w 1
-A -t [2001:db8::10]:80 -s mh -p 300 -M 64 -b mh-port
-a -t [2001:db8::10]:80 -r [2001:db8:1::1]:80 -g -w 5
";

#[tokio::test]
async fn restore_applies_an_ipvsadm_save_as_one_change_and_saves_it_back() {
    let d = Daemon::start().await;
    let applied = d.backend.applied().len();
    d.restore(&format!("# from ipvsadm -S -n\n\n{SAVED}"))
        .await
        .unwrap();
    // One snapshot for the whole file.
    assert_eq!(d.backend.applied().len(), applied + 1);
    let cur = d.backend.current().unwrap();
    assert_eq!(cur.services.len(), 7);
    assert!(cur.services.iter().any(|s| s.ops && s.key.vport == 53));
    assert_eq!(d.ok("-S -n").await, SAVED);
    // The listing in the same order.
    let list = d.ok("-Ln").await;
    let firsts: Vec<&str> = list
        .lines()
        .filter(|l| l.starts_with("TCP") || l.starts_with("UDP"))
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        firsts,
        [
            "192.168.0.80:80",
            "10.0.0.10:443",
            "10.0.0.12:80",
            "10.0.0.10:53",
            "10.0.0.11:53",
            "10.0.0.13:53",
            "[2001:db8::10]:80"
        ]
    );
    assert!(
        list.contains("UDP  10.0.0.11:53 rr persistent 60 mask 0.0.0.0\n"),
        "{list}"
    );
    // One service alone.
    assert_eq!(
        d.ok("-S -n -u 10.0.0.10:53").await,
        "-A -u 10.0.0.10:53 -s rr\n-a -u 10.0.0.10:53 -r 10.1.0.5:53 -m -w 1\n"
    );

    // -S | -C | -R gives the same table back.
    let saved = d.ok("-S -n").await;
    d.ok("-C").await;
    assert_eq!(d.ok("-S -n").await, "");
    d.restore(&saved).await.unwrap();
    assert_eq!(d.ok("-S -n").await, saved);
    d.stop().await;
}

#[tokio::test]
async fn restore_names_the_bad_line_and_changes_nothing() {
    let d = Daemon::start().await;
    d.ok("-A -t 10.0.0.99:80 -s rr").await;
    let before = d.ok("-S -n").await;
    let applied = d.backend.applied().len();

    // Syntax: found before anything is sent (exit 2, as a usage error).
    let bad = SAVED.replace("-r 10.1.0.5:53 -m -w 1", "-r 10.1.0.5:53 -m -w lots");
    let e = d.restore(&bad).await.unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (2, "line 11: illegal weight \"lots\" (0..65535)")
    );
    // Meaning: found by dpvsd, reported with the line it came from (exit 1).
    let bad = format!("{SAVED}-a -t 10.0.0.98:80 -r 10.1.0.9 -m\n");
    let e = d.restore(&bad).await.unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (1, "line 17: no such service TCP 10.0.0.98:80")
    );
    let bad = format!("-A -t 10.0.0.99:80 -s wrr\n{SAVED}");
    let e = d.restore(&bad).await.unwrap_err();
    assert_eq!(
        e.message,
        "line 1: service already exists: TCP 10.0.0.99:80"
    );
    let e = d.restore("-A -t 10.0.0.97:80\n-Ln\n").await.unwrap_err();
    assert_eq!(
        e.message,
        "line 2: '-Ln' does not change the configuration and cannot be restored"
    );
    let e = d
        .restore("-A -t 10.0.0.97:80 -s rr -o\n")
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        "line 1: ops: one-packet scheduling (-o) is for UDP services only"
    );
    let e = d
        .restore("-A -u 10.0.0.97:53 -s rr -o\n-a -u 10.0.0.97:53 -r 10.1.0.9 -b\n")
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        "line 2: mode: real server 10.1.0.9:53 is FULLNAT: one-packet scheduling (-o) keeps no connection, which FULLNAT needs"
    );
    let e = d
        .restore("-A -t 10.0.0.97:80 --pe sip\n")
        .await
        .unwrap_err();
    assert_eq!(e.message, "line 1: unknown option '--pe'");

    assert_eq!(d.backend.applied().len(), applied);
    assert_eq!(d.ok("-S -n").await, before);
    d.stop().await;
}

#[tokio::test]
async fn the_state_file_follows_every_change_and_restores_the_same_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/dpvs.state");
    let d = Daemon::start_with_state(Some(path.clone())).await;
    let read = || std::fs::read_to_string(&path).unwrap();
    assert!(read().contains("addr add 10.0.0.1/24 dev dpdk0\n"));
    assert!(!read().contains("-A "));
    d.ok("-A -t 10.0.0.100:80 -s rr").await;
    d.ok("-a -t 10.0.0.100:80 -r 192.168.0.11:8080 -m -w 2")
        .await;
    d.ok("-P -t 10.0.0.100:80 -z 192.168.0.200 -F dpdk1").await;
    d.ok("--set 0 60 0").await;
    let text = read();
    assert!(
        text.ends_with(
            "--set 900 60 300\n\
         -A -t 10.0.0.100:80 -s rr\n\
         -a -t 10.0.0.100:80 -r 192.168.0.11:8080 -m -w 2\n\
         -P -t 10.0.0.100:80 -z 192.168.0.200 -F dpdk1\n"
        ),
        "{text}"
    );
    // A refused change is not recorded.
    d.err("-a -t 10.0.0.100:80 -r 192.168.0.11:8080 -m").await;
    assert_eq!(read(), text);
    let saved = d.ok("-S -n").await;
    d.stop().await;

    // What a restarted dpvsd loads from it is the same table.
    let store = control::state::load(&["dpdk0".into(), "dpdk1".into()], &text).unwrap();
    let backend = Arc::new(FakeBackend::new(&["dpdk0", "dpdk1"]));
    let svc = DpvsService::new(store.clone(), backend);
    assert_eq!(svc.store().desc(), store.desc());
    assert_eq!(control::state::render(&store), text);
    let d2 = Daemon::start_with_state(None).await;
    let mut out = String::new();
    control::ctl::restore(
        &text
            .replace("addr add 10.0.0.1/24 dev dpdk0\n", "")
            .replace("addr add 192.168.0.1/24 dev dpdk1\n", ""),
        &d2.server.as_str().into(),
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(d2.ok("-S -n").await, saved);
    d2.stop().await;
}

#[tokio::test]
async fn apply_makes_a_file_the_running_configuration_as_one_change() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start().await;
    d.ok("-A -t 10.0.0.100:80 -s rr").await;
    d.ok("-a -t 10.0.0.100:80 -r 192.168.0.11 -m").await;
    d.ok("-A -u 10.0.0.100:53 -s rr").await;
    let file = dir.path().join("dpvs.toml");
    std::fs::write(
        &file,
        format!(
            "{CONFIG}
[[service]]
proto = \"tcp\"
vip = \"10.0.0.100\"
vport = 80
scheduler = \"rr\"
dest = [{{ addr = \"192.168.0.11\", mode = \"nat\" }}, {{ addr = \"192.168.0.12\", mode = \"nat\", weight = 3 }}]
[[service]]
proto = \"tcp\"
vip = \"10.0.0.101\"
vport = 443
scheduler = \"wlc\"
"
        ),
    )
    .unwrap();
    let f = file.display().to_string();
    let applied = d.backend.applied().len();
    let diff = "\
- -A -u 10.0.0.100:53 -s rr
+ -a -t 10.0.0.100:80 -r 192.168.0.12:80 -m -w 3
+ -A -t 10.0.0.101:443 -s wlc
";
    assert_eq!(d.ok(&format!("apply -f {f} --dry-run")).await, diff);
    assert_eq!(d.backend.applied().len(), applied);
    assert_eq!(d.ok(&format!("apply -f {f}")).await, diff);
    assert_eq!(d.backend.applied().len(), applied + 1);
    assert_eq!(
        d.ok("-S -n").await,
        "-A -t 10.0.0.100:80 -s rr\n\
         -a -t 10.0.0.100:80 -r 192.168.0.11:80 -m -w 1\n\
         -a -t 10.0.0.100:80 -r 192.168.0.12:80 -m -w 3\n\
         -A -t 10.0.0.101:443 -s wlc\n"
    );
    // Applying it again changes nothing.
    assert_eq!(d.ok(&format!("apply -f {f}")).await, "");

    // A file that does not validate, or names other ports, changes nothing.
    let before = d.ok("-S -n").await;
    std::fs::write(
        &file,
        format!("{CONFIG}\n[[service]]\nproto = \"sctp\"\nvip = \"10.0.0.1\"\nvport = 1\n"),
    )
    .unwrap();
    let e = d.err(&format!("apply -f {f}")).await;
    assert_eq!(
        e.message,
        format!("{f}: service[0].proto: unknown protocol \"sctp\" (tcp or udp)")
    );
    std::fs::write(&file, CONFIG.replace("dpdk1", "dpdk7")).unwrap();
    let e = d.err(&format!("apply -f {f}")).await;
    assert!(
        e.message.contains("ports change with a restart"),
        "{}",
        e.message
    );
    let e = d.err("apply -f /nonexistent/dpvs.toml").await;
    assert!(
        e.message.starts_with("/nonexistent/dpvs.toml: "),
        "{}",
        e.message
    );
    assert_eq!(d.ok("-S -n").await, before);
    d.stop().await;
}

#[tokio::test]
async fn rate_shows_the_estimated_rates_and_falls_back_to_zero() {
    let d = Daemon::start().await;
    d.ok("-A -t 10.0.0.100:80 -s rr").await;
    d.ok("-a -t 10.0.0.100:80 -r 192.168.0.11 -m").await;
    let key = ServiceKey {
        proto: Proto::Tcp,
        vip: ip("10.0.0.100"),
        vport: 80,
    };
    // 50 connections/s (100 per 2-second sample), 500 packets/s, 50 kB/s.
    let mut n = 1000;
    let sample = |n: u64| {
        d.backend.set_stats(Stats {
            services: vec![traffic(key, "192.168.0.11", n)],
            ..Default::default()
        });
    };
    sample(n);
    d.svc.estimate().await.unwrap();
    for _ in 0..40 {
        n += 100;
        sample(n);
        d.svc.estimate().await.unwrap();
    }
    let rows = |out: &str| -> Vec<Vec<String>> {
        out.lines()
            .skip(3)
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect()
    };
    let out = d.ok("-Ln --rate").await;
    assert!(
        out.contains("CPS    InPPS   OutPPS    InBPS   OutBPS"),
        "{out}"
    );
    let r = rows(&out);
    assert_eq!(r[0][..3], ["TCP", "10.0.0.100:80", "50"], "{out}");
    assert_eq!(r[1][..3], ["->", "192.168.0.11:80", "50"], "{out}");
    let near = |s: &str, want: u64| {
        let v: u64 = s.parse().unwrap();
        v <= want && v * 100 >= want * 99
    };
    assert!(near(&r[0][3], 500) && near(&r[0][5], 50_000), "{out}");
    // -Z zeroes the counters, not the rates.
    d.ok("-Z").await;
    assert_eq!(rows(&d.ok("-Ln --rate").await)[0][2], "50");
    // Traffic stops: the rates decay to zero.
    for _ in 0..60 {
        d.svc.estimate().await.unwrap();
    }
    let out = d.ok("-Ln --rate").await;
    for row in rows(&out) {
        assert!(row[2..].iter().all(|v| v == "0"), "{out}");
    }
    d.stop().await;
}

#[tokio::test]
async fn json_listings_carry_the_same_numbers() {
    let d = Daemon::start().await;
    d.ok("-A -t 10.0.0.100:80 -s sh -b sh-port -p 60 -M 255.255.255.0")
        .await;
    d.ok("-a -t 10.0.0.100:80 -r 192.168.0.11 -m -w 3").await;
    d.ok("-A -t 192.168.0.100:80 -s rr").await;
    let key = ServiceKey {
        proto: Proto::Tcp,
        vip: ip("10.0.0.100"),
        vport: 80,
    };
    d.backend.set_stats(Stats {
        services: vec![traffic(key, "192.168.0.11", 123_456_789)],
        ..Default::default()
    });
    let v: serde_json::Value = serde_json::from_str(&d.ok("-Ln --json").await).unwrap();
    let svcs = v["services"].as_array().unwrap();
    // ipvsadm's order: 192.168.x before 10.x.
    assert_eq!(svcs[0]["vip"], "192.168.0.100");
    let s = &svcs[1];
    assert_eq!(
        (&s["protocol"], &s["vport"], &s["scheduler"]),
        (&"TCP".into(), &80.into(), &"sh".into())
    );
    assert_eq!(s["sched_flags"], serde_json::json!(["sh-port"]));
    assert_eq!(
        s["persistent"],
        serde_json::json!({"timeout": 60, "netmask": 24})
    );
    // Exact, where the text listing says 123456K.
    assert_eq!(s["stats"]["conns"], 123_456_789);
    assert_eq!(s["dests"][0]["forward"], "Masq");
    assert_eq!(s["dests"][0]["weight"], 3);
    assert_eq!(s["dests"][0]["stats"]["inbytes"], 123_456_789_000u64);
    assert_eq!(svcs[0]["persistent"], serde_json::Value::Null);

    let v: serde_json::Value = serde_json::from_str(&d.ok("-L --timeout --json").await).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"tcp": 900, "tcpfin": 120, "udp": 300})
    );
    let v: serde_json::Value = serde_json::from_str(&d.ok("addr show --json").await).unwrap();
    assert!(v["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["addr"] == "10.0.0.1" && a["prefix_len"] == 24 && a["port"] == "dpdk0"));
    let v: serde_json::Value = serde_json::from_str(&d.ok("route show --json").await).unwrap();
    assert!(v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["connected"] == true));
    let v: serde_json::Value = serde_json::from_str(&d.ok("stats --json").await).unwrap();
    assert_eq!(v["services"][1]["stats"]["outpkts"], 1_234_567_890u64);
    let v: serde_json::Value = serde_json::from_str(&d.ok("-G --json").await).unwrap();
    assert_eq!(v, serde_json::json!({"laddrs": []}));
    let v: serde_json::Value = serde_json::from_str(&d.ok("-Lnc --json").await).unwrap();
    assert_eq!(v, serde_json::json!({"connections": []}));
    d.stop().await;
}

/// Polls `f` every 50 ms for up to 10 s.
async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if f() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_failing_health_check_inhibits_the_dest_and_recovery_restores_it() {
    let d = Daemon::start().await;
    // Two "real servers" on loopback: one listening, one whose port we close.
    let good = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bad = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (gp, bp) = (
        good.local_addr().unwrap().port(),
        bad.local_addr().unwrap().port(),
    );
    d.ok("-A -t 10.0.0.100:80 -s rr").await;
    let check =
        "--check tcp --check-interval 1 --check-timeout 1 --check-retries 2 --check-delay 1";
    d.ok(&format!(
        "-a -t 10.0.0.100:80 -r 127.0.0.1:{gp} -m -w 2 {check}"
    ))
    .await;
    d.ok(&format!(
        "-a -t 10.0.0.100:80 -r 127.0.0.1:{bp} -m -w 3 {check} --on-failure inhibit"
    ))
    .await;
    let inhibited = |port: u16| -> bool {
        d.backend.current().is_some_and(|c| {
            c.services[0]
                .dests
                .iter()
                .any(|x| x.port == port && x.inhibited)
        })
    };
    assert!(!inhibited(bp));
    drop(bad);
    // Down after two failures a second apart: the dataplane gets it inhibited.
    assert!(eventually(|| inhibited(bp)).await, "never inhibited");
    assert!(!inhibited(gp));
    let list = d.ok("-Ln").await;
    assert!(
        list.contains(&format!("  -> 127.0.0.1:{bp}              Masq    0 ")),
        "an inhibited dest lists with weight 0:\n{list}"
    );
    // -S keeps the configured weight and the check.
    let saved = d.ok("-S -n").await;
    assert!(
        saved.contains(&format!(
            "-a -t 10.0.0.100:80 -r 127.0.0.1:{bp} -m -w 3 --check tcp --check-interval 1 --check-timeout 1 --check-retries 2\n"
        )),
        "{saved}"
    );
    let v: serde_json::Value = serde_json::from_str(&d.ok("-Ln --json").await).unwrap();
    let dest = v["services"][0]["dests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["port"] == bp)
        .unwrap()
        .clone();
    assert_eq!(
        (dest["inhibited"].clone(), dest["check"]["type"].clone()),
        (true.into(), "tcp".into())
    );
    // The server comes back: restored.
    let _back = tokio::net::TcpListener::bind(("127.0.0.1", bp))
        .await
        .unwrap();
    assert!(eventually(|| !inhibited(bp)).await, "never restored");
    // A sorry server takes over while no real server is usable.
    d.ok("-E -t 10.0.0.100:80 -s rr --sorry-server 127.0.0.1:9")
        .await;
    let has_sorry = || {
        d.backend
            .current()
            .is_some_and(|c| c.services[0].dests.iter().any(|x| x.port == 9))
    };
    assert!(!has_sorry(), "real servers are up: no sorry server");
    d.ok(&format!("-e -t 10.0.0.100:80 -r 127.0.0.1:{gp} -m -w 0"))
        .await;
    d.ok(&format!("-e -t 10.0.0.100:80 -r 127.0.0.1:{bp} -m -w 0"))
        .await;
    assert!(
        has_sorry(),
        "every real server quiescent: the sorry server is in"
    );
    let list = d.ok("-Ln").await;
    assert!(
        list.contains(&format!("  -> {:<28} Masq    1 ", "127.0.0.1:9")),
        "{list}"
    );
    assert!(
        d.ok("-S -n")
            .await
            .starts_with("-A -t 10.0.0.100:80 -s rr --sorry-server 127.0.0.1:9\n"),
        "saved on the service line, not as a real server"
    );
    assert!(!d.ok("-S -n").await.contains("-r 127.0.0.1:9 "));
    d.ok(&format!(
        "-e -t 10.0.0.100:80 -r 127.0.0.1:{gp} -m -w 2 {check}"
    ))
    .await;
    d.ok(&format!(
        "-e -t 10.0.0.100:80 -r 127.0.0.1:{bp} -m -w 3 {check}"
    ))
    .await;
    assert!(
        !has_sorry(),
        "a usable real server again: the sorry server is out"
    );
    d.ok("-E -t 10.0.0.100:80 -s rr --sorry-server none").await;
    // --on-failure remove: a down dest leaves the listing.
    d.ok(&format!(
        "-e -t 10.0.0.100:80 -r 127.0.0.1:{gp} -m -w 2 {check} --on-failure remove --check-port 1"
    ))
    .await;
    assert!(eventually(|| inhibited(gp)).await);
    let list = d.ok("-Ln").await;
    assert!(!list.contains(&format!("127.0.0.1:{gp}")), "{list}");
    // Without a check it is back at once.
    d.ok(&format!("-e -t 10.0.0.100:80 -r 127.0.0.1:{gp} -m -w 2"))
        .await;
    assert!(!inhibited(gp));
    d.stop().await;
}

#[tokio::test]
async fn quorum_scripts_run_when_a_service_loses_and_regains_its_quorum() {
    let d = Daemon::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("quorum.log");
    let script = dir.path().join("quorum.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$DPVS_QUORUM $DPVS_SERVICE $DPVS_ALIVE_WEIGHT\" >> {}\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = script.display();
    let rs = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = rs.local_addr().unwrap().port();
    d.ok(&format!(
        "-A -t 10.0.0.100:80 -s rr --quorum-up {s} --quorum-down {s}"
    ))
    .await;
    d.ok(&format!(
        "-a -t 10.0.0.100:80 -r 127.0.0.1:{port} -m -w 2 --check tcp --check-interval 1 \
         --check-timeout 1 --check-retries 1 --check-delay 1"
    ))
    .await;
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    // A new service is not a change; its first real server gives it the
    // quorum (as a keepalived reload that adds one).
    let up = "up TCP 10.0.0.100:80 2\n";
    assert!(eventually(|| logged() == up).await, "{:?}", logged());
    drop(rs);
    let down = format!("{up}down TCP 10.0.0.100:80 0\n");
    assert!(
        eventually(|| logged() == down).await,
        "quorum_down: {:?}",
        logged()
    );
    let _back = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    assert!(
        eventually(|| logged() == format!("{down}{up}")).await,
        "quorum_up: {:?}",
        logged()
    );
    // Listed, saved, and replaced by -E as the quorum is.
    let saved = d.ok("-S -n").await;
    assert!(
        saved.starts_with(&format!(
            "-A -t 10.0.0.100:80 -s rr --quorum-up {s} --quorum-down {s}\n"
        )),
        "{saved}"
    );
    let v: serde_json::Value = serde_json::from_str(&d.ok("-Ln --json").await).unwrap();
    assert_eq!(v["services"][0]["quorum_down"], s.to_string());
    d.ok("-E -t 10.0.0.100:80 -s rr").await;
    assert!(d
        .ok("-S -n")
        .await
        .starts_with("-A -t 10.0.0.100:80 -s rr\n"));
    d.stop().await;
}
