//! Access lists end to end: dpvsd on af_packet vdevs, the client namespace's
//! three addresses as three clients (curl --interface), nginx behind NAT.
//! A blacklisted client's requests fail while the others' are served, its
//! established keep-alive connection is cut, the counters show the drops; the
//! entry deleted, it is served again. A whitelist lets in only its clients.

mod netns;

use std::time::Duration;

use netns::{wait_for, Dpvsd, Topology, CLIENT_IPS, HTTP_PORT, VIP};

fn url() -> String {
    format!("http://{VIP}:{HTTP_PORT}/")
}

/// Whether a request from `src` through the VIP was answered by a real server.
fn served(topo: &Topology, src: &str) -> bool {
    topo.http_get_from(src, &url())
        .is_some_and(|b| b.starts_with("rs"))
}

/// The TCP service's `blacklist_drops` and `whitelist_drops` in `-Ln --json`.
fn service_drops(d: &Dpvsd) -> (u64, u64) {
    let svc = d.tcp_service_json();
    (
        svc["blacklist_drops"].as_u64().unwrap(),
        svc["whitelist_drops"].as_u64().unwrap(),
    )
}

#[test]
fn a_blacklisted_client_is_refused_and_cut_others_served_until_the_entry_goes() {
    let Some(_serial) = netns::begin("acl") else {
        return;
    };
    let topo = Topology::new("acl");
    let d = topo.start_dpvsd("");
    d.add_nat_services();
    let vs = format!("{VIP}:{HTTP_PORT}");
    let [good, bad, third] = CLIENT_IPS;
    assert!(served(&topo, bad) && served(&topo, good), "before any list");

    // A keep-alive connection from the client about to be blacklisted.
    let go = topo.run_dir().join("go");
    let go_s = go.to_str().unwrap().to_string();
    let keepalive = topo.spawn_in(
        "cli",
        &["python3", "-c", netns::KEEPALIVE_CLIENT, bad, VIP, &go_s],
    );
    let established = wait_for(Duration::from_secs(10), || {
        d.conns()
            .iter()
            .any(|c| c.source.starts_with(&format!("{bad}:")) && c.state == "ESTABLISHED")
            .then_some(())
    });
    assert!(
        established.is_some(),
        "no established connection from {bad}"
    );
    // Its connections: the keep-alive one, and the first request's (closing).
    let tracked = d
        .conns()
        .iter()
        .filter(|c| c.source.starts_with(&format!("{bad}:")))
        .count() as u64;

    d.ctl_ok(&["-U", "-t", &vs, "-k", &format!("{bad}/32")]);
    assert!(d
        .ctl_ok(&["-B"])
        .contains(&format!("TCP      {vs:<30} {bad}")));
    for i in 0..3 {
        assert!(
            !served(&topo, bad),
            "request {i} from blacklisted {bad} served"
        );
        assert!(served(&topo, good), "request {i} from {good} refused");
    }
    // The established connection was cut: its next request goes unanswered.
    std::fs::write(&go, b"").unwrap();
    let out = keepalive.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("first: rs"), "{text}");
    assert!(text.contains("second: timeout"), "{text}");
    assert!(
        !d.conns()
            .iter()
            .any(|c| c.source.starts_with(&format!("{bad}:"))),
        "a connection from {bad} is left"
    );
    // Counted: every dropped packet under acl_blacklist, and under the service.
    let dropped = d.drop_counter("acl_blacklist");
    assert!(
        dropped >= 4,
        "3 refused SYNs and the cut request: {dropped}"
    );
    assert_eq!(service_drops(&d), (dropped, 0));
    let cut = d.drop_counter("acl_conn_cut");
    assert!((1..=tracked).contains(&cut), "{cut} cut of {tracked}");

    // The entry deleted: served again.
    d.ctl_ok(&["-V", "-t", &vs, "-k", bad]);
    assert!(served(&topo, bad), "{bad} after -V");

    // A whitelist of one client: the others are refused until it goes.
    d.ctl_ok(&["-O", "-t", &vs, "-2", third]);
    assert!(served(&topo, third), "{third} is on the whitelist");
    assert!(!served(&topo, good), "{good} is not on the whitelist");
    assert!(d.drop_counter("acl_whitelist") >= 1);
    assert!(service_drops(&d).1 >= 1);
    d.ctl_ok(&["-Y", "-t", &vs, "-2", third]);
    assert!(served(&topo, good), "{good} after -Y");
}
