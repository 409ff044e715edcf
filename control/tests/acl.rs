//! Access lists (DPVS's blacklist and whitelist) from dpvsctl to the
//! dataplane's description, in one process (`inproc::Daemon`): the `-U -V -B`
//! and `-O -Y -W` commands, DPVS's listing layout, `--json`, errors and exit
//! codes, `-S`/`-R`, the state file, dpvs.toml with `apply -f`.

mod inproc;

use std::net::IpAddr;

use dataplane::{AclDrops, AclSpec, Proto, ServiceKey, ServiceStats, Stats};
use inproc::{Daemon, CONFIG};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn key(proto: Proto, vip: &str, vport: u16) -> ServiceKey {
    ServiceKey {
        proto,
        vip: ip(vip),
        vport,
    }
}

/// What the dataplane was last given for the services' access lists.
fn acl_in_force(d: &Daemon) -> Vec<(ServiceKey, AclSpec)> {
    d.backend.current_ext().map(|e| e.acl).unwrap_or_default()
}

#[tokio::test]
async fn entries_reach_the_dataplane_and_list_as_dpvs_does() {
    let d = Daemon::start().await;
    d.ok("-A -t 10.0.0.100:80 -s rr").await;
    d.ok("-A -u [2001:db8::100]:53 -s rr").await;
    d.ok("-U -t 10.0.0.100:80 -k 198.51.100.0/24").await;
    d.ok("--add-blklst --tcp-service 10.0.0.100:80 --blklst 192.0.2.7")
        .await;
    d.ok("-O -t 10.0.0.100:80 -2 10.0.0.0/8").await;
    d.ok("-U -u [2001:db8::100]:53 -k 2001:db8:bad::/48").await;

    let tcp = key(Proto::Tcp, "10.0.0.100", 80);
    let udp = key(Proto::Udp, "2001:db8::100", 53);
    assert_eq!(
        acl_in_force(&d),
        vec![
            (
                tcp,
                AclSpec {
                    blacklist: vec![(ip("192.0.2.7"), 32), (ip("198.51.100.0"), 24)],
                    whitelist: vec![(ip("10.0.0.0"), 8)],
                }
            ),
            (
                udp,
                AclSpec {
                    blacklist: vec![(ip("2001:db8:bad::"), 48)],
                    whitelist: vec![],
                }
            ),
        ]
    );

    // DPVS's `%-8s %-30s %-30s`, trailing blanks and all.
    assert_eq!(
        d.ok("-B").await,
        "PROTO    VIP:VPORT                      BLACKLIST                     \n\
         TCP      10.0.0.100:80                  192.0.2.7                     \n\
         TCP      10.0.0.100:80                  198.51.100.0/24               \n\
         UDP      [2001:db8::100]:53             2001:db8:bad::/48             \n"
    );
    assert_eq!(
        d.ok("-W -n").await,
        "PROTO    VIP:VPORT                      WHITELIST                     \n\
         TCP      10.0.0.100:80                  10.0.0.0/8                    \n"
    );
    assert_eq!(
        d.ok("--get-blklst -u [2001:db8::100]:53").await,
        "PROTO    VIP:VPORT                      BLACKLIST                     \n\
         UDP      [2001:db8::100]:53             2001:db8:bad::/48             \n"
    );
    let j: serde_json::Value = serde_json::from_str(&d.ok("-W --json").await).unwrap();
    assert_eq!(
        j,
        serde_json::json!({"whitelist": [
            {"protocol": "TCP", "vip": "10.0.0.100", "vport": 80, "addr": "10.0.0.0/8"}
        ]})
    );

    // Deleted as added; the listing follows; the last entry gone, nothing
    // is left for the dataplane to check.
    d.ok("-V -t 10.0.0.100:80 -k 198.51.100.0/24").await;
    d.ok("--del-whtlst -t 10.0.0.100:80 --whtlst 10.0.0.0/8")
        .await;
    assert_eq!(
        d.ok("-B -t 10.0.0.100:80").await,
        "PROTO    VIP:VPORT                      BLACKLIST                     \n\
         TCP      10.0.0.100:80                  192.0.2.7                     \n"
    );
    assert_eq!(
        d.ok("-W").await,
        "PROTO    VIP:VPORT                      WHITELIST                     \n"
    );
    d.ok("-V -t 10.0.0.100:80 -k 192.0.2.7").await;
    d.ok("-D -u [2001:db8::100]:53").await;
    assert_eq!(acl_in_force(&d), vec![]);
    d.stop().await;
}

