//! rte_ring of mbufs, and ring-backed ports (`rte_eth_from_rings`).
//!
//! Used by in-process tests and the benchmark generator: a test pushes frames
//! into a port's rx ring and reads what the worker transmitted from its tx ring.

use std::ffi::CString;
use std::ptr::NonNull;

use super::mbuf::Mbuf;

pub struct Ring {
    raw: NonNull<dpdk_sys::rte_ring>,
}

// SAFETY: rte_ring is a lock-free multi-producer/multi-consumer queue unless
// created with SP/SC flags, in which case the owner keeps one producer/consumer.
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

impl Ring {
    /// A ring of `size` (power of two) entries, single producer and consumer.
    pub fn new(name: &str, size: u32) -> Result<Ring, String> {
        let c = CString::new(name).map_err(|_| "ring name contains NUL".to_string())?;
        let flags = dpdk_sys::RING_F_SP_ENQ | dpdk_sys::RING_F_SC_DEQ;
        // SAFETY: valid C string; DPDK copies it.
        let p = unsafe { dpdk_sys::rte_ring_create(c.as_ptr(), size, 0, flags) };
        NonNull::new(p).map(|raw| Ring { raw }).ok_or_else(|| {
            format!(
                "cannot create ring {name}: {}",
                super::strerror(super::last_errno())
            )
        })
    }

    pub fn as_ptr(&self) -> *mut dpdk_sys::rte_ring {
        self.raw.as_ptr()
    }

    /// Enqueue mbufs; those that did not fit are returned.
    pub fn enqueue(&self, pkts: Vec<Mbuf>) -> Vec<Mbuf> {
        let n = pkts.len();
        let raw: Vec<*mut dpdk_sys::rte_mbuf> = pkts.into_iter().map(Mbuf::into_raw).collect();
        // SAFETY: raw holds n valid mbuf pointers; the ring stores void pointers.
        let done = unsafe {
            dpdk_sys::rte_ring_enqueue_burst(
                self.raw.as_ptr(),
                raw.as_ptr() as *const *mut libc::c_void,
                n as u32,
                std::ptr::null_mut(),
            )
        } as usize;
        raw[done..]
            .iter()
            // SAFETY: not enqueued, still owned by us.
            .map(|&p| unsafe { Mbuf::from_raw(NonNull::new_unchecked(p)) })
            .collect()
    }

    /// Dequeue up to `max` mbufs.
    pub fn dequeue(&self, max: usize) -> Vec<Mbuf> {
        let mut raw: Vec<*mut libc::c_void> = vec![std::ptr::null_mut(); max];
        // SAFETY: raw has room for max pointers.
        let n = unsafe {
            dpdk_sys::rte_ring_dequeue_burst(
                self.raw.as_ptr(),
                raw.as_mut_ptr(),
                max as u32,
                std::ptr::null_mut(),
            )
        } as usize;
        raw[..n]
            .iter()
            // SAFETY: only mbufs are ever enqueued on these rings; dequeued ones are ours.
            .map(|&p| unsafe {
                Mbuf::from_raw(NonNull::new_unchecked(p as *mut dpdk_sys::rte_mbuf))
            })
            .collect()
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        for m in self.dequeue(4096) {
            drop(m);
        }
        // SAFETY: nothing uses the ring any more (its port is closed).
        unsafe { dpdk_sys::rte_ring_free(self.raw.as_ptr()) }
    }
}

/// Create an ethdev named `net_ring_<name>` whose queue 0 receives from `rx` and transmits into `tx`.
pub fn port_from_rings(name: &str, rx: &Ring, tx: &Ring) -> Result<u16, String> {
    let c = CString::new(name).map_err(|_| "port name contains NUL".to_string())?;
    let rxs = [rx.as_ptr()];
    let txs = [tx.as_ptr()];
    // SAFETY: the ring arrays hold valid rings that outlive the port.
    let rc =
        unsafe { dpdk_sys::rte_eth_from_rings(c.as_ptr(), rxs.as_ptr(), 1, txs.as_ptr(), 1, 0) };
    if rc < 0 {
        return Err(format!(
            "rte_eth_from_rings({name}): {}",
            super::strerror(super::last_errno())
        ));
    }
    Ok(rc as u16)
}
