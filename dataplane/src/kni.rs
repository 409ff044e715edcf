//! The kernel interface of each port: the exception path (DPVS's KNI; since
//! DPVS 1.10 virtio-user). A TAP device named after the port (`dpdk0`), with
//! the port's MAC, is the kernel's view of the port: what arrives for an own
//! address that the load balancer does not consume goes up to it, and what the
//! kernel sends on it goes out through the port. So kernel sockets on the
//! director (ssh, curl, health checks, routing daemons) work on every network
//! the ports reach.
//!
//! Up: a worker hands the frame to `Io::to_kernel`, which puts it on the
//! worker's up ring (single producer, single consumer). Down: the host thread
//! (not a worker: TAP reads and writes are system calls, which must never stall
//! a poll loop) moves frames from every up ring to its TAP, and from every TAP
//! onto the down ring, which worker 0 drains each loop and transmits on its own
//! queue of the port. A full ring drops the frame (`kernel_queue_full`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use arrayvec::ArrayVec;

use crate::core::BURST;
use crate::dpdk::mbuf::Mbuf;
use crate::dpdk::mempool::Mempool;
use crate::dpdk::port::{rx_burst, tx_burst, Port};
use crate::dpdk::ring::Ring;

/// Frames each ring holds (a burst of exception traffic, not a flood).
const RING_SIZE: u32 = 1024;
/// How long the host thread sleeps when nothing moved.
const IDLE_SLEEP: std::time::Duration = std::time::Duration::from_micros(200);

/// The rings between the workers and the host thread.
pub struct KniRings {
    /// Per worker: frames going up (the mbuf's port field is the port index).
    up: Vec<Ring>,
    /// Frames the kernel sent, for worker 0 to transmit (port field: index).
    down: Ring,
    /// Which port indexes have a kernel interface.
    ports: Vec<bool>,
    /// Frames dropped because a ring was full (both directions).
    pub dropped: AtomicU64,
    /// Frames moved up to the kernel and down from it.
    pub up_frames: AtomicU64,
    pub down_frames: AtomicU64,
}

impl KniRings {
    /// Whether port index `port` has a kernel interface.
    #[inline]
    pub fn has(&self, port: usize) -> bool {
        self.ports.get(port).copied().unwrap_or(false)
    }

    /// Worker `w`: `m` (received on port index `port`) up to the kernel;
    /// `Err(m)` when the ring is full.
    pub fn up(&self, w: usize, port: usize, mut m: Mbuf) -> Result<(), Mbuf> {
        m.set_port(port as u16);
        let mut one: ArrayVec<Mbuf, 1> = ArrayVec::new();
        one.push(m);
        if self.up[w].enqueue_burst(&mut one) == 1 {
            return Ok(());
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        Err(one.pop().expect("the frame that did not fit"))
    }

    /// Worker 0: the frames the kernel sent, into `out`.
    pub fn down(&self, out: &mut ArrayVec<Mbuf, BURST>) -> usize {
        self.down.dequeue_burst(out)
    }
}

/// The TAP devices and the host thread that serves them.
pub struct Kni {
    pub rings: Arc<KniRings>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// One port's kernel twin: its index among the ports and its TAP port.
pub struct Tap {
    pub index: usize,
    pub name: String,
    pub port: Port,
    pub kind: KniKind,
}

/// How a kernel interface is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KniKind {
    /// virtio-user with the vhost-net kernel backend (DPVS 1.10's choice:
    /// the kernel moves the data), where `/dev/vhost-net` exists.
    VirtioUser,
    /// DPDK's net_tap: every frame a read/write system call.
    Tap,
}

impl KniKind {
    /// virtio-user when this kernel offers vhost-net, else TAP.
    pub fn detect() -> KniKind {
        if std::path::Path::new("/dev/vhost-net").exists() {
            KniKind::VirtioUser
        } else {
            KniKind::Tap
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KniKind::VirtioUser => "virtio-user",
            KniKind::Tap => "TAP",
        }
    }

