//! `dpvsctl`: parse an ipvsadm- or dpip-style command line, make the gRPC calls,
//! print what ipvsadm would print.
//!
//! [`run`] is the whole CLI minus process exit, so tests drive it against an
//! in-process server and compare its output. Every failure is a [`CtlError`]:
//! one line for stderr and an exit status (2 for usage, 1 otherwise).

pub mod args;
pub mod client;
pub mod json;
pub mod keepalived;
pub mod order;
pub mod output;
pub mod rules;

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

/// dpvsctl's environment: `$DPVS_SERVER`, `$DPVS_TLS_CERT`, `$DPVS_TLS_KEY`,
/// `$DPVS_TLS_CA` (empty = unset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    pub server: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub tls_ca: Option<String>,
}

impl Env {
    pub fn from_process() -> Env {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Env {
            server: var("DPVS_SERVER"),
            tls_cert: var("DPVS_TLS_CERT"),
            tls_key: var("DPVS_TLS_KEY"),
            tls_ca: var("DPVS_TLS_CA"),
        }
    }
}

/// Where and how to reach dpvsd. An `https://` server needs the three TLS
/// files (options, else environment); the TLS options with any other server
/// are a usage error (the environment's are ignored there, so a shell that
/// exports them can still use the unix socket).
pub fn target(inv: &Invocation, env: &Env) -> Result<client::Target, CtlError> {
    let address = server_address(inv, env.server.clone());
    let files = [
        ("--tls-cert", "DPVS_TLS_CERT", &inv.tls_cert, &env.tls_cert),
        ("--tls-key", "DPVS_TLS_KEY", &inv.tls_key, &env.tls_key),
        ("--tls-ca", "DPVS_TLS_CA", &inv.tls_ca, &env.tls_ca),
    ];
    if !address.starts_with("https://") {
        if let Some((opt, ..)) = files.iter().find(|f| f.2.is_some()) {
            return Err(CtlError::usage(format!(
                "option '{opt}' needs --server https://HOST:PORT (the server is {address})"
            )));
        }
        return Ok(client::Target { address, tls: None });
    }
    let mut paths = Vec::with_capacity(3);
    for (opt, var, given, from_env) in files {
        match given.clone().or(from_env.clone().map(Into::into)) {
            Some(p) => paths.push(p),
            None => {
                return Err(CtlError::usage(format!(
                    "--server {address}: needs {opt} FILE (or ${var}): dpvsd takes only \
                     clients with a certificate"
                )))
            }
        }
    }
    let [cert, key, ca]: [std::path::PathBuf; 3] = paths.try_into().unwrap_or_default();
    Ok(client::Target {
        address,
        tls: Some(crate::tls::TlsFiles { cert, key, ca }),
    })
}

/// Parses `argv` (without the program name) and runs it against `server`
/// (`None`: from `--server`/`$DPVS_SERVER`/default). Output goes to `out`.
pub async fn run_args(
    argv: &[String],
    env_server: Option<String>,
    out: &mut String,
) -> Result<(), CtlError> {
    let env = Env {
        server: env_server,
        ..Env::default()
    };
    run_args_env(argv, &env, out).await
}

/// [`run_args`] with the whole environment (`dpvsctl` passes
/// [`Env::from_process`]).
pub async fn run_args_env(argv: &[String], env: &Env, out: &mut String) -> Result<(), CtlError> {
    let inv = args::parse(argv).map_err(|e| CtlError::usage(e.0))?;
    if matches!(inv.command, Command::Help | Command::Version) {
        return run(&inv.command, inv.json, &DEFAULT_SERVER.into(), out).await;
    }
    let server = target(&inv, env)?;
    run(&inv.command, inv.json, &server, out).await
}

