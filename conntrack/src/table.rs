//! The per-worker connection table: a preallocated slab of [`Conn`]s, the cuckoo
//! index over both directions of every conn, and the timer wheel threaded through
//! the slab.
//!
//! One `ConnTable` belongs to one worker lcore and is called on every packet, so it
//! allocates nothing after `new`, takes no locks, reads no clock (`now_ms` is passed
//! in) and bounds the work of every call. It decides nothing about services or
//! destinations: `service`, `dest` and `flags` are opaque numbers for the dataplane.

use core::fmt;

use crate::index::Index;
use crate::tcp::{self, TcpDir, TcpFlags, TcpState};
use crate::timeouts::Timeouts;
use crate::timer::{Link, TimerNode, Wheel, NIL};
use crate::tuple::{
    bits_addr, Direction, Key, KeyHasher, Tuple, FAM_DST_V6, FAM_SRC_V6, PROTO_TCP,
};

/// Largest supported capacity: index values are `conn index << 1 | direction`.
pub const MAX_CAPACITY: u32 = (1 << 31) - 2;

/// Handle of a conn in its table: the slab index. Valid until the conn is removed or
/// expires; the slot is then reused, so do not keep ids across those events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

/// The table has no free slot (or, never in practice, no index room): the new conn
/// is refused and every existing conn is untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull;

impl fmt::Display for TableFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection table full")
    }
}

impl std::error::Error for TableFull {}

/// Why [`ConnTable::try_insert`] refused a conn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    Full,
    /// One of the new conn's tuples already belongs to this conn, in this direction.
    Exists(ConnId, Direction),
}

impl fmt::Display for InsertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InsertError::Full => f.write_str("connection table full"),
            InsertError::Exists(id, d) => {
                write!(f, "tuple already tracked by conn {} ({d:?})", id.0)
            }
        }
    }
}

impl std::error::Error for InsertError {}

impl From<TableFull> for InsertError {
    fn from(_: TableFull) -> InsertError {
        InsertError::Full
    }
}

/// What the dataplane gives to create a conn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewConn {
    /// The request as it arrives: CIP:cport -> VIP:vport.
    pub original: Tuple,
    /// The reply as it arrives: RIP:rport -> CIP:cport (NAT) or -> LIP:lport
    /// (FULLNAT). DR/TUN replies never come back; set it anyway.
    pub reply: Tuple,
    pub service: u32,
    pub dest: u32,
    /// Opaque to this crate (forward mode etc.).
    pub flags: u8,
    /// Per-service `--conn-timeout`: replaces the ESTABLISHED and UDP timeouts.
    /// `Some(0)` is treated as `None`.
    pub timeout_override_s: Option<u32>,
}

/// What a packet did to its conn, so the dataplane can keep per-dest
/// ActiveConn/InActConn right: move one count when `was_active != is_active`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub was_active: bool,
    pub is_active: bool,
    pub state: TcpState,
    /// The state moved (what connection sync tells the backups).
    pub changed: bool,
}

impl Transition {
    /// Nothing moved: an inactive NONE stays so.
    pub const NONE: Transition = Transition {
        was_active: false,
        is_active: false,
        state: TcpState::None,
        changed: false,
    };
}

const BIT_O_SRC6: u8 = 1 << 0;
const BIT_O_DST6: u8 = 1 << 1;
const BIT_R_SRC6: u8 = 1 << 2;
const BIT_R_DST6: u8 = 1 << 3;
const BIT_INPUT_ONLY: u8 = 1 << 4;
/// Installed from a connection sync record and not seen here since.
const BIT_SYNCED: u8 = 1 << 5;
const BIT_LIVE: u8 = 1 << 7;

/// One tracked connection: 136 bytes. Addresses are stored as 16-byte arrays (IPv4
/// in the first 4) with a family bit each, so v4, v6 and NAT64-style mixes share
/// one layout.
///
/// Field order is fixed (`repr(C)`) so a lookup's compare reads bytes 0..48
/// (original) or 0..12 + 48..80 (reply), not the whole struct.
#[derive(Clone)]
#[repr(C)]
pub struct Conn {
    proto: u8,
    bits: u8,
    flags: u8,
    state: TcpState,
    o_sport: u16,
    o_dport: u16,
    r_sport: u16,
    r_dport: u16,
    service: u32,
    o_src: [u8; 16],
    o_dst: [u8; 16],
    r_src: [u8; 16],
    r_dst: [u8; 16],
    /// Scratch for the dataplane (e.g. TCP sequence offsets); starts at 0.
    pub user: u64,
    /// Scratch for the dataplane, one word per direction (original, reply):
    /// what every packet of that direction needs resolved once (the next
    /// hop); starts at 0.
    pub hops: [u64; 2],
    /// Scratch for the dataplane: when `hops` was filled; starts at 0.
    pub hops_epoch: u32,
    /// Scratch for the dataplane (the SYN proxy's sequence offset); starts
    /// at 0. It fills what would be padding before `expires_at_ms`.
    pub user32: u32,
    expires_at_ms: u64,
    link: Link,
    dest: u32,
    /// Seconds; 0 = none.
    timeout_override_s: u32,
}

// The memory budget per connection (docs/benchmarks.md) counts on this.
const _: () = assert!(core::mem::size_of::<Conn>() == 136);

impl Conn {
    const FREE: Conn = Conn {
        o_src: [0; 16],
        o_dst: [0; 16],
        r_src: [0; 16],
        r_dst: [0; 16],
        o_sport: 0,
        o_dport: 0,
        r_sport: 0,
        r_dport: 0,
        user: 0,
        hops: [0; 2],
        hops_epoch: 0,
        user32: 0,
        expires_at_ms: 0,
        link: Link::UNLINKED,
        service: 0,
        dest: 0,
        timeout_override_s: 0,
        proto: 0,
        flags: 0,
        state: TcpState::None,
        bits: 0,
    };

