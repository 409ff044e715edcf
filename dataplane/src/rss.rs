//! RSS pre-calculation for FULLNAT: which rx queue the NIC will deliver a reply to.
//!
//! A FULLNAT reply travels RIP:rport -> LIP:lport, and the director picks `lport`.
//! The NIC hashes the reply's tuple with the Toeplitz function over the port's RSS
//! key and looks the low bits of the hash up in its redirection table (RETA) to
//! choose the rx queue. Computing that here, exactly as the NIC does, lets a worker
//! pick a local port whose replies arrive on its own queue: no hand-over needed.
//!
//! Toeplitz is linear over GF(2): the hash of a tuple is the XOR of the
//! contributions of its bytes, each depending only on the byte's value and its
//! position. [`Toeplitz`] keeps those contributions in per-position tables, so a
//! full hash is one lookup per input byte, and the hash of a reply with everything
//! fixed but the destination port is computed once ([`Toeplitz::reply_base_v4`])
//! and then finished for each candidate port with two lookups
//! ([`Toeplitz::dport_v4`]).
//!
//! Inputs are laid out as NICs feed them (Microsoft's RSS specification): source
//! address, destination address, source port, destination port, all in network
//! byte order. This module is pure: no DPDK, no I/O; `dpdk::rss` reads a port's key
//! and RETA and checks this implementation against DPDK's `rte_softrss`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;

/// Byte offsets of the hash input fields (network byte order, as the NIC reads them).
mod field {
    pub mod v4 {
        pub const SRC: usize = 0;
        pub const DST: usize = 4;
        pub const SPORT: usize = 8;
        pub const DPORT: usize = 10;
    }
    pub mod v6 {
        pub const SRC: usize = 0;
        pub const DST: usize = 16;
        pub const SPORT: usize = 32;
        pub const DPORT: usize = 34;
        pub const L4_LEN: usize = 36;
    }
}

/// The shortest key accepted: the longest input (IPv6 with ports, 36 bytes) plus
/// the 4 bytes the 32-bit window slides over. NICs use 40 (most) or 52 bytes.
pub const KEY_LEN_MIN: usize = field::v6::L4_LEN + 4;

/// Why an RSS key or redirection table was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RssError {
    #[error("RSS key is {0} bytes; at least {KEY_LEN_MIN} needed to hash IPv6 with ports")]
    KeyTooShort(usize),
    #[error("RSS redirection table has {0} entries; a power of two is needed")]
    RetaSize(usize),
    #[error("RSS redirection table over zero queues")]
    NoQueues,
}

/// The Toeplitz hash over one RSS key, with per-byte-position lookup tables.
#[derive(Clone)]
pub struct Toeplitz {
    key: Vec<u8>,
    /// `table[p][b]`: the hash contribution of byte value `b` at input position `p`.
    table: Box<[[u32; 256]]>,
}

impl Toeplitz {
    /// Build the tables for `key` (the port's RSS key, as bytes in the order the
    /// NIC is programmed with). Inputs up to `key.len() - 4` bytes can be hashed.
    pub fn new(key: &[u8]) -> Result<Toeplitz, RssError> {
        if key.len() < KEY_LEN_MIN {
            return Err(RssError::KeyTooShort(key.len()));
        }
        // The 32 key bits starting at bit `b` (bit 0 = MSB of key[0]): what one set
        // input bit at position `b` contributes.
        let window = |b: usize| -> u32 {
            let at = |i: usize| u64::from(key.get(i).copied().unwrap_or(0));
            let i = b / 8;
            let w = at(i) << 32 | at(i + 1) << 24 | at(i + 2) << 16 | at(i + 3) << 8 | at(i + 4);
            (w >> (8 - b % 8)) as u32
        };
        let positions = key.len() - 4;
        let mut table = vec![[0u32; 256]; positions].into_boxed_slice();
        for (p, row) in table.iter_mut().enumerate() {
            let bit: [u32; 8] = std::array::from_fn(|k| window(8 * p + k));
            for (v, slot) in row.iter_mut().enumerate() {
                *slot = (0..8)
                    .filter(|k| v & (0x80 >> k) != 0)
                    .fold(0, |h, k| h ^ bit[k]);
            }
        }
        Ok(Toeplitz {
            key: key.to_vec(),
            table,
        })
    }