/// Runs one command against the dpvsd at `server`; `json`: listings as JSON.
pub async fn run(
    cmd: &Command,
    json: bool,
    server: &client::Target,
    out: &mut String,
) -> Result<(), CtlError> {
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
    if matches!(cmd, Command::Restore) {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| CtlError::failed(format!("cannot read rules from stdin: {e}")))?;
        return restore(&text, server, out).await;
    }
    if let Command::ImportKeepalived {
        file,
        dry_run,
        replace,
    } = cmd
    {
        return import_keepalived(file, *dry_run, *replace, server, out).await;
    }
    let mut c = client::connect(server).await?;
    let st = |e: tonic::Status| client::status_error(&server.address, e);
    if let Some(op) = command_op(cmd) {
        return send(&mut c, op).await.map_err(st);
    }
    match cmd {
        Command::Apply { file, dry_run } => {
            let toml = std::fs::read_to_string(file)
                .map_err(|e| CtlError::failed(format!("{}: {e}", file.display())))?;
            let r = c
                .apply_config(pb::ApplyConfigRequest {
                    toml,
                    dry_run: *dry_run,
                })
                .await
                .map_err(|e| {
                    // The server names its request field (`toml: KEY: why`);
                    // the user wrote FILE.
                    let mut err = st(e);
                    if let Some(rest) = err.message.strip_prefix("toml: ") {
                        err.message = format!("{}: {rest}", file.display());
                    }
                    err
                })?;
            out.push_str(&output::config_diff(r.get_ref()));
        }
        Command::Zero(k) => {
            c.zero_stats(pb::ZeroStatsRequest {
                key: k.as_ref().map(key_to_pb),
            })
            .await
            .map_err(st)?;
        }
        Command::Save(k) => {
            let r = c
                .list_services(pb::ListServicesRequest {
                    key: k.as_ref().map(key_to_pb),
                })
                .await
                .map_err(st)?;
            let l = c
                .list_local_addrs(pb::ListLocalAddrsRequest {
                    service: k.as_ref().map(key_to_pb),
                })
                .await
                .map_err(st)?;
            out.push_str(&rules::save(r.get_ref(), &l.get_ref().laddrs));
        }
        Command::List(o) => list(&mut c, o, json, out).await.map_err(st)?,
        Command::AddrShow { dev } => {
            let r = c
                .list_addrs(pb::ListAddrsRequest {
                    port: dev.clone().unwrap_or_default(),
                })
                .await
                .map_err(st)?;
            out.push_str(&if json {
                self::json::addrs(r.get_ref())
            } else {
                output::addrs(r.get_ref())
            });
        }
        Command::RouteShow => {
            let r = c.list_routes(pb::Empty {}).await.map_err(st)?;
            out.push_str(&if json {
                self::json::routes(r.get_ref())
            } else {
                output::routes(r.get_ref())
            });
        }
        Command::Stats => {
            let r = c.get_stats(pb::Empty {}).await.map_err(st)?;
            let mut r = r.into_inner();
            order::ipvsadm_order(&mut r.services);
            out.push_str(&if json {
                self::json::stats(&r)
            } else {
                output::stats(&r)
            });
        }
        Command::GetLaddr { service } => {
            let r = c
                .list_local_addrs(pb::ListLocalAddrsRequest {
                    service: service.as_ref().map(key_to_pb),
                })
                .await
                .map_err(st)?;
            let l = &r.get_ref().laddrs;
            out.push_str(&if json {
                self::json::laddrs(l)
            } else {
                output::laddrs(l)
            });
        }
        Command::GetAcl { list, service } => {
            let r = c
                .list_services(pb::ListServicesRequest {
                    key: service.as_ref().map(key_to_pb),
                })
                .await
                .map_err(st)?;
            let mut r = r.into_inner();
            order::ipvsadm_order(&mut r.services);
            out.push_str(&if json {
                self::json::acl(&r, *list)
            } else {
                output::acl(&r, *list)
            });
        }
        Command::StartDaemon(d) => {
            c.start_daemon(pb::SyncDaemon {
                state: d.state.clone(),
                mcast_interface: d.mcast_interface.clone(),
                syncid: u32::from(d.syncid),
                mcast_group: d.mcast_group.map(|g| g.to_string()).unwrap_or_default(),
                mcast_port: d.mcast_port.map_or(0, u32::from),
            })
            .await
            .map_err(st)?;
        }
        Command::StopDaemon { state } => {
            c.stop_daemon(pb::StopDaemonRequest {
                state: state.clone(),
            })
            .await
            .map_err(st)?;
        }
        // Changes went through `command_op`; help, version and restore above.
        _ => {}
    }
    Ok(())
}

