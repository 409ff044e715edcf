//! One configuration change as the API names it (`AddService`, `AddDest`, ...),
//! applied to a [`Store`]. The single calls and `Batch` (ipvsadm `-R`,
//! `dpvsctl apply`) share this code, so a change means the same in both.
//!
//! Request messages are checked here (a malformed field is INVALID_ARGUMENT
//! naming it); what the change means for the configuration (a missing service,
//! a duplicate dest) is the store's to decide.

use proto::v1 as pb;
use tonic::Status;

use crate::convert;
use crate::server::store_status;
use crate::store::{AclList, Store};

/// What a change leaves for the caller to do once the new configuration is in
/// force: counters baselines (`-Z`) of deleted things are forgotten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forget {
    Nothing,
    Service(dataplane::ServiceKey),
    Dest(dataplane::ServiceKey, std::net::IpAddr, u16),
    All,
}

fn bad(m: String) -> Status {
    Status::invalid_argument(m)
}

/// Applies one change to `store` (a copy: on error the caller drops it).
pub fn apply(store: &mut Store, op: &pb::op::Op) -> Result<Forget, Status> {
    use pb::op::Op;
    match op {
        Op::AddService(r) => {
            let svc = r.service.as_ref();
            let spec = convert::service_from_pb(svc).map_err(bad)?;
            let pp = convert::proxy_protocol_from_pb(svc.map_or(0, |s| s.proxy_protocol))
                .map_err(bad)?;
            let key = spec.key;
            let sorry = sorry_from_pb(svc)?;
            // The dests it carries: errors name which (`dests[1].weight: ...`).
            for (j, d) in spec.dests.iter().enumerate() {
                crate::store::check_dest(&key, d).map_err(|e| bad(format!("dests[{j}].{e}")))?;
            }
            store.add_service(spec).map_err(store_status)?;
            acl_lists(store, &key, svc)?;
            if let Some(Some(v)) = pp {
                store
                    .set_proxy_protocol(&key, Some(v))
                    .map_err(store_status)?;
            }
            service_extras(store, &key, svc, sorry)?;
        }
        Op::EditService(r) => {
            let svc = r.service.as_ref();
            let spec = convert::service_from_pb(svc).map_err(bad)?;
            let pp = convert::proxy_protocol_from_pb(svc.map_or(0, |s| s.proxy_protocol))
                .map_err(bad)?;
            let key = spec.key;
            let sorry = sorry_from_pb(svc)?;
            store.edit_service(spec).map_err(store_status)?;
            if let Some(p) = pp {
                store.set_proxy_protocol(&key, p).map_err(store_status)?;
            }
            service_extras(store, &key, svc, sorry)?;
        }
        Op::DeleteService(r) => {
            let key = convert::key_from_pb(r.key.as_ref()).map_err(bad)?;
            store.delete_service(&key).map_err(store_status)?;
            return Ok(Forget::Service(key));
        }
        Op::ClearServices(_) => {
            store.clear_services();
            return Ok(Forget::All);
        }
        Op::AddDest(r) | Op::EditDest(r) => {
            let key = convert::key_field("service", r.service.as_ref()).map_err(bad)?;
            let dest = convert::dest_from_pb(&key, r.dest.as_ref()).map_err(bad)?;
            let check = match r.dest.as_ref().and_then(|d| d.check.as_ref()) {
                Some(c) => Some(convert::check_from_pb(c).map_err(bad)?),
                None => None,
            };
            let (addr, port) = (dest.addr, dest.port);
            if matches!(op, Op::AddDest(_)) {
                store.add_dest(&key, dest)
            } else {
                store.edit_dest(&key, dest)
            }
            .map_err(store_status)?;
            // As ipvsadm -e: what is not given goes back to its default (no check).
            store
                .set_check(&key, &addr, port, check)
                .map_err(store_status)?;
        }
        Op::DeleteDest(r) => {
            let key = convert::key_field("service", r.service.as_ref()).map_err(bad)?;
            let addr = crate::addr::parse_ip(&r.addr).map_err(|e| bad(format!("addr: {e}")))?;
            let port =
                u16::try_from(r.port).map_err(|_| bad(format!("port: invalid port {}", r.port)))?;
            let port = if port == 0 { key.vport } else { port };
            store.delete_dest(&key, &addr, port).map_err(store_status)?;
            return Ok(Forget::Dest(key, addr, port));
        }
        Op::AddLocalAddr(r) => {
            let l = convert::laddr_from_pb(r.laddr.as_ref()).map_err(bad)?;
            store.add_laddr(l).map_err(store_status)?;
        }
        Op::DeleteLocalAddr(r) => {
            let l = convert::required("laddr", r.laddr.as_ref()).map_err(bad)?;
            let key = convert::key_field("service", l.service.as_ref()).map_err(bad)?;
            let addr = crate::addr::parse_ip(&l.addr).map_err(|e| bad(format!("addr: {e}")))?;
            store.delete_laddr(&key, &addr).map_err(store_status)?;
        }
        Op::AddAddr(r) | Op::DeleteAddr(r) => {
            let a = convert::addr_from_pb(r.addr.as_ref()).map_err(bad)?;
            if matches!(op, Op::AddAddr(_)) {
                store.add_addr(a)
            } else {
                store.delete_addr(&a.port, &a.addr)
            }
            .map_err(store_status)?;
        }
        Op::AddRoute(r) | Op::DeleteRoute(r) => {
            let rt = convert::route_from_pb(r.route.as_ref()).map_err(bad)?;
            if matches!(op, Op::AddRoute(_)) {
                store.add_route(rt)
            } else {
                store.delete_route(&rt.prefix, rt.prefix_len)
            }
            .map_err(store_status)?;
        }
        Op::SetTimeouts(t) => store.set_timeouts(convert::timeouts_from_pb(t)),
        Op::AddAclEntry(r) | Op::DeleteAclEntry(r) => {
            let (key, list, addr, len) =
                convert::acl_entry_from_pb(r.entry.as_ref()).map_err(bad)?;
            if matches!(op, Op::AddAclEntry(_)) {
                store.add_acl_entry(&key, list, addr, len)
            } else {
                store.delete_acl_entry(&key, list, addr, len)
            }
            .map_err(store_status)?;
        }
    }
    Ok(Forget::Nothing)
}

