//! Writes the committed seed corpus, `fuzz/seeds/<target>/` (docs/fuzzing.md):
//!
//! - the packet targets: real conversations with every configured mode, the
//!   frames the director sends (what a real server's ICMP error quotes), the
//!   host frames (ARP, NDP, echo) and the unusual kinds of frame the tests
//!   count (VLAN tag, fragment, TTL 1, over the MTU), all built by
//!   etherparse, the testkit and the director's own builders;
//! - the control targets: the dpvs.toml, keepalived.conf, `-S` lines and
//!   dpvsctl command lines that the docs and the control tests use.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds [DIR]`; it
//! replaces what DIR (default `fuzz/seeds`) holds for each target.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use dataplane::testkit::{CIP, CLIENT_MAC, MAC0, MAC1, RS_MAC, VIP};
use dataplane::wire::{arp, ndp, MacAddr};
use dataplane::Proto;
use dpvs_fuzz::modes::{self, conversation, Mode, Options, CIP6, VIP6};
use dpvs_fuzz::{encode, Sel};
use etherparse::{icmpv4, icmpv6, Icmpv4Type, Icmpv6Type, PacketBuilder};

/// Most seeds per control target: enough variety, a small commit.
const MAX_TEXT_SEEDS: usize = 40;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("fuzz/seeds"));
    let mut seeds: BTreeMap<&str, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    packet_seeds(&mut seeds);
    sync_seeds(&mut seeds);
    text_seeds(&root, &mut seeds);
    for (target, list) in &seeds {
        let dir = out.join(target);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("seed dir");
        for (name, bytes) in list {
            std::fs::write(dir.join(name), bytes).expect("seed");
        }
        println!("{target}: {} seeds", list.len());
    }
}

/// A conversation with `m`/`proto` through a lab, each frame with what the
/// director sent for it (the last frame out, if any).
fn converse(m: Mode, proto: Proto) -> Vec<(Vec<u8>, usize, Option<Vec<u8>>)> {
    let mut lab = modes::lab(Options(0));
    let mut sent_for = Vec::new();
    let frames = conversation(m, proto, &mut |f, port| {
        lab.core.io.sent.clear();
        let mut b = arrayvec::ArrayVec::<_, 32>::new();
        b.push(dataplane::wire::VecBuf::new(f));
        let snap = lab.snap.clone();
        lab.core
            .handle_burst(&snap, &mut b, dataplane::core::Arrival::Port(port));
        let out = lab.core.io.sent.last().map(|(_, f)| f.clone());
        sent_for.push(out.clone());
        out
    });
    frames
        .into_iter()
        .zip(sent_for)
        .map(|((f, p), s)| (f, p, s))
        .collect()
}

/// What a master queued for the backups over a conversation with `m`/`proto`.
fn sync_records(m: Mode, proto: Proto) -> Vec<dataplane::sync::SyncConn> {
    let mut lab = modes::lab(Options(0));
    lab.core.shared.sync.set_on(true);
    conversation(m, proto, &mut |f, port| {
        lab.core.io.sent.clear();
        let mut b = arrayvec::ArrayVec::<_, 32>::new();
        b.push(dataplane::wire::VecBuf::new(f));
        let snap = lab.snap.clone();
        lab.core
            .handle_burst(&snap, &mut b, dataplane::core::Arrival::Port(port));
        lab.core.io.sent.last().map(|(_, f)| f.clone())
    });
    let mut v = Vec::new();
    lab.core.shared.sync.drain(usize::MAX, &mut v);
    v
}