/// `-R`: every line of `text` (ipvsadm command lines, as `-S` writes them) is
/// checked, then all go to dpvsd as one `Batch`: either every line is in force
/// or none is. Errors name the line.
pub async fn restore(
    text: &str,
    server: &client::Target,
    out: &mut String,
) -> Result<(), CtlError> {
    let _ = out;
    let lines = rules::parse(text).map_err(|e| CtlError::usage(e.to_string()))?;
    if lines.is_empty() {
        return Ok(());
    }
    let (labels, ops): (Vec<String>, Vec<pb::op::Op>) = lines
        .into_iter()
        .map(|(n, op)| (format!("line {n}"), op))
        .unzip();
    batch(server, ops, &labels).await
}

/// `import keepalived FILE`: the file's virtual servers, real servers and
/// local addresses go to dpvsd as one `Batch`; errors name `FILE:LINE`.
/// Notes (blocks of keepalived's other processes, keepalived's defaults) are
/// `#` lines of the output; `--dry-run` prints the changes as `-R` lines
/// after them and sends nothing, so its output can be fed to `dpvsctl -R`.
/// `replace`: the Batch starts with ClearServices (`-C`), so the file's
/// services become the whole table, as a keepalived reload would leave it.
pub async fn import_keepalived(
    file: &std::path::Path,
    dry_run: bool,
    replace: bool,
    server: &client::Target,
    out: &mut String,
) -> Result<(), CtlError> {
    let plan = keepalived::load(file).map_err(|e| CtlError::failed(e.to_string()))?;
    for n in &plan.notes {
        out.push_str("# ");
        out.push_str(n);
        out.push('\n');
    }
    if dry_run {
        let (services, laddrs) = keepalived::preview(&plan);
        if replace {
            out.push_str("-C\n");
        }
        out.push_str(&rules::save(&services, &laddrs));
        return Ok(());
    }
    let (services, dests, laddrs) = keepalived::counts(&plan);
    let clear = replace.then(|| {
        (
            "--replace (-C)".to_string(),
            pb::op::Op::ClearServices(pb::Empty {}),
        )
    });
    if clear.is_some() || !plan.ops.is_empty() {
        let (labels, ops): (Vec<String>, Vec<pb::op::Op>) = clear
            .into_iter()
            .chain(plan.ops.into_iter().map(|(loc, op)| (loc.to_string(), op)))
            .unzip();
        batch(server, ops, &labels).await?;
    }
    out.push_str(&format!(
        "# imported {}: {services} services, {dests} real servers, {laddrs} local addresses\n",
        file.display()
    ));
    Ok(())
}

/// Sends `ops` as one `Batch`: all in force, or none. A refused change is
/// reported as `LABEL: why`, `labels[i]` naming where change `i` came from.
async fn batch(
    server: &client::Target,
    ops: Vec<pb::op::Op>,
    labels: &[String],
) -> Result<(), CtlError> {
    let mut c = client::connect(server).await?;
    let ops = ops.into_iter().map(|op| pb::Op { op: Some(op) }).collect();
    c.batch(pb::BatchRequest { ops }).await.map_err(|e| {
        let label = e
            .metadata()
            .get(crate::server::OP_INDEX)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .and_then(|i| labels.get(i));
        let mut err = client::status_error(&server.address, e.clone());
        if let Some(l) = label {
            // The server says "op I (Call): why"; the user wrote LABEL.
            let why = e.message().split_once("): ").map_or(e.message(), |x| x.1);
            err.message = format!("{l}: {why}");
        }
        err
    })?;
    Ok(())
}