/// The access lists AddService carries (`blacklist[1]: ...` names a bad one).
fn acl_lists(
    store: &mut Store,
    key: &dataplane::ServiceKey,
    svc: Option<&pb::Service>,
) -> Result<(), Status> {
    let Some(svc) = svc else { return Ok(()) };
    for (list, entries) in [
        (AclList::Blacklist, &svc.blacklist),
        (AclList::Whitelist, &svc.whitelist),
    ] {
        for (j, e) in entries.iter().enumerate() {
            let at = format!("{}[{j}]", list.name());
            let (addr, len) =
                crate::addr::parse_acl_entry(e).map_err(|m| bad(format!("{at}: {m}")))?;
            store.add_acl_entry(key, list, addr, len).map_err(|e| {
                let code = store_status(e.clone()).code();
                Status::new(code, format!("{at}: {}", e.message()))
            })?;
        }
    }
    Ok(())
}

/// What AddService and EditService set beside the spec: the sorry server
/// (`None`: unchanged), the SYN proxy and the connection limit (absent:
/// unchanged), and, replaced as the other -E attributes, the passive check
/// and the quorum (0: keepalived's 1), hysteresis and quorum commands.
fn service_extras(
    store: &mut Store,
    key: &dataplane::ServiceKey,
    svc: Option<&pb::Service>,
    sorry: Option<Option<std::net::SocketAddr>>,
) -> Result<(), Status> {
    if let Some(at) = sorry {
        store.set_sorry(key, at).map_err(store_status)?;
    }
    store
        .set_passive_check(key, svc.is_some_and(|s| s.passive_check))
        .map_err(store_status)?;
    if let Some(on) = svc.and_then(|s| s.synproxy) {
        store.set_synproxy(key, on).map_err(store_status)?;
    }
    if let Some(n) = svc.and_then(|s| s.conn_limit) {
        store.set_conn_limit(key, n).map_err(store_status)?;
    }
    let (q, h) = svc.map_or((0, 0), |s| (s.quorum, s.hysteresis));
    store.set_quorum(key, q.max(1), h).map_err(store_status)?;
    let scripts = crate::store::QuorumScripts {
        up: svc.map(|s| s.quorum_up.clone()).unwrap_or_default(),
        down: svc.map(|s| s.quorum_down.clone()).unwrap_or_default(),
    };
    store.set_quorum_scripts(key, scripts).map_err(store_status)
}

/// `Service.sorry_server`: `None` not given, `Some(None)` "none", else the address.
fn sorry_from_pb(
    svc: Option<&pb::Service>,
) -> Result<Option<Option<std::net::SocketAddr>>, Status> {
    let s = svc.map_or("", |s| s.sorry_server.as_str());
    match s {
        "" => Ok(None),
        "none" => Ok(Some(None)),
        _ => {
            let (ip, port) = crate::addr::parse_addr_port(s, false)
                .map_err(|e| bad(format!("sorry_server: {e}")))?;
            let port = port.ok_or_else(|| bad(format!("sorry_server: \"{s}\" needs a port")))?;
            Ok(Some(Some(std::net::SocketAddr::new(ip, port))))
        }
    }
}

/// The name of a change as the API spells it, for messages.
pub fn name(op: &pb::op::Op) -> &'static str {
    use pb::op::Op;
    match op {
        Op::AddService(_) => "AddService",
        Op::EditService(_) => "EditService",
        Op::DeleteService(_) => "DeleteService",
        Op::ClearServices(_) => "ClearServices",
        Op::AddDest(_) => "AddDest",
        Op::EditDest(_) => "EditDest",
        Op::DeleteDest(_) => "DeleteDest",
        Op::AddLocalAddr(_) => "AddLocalAddr",
        Op::DeleteLocalAddr(_) => "DeleteLocalAddr",
        Op::AddAddr(_) => "AddAddr",
        Op::DeleteAddr(_) => "DeleteAddr",
        Op::AddRoute(_) => "AddRoute",
        Op::DeleteRoute(_) => "DeleteRoute",
        Op::SetTimeouts(_) => "SetTimeouts",
        Op::AddAclEntry(_) => "AddAclEntry",
        Op::DeleteAclEntry(_) => "DeleteAclEntry",
    }
}
