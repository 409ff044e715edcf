//! FULLNAT with Proxy Protocol end to end: real nginx on the real servers
//! listening with `proxy_protocol` logs `$proxy_protocol_addr`; the client's
//! own address must appear there (not the LIP, which is the TCP peer nginx
//! sees). Uploads and downloads of a few hundred kB on one keep-alive
//! connection exercise the shifted sequence / acknowledgement numbers both ways.

mod netns;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use netns::{run_bounded, wait_for, Topology, CLIENT_IPS, REAL_SERVERS, VIP};

const LIP: &str = "192.168.0.200";
/// Port of the Proxy Protocol nginx on the real servers and of the service.
const PP_PORT: u16 = 8080;
const BIG: usize = 300 * 1024;

/// The nginx processes this test started: stopped by their PID and reaped
/// when dropped (before the topology, which would also stop them).
struct PpNginx {
    children: Vec<Child>,
    dirs: Vec<PathBuf>,
}

impl Drop for PpNginx {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts a second nginx on each real server (its own config and logs under
/// the topology's run dir, `listen 8080 proxy_protocol`, WebDAV PUT for
/// uploads, a 300 kB file for downloads).
fn start_pp_nginx(topo: &Topology) -> PpNginx {
    let mut pp = PpNginx {
        children: Vec::new(),
        dirs: Vec::new(),
    };
    for (name, role, _) in REAL_SERVERS {
        let dir = topo.run_dir().join(format!("{name}-pp"));
        std::fs::create_dir_all(dir.join("www")).unwrap();
        let big: Vec<u8> = (0..BIG).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(dir.join("www/big.bin"), big).unwrap();
        let d = dir.display();
        let conf = format!(
            r#"worker_processes 1;
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    log_format pp '$proxy_protocol_addr $proxy_protocol_port $remote_addr "$request" $status';
    access_log {d}/access.log pp;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size 10m;
    keepalive_requests 100;
    server {{
        listen 0.0.0.0:{PP_PORT} proxy_protocol;
        default_type application/octet-stream;
        root {d}/www;
        location = /name {{ return 200 "{name}-pp\n"; }}
        location /up/ {{ dav_methods PUT; create_full_put_path on; }}
    }}
}}
"#
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let conf = dir.join("nginx.conf");
        let child = topo.spawn_in(
            role,
            &[
                "nginx",
                "-p",
                &dir.display().to_string(),
                "-c",
                &conf.display().to_string(),
                "-e",
                &dir.join("error.log").display().to_string(),
            ],
        );
        pp.children.push(child);
        let filter = format!("sport = :{PP_PORT}");
        let up = wait_for(Duration::from_secs(5), || {
            let out = topo.exec_in(role, &["ss", "-Hltn", &filter]);
            (!String::from_utf8_lossy(&out.stdout).trim().is_empty()).then_some(())
        });
        assert!(
            up.is_some(),
            "{name}: PP nginx did not listen:\n{}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        pp.dirs.push(dir);
    }
    pp
}

/// One keep-alive connection from the client: PUT a `BIG`-byte body, GET it
/// back, GET the server's big file. Prints `PUT <status>`, `GET <status>
/// <same>`, `BIG <status> <sha256>`, `REQS <n>` (requests on the one socket).
const KEEPALIVE_CLIENT: &str = r#"
import hashlib, http.client, os, sys
src, vip, port, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = http.client.HTTPConnection(vip, port, timeout=10, source_address=(src, 0))
body = os.urandom(int(sys.argv[5]))
c.request("PUT", "/up/" + name, body=body)
r = c.getresponse(); r.read()
print("PUT", r.status, flush=True)
sock = c.sock
c.request("GET", "/up/" + name)
r = c.getresponse(); got = r.read()
print("GET", r.status, got == body, flush=True)
c.request("GET", "/big.bin")
r = c.getresponse(); got = r.read()
print("BIG", r.status, hashlib.sha256(got).hexdigest(), flush=True)
print("SAME_SOCKET", c.sock is sock, flush=True)
"#;

/// A server that speaks first (like SMTP): on accept it reads the Proxy
/// Protocol v1 line (without waiting for any client data, which never comes)
/// and answers `HELLO <the line>`. Prints `ready` once listening.
const BANNER_SERVER: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8)
print("ready", flush=True)
for _ in range(int(sys.argv[2])):
    c, _ = s.accept(); c.settimeout(5)
    line = b""
    try:
        while not line.endswith(b"\r\n") and len(line) < 108:
            b = c.recv(1)
            if not b:
                break
            line += b
    except socket.timeout:
        pass
    c.sendall(b"HELLO " + line.strip() + b"\n")
    c.close()
"#;

/// Connects, sends nothing, prints what the server says first.
const BANNER_CLIENT: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=8, source_address=(sys.argv[1], 0))
print(c.recv(200).decode().strip(), c.getsockname()[1], flush=True)
"#;