/// sync_msg: one message per mode's conversation, and one with them all.
fn sync_seeds(seeds: &mut BTreeMap<&str, Vec<(String, Vec<u8>)>>) {
    use control::sync::wire::{encode, MAX_MESSAGE};
    let mut list = Vec::new();
    let mut all = Vec::new();
    for m in Mode::ALL {
        for &proto in m.protos() {
            let recs = sync_records(m, proto);
            let name = format!(
                "{}-{}",
                m.name(),
                if proto == Proto::Tcp { "tcp" } else { "udp" }
            );
            for (i, msg) in encode(7, &recs, MAX_MESSAGE).into_iter().enumerate() {
                list.push((format!("{name}-{i}"), msg));
            }
            all.extend(recs);
        }
    }
    for (i, msg) in encode(7, &all, MAX_MESSAGE).into_iter().enumerate() {
        list.push((format!("all-{i}"), msg));
    }
    seeds.insert("sync_msg", list);
}

fn packet_seeds(seeds: &mut BTreeMap<&str, Vec<(String, Vec<u8>)>>) {
    let mut one = Vec::new(); // pipeline: (name, options, sel, frame)
    let mut seq = Vec::new(); // pipeline_seq
    let mut wire = Vec::new();
    for m in Mode::ALL {
        for &proto in m.protos() {
            let name = format!(
                "{}-{}",
                m.name(),
                if proto == Proto::Tcp { "tcp" } else { "udp" }
            );
            let conv = converse(m, proto);
            let mut recs: Vec<(u8, Vec<u8>)> = Vec::new();
            for (i, (f, port, _)) in conv.iter().enumerate() {
                // The first packet opens; later ones need the warm-up's connection.
                let opts = if i == 0 { 0 } else { Options::WARM };
                one.push((format!("{name}-{i}"), opts, *port as u8, f.clone()));
                recs.push((*port as u8 | Sel::END_BURST, f.clone()));
            }
            if let Some((f, _, _)) = conv.first() {
                wire.push((name.clone(), f.clone()));
            }
            // The real server's ICMP error about what the director sent it.
            if let Some(err) = conv
                .first()
                .and_then(|(_, _, sent)| sent.as_deref())
                .and_then(|s| icmp_error_from_rs(m, s))
            {
                one.push((format!("{name}-icmp"), Options::WARM, 1, err.clone()));
                wire.push((format!("{name}-icmp"), err.clone()));
                recs.push((1 | Sel::END_BURST, err));
            }
            // A minute later, the conversation goes on or is gone.
            if let Some((f, port, _)) = conv.last() {
                recs.push(((9 << 4) | *port as u8, f.clone()));
            }
            let recs: Vec<(u8, &[u8])> = recs.iter().map(|(s, f)| (*s, &f[..])).collect();
            seq.push((name.clone(), encode(0, &recs)));
            if m == Mode::Nat || m == Mode::FullNatToa {
                // Two workers: some frames are handed over.
                seq.push((format!("{name}-2w"), encode(Options::TWO_WORKERS, &recs)));
            }
            if matches!(m, Mode::Nat | Mode::FullNatToa | Mode::FullNatSynproxy) {
                // The sync master queues what the conversation does.
                seq.push((format!("{name}-sync"), encode(Options::SYNC, &recs)));
            }
        }
    }
    for (name, f) in host_frames() {
        one.push((name.clone(), 0, 0, f.clone()));
        wire.push((name, f));
    }
    for (name, f) in unusual_frames() {
        one.push((name.clone(), 0, 0, f.clone()));
        wire.push((name, f));
    }
    seeds.insert(
        "pipeline",
        one.into_iter()
            .map(|(n, o, s, f)| {
                let mut v = vec![o, s];
                v.extend_from_slice(&f);
                (n, v)
            })
            .collect(),
    );
    seeds.insert("pipeline_seq", seq);
    seeds.insert(
        "wire",
        wire.into_iter()
            .map(|(n, f)| {
                let mut v = vec![0u8];
                v.extend_from_slice(&f);
                (n, v)
            })
            .collect(),
    );
}

