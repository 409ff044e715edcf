//! The hash index: a bucketized cuckoo table of `(tag, value)` pairs, no keys.
//!
//! Each bucket is one 64-byte cache line with 8 slots; an entry lives in one of two
//! buckets, the primary from the high half of the keyed hash and the alternate
//! `(T(tag) - b) mod n`, an involution, so an entry can be moved to its other bucket
//! knowing only its 32-bit tag. Lookups touch at most two cache lines and deletions
//! leave no tombstones. Values are opaque `u32`s (the table stores
//! `conn index << 1 | direction`); the caller confirms a tag hit against the full
//! key. Sized once for a maximum entry count at load <= 0.8; never reallocates.
//! This module owns no keys, no conns and no time.

/// Slots per bucket: 8 x (u32 tag + u32 value) = one cache line.
pub(crate) const SLOTS: usize = 8;
/// The value marking an empty slot.
pub(crate) const EMPTY: u32 = u32::MAX;
/// Slots provisioned per maximum entry, as a fraction: 5/4 means load <= 0.8.
const SLACK_NUM: usize = 5;
const SLACK_DEN: usize = 4;
/// Bounded displacement walk: beyond it an insert fails (never seen at load 0.8).
const MAX_KICKS: usize = 128;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Bucket {
    tags: [u32; SLOTS],
    vals: [u32; SLOTS],
}

const EMPTY_BUCKET: Bucket = Bucket {
    tags: [0; SLOTS],
    vals: [EMPTY; SLOTS],
};

pub(crate) struct Index {
    buckets: Box<[Bucket]>,
    len: usize,
    rng: u64,
}

impl Index {
    /// Number of buckets needed for `max_entries` at load <= 0.8.
    pub(crate) fn buckets_for(max_entries: usize) -> usize {
        (max_entries.saturating_mul(SLACK_NUM) / SLACK_DEN)
            .div_ceil(SLOTS)
            .max(2)
    }

    /// Bytes of index provisioned per entry (rounded up).
    pub(crate) const fn bytes_per_entry() -> usize {
        (core::mem::size_of::<Bucket>() * SLACK_NUM).div_ceil(SLOTS * SLACK_DEN)
    }