    /// The key the tables were built from.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Hash of `input` (a NIC input layout, network byte order).
    ///
    /// # Panics
    /// If `input` is longer than `key().len() - 4` bytes.
    #[inline]
    pub fn hash(&self, input: &[u8]) -> u32 {
        self.partial(0, input)
    }

    /// Contribution of `bytes` placed at byte `offset` of the input; the hash of
    /// an input is the XOR of the partials of any split of it.
    ///
    /// # Panics
    /// If `offset + bytes.len()` exceeds `key().len() - 4`.
    #[inline]
    pub fn partial(&self, offset: usize, bytes: &[u8]) -> u32 {
        self.table[offset..offset + bytes.len()]
            .iter()
            .zip(bytes)
            .fold(0, |h, (row, &b)| h ^ row[usize::from(b)])
    }

    /// Contribution of a 16-bit port at byte `offset`: two lookups.
    #[inline]
    fn port_at(&self, offset: usize, port: u16) -> u32 {
        let [hi, lo] = port.to_be_bytes();
        self.table[offset][usize::from(hi)] ^ self.table[offset + 1][usize::from(lo)]
    }

    /// Hash of an IPv4 TCP/UDP packet (what the NIC computes with L4 hashing on).
    pub fn hash_v4(&self, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> u32 {
        self.hash_v4_l3(src, dst)
            ^ self.partial(field::v4::SPORT, &sport.to_be_bytes())
            ^ self.port_at(field::v4::DPORT, dport)
    }

    /// Hash of an IPv4 packet over addresses only (L3 hashing, fragments).
    pub fn hash_v4_l3(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
        self.partial(field::v4::SRC, &src.octets()) ^ self.partial(field::v4::DST, &dst.octets())
    }

    /// Hash of an IPv6 TCP/UDP packet (what the NIC computes with L4 hashing on).
    pub fn hash_v6(&self, src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16) -> u32 {
        self.hash_v6_l3(src, dst)
            ^ self.partial(field::v6::SPORT, &sport.to_be_bytes())
            ^ self.port_at(field::v6::DPORT, dport)
    }

    /// Hash of an IPv6 packet over addresses only.
    pub fn hash_v6_l3(&self, src: Ipv6Addr, dst: Ipv6Addr) -> u32 {
        self.partial(field::v6::SRC, &src.octets()) ^ self.partial(field::v6::DST, &dst.octets())
    }

    /// Hash of the FULLNAT reply RIP:rport -> LIP:lport without the contribution
    /// of `lport`: XOR [`Toeplitz::dport_v4`] to finish it for one candidate.
    pub fn reply_base_v4(&self, rip: Ipv4Addr, rport: u16, lip: Ipv4Addr) -> u32 {
        self.hash_v4_l3(rip, lip) ^ self.partial(field::v4::SPORT, &rport.to_be_bytes())
    }

    /// Contribution of an IPv4 packet's destination port (the reply's `lport`).
    #[inline]
    pub fn dport_v4(&self, dport: u16) -> u32 {
        self.port_at(field::v4::DPORT, dport)
    }

    /// IPv6 counterpart of [`Toeplitz::reply_base_v4`].
    pub fn reply_base_v6(&self, rip: Ipv6Addr, rport: u16, lip: Ipv6Addr) -> u32 {
        self.hash_v6_l3(rip, lip) ^ self.partial(field::v6::SPORT, &rport.to_be_bytes())
    }

    /// Contribution of an IPv6 packet's destination port (the reply's `lport`).
    #[inline]
    pub fn dport_v6(&self, dport: u16) -> u32 {
        self.port_at(field::v6::DPORT, dport)
    }
}

impl std::fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toeplitz").field("key", &self.key).finish()
    }
}

/// A redirection table: entry `hash & (len - 1)` is the rx queue of a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reta {
    queues: Vec<u16>,
    mask: u32,
}

impl Reta {
    /// A table as read from the port; its length must be a power of two.
    pub fn new(queues: Vec<u16>) -> Result<Reta, RssError> {
        let len = queues.len();
        if !len.is_power_of_two() || u32::try_from(len).is_err() {
            return Err(RssError::RetaSize(len));
        }
        Ok(Reta {
            mask: len as u32 - 1,
            queues,
        })
    }

