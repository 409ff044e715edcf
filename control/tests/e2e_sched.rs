//! Scheduling end to end (NAT, real kernel TCP): persistence keeps a client on
//! one real server across connections, and a dest set to weight 0 (quiescent)
//! gets no new connections while an already open one keeps working.

mod netns;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use netns::{Topology, HTTP_PORT, REAL_SERVERS, VIP};

fn url() -> String {
    format!("http://{VIP}:{HTTP_PORT}/")
}

fn answer(topo: &Topology, src: &str) -> String {
    topo.http_get_from(src, &url())
        .unwrap_or_else(|| panic!("no answer through the VIP from {src}"))
        .trim()
        .to_string()
}

#[test]
fn persistent_service_keeps_each_client_on_one_server() {
    let Some(_serial) = netns::begin("persistence") else {
        return;
    };
    let topo = Topology::new("persistence");
    let d = topo.start_dpvsd("");
    d.addr_add(&format!("{VIP}/32"), "dpdk0");
    let vs = format!("{VIP}:{HTTP_PORT}");
    d.ctl_ok(&["-A", "-t", &vs, "-s", "rr", "-p", "60"]);
    for (_, _, rip) in REAL_SERVERS {
        d.ctl_ok(&["-a", "-t", &vs, "-r", &format!("{rip}:{HTTP_PORT}"), "-m"]);
    }
    let listing = d.ctl_ok(&["-Ln"]);
    assert!(
        listing.contains("persistent 60"),
        "-Ln shows persistence:\n{listing}"
    );

    // Each client address sticks to one server over several connections,
    // although rr alone would alternate.
    let mut servers = BTreeSet::new();
    for src in ["10.0.0.2", "10.0.0.3", "10.0.0.4"] {
        let first = answer(&topo, src);
        for i in 0..4 {
            assert_eq!(
                answer(&topo, src),
                first,
                "{src}: connection {i} moved to another server"
            );
        }
        servers.insert(first);
    }
    // rr schedules the templates themselves: three clients land on both servers.
    assert_eq!(
        servers.len(),
        2,
        "three clients' templates spread by rr: {servers:?}"
    );

    // The templates: one per client in -Lnc (state NONE, client port 0), and
    // counted per dest in the PersistConn column.
    let templates: Vec<_> = d
        .conns()
        .into_iter()
        .filter(|c| c.state == "NONE")
        .collect();
    assert_eq!(templates.len(), 3, "one template per client: {templates:?}");
    assert!(templates.iter().all(|t| t.source.ends_with(":0")));
    let pc = d.ctl_ok(&["-Ln", "--persistent-conn"]);
    assert!(pc.contains("PersistConn"), "{pc}");
    let persist: u64 = pc
        .lines()
        .filter(|l| l.starts_with("  -> ") && !l.contains("RemoteAddress"))
        .map(|l| {
            l.split_whitespace()
                .nth(3)
                .and_then(|w| w.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(persist, 3, "PersistConn sums to the three clients:\n{pc}");
}

#[test]
fn quiescent_dest_gets_no_new_connections_but_open_ones_continue() {
    let Some(_serial) = netns::begin("quiesce") else {
        return;
    };
    let topo = Topology::new("quiesce");
    let d = topo.start_dpvsd("");
    d.addr_add(&format!("{VIP}/32"), "dpdk0");
    let vs = format!("{VIP}:{HTTP_PORT}");
    d.ctl_ok(&["-A", "-t", &vs, "-s", "rr"]);
    for (_, _, rip) in REAL_SERVERS {
        d.ctl_ok(&[
            "-a",
            "-t",
            &vs,
            "-r",
            &format!("{rip}:{HTTP_PORT}"),
            "-m",
            "-w",
            "1",
        ]);
    }

    // An open connection: connect, report the local port, wait, then send the
    // request on the same connection and print the answer. Bounded by timeouts.
    const HOLD: &str = r#"
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print(s.getsockname()[1], flush=True)
time.sleep(4)
s.sendall(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(data.split(b"\r\n\r\n", 1)[-1].decode().strip(), flush=True)
"#;
    let port = HTTP_PORT.to_string();
    let mut held = topo.spawn_in("cli", &["timeout", "20", "python3", "-c", HOLD, VIP, &port]);
    let mut out = BufReader::new(held.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line)
        .expect("held connection reports its port");
    let cport = line.trim().to_string();
    assert!(!cport.is_empty(), "held connection did not connect");

    // Which server holds it, from the connection table.
    let row = netns::wait_for(Duration::from_secs(3), || {
        d.conns()
            .into_iter()
            .find(|c| c.source.ends_with(&format!(":{cport}")) && c.state == "ESTABLISHED")
    })
    .expect("the held connection is ESTABLISHED in -Lnc");
    let held_rs = row.dest.clone();
    let (held_name, _, _) = REAL_SERVERS
        .iter()
        .find(|(_, _, ip)| held_rs.starts_with(&format!("{ip}:")))
        .expect("held connection's dest is a known real server");

    // Quiesce that dest.
    d.ctl_ok(&["-e", "-t", &vs, "-r", &held_rs, "-m", "-w", "0"]);
    let listed = d.services();
    let dest = listed[0]
        .dests
        .iter()
        .find(|x| x.addr == held_rs)
        .expect("dest listed");
    assert_eq!(dest.weight, 0);
    assert_eq!(dest.active_conns, 1, "the held connection counts as active");

    // New connections all go to the other server.
    for i in 0..6 {
        let got = answer(&topo, "10.0.0.2");
        assert_ne!(
            &got, held_name,
            "new connection {i} went to the quiescent dest"
        );
    }

    // The held connection still completes on its server.
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("read held answer");
    let status = held.wait().expect("held client exits");
    assert!(status.success(), "held connection failed: {rest:?}");
    assert_eq!(
        rest.trim(),
        *held_name,
        "open connection kept its server after weight 0"
    );
}
