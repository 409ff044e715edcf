//! What the LVS core needs of the world to send packets: a buffer type and
//! three calls. The worker's DPDK shell implements it with mbufs, tx queues and
//! the hand-over rings; tests implement it with byte buffers and vectors, so
//! the whole core runs without EAL.

use crate::wire::PacketBuf;

pub trait Io {
    /// The packet buffer (an mbuf, or `wire::VecBuf` in tests).
    type Buf: PacketBuf;
    /// Queue `m` (an Ethernet frame) for transmission on port index `port`.
    fn send(&mut self, port: usize, m: Self::Buf);
    /// A fresh, empty buffer (ARP requests, ICMP errors), or `None` when none
    /// is left.
    fn alloc(&mut self) -> Option<Self::Buf>;
    /// Pass `m`, received on port index `port`, to worker `to`, which owns
    /// its connection.
    fn hand_over(&mut self, to: usize, m: Self::Buf, port: usize);
    /// Pass `m`, received on port index `port`, up to that port's kernel
    /// interface (the exception path, `crate::kni`). `Err(m)` when the port
    /// has none (the caller drops and counts it) or its queue is full.
    fn to_kernel(&mut self, port: usize, m: Self::Buf) -> Result<(), Self::Buf> {
        let _ = port;
        Err(m)
    }
}
