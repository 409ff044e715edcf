//! The kernel interface of each port (the exception path): with `kni = true`,
//! dpvsd creates TAPs `dpdk0`/`dpdk1` in the director's namespace with the
//! ports' addresses, and the director's own kernel reaches the networks behind
//! the DPDK ports: `ping` and `curl` to a real server work, while the load
//! balancer keeps serving the VIP.

mod netns;

use std::time::Duration;

use netns::{wait_for, Topology, HTTP_PORT, REAL_SERVERS, VIP};

#[test]
fn the_directors_kernel_reaches_real_servers_through_the_dpdk_port() {
    let Some(_serial) = netns::begin("kni") else {
        return;
    };
    let topo = Topology::new("kni");
    let d = topo.start_dpvsd_kni("");
    let log = d.log();
    assert!(
        log.contains("kernel interface dpdk1 (TAP) with 192.168.0.1/24"),
        "{log}"
    );
    let addr = topo.exec_in("lb", &["ip", "-br", "addr", "show", "dev", "dpdk1"]);
    let addr = String::from_utf8_lossy(&addr.stdout).to_string();
    // A TAP that is up reports its state as UNKNOWN (no carrier notion).
    assert!(
        addr.contains("192.168.0.1/24") && !addr.contains("DOWN"),
        "{addr}"
    );

    // The kernel's own traffic: ICMP and TCP to a real server.
    let (_, _, rip) = REAL_SERVERS[0];
    let ping = topo.exec_in("lb", &["ping", "-c", "2", "-W", "2", rip]);
    assert!(
        ping.status.success(),
        "ping {rip} from the director's kernel: {}{}\n{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr),
        d.log()
    );
    let url = format!("http://{rip}:{HTTP_PORT}/");
    let curl = topo.exec_in("lb", &["curl", "-s", "-m", "5", &url]);
    let body = String::from_utf8_lossy(&curl.stdout).to_string();
    assert!(
        curl.status.success() && body.contains("rs1"),
        "curl {url} from the director's kernel: {body:?} {}",
        String::from_utf8_lossy(&curl.stderr)
    );

    // The load balancer is unaffected: the VIP still serves.
    d.add_nat_services();
    let vip = format!("http://{VIP}:{HTTP_PORT}/");
    let answer = topo.http_get_from_client(&vip);
    assert!(
        answer.as_deref().is_some_and(|a| a.contains("rs")),
        "{answer:?}\n{}\n{}\n{}",
        d.ctl_ok(&["-Ln", "--stats", "--exact"]),
        String::from_utf8_lossy(
            &topo
                .exec_in("cli", &["curl", "-sv", "-m", "3", &vip])
                .stderr
        ),
        d.ctl_ok(&["-Lnc"])
    );
    let stats = d.ctl_ok(&["stats"]);
    let up: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("to_kernel"))
        .and_then(|v| v.trim().trim_start_matches(':').trim().parse().ok())
        .unwrap_or(0);
    assert!(up >= 4, "replies went up to the kernel:\n{stats}");

    // One set of addresses: `ip addr add` on the kernel interface makes the
    // address the dataplane's (it answers ARP and ping for it on the wire)...
    let ping_from_rs = |ip: &str| {
        topo.exec_in("rs1", &["ping", "-c", "1", "-W", "1", ip])
            .status
            .success()
    };
    assert!(!ping_from_rs("192.168.0.50"), "nobody has .50 yet");
    let add = topo.exec_in(
        "lb",
        &["ip", "addr", "add", "192.168.0.50/24", "dev", "dpdk1"],
    );
    assert!(add.status.success());
    let owned = wait_for(Duration::from_secs(10), || {
        d.ctl_ok(&["addr", "show"])
            .contains("192.168.0.50/24")
            .then_some(())
    });
    assert!(
        owned.is_some(),
        "{}\n{}",
        d.ctl_ok(&["addr", "show"]),
        d.log()
    );
    assert!(
        d.log().contains("dpdk1 gained 192.168.0.50/24"),
        "{}",
        d.log()
    );
    assert!(
        ping_from_rs("192.168.0.50"),
        "the dataplane answers ARP and echo for it"
    );
    // ...and `ip addr del` takes it away again.
    let del = topo.exec_in(
        "lb",
        &["ip", "addr", "del", "192.168.0.50/24", "dev", "dpdk1"],
    );
    assert!(del.status.success());
    let gone = wait_for(Duration::from_secs(10), || {
        (!d.ctl_ok(&["addr", "show"]).contains("192.168.0.50")).then_some(())
    });
    assert!(gone.is_some(), "{}", d.ctl_ok(&["addr", "show"]));
    // An address added with dpvsctl goes on the kernel interface too.
    d.ctl_ok(&["addr", "add", "192.168.0.51/24", "dev", "dpdk1"]);
    let shown = topo.exec_in("lb", &["ip", "-br", "addr", "show", "dev", "dpdk1"]);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("192.168.0.51/24"),
        "{}",
        String::from_utf8_lossy(&shown.stdout)
    );
    d.ctl_ok(&["addr", "del", "192.168.0.51/24", "dev", "dpdk1"]);
    let shown = topo.exec_in("lb", &["ip", "-br", "addr", "show", "dev", "dpdk1"]);
    assert!(!String::from_utf8_lossy(&shown.stdout).contains("192.168.0.51"));
}
