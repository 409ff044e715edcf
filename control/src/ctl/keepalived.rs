//! `dpvsctl import keepalived FILE`: a keepalived.conf's virtual servers as
//! the changes keepalived 2.2 would make to IPVS (and DPVS's keepalived to
//! DPVS), for dpvsd to apply as one `Batch`.
//!
//! [`parse`] reads the file as keepalived's parser does (comments, quotes,
//! includes, blocks) into statements that know their `FILE:LINE`; [`map`]
//! gives them keepalived's meaning and defaults (virtual and real servers,
//! groups), `check` does the checkers, `value` keepalived's parameter
//! syntax (booleans, timers, ranges). Nothing here talks to dpvsd
//! or changes anything: the caller sends [`Plan::ops`], or prints
//! [`preview`] for `--dry-run`. The compatibility table is
//! docs/keepalived.md.

mod acl;
mod check;
pub mod map;
pub mod parse;
mod value;

use std::path::Path;

use proto::v1 as pb;

pub use map::Plan;
pub use parse::{Error, Loc};

/// Reads `path` (and its includes) from disk and maps it.
pub fn load(path: &Path) -> Result<Plan, Error> {
    load_from(path, &parse::Disk)
}

/// [`load`] over any [`parse::Files`] (tests: files in memory).
pub fn load_from(path: &Path, files: &dyn parse::Files) -> Result<Plan, Error> {
    let (stmts, mut notes) = parse::load(path, files)?;
    let mut plan = map::plan(&stmts)?;
    notes.append(&mut plan.notes);
    plan.notes = notes;
    Ok(plan)
}

/// The services (with their access lists), real servers and local addresses
/// the plan adds, as
/// `ListServices`/`ListLocalAddrs` would return them once it is applied (for
/// `rules::save`, which prints them as `-R` lines).
pub fn preview(plan: &Plan) -> (pb::ListServicesResponse, Vec<pb::LocalAddr>) {
    use pb::op::Op;
    let mut services: Vec<pb::ServiceStatus> = Vec::new();
    let mut laddrs = Vec::new();
    for (_, op) in &plan.ops {
        match op {
            Op::AddService(r) => services.push(pb::ServiceStatus {
                service: r.service.clone(),
                ..Default::default()
            }),
            Op::AddDest(r) => {
                let st = services.iter_mut().find(|st| {
                    st.service.as_ref().and_then(|s| s.key.as_ref()) == r.service.as_ref()
                });
                if let Some(st) = st {
                    st.dests.push(pb::DestStatus {
                        dest: r.dest.clone(),
                        ..Default::default()
                    });
                }
            }
            Op::AddLocalAddr(r) => laddrs.extend(r.laddr.clone()),
            Op::AddAclEntry(r) => {
                let Some(e) = &r.entry else { continue };
                let svc = services
                    .iter_mut()
                    .filter_map(|st| st.service.as_mut())
                    .find(|s| s.key.as_ref() == e.service.as_ref());
                if let Some(svc) = svc {
                    match pb::AclList::try_from(e.list) {
                        Ok(pb::AclList::Whitelist) => svc.whitelist.push(e.addr.clone()),
                        _ => svc.blacklist.push(e.addr.clone()),
                    }
                }
            }
            // map produces nothing else.
            _ => {}
        }
    }
    // dpvsd lists a service's real servers by address and port, its access
    // lists by address and length.
    for st in &mut services {
        st.dests.sort_by_key(|d| {
            d.dest
                .as_ref()
                .map(|d| (d.addr.parse::<std::net::IpAddr>().ok(), d.port))
        });
        if let Some(svc) = st.service.as_mut() {
            for list in [&mut svc.blacklist, &mut svc.whitelist] {
                list.sort_by_key(|e| crate::addr::parse_acl_entry(e).ok());
            }
        }
    }
    (
        pb::ListServicesResponse {
            services,
            table_size: 0,
        },
        laddrs,
    )
}

/// What a plan adds, counted: (services, real servers, local addresses).
pub fn counts(plan: &Plan) -> (usize, usize, usize) {
    use pb::op::Op;
    let mut n = (0, 0, 0);
    for (_, op) in &plan.ops {
        match op {
            Op::AddService(_) => n.0 += 1,
            Op::AddDest(_) => n.1 += 1,
            Op::AddLocalAddr(_) => n.2 += 1,
            _ => {}
        }
    }
    n
}
