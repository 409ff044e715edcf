//! Every RPC of `dpvs.v1.Dpvs`, called with a real tonic client
//! (`DpvsClient`) over dpvsd's unix socket, with malformed requests: each
//! failure has the right gRPC code and a one-line message that names the field
//! (`vip: invalid address "10.0.0.300"`), or the object, for NOT_FOUND and
//! ALREADY_EXISTS. RPCs whose request is `Empty` (or `Timeouts`, where any
//! value is valid) cannot be malformed: they are called and must succeed.
//! The test fails when an RPC of the .proto is not called here.

mod inproc;

use std::collections::BTreeSet;

use inproc::{Daemon, CONFIG};
use prost::Message as _;
use proto::v1 as pb;
use proto::v1::dpvs_client::DpvsClient;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};

/// Calls `c.METHOD(REQ)` and records METHOD as covered.
macro_rules! call {
    ($seen:ident, $c:ident . $m:ident ( $req:expr )) => {{
        $seen.insert(stringify!($m));
        $c.$m($req).await
    }};
}

/// The call failed with `code` and a message starting with `msg`.
#[track_caller]
fn fails<T: std::fmt::Debug>(r: Result<Response<T>, Status>, code: Code, msg: &str) -> Status {
    let s = match r {
        Ok(r) => panic!("succeeded, wanted {code:?} {msg:?}: {r:?}"),
        Err(s) => s,
    };
    assert_eq!(s.code(), code, "{msg:?}: {s:?}");
    assert!(
        s.message().starts_with(msg),
        "got {:?}\nwant {msg:?}",
        s.message()
    );
    assert!(!s.message().contains('\n'), "{:?}", s.message());
    s
}

fn key(proto: pb::Protocol, vip: &str, vport: u32) -> Option<pb::ServiceKey> {
    Some(pb::ServiceKey {
        protocol: proto as i32,
        vip: vip.into(),
        vport,
    })
}

fn tcp(vip: &str, vport: u32) -> Option<pb::ServiceKey> {
    key(pb::Protocol::Tcp, vip, vport)
}

fn service(k: Option<pb::ServiceKey>) -> pb::Service {
    pb::Service {
        key: k,
        scheduler: "rr".into(),
        ..Default::default()
    }
}

fn add_service(s: pb::Service) -> pb::AddServiceRequest {
    pb::AddServiceRequest { service: Some(s) }
}

fn nat(addr: &str) -> pb::Dest {
    pb::Dest {
        addr: addr.into(),
        weight: 1,
        mode: pb::ForwardMode::Nat as i32,
        ..Default::default()
    }
}

fn dest_req(k: Option<pb::ServiceKey>, d: pb::Dest) -> pb::DestRequest {
    pb::DestRequest {
        service: k,
        dest: Some(d),
    }
}

fn addr_req(port: &str, addr: &str, prefix_len: u32) -> pb::AddrRequest {
    pb::AddrRequest {
        addr: Some(pb::Addr {
            port: port.into(),
            addr: addr.into(),
            prefix_len,
        }),
    }
}

fn route_req(prefix: &str, len: u32, via: &str, port: &str) -> pb::RouteRequest {
    pb::RouteRequest {
        route: Some(pb::Route {
            prefix: prefix.into(),
            prefix_len: len,
            via: via.into(),
            port: port.into(),
            connected: false,
        }),
    }
}

fn laddr_req(k: Option<pb::ServiceKey>, addr: &str, port: &str) -> pb::LocalAddrRequest {
    pb::LocalAddrRequest {
        laddr: Some(pb::LocalAddr {
            service: k,
            addr: addr.into(),
            port: port.into(),
            ..Default::default()
        }),
    }
}

fn acl_req(k: Option<pb::ServiceKey>, list: pb::AclList, addr: &str) -> pb::AclEntryRequest {
    pb::AclEntryRequest {
        entry: Some(pb::AclEntry {
            service: k,
            list: list as i32,
            addr: addr.into(),
        }),
    }
}

fn op(o: pb::op::Op) -> pb::Op {
    pb::Op { op: Some(o) }
}

/// The RPC names of `dpvs.v1.Dpvs` as the client's methods spell them.
fn every_rpc() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
    let svc = set
        .file
        .iter()
        .flat_map(|f| &f.service)
        .find(|s| s.name() == "Dpvs")
        .unwrap();
    svc.method
        .iter()
        .map(|m| {
            let mut snake = String::new();
            for (i, ch) in m.name().chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    snake.push('_');
                }
                snake.push(ch.to_ascii_lowercase());
            }
            snake
        })
        .collect()
}

