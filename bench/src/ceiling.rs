//! The harness's own ceiling: the pipeline harness (generator on lcore 0,
//! ring ports, the same frames and window) with a worker on lcore 1 that only
//! swaps the MAC addresses of what it receives on the client port and
//! transmits it on the server port, as testpmd's macswap does. What the
//! director's pipeline figures can reach at most on this harness: a figure
//! near the ceiling measures the generator, not the director.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrayvec::ArrayVec;
use dataplane::dpdk::lcore;
use dataplane::dpdk::mbuf::Mbuf;
use dataplane::dpdk::port::{port_by_name, rx_burst, tx_burst, Port};
use dataplane::wire::PacketBuf;
use serde::{Deserialize, Serialize};

use crate::env::{Env, CLIENT, SERVER};
use crate::frames::{flag, Frames};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Ceiling {
    pub flows: u32,
    /// Best run, Mpps.
    pub mpps: Option<f64>,
    pub runs: Vec<f64>,
    pub note: String,
}

/// MAC swap on lcore 1 until `stop`: rx on `from`, tx on `to`, queue 0.
fn macswap(from: u16, to: u16, stop: Arc<AtomicBool>) -> i32 {
    let mut b: ArrayVec<Mbuf, 32> = ArrayVec::new();
    while !stop.load(Ordering::Relaxed) {
        if rx_burst(from, 0, &mut b) == 0 {
            continue;
        }
        for m in b.iter_mut() {
            let d = m.data_mut();
            if d.len() >= 12 {
                let mut a = [0u8; 6];
                a.copy_from_slice(&d[..6]);
                d.copy_within(6..12, 0);
                d[6..12].copy_from_slice(&a);
            }
        }
        tx_burst(to, 0, &mut b);
    }
    0
}

/// The client's established-flow frames of the pipeline scenarios (an ACK per
/// flow, `flows` flows) pumped through the MAC-swap worker.
pub fn measure(env: &mut Env, flows: u32, packets: u64, repeats: usize) -> Result<Ceiling, String> {
    let mut res = Ceiling {
        flows,
        ..Default::default()
    };
    env.use_workers(1)?;
    env.drain();
    env.drain_rx();
    let spec = env.spec(1024, false);
    let mut ports = Vec::new();
    for p in &spec.ports {
        let id = port_by_name(&p.device).ok_or_else(|| format!("{}: no such port", p.device))?;
        let mut port = Port::start(id, &p.name, 1, 0, &env.pool)?;
        port.close_on_stop = false;
        ports.push(port);
    }
    let (from, to) = (ports[CLIENT].id, ports[SERVER].id);
    let stop = Arc::new(AtomicBool::new(false));
    let flag_ = stop.clone();
    lcore::launch(1, move || macswap(from, to, flag_))?;
    let mac = ports[CLIENT].mac;
    let ack = Frames::build(flows as usize, |i| {
        crate::pipeline::client_seg_to(mac, i as u32, flag::ACK, 1001, 5001, 0)
    });
    let mut err = None;
    for i in 0..=repeats {
        let p = env.pump(
            &ack,
            0,
            CLIENT,
            SERVER,
            packets,
            Duration::from_secs(4),
            Duration::from_millis(300),
            |_, _| {},
        );
        if p.recv < p.sent {
            err = Some(format!("{} of {} frames came back", p.recv, p.sent));
            break;
        }
        // The first pump warms up.
        if i > 0 {
            res.runs.push(p.mpps());
        }
    }
    stop.store(true, Ordering::Relaxed);
    lcore::wait(1);
    drop(ports);
    env.drain();
    if let Some(e) = err {
        return Err(format!("harness ceiling: {e}"));
    }
    res.mpps = res.runs.iter().cloned().reduce(f64::max);
    Ok(res)
}
