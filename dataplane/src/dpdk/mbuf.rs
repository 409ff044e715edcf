//! An owned packet buffer.
//!
//! `Mbuf` owns one `rte_mbuf` (single segment: the dataplane never chains) and
//! frees it on drop. Ownership passes to the NIC with [`Mbuf::into_raw`].

use std::ptr::NonNull;

use crate::wire::PacketBuf;

#[repr(transparent)]
pub struct Mbuf {
    raw: NonNull<dpdk_sys::rte_mbuf>,
}

// SAFETY: an Mbuf is exclusively owned; moving it to another lcore (hand-over
// ring) transfers that ownership.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Take ownership of a raw mbuf.
    ///
    /// # Safety
    /// `raw` must be a valid mbuf that nothing else will free or use.
    #[inline]
    pub unsafe fn from_raw(raw: NonNull<dpdk_sys::rte_mbuf>) -> Mbuf {
        Mbuf { raw }
    }

    /// Give up ownership (to tx_burst or a ring).
    #[inline]
    pub fn into_raw(self) -> *mut dpdk_sys::rte_mbuf {
        let p = self.raw.as_ptr();
        std::mem::forget(self);
        p
    }

    /// The raw pointer, ownership kept.
    #[inline]
    pub fn as_raw(&self) -> *mut dpdk_sys::rte_mbuf {
        self.raw.as_ptr()
    }

    #[inline]
    fn m(&self) -> &dpdk_sys::rte_mbuf {
        // SAFETY: we own a valid mbuf for our whole life.
        unsafe { self.raw.as_ref() }
    }

    /// The packet's length over all segments (one here: the data length).
    #[inline]
    pub fn pkt_len(&self) -> u32 {
        self.m().pkt_len
    }

    /// Bytes in front of the data (`data_off`; `RTE_PKTMBUF_HEADROOM` in a
    /// fresh mbuf).
    #[inline]
    pub fn headroom(&self) -> u16 {
        self.m().data_off
    }

    /// Port the mbuf was received on.
    #[inline]
    pub fn port(&self) -> u16 {
        self.m().port
    }

    /// Record the ethdev port the frame arrived on (the hand-over keeps it
    /// with the packet, since not every PMD sets it).
    #[inline]
    pub fn set_port(&mut self, port: u16) {
        // SAFETY: we own the mbuf exclusively; `port` is a plain field.
        unsafe { self.raw.as_mut().port = port }
    }
}

impl PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        let m = self.m();
        // SAFETY: for a single-segment mbuf, buf_addr + data_off is the start of
        // data_len initialised bytes inside the buffer we own.
        unsafe {
            std::slice::from_raw_parts(
                (m.buf_addr as *const u8).add(m.data_off as usize),
                m.data_len as usize,
            )
        }
    }

    #[inline]
    fn prefetch(&self) {
        let m = self.m();
        super::prefetch((m.buf_addr as *const u8).wrapping_add(usize::from(m.data_off)));
    }

    #[inline]
    fn ip_csum_good(&self) -> bool {
        // Set by PMDs whose port was started with the IPv4 checksum offload.
        self.m().ol_flags & u64::from(dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_MASK)
            == u64::from(dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD)
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let m = self.m();
        let (addr, off, len) = (
            m.buf_addr as *mut u8,
            m.data_off as usize,
            m.data_len as usize,
        );
        // SAFETY: as in data(); &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(addr.add(off), len) }
    }

    /// As `rte_pktmbuf_prepend` (single segment), in Rust: it runs for every
    /// TOA insertion, where DPDK's out-of-line wrapper is a call per packet.
    #[inline]
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let n16 = u16::try_from(n).ok()?;
        // SAFETY: we own the mbuf exclusively; only its plain length and offset
        // fields change.
        let m = unsafe { self.raw.as_mut() };
        if n16 > m.data_off {
            return None;
        }
        m.data_off -= n16;
        m.data_len += n16;
        m.pkt_len += u32::from(n16);
        // SAFETY: data_off stays within the buffer (it was >= n); the n bytes
        // from it are the headroom just given to the data area, ours alone.
        Some(unsafe {
            std::slice::from_raw_parts_mut((m.buf_addr as *mut u8).add(usize::from(m.data_off)), n)
        })
    }

    /// As `rte_pktmbuf_adj` (single segment), in Rust.
    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        let Ok(n16) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: we own the mbuf exclusively; only its plain length and offset
        // fields change.
        let m = unsafe { self.raw.as_mut() };
        if n16 > m.data_len {
            return false;
        }
        m.data_len -= n16;
        m.data_off += n16;
        m.pkt_len -= u32::from(n16);
        true
    }

    /// As `rte_pktmbuf_append`, in Rust for a single segment (TOA's
    /// insertion grows the handshake's ACK at its end); DPDK's out-of-line
    /// wrapper for a chain.
    #[inline]
    fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        let n16 = u16::try_from(n).ok()?;
        if self.m().nb_segs != 1 {
            // SAFETY: valid owned mbuf; returns NULL when tailroom is insufficient.
            let p = unsafe { dpdk_sys::rte_pktmbuf_append(self.raw.as_ptr(), n16) };
            if p.is_null() {
                return None;
            }
            // SAFETY: the n bytes at p were just added to the data area.
            return Some(unsafe { std::slice::from_raw_parts_mut(p as *mut u8, n) });
        }
        // SAFETY: we own the mbuf exclusively; only its plain length fields
        // change.
        let m = unsafe { self.raw.as_mut() };
        let tail = u32::from(m.data_off) + u32::from(m.data_len);
        if tail + u32::from(n16) > u32::from(m.buf_len) {
            return None;
        }
        m.data_len += n16;
        m.pkt_len += u32::from(n16);
        // SAFETY: data_off + data_len + n stays within buf_len (checked): the
        // n bytes from the old end are tailroom just given to the data area,
        // ours alone.
        Some(unsafe {
            std::slice::from_raw_parts_mut((m.buf_addr as *mut u8).add(tail as usize), n)
        })
    }

    /// As `rte_pktmbuf_trim`, in Rust for a single segment (every TOA
    /// insertion drops the padding); DPDK's out-of-line wrapper for a chain.
    #[inline]
    fn trim(&mut self, n: usize) -> bool {
        let Ok(n16) = u16::try_from(n) else {
            return false;
        };
        if self.m().nb_segs != 1 {
            // SAFETY: valid owned mbuf; returns -1 when n > data_len.
            return unsafe { dpdk_sys::rte_pktmbuf_trim(self.raw.as_ptr(), n16) == 0 };
        }
        // SAFETY: we own the mbuf exclusively; only its plain length fields
        // change.
        let m = unsafe { self.raw.as_mut() };
        if n16 > m.data_len {
            return false;
        }
        m.data_len -= n16;
        m.pkt_len -= u32::from(n16);
        true
    }

    #[inline]
    fn len(&self) -> usize {
        self.m().data_len as usize
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; it goes back to its pool.
        unsafe { dpdk_sys::rte_pktmbuf_free(self.raw.as_ptr()) }
    }
}
