//! A port's RSS configuration (key, hash fields, redirection table) and DPDK's
//! software Toeplitz, `rte_softrss`, against which `crate::rss` is checked.
//!
//! DPDK's tuples are not the NIC's byte stream: `rte_ipv4_tuple` and
//! `rte_ipv6_tuple` hold host-order 32-bit words (IPv6 addresses converted per
//! 4-byte chunk by `rte_thash_load_v6_addrs`), and `rte_softrss` reads bit 31 of
//! word 0 first. The ports share one word as `{ uint16_t dport; uint16_t sport; }`,
//! which on a little-endian host puts sport in the high half, i.e. first, as the
//! NIC reads it. The key, by contrast, is passed as the plain byte string.
//! Nothing here is called per packet.

use std::net::{Ipv4Addr, Ipv6Addr};

use dpdk_sys::{rte_eth_rss_reta_entry64, rte_thash_tuple};

use crate::rss::{Reta, RssSteer, Toeplitz};

/// `RTE_THASH_V4_L3_LEN` and friends (sizeof expressions bindgen cannot
/// evaluate): how many 32-bit words of a tuple each hash covers.
pub const V4_L3_WORDS: usize = 2;
pub const V4_L4_WORDS: usize = 3;
pub const V6_L3_WORDS: usize = 8;
pub const V6_L4_WORDS: usize = 9;

const GROUP: usize = dpdk_sys::RTE_ETH_RETA_GROUP_SIZE as usize;

/// `rte_softrss` over `input` (DPDK tuple words, host order) with `key` (the RSS
/// key bytes as programmed into the NIC).
///
/// # Panics
/// If `key` is shorter than `4 * (input.len() + 1)` bytes: rte_softrss reads the
/// key word after the last input word.
pub fn softrss(input: &[u32], key: &[u8]) -> u32 {
    assert!(
        key.len() >= 4 * (input.len() + 1),
        "RSS key of {} bytes is too short for {} input words",
        key.len(),
        input.len()
    );
    // rte_softrss reads the key as uint32_t words: give it an aligned copy with
    // the same bytes in memory.
    let key_words: Vec<u32> = key
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_ne_bytes(w)
        })
        .collect();
    let len = u32::try_from(input.len()).expect("input length fits u32");
    // SAFETY: rte_softrss reads `len` words from input_tuple (the slice) and
    // `len + 1` words from the key (asserted above); it writes nothing, so the
    // const-to-mut cast of the input pointer is never written through.
    unsafe { dpdk_sys::rte_softrss(input.as_ptr().cast_mut(), len, key_words.as_ptr().cast()) }
}

