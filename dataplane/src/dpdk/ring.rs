//! rte_ring of mbufs, and ring-backed ports (`rte_eth_from_rings`).
//!
//! Workers pass packets to each other on single-producer/single-consumer rings
//! (the hand-over, `crate::handover`) with the allocation-free burst calls;
//! in-process tests and the benchmark generator push frames into a ring port's
//! rx ring and read what the worker transmitted from its tx ring.

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

    /// Move as many mbufs of `pkts` as fit into the ring, from the front, in
    /// order; what did not fit stays in `pkts`. Returns how many went in. No
    /// allocation: the hand-over's hot path.
    #[inline]
    pub fn enqueue_burst<const N: usize>(&self, pkts: &mut arrayvec::ArrayVec<Mbuf, N>) -> usize {
        let total = pkts.len();
        if total == 0 {
            return 0;
        }
        let mut raw: [*mut libc::c_void; N] = [std::ptr::null_mut(); N];
        for (slot, m) in raw.iter_mut().zip(pkts.iter()) {
            *slot = m.as_raw() as *mut libc::c_void;
        }
        // SAFETY: raw[..total] are valid mbufs owned by `pkts`; the ring stores
        // void pointers. With RING_F_SP_ENQ only one thread (the owning worker)
        // ever enqueues on this ring.
        let done = unsafe {
            dpdk_sys::rte_ring_enqueue_burst(
                self.raw.as_ptr(),
                raw.as_ptr(),
                total as u32,
                std::ptr::null_mut(),
            )
        } as usize;
        // The first `done` now belong to the ring: forget them without freeing.
        for m in pkts.drain(..done) {
            let _ = m.into_raw();
        }
        done
    }

    /// Dequeue into `out` as many mbufs as it has room for. Returns how many.
    #[inline]
    pub fn dequeue_burst<const N: usize>(&self, out: &mut arrayvec::ArrayVec<Mbuf, N>) -> usize {
        let room = out.capacity() - out.len();
        if room == 0 {
            return 0;
        }
        let mut raw: [*mut libc::c_void; N] = [std::ptr::null_mut(); N];
        // SAFETY: raw has room for `room` <= N pointers. With RING_F_SC_DEQ
        // only one thread (the owning worker) ever dequeues from this ring.
        let n = unsafe {
            dpdk_sys::rte_ring_dequeue_burst(
                self.raw.as_ptr(),
                raw.as_mut_ptr(),
                room as u32,
                std::ptr::null_mut(),
            )
        } as usize;
        for &p in &raw[..n] {
            // SAFETY: only mbufs are ever enqueued on these rings; dequeued
            // ones are ours alone.
            out.push(unsafe {
                Mbuf::from_raw(NonNull::new_unchecked(p as *mut dpdk_sys::rte_mbuf))
            });
        }
        n
    }

    /// Mbufs in the ring now.
    pub fn count(&self) -> usize {
        // SAFETY: valid ring; a plain read of its head and tail.
        unsafe { dpdk_sys::rte_ring_count(self.raw.as_ptr()) as usize }
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
    port_from_ring_queues(name, &[rx], &[tx])
}

/// Create an ethdev named `net_ring_<name>` whose rx queue i receives from
/// `rx[i]` and tx queue i transmits into `tx[i]` (a multi-queue port whose
/// "RSS" is whoever fills the rings: tests and the benchmark generator).
pub fn port_from_ring_queues(name: &str, rx: &[&Ring], tx: &[&Ring]) -> Result<u16, String> {
    let c = CString::new(name).map_err(|_| "port name contains NUL".to_string())?;
    let rxs: Vec<*mut dpdk_sys::rte_ring> = rx.iter().map(|r| r.as_ptr()).collect();
    let txs: Vec<*mut dpdk_sys::rte_ring> = tx.iter().map(|r| r.as_ptr()).collect();
    // SAFETY: the ring arrays hold valid rings that outlive the port; DPDK
    // copies the pointer arrays.
    let rc = unsafe {
        dpdk_sys::rte_eth_from_rings(
            c.as_ptr(),
            rxs.as_ptr(),
            rxs.len() as u32,
            txs.as_ptr(),
            txs.len() as u32,
            0,
        )
    };
    if rc < 0 {
        return Err(format!(
            "rte_eth_from_rings({name}): {}",
            super::strerror(super::last_errno())
        ));
    }
    Ok(rc as u16)
}