    fn is_live(&self) -> bool {
        self.bits & BIT_LIVE != 0
    }

    /// The request tuple as it arrives (CIP:cport -> VIP:vport).
    pub fn original(&self) -> Tuple {
        self.key(Direction::Original).to_tuple()
    }

    /// The reply tuple as it arrives (RIP:rport -> CIP:cport or LIP:lport).
    pub fn reply(&self) -> Tuple {
        self.key(Direction::Reply).to_tuple()
    }

    /// The reply's destination (CIP:cport, or FULLNAT's LIP:lport), without
    /// the rest of [`Conn::reply`].
    #[inline]
    pub fn reply_dst(&self) -> (std::net::IpAddr, u16) {
        let v6 = self.bits & BIT_R_DST6 != 0;
        (bits_addr(u128::from_le_bytes(self.r_dst), v6), self.r_dport)
    }

    /// The tuple of one direction.
    pub fn tuple(&self, dir: Direction) -> Tuple {
        self.key(dir).to_tuple()
    }

    pub fn proto(&self) -> u8 {
        self.proto
    }
    pub fn service(&self) -> u32 {
        self.service
    }
    pub fn dest(&self) -> u32 {
        self.dest
    }
    pub fn flags(&self) -> u8 {
        self.flags
    }
    /// TCP state, or `TcpState::Udp` for every non-TCP conn.
    pub fn state(&self) -> TcpState {
        self.state
    }
    /// When the conn expires unless more packets come (virtual ms).
    pub fn expires_at_ms(&self) -> u64 {
        self.expires_at_ms
    }
    /// IPVS ActiveConn (true) vs InActConn (false): ESTABLISHED TCP only.
    pub fn is_active(&self) -> bool {
        self.state.is_active()
    }
    pub fn timeout_override_s(&self) -> Option<u32> {
        match self.timeout_override_s {
            0 => None,
            s => Some(s),
        }
    }
    /// True while the conn uses the INPUT-ONLY rows (director sees no replies).
    pub fn is_input_only(&self) -> bool {
        self.bits & BIT_INPUT_ONLY != 0
    }
    /// Installed from a connection sync record (connection sync, a restart)
    /// and no packet of it seen here since.
    pub fn is_synced(&self) -> bool {
        self.bits & BIT_SYNCED != 0
    }

    /// The key of one direction, in wire form (see [`Key`]).
    #[inline]
    pub fn key(&self, dir: Direction) -> Key {
        match dir {
            Direction::Original => Key {
                src: u128::from_le_bytes(self.o_src),
                dst: u128::from_le_bytes(self.o_dst),
                sport: self.o_sport,
                dport: self.o_dport,
                proto: self.proto,
                fam: self.bits & (BIT_O_SRC6 | BIT_O_DST6),
            },
            Direction::Reply => Key {
                src: u128::from_le_bytes(self.r_src),
                dst: u128::from_le_bytes(self.r_dst),
                sport: self.r_sport,
                dport: self.r_dport,
                proto: self.proto,
                fam: (self.bits & (BIT_R_SRC6 | BIT_R_DST6)) >> 2,
            },
        }
    }

    #[inline]
    fn matches(&self, k: &Key, dir: Direction) -> bool {
        // Both ports as one word each side (one compare).
        let ports = |s: u16, d: u16| u32::from(s) | u32::from(d) << 16;
        let kp = ports(k.sport, k.dport);
        match dir {
            Direction::Original => {
                ports(self.o_sport, self.o_dport) == kp
                    && self.proto == k.proto
                    && u128::from_le_bytes(self.o_src) == k.src
                    && u128::from_le_bytes(self.o_dst) == k.dst
                    && self.bits & (BIT_O_SRC6 | BIT_O_DST6) == k.fam
            }
            Direction::Reply => {
                ports(self.r_sport, self.r_dport) == kp
                    && self.proto == k.proto
                    && u128::from_le_bytes(self.r_src) == k.src
                    && u128::from_le_bytes(self.r_dst) == k.dst
                    && (self.bits & (BIT_R_SRC6 | BIT_R_DST6)) >> 2 == k.fam
            }
        }
    }

    /// The timeout its state has now, in seconds (its own for ESTABLISHED
    /// and UDP when it has one).
    pub fn timeout_s(&self, t: &Timeouts) -> u32 {
        match self.state {
            TcpState::Established | TcpState::Udp if self.timeout_override_s != 0 => {
                self.timeout_override_s
            }
            s => t.for_state(s),
        }
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.key(Direction::Original);
        let r = self.key(Direction::Reply);
        let a = |b: &u128, v6: bool| bits_addr(*b, v6);
        f.debug_struct("Conn")
            .field("proto", &self.proto)
            .field(
                "original",
                &format_args!(
                    "{}:{} -> {}:{}",
                    a(&o.src, o.fam & FAM_SRC_V6 != 0),
                    o.sport,
                    a(&o.dst, o.fam & FAM_DST_V6 != 0),
                    o.dport
                ),
            )
            .field(
                "reply",
                &format_args!(
                    "{}:{} -> {}:{}",
                    a(&r.src, r.fam & FAM_SRC_V6 != 0),
                    r.sport,
                    a(&r.dst, r.fam & FAM_DST_V6 != 0),
                    r.dport
                ),
            )
            .field("state", &self.state)
            .field("service", &self.service)
            .field("dest", &self.dest)
            .field("flags", &self.flags)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("user", &self.user)
            .finish()
    }
}

impl TimerNode for Conn {
    fn link(&self) -> Link {
        self.link
    }
    fn link_mut(&mut self) -> &mut Link {
        &mut self.link
    }
    fn expires_at_ms(&self) -> u64 {
        self.expires_at_ms
    }
}

