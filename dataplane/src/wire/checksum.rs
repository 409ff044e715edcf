//! Internet checksum arithmetic: the RFC 1071 sum, the RFC 1624 incremental update
//! used by every rewrite on the packet path, and the IPv4/IPv6 pseudo-header sums.
//!
//! Sums are carried unfolded in a `u32`/`u64` accumulator and folded once; the
//! incremental helpers take and return the checksum field as it sits on the wire.
//! The UDP "0 means no checksum" rule is not handled here but in `udp`.

use std::net::{Ipv4Addr, Ipv6Addr};

/// One's complement sum of `data` as big-endian 16-bit words (odd tail padded with
/// zero), not complemented. The result is at most `0xffff`, so a few sums can be
/// added with `+` before one [`fold`].
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        acc += (w >> 48) + ((w >> 32) & 0xffff) + ((w >> 16) & 0xffff) + (w & 0xffff);
    }
    let mut words = chunks.remainder().chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    u32::from(fold64(acc))
}

/// Folds a 64-bit unfolded sum to 16 bits with end-around carry: the two
/// halves added with the carry wrapped around, then [`fold`] (no loop: the
/// same value as folding 16 bits at a time until nothing is left over).
#[inline(always)]
pub(crate) fn fold64(acc: u64) -> u16 {
    let (s, c) = (acc as u32).overflowing_add((acc >> 32) as u32);
    // With a carry the sum is at most 2^32 - 2: adding it cannot overflow.
    fold(s + u32::from(c))
}

fn word(b: &[u8]) -> u64 {
    match b {
        [hi, lo, ..] => u64::from(u16::from_be_bytes([*hi, *lo])),
        [hi] => u64::from(*hi) << 8,
        [] => 0,
    }
}

/// Folds an unfolded sum to 16 bits with end-around carry: the two halves
/// added, the carry wrapped around (at most 0xfffe with a carry, so adding
/// it cannot overflow).
#[inline(always)]
pub fn fold(s: u32) -> u16 {
    let (f, c) = (s as u16).overflowing_add((s >> 16) as u16);
    f + u16::from(c)
}

/// The checksum field value for `data` whose checksum field is zero: `!fold(sum)`.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// `true` if `data` (checksum field included) sums to all ones.
pub fn verify(data: &[u8]) -> bool {
    fold(sum(data)) == 0xffff
}

/// RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')` for one 16-bit word changing from
/// `old` to `new`.
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    let s = u32::from(!csum) + u32::from(!old) + u32::from(new);
    !fold(s)
}

/// [`update16`] for a 32-bit field (two words).
pub fn update32(csum: u16, old: u32, new: u32) -> u16 {
    let s = u32::from(!csum)
        + u32::from(!(old >> 16) as u16)
        + u32::from(!(old as u16))
        + (new >> 16)
        + (new & 0xffff);
    !fold(s)
}

/// Update for a changed address (or any even-length field): `old` and `new` must
/// have the same length (4 bytes for IPv4, 16 for IPv6). Mismatched lengths leave
/// the checksum unchanged, which can only happen through a caller's bug.
pub fn update_addr(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    if old.len() != new.len() {
        return csum;
    }
    let mut s = u64::from(!csum);
    for (o, n) in old.chunks(2).zip(new.chunks(2)) {
        s += (!word(o) & 0xffff) + word(n);
    }
    !fold64(s)
}

/// Unfolded sum of the IPv4 pseudo header (src, dst, zero, proto, L4 length).
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4_len: u16) -> u32 {
    sum(&src.octets()) + sum(&dst.octets()) + u32::from(proto) + u32::from(l4_len)
}

/// Unfolded sum of the IPv6 pseudo header (src, dst, upper-layer length, next header).
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, l4_len: u32) -> u32 {
    sum(&src.octets())
        + sum(&dst.octets())
        + (l4_len >> 16)
        + (l4_len & 0xffff)
        + u32::from(next_header)
}

/// Full L4 checksum (TCP/UDP/ICMPv6) over `segment` with its checksum field zeroed
/// or not: the caller passes a pseudo-header sum and gets the field value back when
/// the field was zero, or `0` when verifying a correct segment.
pub fn l4_checksum(pseudo: u32, segment: &[u8]) -> u16 {
    !fold(u32::from(fold(pseudo)) + sum(segment))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2.
    #[test]
    fn rfc1071_example() {
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d)), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
        assert_eq!(
            fold(sum(&d[..7])),
            fold(sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0]))
        );
    }

    #[test]
    fn incremental_matches_full_recompute() {
        let mut d = [
            0x45u8, 0, 0, 0x54, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = checksum(&d);
        d[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(verify(&d));

        let new_dst = [192, 168, 200, 77];
        let c2 = update_addr(c, &d[16..20], &new_dst);
        d[16..20].copy_from_slice(&new_dst);
        assert_eq!(c2, {
            let mut z = d;
            z[10] = 0;
            z[11] = 0;
            checksum(&z)
        });

        let old_w = u16::from_be_bytes([d[8], d[9]]);
        let c3 = update16(c2, old_w, old_w - 0x0100);
        d[8] -= 1;
        d[10..12].copy_from_slice(&c3.to_be_bytes());
        assert!(verify(&d));

        let old = u32::from_be_bytes([d[12], d[13], d[14], d[15]]);
        let c4 = update32(c3, old, 0xdead_beef);
        d[12..16].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        d[10..12].copy_from_slice(&c4.to_be_bytes());
        assert!(verify(&d));
    }

    /// Folding 16 bits at a time until nothing is left over: what `fold`
    /// and `fold64` must equal for every sum.
    fn fold_by_loop(mut s: u64) -> u16 {
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn folds_equal_the_loop_at_the_edges() {
        let edges = [
            0u64,
            1,
            0xfffe,
            0xffff,
            0x1_0000,
            0x1_fffe,
            0x1_ffff,
            0xffff_0000,
            0xffff_fffe,
            0xffff_ffff,
            0x1_0000_0000,
            0x1_ffff_fffe,
            0xffff_ffff_0000_0000,
            0xffff_ffff_ffff_fffe,
            u64::MAX,
        ];
        for s in edges {
            assert_eq!(fold64(s), fold_by_loop(s), "{s:#x}");
            if let Ok(s32) = u32::try_from(s) {
                assert_eq!(fold(s32), fold_by_loop(s), "{s:#x}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn folds_equal_the_loop(s in proptest::num::u64::ANY) {
            proptest::prop_assert_eq!(fold64(s), fold_by_loop(s));
            proptest::prop_assert_eq!(fold(s as u32), fold_by_loop(u64::from(s as u32)));
        }

        #[test]
        fn update_addr_is_eqn3(data in proptest::collection::vec(proptest::num::u8::ANY, 20..64),
                               new in proptest::array::uniform16(proptest::num::u8::ANY)) {
            let mut d = data;
            let n = 16.min(d.len() - 4) & !1;
            d[0] = 0;
            d[1] = 0;
            let c = checksum(&d);
            d[0..2].copy_from_slice(&c.to_be_bytes());
            let c2 = update_addr(c, &d[4..4 + n], &new[..n]);
            d[4..4 + n].copy_from_slice(&new[..n]);
            d[0..2].copy_from_slice(&c2.to_be_bytes());
            proptest::prop_assert!(verify(&d));
        }
    }
}
