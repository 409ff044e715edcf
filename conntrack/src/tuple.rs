//! Connection tuples as the dataplane sees them on the wire, and their packed form.
//!
//! A [`Tuple`] is one packet's five-tuple as received (ports in host order). The
//! table never stores `Tuple`s: it stores [`Key`]s, the same fields packed into
//! fixed 16-byte address arrays plus a family bit per address, so IPv4 and IPv6
//! share one layout and comparisons are plain byte compares. This module owns
//! that packing and the keyed hash; it knows nothing about tables or time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// One direction of a connection, exactly as a packet carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// IP protocol: 6 TCP, 17 UDP (others are tracked with UDP semantics).
    pub proto: u8,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

impl Tuple {
    pub fn new(proto: u8, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Tuple {
        Tuple {
            proto,
            src,
            sport,
            dst,
            dport,
        }
    }

    pub fn tcp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Tuple {
        Tuple::new(PROTO_TCP, src, sport, dst, dport)
    }

    pub fn udp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Tuple {
        Tuple::new(PROTO_UDP, src, sport, dst, dport)
    }

    /// The same flow seen from the other end (source and destination swapped).
    pub fn reversed(&self) -> Tuple {
        Tuple::new(self.proto, self.dst, self.dport, self.src, self.sport)
    }
}

/// Which way a packet travels relative to the connection that matched it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client -> director, as received (CIP:cport -> VIP:vport).
    Original,
    /// Real server -> director, as received (RIP:rport -> CIP:cport or LIP:lport).
    Reply,
}

impl Direction {
    pub(crate) fn from_bit(b: u32) -> Direction {
        if b & 1 == 0 {
            Direction::Original
        } else {
            Direction::Reply
        }
    }
}

/// Family bits of a packed tuple: bit 0 set if src is IPv6, bit 1 if dst is.
pub(crate) const FAM_SRC_V6: u8 = 1;
pub(crate) const FAM_DST_V6: u8 = 2;

/// A tuple in wire form, as the table stores, hashes and compares it: no
/// enum tags, each address the little-endian value of its 16 stored bytes
/// (IPv4 in the first 4) with a family bit, so a key is built from a frame's
/// bytes and hashed and compared in registers. The packet path uses it
/// instead of [`Tuple`]; `Tuple` is the readable form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Key {
    pub(crate) src: u128,
    pub(crate) dst: u128,
    pub(crate) sport: u16,
    pub(crate) dport: u16,
    pub(crate) proto: u8,
    pub(crate) fam: u8,
}

pub(crate) fn pack_addr(a: IpAddr) -> ([u8; 16], bool) {
    let (b, v6) = addr_bits(a);
    (b.to_le_bytes(), v6)
}

pub(crate) fn unpack_addr(b: &[u8; 16], v6: bool) -> IpAddr {
    bits_addr(u128::from_le_bytes(*b), v6)
}

/// An address as a key holds it (the stored bytes read little-endian), and
/// whether it is IPv6.
#[inline]
pub(crate) fn addr_bits(a: IpAddr) -> (u128, bool) {
    match a {
        IpAddr::V4(v4) => (u128::from(u32::from_le_bytes(v4.octets())), false),
        IpAddr::V6(v6) => (u128::from_le_bytes(v6.octets()), true),
    }
}

#[inline]
pub(crate) fn bits_addr(b: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(b.to_le_bytes()))
    } else {
        IpAddr::V4(Ipv4Addr::from((b as u32).to_le_bytes()))
    }
}

