//! Forwarding modes end to end (real kernel TCP/UDP through dpvsd): DR and TUN,
//! whose replies bypass the director, and FULLNAT.
//!
//! DR and TUN use `deploy/netns/bypass.sh` on top of the demo topology: the
//! client namespace gets a second leg in the server LAN and the real servers
//! route their replies there, never through the director.

mod netns;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use netns::{run_bounded, Topology, HTTP_PORT, REAL_SERVERS, VIP};

fn bypass(topo: &Topology, mode: &str) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/netns/bypass.sh");
    let out = run_bounded(
        Command::new("bash")
            .arg(script)
            .arg(mode)
            .arg(topo.prefix())
            .arg(VIP)
            .arg(topo.run_dir()),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "bypass.sh {mode} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Curls the VIP `n` times; the set of server names that answered.
fn answers(topo: &Topology, n: usize) -> BTreeSet<String> {
    let url = format!("http://{VIP}:{HTTP_PORT}/");
    (0..n)
        .map(|i| {
            topo.http_get_from_client(&url)
                .unwrap_or_else(|| panic!("request {i} through the VIP got no answer"))
                .trim()
                .to_string()
        })
        .collect()
}

fn all_servers() -> BTreeSet<String> {
    REAL_SERVERS.iter().map(|(n, _, _)| n.to_string()).collect()
}

/// Sets up a TCP service on VIP:80 with both real servers in `flag`'s mode.
fn tcp_service(d: &netns::Dpvsd, flag: &str) -> String {
    d.addr_add(&format!("{VIP}/32"), "dpdk0");
    let vs = format!("{VIP}:{HTTP_PORT}");
    d.ctl_ok(&["-A", "-t", &vs, "-s", "rr"]);
    for (_, _, rip) in REAL_SERVERS {
        d.ctl_ok(&["-a", "-t", &vs, "-r", &format!("{rip}:{HTTP_PORT}"), flag]);
    }
    vs
}

#[test]
fn dr_replies_bypass_the_director() {
    let Some(_serial) = netns::begin("dr") else {
        return;
    };
    let topo = Topology::new("dr");
    bypass(&topo, "dr");
    let d = topo.start_dpvsd("");
    let vs = tcp_service(&d, "-g");
    let listed = d.services();
    assert!(
        listed[0].dests.iter().all(|x| x.forward == "Route"),
        "-Ln shows Route: {listed:?}"
    );
    // A DR dest on another port is refused with a clear error.
    let bad = d.ctl(&["-a", "-t", &vs, "-r", "192.168.0.13:8080", "-g"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("virtual port"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    assert_eq!(answers(&topo, 6), all_servers(), "both servers answer");

    let st = d.stats();
    let svc = st.iter().find(|s| s.addr == vs).expect("service stats");
    assert!(svc.total.conns >= 6, "{svc:?}");
    assert!(svc.total.inpkts >= 6 * 3, "requests counted: {svc:?}");
    assert_eq!(
        svc.total.outpkts, 0,
        "replies never pass the director: {svc:?}"
    );
}
