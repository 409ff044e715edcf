//! The running configuration outlives dpvsd: with `[control] state_file`,
//! services, real servers and FULLNAT local addresses added over the API are
//! back after a restart (and serve traffic); after an edit of dpvs.toml, SIGHUP
//! makes the file's services the running ones, applying only the difference.

mod netns;

use std::fs;
use std::time::Duration;

use netns::{wait_for, Topology, HTTP_PORT, REAL_SERVERS, UDP_ECHO_PORT, VIP};

#[test]
fn configuration_survives_a_restart_and_sighup_applies_the_edited_file() {
    let Some(_serial) = netns::begin("restart") else {
        return;
    };
    let topo = Topology::new("restart");
    let state = topo.run_dir().join("state/dpvs.state");
    let extra = format!("state_file = \"{}\"\n", state.display());
    let mut d = topo.start_dpvsd(&extra);
    let vs = format!("{VIP}:{HTTP_PORT}");
    let fnat = format!("{VIP}:8080");
    d.ctl_ok(&["-A", "-t", &vs, "-s", "rr"]);
    for (_, _, rip) in REAL_SERVERS {
        d.ctl_ok(&["-a", "-t", &vs, "-r", &format!("{rip}:{HTTP_PORT}"), "-m"]);
    }
    d.ctl_ok(&["-A", "-t", &fnat, "-s", "wlc", "-p", "120"]);
    d.ctl_ok(&["-a", "-t", &fnat, "-r", "192.168.0.11:80", "-b", "-w", "2"]);
    d.ctl_ok(&["-P", "-t", &fnat, "-z", "192.168.0.200", "-F", "dpdk1"]);
    d.ctl_ok(&["--set", "600", "0", "0"]);
    let saved = d.ctl_ok(&["-S", "-n"]);
    assert!(
        saved.contains("-P -t 10.0.0.100:8080 -z 192.168.0.200 -F dpdk1\n"),
        "{saved}"
    );
    let url = format!("http://{VIP}:{HTTP_PORT}/");
    assert!(
        topo.http_get_from_client(&url).is_some(),
        "served before the restart"
    );

    let status = d.terminate();
    assert!(
        status.is_some_and(|s| s.success()),
        "dpvsd stops cleanly: {status:?}"
    );
    drop(d);

    // A new dpvsd with the same dpvs.toml (which has no services) comes back
    // with everything that was added over the API.
    let d = topo.start_dpvsd(&extra);
    assert!(
        d.log()
            .contains(&format!("configuration restored from {}", state.display())),
        "{}",
        d.log()
    );
    assert_eq!(d.ctl_ok(&["-S", "-n"]), saved);
    assert_eq!(
        d.ctl_ok(&["-L", "--timeout"]),
        "Timeout (tcp tcpfin udp): 600 120 300\n"
    );
    let laddrs = d.ctl_ok(&["-G"]);
    assert!(laddrs.contains("192.168.0.200"), "{laddrs}");
    let answer = topo.http_get_from_client(&url);
    assert!(
        answer.as_deref().is_some_and(|a| a.contains("rs")),
        "served after the restart: {answer:?}"
    );

    // The operator writes the HTTP service and a new UDP one into dpvs.toml
    // and sends SIGHUP: the UDP service comes in, the FULLNAT service (not in
    // the file) goes, the HTTP service is untouched.
    let rips: Vec<String> = REAL_SERVERS
        .iter()
        .map(|(_, _, rip)| format!("{{ addr = \"{rip}\", mode = \"nat\" }}"))
        .collect();
    let mut toml = fs::read_to_string(d.config()).unwrap();
    toml.push_str(&format!(
        "\n[timeouts]\ntcp = 600\n\n\
         [[service]]\nproto = \"tcp\"\nvip = \"{VIP}\"\nvport = {HTTP_PORT}\nscheduler = \"rr\"\ndest = [{}]\n\n\
         [[service]]\nproto = \"udp\"\nvip = \"{VIP}\"\nvport = {UDP_ECHO_PORT}\nscheduler = \"rr\"\ndest = [{}]\n",
        rips.join(", "),
        rips.join(", ")
    ));
    fs::write(d.config(), toml).unwrap();
    d.signal("HUP");
    let udp_line = format!("-A -u {VIP}:{UDP_ECHO_PORT} -s rr\n");
    let now = wait_for(Duration::from_secs(10), || {
        let s = d.ctl_ok(&["-S", "-n"]);
        s.contains(&udp_line).then_some(s)
    })
    .unwrap_or_else(|| panic!("SIGHUP did not apply the file:\n{}", d.log()));
    assert!(
        !now.contains(":8080"),
        "the service not in the file is gone:\n{now}"
    );
    let http = format!("{vs} ");
    let http_lines: Vec<&str> = saved.lines().filter(|l| l.contains(&http)).collect();
    assert_eq!(http_lines.len(), 3, "{saved}");
    for l in http_lines {
        assert!(now.contains(l), "{l} kept:\n{now}");
    }
    assert!(d.log().contains("SIGHUP"), "{}", d.log());
    assert!(
        d.log().contains("- -A -t 10.0.0.100:8080 -s wlc -p 120"),
        "{}",
        d.log()
    );
    let reply = topo
        .udp_echo_from_client(VIP, UDP_ECHO_PORT, "after-hup")
        .expect("the UDP service from the file answers");
    assert!(reply.ends_with(":after-hup"), "{reply:?}");
    // The state file follows: a later restart would start from this.
    let text = fs::read_to_string(&state).unwrap();
    assert!(
        text.contains(&udp_line) && !text.contains(":8080"),
        "{text}"
    );

    // A broken file changes nothing.
    fs::write(d.config(), "[workers]\ncores = [1]\n[[service]]\n").unwrap();
    d.signal("HUP");
    let logged = wait_for(Duration::from_secs(10), || {
        d.log().contains("configuration unchanged").then_some(())
    });
    assert!(logged.is_some(), "{}", d.log());
    assert_eq!(d.ctl_ok(&["-S", "-n"]), now);
}