#[tokio::test]
async fn bad_entries_are_refused_with_the_problem_named_and_change_nothing() {
    let d = Daemon::start().await;
    d.ok("-A -t 10.0.0.100:80 -s rr").await;
    d.ok("-U -t 10.0.0.100:80 -k 10.1.0.0/16").await;
    let applied = d.backend.applied().len();
    let cases: &[(&str, i32, &str)] = &[
        // The command line: exit 2, nothing sent.
        ("-U -t 10.0.0.100:80 -k 10.1.2.3/16", 2, "illegal blacklist entry: invalid prefix \"10.1.2.3/16\": host bits set (the network is 10.1.0.0/16)"),
        ("-O -t 10.0.0.100:80 -2 10.1.0.0/33", 2, "illegal whitelist entry: invalid prefix length /33 in \"10.1.0.0/33\" (at most /32)"),
        ("-U -t 10.0.0.100:80 -k 10.1.0", 2, "illegal blacklist entry: invalid address \"10.1.0\""),
        ("-U -t 10.0.0.100:80 -k ipset:bad", 2, "illegal blacklist entry \"ipset:bad\": ipset entries are not supported (give addresses or prefixes, ADDR|CIDR)"),
        ("-U -t 10.0.0.100:80", 2, "the '--add-blklst' command needs an address: -k ADDR|CIDR"),
        ("-U -t 10.0.0.100:80 -k 10.9.0.0/16 -s rr", 2, "illegal '--scheduler' option with the '--add-blklst' command"),
        // dpvsd: exit 1, nothing changed.
        ("-U -t 10.0.0.100:81 -k 10.9.0.0/16", 1, "no such service TCP 10.0.0.100:81"),
        ("-O -t 10.0.0.100:80 -2 2001:db8::/32", 1, "addr: 2001:db8::/32 is IPv6, the service TCP 10.0.0.100:80 is IPv4: its clients are of its family"),
        ("-U -t 10.0.0.100:80 -k 10.1.0.0/16", 1, "blacklist entry 10.1.0.0/16 already exists in TCP 10.0.0.100:80"),
        ("-V -t 10.0.0.100:80 -k 10.1.2.0/24", 1, "no blacklist entry 10.1.2.0/24 in TCP 10.0.0.100:80"),
        ("-Y -t 10.0.0.100:80 -2 10.1.0.0/16", 1, "no whitelist entry 10.1.0.0/16 in TCP 10.0.0.100:80"),
        ("-B -t 10.0.0.100:81", 1, "no such service TCP 10.0.0.100:81"),
    ];
    d.refuses(cases).await;
    assert_eq!(d.backend.applied().len(), applied);
    assert_eq!(acl_in_force(&d).len(), 1);
    d.stop().await;
}

#[tokio::test]
async fn save_restore_and_the_state_file_carry_the_lists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dpvs.state");
    let d = Daemon::start_with_state(Some(path.clone())).await;
    d.ok("-A -t 10.0.0.100:80 -s rr").await;
    d.ok("-a -t 10.0.0.100:80 -r 192.168.0.11 -m").await;
    d.ok("-U -t 10.0.0.100:80 -k 198.51.100.0/24").await;
    d.ok("-U -t 10.0.0.100:80 -k 192.0.2.7").await;
    d.ok("-O -t 10.0.0.100:80 -2 10.0.0.0/8").await;
    let saved = d.ok("-S -n").await;
    assert_eq!(
        saved,
        "-A -t 10.0.0.100:80 -s rr\n\
         -a -t 10.0.0.100:80 -r 192.168.0.11:80 -m -w 1\n\
         -U -t 10.0.0.100:80 -k 192.0.2.7\n\
         -U -t 10.0.0.100:80 -k 198.51.100.0/24\n\
         -O -t 10.0.0.100:80 -2 10.0.0.0/8\n"
    );
    let state = std::fs::read_to_string(&path).unwrap();
    assert!(state.ends_with(&saved), "{state}");

    // -S | -C | -R: the same lists, in force again as one change.
    d.ok("-C").await;
    assert_eq!(acl_in_force(&d), vec![]);
    let applied = d.backend.applied().len();
    d.restore(&saved).await.unwrap();
    assert_eq!(d.backend.applied().len(), applied + 1);
    assert_eq!(d.ok("-S -n").await, saved);
    assert_eq!(acl_in_force(&d)[0].1.blacklist.len(), 2);
    // A bad entry in restore input names its line and applies nothing.
    let e = d
        .restore("-A -t 10.0.0.101:80 -s rr\n-O -t 10.0.0.101:80 -2 2001:db8::/32\n")
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            1,
            "line 2: addr: 2001:db8::/32 is IPv6, the service TCP 10.0.0.101:80 is IPv4: \
             its clients are of its family"
        )
    );
    assert_eq!(d.ok("-S -n").await, saved);
    d.stop().await;

    // A restarted dpvsd reads the lists back from its state file.
    let state = std::fs::read_to_string(&path).unwrap();
    let store = control::state::load(&["dpdk0".into(), "dpdk1".into()], &state).unwrap();
    assert_eq!(control::state::render(&store), state);
    assert_eq!(store.ext().acl[0].1.whitelist, vec![(ip("10.0.0.0"), 8)]);
}