impl Key {
    /// An IPv4 flow from its addresses as they sit in the header.
    #[inline]
    pub fn v4(proto: u8, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Key {
        Key {
            src: u128::from(u32::from_le_bytes(src)),
            dst: u128::from(u32::from_le_bytes(dst)),
            sport,
            dport,
            proto,
            fam: 0,
        }
    }

    /// An IPv6 flow from its addresses as they sit in the header.
    #[inline]
    pub fn v6(proto: u8, src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16) -> Key {
        Key {
            src: u128::from_le_bytes(src),
            dst: u128::from_le_bytes(dst),
            sport,
            dport,
            proto,
            fam: FAM_SRC_V6 | FAM_DST_V6,
        }
    }

    pub fn proto(&self) -> u8 {
        self.proto
    }
    pub fn sport(&self) -> u16 {
        self.sport
    }
    pub fn dport(&self) -> u16 {
        self.dport
    }

    /// The source address (built on demand: the key holds wire bytes).
    #[inline]
    pub fn src(&self) -> IpAddr {
        bits_addr(self.src, self.fam & FAM_SRC_V6 != 0)
    }

    /// The destination address.
    #[inline]
    pub fn dst(&self) -> IpAddr {
        bits_addr(self.dst, self.fam & FAM_DST_V6 != 0)
    }

    /// Both addresses as an IPv4 header holds them (source, destination),
    /// if both are IPv4: no `IpAddr` on the way.
    #[inline]
    pub fn v4_octets(&self) -> Option<([u8; 4], [u8; 4])> {
        if self.fam != 0 {
            return None;
        }
        Some((
            (self.src as u32).to_le_bytes(),
            (self.dst as u32).to_le_bytes(),
        ))
    }

    #[inline]
    pub fn from_tuple(t: &Tuple) -> Key {
        let (src, s6) = addr_bits(t.src);
        let (dst, d6) = addr_bits(t.dst);
        let mut fam = 0;
        if s6 {
            fam |= FAM_SRC_V6;
        }
        if d6 {
            fam |= FAM_DST_V6;
        }
        Key {
            src,
            dst,
            sport: t.sport,
            dport: t.dport,
            proto: t.proto,
            fam,
        }
    }

    pub fn to_tuple(self) -> Tuple {
        Tuple {
            proto: self.proto,
            src: bits_addr(self.src, self.fam & FAM_SRC_V6 != 0),
            sport: self.sport,
            dst: bits_addr(self.dst, self.fam & FAM_DST_V6 != 0),
            dport: self.dport,
        }
    }

    /// Keyed hash: the seed is per process, so a remote sender cannot aim
    /// many flows at one bucket (the table faces the internet). See
    /// [`KeyHasher`].
    #[inline]
    pub(crate) fn hash(&self, kh: &KeyHasher) -> u64 {
        // In the fields' memory order (`repr(C)`), so the compiler may
        // load them at once.
        let rest = u64::from(self.sport)
            | (u64::from(self.dport) << 16)
            | (u64::from(self.proto) << 32)
            | (u64::from(self.fam) << 40);
        let k = &kh.k;
        let h = if self.fam == 0 {
            // Both ends IPv4: each address fits in 32 bits, so the whole key
            // is two 64-bit words: one keyed multiply.
            fold_mul((self.src | self.dst << 32) as u64 ^ k[0], rest ^ k[1])
        } else {
            let s = fold_mul(self.src as u64 ^ k[0], (self.src >> 64) as u64 ^ k[1]);
            let d = fold_mul(self.dst as u64 ^ k[2], (self.dst >> 64) as u64 ^ k[3]);
            fold_mul(s ^ rest ^ k[1], d ^ k[0])
        };
        fold_mul(h ^ k[2], k[3])
    }
}

/// The 128-bit product of `a` and `b`, its halves xored (the "folded
/// multiply" of ahash's fallback, wyhash and rapidhash).
#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// The connection table's keyed hash of a [`Key`]: four 64-bit secrets
/// derived from the per-process seed; the key's words are xored with two of
/// them and multiplied as 64 x 64 -> 128 bits, the product's halves folded
/// (two such multiplies, one per address, and a third joining them for
/// IPv6), then one more keyed multiply spreads the result over all 64 bits
/// (the index takes its tag from the low half and the bucket from the high
/// half). This is the construction of wyhash/rapidhash and of ahash's own
/// fallback (what the table used before), without ahash's buffer, pad and
/// rotation bookkeeping.
///
/// Why it is fit for a table whose keys an attacker chooses: every word a
/// packet controls enters a multiply only after being xored with a secret,
/// so which keys collide depends on secrets the sender never sees (the hash
/// is not output anywhere: the index is per worker and never exposed; a
/// timing probe learns at most a bucket's fullness, not the product). A
/// multiplier chosen to be zero (`word == secret`, the folded multiply's
/// known weak point) needs the secret: a chance of 2^-64 per guess. The
/// table does not rely on the hash alone either: the cuckoo index keeps
/// every bucket at 8 slots (a flood of colliding keys fails its inserts,
/// it cannot grow a chain that lookups walk) and the full key is compared.
pub(crate) struct KeyHasher {
    k: [u64; 4],
}

impl KeyHasher {
    /// The four secrets from the one per-process seed (each an odd word:
    /// never a zero multiplier in the final round).
    pub(crate) fn new(seed: u64) -> KeyHasher {
        KeyHasher {
            k: [
                seed_mix(seed, 0x243f_6a88_85a3_08d3),
                seed_mix(seed, 0x1319_8a2e_0370_7344),
                seed_mix(seed, 0xa409_3822_299f_31d0),
                seed_mix(seed, 0x082e_fa98_ec4e_6c89) | 1,
            ],
        }
    }
}

/// splitmix64's finalizer of `x ^ k`: one seed, several independent words.
fn seed_mix(x: u64, k: u64) -> u64 {
    let mut z = x ^ k;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Derive the four ahash keys from the one per-process seed (the
/// persistence templates' hasher).
pub(crate) fn random_state(seed: u64) -> ahash::RandomState {
    ahash::RandomState::with_seeds(
        seed_mix(seed, 0x243f_6a88_85a3_08d3),
        seed_mix(seed, 0x1319_8a2e_0370_7344),
        seed_mix(seed, 0xa409_3822_299f_31d0),
        seed_mix(seed, 0x082e_fa98_ec4e_6c89),
    )
}

/// Keep the first `prefix_len` bits of `addr` (ipvsadm `-M netmask` for persistence).
/// Lengths beyond the family's width keep the whole address.
pub fn mask_addr(addr: IpAddr, prefix_len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let p = u32::from(prefix_len.min(32));
            let m = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let p = u32::from(prefix_len.min(128));
            let m = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips_both_families() {
        let v4 = Tuple::tcp(
            "10.0.0.1".parse().unwrap(),
            1234,
            "192.0.2.1".parse().unwrap(),
            80,
        );
        let v6 = Tuple::udp(
            "2001:db8::1".parse().unwrap(),
            53,
            "2001:db8::2".parse().unwrap(),
            5353,
        );
        let mixed = Tuple::tcp("10.0.0.1".parse().unwrap(), 1, "::1".parse().unwrap(), 2);
        for t in [v4, v6, mixed] {
            assert_eq!(Key::from_tuple(&t).to_tuple(), t);
        }
        // An IPv4 address and its IPv4-mapped IPv6 form are different flows.
        let mapped = Tuple::tcp(
            "::ffff:10.0.0.1".parse().unwrap(),
            1234,
            "::ffff:192.0.2.1".parse().unwrap(),
            80,
        );
        assert_ne!(Key::from_tuple(&v4), Key::from_tuple(&mapped));
    }

    #[test]
    fn wire_keys_are_the_tuples_keys() {
        let t = Tuple::tcp(
            "10.1.2.3".parse().unwrap(),
            40000,
            "192.0.2.9".parse().unwrap(),
            80,
        );
        let k = Key::v4(PROTO_TCP, [10, 1, 2, 3], 40000, [192, 0, 2, 9], 80);
        assert_eq!(k, Key::from_tuple(&t));
        assert_eq!(k.to_tuple(), t);
        assert_eq!(
            (k.src(), k.dst(), k.sport(), k.dport()),
            (t.src, t.dst, 40000, 80)
        );
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let t6 = Tuple::udp(a.into(), 53, b.into(), 5353);
        let k6 = Key::v6(PROTO_UDP, a.octets(), 53, b.octets(), 5353);
        assert_eq!(k6, Key::from_tuple(&t6));
        assert_eq!(k6.to_tuple(), t6);
        // Wire octets only when both ends are IPv4.
        assert_eq!(k.v4_octets(), Some(([10, 1, 2, 3], [192, 0, 2, 9])));
        assert_eq!(k6.v4_octets(), None);
        let mixed = Tuple::tcp("10.0.0.1".parse().unwrap(), 1, "::1".parse().unwrap(), 2);
        assert_eq!(Key::from_tuple(&mixed).v4_octets(), None);
    }

    #[test]
    fn mask_addr_keeps_prefix() {
        assert_eq!(
            mask_addr("10.1.2.3".parse().unwrap(), 24),
            "10.1.2.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            mask_addr("10.1.2.3".parse().unwrap(), 0),
            "0.0.0.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            mask_addr("10.1.2.3".parse().unwrap(), 200),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            mask_addr("2001:db8:1:2::5".parse().unwrap(), 48),
            "2001:db8:1::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            mask_addr("2001:db8::5".parse().unwrap(), 128),
            "2001:db8::5".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn seeded_hash_depends_on_seed() {
        let k = Key::from_tuple(&Tuple::tcp(
            "10.0.0.1".parse().unwrap(),
            1,
            "10.0.0.2".parse().unwrap(),
            2,
        ));
        let a = KeyHasher::new(1);
        let b = KeyHasher::new(2);
        assert_eq!(k.hash(&a), k.hash(&KeyHasher::new(1)));
        assert_ne!(k.hash(&a), k.hash(&b));
        let mut k6 = k;
        k6.fam = FAM_SRC_V6 | FAM_DST_V6;
        assert_ne!(k.hash(&a), k6.hash(&a));
    }

    /// Keys that differ in one field only (the client's address or port:
    /// what a sender varies) spread evenly over both halves of the hash
    /// (the index's bucket from the high half, its tag from the low).
    #[test]
    fn keyed_hash_spreads_sequential_keys() {
        let kh = KeyHasher::new(0x1234_5678);
        for v6 in [false, true] {
            const N: usize = 1 << 16;
            const B: usize = 1 << 10;
            let mut hi = vec![0u32; B];
            let mut lo = vec![0u32; B];
            for i in 0..N {
                let src: IpAddr = if v6 {
                    IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | (i as u128 >> 4)))
                } else {
                    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i as u32 >> 4)))
                };
                let t = Tuple::tcp(
                    src,
                    1024 + (i as u16 & 15),
                    "10.0.0.100".parse().unwrap(),
                    80,
                );
                let h = Key::from_tuple(&t).hash(&kh);
                hi[((h >> 32) as usize * B) >> 32] += 1;
                lo[h as usize & (B - 1)] += 1;
            }
            // Expected 64 a bucket; a uniform hash's max over 1 024 is ~95.
            assert!(
                hi.iter().all(|&c| (24..=112).contains(&c)),
                "{v6} {:?}",
                hi.iter().max()
            );
            assert!(
                lo.iter().all(|&c| (24..=112).contains(&c)),
                "{v6} {:?}",
                lo.iter().max()
            );
        }
    }
}
