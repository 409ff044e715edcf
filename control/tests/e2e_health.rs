//! Health checks end to end: two real servers behind a NAT VIP, checked by
//! dpvsd through the ports' kernel interfaces. A server whose nginx stops is
//! inhibited within the check's timing and every later request succeeds on
//! the other; started again, it takes traffic again. The same for an HTTP
//! check expecting another status, and for a MISC_CHECK command.

mod netns;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use netns::{wait_for, Dpvsd, Topology, HTTP_PORT, REAL_SERVERS, VIP};

const CHECK: &str = "--check-interval 1 --check-timeout 1 --check-retries 2 --check-delay 1";

fn weight(d: &Dpvsd, rip: &str) -> Option<String> {
    let list = d.ctl_ok(&["-Ln"]);
    list.lines()
        .find(|l| l.contains(&format!("{rip}:{HTTP_PORT} ")))
        .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
}

/// Waits (bounded) until `rip` lists with weight `w`.
fn wait_weight(d: &Dpvsd, rip: &str, w: &str, what: &str) {
    let t = Instant::now();
    let got = wait_for(Duration::from_secs(15), || {
        (weight(d, rip).as_deref() == Some(w)).then_some(())
    });
    assert!(
        got.is_some(),
        "{what}: {rip} did not reach weight {w} in 15 s:\n{}\n{}",
        d.ctl_ok(&["-Ln"]),
        d.log()
    );
    eprintln!("[health] {what}: {rip} weight {w} after {:?}", t.elapsed());
}

fn answers(topo: &Topology, n: usize) -> BTreeMap<String, usize> {
    let url = format!("http://{VIP}:{HTTP_PORT}/");
    let mut seen = BTreeMap::new();
    for i in 0..n {
        let body = topo
            .http_get_from_client(&url)
            .unwrap_or_else(|| panic!("request {i} through the VIP failed"));
        *seen.entry(body.trim().to_string()).or_insert(0) += 1;
    }
    seen
}

/// Starts the real server `role`'s nginx again, as the topology started it
/// (its config in the run directory); the caller stops it.
fn start_nginx(topo: &Topology, role: &str) -> std::process::Child {
    let dir = topo.run_dir().join(role);
    let (conf, err) = (dir.join("nginx.conf"), dir.join("error.log"));
    topo.spawn_in(
        role,
        &[
            "nginx",
            "-p",
            &dir.to_string_lossy(),
            "-c",
            &conf.to_string_lossy(),
            "-e",
            &err.to_string_lossy(),
        ],
    )
}

fn set_check(d: &Dpvsd, rip: &str, check: &str) {
    let vs = format!("{VIP}:{HTTP_PORT}");
    let mut args = vec!["-e", "-t", &vs, "-r", rip, "-m"];
    let words: Vec<&str> = check.split_whitespace().collect();
    args.extend(words);
    d.ctl_ok(&args);
}