#[tokio::test]
async fn every_rpc_names_the_field_of_a_malformed_request() {
    let d = Daemon::start().await;
    let mut c: DpvsClient<Channel> = DpvsClient::new(d.channel().await);
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    use Code::{AlreadyExists, FailedPrecondition, InvalidArgument, NotFound};

    // What the NOT_FOUND / ALREADY_EXISTS cases run against.
    let mut svc = service(tcp("10.0.0.100", 80));
    svc.dests = vec![nat("192.168.0.11")];
    call!(seen, c.add_service(add_service(svc))).unwrap();
    call!(
        seen,
        c.add_local_addr(laddr_req(tcp("10.0.0.100", 80), "192.168.0.200", "dpdk1"))
    )
    .unwrap();
    call!(
        seen,
        c.add_route(route_req("172.16.0.0", 12, "192.168.0.254", "dpdk1"))
    )
    .unwrap();
    call!(
        seen,
        c.add_acl_entry(acl_req(
            tcp("10.0.0.100", 80),
            pb::AclList::Blacklist,
            "10.1.0.0/16"
        ))
    )
    .unwrap();
    let applied = d.backend.applied().len();

    // ---- AddService ----
    let bad_svc: Vec<(pb::Service, Code, &str)> = vec![
        (pb::Service::default(), InvalidArgument, "key: missing"),
        (
            service(tcp("10.0.0.300", 80)),
            InvalidArgument,
            "vip: invalid address \"10.0.0.300\"",
        ),
        (
            service(key(pb::Protocol::Unspecified, "10.0.0.101", 80)),
            InvalidArgument,
            "protocol: unknown protocol 0 (TCP or UDP)",
        ),
        (
            service(Some(pb::ServiceKey {
                protocol: 9,
                vip: "10.0.0.101".into(),
                vport: 80,
            })),
            InvalidArgument,
            "protocol: unknown protocol 9 (TCP or UDP)",
        ),
        (
            service(tcp("10.0.0.101", 70000)),
            InvalidArgument,
            "vport: invalid port 70000",
        ),
        (
            service(tcp("0.0.0.0", 80)),
            InvalidArgument,
            "vip: invalid virtual address 0.0.0.0",
        ),
        (
            service(tcp("10.0.0.101", 0)),
            InvalidArgument,
            "vport: zero port specified for non-persistent service",
        ),
        (
            pb::Service {
                scheduler: "fastest".into(),
                ..service(tcp("10.0.0.101", 80))
            },
            InvalidArgument,
            "scheduler: unknown scheduler \"fastest\" (one of rr, wrr,",
        ),
        (
            pb::Service {
                sched_flags: vec!["sh-magic".into()],
                ..service(tcp("10.0.0.101", 80))
            },
            InvalidArgument,
            "sched_flags: unknown scheduler flag 'sh-magic'",
        ),
        (
            pb::Service {
                persistence: Some(pb::Persistence {
                    timeout_s: 300,
                    netmask_len: Some(33),
                }),
                ..service(tcp("10.0.0.101", 80))
            },
            InvalidArgument,
            "netmask_len: invalid prefix length /33 for 10.0.0.101",
        ),
        (
            pb::Service {
                conn_timeout_s: Some(0),
                ..service(tcp("10.0.0.101", 80))
            },
            InvalidArgument,
            "conn_timeout_s: connection timeout must be at least 1 second",
        ),
        (
            pb::Service {
                proxy_protocol: 9,
                ..service(tcp("10.0.0.101", 80))
            },
            InvalidArgument,
            "proxy_protocol: unknown value 9 (NONE, V1 or V2)",
        ),
        (
            pb::Service {
                proxy_protocol: pb::ProxyProtocol::V2 as i32,
                ..service(key(pb::Protocol::Udp, "10.0.0.101", 53))
            },
            InvalidArgument,
            "proxy_protocol: UDP 10.0.0.101:53: Proxy Protocol is supported for TCP services only",
        ),
        (
            pb::Service {
                dests: vec![nat("192.168.0.11"), nat("192.168.0.300")],
                ..service(tcp("10.0.0.101", 80))
            },
            InvalidArgument,
            "dests[1].addr: invalid address \"192.168.0.300\"",
        ),
        (
            pb::Service {
                dests: vec![pb::Dest {
                    weight: 70000,
                    ..nat("192.168.0.11")
                }],
                ..service(tcp("10.0.0.101", 80))
            },
            InvalidArgument,
            "dests[0].weight: invalid weight 70000: must be 0..65535",
        ),
        (
            pb::Service {
                dests: vec![pb::Dest {
                    mode: 9,
                    ..nat("192.168.0.11")
                }],
                ..service(tcp("10.0.0.101", 80))
            },
            InvalidArgument,
            "dests[0].mode: unknown forward mode 9",
        ),
        (
            pb::Service {
                ops: true,
                ..service(tcp("10.0.0.101", 80))
            },
            InvalidArgument,
            "ops: one-packet scheduling (-o) is for UDP services only",
        ),
        (
            pb::Service {
                quorum_down: "/bin/page\nrm -rf /".into(),
                ..service(tcp("10.0.0.101", 80))
            },
            InvalidArgument,
            "quorum_down: one line of shell, without NUL",
        ),
        (
            service(tcp("10.0.0.100", 80)),
            AlreadyExists,
            "service already exists: TCP 10.0.0.100:80",
        ),
    ];
    for (s, code, msg) in bad_svc {
        fails(call!(seen, c.add_service(add_service(s))), code, msg);
    }
    fails(
        call!(seen, c.add_service(pb::AddServiceRequest { service: None })),
        InvalidArgument,
        "service: missing",
    );

    // ---- EditService ----
    fails(
        call!(
            seen,
            c.edit_service(pb::EditServiceRequest {
                service: Some(service(tcp("10.0.0.199", 80)))
            })
        ),
        NotFound,
        "no such service TCP 10.0.0.199:80",
    );
    fails(
        call!(
            seen,
            c.edit_service(pb::EditServiceRequest {
                service: Some(pb::Service {
                    scheduler: "fastest".into(),
                    ..service(tcp("10.0.0.100", 80))
                })
            })
        ),
        InvalidArgument,
        "scheduler: unknown scheduler \"fastest\"",
    );
    fails(
        call!(
            seen,
            c.edit_service(pb::EditServiceRequest {
                service: Some(service(tcp("10.0.0.100", 65536)))
            })
        ),
        InvalidArgument,
        "vport: invalid port 65536",
    );

    // ---- DeleteService ----
    fails(
        call!(
            seen,
            c.delete_service(pb::DeleteServiceRequest { key: None })
        ),
        InvalidArgument,
        "key: missing",
    );
    fails(
        call!(
            seen,
            c.delete_service(pb::DeleteServiceRequest {
                key: tcp("10.0.0.100", 81)
            })
        ),
        NotFound,
        "no such service TCP 10.0.0.100:81",
    );

    // ---- ListServices, ZeroStats ----
    fails(
        call!(
            seen,
            c.list_services(pb::ListServicesRequest {
                key: tcp("10.0.0.100/32", 80)
            })
        ),
        InvalidArgument,
        "vip: invalid address \"10.0.0.100/32\"",
    );
    fails(
        call!(
            seen,
            c.list_services(pb::ListServicesRequest {
                key: tcp("10.0.0.100", 81)
            })
        ),
        NotFound,
        "no such service TCP 10.0.0.100:81",
    );
    fails(
        call!(
            seen,
            c.zero_stats(pb::ZeroStatsRequest {
                key: key(pb::Protocol::Udp, "10.0.0.100", 99999)
            })
        ),
        InvalidArgument,
        "vport: invalid port 99999",
    );
    fails(
        call!(
            seen,
            c.zero_stats(pb::ZeroStatsRequest {
                key: key(pb::Protocol::Udp, "10.0.0.100", 80)
            })
        ),
        NotFound,
        "no such service UDP 10.0.0.100:80",
    );

    // ---- AddDest, EditDest ----
    let svc_key = || tcp("10.0.0.100", 80);
    let bad_dest: Vec<(pb::DestRequest, Code, &str)> = vec![
        (
            pb::DestRequest {
                service: None,
                dest: Some(nat("192.168.0.12")),
            },
            InvalidArgument,
            "service: missing",
        ),
        (
            pb::DestRequest {
                service: svc_key(),
                dest: None,
            },
            InvalidArgument,
            "dest: missing",
        ),
        (
            dest_req(svc_key(), nat("rs1")),
            InvalidArgument,
            "addr: invalid address \"rs1\"",
        ),
        (
            dest_req(
                svc_key(),
                pb::Dest {
                    port: 70000,
                    ..nat("192.168.0.12")
                },
            ),
            InvalidArgument,
            "port: invalid port 70000",
        ),
        (
            dest_req(
                svc_key(),
                pb::Dest {
                    weight: 65536,
                    ..nat("192.168.0.12")
                },
            ),
            InvalidArgument,
            "weight: invalid weight 65536: must be 0..65535",
        ),
        (
            dest_req(
                svc_key(),
                pb::Dest {
                    u_threshold: 5,
                    l_threshold: 10,
                    ..nat("192.168.0.12")
                },
            ),
            InvalidArgument,
            "l_threshold: lower threshold 10 is above upper threshold 5",
        ),
        (
            dest_req(
                svc_key(),
                pb::Dest {
                    port: 8080,
                    mode: pb::ForwardMode::Dr as i32,
                    ..nat("192.168.0.12")
                },
            ),
            InvalidArgument,
            "port: DR and TUN forward to the virtual port: real server port 8080 != 80",
        ),
        (
            dest_req(svc_key(), nat("2001:db8::12")),
            InvalidArgument,
            "addr: real server 2001:db8::12 and virtual service 10.0.0.100 differ in address family",
        ),
        (
            dest_req(
                svc_key(),
                pb::Dest {
                    mode: 7,
                    ..nat("192.168.0.12")
                },
            ),
            InvalidArgument,
            "mode: unknown forward mode 7",
        ),
        (
            dest_req(
                svc_key(),
                pb::Dest {
                    check: Some(pb::HealthCheck {
                        r#type: "icmp".into(),
                        ..Default::default()
                    }),
                    ..nat("192.168.0.12")
                },
            ),
            InvalidArgument,
            "check type \"icmp\": one of tcp, http, https, udp, misc",
        ),
        (
            dest_req(
                svc_key(),
                pb::Dest {
                    check: Some(pb::HealthCheck {
                        r#type: "http".into(),
                        status: 700,
                        ..Default::default()
                    }),
                    ..nat("192.168.0.12")
                },
            ),
            InvalidArgument,
            "check status 700: not an HTTP status",
        ),
        (
            dest_req(
                svc_key(),
                pb::Dest {
                    check: Some(pb::HealthCheck {
                        r#type: "http".into(),
                        status_codes: "200-299,2xx".into(),
                        ..Default::default()
                    }),
                    ..nat("192.168.0.12")
                },
            ),
            InvalidArgument,
            "check status \"2xx\": not a status code or range",
        ),
        (
            dest_req(
                svc_key(),
                pb::Dest {
                    check: Some(pb::HealthCheck {
                        r#type: "http".into(),
                        status: 200,
                        status_codes: "200-299".into(),
                        ..Default::default()
                    }),
                    ..nat("192.168.0.12")
                },
            ),
            InvalidArgument,
            "check status and status_codes: give one of them",
        ),
        (
            dest_req(tcp("10.0.0.100", 81), nat("192.168.0.12")),
            NotFound,
            "no such service TCP 10.0.0.100:81",
        ),
        (
            dest_req(svc_key(), nat("192.168.0.11")),
            AlreadyExists,
            "real server already exists: 192.168.0.11:80 in TCP 10.0.0.100:80",
        ),
    ];
    for (r, code, msg) in bad_dest {
        fails(call!(seen, c.add_dest(r)), code, msg);
    }
    fails(
        call!(seen, c.edit_dest(dest_req(svc_key(), nat("192.168.0.99")))),
        NotFound,
        "no such real server 192.168.0.99:80 in TCP 10.0.0.100:80",
    );
    fails(
        call!(
            seen,
            c.edit_dest(dest_req(
                svc_key(),
                pb::Dest {
                    weight: 100000,
                    ..nat("192.168.0.11")
                }
            ))
        ),
        InvalidArgument,
        "weight: invalid weight 100000",
    );

    // ---- DeleteDest ----
    let del = |k: Option<pb::ServiceKey>, addr: &str, port: u32| pb::DeleteDestRequest {
        service: k,
        addr: addr.into(),
        port,
    };
    fails(
        call!(seen, c.delete_dest(del(None, "192.168.0.11", 0))),
        InvalidArgument,
        "service: missing",
    );
    fails(
        call!(seen, c.delete_dest(del(svc_key(), "192.168.0.1100", 0))),
        InvalidArgument,
        "addr: invalid address \"192.168.0.1100\"",
    );
    fails(
        call!(seen, c.delete_dest(del(svc_key(), "192.168.0.11", 65536))),
        InvalidArgument,
        "port: invalid port 65536",
    );
    fails(
        call!(seen, c.delete_dest(del(svc_key(), "192.168.0.12", 0))),
        NotFound,
        "no such real server 192.168.0.12:80 in TCP 10.0.0.100:80",
    );

    // ---- AddAddr, DeleteAddr, ListAddrs ----
    fails(
        call!(seen, c.add_addr(pb::AddrRequest { addr: None })),
        InvalidArgument,
        "addr: missing",
    );
    let bad_addr: Vec<(pb::AddrRequest, Code, &str)> = vec![
        (
            addr_req("dpdk0", "10.0.0.x", 32),
            InvalidArgument,
            "addr: invalid address \"10.0.0.x\"",
        ),
        (
            addr_req("dpdk0", "10.0.0.5", 33),
            InvalidArgument,
            "prefix_len: invalid prefix length /33 for 10.0.0.5",
        ),
        (
            addr_req("dpdk9", "10.0.0.5", 32),
            InvalidArgument,
            "port: unknown port \"dpdk9\"",
        ),
        (
            addr_req("", "10.0.0.5", 32),
            InvalidArgument,
            "port: missing",
        ),
        (
            addr_req("dpdk0", "224.0.0.1", 32),
            InvalidArgument,
            "addr: address 224.0.0.1 cannot be assigned",
        ),
        (
            addr_req("dpdk1", "10.0.0.1", 24),
            AlreadyExists,
            "address 10.0.0.1 already exists on dpdk0",
        ),
    ];
    for (r, code, msg) in bad_addr {
        fails(call!(seen, c.add_addr(r)), code, msg);
    }
    fails(
        call!(seen, c.delete_addr(addr_req("dpdk0", "10.0.0.9", 0))),
        NotFound,
        "no such address 10.0.0.9 on dpdk0",
    );
    fails(
        call!(
            seen,
            c.delete_addr(addr_req("dpdk0", "::ffff:10.0.0.300", 0))
        ),
        InvalidArgument,
        "addr: invalid address",
    );
    fails(
        call!(
            seen,
            c.list_addrs(pb::ListAddrsRequest {
                port: "dpdk9".into()
            })
        ),
        InvalidArgument,
        "port: unknown port \"dpdk9\"",
    );

    // ---- AddRoute, DeleteRoute ----
    fails(
        call!(seen, c.add_route(pb::RouteRequest { route: None })),
        InvalidArgument,
        "route: missing",
    );
    let bad_route: Vec<(pb::RouteRequest, Code, &str)> = vec![
        (
            route_req("10.1.0", 16, "", "dpdk0"),
            InvalidArgument,
            "prefix: invalid address \"10.1.0\"",
        ),
        (
            route_req("10.1.0.0", 40, "", "dpdk0"),
            InvalidArgument,
            "prefix_len: invalid prefix length /40 for 10.1.0.0",
        ),
        (
            route_req("10.1.0.1", 16, "", "dpdk0"),
            InvalidArgument,
            "prefix: invalid prefix 10.1.0.1/16: host bits set",
        ),
        (
            route_req("10.1.0.0", 16, "fe80::1", "dpdk0"),
            InvalidArgument,
            "via: next hop fe80::1 and prefix 10.1.0.0/16 differ in address family",
        ),
        (
            route_req("10.1.0.0", 16, "10.0.0.999", "dpdk0"),
            InvalidArgument,
            "via: invalid address \"10.0.0.999\"",
        ),
        (
            route_req("10.1.0.0", 16, "", "dpdk7"),
            InvalidArgument,
            "port: unknown port \"dpdk7\"",
        ),
        (
            route_req("172.16.0.0", 12, "", "dpdk0"),
            AlreadyExists,
            "route 172.16.0.0/12 already exists",
        ),
    ];
    for (r, code, msg) in bad_route {
        fails(call!(seen, c.add_route(r)), code, msg);
    }
    fails(
        call!(seen, c.delete_route(route_req("10.9.0.0", 16, "", ""))),
        NotFound,
        "no such route 10.9.0.0/16",
    );
    fails(
        call!(seen, c.delete_route(route_req("10.9.0.0", 99, "", ""))),
        InvalidArgument,
        "prefix_len: invalid prefix length /99 for 10.9.0.0",
    );

    // ---- AddLocalAddr, DeleteLocalAddr, ListLocalAddrs ----
    fails(
        call!(seen, c.add_local_addr(pb::LocalAddrRequest { laddr: None })),
        InvalidArgument,
        "laddr: missing",
    );
    let bad_laddr: Vec<(pb::LocalAddrRequest, Code, &str)> = vec![
        (
            laddr_req(None, "192.168.0.201", "dpdk1"),
            InvalidArgument,
            "service: missing",
        ),
        (
            laddr_req(svc_key(), "192.168.0.2o1", "dpdk1"),
            InvalidArgument,
            "addr: invalid address \"192.168.0.2o1\"",
        ),
        (
            laddr_req(svc_key(), "192.168.0.201", ""),
            InvalidArgument,
            "port: missing",
        ),
        (
            laddr_req(svc_key(), "192.168.0.201", "eth0"),
            InvalidArgument,
            "port: unknown port \"eth0\"",
        ),
        (
            laddr_req(svc_key(), "127.0.0.1", "dpdk1"),
            InvalidArgument,
            "addr: invalid local address 127.0.0.1",
        ),
        (
            laddr_req(tcp("10.0.0.100", 81), "192.168.0.201", "dpdk1"),
            NotFound,
            "no such service TCP 10.0.0.100:81",
        ),
        (
            laddr_req(svc_key(), "192.168.0.200", "dpdk1"),
            AlreadyExists,
            "local address 192.168.0.200 already exists in TCP 10.0.0.100:80",
        ),
    ];
    for (r, code, msg) in bad_laddr {
        fails(call!(seen, c.add_local_addr(r)), code, msg);
    }
    fails(
        call!(
            seen,
            c.delete_local_addr(pb::LocalAddrRequest { laddr: None })
        ),
        InvalidArgument,
        "laddr: missing",
    );
    fails(
        call!(seen, c.delete_local_addr(laddr_req(svc_key(), "lip", ""))),
        InvalidArgument,
        "addr: invalid address \"lip\"",
    );
    fails(
        call!(
            seen,
            c.delete_local_addr(laddr_req(svc_key(), "192.168.0.201", ""))
        ),
        NotFound,
        "no local address 192.168.0.201 in TCP 10.0.0.100:80",
    );
    fails(
        call!(
            seen,
            c.list_local_addrs(pb::ListLocalAddrsRequest {
                service: key(pb::Protocol::Tcp, "10.0.0.100", 70000)
            })
        ),
        InvalidArgument,
        "vport: invalid port 70000",
    );
    fails(
        call!(
            seen,
            c.list_local_addrs(pb::ListLocalAddrsRequest {
                service: tcp("10.0.0.101", 80)
            })
        ),
        NotFound,
        "no such service TCP 10.0.0.101:80",
    );

    // ---- AddAclEntry, DeleteAclEntry (and the lists AddService carries) ----
    use pb::AclList::{Blacklist, Whitelist};
    fails(
        call!(seen, c.add_acl_entry(pb::AclEntryRequest { entry: None })),
        InvalidArgument,
        "entry: missing",
    );
    let bad_acl: Vec<(pb::AclEntryRequest, Code, &str)> = vec![
        (
            acl_req(None, Blacklist, "10.2.0.0/16"),
            InvalidArgument,
            "service: missing",
        ),
        (
            acl_req(svc_key(), pb::AclList::Unspecified, "10.2.0.0/16"),
            InvalidArgument,
            "list: unknown access list 0 (BLACKLIST or WHITELIST)",
        ),
        (
            acl_req(svc_key(), Blacklist, "10.2.0.0/33"),
            InvalidArgument,
            "addr: invalid prefix length /33 in \"10.2.0.0/33\" (at most /32)",
        ),
        (
            acl_req(svc_key(), Whitelist, "10.2.0.1/16"),
            InvalidArgument,
            "addr: invalid prefix \"10.2.0.1/16\": host bits set (the network is 10.2.0.0/16)",
        ),
        (
            acl_req(svc_key(), Whitelist, "2001:db8::/32"),
            InvalidArgument,
            "addr: 2001:db8::/32 is IPv6, the service TCP 10.0.0.100:80 is IPv4",
        ),
        (
            acl_req(tcp("10.0.0.100", 81), Blacklist, "10.2.0.0/16"),
            NotFound,
            "no such service TCP 10.0.0.100:81",
        ),
        (
            acl_req(svc_key(), Blacklist, "10.1.0.0/16"),
            AlreadyExists,
            "blacklist entry 10.1.0.0/16 already exists in TCP 10.0.0.100:80",
        ),
    ];
    for (r, code, msg) in bad_acl {
        fails(call!(seen, c.add_acl_entry(r)), code, msg);
    }
    let bad_del: Vec<(pb::AclEntryRequest, Code, &str)> = vec![
        (
            pb::AclEntryRequest { entry: None },
            InvalidArgument,
            "entry: missing",
        ),
        (
            acl_req(svc_key(), Whitelist, "10.1.0.0/16"),
            NotFound,
            "no whitelist entry 10.1.0.0/16 in TCP 10.0.0.100:80",
        ),
        (
            acl_req(svc_key(), Blacklist, "10.1.0.0"),
            NotFound,
            "no blacklist entry 10.1.0.0 in TCP 10.0.0.100:80",
        ),
    ];
    for (r, code, msg) in bad_del {
        fails(call!(seen, c.delete_acl_entry(r)), code, msg);
    }
    let mut listed = service(tcp("10.0.0.103", 80));
    listed.whitelist = vec!["10.0.0.0/8".into(), "192.168.0.1/24".into()];
    fails(
        call!(seen, c.add_service(add_service(listed))),
        InvalidArgument,
        "whitelist[1]: invalid prefix \"192.168.0.1/24\": host bits set",
    );

    // ---- Batch: the failing op's code, its index in the message and metadata ----
    let s = fails(
        call!(
            seen,
            c.batch(pb::BatchRequest {
                ops: vec![
                    op(pb::op::Op::AddService(add_service(service(tcp(
                        "10.0.0.102",
                        80
                    ))))),
                    op(pb::op::Op::AddDest(dest_req(
                        tcp("10.0.0.102", 80),
                        pb::Dest {
                            weight: 70000,
                            ..nat("192.168.0.11")
                        }
                    ))),
                ]
            })
        ),
        InvalidArgument,
        "op 1 (AddDest): weight: invalid weight 70000: must be 0..65535",
    );
    assert_eq!(s.metadata().get("dpvs-op-index").unwrap(), "1");
    for (ops, code, msg, index) in [
        (
            vec![
                op(pb::op::Op::ClearServices(pb::Empty {})),
                op(pb::op::Op::SetTimeouts(pb::Timeouts::default())),
                op(pb::op::Op::DeleteService(pb::DeleteServiceRequest {
                    key: svc_key(),
                })),
            ],
            NotFound,
            "op 2 (DeleteService): no such service TCP 10.0.0.100:80",
            "2",
        ),
        (
            vec![op(pb::op::Op::AddRoute(route_req(
                "172.16.0.0",
                12,
                "",
                "dpdk0",
            )))],
            AlreadyExists,
            "op 0 (AddRoute): route 172.16.0.0/12 already exists",
            "0",
        ),
        (
            vec![
                op(pb::op::Op::DeleteDest(del(svc_key(), "192.168.0.11", 0))),
                pb::Op { op: None },
            ],
            InvalidArgument,
            "op 1: empty operation",
            "1",
        ),
        (
            vec![op(pb::op::Op::AddLocalAddr(laddr_req(
                svc_key(),
                "not-an-ip",
                "dpdk1",
            )))],
            InvalidArgument,
            "op 0 (AddLocalAddr): addr: invalid address \"not-an-ip\"",
            "0",
        ),
    ] {
        let s = fails(call!(seen, c.batch(pb::BatchRequest { ops })), code, msg);
        assert_eq!(s.metadata().get("dpvs-op-index").unwrap(), index, "{msg}");
    }

    // ---- ApplyConfig: the request field, then the key in the file ----
    let apply = |toml: String| pb::ApplyConfigRequest {
        toml,
        dry_run: false,
    };
    fails(
        call!(
            seen,
            c.apply_config(apply(format!(
                "{CONFIG}\n[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.300\"\nvport = 80\n"
            )))
        ),
        InvalidArgument,
        "toml: service[0].vip: invalid address \"10.0.0.300\"",
    );
    fails(
        call!(
            seen,
            c.apply_config(apply(format!(
                "{CONFIG}\n[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.100\"\nvport = 80\n\
                 [[service.dest]]\naddr = \"192.168.0.11\"\nweight = 70000\n"
            )))
        ),
        InvalidArgument,
        "toml: service[0].dest[0].weight: invalid weight 70000: must be 0..65535",
    );
    fails(
        call!(seen, c.apply_config(apply("[workers\n".into()))),
        InvalidArgument,
        "toml: ",
    );
    fails(
        call!(
            seen,
            c.apply_config(apply(format!(
                "{CONFIG}\n[control]\nlisten = \"10.0.0.1:5000\"\n"
            )))
        ),
        InvalidArgument,
        "toml: control.listen: listen address \"10.0.0.1:5000\" is not loopback",
    );
    fails(
        call!(seen, c.apply_config(apply(CONFIG.replace("dpdk1", "dpdk7")))),
        FailedPrecondition,
        "toml: port: ports [\"dpdk0\", \"dpdk7\"] differ from the running ports [\"dpdk0\", \"dpdk1\"]: ports change with a restart",
    );

    // ---- Connection sync daemons (docs/ha.md) ----
    let daemon = |state: &str, ifname: &str, syncid: u32| pb::SyncDaemon {
        state: state.into(),
        mcast_interface: ifname.into(),
        syncid,
        mcast_group: String::new(),
        mcast_port: 0,
    };
    fails(
        call!(seen, c.start_daemon(daemon("primary", "lo", 1))),
        InvalidArgument,
        "sync daemon state 'primary': expected master or backup",
    );
    fails(
        c.start_daemon(daemon("master", "lo", 300)).await,
        InvalidArgument,
        "syncid 300: expected 0-255",
    );
    fails(
        c.start_daemon(daemon("master", "nope0", 1)).await,
        InvalidArgument,
        "no interface nope0",
    );
    fails(
        c.start_daemon(pb::SyncDaemon {
            mcast_group: "10.0.0.1".into(),
            ..daemon("master", "lo", 1)
        })
        .await,
        InvalidArgument,
        "mcast_group 10.0.0.1: not a multicast address",
    );
    fails(
        call!(
            seen,
            c.stop_daemon(pb::StopDaemonRequest {
                state: "master".into()
            })
        ),
        NotFound,
        "no master sync daemon is running",
    );
    // A master on loopback starts; a second is ALREADY_EXISTS; the list
    // shows it; it stops.
    c.start_daemon(daemon("master", "lo", 1)).await.unwrap();
    fails(
        c.start_daemon(daemon("master", "lo", 2)).await,
        AlreadyExists,
        "a master sync daemon is running already",
    );
    let list = call!(seen, c.list_daemons(pb::Empty {}))
        .unwrap()
        .into_inner();
    assert_eq!(list.daemons.len(), 1);
    assert_eq!(
        (list.daemons[0].state.as_str(), list.daemons[0].syncid),
        ("master", 1)
    );
    c.stop_daemon(pb::StopDaemonRequest {
        state: "master".into(),
    })
    .await
    .unwrap();
    let list = c.list_daemons(pb::Empty {}).await.unwrap().into_inner();
    assert!(list.daemons.is_empty());

    // Nothing above changed the configuration.
    assert_eq!(d.backend.applied().len(), applied);

    // ---- Requests that cannot be malformed: Empty, and Timeouts (0 = unchanged) ----
    let t = call!(seen, c.get_timeouts(pb::Empty {}))
        .unwrap()
        .into_inner();
    let same = call!(seen, c.set_timeouts(pb::Timeouts::default()))
        .unwrap()
        .into_inner();
    assert_eq!(same, t);
    call!(seen, c.list_routes(pb::Empty {})).unwrap();
    call!(seen, c.list_connections(pb::Empty {})).unwrap();
    call!(seen, c.get_stats(pb::Empty {})).unwrap();
    call!(seen, c.clear_services(pb::Empty {})).unwrap();

    // Every RPC of the service was called.
    let seen: BTreeSet<String> = seen.into_iter().map(str::to_string).collect();
    assert_eq!(seen, every_rpc());
    d.stop().await;
}

#[tokio::test]
async fn a_dataplane_refusal_is_failed_precondition() {
    let d = Daemon::start().await;
    let mut c = DpvsClient::new(d.channel().await);
    d.backend.fail_next_apply("no room for the table");
    fails(
        c.add_service(add_service(service(tcp("10.0.0.100", 80))))
            .await,
        Code::FailedPrecondition,
        "dataplane rejected the change: no room for the table",
    );
    assert!(c
        .list_services(pb::ListServicesRequest { key: None })
        .await
        .unwrap()
        .into_inner()
        .services
        .is_empty());
    d.stop().await;
}
