//! A hashed timer wheel with intrusive links: O(1) arm, re-arm and cancel, and
//! expiry in bounded steps.
//!
//! Nodes are entries of the caller's slab (`TimerNode`): each carries its absolute
//! expiry in ms and a `Link { prev, next }` of slab indices, so arming allocates
//! nothing. A node sits in slot `tick(expiry) mod N`; the wheel is visited tick by
//! tick up to `now`, and a visited node whose expiry is still ahead (a later round,
//! or pushed back by traffic) is simply relinked. Pushing an expiry later is lazy: it
//! only writes the node's expiry, no list surgery, so the per-packet re-arm touches
//! no other cache line; pulling it earlier relinks at once. The head of each list
//! marks itself with `prev = HEAD | slot`, so unlinking never needs to know where a
//! node lives. Time is passed in; the wheel never reads a clock.

pub(crate) const NIL: u32 = u32::MAX;
const HEAD: u32 = 1 << 31;

/// Tick length: expiries fire at most this late.
pub const TICK_MS: u64 = 100;
/// Slots in the wheel: one revolution is 1638.4 s, above every default timeout.
pub const WHEEL_SLOTS: usize = 1 << 14;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) prev: u32,
    pub(crate) next: u32,
}

impl Link {
    pub(crate) const UNLINKED: Link = Link {
        prev: NIL,
        next: NIL,
    };
}

pub(crate) trait TimerNode {
    fn link(&self) -> Link;
    fn link_mut(&mut self) -> &mut Link;
    fn expires_at_ms(&self) -> u64;
}

pub(crate) struct Wheel {
    /// `WHEEL_SLOTS` list heads, then one more: the pending list of nodes detached
    /// from a slot but not yet examined (when a budget ran out mid-slot).
    heads: Box<[u32]>,
    /// Next tick to examine.
    cursor: u64,
}

impl Wheel {
    pub(crate) fn new() -> Wheel {
        Wheel {
            heads: vec![NIL; WHEEL_SLOTS + 1].into_boxed_slice(),
            cursor: 0,
        }
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.heads.len() * 4
    }

    const PENDING: usize = WHEEL_SLOTS;

    fn push_front<N: TimerNode>(&mut self, nodes: &mut [N], slot: usize, i: u32) {
        let old = self.heads[slot];
        *nodes[i as usize].link_mut() = Link {
            prev: HEAD | slot as u32,
            next: old,
        };
        if old != NIL {
            nodes[old as usize].link_mut().prev = i;
        }
        self.heads[slot] = i;
    }

    /// Link node `i` by its current expiry. It must not be linked.
    pub(crate) fn arm<N: TimerNode>(&mut self, nodes: &mut [N], i: u32) {
        let exp = nodes[i as usize].expires_at_ms();
        let tick = exp.div_ceil(TICK_MS).max(self.cursor);
        let slot = (tick % WHEEL_SLOTS as u64) as usize;
        self.push_front(nodes, slot, i);
    }

    /// Unlink node `i`; a no-op if it is not linked.
    #[inline(always)]
    pub(crate) fn cancel<N: TimerNode>(&mut self, nodes: &mut [N], i: u32) {
        let l = nodes[i as usize].link();
        if l.prev == NIL {
            return;
        }
        if l.prev & HEAD != 0 {
            self.heads[(l.prev & !HEAD) as usize] = l.next;
        } else {
            nodes[l.prev as usize].link_mut().next = l.next;
        }
        if l.next != NIL {
            nodes[l.next as usize].link_mut().prev = l.prev;
        }
        *nodes[i as usize].link_mut() = Link::UNLINKED;
    }

    /// Call after changing node `i`'s expiry from `old_exp_ms`. Later: lazy, nothing
    /// to do (the node is visited no later than before and relinked then).
    /// Earlier: relink now so it fires on time.
    /// The check inlined (every packet re-arms), the rare relink not.
    #[inline(always)]
    pub(crate) fn rearm<N: TimerNode>(&mut self, nodes: &mut [N], i: u32, old_exp_ms: u64) {
        if nodes[i as usize].expires_at_ms() < old_exp_ms {
            self.relink(nodes, i);
        }
    }

    #[inline(never)]
    fn relink<N: TimerNode>(&mut self, nodes: &mut [N], i: u32) {
        self.cancel(nodes, i);
        self.arm(nodes, i);
    }

