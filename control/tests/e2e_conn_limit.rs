//! A service's connection limit end to end: dpvsd on af_packet vdevs, nginx
//! behind NAT, `--conn-limit 1`. While one client holds a keep-alive
//! connection, another client's curl is refused (`service_conn_limit`, and
//! the service's `conn_limit_drops`) and the held connection goes on; once
//! it is closed and has left the table, the other client is served.

mod netns;

use std::time::Duration;

use netns::{wait_for, Dpvsd, Topology, CLIENT_IPS, HTTP_PORT, VIP};

/// The TCP service's `conn_limit` and `conn_limit_drops` in `-Ln --json`.
fn service_limit(d: &Dpvsd) -> (u64, u64) {
    let svc = d.tcp_service_json();
    (
        svc["conn_limit"].as_u64().unwrap(),
        svc["conn_limit_drops"].as_u64().unwrap(),
    )
}

#[test]
fn a_service_at_its_limit_refuses_new_clients_keeps_the_held_one_and_recovers() {
    let Some(_serial) = netns::begin("connlimit") else {
        return;
    };
    let topo = Topology::new("connlimit");
    // Closed connections leave the table 1 s after their FINs.
    let d = topo.start_dpvsd(
        "[timeouts]\ntcpfin = 1\ntime_wait = 1\nclose = 1\nlast_ack = 1\nclose_wait = 1\n",
    );
    d.add_nat_services();
    let vs = format!("{VIP}:{HTTP_PORT}");
    d.ctl_ok(&["-E", "-t", &vs, "-s", "rr", "--conn-limit", "1"]);
    assert!(d
        .ctl_ok(&["-Ln"])
        .contains(&format!("TCP  {vs} rr conn-limit 1\n")));
    let url = format!("http://{VIP}:{HTTP_PORT}/");
    let served = |src: &str| {
        topo.http_get_from(src, &url)
            .is_some_and(|b| b.starts_with("rs"))
    };
    let [holder, other, _] = CLIENT_IPS;

    // The holder's keep-alive connection takes the only place.
    let go = topo.run_dir().join("go");
    let go_s = go.to_str().unwrap().to_string();
    let hold = topo.spawn_in(
        "cli",
        &["python3", "-c", netns::KEEPALIVE_CLIENT, holder, VIP, &go_s],
    );
    let established = wait_for(Duration::from_secs(10), || {
        d.conns()
            .iter()
            .any(|c| c.source.starts_with(&format!("{holder}:")) && c.state == "ESTABLISHED")
            .then_some(())
    });
    assert!(established.is_some(), "no connection from {holder}");

    // Another client is refused: its SYNs are dropped and counted.
    assert!(!served(other), "{other} served over the limit");
    let dropped = d.drop_counter("service_conn_limit");
    assert!(dropped >= 1, "the refused SYNs: {dropped}");
    assert_eq!(service_limit(&d), (1, dropped));
    assert!(
        !d.conns()
            .iter()
            .any(|c| c.source.starts_with(&format!("{other}:"))),
        "nothing kept for the refused client"
    );

    // The held connection goes on, then closes.
    std::fs::write(&go, b"").unwrap();
    let out = hold.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("first: rs"), "{text}");
    assert!(text.contains("second: rs"), "{text}");

    // Once it has left the table, the other client gets in by itself.
    let back = wait_for(Duration::from_secs(15), || served(other).then_some(()));
    assert!(back.is_some(), "{other} never served after the holder left");
}
