//! `dpvsctl`: parse an ipvsadm- or dpip-style command line, make the gRPC calls,
//! print what ipvsadm would print.
//!
//! [`run`] is the whole CLI minus process exit, so tests drive it against an
//! in-process server and compare its output. Every failure is a [`CtlError`]:
//! one line for stderr and an exit status (2 for usage, 1 otherwise).

pub mod args;
pub mod client;
pub mod output;

use proto::v1 as pb;
use tonic::transport::Channel;

use self::args::{Command, Invocation};
use crate::convert::{key_to_pb, mode_to_pb};

/// Default daemon address.
pub const DEFAULT_SERVER: &str = crate::config::DEFAULT_LISTEN;

/// A failure to report: `dpvsctl: {message}` on stderr, exit `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlError {
    pub code: i32,
    pub message: String,
}

impl CtlError {
    pub fn usage(message: impl Into<String>) -> CtlError {
        CtlError {
            code: 2,
            message: message.into(),
        }
    }
    pub fn failed(message: impl Into<String>) -> CtlError {
        CtlError {
            code: 1,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for CtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The server to use: `--server`, else `$DPVS_SERVER`, else the default socket.
pub fn server_address(inv: &Invocation, env: Option<String>) -> String {
    inv.server
        .clone()
        .or(env.filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_string())
}

/// Parses `argv` (without the program name) and runs it against `server`
/// (`None`: from `--server`/`$DPVS_SERVER`/default). Output goes to `out`.
pub async fn run_args(
    argv: &[String],
    env_server: Option<String>,
    out: &mut String,
) -> Result<(), CtlError> {
    let inv = args::parse(argv).map_err(|e| CtlError::usage(e.0))?;
    let server = server_address(&inv, env_server);
    run(&inv.command, &server, out).await
}

/// Runs one command against the dpvsd at `server`.
pub async fn run(cmd: &Command, server: &str, out: &mut String) -> Result<(), CtlError> {
    match cmd {
        Command::Help => {
            out.push_str(args::USAGE);
            return Ok(());
        }
        Command::Version => {
            out.push_str(concat!("dpvsctl ", env!("CARGO_PKG_VERSION"), "\n"));
            return Ok(());
        }
        _ => {}
    }
    let mut c = client::connect(server).await?;
    let st = |e: tonic::Status| client::status_error(server, e);
    match cmd {
        Command::AddService(o) | Command::EditService(o) => {
            let service = pb::Service {
                key: Some(key_to_pb(&o.key)),
                scheduler: o.scheduler.clone().unwrap_or_default(),
                sched_flags: o.sched_flags.clone(),
                persistence: o.persistent.map(|t| pb::Persistence {
                    timeout_s: t,
                    netmask_len: o.netmask.map(u32::from).unwrap_or(0),
                }),
                conn_timeout_s: o.conn_timeout,
                dests: vec![],
                proxy_protocol: match o.proxy_protocol {
                    None => pb::ProxyProtocol::Unspecified,
                    Some(p) => crate::convert::proxy_protocol_to_pb(p),
                } as i32,
            };
            if matches!(cmd, Command::AddService(_)) {
                c.add_service(pb::AddServiceRequest {
                    service: Some(service),
                })
                .await
                .map_err(st)?;
            } else {
                c.edit_service(pb::EditServiceRequest {
                    service: Some(service),
                })
                .await
                .map_err(st)?;
            }
        }
        Command::DeleteService(k) => {
            c.delete_service(pb::DeleteServiceRequest {
                key: Some(key_to_pb(k)),
            })
            .await
            .map_err(st)?;
        }
        Command::Clear => {
            c.clear_services(pb::Empty {}).await.map_err(st)?;
        }
        Command::Zero(k) => {
            c.zero_stats(pb::ZeroStatsRequest {
                key: k.as_ref().map(key_to_pb),
            })
            .await
            .map_err(st)?;
        }
        Command::AddDest(o) | Command::EditDest(o) => {
            let req = pb::DestRequest {
                service: Some(key_to_pb(&o.service)),
                dest: Some(pb::Dest {
                    addr: o.addr.to_string(),
                    port: o.port.map(u32::from).unwrap_or(0),
                    weight: o.weight.unwrap_or(1),
                    mode: mode_to_pb(o.mode.unwrap_or(dataplane::ForwardMode::Dr)) as i32,
                    u_threshold: o.u_threshold.unwrap_or(0),
                    l_threshold: o.l_threshold.unwrap_or(0),
                    inhibited: false,
                }),
            };
            if matches!(cmd, Command::AddDest(_)) {
                c.add_dest(req).await.map_err(st)?;
            } else {
                c.edit_dest(req).await.map_err(st)?;
            }
        }
        Command::DeleteDest {
            service,
            addr,
            port,
        } => {
            c.delete_dest(pb::DeleteDestRequest {
                service: Some(key_to_pb(service)),
                addr: addr.to_string(),
                port: port.map(u32::from).unwrap_or(0),
            })
            .await
            .map_err(st)?;
        }
        Command::List(o) => list(&mut c, o, out).await.map_err(st)?,
        Command::SetTimeouts { tcp, tcpfin, udp } => {
            c.set_timeouts(pb::Timeouts {
                tcp_s: *tcp,
                tcp_fin_s: *tcpfin,
                udp_s: *udp,
            })
            .await
            .map_err(st)?;
        }
        Command::AddrAdd {
            addr,
            prefix_len,
            dev,
        }
        | Command::AddrDel {
            addr,
            prefix_len,
            dev,
        } => {
            let req = pb::AddrRequest {
                addr: Some(pb::Addr {
                    port: dev.clone(),
                    addr: addr.to_string(),
                    prefix_len: u32::from(*prefix_len),
                }),
            };
            if matches!(cmd, Command::AddrAdd { .. }) {
                c.add_addr(req).await.map_err(st)?;
            } else {
                c.delete_addr(req).await.map_err(st)?;
            }
        }
        Command::AddrShow { dev } => {
            let r = c
                .list_addrs(pb::ListAddrsRequest {
                    port: dev.clone().unwrap_or_default(),
                })
                .await
                .map_err(st)?;
            out.push_str(&output::addrs(r.get_ref()));
        }
        Command::RouteAdd {
            prefix,
            prefix_len,
            via,
            dev,
        } => {
            c.add_route(pb::RouteRequest {
                route: Some(pb::Route {
                    prefix: prefix.to_string(),
                    prefix_len: u32::from(*prefix_len),
                    via: via.map(|v| v.to_string()).unwrap_or_default(),
                    port: dev.clone(),
                    connected: false,
                }),
            })
            .await
            .map_err(st)?;
        }
        Command::RouteDel { prefix, prefix_len } => {
            c.delete_route(pb::RouteRequest {
                route: Some(pb::Route {
                    prefix: prefix.to_string(),
                    prefix_len: u32::from(*prefix_len),
                    ..pb::Route::default()
                }),
            })
            .await
            .map_err(st)?;
        }
        Command::RouteShow => {
            let r = c.list_routes(pb::Empty {}).await.map_err(st)?;
            out.push_str(&output::routes(r.get_ref()));
        }
        Command::Stats => {
            let r = c.get_stats(pb::Empty {}).await.map_err(st)?;
            out.push_str(&output::stats(r.get_ref()));
        }
        Command::AddLaddr {
            service,
            addr,
            port,
        } => {
            c.add_local_addr(pb::LocalAddrRequest {
                laddr: Some(pb::LocalAddr {
                    service: Some(key_to_pb(service)),
                    addr: addr.to_string(),
                    port: port.clone(),
                    conns: 0,
                    conflicts: 0,
                }),
            })
            .await
            .map_err(st)?;
        }
        Command::DelLaddr { service, addr } => {
            c.delete_local_addr(pb::LocalAddrRequest {
                laddr: Some(pb::LocalAddr {
                    service: Some(key_to_pb(service)),
                    addr: addr.to_string(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(st)?;
        }
        Command::GetLaddr { service } => {
            let r = c
                .list_local_addrs(pb::ListLocalAddrsRequest {
                    service: service.as_ref().map(key_to_pb),
                })
                .await
                .map_err(st)?;
            out.push_str(&output::laddrs(&r.get_ref().laddrs));
        }
        Command::Help | Command::Version => {}
    }
    Ok(())
}

async fn list(
    c: &mut pb::dpvs_client::DpvsClient<Channel>,
    o: &args::ListOpts,
    out: &mut String,
) -> Result<(), tonic::Status> {
    if o.timeout {
        let t = c.get_timeouts(pb::Empty {}).await?;
        out.push_str(&output::timeouts(t.get_ref()));
        return Ok(());
    }
    if o.connections {
        let r = c.list_connections(pb::Empty {}).await?;
        out.push_str(&output::connections(&r.get_ref().connections, o.worker));
        return Ok(());
    }
    let r = c
        .list_services(pb::ListServicesRequest {
            key: o.service.as_ref().map(key_to_pb),
        })
        .await?;
    if o.persistent_conn {
        let conns = c.list_connections(pb::Empty {}).await?;
        out.push_str(&output::services_persistent(
            r.get_ref(),
            o.service.is_none(),
            &conns.get_ref().connections,
        ));
        return Ok(());
    }
    out.push_str(&output::services(
        r.get_ref(),
        o.service.is_none(),
        output::ListFormat {
            stats: o.stats,
            exact: o.exact,
            thresholds: o.thresholds,
        },
    ));
    Ok(())
}