    /// Entry `i` -> queue `i % nqueues`: what PMDs program when the application
    /// leaves the RETA alone.
    pub fn round_robin(size: usize, nqueues: u16) -> Result<Reta, RssError> {
        if nqueues == 0 {
            return Err(RssError::NoQueues);
        }
        Reta::new(
            (0..size)
                .map(|i| (i % usize::from(nqueues)) as u16)
                .collect(),
        )
    }

    /// The entries, index = low bits of the hash.
    pub fn entries(&self) -> &[u16] {
        &self.queues
    }

    /// The rx queue the NIC delivers a packet with RSS hash `hash` to.
    #[inline]
    pub fn queue_of(&self, hash: u32) -> u16 {
        self.queues[(hash & self.mask) as usize]
    }

    /// The fraction of entries pointing at `queue`: the share of uniformly
    /// hashed flows it receives.
    pub fn share(&self, queue: u16) -> f64 {
        let n = self.queues.iter().filter(|&&q| q == queue).count();
        n as f64 / self.queues.len() as f64
    }
}

/// A reply tuple hashed up to its destination port (the local port still to choose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyBase {
    hash: u32,
    v6: bool,
}

/// One port's RSS as the NIC applies it to FULLNAT replies. Queue numbers are the
/// port's rx queues; which worker polls which queue is the caller's mapping.
#[derive(Debug, Clone)]
pub struct RssSteer {
    toeplitz: Toeplitz,
    reta: Reta,
}

impl RssSteer {
    pub fn new(toeplitz: Toeplitz, reta: Reta) -> RssSteer {
        RssSteer { toeplitz, reta }
    }

    pub fn toeplitz(&self) -> &Toeplitz {
        &self.toeplitz
    }

    pub fn reta(&self) -> &Reta {
        &self.reta
    }

    /// Hash the reply RIP:rport -> LIP:? once per new connection. `None` when the
    /// two addresses are of different families (no such reply exists).
    pub fn reply_base(&self, rip: IpAddr, rport: u16, lip: IpAddr) -> Option<ReplyBase> {
        match (rip, lip) {
            (IpAddr::V4(r), IpAddr::V4(l)) => Some(ReplyBase {
                hash: self.toeplitz.reply_base_v4(r, rport, l),
                v6: false,
            }),
            (IpAddr::V6(r), IpAddr::V6(l)) => Some(ReplyBase {
                hash: self.toeplitz.reply_base_v6(r, rport, l),
                v6: true,
            }),
            _ => None,
        }
    }

    /// The rx queue of the reply whose base is `base` when the local port is `lport`.
    #[inline]
    pub fn queue_of(&self, base: ReplyBase, lport: u16) -> u16 {
        let dport = if base.v6 {
            self.toeplitz.dport_v6(lport)
        } else {
            self.toeplitz.dport_v4(lport)
        };
        self.reta.queue_of(base.hash ^ dport)
    }

    /// Whether replies to `lport` land on `queue`.
    #[inline]
    pub fn lport_ok(&self, base: ReplyBase, lport: u16, queue: u16) -> bool {
        self.queue_of(base, lport) == queue
    }

    /// The candidates among `lports` whose replies land on `queue`, in order.
    pub fn lports_for<'a, I>(
        &'a self,
        base: ReplyBase,
        queue: u16,
        lports: I,
    ) -> impl Iterator<Item = u16> + 'a
    where
        I: IntoIterator<Item = u16>,
        I::IntoIter: 'a,
    {
        lports
            .into_iter()
            .filter(move |&p| self.lport_ok(base, p, queue))
    }

    /// The rx queue of the reply RIP:rport -> LIP:lport (`None`: mixed families).
    pub fn reply_queue(&self, rip: IpAddr, rport: u16, lip: IpAddr, lport: u16) -> Option<u16> {
        self.reply_base(rip, rport, lip)
            .map(|base| self.queue_of(base, lport))
    }

    /// The fraction of `lports` whose replies land on `queue` (how many tries a
    /// worker needs on average; about `reta().share(queue)` with a sound key).
    pub fn lport_share(&self, base: ReplyBase, lports: RangeInclusive<u16>, queue: u16) -> f64 {
        let total = lports.len();
        if total == 0 {
            return 0.0;
        }
        self.lports_for(base, queue, lports).count() as f64 / total as f64
    }
}