/// DPDK's IPv4 tuple for src:sport -> dst:dport, filled as DPDK's own test does
/// (`rte_ipv4_tuple` fields in host order), as words for [`softrss`].
pub fn ipv4_tuple(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> [u32; V4_L4_WORDS] {
    let mut t = rte_thash_tuple::default();
    // Writing a Copy union field is safe; the rest of the union stays zeroed.
    t.v4.src_addr = u32::from(src);
    t.v4.dst_addr = u32::from(dst);
    t.v4.__bindgen_anon_1.__bindgen_anon_1.sport = sport;
    t.v4.__bindgen_anon_1.__bindgen_anon_1.dport = dport;
    tuple_words(&t)
}

/// DPDK's IPv6 tuple for [src]:sport -> [dst]:dport: addresses loaded with
/// `rte_thash_load_v6_addrs` from an IPv6 header, ports in host order.
pub fn ipv6_tuple(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16) -> [u32; V6_L4_WORDS] {
    let hdr = dpdk_sys::rte_ipv6_hdr {
        src_addr: src.octets(),
        dst_addr: dst.octets(),
        ..Default::default()
    };
    let mut t = rte_thash_tuple::default();
    // SAFETY: both pointers are valid; `t` is the 16-byte aligned union the
    // function's SIMD stores need, and it writes only the two v6 addresses.
    unsafe { dpdk_sys::rte_thash_load_v6_addrs(&hdr, &mut t) };
    t.v6.__bindgen_anon_1.__bindgen_anon_1.sport = sport;
    t.v6.__bindgen_anon_1.__bindgen_anon_1.dport = dport;
    tuple_words(&t)
}

/// The first `N` words of a tuple, as rte_softrss reads them.
fn tuple_words<const N: usize>(t: &rte_thash_tuple) -> [u32; N] {
    const { assert!(N * 4 <= std::mem::size_of::<rte_thash_tuple>()) };
    // SAFETY: the union is at least N words long (checked above), 16-byte
    // aligned, and fully initialised (Default zeroes all of it).
    unsafe { std::ptr::read((t as *const rte_thash_tuple).cast::<[u32; N]>()) }
}

fn dev_info(port_id: u16) -> Result<dpdk_sys::rte_eth_dev_info, String> {
    let mut info: dpdk_sys::rte_eth_dev_info = Default::default();
    // SAFETY: info is a valid out struct; DPDK checks the port id.
    let rc = unsafe { dpdk_sys::rte_eth_dev_info_get(port_id, &mut info) };
    if rc != 0 {
        return Err(format!(
            "port {port_id}: cannot read device info: {}",
            super::strerror(rc)
        ));
    }
    Ok(info)
}

/// The port's RSS hash configuration; the key is read into `key` when given.
fn hash_conf(port_id: u16, key: Option<&mut [u8]>) -> Result<u64, String> {
    let (ptr, len) = match key {
        Some(k) => (k.as_mut_ptr(), u8::try_from(k.len()).unwrap_or(u8::MAX)),
        None => (std::ptr::null_mut(), 0),
    };
    let mut conf = dpdk_sys::rte_eth_rss_conf {
        rss_key: ptr,
        rss_key_len: len,
        rss_hf: 0,
    };
    // SAFETY: conf.rss_key is null or points to `len` writable bytes, the size
    // the device reported for its key (hash_key_size); conf outlives the call.
    let rc = unsafe { dpdk_sys::rte_eth_dev_rss_hash_conf_get(port_id, &mut conf) };
    if rc != 0 {
        return Err(format!(
            "port {port_id}: cannot read RSS hash configuration: {}",
            super::strerror(rc)
        ));
    }
    Ok(conf.rss_hf)
}

/// The RSS key a configured port hashes with (`hash_key_size` bytes: 40 on most
/// NICs, 52 on some).
pub fn rss_key(port_id: u16) -> Result<Vec<u8>, String> {
    let size = dev_info(port_id)?.hash_key_size;
    if size == 0 {
        return Err(format!("port {port_id}: device reports no RSS hash key"));
    }
    let mut key = vec![0u8; usize::from(size)];
    hash_conf(port_id, Some(&mut key))?;
    Ok(key)
}

/// The packet types the port hashes (RTE_ETH_RSS_* bits): lport steering needs
/// the L4 types (NONFRAG_IPV4_TCP, ...), otherwise the reply queue ignores ports.
pub fn rss_hf(port_id: u16) -> Result<u64, String> {
    hash_conf(port_id, None)
}

/// The size of the port's redirection table (0: no RETA).
pub fn reta_size(port_id: u16) -> Result<u16, String> {
    Ok(dev_info(port_id)?.reta_size)
}

/// RETA groups of 64 entries covering `reta_size`, each with the mask of the
/// entries it covers.
fn reta_groups(reta_size: u16) -> Vec<rte_eth_rss_reta_entry64> {
    let size = usize::from(reta_size);
    (0..size.div_ceil(GROUP))
        .map(|g| {
            let n = (size - g * GROUP).min(GROUP);
            rte_eth_rss_reta_entry64 {
                mask: if n == GROUP { u64::MAX } else { (1 << n) - 1 },
                reta: [0; GROUP],
            }
        })
        .collect()
}

/// The port's redirection table: entry i is the rx queue of packets whose hash
/// has i in its low bits. `reta_size` must be the device's (see [`reta_size`]).
pub fn reta(port_id: u16, reta_size: u16) -> Result<Vec<u16>, String> {
    if reta_size == 0 {
        return Err(format!("port {port_id}: no redirection table"));
    }
    let mut groups = reta_groups(reta_size);
    // SAFETY: `groups` holds ceil(reta_size / 64) entries, as many as DPDK
    // reads and writes for `reta_size`.
    let rc =
        unsafe { dpdk_sys::rte_eth_dev_rss_reta_query(port_id, groups.as_mut_ptr(), reta_size) };
    if rc != 0 {
        return Err(format!(
            "port {port_id}: cannot read the redirection table: {}",
            super::strerror(rc)
        ));
    }
    Ok(groups
        .iter()
        .flat_map(|g| g.reta)
        .take(usize::from(reta_size))
        .collect())
}

/// Program entry i -> queue i % nqueues (what most PMDs start with; call it to
/// put a table back in a known state).
pub fn set_reta_round_robin(port_id: u16, reta_size: u16, nqueues: u16) -> Result<(), String> {
    if reta_size == 0 || nqueues == 0 {
        return Err(format!(
            "port {port_id}: RETA of {reta_size} entries over {nqueues} queues"
        ));
    }
    let mut groups = reta_groups(reta_size);
    for (i, e) in groups
        .iter_mut()
        .flat_map(|g| g.reta.iter_mut())
        .enumerate()
    {
        *e = (i % usize::from(nqueues)) as u16;
    }
    // SAFETY: as in `reta`: `groups` covers `reta_size` entries; DPDK only reads it.
    let rc =
        unsafe { dpdk_sys::rte_eth_dev_rss_reta_update(port_id, groups.as_mut_ptr(), reta_size) };
    if rc != 0 {
        return Err(format!(
            "port {port_id}: cannot program the redirection table: {}",
            super::strerror(rc)
        ));
    }
    Ok(())
}

/// The reply steering of a started port: its key and its RETA as read back.
pub fn steer(port_id: u16) -> Result<RssSteer, String> {
    let key = rss_key(port_id)?;
    let toeplitz = Toeplitz::new(&key).map_err(|e| format!("port {port_id}: {e}"))?;
    let table = reta(port_id, reta_size(port_id)?)?;
    let reta = Reta::new(table).map_err(|e| format!("port {port_id}: {e}"))?;
    Ok(RssSteer::new(toeplitz, reta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rss::vectors;
    use proptest::prelude::*;

    #[test]
    fn microsoft_vectors_through_rte_softrss() {
        for c in vectors::v4() {
            let words = ipv4_tuple(c.src, c.dst, c.sport, c.dport);
            assert_eq!(softrss(&words[..V4_L3_WORDS], &vectors::KEY), c.hash_l3);
            assert_eq!(softrss(&words, &vectors::KEY), c.hash_l4);
        }
        for c in vectors::v6() {
            let words = ipv6_tuple(c.src, c.dst, c.sport, c.dport);
            assert_eq!(softrss(&words[..V6_L3_WORDS], &vectors::KEY), c.hash_l3);
            assert_eq!(softrss(&words, &vectors::KEY), c.hash_l4);
        }
    }

    /// DPDK's tuple is the NIC's byte stream read as big-endian words: what the
    /// pure implementation assumes.
    #[test]
    fn dpdk_tuples_are_the_input_as_big_endian_words() {
        let words = ipv4_tuple(Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(5, 6, 7, 8), 9, 10);
        assert_eq!(words, [0x0102_0304, 0x0506_0708, 0x0009_000a]);
        let src: Ipv6Addr = "1:2:3:4:5:6:7:8".parse().unwrap();
        let words = ipv6_tuple(src, Ipv6Addr::LOCALHOST, 0x1234, 0x5678);
        assert_eq!(
            words[..4],
            [0x0001_0002, 0x0003_0004, 0x0005_0006, 0x0007_0008]
        );
        assert_eq!(words[4..], [0, 0, 0, 1, 0x1234_5678]);
    }

    #[test]
    fn reta_groups_cover_the_table() {
        let g = reta_groups(128);
        assert_eq!(g.len(), 2);
        assert!(g.iter().all(|e| e.mask == u64::MAX));
        let g = reta_groups(100);
        assert_eq!(g.len(), 2);
        assert_eq!(g[1].mask, (1 << 36) - 1);
        assert_eq!(reta_groups(8)[0].mask, 0xff);
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), crate::rss::KEY_LEN_MIN..=52)
    }

    type V4 = ([u8; 4], [u8; 4], u16, u16);
    type V6 = ([u8; 16], [u8; 16], u16, u16);

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// 512 random keys x 64 random IPv4 tuples, L3 and L4.
        #[test]
        fn toeplitz_agrees_with_rte_softrss_v4(
            key in key(),
            tuples in proptest::collection::vec(any::<V4>(), 64),
        ) {
            let t = Toeplitz::new(&key).unwrap();
            for (src, dst, sport, dport) in tuples {
                let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
                let words = ipv4_tuple(src, dst, sport, dport);
                prop_assert_eq!(t.hash_v4(src, dst, sport, dport), softrss(&words, &key));
                prop_assert_eq!(t.hash_v4_l3(src, dst), softrss(&words[..V4_L3_WORDS], &key));
            }
        }

        /// 512 random keys x 64 random IPv6 tuples, L3 and L4.
        #[test]
        fn toeplitz_agrees_with_rte_softrss_v6(
            key in key(),
            tuples in proptest::collection::vec(any::<V6>(), 64),
        ) {
            let t = Toeplitz::new(&key).unwrap();
            for (src, dst, sport, dport) in tuples {
                let (src, dst) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
                let words = ipv6_tuple(src, dst, sport, dport);
                prop_assert_eq!(t.hash_v6(src, dst, sport, dport), softrss(&words, &key));
                prop_assert_eq!(t.hash_v6_l3(src, dst), softrss(&words[..V6_L3_WORDS], &key));
            }
        }
    }
}
