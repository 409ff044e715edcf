//! The control side of the ports' kernel interfaces (docs/kni.md): one set
//! of director addresses for both sides.
//!
//! - An address that appears on or leaves a kernel interface (`ip addr`,
//!   keepalived's VRRP, a routing daemon) becomes, or stops being, the
//!   dataplane's: dpvsd follows `ip -o monitor address` (iproute2's rtnetlink
//!   listener; no netlink code here) and changes its configuration.
//! - An address added or deleted with dpvsctl / the API on a port that has a
//!   kernel interface is put on or taken off that interface, so the kernel's
//!   sockets can use it. The watch then sees a change that is already made.
//!
//! Link-local and host-scope addresses are the kernel's own and are ignored;
//! VIP host addresses that services add are not mirrored (a VIP belongs to the
//! load balancer).

use std::net::IpAddr;
use std::sync::Arc;

use tokio::io::AsyncBufReadExt;

use crate::server::DpvsService;

/// An address change seen on a kernel interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrEvent {
    pub added: bool,
    /// The interface, which is the port's name.
    pub port: String,
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// One line of `ip -o monitor address`, if it is a global-scope address of
/// one of `ports`:
/// `4: dpdk1    inet 192.168.0.50/24 scope global dpdk1\       valid_lft ...`,
/// `Deleted 4: dpdk1    inet6 fd00::5/64 scope global ...`.
pub fn parse_monitor_line(line: &str, ports: &[String]) -> Option<AddrEvent> {
    let (added, rest) = match line.strip_prefix("Deleted ") {
        Some(r) => (false, r),
        None => (true, line),
    };
    let mut w = rest.split_whitespace();
    let index = w.next()?;
    if !index.ends_with(':') || index[..index.len() - 1].parse::<u32>().is_err() {
        return None;
    }
    let ifname = w.next()?;
    let port = ports.iter().find(|p| p.as_str() == ifname)?;
    let family = w.next()?;
    if family != "inet" && family != "inet6" {
        return None;
    }
    let (addr, len) = w.next()?.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let prefix_len: u8 = len.parse().ok()?;
    let mut scope = None;
    while let Some(x) = w.next() {
        if x == "scope" {
            scope = w.next();
            break;
        }
    }
    if scope != Some("global") {
        return None;
    }
    Some(AddrEvent {
        added,
        port: port.clone(),
        addr,
        prefix_len,
    })
}

/// Follows the kernel interfaces `ports` for as long as dpvsd runs.
pub async fn watch(svc: Arc<DpvsService>, ports: Vec<String>) {
    if ports.is_empty() {
        return;
    }
    let child = tokio::process::Command::new("ip")
        .args(["-o", "monitor", "address"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dpvsd: kni: cannot run `ip -o monitor address` ({e}): addresses added on the kernel interfaces will not reach the dataplane");
            return;
        }
    };
    let Some(out) = child.stdout.take() else {
        return;
    };
    let mut lines = tokio::io::BufReader::new(out).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(ev) = parse_monitor_line(&line, &ports) {
            svc.kernel_address(&ev);
        }
    }
    eprintln!("dpvsd: kni: the address watch ended");
}

/// Puts `addr/prefix_len` on (or takes it off) the kernel interface `port`.
pub fn mirror(port: &str, addr: IpAddr, prefix_len: u8, add: bool) -> Result<(), String> {
    let a = format!("{addr}/{prefix_len}");
    let verb = if add { "replace" } else { "del" };
    dataplane::kni::ip(&["addr", verb, &a, "dev", port])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_lines() {
        let ports = vec!["dpdk0".to_string(), "dpdk1".to_string()];
        let ev = parse_monitor_line(
            "4: dpdk1    inet 192.168.0.50/24 scope global dpdk1\\       valid_lft forever preferred_lft forever",
            &ports,
        );
        assert_eq!(
            ev,
            Some(AddrEvent {
                added: true,
                port: "dpdk1".into(),
                addr: "192.168.0.50".parse().unwrap(),
                prefix_len: 24
            })
        );
        let ev = parse_monitor_line(
            "Deleted 3: dpdk0    inet6 fd00:10::9/64 scope global nodad \\       valid_lft forever preferred_lft forever",
            &ports,
        )
        .unwrap();
        assert!(!ev.added);
        assert_eq!(ev.addr, "fd00:10::9".parse::<IpAddr>().unwrap());
        // The kernel's own link-local addresses, other interfaces, junk.
        assert_eq!(
            parse_monitor_line(
                "3: dpdk0    inet6 fe80::1/64 scope link \\       valid_lft forever",
                &ports
            ),
            None
        );
        assert_eq!(
            parse_monitor_line("2: lo    inet 127.0.0.2/8 scope host lo", &ports),
            None
        );
        assert_eq!(
            parse_monitor_line("5: eth0    inet 10.1.1.1/24 scope global eth0", &ports),
            None
        );
        assert_eq!(parse_monitor_line("garbage", &ports), None);
        assert_eq!(parse_monitor_line("", &ports), None);
        assert_eq!(
            parse_monitor_line("4: dpdk1    inet 999.1.1.1/24 scope global", &ports),
            None
        );
    }
}