/// Published RSS test vectors, shared by this module's tests and `dpdk::rss`'s.
#[cfg(test)]
pub(crate) mod vectors {
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The key of Microsoft's "Verifying the RSS Hash Calculation" and Intel's
    /// 82599 datasheet (7.1.2.8.3, RSS Verification Suite).
    pub const KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    pub struct Case<A> {
        pub dst: A,
        pub dport: u16,
        pub src: A,
        pub sport: u16,
        pub hash_l3: u32,
        pub hash_l4: u32,
    }

    /// IPv4 cases: (destination, source) as the published table lists them.
    pub fn v4() -> [Case<Ipv4Addr>; 5] {
        let c = |dst: [u8; 4], dport, src: [u8; 4], sport, hash_l3, hash_l4| Case {
            dst: Ipv4Addr::from(dst),
            dport,
            src: Ipv4Addr::from(src),
            sport,
            hash_l3,
            hash_l4,
        };
        [
            c(
                [161, 142, 100, 80],
                1766,
                [66, 9, 149, 187],
                2794,
                0x323e8fc2,
                0x51ccc178,
            ),
            c(
                [65, 69, 140, 83],
                4739,
                [199, 92, 111, 2],
                14230,
                0xd718262a,
                0xc626b0ea,
            ),
            c(
                [12, 22, 207, 184],
                38024,
                [24, 19, 198, 95],
                12898,
                0xd2d0a5de,
                0x5c2b394a,
            ),
            c(
                [209, 142, 163, 6],
                2217,
                [38, 27, 205, 30],
                48228,
                0x82989176,
                0xafc7327f,
            ),
            c(
                [202, 188, 127, 2],
                1303,
                [153, 39, 163, 191],
                44251,
                0x5d1809c5,
                0x10e828a2,
            ),
        ]
    }