fn sha256_of(p: &Path) -> String {
    let out = run_bounded(Command::new("sha256sum").arg(p), Duration::from_secs(10));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn access_logs(dirs: &[PathBuf]) -> Vec<String> {
    dirs.iter()
        .flat_map(|d| {
            std::fs::read_to_string(d.join("access.log"))
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn event(d: &netns::Dpvsd, name: &str) -> u64 {
    d.drop_counter(name) // any `name value` line of `dpvsctl stats`
}

#[test]
fn fullnat_proxy_protocol_v1_and_v2_reach_nginx() {
    let Some(_serial) = netns::begin("proxy-protocol") else {
        return;
    };
    let topo = Topology::new("proxy-protocol");
    let nginx = start_pp_nginx(&topo);
    let dirs = &nginx.dirs;
    let d = topo.start_dpvsd("");
    d.addr_add(&format!("{VIP}/32"), "dpdk0");
    let vs = format!("{VIP}:{PP_PORT}");
    d.ctl_ok(&["-A", "-t", &vs, "-s", "rr", "--proxy-protocol", "v1"]);
    for (_, _, rip) in REAL_SERVERS {
        d.ctl_ok(&["-a", "-t", &vs, "-r", &format!("{rip}:{PP_PORT}"), "-b"]);
    }
    d.ctl_ok(&["-P", "-t", &vs, "-z", LIP, "-F", "dpdk1"]);
    let listed = d.ctl_ok(&["-Ln"]);
    assert!(listed.contains(&format!("{vs} rr ppv1")), "{listed}");

    let url = format!("http://{vs}/name");
    let big_sha = sha256_of(&dirs[0].join("www/big.bin"));
    let mut conns = 0u64;
    for (version, round) in [("v1", 0), ("v2", 1)] {
        if version == "v2" {
            d.ctl_ok(&["-E", "-t", &vs, "-s", "rr", "--proxy-protocol", "v2"]);
            let listed = d.ctl_ok(&["-Ln"]);
            assert!(listed.contains(&format!("{vs} rr ppv2")), "{listed}");
        }
        // Short requests: both servers answer (rr), each through the header.
        let mut names = std::collections::BTreeSet::new();
        for _ in 0..4 {
            let body = topo
                .http_get_from_client(&url)
                .unwrap_or_else(|| panic!("{version}: no answer from {url}"));
            names.insert(body.trim().to_string());
            conns += 1;
        }
        assert_eq!(
            names,
            ["rs1-pp", "rs2-pp"].map(String::from).into_iter().collect(),
            "{version}"
        );
        // Larger transfers both ways on one keep-alive connection, twice (rr).
        for i in 0..2 {
            let name = format!("{version}-{round}-{i}.bin");
            let out = topo.exec_in(
                "cli",
                &[
                    "python3",
                    "-c",
                    KEEPALIVE_CLIENT,
                    CLIENT_IPS[0],
                    VIP,
                    &PP_PORT.to_string(),
                    &name,
                    &(200 * 1024).to_string(),
                ],
            );
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(
                out.status.success(),
                "{version}: keep-alive client failed:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let lines: Vec<&str> = text.lines().collect();
            assert!(
                lines[0] == "PUT 201" || lines[0] == "PUT 204",
                "{version}: {text}"
            );
            assert_eq!(
                lines[1], "GET 200 True",
                "{version}: upload came back intact"
            );
            assert_eq!(lines[2], format!("BIG 200 {big_sha}"), "{version}");
            assert_eq!(lines[3], "SAME_SOCKET True", "{version}: one connection");
            conns += 1;
        }
    }

    // nginx read the header: the client's address, not the LIP (the peer).
    let logs = access_logs(dirs);
    assert_eq!(logs.len() as u64, 4 * 2 + 2 * 3 * 2, "{logs:#?}");
    for l in &logs {
        let w: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(w[0], CLIENT_IPS[0], "proxy_protocol_addr: {l}");
        assert_ne!(w[0], LIP, "{l}");
        assert!(w[1].parse::<u16>().unwrap() >= 1024, "client port: {l}");
        assert_eq!(w[2], LIP, "the TCP peer is the LIP: {l}");
    }
    assert!(
        logs.iter().any(|l| l.contains("\"PUT /up/")),
        "uploads logged: {logs:#?}"
    );
    assert_eq!(
        event(&d, "proxy_protocol_sent"),
        conns,
        "one header per connection"
    );
    assert_eq!(event(&d, "toa_inserted"), 0, "no TOA with Proxy Protocol");

    // A server that speaks first gets the header right after the handshake
    // (it rides on the handshake's ACK): the client never sends a byte.
    let (_, role, rip) = REAL_SERVERS[0];
    let banner_port = "2525";
    let mut srv = topo.spawn_in(
        role,
        &[
            "timeout",
            "20",
            "python3",
            "-c",
            BANNER_SERVER,
            banner_port,
            "1",
        ],
    );
    let mut line = String::new();
    {
        use std::io::BufRead;
        let mut out = std::io::BufReader::new(srv.stdout.take().expect("stdout"));
        out.read_line(&mut line).expect("banner server starts");
    }
    assert_eq!(line.trim(), "ready");
    let bvs = format!("{VIP}:{banner_port}");
    d.ctl_ok(&["-A", "-t", &bvs, "-s", "rr", "--proxy-protocol", "v1"]);
    d.ctl_ok(&[
        "-a",
        "-t",
        &bvs,
        "-r",
        &format!("{rip}:{banner_port}"),
        "-b",
    ]);
    d.ctl_ok(&["-P", "-t", &bvs, "-z", LIP, "-F", "dpdk1"]);
    let out = topo.exec_in(
        "cli",
        &[
            "python3",
            "-c",
            BANNER_CLIENT,
            CLIENT_IPS[0],
            VIP,
            banner_port,
        ],
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let _ = srv.wait();
    let w: Vec<&str> = said.split_whitespace().collect();
    assert_eq!(
        w.len(),
        8,
        "server-first: {said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cport = w[7];
    assert_eq!(
        w[..7].join(" "),
        format!(
            "HELLO PROXY TCP4 {} {VIP} {cport} {banner_port}",
            CLIENT_IPS[0]
        ),
        "the header as the banner server read it"
    );
    conns += 1;
    assert_eq!(event(&d, "proxy_protocol_sent"), conns);

    // Turned off: nginx gets a bare request and refuses it (the header matters).
    d.ctl_ok(&["-E", "-t", &vs, "-s", "rr", "--proxy-protocol", "none"]);
    let listed = d.ctl_ok(&["-Ln"]);
    assert!(listed.contains(&format!("{vs} rr\n")), "{listed}");
    assert_eq!(topo.http_get_from_client(&url), None);
    assert_eq!(event(&d, "proxy_protocol_sent"), conns);
}