/// When `c` expires in the state it has now, from `now_ms`: its own
/// timeout for ESTABLISHED and UDP when it has one, else its state's from
/// `by_state` ([`Timeouts::ms_by_state`]); [`Conn::timeout_s`] in ms.
#[inline(always)]
fn expiry_ms(by_state: &[u64; TcpState::COUNT], c: &Conn, now_ms: u64) -> u64 {
    let ms = match c.state {
        TcpState::Established | TcpState::Udp if c.timeout_override_s != 0 => {
            u64::from(c.timeout_override_s) * 1000
        }
        s => by_state[s as usize],
    };
    now_ms.saturating_add(ms)
}

/// Where a key sits in a table's index (its keyed hash), noted by
/// [`ConnTable::lookup_burst_placed`].
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyPlace(u64);

/// Per-worker connection table. See the module docs.
pub struct ConnTable {
    slab: Box<[Conn]>,
    /// Free slots chained through `link.next`.
    free_head: u32,
    len: u32,
    index: Index,
    wheel: Wheel,
    hasher: KeyHasher,
    timeouts: Timeouts,
    /// `timeouts` in milliseconds by state ([`Timeouts::ms_by_state`]).
    timeout_ms: [u64; TcpState::COUNT],
    secure_tcp: bool,
    /// Keys inserted since [`ConnTable::mark_inserts`]: a 256-bit filter of
    /// their hashes (no false negatives).
    inserted: [u64; 4],
}

/// The filter bit of hash `h` in `ConnTable::inserted` (bits the index's
/// place does not start from).
#[inline]
fn filter_bit(h: u64) -> (usize, u64) {
    let b = (h >> 24) as usize & 255;
    (b >> 6, 1 << (b & 63))
}

impl ConnTable {
    /// A table for `capacity` conns (clamped to [`MAX_CAPACITY`]), everything
    /// allocated now. `hash_seed` must be random per process.
    pub fn new(capacity: u32, hash_seed: u64, timeouts: Timeouts) -> ConnTable {
        ConnTable::new_advised(capacity, hash_seed, timeouts, &crate::mem::no_advice)
    }

    /// [`ConnTable::new`], with `advise` called on the slab and the index
    /// before they are first written (huge pages, see `mem`).
    pub fn new_advised(
        capacity: u32,
        hash_seed: u64,
        timeouts: Timeouts,
        advise: crate::mem::Advise,
    ) -> ConnTable {
        let cap = capacity.min(MAX_CAPACITY);
        let mut slab = crate::mem::filled(cap as usize, Conn::FREE, advise);
        for (i, c) in slab.iter_mut().enumerate() {
            c.link.next = if i + 1 < cap as usize {
                i as u32 + 1
            } else {
                NIL
            };
        }
        ConnTable {
            slab,
            free_head: if cap > 0 { 0 } else { NIL },
            len: 0,
            index: Index::new(2 * cap as usize, hash_seed.rotate_left(29), advise),
            wheel: Wheel::new(),
            hasher: KeyHasher::new(hash_seed),
            timeouts,
            timeout_ms: timeouts.ms_by_state(),
            secure_tcp: false,
            inserted: [0; 4],
        }
    }

    /// Memory per conn slot, including both direction entries of the index at its
    /// provisioned load (0.8): `size_of::<Conn>() + 2 * index bytes per entry`.
    pub const fn bytes_per_conn() -> usize {
        core::mem::size_of::<Conn>() + 2 * Index::bytes_per_entry()
    }

    /// Bytes this table holds (slab + index + wheel).
    pub fn memory_bytes(&self) -> usize {
        core::mem::size_of_val(&*self.slab) + self.index.memory_bytes() + self.wheel.memory_bytes()
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn capacity(&self) -> usize {
        self.slab.len()
    }
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }
    /// New timeouts apply to each conn at its next packet (as in IPVS).
    pub fn set_timeouts(&mut self, t: Timeouts) {
        self.timeouts = t;
        self.timeout_ms = t.ms_by_state();
    }
    /// IPVS `secure_tcp` defense: use the kernel's `tcp_states_dos` table.
    pub fn set_secure_tcp(&mut self, on: bool) {
        self.secure_tcp = on;
    }
    pub fn secure_tcp(&self) -> bool {
        self.secure_tcp
    }

    #[inline]
    fn hash(&self, k: &Key) -> u64 {
        k.hash(&self.hasher)
    }

    fn live(&self, id: ConnId) -> Option<&Conn> {
        self.slab.get(id.0 as usize).filter(|c| c.is_live())
    }

    /// Find the conn a packet belongs to, in either direction.
    #[inline]
    pub fn lookup(&self, t: &Tuple) -> Option<(ConnId, Direction)> {
        let k = Key::from_tuple(t);
        self.lookup_key(&k, self.hash(&k))
    }

    #[inline]
    fn lookup_key(&self, k: &Key, h: u64) -> Option<(ConnId, Direction)> {
        self.lookup_at(k, self.index.place(h))
    }

    /// Look up a burst of tuples (the dataplane's batch of up to 32), overlapping
    /// their memory latency in stages: hash all, touch all index buckets, touch all
    /// candidate conns, then answer. `out[i]` gets the answer for `tuples[i]`; extra
    /// entries of either are ignored. Same answers as [`ConnTable::lookup`].
    pub fn lookup_burst(&self, tuples: &[Tuple], out: &mut [Option<(ConnId, Direction)>]) {
        const MAX: usize = 32;
        for (tc, oc) in tuples.chunks(MAX).zip(out.chunks_mut(MAX)) {
            let mut keys = [Key::EMPTY; MAX];
            for (k, t) in keys.iter_mut().zip(tc) {
                *k = Key::from_tuple(t);
            }
            self.lookup_burst_keys(&keys[..tc.len()], oc);
        }
    }

