//! Fixed, documented hash functions shared by the hashing schedulers.
//!
//! Every worker and every process must map the same flow to the same dest, so
//! nothing here is randomly seeded (unlike the connection tables, which face hash
//! flooding and use a per-process seed). Two families are used:
//!
//! * `hash_32`: the kernel's multiplicative hash (`GOLDEN_RATIO_32`), used by dh and
//!   sh exactly as ip_vs_dh.c / ip_vs_sh.c do, over the folded address.
//! * SipHash-2-4 with fixed keys (the constants ip_vs_mh.c uses for its two
//!   `hsiphash` keys), used by mh and conhash over the full address bytes.
//!   `mix64` (the SplitMix64 finaliser) derives further probe positions cheaply.

use std::net::IpAddr;

/// The kernel's `GOLDEN_RATIO_32` (include/linux/hash.h).
pub const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// The kernel's `hash_32(val, bits)`: top `bits` bits of `val * GOLDEN_RATIO_32`.
pub fn hash_32(val: u32, bits: u32) -> u32 {
    if bits == 0 {
        0
    } else {
        val.wrapping_mul(GOLDEN_RATIO_32) >> (32 - bits.min(32))
    }
}

/// IPVS address folding: an IPv4 address in host order, or the XOR of the four
/// 32-bit words of an IPv6 address (as `ip_vs_dh_hashkey`/`ip_vs_sh_hashkey`).
pub fn addr_fold(addr: &IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(*a),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            w(0) ^ w(4) ^ w(8) ^ w(12)
        }
    }
}

/// A SipHash key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipKey(pub u64, pub u64);

/// First fixed key (ip_vs_mh.c `generate_hash_secret`: hash1 = {2654435761, 2654435761}).
pub const KEY1: SipKey = SipKey(2_654_435_761, 2_654_435_761);
/// Second fixed key (ip_vs_mh.c: hash2 = {2654446892, 2654446892}).
pub const KEY2: SipKey = SipKey(2_654_446_892, 2_654_446_892);

#[inline]
fn sipround(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-2-4 of `data` under `key` (the reference algorithm, little-endian words).
pub fn siphash24(key: SipKey, data: &[u8]) -> u64 {
    let mut v = [
        key.0 ^ 0x736f_6d65_7073_6575,
        key.1 ^ 0x646f_7261_6e64_6f6d,
        key.0 ^ 0x6c79_6765_6e65_7261,
        key.1 ^ 0x7465_6462_7974_6573,
    ];
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let m = u64::from_le_bytes(w);
        v[3] ^= m;
        sipround(&mut v);
        sipround(&mut v);
        v[0] ^= m;
    }
    let mut last = [0u8; 8];
    let rest = chunks.remainder();
    last[..rest.len()].copy_from_slice(rest);
    last[7] = data.len() as u8;
    let b = u64::from_le_bytes(last);
    v[3] ^= b;
    sipround(&mut v);
    sipround(&mut v);
    v[0] ^= b;
    v[2] ^= 0xff;
    for _ in 0..4 {
        sipround(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// Address bytes (4 or 16), then the port big-endian, then `extra` big-endian.
fn addr_port_bytes(addr: &IpAddr, port: u16, extra: u32, buf: &mut [u8; 22]) -> usize {
    let n = match addr {
        IpAddr::V4(a) => {
            buf[..4].copy_from_slice(&a.octets());
            4
        }
        IpAddr::V6(a) => {
            buf[..16].copy_from_slice(&a.octets());
            16
        }
    };
    buf[n..n + 2].copy_from_slice(&port.to_be_bytes());
    buf[n + 2..n + 6].copy_from_slice(&extra.to_be_bytes());
    n + 6
}

/// SipHash-2-4 of (address bytes, port, extra) under `key`.
pub fn addr_port_hash(key: SipKey, addr: &IpAddr, port: u16, extra: u32) -> u64 {
    let mut buf = [0u8; 22];
    let n = addr_port_bytes(addr, port, extra, &mut buf);
    siphash24(key, &buf[..n])
}

/// SipHash-2-4 of a whole 5-tuple: proto, src, sport, dst, dport.
pub fn five_tuple_hash(
    key: SipKey,
    proto: u8,
    src: &IpAddr,
    sport: u16,
    dst: &IpAddr,
    dport: u16,
) -> u64 {
    let mut buf = [0u8; 45];
    let mut a = [0u8; 22];
    let n1 = addr_port_bytes(src, sport, 0, &mut a);
    buf[0] = proto;
    buf[1..1 + n1 - 4].copy_from_slice(&a[..n1 - 4]);
    let mut len = 1 + n1 - 4;
    let n2 = addr_port_bytes(dst, dport, 0, &mut a);
    buf[len..len + n2 - 4].copy_from_slice(&a[..n2 - 4]);
    len += n2 - 4;
    siphash24(key, &buf[..len])
}

/// SplitMix64 finaliser: a cheap bijective 64-bit mixer.
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Greatest common divisor (0 with 0 gives 0).
pub fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn siphash24_reference_vector() {
        // From the SipHash paper, appendix A: key 00..0f, message 00..0e.
        let key = SipKey(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(siphash24(key, &msg), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn hash_32_matches_kernel() {
        assert_eq!(hash_32(1, 8), 0x61);
        assert_eq!(hash_32(0, 8), 0);
        assert_eq!(hash_32(0xffff_ffff, 32), 0x9E37_79B9);
        assert_eq!(hash_32(5, 0), 0);
    }

    #[test]
    fn fold_v6_xors_words() {
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(addr_fold(&a), 0x2001_0db8 ^ 1);
        let b: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(addr_fold(&b), 0x0a00_0001);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        #[allow(deprecated)]
        fn siphash24_matches_std(k0: u64, k1: u64, data in prop::collection::vec(any::<u8>(), 0..64)) {
            use std::hash::Hasher;
            let mut h = std::hash::SipHasher::new_with_keys(k0, k1);
            h.write(&data);
            prop_assert_eq!(siphash24(SipKey(k0, k1), &data), h.finish());
        }
    }
}