    /// IPv6 cases.
    pub fn v6() -> [Case<Ipv6Addr>; 3] {
        let c = |dst: &str, dport, src: &str, sport, hash_l3, hash_l4| Case {
            dst: dst.parse().unwrap(),
            dport,
            src: src.parse().unwrap(),
            sport,
            hash_l3,
            hash_l4,
        };
        [
            c(
                "3ffe:2501:200:3::1",
                1766,
                "3ffe:2501:200:1fff::7",
                2794,
                0x2cc18cd5,
                0x40207d3d,
            ),
            c(
                "ff02::1",
                4739,
                "3ffe:501:8::260:97ff:fe40:efab",
                14230,
                0x0f0c461c,
                0xdde51bbf,
            ),
            c(
                "fe80::200:f8ff:fe21:67cf",
                38024,
                "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
                44251,
                0x4b61e985,
                0x02d1feef,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Toeplitz straight from the definition, bit by bit: for every set input bit,
    /// XOR in the 32-bit key window that starts at that bit.
    fn toeplitz_bitwise(key: &[u8], input: &[u8]) -> u32 {
        let key_bit = |i: usize| (key[i / 8] >> (7 - i % 8)) & 1;
        let mut hash = 0u32;
        for i in 0..input.len() * 8 {
            if (input[i / 8] >> (7 - i % 8)) & 1 == 1 {
                let window = (0..32).fold(0u32, |w, k| w << 1 | u32::from(key_bit(i + k)));
                hash ^= window;
            }
        }
        hash
    }

    fn v4_input(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
        [
            &src.octets()[..],
            &dst.octets(),
            &sport.to_be_bytes(),
            &dport.to_be_bytes(),
        ]
        .concat()
    }

    fn v6_input(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16) -> Vec<u8> {
        [
            &src.octets()[..],
            &dst.octets(),
            &sport.to_be_bytes(),
            &dport.to_be_bytes(),
        ]
        .concat()
    }

    #[test]
    fn microsoft_vectors_ipv4() {
        let t = Toeplitz::new(&vectors::KEY).unwrap();
        for c in vectors::v4() {
            assert_eq!(
                t.hash_v4_l3(c.src, c.dst),
                c.hash_l3,
                "{} -> {}",
                c.src,
                c.dst
            );
            assert_eq!(
                t.hash_v4(c.src, c.dst, c.sport, c.dport),
                c.hash_l4,
                "{}:{} -> {}:{}",
                c.src,
                c.sport,
                c.dst,
                c.dport
            );
            let input = v4_input(c.src, c.dst, c.sport, c.dport);
            assert_eq!(toeplitz_bitwise(&vectors::KEY, &input), c.hash_l4);
            assert_eq!(toeplitz_bitwise(&vectors::KEY, &input[..8]), c.hash_l3);
        }
    }

    #[test]
    fn microsoft_vectors_ipv6() {
        let t = Toeplitz::new(&vectors::KEY).unwrap();
        for c in vectors::v6() {
            assert_eq!(
                t.hash_v6_l3(c.src, c.dst),
                c.hash_l3,
                "{} -> {}",
                c.src,
                c.dst
            );
            assert_eq!(
                t.hash_v6(c.src, c.dst, c.sport, c.dport),
                c.hash_l4,
                "{}:{} -> {}:{}",
                c.src,
                c.sport,
                c.dst,
                c.dport
            );
            let input = v6_input(c.src, c.dst, c.sport, c.dport);
            assert_eq!(toeplitz_bitwise(&vectors::KEY, &input), c.hash_l4);
        }
    }

    #[test]
    fn reply_queue_of_a_published_tuple() {
        // The first IPv4 vector read as a reply: RIP 66.9.149.187:2794 -> LIP
        // 161.142.100.80:1766 hashes to 0x51ccc178; entry 0x78 of a 128-entry
        // round-robin table over 3 queues is 120 % 3 = 0.
        let c = &vectors::v4()[0];
        let steer = RssSteer::new(
            Toeplitz::new(&vectors::KEY).unwrap(),
            Reta::round_robin(128, 3).unwrap(),
        );
        let q = steer.reply_queue(c.src.into(), c.sport, c.dst.into(), c.dport);
        assert_eq!(q, Some(0));
        let base = steer
            .reply_base(c.src.into(), c.sport, c.dst.into())
            .unwrap();
        assert!(steer.lport_ok(base, c.dport, 0));
        assert!(!steer.lport_ok(base, c.dport, 1));
    }

    #[test]
    fn short_keys_and_odd_tables_are_refused() {
        assert_eq!(
            Toeplitz::new(&vectors::KEY[..39]).unwrap_err(),
            RssError::KeyTooShort(39)
        );
        assert!(Toeplitz::new(&[0u8; 52]).is_ok());
        assert_eq!(Reta::new(vec![0; 96]).unwrap_err(), RssError::RetaSize(96));
        assert_eq!(Reta::new(vec![]).unwrap_err(), RssError::RetaSize(0));
        assert_eq!(Reta::round_robin(64, 0).unwrap_err(), RssError::NoQueues);
        let reta = Reta::round_robin(8, 3).unwrap();
        assert_eq!(reta.entries(), &[0, 1, 2, 0, 1, 2, 0, 1]);
        assert_eq!(reta.queue_of(0xffff_fffd), 2);
    }

    #[test]
    fn mixed_families_have_no_reply() {
        let steer = RssSteer::new(
            Toeplitz::new(&vectors::KEY).unwrap(),
            Reta::round_robin(64, 2).unwrap(),
        );
        let v4: IpAddr = Ipv4Addr::new(10, 0, 0, 1).into();
        let v6: IpAddr = Ipv6Addr::LOCALHOST.into();
        assert_eq!(steer.reply_base(v4, 80, v6), None);
        assert_eq!(steer.reply_queue(v6, 80, v4, 1024), None);
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), KEY_LEN_MIN..=52)
    }

    fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
        any::<[u8; 4]>().prop_map(Ipv4Addr::from)
    }

    fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
        any::<[u8; 16]>().prop_map(Ipv6Addr::from)
    }

    /// A RETA of 64..=512 entries filled at random from `nqueues` queues.
    fn reta(nqueues: u16) -> impl Strategy<Value = Reta> {
        (6u32..=9)
            .prop_flat_map(move |bits| proptest::collection::vec(0..nqueues, 1usize << bits))
            .prop_map(|q| Reta::new(q).unwrap())
    }

    proptest! {
        #[test]
        fn tables_match_the_definition(
            key in key(),
            input in proptest::collection::vec(any::<u8>(), 0..=36),
        ) {
            let t = Toeplitz::new(&key).unwrap();
            prop_assert_eq!(t.hash(&input), toeplitz_bitwise(&key, &input));
        }

        #[test]
        fn base_and_dport_make_the_full_hash_v4(
            key in key(), rip in ipv4(), lip in ipv4(), rport: u16, lport: u16,
        ) {
            let t = Toeplitz::new(&key).unwrap();
            let full = t.hash_v4(rip, lip, rport, lport);
            prop_assert_eq!(t.reply_base_v4(rip, rport, lip) ^ t.dport_v4(lport), full);
            prop_assert_eq!(full, t.hash(&v4_input(rip, lip, rport, lport)));
            prop_assert_eq!(t.hash_v4_l3(rip, lip), t.hash(&v4_input(rip, lip, 0, 0)));
        }

        #[test]
        fn base_and_dport_make_the_full_hash_v6(
            key in key(), rip in ipv6(), lip in ipv6(), rport: u16, lport: u16,
        ) {
            let t = Toeplitz::new(&key).unwrap();
            let full = t.hash_v6(rip, lip, rport, lport);
            prop_assert_eq!(t.reply_base_v6(rip, rport, lip) ^ t.dport_v6(lport), full);
            prop_assert_eq!(full, t.hash(&v6_input(rip, lip, rport, lport)));
            prop_assert_eq!(t.hash_v6_l3(rip, lip), t.hash(&v6_input(rip, lip, 0, 0)));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Every chosen lport's reply, hashed in full and looked up in the RETA,
        /// lands on the queue it was chosen for, and no qualifying port is skipped.
        #[test]
        fn chosen_lports_land_on_their_queue(
            key in key(),
            (reta, queue) in (1u16..=16).prop_flat_map(|n| (reta(n), 0..n)),
            v6: bool,
            (rip4, lip4, rip6, lip6) in (ipv4(), ipv4(), ipv6(), ipv6()),
            rport: u16,
        ) {
            let (rip, lip): (IpAddr, IpAddr) = if v6 {
                (rip6.into(), lip6.into())
            } else {
                (rip4.into(), lip4.into())
            };
            let steer = RssSteer::new(Toeplitz::new(&key).unwrap(), reta.clone());
            let base = steer.reply_base(rip, rport, lip).unwrap();
            let chosen: Vec<u16> = steer.lports_for(base, queue, 1024..=65535).collect();
            let t = steer.toeplitz();
            let full = |lport| match (rip, lip) {
                (IpAddr::V4(r), IpAddr::V4(l)) => t.hash_v4(r, l, rport, lport),
                (IpAddr::V6(r), IpAddr::V6(l)) => t.hash_v6(r, l, rport, lport),
                _ => unreachable!(),
            };
            for &lport in &chosen {
                prop_assert_eq!(reta.queue_of(full(lport)), queue, "lport {}", lport);
            }
            let expected = (1024..=65535u16).filter(|&p| reta.queue_of(full(p)) == queue).count();
            prop_assert_eq!(chosen.len(), expected);
        }

        /// With the round-robin RETA each of N queues gets about 1/N of the local
        /// ports, whatever the reply's addresses: a worker finds a port in about N
        /// tries. (Exact up to RETA rounding while the key's low hash bits over the
        /// port are full rank, as with the published key.)
        #[test]
        fn uniform_reta_gives_each_queue_its_share(
            nqueues in 1u16..=16,
            bits in 6u32..=9,
            rip in ipv4(), lip in ipv4(), rport: u16,
        ) {
            let reta = Reta::round_robin(1 << bits, nqueues).unwrap();
            let steer = RssSteer::new(Toeplitz::new(&vectors::KEY).unwrap(), reta);
            let base = steer.reply_base(rip.into(), rport, lip.into()).unwrap();
            let mut count = vec![0u32; usize::from(nqueues)];
            for lport in 0..=65535 {
                count[usize::from(steer.queue_of(base, lport))] += 1;
            }
            for (q, &n) in (0..nqueues).zip(&count) {
                let share = f64::from(n) / 65536.0;
                prop_assert!(
                    (share - 1.0 / f64::from(nqueues)).abs() < 0.02,
                    "queue {} of {}: {}", q, nqueues, share
                );
                prop_assert!((share - steer.reta().share(q)).abs() < 1e-9);
            }
            let q = rport % nqueues;
            prop_assert_eq!(
                steer.lport_share(base, 0..=65535, q),
                f64::from(count[usize::from(q)]) / 65536.0
            );
        }
    }
}