#[tokio::test]
async fn dpvs_toml_lists_apply_as_a_difference() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start().await;
    let file = dir.path().join("dpvs.toml");
    let with = |lists: &str| {
        format!(
            "{CONFIG}
[[service]]
proto = \"tcp\"
vip = \"10.0.0.100\"
vport = 80
scheduler = \"rr\"
{lists}
"
        )
    };
    std::fs::write(
        &file,
        with("blacklist = [\"198.51.100.0/24\", \"192.0.2.7\"]"),
    )
    .unwrap();
    let apply = format!("apply -f {}", file.display());
    let out = d.ok(&apply).await;
    assert!(
        out.contains("+ -U -t 10.0.0.100:80 -k 192.0.2.7\n")
            && out.contains("+ -U -t 10.0.0.100:80 -k 198.51.100.0/24\n"),
        "{out}"
    );
    // One entry goes, a whitelist comes: only that is the difference.
    std::fs::write(
        &file,
        with("blacklist = [\"192.0.2.7\"]\nwhitelist = [\"10.0.0.0/8\"]"),
    )
    .unwrap();
    assert_eq!(
        d.ok(&format!("{apply} --dry-run")).await,
        "- -U -t 10.0.0.100:80 -k 198.51.100.0/24\n+ -O -t 10.0.0.100:80 -2 10.0.0.0/8\n"
    );
    d.ok(&apply).await;
    assert_eq!(
        acl_in_force(&d),
        vec![(
            key(Proto::Tcp, "10.0.0.100", 80),
            AclSpec {
                blacklist: vec![(ip("192.0.2.7"), 32)],
                whitelist: vec![(ip("10.0.0.0"), 8)],
            }
        )]
    );
    // A bad entry in the file: refused, naming the key, nothing changed.
    std::fs::write(&file, with("whitelist = [\"10.0.0.1/8\"]")).unwrap();
    let e = d.err(&apply).await;
    assert_eq!(
        e.message,
        format!(
            "{}: service[0].whitelist[0]: invalid prefix \"10.0.0.1/8\": host bits set \
             (the network is 10.0.0.0/8)",
            file.display()
        )
    );
    assert_eq!(acl_in_force(&d)[0].1.blacklist.len(), 1);
    d.stop().await;
}

#[tokio::test]
async fn the_drops_of_each_service_show_in_json() {
    let d = Daemon::start().await;
    d.ok("-A -t 10.0.0.100:80 -s rr").await;
    d.ok("-U -t 10.0.0.100:80 -k 192.0.2.7").await;
    d.backend.set_stats(Stats {
        services: vec![ServiceStats {
            key: key(Proto::Tcp, "10.0.0.100", 80),
            traffic: Default::default(),
            dests: vec![],
            acl_drops: AclDrops {
                blacklist: 17,
                whitelist: 3,
            },
            conn_limit_drops: 0,
        }],
        ..Default::default()
    });
    let j: serde_json::Value = serde_json::from_str(&d.ok("-Ln --json").await).unwrap();
    let s = &j["services"][0];
    assert_eq!(s["blacklist"], serde_json::json!(["192.0.2.7"]));
    assert_eq!(s["whitelist"], serde_json::json!([]));
    assert_eq!(
        (s["blacklist_drops"].as_u64(), s["whitelist_drops"].as_u64()),
        (Some(17), Some(3))
    );
    // -Z leaves them (they are drop counters, like `dpvsctl stats`'s).
    d.ok("-Z").await;
    let j: serde_json::Value = serde_json::from_str(&d.ok("-Ln --json").await).unwrap();
    assert_eq!(j["services"][0]["blacklist_drops"].as_u64(), Some(17));
    d.stop().await;
}

/// DPVS keepalived's deny_address_group / allow_address_group import as the
/// lists, and `--dry-run` prints what `-S` shows once they are in.
#[tokio::test]
async fn keepalived_address_groups_import_as_access_lists() {
    let d = Daemon::start().await;
    let file = d.dir.path().join("keepalived.conf");
    std::fs::write(
        &file,
        "virtual_server 10.0.0.100 80 {
    protocol TCP
    lb_algo rr
    lb_kind NAT
    daddr_group_name bad
    waddr_group_name good
    real_server 192.168.0.11 80 {
    }
}
deny_address_group bad {
    192.0.2.7
    198.51.100.0/24
}
allow_address_group good {
    10.0.0.0/8
}
",
    )
    .unwrap();
    let import = format!("import keepalived {}", file.display());
    let dry = d.ok(&format!("{import} --dry-run")).await;
    assert!(d.backend.current_ext().is_none(), "a dry run sends nothing");
    d.ok(&import).await;
    assert_eq!(d.ok("-S -n").await, dry);
    assert_eq!(
        d.ok("-B").await,
        "PROTO    VIP:VPORT                      BLACKLIST                     \n\
         TCP      10.0.0.100:80                  192.0.2.7                     \n\
         TCP      10.0.0.100:80                  198.51.100.0/24               \n"
    );
    assert_eq!(acl_in_force(&d)[0].1.whitelist, vec![(ip("10.0.0.0"), 8)]);
    d.stop().await;
}