    /// [`ConnTable::lookup`] of one key in wire form.
    #[inline]
    pub fn lookup_wire(&self, k: &Key) -> Option<(ConnId, Direction)> {
        self.lookup_key(k, self.hash(k))
    }

    /// [`ConnTable::lookup_burst`] of keys in wire form (the packet path:
    /// built from the frames' bytes, no address conversion).
    pub fn lookup_burst_keys(&self, keys: &[Key], out: &mut [Option<(ConnId, Direction)>]) {
        const MAX: usize = 32;
        let mut places = [KeyPlace::default(); MAX];
        for (kc, oc) in keys.chunks(MAX).zip(out.chunks_mut(MAX)) {
            self.lookup_burst_placed(kc, oc, &mut places);
        }
    }

    /// [`ConnTable::lookup_burst_keys`] that also notes where each key sits
    /// in the index (`places[i]` for `keys[i]`; keys past 32 are not
    /// looked up), so a lookup of the same key again
    /// ([`ConnTable::lookup_placed`]: after an insert made the burst's
    /// misses stale) skips the hash.
    pub fn lookup_burst_placed(
        &self,
        keys: &[Key],
        out: &mut [Option<(ConnId, Direction)>],
        places: &mut [KeyPlace; 32],
    ) {
        const MAX: usize = 32;
        let n = keys.len().min(out.len()).min(MAX);
        let mut at = [(0usize, 0usize, 0u32); MAX];
        let mut acc = 0u32;
        for j in 0..n {
            let h = self.hash(&keys[j]);
            places[j] = KeyPlace(h);
            at[j] = self.index.place(h);
            acc ^= self.index.touch_at(at[j]);
        }
        // The candidate of the usual case (a tag match in the primary
        // bucket), its conn touched; the compare confirms it.
        let mut cand = [None; 32];
        for j in 0..n {
            cand[j] = self.index.first_in_primary(at[j]);
            if let Some(v) = cand[j] {
                acc ^= self.touch_conn(v);
            }
        }
        core::hint::black_box(acc);
        self.compare_burst(&keys[..n], &mut out[..n], &places[..n], &cand[..n]);
    }

    /// [`ConnTable::lookup_burst_placed`] with `prefetch` called to hint
    /// the lines it and the packet path will read, where the plain one
    /// loads them (a load waits for its line, and 32 of them fill the
    /// core's window; a prefetch instruction does not wait): `prefetch(p)`
    /// should start fetching the cache line at `p` and nothing else (the
    /// dataplane passes `dpdk::prefetch`; any address may be given, none
    /// is read through). [`ConnTable::place_hinted`] of every key, then
    /// [`ConnTable::lookup_burst_hinted`]. Same answers and places as
    /// [`ConnTable::lookup_burst_placed`].
    #[inline]
    pub fn lookup_burst_prefetched(
        &self,
        keys: &[Key],
        out: &mut [Option<(ConnId, Direction)>],
        places: &mut [KeyPlace; 32],
        prefetch: impl Fn(*const u8),
    ) {
        let n = keys.len().min(out.len()).min(32);
        for j in 0..n {
            places[j] = self.place_hinted(&keys[j], &prefetch);
        }
        self.lookup_burst_hinted(&keys[..n], &places[..n], &mut out[..n], prefetch);
    }

    /// The first stage of a prefetching burst lookup, one key at a time
    /// (the dataplane calls it as it builds each key, so the line is
    /// fetched while the rest of the burst is parsed): where `k` sits in
    /// the index, its primary bucket hinted with `prefetch` (see
    /// [`ConnTable::lookup_burst_prefetched`]).
    #[inline]
    pub fn place_hinted(&self, k: &Key, prefetch: impl Fn(*const u8)) -> KeyPlace {
        let h = self.hash(k);
        prefetch(self.index.bucket_addr(self.index.primary(h)));
        KeyPlace(h)
    }

    /// The rest of a prefetching burst lookup, keys whose
    /// [`ConnTable::place_hinted`] gave `places` (`out[i]` for `keys[i]`,
    /// up to 32): every primary bucket's tags scanned and the candidate
    /// conn's whole slot hinted (all three of its lines: the compare reads
    /// the key, the packet path the rest), or, with no tag in the primary
    /// bucket, the alternate bucket hinted; then every compare, each as
    /// far as can be from its prefetch. With another key's place an
    /// answer is still never a wrong connection (the full compare), only
    /// possibly a miss.
    #[inline]
    pub fn lookup_burst_hinted(
        &self,
        keys: &[Key],
        places: &[KeyPlace],
        out: &mut [Option<(ConnId, Direction)>],
        prefetch: impl Fn(*const u8),
    ) {
        const MAX: usize = 32;
        let n = keys.len().min(places.len()).min(out.len()).min(MAX);
        let mut cand = [None; MAX];
        for j in 0..n {
            // The alternate bucket is worked out only when needed.
            let h = places[j].0;
            cand[j] = self
                .index
                .first_in_primary((self.index.primary(h), 0, h as u32));
            match cand[j] {
                Some(v) => self.hint_slot((v >> 1) as usize, &prefetch),
                None => prefetch(self.index.bucket_addr(self.index.place(h).1)),
            }
        }
        self.compare_burst(&keys[..n], &mut out[..n], &places[..n], &cand[..n]);
    }

    /// Hint slot `i`'s three lines (none past the slab): a slot starts at
    /// most 56 bytes into a line (it is 8-aligned) and 56 + 136 <= 3 * 64.
    #[inline(always)]
    fn hint_slot(&self, i: usize, prefetch: &impl Fn(*const u8)) {
        const _: () = assert!(
            core::mem::align_of::<Conn>() >= 8 && 56 + core::mem::size_of::<Conn>() <= 3 * 64
        );
        if let Some(c) = self.slab.get(i) {
            let p: *const u8 = (&raw const *c).cast();
            prefetch(p);
            prefetch(p.wrapping_add(64));
            prefetch(p.wrapping_add(128));
        }
    }