/// The API change a command line makes, if it makes one.
pub fn command_op(cmd: &Command) -> Option<pb::op::Op> {
    use pb::op::Op;
    Some(match cmd {
        Command::AddService(o) | Command::EditService(o) => {
            let service = Some(pb::Service {
                key: Some(key_to_pb(&o.key)),
                scheduler: o.scheduler.clone().unwrap_or_default(),
                sched_flags: o.sched_flags.clone(),
                persistence: o.persistent.map(|t| pb::Persistence {
                    timeout_s: t,
                    netmask_len: o.netmask.map(u32::from),
                }),
                conn_timeout_s: o.conn_timeout,
                ops: o.ops,
                sorry_server: o.sorry_server.clone().unwrap_or_default(),
                passive_check: o.passive_check,
                synproxy: o.synproxy,
                conn_limit: o.conn_limit,
                quorum: o.quorum.unwrap_or(0),
                hysteresis: o.hysteresis.unwrap_or(0),
                quorum_up: o.quorum_up.clone().unwrap_or_default(),
                quorum_down: o.quorum_down.clone().unwrap_or_default(),
                // -E keeps them; -U/-O add to them.
                blacklist: vec![],
                whitelist: vec![],
                dests: vec![],
                proxy_protocol: match o.proxy_protocol {
                    None => pb::ProxyProtocol::Unspecified,
                    Some(p) => crate::convert::proxy_protocol_to_pb(p),
                } as i32,
            });
            if matches!(cmd, Command::AddService(_)) {
                Op::AddService(pb::AddServiceRequest { service })
            } else {
                Op::EditService(pb::EditServiceRequest { service })
            }
        }
        Command::DeleteService(k) => Op::DeleteService(pb::DeleteServiceRequest {
            key: Some(key_to_pb(k)),
        }),
        Command::Clear => Op::ClearServices(pb::Empty {}),
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
                    check: o.check.clone(),
                    sorry: false,
                }),
            };
            if matches!(cmd, Command::AddDest(_)) {
                Op::AddDest(req)
            } else {
                Op::EditDest(req)
            }
        }
        Command::DeleteDest {
            service,
            addr,
            port,
        } => Op::DeleteDest(pb::DeleteDestRequest {
            service: Some(key_to_pb(service)),
            addr: addr.to_string(),
            port: port.map(u32::from).unwrap_or(0),
        }),
        Command::SetTimeouts { tcp, tcpfin, udp } => Op::SetTimeouts(pb::Timeouts {
            tcp_s: *tcp,
            tcp_fin_s: *tcpfin,
            udp_s: *udp,
        }),
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
                Op::AddAddr(req)
            } else {
                Op::DeleteAddr(req)
            }
        }
        Command::RouteAdd {
            prefix,
            prefix_len,
            via,
            dev,
        } => Op::AddRoute(pb::RouteRequest {
            route: Some(pb::Route {
                prefix: prefix.to_string(),
                prefix_len: u32::from(*prefix_len),
                via: via.map(|v| v.to_string()).unwrap_or_default(),
                port: dev.clone(),
                connected: false,
            }),
        }),
        Command::RouteDel { prefix, prefix_len } => Op::DeleteRoute(pb::RouteRequest {
            route: Some(pb::Route {
                prefix: prefix.to_string(),
                prefix_len: u32::from(*prefix_len),
                ..pb::Route::default()
            }),
        }),
        Command::AddLaddr {
            service,
            addr,
            port,
        } => Op::AddLocalAddr(pb::LocalAddrRequest {
            laddr: Some(pb::LocalAddr {
                service: Some(key_to_pb(service)),
                addr: addr.to_string(),
                port: port.clone(),
                conns: 0,
                conflicts: 0,
            }),
        }),
        Command::DelLaddr { service, addr } => Op::DeleteLocalAddr(pb::LocalAddrRequest {
            laddr: Some(pb::LocalAddr {
                service: Some(key_to_pb(service)),
                addr: addr.to_string(),
                ..Default::default()
            }),
        }),
        Command::AddAcl {
            service,
            list,
            addr,
            prefix_len,
        }
        | Command::DelAcl {
            service,
            list,
            addr,
            prefix_len,
        } => {
            let req = pb::AclEntryRequest {
                entry: Some(pb::AclEntry {
                    service: Some(key_to_pb(service)),
                    list: crate::convert::acl_list_to_pb(*list) as i32,
                    addr: crate::addr::fmt_acl_entry(addr, *prefix_len),
                }),
            };
            if matches!(cmd, Command::AddAcl { .. }) {
                Op::AddAclEntry(req)
            } else {
                Op::DeleteAclEntry(req)
            }
        }
        _ => return None,
    })
}

