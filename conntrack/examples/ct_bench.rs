//! Conn table micro-benchmark: lookup hit / miss, burst lookup, and insert+remove
//! churn at 1k, 1M and 10M conns, plus memory per conn.
//!
//! `cargo run --release -p dpvs-conntrack --example ct_bench [sizes...]`
//! Lookups go in a pseudo-random order over the whole table, so at 1M and 10M they
//! measure DRAM latency, as a worker facing real traffic sees it.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use conntrack::{ConnTable, Direction, NewConn, TcpFlags, Timeouts, Tuple};

/// Conn `n`: a distinct client address/port per n, one VIP, RS chosen from 64.
fn conn(n: u64) -> NewConn {
    let cip = IpAddr::V4(Ipv4Addr::from(
        0x6400_0000u32.wrapping_add((n >> 10) as u32),
    ));
    let cport = 1024 + (n & 1023) as u16;
    let rip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (n % 64) as u32));
    NewConn {
        original: Tuple::tcp(cip, cport, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 80),
        reply: Tuple::tcp(rip, 8080, cip, cport),
        service: 1,
        dest: (n % 64) as u32,
        flags: 0,
        timeout_override_s: None,
    }
}

/// A multiplier coprime with `n`: `i * k mod n` visits 0..n in a scattered order.
fn scatter_key(n: u64) -> u64 {
    let mut k = 0x9e37_79b9_7f4a_7c15u64 % n;
    while gcd(k, n) != 1 {
        k += 1;
    }
    k
}

#[inline]
fn scatter(i: u64, n: u64, k: u64) -> u64 {
    i.wrapping_mul(k) % n
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn ns_per(start: Instant, ops: u64) -> f64 {
    start.elapsed().as_nanos() as f64 / ops as f64
}

/// Best of 3 (the machine is shared; the minimum is the least disturbed run).
fn best(mut f: impl FnMut() -> f64) -> f64 {
    (0..3).map(|_| f()).fold(f64::INFINITY, f64::min)
}

/// Dependent random reads over `bytes` of memory: the latency every lookup that
/// misses cache pays on this machine (DRAM plus TLB walk).
fn chase_ns(bytes: usize) -> f64 {
    let n = (bytes / 8).max(2);
    // One cycle through all slots (Sattolo), so every read depends on the last.
    let mut next: Vec<u32> = (0..n as u32).collect();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let j = (x % i as u64) as usize;
        next.swap(i, j);
    }
    let steps = 2_000_000u64;
    let mut p = 0u32;
    let t = Instant::now();
    for _ in 0..steps {
        p = next[p as usize];
    }
    black_box(p);
    ns_per(t, steps)
}

fn run(n: u64) {
    let t0 = Instant::now();
    let mut ct = ConnTable::new(n as u32, 0x1234_5678_9abc_def0, Timeouts::default());
    for i in 0..n {
        let id = ct.insert(conn(i), 0).expect("fill");
        ct.on_packet(id, Direction::Original, TcpFlags::SYN, 0);
    }
    let fill_s = t0.elapsed().as_secs_f64();
    let sk = scatter_key(n);
    let ops = 2_000_000u64.max(n.min(4_000_000));

    // Warm up (page faults, caches) with one pass of the same kind of work.
    for i in 0..ops.min(n) {
        black_box(ct.lookup(&conn(scatter(i, n, sk)).original));
    }

    let gen = best(|| {
        let t = Instant::now();
        for i in 0..ops {
            black_box(conn(scatter(i, n, sk)));
        }
        ns_per(t, ops)
    });

    let hit = best(|| {
        let t = Instant::now();
        let mut found = 0u64;
        for i in 0..ops {
            let c = conn(scatter(i, n, sk));
            let tup = if i & 1 == 0 { c.original } else { c.reply };
            found += u64::from(black_box(ct.lookup(&tup)).is_some());
        }
        assert_eq!(found, ops);
        ns_per(t, ops)
    });

    let miss = best(|| {
        let t = Instant::now();
        let mut found = 0u64;
        for i in 0..ops {
            found +=
                u64::from(black_box(ct.lookup(&conn(n + scatter(i, n, sk)).original)).is_some());
        }
        assert_eq!(found, 0);
        ns_per(t, ops)
    });

    // Burst lookups of 32, as the dataplane receives them.
    let burst_hit = best(|| {
        let t = Instant::now();
        let mut burst = [Tuple::tcp(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            0,
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            0,
        ); 32];
        let mut out = [None; 32];
        let mut found = 0u64;
        let bursts = ops / 32;
        for b in 0..bursts {
            for (j, slot) in burst.iter_mut().enumerate() {
                *slot = conn(scatter(b * 32 + j as u64, n, sk)).original;
            }
            ct.lookup_burst(&burst, &mut out);
            found += out.iter().filter(|o| o.is_some()).count() as u64;
        }
        assert_eq!(found, bursts * 32);
        ns_per(t, bursts * 32)
    });

    // Churn: remove the oldest conn, insert a new one (keeps the table full).
    let churn = ops / 2;
    let t = Instant::now();
    let mut next = n;
    for i in 0..churn {
        let victim = conn(i);
        if let Some((id, _)) = ct.lookup(&victim.original) {
            ct.remove(id);
        }
        let id = ct.insert(conn(next), 1).expect("room after remove");
        black_box(id);
        next += 1;
    }
    let churn_ns = ns_per(t, churn);
    // Insert a new conn then remove it (one free slot): index + slab + wheel work only.
    if let Some((id, _)) = ct.lookup(&conn(next - 1).original) {
        ct.remove(id);
    }
    let mut base = next;
    let ins_del = best(|| {
        let t = Instant::now();
        for i in 0..churn {
            let id = ct.insert(conn(base + i), 3).expect("one free slot");
            black_box(ct.remove(id));
        }
        base += churn;
        ns_per(t, churn)
    });
    let chase = chase_ns(ct.memory_bytes());

    println!(
        "{:>10} conns | memory latency (dependent random read over the same bytes) {:6.1} ns | tuple generation (included below) {:5.1} ns",
        n, chase, gen
    );
    println!(
        "{:>10} conns | fill {:5.2} s | hit {:6.1} ns | miss {:6.1} ns | burst32 hit {:6.1} ns | insert+remove {:6.1} ns | churn (lookup+remove old, insert new) {:6.1} ns | {:.1} B/conn",
        n,
        fill_s,
        hit,
        miss,
        burst_hit,
        ins_del,
        churn_ns,
        ct.memory_bytes() as f64 / n as f64
    );
}

fn main() {
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 1_000_000, 10_000_000]
    } else {
        sizes
    };
    println!(
        "bytes_per_conn() = {} (size_of Conn {} + 2 index entries at load 0.8)",
        ConnTable::bytes_per_conn(),
        std::mem::size_of::<conntrack::Conn>()
    );
    for n in sizes {
        run(n);
    }
}