    /// The last stage of a burst's lookup: each key's candidate confirmed
    /// by the full compare, or the rest of its buckets searched.
    #[inline(always)]
    fn compare_burst(
        &self,
        keys: &[Key],
        out: &mut [Option<(ConnId, Direction)>],
        places: &[KeyPlace],
        cand: &[Option<u32>],
    ) {
        for (j, (k, o)) in keys.iter().zip(out.iter_mut()).enumerate() {
            *o = match cand[j] {
                Some(v) if self.slab[(v >> 1) as usize].matches(k, Direction::from_bit(v)) => {
                    Some((ConnId(v >> 1), Direction::from_bit(v)))
                }
                // No tag of the primary bucket matched: only the
                // alternate one can hold the key (a new flow's usual case).
                None => self.lookup_alt(k, self.index.place(places[j].0)),
                Some(_) => self.lookup_key(k, places[j].0),
            };
        }
    }

    /// Start noting the keys inserted from now on (a burst's lookup is
    /// about to run): see [`ConnTable::maybe_inserted`].
    #[inline]
    pub fn mark_inserts(&mut self) {
        self.inserted = [0; 4];
    }

    /// Whether a key at place `p` may have been inserted since
    /// [`ConnTable::mark_inserts`]: `false` means it was not, so a key
    /// that missed after the mark misses still (only inserts add keys).
    #[inline]
    pub fn maybe_inserted(&self, p: KeyPlace) -> bool {
        let (w, bit) = filter_bit(p.0);
        self.inserted[w] & bit != 0
    }

    /// [`ConnTable::lookup_wire`] of a key whose place this table's
    /// [`ConnTable::lookup_burst_placed`] noted (a key's place never
    /// moves: it is its hash's; with another key's place the full compare
    /// still never returns a wrong connection).
    #[inline]
    pub fn lookup_placed(&self, k: &Key, p: KeyPlace) -> Option<(ConnId, Direction)> {
        self.lookup_key(k, p.0)
    }

    /// [`ConnTable::lookup_at`] in the alternate bucket only.
    #[inline]
    fn lookup_alt(&self, k: &Key, place: (usize, usize, u32)) -> Option<(ConnId, Direction)> {
        let slab = &self.slab;
        self.index
            .find_in_alt(place, |v| {
                slab[(v >> 1) as usize].matches(k, Direction::from_bit(v))
            })
            .map(|v| (ConnId(v >> 1), Direction::from_bit(v)))
    }

    #[inline]
    fn lookup_at(&self, k: &Key, place: (usize, usize, u32)) -> Option<(ConnId, Direction)> {
        let slab = &self.slab;
        self.index
            .find_at(place, |v| {
                slab[(v >> 1) as usize].matches(k, Direction::from_bit(v))
            })
            .map(|v| (ConnId(v >> 1), Direction::from_bit(v)))
    }

    /// Read the cache lines a lookup compare will read for index value `v`.
    #[inline]
    fn touch_conn(&self, v: u32) -> u32 {
        let c = &self.slab[(v >> 1) as usize];
        let far = if v & 1 == 0 { c.o_dst[15] } else { c.r_dst[15] };
        u32::from(c.proto ^ far)
    }

    /// Track a new conn: both tuples indexed, timer armed with the state's timeout
    /// (TCP starts in NONE: call [`ConnTable::on_packet`] with the first segment
    /// right after; other protocols start in `Udp`). The new conn is inactive.
    ///
    /// No duplicate check (the dataplane inserts after a lookup miss): a second conn
    /// with an already tracked tuple is stored, and lookups of that tuple return one
    /// of the two. Use [`ConnTable::try_insert`] to refuse duplicates.
    pub fn insert(&mut self, c: NewConn, now_ms: u64) -> Result<ConnId, TableFull> {
        let p = self.place_of(&c.original);
        self.insert_placed(c, p, now_ms)
    }

    /// Where the key of `t` belongs in this table's index (for
    /// [`ConnTable::insert_placed`] when no lookup noted it).
    #[inline]
    pub fn place_of(&self, t: &Tuple) -> KeyPlace {
        KeyPlace(self.hash(&Key::from_tuple(t)))
    }

    /// [`ConnTable::lookup_wire`], also saying where the key belongs.
    #[inline]
    pub fn lookup_wire_placed(&self, k: &Key) -> (Option<(ConnId, Direction)>, KeyPlace) {
        let h = self.hash(k);
        (self.lookup_key(k, h), KeyPlace(h))
    }

    /// [`ConnTable::insert`] of a conn whose original key's place this
    /// table's [`ConnTable::lookup_burst_placed`] noted (the packet path: a
    /// burst's miss becomes a new conn), so that key is not hashed again.
    /// `place` must be the place noted for the key of `c.original` (another
    /// key's place would index the conn where lookups of its original
    /// tuple never look; see [`ConnTable::place_of`]).
    pub fn insert_placed(
        &mut self,
        c: NewConn,
        place: KeyPlace,
        now_ms: u64,
    ) -> Result<ConnId, TableFull> {
        let state = if c.original.proto == PROTO_TCP {
            TcpState::None
        } else {
            TcpState::Udp
        };
        self.insert_in_state(c, place, now_ms, state, 0, |_| {})
    }