#[test]
fn a_dead_real_server_is_taken_out_and_comes_back() {
    let Some(_serial) = netns::begin("health") else {
        return;
    };
    let topo = Topology::new("health");
    let d = topo.start_dpvsd_kni("");
    d.addr_add(&format!("{VIP}/32"), "dpdk0");
    let vs = format!("{VIP}:{HTTP_PORT}");
    d.ctl_ok(&["-A", "-t", &vs, "-s", "rr"]);
    let (rs1, rs2) = (REAL_SERVERS[0].2, REAL_SERVERS[1].2);
    for rip in [rs1, rs2] {
        let mut args = vec!["-a", "-t", &vs, "-r", rip, "-m", "--check", "http"];
        args.extend(CHECK.split_whitespace());
        d.ctl_ok(&args);
    }
    let seen = answers(&topo, 4);
    assert_eq!(
        (seen.get("rs1"), seen.get("rs2")),
        (Some(&2), Some(&2)),
        "{seen:?}"
    );

    // rs1's nginx dies (its PID from the topology's pid file).
    let pidfile = topo.run_dir().join("rs1-http.pid");
    let pid = std::fs::read_to_string(&pidfile).expect("rs1's nginx pid file");
    let killed = std::process::Command::new("kill")
        .arg(pid.trim())
        .status()
        .expect("kill");
    assert!(killed.success());
    // Under client load: requests keep succeeding (rs2 answers; a request
    // scheduled to rs1 before it is inhibited may fail, so only count after).
    wait_weight(&d, rs1, "0", "nginx stopped");
    assert!(
        d.log()
            .contains(&format!("real server {rs1}:{HTTP_PORT} is DOWN")),
        "{}",
        d.log()
    );
    let seen = answers(&topo, 6);
    assert_eq!(seen.get("rs2"), Some(&6), "every request on rs2: {seen:?}");

    // Started again: back in rotation.
    let mut nginx = start_nginx(&topo, "rs1");
    wait_weight(&d, rs1, "1", "nginx started");
    assert!(d
        .log()
        .contains(&format!("real server {rs1}:{HTTP_PORT} is UP")));
    let seen = answers(&topo, 4);
    assert_eq!(
        (seen.get("rs1"), seen.get("rs2")),
        (Some(&2), Some(&2)),
        "{seen:?}"
    );

    // HTTP_GET expecting another status: rs2 fails it.
    set_check(&d, rs2, &format!("--check http --check-status 204 {CHECK}"));
    wait_weight(&d, rs2, "0", "status 200, 204 expected");
    assert!(d.log().contains("status 200, want 204"), "{}", d.log());
    let seen = answers(&topo, 4);
    assert_eq!(seen.get("rs1"), Some(&4), "{seen:?}");

    // MISC_CHECK: up while the file exists, down when it goes.
    let flag = topo.run_dir().join("rs2.ok");
    std::fs::write(&flag, "").unwrap();
    let cmd = format!("test -e {}", flag.display());
    let vs_args = [
        "-e",
        "-t",
        &vs,
        "-r",
        rs2,
        "-m",
        "--check",
        "misc",
        "--check-command",
        &cmd,
    ];
    let mut args: Vec<&str> = vs_args.to_vec();
    args.extend(CHECK.split_whitespace());
    d.ctl_ok(&args);
    wait_weight(&d, rs2, "1", "misc check passes");
    std::fs::remove_file(&flag).unwrap();
    wait_weight(&d, rs2, "0", "misc check fails");
    let seen = answers(&topo, 3);
    assert_eq!(seen.get("rs1"), Some(&3), "{seen:?}");
    let _ = nginx.kill();
    let _ = nginx.wait();
}

#[test]
fn the_passive_check_takes_out_a_server_that_refuses_connections() {
    let Some(_serial) = netns::begin("passive") else {
        return;
    };
    let topo = Topology::new("passive");
    // No kernel interface needed: the evidence is the traffic itself.
    let d = topo.start_dpvsd("");
    d.addr_add(&format!("{VIP}/32"), "dpdk0");
    let vs = format!("{VIP}:{HTTP_PORT}");
    d.ctl_ok(&["-A", "-t", &vs, "-s", "rr", "--passive-check"]);
    let (rs1, _) = (REAL_SERVERS[0].2, REAL_SERVERS[1].2);
    for (_, _, rip) in REAL_SERVERS {
        d.ctl_ok(&["-a", "-t", &vs, "-r", rip, "-m"]);
    }
    assert!(d.ctl_ok(&["-S", "-n"]).contains("-s rr --passive-check\n"));
    let seen = answers(&topo, 4);
    assert_eq!(
        (seen.get("rs1"), seen.get("rs2")),
        (Some(&2), Some(&2)),
        "{seen:?}"
    );

    let pid = std::fs::read_to_string(topo.run_dir().join("rs1-http.pid")).unwrap();
    assert!(std::process::Command::new("kill")
        .arg(pid.trim())
        .status()
        .unwrap()
        .success());
    // rs1 now answers SYNs with RSTs: clients sent there fail until the
    // passive check has seen three.
    let url = format!("http://{VIP}:{HTTP_PORT}/");
    let t = Instant::now();
    let mut failed = 0;
    let down = wait_for(Duration::from_secs(20), || {
        if topo.http_get_from_client(&url).is_none() {
            failed += 1;
        }
        d.log()
            .contains(&format!(
                "passive check: TCP {vs} real server {rs1}:{HTTP_PORT} is DOWN"
            ))
            .then_some(())
    });
    assert!(down.is_some(), "never passively inhibited:\n{}", d.log());
    eprintln!(
        "[passive] rs1 inhibited after {:?}, {failed} failed request(s)",
        t.elapsed()
    );
    // At least the three it needed; a few more while the 1 s sample comes round.
    assert!((3..=30).contains(&failed), "{failed} requests failed");
    assert_eq!(weight(&d, rs1).as_deref(), Some("0"));
    let seen = answers(&topo, 6);
    assert_eq!(seen.get("rs2"), Some(&6), "{seen:?}");

    // nginx back: after the inhibit period rs1 is tried again and serves.
    let mut nginx = start_nginx(&topo, "rs1");
    wait_weight(&d, rs1, "1", "inhibit period over");
    let seen = answers(&topo, 4);
    assert_eq!(
        (seen.get("rs1"), seen.get("rs2")),
        (Some(&2), Some(&2)),
        "{seen:?}"
    );
    let _ = nginx.kill();
    let _ = nginx.wait();
}