    /// The vdev spec of port `name` with `mac`. Either way the kernel sees an
    /// interface named after the port.
    pub fn spec(self, tag: &str, name: &str, mac: [u8; 6]) -> String {
        let m = mac.map(|b| format!("{b:02x}")).join(":");
        match self {
            KniKind::VirtioUser => format!(
                "virtio_user{tag},path=/dev/vhost-net,queues=1,queue_size=1024,iface={name},mac={m}"
            ),
            KniKind::Tap => format!("net_tap{tag},iface={name},mac={m}"),
        }
    }
}

impl Kni {
    /// Starts the host thread over `taps` (already started ports), for
    /// `nworkers` workers and `nports` ports.
    pub fn start(taps: Vec<Tap>, nworkers: usize, nports: usize, tag: &str) -> Result<Kni, String> {
        let mut ports = vec![false; nports];
        for t in &taps {
            ports[t.index] = true;
        }
        let up = (0..nworkers)
            .map(|w| Ring::new(&format!("kni_up_{tag}_{w}"), RING_SIZE))
            .collect::<Result<Vec<_>, _>>()?;
        let down = Ring::new(&format!("kni_down_{tag}"), RING_SIZE)?;
        let rings = Arc::new(KniRings {
            up,
            down,
            ports,
            dropped: AtomicU64::new(0),
            up_frames: AtomicU64::new(0),
            down_frames: AtomicU64::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (rings.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("dpvs-kni".into())
            .spawn(move || host_loop(&taps, &r, &s))
            .map_err(|e| format!("cannot start the kernel interface thread: {e}"))?;
        Ok(Kni {
            rings,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Kni {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The host thread: up rings to TAPs, TAPs to the down ring, until `stop`.
/// The TAP ports (queue 0 of each) are this thread's alone.
fn host_loop(taps: &[Tap], rings: &KniRings, stop: &AtomicBool) {
    let mut burst: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    let mut out: Vec<ArrayVec<Mbuf, BURST>> = taps.iter().map(|_| ArrayVec::new()).collect();
    while !stop.load(Ordering::Relaxed) {
        let mut moved = 0;
        // Up: each worker's ring, sorted onto its port's TAP.
        for ring in &rings.up {
            while ring.dequeue_burst(&mut burst) != 0 {
                for m in burst.drain(..) {
                    let at = usize::from(m.port());
                    match taps.iter().position(|t| t.index == at) {
                        Some(i) => {
                            if out[i].is_full() {
                                send(&taps[i], &mut out[i], rings);
                            }
                            out[i].push(m);
                        }
                        None => drop(m),
                    }
                    moved += 1;
                }
            }
        }
        for (t, o) in taps.iter().zip(out.iter_mut()) {
            if !o.is_empty() {
                rings.up_frames.fetch_add(o.len() as u64, Ordering::Relaxed);
                send(t, o, rings);
            }
        }
        // Down: what the kernel sent, tagged with its port, for worker 0.
        for t in taps {
            let n = rx_burst(t.port.id, 0, &mut burst);
            if n == 0 {
                continue;
            }
            moved += n;
            for m in burst.iter_mut() {
                m.set_port(t.index as u16);
            }
            let total = burst.len();
            let done = rings.down.enqueue_burst(&mut burst);
            rings.down_frames.fetch_add(done as u64, Ordering::Relaxed);
            rings
                .dropped
                .fetch_add((total - done) as u64, Ordering::Relaxed);
            burst.clear();
        }
        if moved == 0 {
            std::thread::sleep(IDLE_SLEEP);
        }
    }
}

fn send(t: &Tap, o: &mut ArrayVec<Mbuf, BURST>, rings: &KniRings) {
    let (_, dropped) = tx_burst(t.port.id, 0, o);
    if dropped != 0 {
        rings.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
    }
}

/// Creates and starts the TAP of port `name`.
pub fn create_tap(
    index: usize,
    name: &str,
    mac: [u8; 6],
    mtu: u16,
    tag: &str,
    pool: &Mempool,
) -> Result<Tap, String> {
    let kind = KniKind::detect();
    match create_kind(kind, index, name, mac, mtu, tag, pool) {
        // vhost-net may exist and still refuse (permissions, a kernel
        // without the module loaded): TAP serves the same purpose.
        Err(e) if kind == KniKind::VirtioUser => {
            eprintln!("dataplane: kernel interface {name}: virtio-user failed ({e}); using TAP");
            create_kind(KniKind::Tap, index, name, mac, mtu, tag, pool)
        }
        r => r,
    }
}

fn create_kind(
    kind: KniKind,
    index: usize,
    name: &str,
    mac: [u8; 6],
    mtu: u16,
    tag: &str,
    pool: &Mempool,
) -> Result<Tap, String> {
    let spec = kind.spec(&format!("{tag}{index}"), name, mac);
    crate::dpdk::port::vdev_init(&spec)?;
    let dev = spec.split(',').next().unwrap_or("").to_string();
    let id = crate::dpdk::port::port_by_name(&dev)
        .ok_or_else(|| format!("kernel interface {name}: no ethdev {dev}"))?;
    let mut port =
        Port::start(id, name, 1, mtu, pool).map_err(|e| format!("kernel interface {name}: {e}"))?;
    port.close_on_stop = true;
    Ok(Tap {
        index,
        name: name.to_string(),
        port,
        kind,
    })
}

/// Runs `ip ARGS` (iproute2); the error is one line with its stderr.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The kernel side of a new kernel interface: up, with the port's addresses
/// (`ip` from iproute2). The kernel then has connected routes on it.
pub fn configure_kernel_side(name: &str, addrs: &[String]) -> Result<(), String> {
    if addrs.iter().any(|a| a.contains(':')) {
        // A namespace may start new devices with IPv6 off; the addresses are
        // the dataplane's already, so no duplicate detection either.
        for (key, v) in [("disable_ipv6", "0"), ("accept_dad", "0")] {
            let path = format!("/proc/sys/net/ipv6/conf/{name}/{key}");
            std::fs::write(&path, v).map_err(|e| format!("{path}: {e}"))?;
        }
    }
    for a in addrs {
        ip(&["addr", "replace", a, "dev", name])?;
    }
    ip(&["link", "set", "dev", name, "up"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_the_interface_after_the_port() {
        let mac = [0x02, 0xd0, 0, 0, 0, 0x1a];
        assert_eq!(
            KniKind::Tap.spec("k0", "dpdk0", mac),
            "net_tapk0,iface=dpdk0,mac=02:d0:00:00:00:1a"
        );
        assert_eq!(
            KniKind::VirtioUser.spec("k0", "dpdk0", mac),
            "virtio_userk0,path=/dev/vhost-net,queues=1,queue_size=1024,iface=dpdk0,mac=02:d0:00:00:00:1a"
        );
    }
}