/// ICMP destination unreachable (port) from the real server, quoting `sent`
/// (what the director sent it), to where the real server answers.
fn icmp_error_from_rs(m: Mode, sent: &[u8]) -> Option<Vec<u8>> {
    let quote = sent.get(14..)?;
    let (to, _) = dpvs_fuzz::check::l4_source(sent)?;
    let mut f = Vec::new();
    let b = PacketBuilder::ethernet2(RS_MAC, MAC1);
    match (m.rip(), to) {
        (IpAddr::V4(r), IpAddr::V4(t)) => b
            .ipv4(r.octets(), t.octets(), 64)
            .icmpv4(Icmpv4Type::DestinationUnreachable(
                icmpv4::DestUnreachableHeader::Port,
            ))
            .write(&mut f, quote),
        (IpAddr::V6(r), IpAddr::V6(t)) => b
            .ipv6(r.octets(), t.octets(), 64)
            .icmpv6(Icmpv6Type::DestinationUnreachable(
                icmpv6::DestUnreachableCode::Port,
            ))
            .write(&mut f, quote),
        _ => return None,
    }
    .ok()?;
    Some(f)
}

/// The director as a host: ARP, neighbour solicitation, echo.
fn host_frames() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    let mut buf = [0u8; 64];
    let n = arp::build_request(
        &mut buf,
        MacAddr(CLIENT_MAC),
        Ipv4Addr::from(CIP),
        Ipv4Addr::from(VIP),
    );
    v.push(("arp-who-has-vip".into(), buf[..n.max(60)].to_vec()));
    let mut buf = [0u8; ndp::FRAME_LEN];
    let n = ndp::build_solicit(
        &mut buf,
        MacAddr(CLIENT_MAC),
        Ipv6Addr::from(CIP6),
        Ipv6Addr::from(VIP6),
    );
    v.push(("ns-vip6".into(), buf[..n].to_vec()));
    let mut f = Vec::new();
    let _ = PacketBuilder::ethernet2(CLIENT_MAC, MAC0)
        .ipv4(CIP, VIP, 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut f, b"ping");
    v.push(("echo-vip".into(), f));
    let mut f = Vec::new();
    let _ = PacketBuilder::ethernet2(CLIENT_MAC, MAC0)
        .ipv6(CIP6, VIP6, 64)
        .icmpv6_echo_request(7, 1)
        .write(&mut f, b"ping");
    v.push(("echo-vip6".into(), f));
    v
}

/// Kinds of frame the malformed-input tests count: VLAN-tagged, an IPv4
/// fragment, TTL 1, a datagram over the TUN MTU.
fn unusual_frames() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    let mut f = Vec::new();
    let _ = PacketBuilder::ethernet2(CLIENT_MAC, MAC0)
        .single_vlan(etherparse::VlanId::try_new(10).expect("vlan id"))
        .ipv4(CIP, VIP, 64)
        .udp(5000, 80)
        .write(&mut f, b"hello");
    v.push(("vlan-udp".into(), f));
    let mut ttl1 = Vec::new();
    let _ = PacketBuilder::ethernet2(CLIENT_MAC, MAC0)
        .ipv4(CIP, VIP, 1)
        .udp(5000, 80)
        .write(&mut ttl1, b"hello");
    v.push(("ttl1-udp".into(), ttl1));
    // More fragments: the header's flag set, its checksum made right again.
    let mut frag = Vec::new();
    let mut ip =
        etherparse::Ipv4Header::new(13, 64, etherparse::IpNumber::UDP, CIP, VIP).expect("header");
    ip.more_fragments = true;
    let _ = PacketBuilder::ethernet2(CLIENT_MAC, MAC0)
        .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
        .udp(5000, 80)
        .write(&mut frag, b"hello");
    v.push(("fragment-udp".into(), frag));
    let mut big = Vec::new();
    let _ = PacketBuilder::ethernet2(CLIENT_MAC, MAC0)
        .ipv4(CIP, VIP, 64)
        .udp(5000, Mode::Tun.vport())
        .write(&mut big, &[b'x'; 1472]);
    v.push(("tun-over-mtu-udp".into(), big));
    v
}