    /// [`ConnTable::insert_placed`] and the conn's first packet at once: as
    /// `insert_placed`, then [`ConnTable::set_input_only`] with
    /// `input_only`, then [`ConnTable::on_packet`] of `first` in the
    /// original direction, with the same conn, state, timer and transition
    /// as those three calls (the timer armed once, at the state's timeout,
    /// where the three arm it at NONE's and push it later).
    pub fn insert_placed_first(
        &mut self,
        c: NewConn,
        place: KeyPlace,
        input_only: bool,
        first: TcpFlags,
        now_ms: u64,
        prefetch: impl Fn(*const u8),
    ) -> Result<(ConnId, Transition), TableFull> {
        let (state, bits) = if c.original.proto != PROTO_TCP {
            (TcpState::Udp, if input_only { BIT_INPUT_ONLY } else { 0 })
        } else if input_only {
            let s = tcp::next_state(self.secure_tcp, TcpDir::InputOnly, first, TcpState::None);
            (s, BIT_INPUT_ONLY)
        } else {
            let s = tcp::next_state(self.secure_tcp, TcpDir::Input, first, TcpState::None);
            (s, 0)
        };
        let was = if c.original.proto == PROTO_TCP {
            TcpState::None
        } else {
            TcpState::Udp
        };
        let id = self.insert_in_state(c, place, now_ms, state, bits, prefetch)?;
        Ok((
            id,
            Transition {
                was_active: was.is_active(),
                is_active: state.is_active(),
                state,
                changed: state != was,
            },
        ))
    }

    /// The insert: the conn in `state`, with `bits` (besides the live and
    /// family bits), its timer armed at that state's timeout. `prefetch`
    /// hints the lines a new connection's insert misses on: the reply key's
    /// bucket (a random one; the original key's was hinted when the packet
    /// was classified) first and written last, the slot and the original
    /// key's entry in between; and, once the slot is taken, the next free
    /// slot (the next connection's, written whole).
    #[inline(always)]
    fn insert_in_state(
        &mut self,
        c: NewConn,
        place: KeyPlace,
        now_ms: u64,
        state: TcpState,
        bits: u8,
        prefetch: impl Fn(*const u8),
    ) -> Result<ConnId, TableFull> {
        let i = self.free_head;
        if i == NIL {
            return Err(TableFull);
        }
        let ok = Key::from_tuple(&c.original);
        let rk = Key::from_tuple(&c.reply);
        let oh = place.0;
        debug_assert_eq!(oh, self.hash(&ok), "a place noted for another key");
        let rh = self.hash(&rk);
        prefetch(self.index.bucket_addr(self.index.primary(rh)));
        if !self.index.insert(oh, i << 1) {
            return Err(TableFull);
        }
        let next = self.slab[i as usize].link.next;
        self.slab[i as usize] = Conn {
            o_src: ok.src.to_le_bytes(),
            o_dst: ok.dst.to_le_bytes(),
            r_src: rk.src.to_le_bytes(),
            r_dst: rk.dst.to_le_bytes(),
            o_sport: ok.sport,
            o_dport: ok.dport,
            r_sport: rk.sport,
            r_dport: rk.dport,
            user: 0,
            hops: [0; 2],
            hops_epoch: 0,
            user32: 0,
            expires_at_ms: 0,
            link: Link::UNLINKED,
            service: c.service,
            dest: c.dest,
            timeout_override_s: c.timeout_override_s.unwrap_or(0),
            proto: c.original.proto,
            flags: c.flags,
            state,
            bits: BIT_LIVE | ok.fam | (rk.fam << 2) | bits,
        };
        if !self.index.insert(rh, i << 1 | 1) {
            self.index.remove(oh, i << 1);
            let slot = &mut self.slab[i as usize];
            *slot = Conn::FREE;
            slot.link.next = next;
            return Err(TableFull);
        }
        for h in [oh, rh] {
            let (w, bit) = filter_bit(h);
            self.inserted[w] |= bit;
        }
        self.free_head = next;
        self.hint_slot(next as usize, &prefetch);
        let slot = &mut self.slab[i as usize];
        slot.expires_at_ms = expiry_ms(&self.timeout_ms, slot, now_ms);
        self.wheel.arm(&mut self.slab, i);
        self.len += 1;
        Ok(ConnId(i))
    }