    pub(crate) fn new(max_entries: usize, seed: u64, advise: crate::mem::Advise) -> Index {
        let nb = Index::buckets_for(max_entries);
        Index {
            buckets: crate::mem::filled(nb, EMPTY_BUCKET, advise),
            len: 0,
            rng: seed | 1,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.buckets.len() * core::mem::size_of::<Bucket>()
    }

    #[inline]
    fn next_rand(&mut self) -> u64 {
        // xorshift64*: only breaks ties in the displacement walk.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    #[inline]
    fn alt(&self, b: usize, tag: u32) -> usize {
        let nb = self.buckets.len();
        let t = ((u64::from(tag.wrapping_mul(0x9e37_79b9)) * nb as u64) >> 32) as usize;
        let s = t + nb - b;
        if s >= nb {
            s - nb
        } else {
            s
        }
    }

    /// (primary bucket, alternate bucket, tag) of a hash.
    #[inline]
    pub(crate) fn place(&self, h: u64) -> (usize, usize, u32) {
        let b1 = self.primary(h);
        (b1, self.alt(b1, h as u32), h as u32)
    }

    /// The primary bucket of a hash.
    #[inline]
    pub(crate) fn primary(&self, h: u64) -> usize {
        let nb = self.buckets.len() as u64;
        (((h >> 32) * nb) >> 32) as usize
    }

    #[inline]
    fn scan_bucket(b: &Bucket, tag: u32, eq: &mut impl FnMut(u32) -> bool) -> Option<u32> {
        // Two halves of four tags each (one 128-bit vector compare and
        // mask each: the compiler does not split eight at once itself).
        let half = |t: &[u32; 4]| {
            let mut m = 0u32;
            for (i, &x) in t.iter().enumerate() {
                m |= u32::from(x == tag) << i;
            }
            m
        };
        const { assert!(SLOTS == 8) };
        let (q, _) = b.tags.as_chunks::<4>();
        let mut m = half(&q[0]) | half(&q[1]) << 4;
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            let v = b.vals[i];
            if v != EMPTY && eq(v) {
                return Some(v);
            }
        }
        None
    }

    /// The first value under `h` that `eq` accepts.
    #[inline]
    pub(crate) fn find(&self, h: u64, eq: impl FnMut(u32) -> bool) -> Option<u32> {
        self.find_at(self.place(h), eq)
    }

    /// [`Index::find`] with the hash's place already worked out.
    #[inline]
    pub(crate) fn find_at(
        &self,
        (b1, b2, tag): (usize, usize, u32),
        mut eq: impl FnMut(u32) -> bool,
    ) -> Option<u32> {
        if let Some(v) = Index::scan_bucket(&self.buckets[b1], tag, &mut eq) {
            return Some(v);
        }
        if b2 != b1 {
            return Index::scan_bucket(&self.buckets[b2], tag, &mut eq);
        }
        None
    }

    /// Touch both candidate buckets of `h` so a later `find` hits cache; used to
    /// overlap the memory latency of a burst of lookups (safe code, no intrinsics).
    #[inline]
    pub(crate) fn touch_at(&self, (b1, b2, _): (usize, usize, u32)) -> u32 {
        self.buckets[b1].vals[0] ^ self.buckets[b2].vals[0]
    }

    /// The address of bucket `b` (one cache line), for a prefetch hint.
    #[inline]
    pub(crate) fn bucket_addr(&self, b: usize) -> *const u8 {
        (&raw const self.buckets[b]).cast()
    }

    /// [`Index::find_at`] in the alternate bucket only (none when it is the
    /// primary one).
    #[inline]
    pub(crate) fn find_in_alt(
        &self,
        (b1, b2, tag): (usize, usize, u32),
        mut eq: impl FnMut(u32) -> bool,
    ) -> Option<u32> {
        if b2 == b1 {
            return None;
        }
        Index::scan_bucket(&self.buckets[b2], tag, &mut eq)
    }

    /// The first value in the primary bucket with the place's tag (the usual
    /// home of an entry), for touching its conn ahead of the compare.
    /// Slot by slot, stopping at the first hit: an entry usually sits in
    /// its bucket's first slots (inserts take the first free one), where
    /// this costs a few instructions against some 25 for the whole
    /// bucket's tag mask (which LLVM builds from shuffles, not `movmskps`).
    #[inline]
    pub(crate) fn first_in_primary(&self, (b1, _, tag): (usize, usize, u32)) -> Option<u32> {
        let b = &self.buckets[b1];
        for i in 0..SLOTS {
            if b.tags[i] == tag && b.vals[i] != EMPTY {
                return Some(b.vals[i]);
            }
        }
        None
    }

    /// Into the first empty slot of bucket `b`, if it has one (a walk that
    /// stops there: at the table's usual load a bucket's first slots are
    /// the free ones, where a whole-bucket compare costs more).
    #[inline]
    fn put(&mut self, b: usize, tag: u32, val: u32) -> bool {
        let bk = &mut self.buckets[b];
        for i in 0..SLOTS {
            if bk.vals[i] == EMPTY {
                bk.tags[i] = tag;
                bk.vals[i] = val;
                return true;
            }
        }
        false
    }

    /// Insert `val` under `h`. False (and nothing changed) if no room was found.
    /// The usual case inline (a free slot in the primary bucket: the
    /// alternate is not even worked out), the rest out of line.
    #[inline]
    pub(crate) fn insert(&mut self, h: u64, val: u32) -> bool {
        debug_assert!(val != EMPTY);
        let nb = self.buckets.len() as u64;
        let b1 = (((h >> 32) * nb) >> 32) as usize;
        if self.put(b1, h as u32, val) {
            self.len += 1;
            return true;
        }
        self.insert_alt(h, val)
    }

    /// [`Index::insert`] once the primary bucket is full: the alternate
    /// bucket, then the displacement walk.
    #[inline(never)]
    fn insert_alt(&mut self, h: u64, val: u32) -> bool {
        let (b1, b2, tag) = self.place(h);
        if self.put(b2, tag, val) {
            self.len += 1;
            return true;
        }
        // Displacement walk, recorded so a failure can be undone exactly.
        let mut path = [(0u32, 0u8); MAX_KICKS];
        let mut n = 0;
        let (mut ctag, mut cval) = (tag, val);
        let mut b = if self.next_rand() & 1 == 0 { b1 } else { b2 };
        while n < MAX_KICKS {
            let slot = (self.next_rand() % SLOTS as u64) as usize;
            let bk = &mut self.buckets[b];
            core::mem::swap(&mut ctag, &mut bk.tags[slot]);
            core::mem::swap(&mut cval, &mut bk.vals[slot]);
            path[n] = (b as u32, slot as u8);
            n += 1;
            let nb = self.alt(b, ctag);
            if self.put(nb, ctag, cval) {
                self.len += 1;
                return true;
            }
            b = nb;
        }
        while n > 0 {
            n -= 1;
            let (b, slot) = path[n];
            let bk = &mut self.buckets[b as usize];
            core::mem::swap(&mut ctag, &mut bk.tags[slot as usize]);
            core::mem::swap(&mut cval, &mut bk.vals[slot as usize]);
        }
        false
    }

    /// Remove the entry holding exactly `val` under `h`. False if absent.
    /// The alternate bucket is worked out only when the primary one does
    /// not hold it.
    #[inline(always)]
    pub(crate) fn remove(&mut self, h: u64, val: u32) -> bool {
        let nb = self.buckets.len() as u64;
        let b1 = (((h >> 32) * nb) >> 32) as usize;
        if self.take(b1, val) {
            return true;
        }
        let b2 = self.alt(b1, h as u32);
        self.take(b2, val)
    }

    /// Empty the first slot of bucket `b` holding `val`, if any.
    #[inline]
    fn take(&mut self, b: usize, val: u32) -> bool {
        let bk = &mut self.buckets[b];
        for i in 0..SLOTS {
            if bk.vals[i] == val {
                bk.vals[i] = EMPTY;
                bk.tags[i] = 0;
                self.len -= 1;
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(x: u64) -> u64 {
        let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[test]
    fn alt_is_an_involution() {
        let ix = Index::new(1000, 1, &crate::mem::no_advice);
        for h in 0..10_000u64 {
            let (b1, b2, tag) = ix.place(mix(h));
            assert_eq!(ix.alt(b2, tag), b1);
        }
    }

    #[test]
    fn fills_to_provisioned_load_then_removes_all() {
        let n = 50_000;
        let mut ix = Index::new(n, 7, &crate::mem::no_advice);
        for i in 0..n as u32 {
            assert!(ix.insert(mix(u64::from(i)), i), "insert {i} failed");
        }
        assert_eq!(ix.len(), n);
        for i in 0..n as u32 {
            assert_eq!(ix.find(mix(u64::from(i)), |v| v == i), Some(i));
        }
        for i in 0..n as u32 {
            assert!(ix.remove(mix(u64::from(i)), i));
        }
        assert_eq!(ix.len(), 0);
        assert_eq!(ix.find(mix(3), |_| true), None);
    }

    /// The insert and remove before their fast paths (slot by slot, both
    /// buckets' places worked out first), kept as the reference.
    fn put_ref(ix: &mut Index, b: usize, tag: u32, val: u32) -> bool {
        let bk = &mut ix.buckets[b];
        for i in 0..SLOTS {
            if bk.vals[i] == EMPTY {
                bk.tags[i] = tag;
                bk.vals[i] = val;
                return true;
            }
        }
        false
    }

    fn insert_ref(ix: &mut Index, h: u64, val: u32) -> bool {
        let (b1, b2, tag) = ix.place(h);
        if put_ref(ix, b1, tag, val) || put_ref(ix, b2, tag, val) {
            ix.len += 1;
            return true;
        }
        let mut path = [(0u32, 0u8); MAX_KICKS];
        let mut n = 0;
        let (mut ctag, mut cval) = (tag, val);
        let mut b = if ix.next_rand() & 1 == 0 { b1 } else { b2 };
        while n < MAX_KICKS {
            let slot = (ix.next_rand() % SLOTS as u64) as usize;
            let bk = &mut ix.buckets[b];
            core::mem::swap(&mut ctag, &mut bk.tags[slot]);
            core::mem::swap(&mut cval, &mut bk.vals[slot]);
            path[n] = (b as u32, slot as u8);
            n += 1;
            let nb = ix.alt(b, ctag);
            if put_ref(ix, nb, ctag, cval) {
                ix.len += 1;
                return true;
            }
            b = nb;
        }
        while n > 0 {
            n -= 1;
            let (b, slot) = path[n];
            let bk = &mut ix.buckets[b as usize];
            core::mem::swap(&mut ctag, &mut bk.tags[slot as usize]);
            core::mem::swap(&mut cval, &mut bk.vals[slot as usize]);
        }
        false
    }

    fn remove_ref(ix: &mut Index, h: u64, val: u32) -> bool {
        let (b1, b2, _) = ix.place(h);
        for b in [b1, b2] {
            let bk = &mut ix.buckets[b];
            for i in 0..SLOTS {
                if bk.vals[i] == val {
                    bk.vals[i] = EMPTY;
                    bk.tags[i] = 0;
                    ix.len -= 1;
                    return true;
                }
            }
        }
        false
    }

    /// The early-exit scan of [`Index::first_in_primary`] finds what the
    /// tag-mask scan ([`Index::scan_bucket`] accepting any value) finds,
    /// in full buckets, buckets with holes left by removes, tag collisions
    /// and zero tags (an empty slot's), hits and misses.
    #[test]
    fn first_in_primary_matches_the_mask_scan() {
        for (max, seed) in [(64usize, 5u64), (1000, 6), (40, 7)] {
            let mut ix = Index::new(max, seed, &crate::mem::no_advice);
            let mut live: Vec<(u64, u32)> = Vec::new();
            let mut r = seed;
            let mut next = || {
                r = mix(r);
                r
            };
            for step in 0..20_000u32 {
                // Few distinct tags (low 2 bits plus zero) so they collide.
                let raw = next();
                let h = (raw & !0xffff_ffff) | ((raw & 3) * 0x4000_0001);
                if live.len() < max && next() % 3 != 0 {
                    if ix.insert(h, step) {
                        live.push((h, step));
                    }
                } else if !live.is_empty() {
                    let i = (next() % live.len() as u64) as usize;
                    let (h, v) = live.swap_remove(i);
                    assert!(ix.remove(h, v));
                }
                let probe = if live.is_empty() || next() % 2 == 0 {
                    h
                } else {
                    live[(next() % live.len() as u64) as usize].0
                };
                let p = ix.place(probe);
                let (b1, _, tag) = p;
                assert_eq!(
                    ix.first_in_primary(p),
                    Index::scan_bucket(&ix.buckets[b1], tag, &mut |_| true)
                );
            }
        }
    }

    /// Random inserts and removes, up to and past the provisioned load
    /// (displacement walks, failed inserts), leave every bucket exactly
    /// as the reference leaves it, with the same answers.
    #[test]
    fn fast_paths_match_the_reference() {
        for (max, seed) in [(64usize, 1u64), (1000, 2), (5000, 3), (1, 4)] {
            let mut a = Index::new(max, seed, &crate::mem::no_advice);
            let mut b = Index::new(max, seed, &crate::mem::no_advice);
            let mut live: Vec<(u64, u32)> = Vec::new();
            let mut r = seed;
            let mut next = || {
                r = mix(r);
                r
            };
            for step in 0..40_000u32 {
                let grow = live.len() < max + max / 4 && next() % 3 != 0;
                if grow || live.is_empty() {
                    let h = next();
                    let ok = a.insert(h, step);
                    assert_eq!(ok, insert_ref(&mut b, h, step));
                    if ok {
                        live.push((h, step));
                    }
                } else {
                    let k = (next() % live.len() as u64) as usize;
                    let (h, v) = live.swap_remove(k);
                    assert!(a.remove(h, v));
                    assert!(remove_ref(&mut b, h, v));
                    // Absent: both say so and change nothing.
                    assert!(!a.remove(h, v));
                    assert!(!remove_ref(&mut b, h, v));
                }
                assert_eq!(a.len, b.len);
                assert_eq!(a.rng, b.rng);
                if step % 97 == 0 {
                    for (x, y) in a.buckets.iter().zip(b.buckets.iter()) {
                        assert_eq!((x.tags, x.vals), (y.tags, y.vals));
                    }
                }
            }
            for (x, y) in a.buckets.iter().zip(b.buckets.iter()) {
                assert_eq!((x.tags, x.vals), (y.tags, y.vals));
            }
        }
    }

    #[test]
    fn failed_insert_changes_nothing() {
        // A tiny index (2 buckets = 16 slots) overfilled: failures must undo cleanly.
        let mut ix = Index::new(1, 3, &crate::mem::no_advice);
        let mut ok = Vec::new();
        for i in 0..40u32 {
            if ix.insert(mix(u64::from(i)), i) {
                ok.push(i);
            }
        }
        assert_eq!(ok.len(), ix.len());
        assert!(ok.len() <= 16);
        for &i in &ok {
            assert_eq!(ix.find(mix(u64::from(i)), |v| v == i), Some(i));
        }
    }
}
