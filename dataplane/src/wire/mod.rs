//! Wire formats: zero-copy views over packet bytes and the in-place rewrites the
//! forwarding methods need (ARP reply, ICMP echo reply, NAT address/port rewrites).
//!
//! Everything here works on plain byte slices, so it is unit-tested without EAL.
//! Each protocol view checks lengths once in `new_checked`; after that no accessor
//! can index out of bounds. Nothing here allocates, logs or panics on packet content,
//! and there is no `unsafe`: the DPDK `Mbuf` reaches this code through [`PacketBuf`].

pub mod arp;
pub mod checksum;
pub mod classify;
pub mod ethernet;
pub mod icmp;
pub mod icmp_err;
pub mod icmpv6;
pub mod ipip;
pub mod ipv4;
pub mod ipv6;
pub mod nat;
pub mod nat64;
pub mod ndp;
pub mod proxy_proto;
pub mod tcp;
pub mod toa;
pub mod udp;

pub use arp::ArpPacket;
pub use classify::{classify, classify_rx, Frag, IpFamily, IpMeta, Packet};
pub use ethernet::{EtherType, EthernetFrame, MacAddr};
pub use icmp::Icmpv4Packet;
pub use icmpv6::Icmpv6Packet;
pub use ipv4::Ipv4Packet;
pub use ipv6::Ipv6Packet;
pub use tcp::TcpPacket;
pub use udp::UdpPacket;

/// IANA protocol numbers the dataplane looks at.
pub mod ip_proto {
    pub const HOPOPT: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6: u8 = 41;
    pub const IPV6_ROUTE: u8 = 43;
    pub const IPV6_FRAG: u8 = 44;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const IPV6_NONXT: u8 = 59;
    pub const IPV6_OPTS: u8 = 60;
}

/// A packet buffer whose front and back can grow and shrink: what the packet path
/// needs from an mbuf (prepend an outer header for TUN, strip one, pad or trim).
///
/// Implemented by the DPDK `Mbuf` and by [`VecBuf`] for tests.
pub trait PacketBuf {
    /// The packet bytes.
    fn data(&self) -> &[u8];
    fn data_mut(&mut self) -> &mut [u8];
    /// Grows the packet by `n` bytes at the front; returns the new front bytes
    /// (uninitialised content), or `None` if the headroom is too small.
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]>;
    /// Strips `n` bytes from the front; `false` (and unchanged) if shorter than `n`.
    fn adj(&mut self, n: usize) -> bool;
    /// Grows the packet by `n` bytes at the end; returns the new tail bytes, or
    /// `None` if the tailroom is too small.
    fn append(&mut self, n: usize) -> Option<&mut [u8]>;
    /// Strips `n` bytes from the end; `false` (and unchanged) if shorter than `n`.
    fn trim(&mut self, n: usize) -> bool;
    /// Packet length in bytes.
    fn len(&self) -> usize {
        self.data().len()
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A hint that the packet's first bytes are read soon: an mbuf starts
    /// fetching its data's cache line (the core does this for a whole burst
    /// before classifying it, so the misses overlap); byte buffers do nothing.
    #[inline]
    fn prefetch(&self) {}
    /// Whether the NIC verified this received frame's IPv4 header checksum
    /// and found it good (rx checksum offload); `false` when unknown, which
    /// makes the software check it.
    #[inline]
    fn ip_csum_good(&self) -> bool {
        false
    }
    /// Replace the content with `bytes`. `false` if they do not fit.
    fn write_from(&mut self, bytes: &[u8]) -> bool {
        if !self.trim(self.len()) {
            return false;
        }
        match self.append(bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }
}

/// A `Vec<u8>` packet buffer with headroom, standing in for an mbuf in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VecBuf {
    buf: Vec<u8>,
    head: usize,
    /// A label a test gives the buffer to follow it through the core
    /// (`testkit::TestIo` records where each tag went); 0: none.
    tag: u32,
}

impl VecBuf {
    /// Same headroom as a DPDK mbuf (`RTE_PKTMBUF_HEADROOM`).
    pub const DEFAULT_HEADROOM: usize = 128;

    pub fn new(data: &[u8]) -> VecBuf {
        VecBuf::with_headroom(data, Self::DEFAULT_HEADROOM)
    }

    /// Room after the headroom, as an mbuf of DPDK's default data room
    /// (`RTE_MBUF_DEFAULT_DATAROOM`) has: a frame grows at its end without
    /// a reallocation.
    pub const DEFAULT_DATA_ROOM: usize = 2048;

    pub fn with_headroom(data: &[u8], headroom: usize) -> VecBuf {
        let mut buf = Vec::with_capacity(headroom + data.len().max(Self::DEFAULT_DATA_ROOM));
        buf.resize(headroom, 0);
        buf.extend_from_slice(data);
        VecBuf {
            buf,
            head: headroom,
            tag: 0,
        }
    }

    /// [`VecBuf::new`] labelled with `tag` (non-zero), which stays with the
    /// buffer through every rewrite.
    pub fn tagged(data: &[u8], tag: u32) -> VecBuf {
        VecBuf {
            tag,
            ..VecBuf::new(data)
        }
    }

    /// The label given by [`VecBuf::tagged`]; 0 for other buffers.
    pub fn tag(&self) -> u32 {
        self.tag
    }

    /// Bytes still free in front of the packet.
    pub fn headroom(&self) -> usize {
        self.head
    }

    /// Make this buffer hold `data` again with the default headroom, reusing
    /// its allocation (benchmarks recycle buffers this way).
    pub fn refill(&mut self, data: &[u8]) {
        self.buf.resize(Self::DEFAULT_HEADROOM, 0);
        self.buf.extend_from_slice(data);
        self.head = Self::DEFAULT_HEADROOM;
    }
}

impl PacketBuf for VecBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        &self.buf[self.head..]
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.head..]
    }

    #[inline]
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let new_head = self.head.checked_sub(n)?;
        let old_head = self.head;
        self.head = new_head;
        self.buf.get_mut(new_head..old_head)
    }

    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        if n > self.len() {
            return false;
        }
        self.head += n;
        true
    }

    #[inline]
    fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        let old_end = self.buf.len();
        if n <= 16 {
            // A few zeros pushed: cheaper than `resize`'s fill (a call).
            for _ in 0..n {
                self.buf.push(0);
            }
        } else {
            self.buf.resize(old_end.checked_add(n)?, 0);
        }
        self.buf.get_mut(old_end..)
    }

    #[inline]
    fn trim(&mut self, n: usize) -> bool {
        if n > self.len() {
            return false;
        }
        self.buf.truncate(self.buf.len() - n);
        true
    }

    #[inline]
    fn len(&self) -> usize {
        self.buf.len() - self.head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vecbuf_grows_and_shrinks_at_both_ends() {
        let mut b = VecBuf::with_headroom(&[1, 2, 3], 4);
        assert_eq!(b.data(), &[1, 2, 3]);
        b.prepend(2).unwrap().copy_from_slice(&[9, 8]);
        assert_eq!(b.data(), &[9, 8, 1, 2, 3]);
        assert!(b.prepend(3).is_none());
        assert_eq!(b.headroom(), 2);
        b.append(1).unwrap()[0] = 7;
        assert_eq!(b.data(), &[9, 8, 1, 2, 3, 7]);
        assert!(b.adj(2));
        assert!(b.trim(1));
        assert_eq!(b.data(), &[1, 2, 3]);
        assert!(!b.adj(4));
        assert!(!b.trim(4));
        assert!(b.trim(3));
        assert!(b.is_empty());
    }
}
