//! Packet mbuf pools.

use std::ffi::CString;
use std::ptr::NonNull;

use super::mbuf::Mbuf;

/// Default data room: 2048 bytes of packet plus the standard headroom.
pub const DEFAULT_DATA_ROOM: u16 = 2048 + 128;

/// An `rte_mempool` of packet mbufs. Freed on drop; every mbuf must have been
/// returned by then (ports stopped, workers joined).
pub struct Mempool {
    raw: NonNull<dpdk_sys::rte_mempool>,
}

// SAFETY: rte_mempool is designed for concurrent use from many lcores (per-lcore
// caches plus a lock-free ring); the pointer itself is immutable.
unsafe impl Send for Mempool {}
// SAFETY: as above; all operations through &Mempool are DPDK's thread-safe calls.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Create a pool of `n` mbufs with a per-lcore cache.
    pub fn new(name: &str, n: u32, cache: u32, socket: i32) -> Result<Mempool, String> {
        let cname = CString::new(name).map_err(|_| "mempool name contains NUL".to_string())?;
        // SAFETY: cname is a valid C string; DPDK copies the name.
        let p = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                n,
                cache,
                0,
                DEFAULT_DATA_ROOM,
                socket,
            )
        };
        NonNull::new(p).map(|raw| Mempool { raw }).ok_or_else(|| {
            let e = super::last_errno();
            format!(
                "cannot create mempool {name} of {n} mbufs: {}",
                super::strerror(e)
            )
        })
    }

    pub fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.raw.as_ptr()
    }

    /// One mbuf, or None when the pool is empty.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool pointer is valid for the life of self.
        let m = unsafe { dpdk_sys::rte_pktmbuf_alloc(self.raw.as_ptr()) };
        // SAFETY: a fresh mbuf from the pool is exclusively ours.
        NonNull::new(m).map(|m| unsafe { Mbuf::from_raw(m) })
    }

    /// Fill `out` with `n` mbufs, all or nothing.
    pub fn alloc_bulk(&self, n: usize) -> Option<Vec<Mbuf>> {
        let mut raw: Vec<*mut dpdk_sys::rte_mbuf> = vec![std::ptr::null_mut(); n];
        // SAFETY: raw has room for n pointers; on success all are valid mbufs.
        let rc = unsafe {
            dpdk_sys::rte_pktmbuf_alloc_bulk(self.raw.as_ptr(), raw.as_mut_ptr(), n as u32)
        };
        if rc != 0 {
            return None;
        }
        Some(
            raw.into_iter()
                // SAFETY: each pointer came from a successful bulk alloc.
                .map(|p| unsafe { Mbuf::from_raw(NonNull::new_unchecked(p)) })
                .collect(),
        )
    }

    /// Mbufs currently available in the pool (includes lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: read-only statistics call on a valid pool.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    /// Mbufs taken out of the pool (`size` minus what the ring and the lcore
    /// caches hold). Walks the per-lcore caches: for the control plane, not
    /// for the packet path.
    pub fn in_use(&self) -> u32 {
        // SAFETY: read-only statistics call on a valid pool.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.raw.as_ptr()) }
    }

    /// Mbufs the pool was created with.
    pub fn capacity(&self) -> u32 {
        // SAFETY: the pool pointer is valid for the life of self, and `size`
        // is set at creation and never written afterwards.
        unsafe { (*self.raw.as_ptr()).size }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: the pool is no longer used by any port or worker (owners drop
        // ports and join workers before the pool).
        unsafe { dpdk_sys::rte_mempool_free(self.raw.as_ptr()) }
    }
}