    /// [`ConnTable::insert`], but refuse a conn whose original or reply tuple is
    /// already tracked (in either direction).
    pub fn try_insert(&mut self, c: NewConn, now_ms: u64) -> Result<ConnId, InsertError> {
        for t in [&c.original, &c.reply] {
            if let Some((id, d)) = self.lookup(t) {
                return Err(InsertError::Exists(id, d));
            }
        }
        Ok(self.insert(c, now_ms)?)
    }

    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        self.live(id)
    }

    /// Direction `dir`'s key of connection `id`, without the liveness check
    /// of [`ConnTable::get`]: for a caller that found `id` live while
    /// handling this packet and reads its key (which never changes while it
    /// lives) only where it needs it. An id from another table reads as
    /// the empty key.
    #[inline]
    pub fn key(&self, id: ConnId, dir: Direction) -> Key {
        match self.slab.get(id.0 as usize) {
            Some(c) => c.key(dir),
            None => Conn::FREE.key(dir),
        }
    }

    /// Both keys of connection `id` (original, reply), as [`ConnTable::key`].
    #[inline]
    pub fn keys(&self, id: ConnId) -> (Key, Key) {
        let c = self.slab.get(id.0 as usize).unwrap_or(&Conn::FREE);
        (c.key(Direction::Original), c.key(Direction::Reply))
    }

    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.slab.get_mut(id.0 as usize).filter(|c| c.is_live())
    }

    /// Replace the dataplane's opaque flags of a conn (set at insert).
    pub fn set_flags(&mut self, id: ConnId, flags: u8) {
        if let Some(c) = self.get_mut(id) {
            c.flags = flags;
        }
    }

    /// Mark a conn as one whose replies bypass the director (DR/TUN; IPVS
    /// `IP_VS_CONN_F_NOOUTPUT`): its client segments then use the INPUT-ONLY rows.
    /// As in the kernel, a reply seen later clears the mark. Call after `insert`,
    /// before the first `on_packet`.
    pub fn set_input_only(&mut self, id: ConnId, on: bool) {
        if let Some(c) = self.get_mut(id) {
            if on {
                c.bits |= BIT_INPUT_ONLY;
            } else {
                c.bits &= !BIT_INPUT_ONLY;
            }
        }
    }

    /// Mark a conn as installed from a connection sync record; its next
    /// packet (`on_packet`) clears the mark.
    pub fn set_synced(&mut self, id: ConnId) {
        if let Some(c) = self.get_mut(id) {
            c.bits |= BIT_SYNCED;
        }
    }

    /// A packet of conn `id` seen in `dir`: run the state machine (TCP) and re-arm
    /// the timer with the resulting state's timeout. `flags` is ignored for non-TCP
    /// conns. An unknown or freed id changes nothing and reports an inactive NONE.
    #[inline(always)]
    pub fn on_packet(
        &mut self,
        id: ConnId,
        dir: Direction,
        flags: TcpFlags,
        now_ms: u64,
    ) -> Transition {
        let secure = self.secure_tcp;
        // The slot through the field, not `get_mut`, so the timeouts are
        // read where used (one word on the fast path), not copied whole.
        let Some(c) = self.slab.get_mut(id.0 as usize).filter(|c| c.is_live()) else {
            return Transition {
                was_active: false,
                is_active: false,
                state: TcpState::None,
                changed: false,
            };
        };
        let timeouts = &self.timeout_ms;
        let was = c.state;
        c.bits &= !BIT_SYNCED;
        const STATE_FLAGS: u8 = TcpFlags::ACK.bits()
            | TcpFlags::SYN.bits()
            | TcpFlags::FIN.bits()
            | TcpFlags::RST.bits();
        if c.proto == PROTO_TCP
            && was == TcpState::Established
            && flags.bits() & STATE_FLAGS == TcpFlags::ACK.bits()
        {
            // An established connection's plain ACK (the bulk of its
            // packets) stays ESTABLISHED in every table and direction: no
            // table walk.
            if dir == Direction::Reply {
                c.bits &= !BIT_INPUT_ONLY;
            }
            let old_exp = c.expires_at_ms;
            c.expires_at_ms = expiry_ms(timeouts, c, now_ms);
            self.wheel.rearm(&mut self.slab, id.0, old_exp);
            return Transition {
                was_active: true,
                is_active: true,
                state: TcpState::Established,
                changed: false,
            };
        }
        if c.proto == PROTO_TCP {
            let tdir = match dir {
                Direction::Reply => {
                    c.bits &= !BIT_INPUT_ONLY;
                    TcpDir::Output
                }
                Direction::Original if c.bits & BIT_INPUT_ONLY != 0 => TcpDir::InputOnly,
                Direction::Original => TcpDir::Input,
            };
            c.state = tcp::next_state(secure, tdir, flags, was);
        }
        let old_exp = c.expires_at_ms;
        c.expires_at_ms = expiry_ms(timeouts, c, now_ms);
        let state = c.state;
        self.wheel.rearm(&mut self.slab, id.0, old_exp);
        Transition {
            was_active: was.is_active(),
            is_active: state.is_active(),
            state,
            changed: state != was,
        }
    }

    /// Put a conn in `state` directly, with that state's timeout from `now_ms`, as
    /// the kernel's `ip_vs_tcp_conn_listen` does for LISTEN; for conn sync and
    /// tests. `Udp` is refused for TCP conns and only `Udp` is accepted for others
    /// (returns `None` then, as for an unknown id).
    pub fn force_state(&mut self, id: ConnId, state: TcpState, now_ms: u64) -> Option<Transition> {
        let timeouts = self.timeout_ms;
        let c = self.get_mut(id)?;
        if (c.proto == PROTO_TCP) == (state == TcpState::Udp) {
            return None;
        }
        let was = c.state;
        c.state = state;
        let old_exp = c.expires_at_ms;
        c.expires_at_ms = expiry_ms(&timeouts, c, now_ms);
        self.wheel.rearm(&mut self.slab, id.0, old_exp);
        Some(Transition {
            was_active: was.is_active(),
            is_active: state.is_active(),
            state,
            changed: state != was,
        })
    }

    /// Unindex, unlink and free slot `i`. Only the live bit and the free
    /// chain are written: a free slot is never read (lookups reach slots
    /// through the index, the rest through the live bit) and `insert`
    /// writes every field.
    fn free(&mut self, i: u32) {
        self.wheel.cancel(&mut self.slab, i);
        self.free_unlinked(i);
    }

    /// [`ConnTable::free`] of a slot its timer no longer links (what the
    /// wheel hands out as expired).
    #[inline(always)]
    fn free_unlinked(&mut self, i: u32) {
        let (ok, rk) = {
            let c = &self.slab[i as usize];
            (c.key(Direction::Original), c.key(Direction::Reply))
        };
        let (oh, rh) = (self.hash(&ok), self.hash(&rk));
        self.index.remove(oh, i << 1);
        self.index.remove(rh, i << 1 | 1);
        let slot = &mut self.slab[i as usize];
        slot.bits = 0;
        slot.link.next = self.free_head;
        self.free_head = i;
        self.len -= 1;
    }

    /// Forget a conn now (both directions); `None` if `id` is not a live conn.
    pub fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let old = self.live(id)?.clone();
        self.free(id.0);
        Some(old)
    }

    /// Expire conns whose timer fired by `now_ms`, at most `budget` of them, calling
    /// `f` with each just before it is freed (decrement dest counters there; use
    /// `is_active()` to pick which). Examines at most `8 * budget` timer entries
    /// (entries pushed later by traffic are moved, not expired), so the work per call
    /// is bounded; the rest is found by later calls. Returns the number expired.
    pub fn expire(&mut self, now_ms: u64, budget: usize, mut f: impl FnMut(&Conn)) -> usize {
        let mut work = budget.saturating_mul(8);
        let mut n = 0;
        while n < budget {
            let Some(i) = self.wheel.next_expired(&mut self.slab, now_ms, &mut work) else {
                break;
            };
            f(&self.slab[i as usize]);
            self.free_unlinked(i);
            n += 1;
        }
        n
    }

    /// Incremental listing that never stalls the worker: visit up to `max` live conns
    /// (at least 1) from slot `cursor`, examining at most `16 * max` slots; returns
    /// the cursor to continue from, or `None` when the end of the slab is reached.
    /// Conns inserted or removed between calls may or may not be visited.
    pub fn scan(&self, cursor: u32, max: usize, mut f: impl FnMut(ConnId, &Conn)) -> Option<u32> {
        let max = max.max(1);
        let limit = max.saturating_mul(16);
        let mut visited = 0;
        let mut i = cursor as usize;
        let end = self.slab.len();
        let mut examined = 0;
        while i < end && visited < max && examined < limit {
            let c = &self.slab[i];
            if c.is_live() {
                f(ConnId(i as u32), c);
                visited += 1;
            }
            examined += 1;
            i += 1;
        }
        if i < end {
            Some(i as u32)
        } else {
            None
        }
    }
}