/// Makes one change with its own call.
async fn send(
    c: &mut pb::dpvs_client::DpvsClient<Channel>,
    op: pb::op::Op,
) -> Result<(), tonic::Status> {
    use pb::op::Op;
    match op {
        Op::AddService(r) => drop(c.add_service(r).await?),
        Op::EditService(r) => drop(c.edit_service(r).await?),
        Op::DeleteService(r) => drop(c.delete_service(r).await?),
        Op::ClearServices(r) => drop(c.clear_services(r).await?),
        Op::AddDest(r) => drop(c.add_dest(r).await?),
        Op::EditDest(r) => drop(c.edit_dest(r).await?),
        Op::DeleteDest(r) => drop(c.delete_dest(r).await?),
        Op::AddLocalAddr(r) => drop(c.add_local_addr(r).await?),
        Op::DeleteLocalAddr(r) => drop(c.delete_local_addr(r).await?),
        Op::AddAddr(r) => drop(c.add_addr(r).await?),
        Op::DeleteAddr(r) => drop(c.delete_addr(r).await?),
        Op::AddRoute(r) => drop(c.add_route(r).await?),
        Op::DeleteRoute(r) => drop(c.delete_route(r).await?),
        Op::SetTimeouts(r) => drop(c.set_timeouts(r).await?),
        Op::AddAclEntry(r) => drop(c.add_acl_entry(r).await?),
        Op::DeleteAclEntry(r) => drop(c.delete_acl_entry(r).await?),
    }
    Ok(())
}

async fn list(
    c: &mut pb::dpvs_client::DpvsClient<Channel>,
    o: &args::ListOpts,
    json: bool,
    out: &mut String,
) -> Result<(), tonic::Status> {
    if o.daemon {
        let r = c.list_daemons(pb::Empty {}).await?;
        out.push_str(&if json {
            self::json::daemons(r.get_ref())
        } else {
            output::daemons(r.get_ref())
        });
        return Ok(());
    }
    if o.timeout {
        let t = c.get_timeouts(pb::Empty {}).await?;
        out.push_str(&if json {
            self::json::timeouts(t.get_ref())
        } else {
            output::timeouts(t.get_ref())
        });
        return Ok(());
    }
    if o.connections {
        let r = c.list_connections(pb::Empty {}).await?;
        let conns = &r.get_ref().connections;
        out.push_str(&if json {
            self::json::connections(conns)
        } else {
            output::connections(conns, o.worker)
        });
        return Ok(());
    }
    let r = c
        .list_services(pb::ListServicesRequest {
            key: o.service.as_ref().map(key_to_pb),
        })
        .await?;
    let mut resp = r.into_inner();
    if !o.nosort {
        order::ipvsadm_order(&mut resp.services);
    }
    if json {
        out.push_str(&self::json::services(&resp));
        return Ok(());
    }
    if o.persistent_conn {
        let conns = c.list_connections(pb::Empty {}).await?;
        out.push_str(&output::services_persistent(
            &resp,
            o.service.is_none(),
            &conns.get_ref().connections,
        ));
        return Ok(());
    }
    out.push_str(&output::services(
        &resp,
        o.service.is_none(),
        output::ListFormat {
            stats: o.stats,
            rate: o.rate,
            exact: o.exact,
            thresholds: o.thresholds,
        },
    ));
    Ok(())
}
