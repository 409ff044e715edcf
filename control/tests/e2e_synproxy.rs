//! The SYN proxy end to end (DPVS `-j enable`): real clients' TCP through a
//! NAT and a FULLNAT service whose SYNs the director answers with cookies,
//! and a flood of spoofed SYNs and guessed ACKs that leaves no connection.

mod netns;

use netns::{all_servers, answers, Dpvsd, Topology, HTTP_PORT, REAL_SERVERS, VIP};

const LIP: &str = "192.168.0.200";

/// VIP:80 behind the SYN proxy, both real servers in `flag`'s mode.
fn synproxy_service(d: &Dpvsd, flag: &str) -> String {
    d.addr_add(&format!("{VIP}/32"), "dpdk0");
    let vs = format!("{VIP}:{HTTP_PORT}");
    d.ctl_ok(&["-A", "-t", &vs, "-s", "rr", "-j", "enable"]);
    for (_, _, rip) in REAL_SERVERS {
        d.ctl_ok(&["-a", "-t", &vs, "-r", &format!("{rip}:{HTTP_PORT}"), flag]);
    }
    vs
}

/// Sends `n` TCP segments with flags `flags` from random addresses of
/// 198.18.0.0/16 to VIP:port out of the client's c0 (AF_PACKET, valid
/// checksums), paced to what an af_packet port's ring takes: a spoofed
/// flood.
const FLOOD: &str = r#"
import random, socket, struct, sys, time
dmac, smac = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])
vip, port, n, flags = socket.inet_aton(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
rnd = random.Random(7)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("c0", 0))
for i in range(n):
    src = bytes([198, 18, rnd.randrange(256), rnd.randrange(1, 255)])
    tcp = struct.pack("!HHIIBBHHH", rnd.randrange(1024, 65535), port, rnd.getrandbits(32),
                      rnd.getrandbits(32) if flags & 0x10 else 0, 5 << 4, flags, 64240, 0, 0)
    c = csum(src + vip + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), i & 0xffff, 0x4000, 64, 6, 0, src, vip)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    s.send(dmac + smac + b"\x08\x00" + ip + tcp)
    if i % 32 == 31:
        time.sleep(0.002)  # paced: the af_packet port's ring holds a burst, not a flood
"#;

/// Starts the flood in the background; wait for the child.
fn flood(topo: &Topology, n: usize, flags: u8) -> std::process::Child {
    let hex = |m: [u8; 6]| m.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let dmac = hex(topo.director_mac_seen_by_client(VIP));
    let smac = hex(topo.mac_of("cli", "c0"));
    let (port, n, flags) = (HTTP_PORT.to_string(), n.to_string(), flags.to_string());
    topo.spawn_in(
        "cli",
        &["python3", "-c", FLOOD, &dmac, &smac, VIP, &port, &n, &flags],
    )
}

/// Waits for a flood to end (bounded).
fn finished(mut child: std::process::Child) {
    let status = netns::wait_for(std::time::Duration::from_secs(30), || {
        child.try_wait().ok().flatten()
    })
    .expect("the flood ends by itself");
    assert!(status.success(), "the flood sender failed");
}

#[test]
fn syn_proxy_serves_nat_and_a_spoofed_flood_leaves_no_connection() {
    let Some(_serial) = netns::begin("synproxy") else {
        return;
    };
    let topo = Topology::new("synproxy");
    let d = topo.start_dpvsd("");
    let vs = synproxy_service(&d, "-m");
    assert!(
        d.ctl_ok(&["-Ln"])
            .contains(&format!("TCP  {vs} rr synproxy")),
        "-Ln shows the SYN proxy"
    );
    assert_eq!(answers(&topo, 6), all_servers(), "both servers answer");
    assert!(all_servers().contains(&netns::big_upload(&topo)));
    let opened = d.drop_counter("synproxy_opened");
    assert!(
        opened >= 7,
        "every connection went through the proxy: {opened}"
    );

    // 3000 spoofed SYNs, while a real client keeps asking: every request
    // answered, every SYN answered with a cookie, none kept.
    let conns_before = d.stats()[0].total.conns;
    let syn_acks = d.drop_counter("synproxy_syn_ack");
    let f = flood(&topo, 3000, 0x02);
    let mut during = 0;
    for _ in 0..20 {
        assert_eq!(answers(&topo, 1).len(), 1);
        during += 1;
    }
    finished(f);
    let answered = netns::wait_for(std::time::Duration::from_secs(5), || {
        let n = d.drop_counter("synproxy_syn_ack") - syn_acks;
        (n >= 3000).then_some(n)
    });
    assert!(
        answered.is_some(),
        "3000 SYN-ACKs sent, {} seen",
        d.drop_counter("synproxy_syn_ack") - syn_acks
    );
    // 500 guessed ACKs: refused, counted.
    let bad = d.drop_counter("synproxy_bad_cookie");
    finished(flood(&topo, 500, 0x10));
    let refused = netns::wait_for(std::time::Duration::from_secs(5), || {
        let n = d.drop_counter("synproxy_bad_cookie") - bad;
        (n >= 500).then_some(n)
    });
    assert_eq!(refused, Some(500), "every guessed ACK refused");
    let spoofed = d
        .conns()
        .iter()
        .filter(|c| c.source.starts_with("198.18."))
        .count();
    assert_eq!(spoofed, 0, "no connection for a spoofed SYN or ACK");
    assert_eq!(
        d.stats()[0].total.conns,
        conns_before + during,
        "only the real requests made connections"
    );
    // And the service still serves.
    assert_eq!(answers(&topo, 2), all_servers());
}

#[test]
fn syn_proxy_serves_fullnat() {
    let Some(_serial) = netns::begin("synproxy_fnat") else {
        return;
    };
    let topo = Topology::new("synproxy_fnat");
    let d = topo.start_dpvsd("");
    let vs = synproxy_service(&d, "-b");
    d.ctl_ok(&["-P", "-t", &vs, "-z", LIP, "-F", "dpdk1"]);
    assert_eq!(answers(&topo, 6), all_servers(), "both servers answer");
    assert!(all_servers().contains(&netns::big_upload(&topo)));
    assert!(d.drop_counter("synproxy_opened") >= 7);
    assert!(d.drop_counter("toa_inserted") >= 7, "TOA still goes in");
}

#[test]
fn syn_proxy_with_two_workers() {
    let Some(_serial) = netns::begin("synproxy_2w") else {
        return;
    };
    let topo = Topology::new("synproxy_2w");
    let d = topo.start_dpvsd_2workers("");
    synproxy_service(&d, "-m");
    assert_eq!(answers(&topo, 8), all_servers(), "both servers answer");
    assert!(all_servers().contains(&netns::big_upload(&topo)));
}