impl Key {
    const EMPTY: Key = Key {
        src: 0,
        dst: 0,
        sport: 0,
        dport: 0,
        proto: 0,
        fam: 0,
    };
}

impl fmt::Debug for ConnTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnTable")
            .field("len", &self.len)
            .field("capacity", &self.slab.len())
            .field("timeouts", &self.timeouts)
            .field("secure_tcp", &self.secure_tcp)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timer's expiry is [`Conn::timeout_s`] from now, in every state,
    /// with and without a per-service timeout.
    #[test]
    fn expiry_is_timeout_s_from_now() {
        let t = Timeouts::default().with_ipvsadm(7200, 33, 61);
        let by_state = t.ms_by_state();
        for state in TcpState::ALL {
            for timeout_override_s in [0, 5] {
                let c = Conn {
                    state,
                    timeout_override_s,
                    ..Conn::FREE
                };
                let want = 1_000 + u64::from(c.timeout_s(&t)) * 1000;
                assert_eq!(expiry_ms(&by_state, &c, 1_000), want, "{state:?}");
            }
        }
    }

    /// The prefetching burst lookup answers as the touching one, notes the
    /// same places, and hints only lines of the index and the slab: each
    /// key's primary bucket, then its candidate's three lines or its
    /// alternate bucket.
    #[test]
    fn a_prefetched_burst_lookup_answers_as_the_plain_one() {
        use std::net::{IpAddr, Ipv4Addr};
        let v4 = |a: u32| IpAddr::V4(Ipv4Addr::from(a));
        let new = |n: u32| {
            let cip = v4(0x6440_0000 | (n >> 16));
            let cport = (n & 0xffff) as u16;
            NewConn {
                original: Tuple::tcp(cip, cport, v4(0xc000_020a), 80),
                reply: Tuple::tcp(v4(0x0a00_0005), 8080, cip, cport),
                service: 1,
                dest: n % 7,
                flags: 0,
                timeout_override_s: None,
            }
        };
        let mut ct = ConnTable::new(4096, 0x5eed, Timeouts::default());
        for n in 0..3000 {
            ct.insert(new(n), 0).unwrap();
        }
        let slab = ct.slab.as_ptr_range();
        let (slab, slab_end) = (slab.start as usize, slab.end as usize);
        let ix = ct.index.bucket_addr(0) as usize;
        let ix_end = ix + ct.index.memory_bytes();
        // Both directions, hits and misses (flows 3000.. were never
        // inserted), in bursts of 32 and a short one.
        let keys: Vec<Key> = (2900..3100)
            .flat_map(|n| {
                [
                    Key::from_tuple(&new(n).original),
                    Key::from_tuple(&new(n).reply),
                ]
            })
            .collect();
        for kc in keys.chunks(32).chain([&keys[..5]]) {
            let (mut want, mut got) = ([None; 32], [None; 32]);
            let (mut wp, mut gp) = ([KeyPlace::default(); 32], [KeyPlace::default(); 32]);
            ct.lookup_burst_placed(kc, &mut want, &mut wp);
            let hints = core::cell::RefCell::new(Vec::new());
            ct.lookup_burst_prefetched(kc, &mut got, &mut gp, |p| {
                hints.borrow_mut().push(p as usize)
            });
            assert_eq!(want, got);
            assert!((0..kc.len()).all(|j| wp[j].0 == gp[j].0));
            let hints = hints.into_inner();
            let in_ix = |a: usize| (ix..ix_end).contains(&a) && (a - ix).is_multiple_of(64);
            assert!(hints[..kc.len()].iter().all(|&a| in_ix(a)));
            // Then one group per key: an alternate bucket, or a slot's
            // three lines.
            let rest = &hints[kc.len()..];
            let (mut i, mut groups) = (0, 0);
            while i < rest.len() {
                groups += 1;
                if in_ix(rest[i]) {
                    i += 1;
                } else {
                    let c = rest[i];
                    assert!((slab..slab_end).contains(&c) && (c - slab).is_multiple_of(136));
                    assert_eq!(rest[i + 1..i + 3], [c + 64, c + 128]);
                    i += 3;
                }
            }
            assert_eq!(groups, kc.len());
        }
    }
}