fn text_seeds(root: &Path, seeds: &mut BTreeMap<&str, Vec<(String, Vec<u8>)>>) {
    let mut toml = Vec::new();
    let mut keepalived = Vec::new();
    let mut restore = Vec::new();
    let mut args = Vec::new();
    let mut docs = files(&root.join("docs"), "md");
    docs.sort();
    for p in &docs {
        let text = std::fs::read_to_string(p).unwrap_or_default();
        for (lang, block) in fences(&text) {
            if lang == "toml" {
                toml.push(block.clone());
            }
            let rule_lines: Vec<&str> = block.lines().filter(|l| is_rule(l)).collect();
            if !rule_lines.is_empty() {
                restore.push(rule_lines.join("\n") + "\n");
            }
        }
        for line in text.lines() {
            if let Some(cmd) = line.strip_prefix("dpvsctl ") {
                let cmd = cmd.split(" # ").next().unwrap_or(cmd);
                if let Ok(words) = control::ctl::rules::split_words(cmd) {
                    args.push(words.join("\0"));
                }
            }
        }
    }
    let mut sources = files(&root.join("control/src"), "rs");
    sources.extend(files(&root.join("control/tests"), "rs"));
    sources.sort();
    for p in &sources {
        let text = std::fs::read_to_string(p).unwrap_or_default();
        for lit in literals(&text) {
            if lit.contains("[[ports]]") || lit.contains("[workers]") {
                toml.push(lit);
            } else if lit.contains("virtual_server") || lit.contains("real_server") {
                keepalived.push(lit);
            } else if !lit.is_empty() && lit.lines().all(|l| l.trim().is_empty() || is_rule(l)) {
                restore.push(lit);
            }
        }
    }
    for (target, list) in [
        ("config_toml", toml),
        ("keepalived", keepalived),
        ("restore", restore),
        ("ctl_args", args),
    ] {
        let mut list: Vec<String> = list;
        list.sort();
        list.dedup();
        // Spread the picks over the whole list.
        let step = list.len().div_ceil(MAX_TEXT_SEEDS).max(1);
        let picked = list
            .into_iter()
            .step_by(step)
            .enumerate()
            .map(|(i, s)| (format!("{target}-{i:02}"), s.into_bytes()))
            .collect();
        seeds.insert(target, picked);
    }
}

/// An ipvsadm rule line as `-S` writes and `-R` reads.
fn is_rule(l: &str) -> bool {
    ["-A ", "-a ", "-E ", "-e ", "-P ", "-D ", "-d "]
        .iter()
        .any(|p| l.starts_with(p))
}

/// Files under `dir` ending in `.ext`, recursively.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p, ext));
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    out
}

/// Markdown fenced blocks: (language, content).
fn fences(md: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(String, String)> = None;
    for line in md.lines() {
        if let Some(rest) = line.strip_prefix("```") {
            match cur.take() {
                Some(block) => out.push(block),
                None => cur = Some((rest.trim().to_string(), String::new())),
            }
        } else if let Some((_, b)) = cur.as_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    out
}

/// Multi-line string literals of Rust source: `r#"..."#` and `"\` + newline
/// continued ones, unescaped the way the tests mean them (`{{` of a format
/// string as `{`).
fn literals(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find("r#\"") {
        let body = &rest[i + 3..];
        let Some(end) = body.find("\"#") else { break };
        out.push(body[..end].trim_start_matches('\n').to_string());
        rest = &body[end + 2..];
    }
    let mut rest = src;
    while let Some(i) = rest.find("\"\\\n") {
        let body = &rest[i + 3..];
        let Some(end) = body.find("\n\"") else { break };
        let text = body[..end + 1]
            .replace("\\\"", "\"")
            .replace("\\\\", "\\")
            .replace("{{", "{")
            .replace("}}", "}");
        out.push(text);
        rest = &body[end + 2..];
    }
    out
}
