//! Announcing the VIPs to routing daemons, for active-active directors
//! behind ECMP routes (docs/ha.md "Active-active behind ECMP").
//!
//! With `[control] announce_vips = "dpdk0"`, the VIP of every service that
//! can take connections (a usable real server, or a sorry server in use) is
//! a host address on that kernel interface, and no other: a routing daemon
//! there (BIRD's `protocol direct`, FRR's `redistribute connected`) exports
//! those addresses over BGP with the director as next hop. A VIP whose real
//! servers are all down leaves the interface, and the route is withdrawn;
//! when dpvsd stops, the interface goes with it and so do the routes.
//! The kernel interface's address watch leaves these addresses alone: they
//! are the announcer's, not the operator's.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::server::DpvsService;

/// How often the usable VIPs are compared with what is announced.
const EVERY: Duration = Duration::from_millis(500);

/// Keeps `iface`'s VIP addresses equal to the usable VIPs, for as long as
/// dpvsd runs.
pub async fn announce_forever(svc: Arc<DpvsService>, iface: String) {
    let mut on: BTreeSet<IpAddr> = BTreeSet::new();
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        let want = svc.store().usable_vips();
        for &vip in want.difference(&on) {
            svc.announcer_owns(vip);
            change(&iface, vip, true);
        }
        for &vip in on.difference(&want) {
            change(&iface, vip, false);
        }
        on = want;
    }
}

fn change(iface: &str, vip: IpAddr, add: bool) {
    let len = if vip.is_ipv4() { 32 } else { 128 };
    match crate::kni::mirror(iface, vip, len, add) {
        Ok(()) => eprintln!(
            "dpvsd: announce: {vip} {} {iface}",
            if add {
                "usable: on"
            } else {
                "has no usable real server: off"
            }
        ),
        Err(e) => eprintln!("dpvsd: announce: {vip} on {iface}: {e}"),
    }
}
