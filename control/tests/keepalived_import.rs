//! `dpvsctl import keepalived` against an in-process dpvsd (tests/inproc: a
//! FakeBackend on a temporary unix socket): a keepalived.conf imports as one
//! change, lists as `ipvsadm -Ln` would after keepalived applied it, and its
//! checks run against real listeners on loopback; a bad file changes nothing.

mod inproc;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use control::ctl::{run_args, CtlError};
use inproc::Daemon;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `dpvsctl import keepalived FILE [--dry-run]` (temporary paths have no
/// blanks).
async fn import(d: &Daemon, file: &Path, dry_run: bool) -> Result<String, CtlError> {
    let dry = if dry_run { " --dry-run" } else { "" };
    d.ctl(&format!("import keepalived {}{dry}", file.display()))
        .await
}

/// Whether the dataplane has this real server inhibited (down).
fn inhibited(d: &Daemon, rip: &str, port: u16) -> bool {
    let rip: IpAddr = rip.parse().unwrap();
    d.backend.current().is_some_and(|c| {
        c.services
            .iter()
            .flat_map(|s| &s.dests)
            .any(|x| x.addr == rip && x.port == port && x.inhibited)
    })
}

/// Polls `f` every 50 ms for up to 10 s.
async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// An HTTP server on `addr` answering every request with 200 and `body`.
async fn http_server(addr: &str, body: &'static str) -> u16 {
    let l = tokio::net::TcpListener::bind((addr, 0)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let mut req = Vec::new();
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

/// A port on `addr` that nothing listens on.
async fn closed_port(addr: &str) -> u16 {
    let l = tokio::net::TcpListener::bind((addr, 0)).await.unwrap();
    l.local_addr().unwrap().port()
}

fn md5_hex(s: &str) -> String {
    use md5::Digest;
    md5::Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A dest line of `ipvsadm -Ln`: `"  -> %-28s %-7s %-6d %-10u %-10u"`.
fn rs(addr_port: &str, fwd: &str, weight: u32) -> String {
    format!("  -> {addr_port:<28} {fwd:<7} {weight:<6} 0          0         \n")
}

#[tokio::test]
async fn a_keepalived_conf_imports_lists_like_ipvsadm_and_its_checks_run() {
    let d = Daemon::start().await;
    // Real servers on loopback: one that accepts, two HTTP servers, two
    // closed ports.
    let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_port = up.local_addr().unwrap().port();
    let http = http_server("127.0.0.2", "healthy\n").await;
    let closed = closed_port("127.0.0.3").await;
    let gone = closed_port("127.0.0.4").await;
    let wrong = http_server("127.0.0.5", "healthy\n").await;
    let dead = closed_port("127.0.0.7").await;
    let digest = md5_hex("healthy\n");

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lvs.d")).unwrap();
    let main = dir.path().join("keepalived.conf");
    std::fs::write(
        &main,
        format!(
            "\
! Configuration File for keepalived
global_defs {{
   router_id LVS_DEVEL
}}

vrrp_instance VI_1 {{
    state MASTER
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {{
        10.0.0.100
    }}
}}

virtual_server 10.0.0.100 80 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP

    real_server 127.0.0.1 {up_port} {{
        weight 2
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}
    real_server 127.0.0.2 {http} {{
        weight 4
        HTTP_GET {{
            url {{
                path /health
                status_code 200
                digest {digest}
            }}
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }}
    }}
    real_server 127.0.0.3 {closed} {{   # nothing listens: inhibited
        weight 3
        inhibit_on_failure
        TCP_CHECK {{
            connect_timeout 1
            retry 0
        }}
    }}
    real_server 127.0.0.4 {gone} {{     # nothing listens: removed
        TCP_CHECK {{
            connect_timeout 1
            retry 0
        }}
    }}
    real_server 127.0.0.5 {wrong} {{    # another body: inhibited
        weight 5
        inhibit_on_failure
        HTTP_GET {{
            url {{
                path /health
                digest 00000000000000000000000000000000
            }}
            connect_timeout 1
            retry 0
        }}
    }}
}}

include lvs.d/*.conf
"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("lvs.d/https.conf"),
        "\
virtual_server 10.0.0.101 443 {
    lb_algo sh
    lb_kind DR
    protocol TCP
    persistence_timeout
    persistence_granularity 255.255.255.0
    real_server 192.168.0.11 443 {
        weight 1
    }
    real_server 192.168.0.12 443 {
        weight 2
    }
}
",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("lvs.d/sorry.conf"),
        format!(
            "\
virtual_server 10.0.0.103 80 {{
    lb_algo rr
    lb_kind NAT
    protocol TCP
    sorry_server 127.0.0.6 8080
    real_server 127.0.0.7 {dead} {{
        TCP_CHECK {{
            connect_timeout 1
            retry 0
        }}
    }}
}}
"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("lvs.d/dns.conf"),
        "\
virtual_server 10.0.0.102 53 {
    lb_algo rr
    lb_kind DR
    real_server 192.168.0.13 53 {
    }
}
",
    )
    .unwrap();

    let applied = d.backend.applied().len();
    let out = import(&d, &main, false).await.unwrap();
    let m = main.display();
    let dns = dir.path().join("lvs.d/dns.conf");
    let dns = dns.display();
    assert_eq!(
        out,
        format!(
            "\
# {m}:2: global_defs: keepalived's own process settings, not imported
# {m}:6: vrrp_instance VI_1: handled by keepalived's VRRP, not imported
# {dns}:1: virtual_server 10.0.0.102 53: no protocol, UDP (as keepalived)
# imported {m}: 4 services, 9 real servers, 0 local addresses
"
        )
    );
    // One change: the first configuration applied after it has the whole
    // file (the checks' verdicts may follow it at once).
    let first = &d.backend.applied()[applied];
    assert_eq!(
        (
            first.services.len(),
            first.services.iter().map(|s| s.dests.len()).sum::<usize>()
        ),
        (4, 9)
    );

    // The checks run: the closed ports and the wrong digest go down within
    // a few seconds (delay_loop 1, connect_timeout 1, retry 0).
    for (rip, port) in [
        ("127.0.0.3", closed),
        ("127.0.0.4", gone),
        ("127.0.0.5", wrong),
        ("127.0.0.7", dead),
    ] {
        assert!(
            eventually(|| inhibited(&d, rip, port)).await,
            "{rip}:{port} never went down"
        );
    }
    // The live ones stay up through a few more probes.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!inhibited(&d, "127.0.0.1", up_port));
    assert!(!inhibited(&d, "127.0.0.2", http));

    // What ipvsadm -Ln shows after keepalived applied the file and its
    // checkers ran: a failed real server with inhibit_on_failure at weight
    // 0, one without it removed; the sorry server of a service without a
    // live real server in their place; persistence_timeout without a value
    // is 360 s; no protocol is UDP.
    let want = format!(
        "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.100:80 rr
{}{}{}{}TCP  10.0.0.101:443 sh persistent 360 mask 255.255.255.0
{}{}TCP  10.0.0.103:80 rr
{}UDP  10.0.0.102:53 rr
{}",
        rs(&format!("127.0.0.1:{up_port}"), "Masq", 2),
        rs(&format!("127.0.0.2:{http}"), "Masq", 4),
        rs(&format!("127.0.0.3:{closed}"), "Masq", 0),
        rs(&format!("127.0.0.5:{wrong}"), "Masq", 0),
        rs("192.168.0.11:443", "Route", 1),
        rs("192.168.0.12:443", "Route", 2),
        rs("127.0.0.6:8080", "Masq", 1),
        rs("192.168.0.13:53", "Route", 1),
    );
    assert_eq!(d.ok("-Ln").await, want);

    // keepalived's retry 1 is two failures in a row; delay_loop the interval.
    let saved = d.ok("-S -n").await;
    assert!(
        saved.contains(&format!(
            "-a -t 10.0.0.100:80 -r 127.0.0.2:{http} -m -w 4 --check http --check-interval 1 \
             --check-timeout 1 --check-retries 2 --check-path /health --check-status 200 \
             --check-digest {digest} --on-failure remove\n"
        )),
        "{saved}"
    );
    assert!(saved.contains("-A -t 10.0.0.103:80 -s rr --sorry-server 127.0.0.6:8080\n"));
    // A server that comes back is restored.
    let _back = tokio::net::TcpListener::bind(("127.0.0.3", closed))
        .await
        .unwrap();
    assert!(
        eventually(|| !inhibited(&d, "127.0.0.3", closed)).await,
        "never restored"
    );
    drop(up);
    d.stop().await;
}

#[tokio::test]
async fn a_file_with_an_unknown_keyword_fails_with_its_line_and_applies_nothing() {
    let d = Daemon::start().await;
    d.ok("-A -t 10.0.0.50:80 -s rr").await;
    let applied = d.backend.applied().len();
    let before = d.ok("-Ln").await;

    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("keepalived.conf");
    let inc = dir.path().join("web.conf");
    std::fs::write(
        &main,
        "\
virtual_server 10.0.0.100 80 {
    protocol TCP
    real_server 192.168.0.11 80 {
    }
}
include web.conf
",
    )
    .unwrap();
    std::fs::write(
        &inc,
        "\
virtual_server 10.0.0.101 80 {
    protocol TCP
    real_server 192.168.0.12 80 {
        weight 1
        frobnicate yes
    }
}
",
    )
    .unwrap();
    let e = import(&d, &main, false).await.unwrap_err();
    assert_eq!(
        (e.code, e.message),
        (
            1,
            format!(
                "{}:5: unknown keyword 'frobnicate' in real_server",
                inc.display()
            )
        )
    );
    // A refusal: also with its line.
    std::fs::write(
        &inc,
        "\
virtual_server 10.0.0.101 80 {
    protocol TCP
    omega
}
",
    )
    .unwrap();
    let e = import(&d, &main, false).await.unwrap_err();
    assert_eq!(
        e.message,
        format!(
            "{}:3: omega: notify scripts at shutdown are not supported",
            inc.display()
        )
    );
    // dpvsd refusing one change (a port it does not have): the line of that
    // change, and none of the changes before it stays.
    std::fs::write(
        &inc,
        "\
virtual_server 10.0.0.101 80 {
    protocol TCP
    lb_kind FNAT
    laddr_group_name lips
    real_server 192.168.0.12 80 {
    }
}
local_address_group lips {
    192.168.0.200 dpdk1
    192.168.0.201 dpdk7
}
",
    )
    .unwrap();
    let e = import(&d, &main, false).await.unwrap_err();
    assert_eq!(
        (e.code, e.message),
        (
            1,
            format!("{}:10: port: unknown port \"dpdk7\"", inc.display())
        )
    );
    // A service that already runs: the virtual_server line.
    std::fs::write(
        &inc,
        "\
virtual_server 10.0.0.50 80 {
    protocol TCP
    real_server 192.168.0.12 80 {
    }
}
",
    )
    .unwrap();
    let e = import(&d, &main, false).await.unwrap_err();
    assert_eq!(
        e.message,
        format!(
            "{}:1: service already exists: TCP 10.0.0.50:80",
            inc.display()
        )
    );
    // A file that is not there.
    let e = import(&d, &dir.path().join("none.conf"), false)
        .await
        .unwrap_err();
    assert!(
        e.message
            .ends_with("none.conf: No such file or directory (os error 2)"),
        "{}",
        e.message
    );

    assert_eq!(d.backend.applied().len(), applied, "nothing applied");
    assert_eq!(d.ok("-Ln").await, before);
    d.stop().await;
}

#[tokio::test]
async fn dry_run_prints_restore_lines_and_applies_nothing() {
    let d = Daemon::start().await;
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("keepalived.conf");
    std::fs::write(
        &main,
        "\
vrrp_sync_group VG_1 {
    group {
        VI_1
    }
}
virtual_server 10.0.0.100 80 {
    protocol TCP
    lb_algo wrr
    lb_kind FNAT
    laddr_group_name lips
    delay_loop 5
    real_server 127.0.0.11 8080 {
        weight 3
        TCP_CHECK {
            connect_timeout 2
            retry 2
        }
    }
    real_server 127.0.0.12 8080 {
        MISC_CHECK {
            misc_path \"/usr/bin/test -e /run/rs2.ok\"
        }
    }
}
local_address_group lips {
    192.168.0.200-201 dpdk1
}
",
    )
    .unwrap();
    let applied = d.backend.applied().len();
    let out = import(&d, &main, true).await.unwrap();
    let want = format!(
        "\
# {m}:1: vrrp_sync_group VG_1: handled by keepalived's VRRP, not imported
-A -t 10.0.0.100:80 -s wrr
-a -t 10.0.0.100:80 -r 127.0.0.11:8080 -b -w 3 --check tcp --check-timeout 2 --on-failure remove
-a -t 10.0.0.100:80 -r 127.0.0.12:8080 -b -w 1 --check misc --check-timeout 5 --check-retries 1 --on-failure remove --check-command \"/usr/bin/test -e /run/rs2.ok\"
-P -t 10.0.0.100:80 -z 192.168.0.200 -F dpdk1
-P -t 10.0.0.100:80 -z 192.168.0.201 -F dpdk1
",
        m = main.display()
    );
    assert_eq!(out, want);
    assert_eq!(
        d.backend.applied().len(),
        applied,
        "a dry run applies nothing"
    );
    assert!(!d.ok("-Ln").await.contains("10.0.0.100"));

    // The dry run's output is restore input: -R of it is the import.
    let mut restored = String::new();
    control::ctl::restore(&out, &d.server.as_str().into(), &mut restored)
        .await
        .unwrap();
    let saved = d.ok("-S -n").await;
    let rules: String = want.lines().skip(1).map(|l| format!("{l}\n")).collect();
    assert_eq!(saved, rules);

    // No daemon is needed for a dry run.
    let mut out2 = String::new();
    let argv: Vec<String> = [
        "--server",
        "unix:/nonexistent/dpvs.sock",
        "import",
        "keepalived",
        main.to_str().unwrap(),
        "-n",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    run_args(&argv, None, &mut out2).await.unwrap();
    assert_eq!(out2, want);
    d.stop().await;
}

/// `--replace`: the file's services become the whole table in one Batch (a
/// service the file does not have goes), and a real server its check found
/// down stays down through it.
#[tokio::test]
async fn import_replace_makes_the_file_the_table_and_keeps_what_checks_found() {
    let d = Daemon::start().await;
    d.ok("-A -t 10.0.0.50:80 -s rr").await;
    let closed = closed_port("127.0.0.3").await;
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("keepalived.conf");
    let conf = |weight: u32| {
        format!(
            "virtual_server 10.0.0.100 80 {{\n protocol TCP\n lb_algo rr\n lb_kind NAT\n \
             delay_loop 1\n real_server 127.0.0.3 {closed} {{\n  weight {weight}\n  \
             inhibit_on_failure\n  TCP_CHECK {{\n   connect_timeout 1\n   retry 0\n  }}\n \
             }}\n}}\n"
        )
    };
    std::fs::write(&main, conf(2)).unwrap();
    import(&d, &main, false).await.unwrap();
    assert!(
        eventually(|| inhibited(&d, "127.0.0.3", closed)).await,
        "never inhibited"
    );
    // Again without --replace: refused, as -A of an existing service is.
    let e = import(&d, &main, false).await.unwrap_err();
    assert!(
        e.message.contains("service already exists"),
        "{}",
        e.message
    );

    std::fs::write(&main, conf(5)).unwrap();
    let dry = d
        .ok(&format!(
            "import keepalived {} --replace --dry-run",
            main.display()
        ))
        .await;
    assert!(dry.starts_with("-C\n-A -t 10.0.0.100:80 -s rr\n"), "{dry}");
    let applied = d.backend.applied().len();
    d.ok(&format!("import keepalived {} --replace", main.display()))
        .await;
    assert_eq!(d.backend.applied().len(), applied + 1, "one snapshot");
    let saved = d.ok("-S -n").await;
    assert_eq!(
        saved,
        format!(
            "-A -t 10.0.0.100:80 -s rr\n-a -t 10.0.0.100:80 -r 127.0.0.3:{closed} -m -w 5 \
             --check tcp --check-interval 1 --check-timeout 1 --check-retries 1\n"
        )
    );
    assert!(
        inhibited(&d, "127.0.0.3", closed),
        "the check's finding is kept, not reset by the replace"
    );
    d.stop().await;
}