    /// The next node whose expiry is <= `now_ms`, already unlinked, or `None` when
    /// none is due or `work` (nodes examined) ran out. Nodes found not yet due are
    /// relinked where they belong.
    #[inline(always)]
    pub(crate) fn next_expired<N: TimerNode>(
        &mut self,
        nodes: &mut [N],
        now_ms: u64,
        work: &mut usize,
    ) -> Option<u32> {
        let now_tick = now_ms / TICK_MS;
        loop {
            let i = self.heads[Wheel::PENDING];
            if i != NIL {
                if *work == 0 {
                    return None;
                }
                *work -= 1;
                self.cancel(nodes, i);
                if nodes[i as usize].expires_at_ms() <= now_ms {
                    return Some(i);
                }
                self.arm(nodes, i);
                continue;
            }
            if self.cursor > now_tick {
                return None;
            }
            // Far behind (idle, or a jump in virtual time): one revolution visits
            // every slot, so skip the ticks before it.
            let n = WHEEL_SLOTS as u64;
            if now_tick - self.cursor >= n {
                self.cursor = now_tick + 1 - n;
            }
            let slot = (self.cursor % n) as usize;
            self.cursor += 1;
            let h = self.heads[slot];
            if h != NIL {
                self.heads[slot] = NIL;
                self.heads[Wheel::PENDING] = h;
                nodes[h as usize].link_mut().prev = HEAD | Wheel::PENDING as u32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Node {
        link: Link,
        exp: u64,
    }
    impl TimerNode for Node {
        fn link(&self) -> Link {
            self.link
        }
        fn link_mut(&mut self) -> &mut Link {
            &mut self.link
        }
        fn expires_at_ms(&self) -> u64 {
            self.exp
        }
    }

    fn nodes(exps: &[u64]) -> Vec<Node> {
        exps.iter()
            .map(|&exp| Node {
                link: Link::UNLINKED,
                exp,
            })
            .collect()
    }

    fn drain(w: &mut Wheel, ns: &mut [Node], now: u64) -> Vec<u32> {
        let mut work = usize::MAX;
        let mut out = Vec::new();
        while let Some(i) = w.next_expired(ns, now, &mut work) {
            out.push(i);
        }
        out.sort();
        out
    }

    #[test]
    fn fires_at_expiry_not_before() {
        let mut w = Wheel::new();
        let mut ns = nodes(&[1_000, 1_050, 5_000_000]);
        for i in 0..3 {
            w.arm(&mut ns, i);
        }
        assert!(drain(&mut w, &mut ns, 999).is_empty());
        assert_eq!(drain(&mut w, &mut ns, 1_000), vec![0]);
        // Not on a tick boundary: fires at the next boundary, never before.
        assert!(drain(&mut w, &mut ns, 1_099).is_empty());
        assert_eq!(drain(&mut w, &mut ns, 1_100), vec![1]);
        // Several revolutions away: survives every round, then fires.
        assert!(drain(&mut w, &mut ns, 4_999_999).is_empty());
        assert_eq!(drain(&mut w, &mut ns, 5_000_000), vec![2]);
    }

    #[test]
    fn lazy_later_and_eager_earlier() {
        let mut w = Wheel::new();
        let mut ns = nodes(&[10_000, 10_000]);
        w.arm(&mut ns, 0);
        w.arm(&mut ns, 1);
        ns[0].exp = 20_000;
        w.rearm(&mut ns, 0, 10_000);
        ns[1].exp = 500;
        w.rearm(&mut ns, 1, 10_000);
        assert_eq!(drain(&mut w, &mut ns, 500), vec![1]);
        assert!(drain(&mut w, &mut ns, 19_999).is_empty());
        assert_eq!(drain(&mut w, &mut ns, 20_000), vec![0]);
    }

    #[test]
    fn cancel_anywhere_in_a_list() {
        let mut w = Wheel::new();
        let mut ns = nodes(&[1_000, 1_000, 1_000, 1_000]);
        for i in 0..4 {
            w.arm(&mut ns, i);
        }
        w.cancel(&mut ns, 3); // head
        w.cancel(&mut ns, 1); // middle
        w.cancel(&mut ns, 0); // tail
        w.cancel(&mut ns, 0); // again: no-op
        assert_eq!(drain(&mut w, &mut ns, 1_000), vec![2]);
    }

    #[test]
    fn work_budget_resumes_mid_slot() {
        let mut w = Wheel::new();
        let mut ns = nodes(&[1_000; 10]);
        for i in 0..10 {
            w.arm(&mut ns, i);
        }
        let mut work = 3;
        let mut got = 0;
        while w.next_expired(&mut ns, 1_000, &mut work).is_some() {
            got += 1;
        }
        assert_eq!(got, 3);
        // A node of the detached remainder can still be cancelled.
        w.cancel(&mut ns, 0);
        assert_eq!(drain(&mut w, &mut ns, 1_000).len(), 6);
    }
}
