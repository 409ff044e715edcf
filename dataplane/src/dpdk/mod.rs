//! The safe layer over DPDK: EAL, mempools, mbufs, ports, rings and lcores.
//!
//! Every `unsafe` block of the project lives under this module, each with a
//! `// SAFETY:` line. Above it, the dataplane speaks in owned `Mbuf`s, port ids
//! and queue numbers.

pub mod eal;
pub mod flow;
pub mod lcore;
pub mod mbuf;
pub mod mempool;
pub mod port;
pub mod ring;
pub mod rss;

use std::ffi::CStr;

/// The message DPDK gives for an errno value (positive or negative).
pub fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or per-lcore buffer
    // holding a NUL-terminated string; we copy it out immediately.
    unsafe {
        let p = dpdk_sys::rte_strerror(errno.abs());
        if p.is_null() {
            return format!("error {errno}");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// The calling thread's `rte_errno`.
pub fn last_errno() -> i32 {
    // SAFETY: reads a thread-local int through the C shim; no preconditions.
    unsafe { dpdk_sys::dpvs_rte_errno() }
}

/// TSC cycles, the worker loop's clock.
#[inline]
pub fn rdtsc() -> u64 {
    // Inline on x86 (the C wrapper is an out-of-line call in the poll loop).
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC reads the time stamp counter; no memory is touched.
        unsafe { std::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: reads the time stamp counter; no memory is touched.
        unsafe { dpdk_sys::rte_rdtsc() }
    }
}

/// Start fetching the cache line at `p` (a hint: nothing is read, and no
/// address faults).
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Ask the kernel to back `len` bytes at `p` (memory this process reserved
/// and has not written yet) with transparent huge pages: the connection
/// tables, where millions of entries would otherwise cost a TLB miss on most
/// lookups. Best effort: nothing happens where THP is `never`, for ranges
/// under 2 MiB, or if the kernel refuses.
pub fn advise_hugepages(p: *const u8, len: usize) {
    const HUGE: usize = 2 << 20;
    const PAGE: usize = 4096;
    if len < HUGE {
        return;
    }
    let start = (p as usize).next_multiple_of(PAGE);
    let end = (p as usize + len) & !(PAGE - 1);
    if end <= start {
        return;
    }
    // SAFETY: MADV_HUGEPAGE only changes how the kernel backs pages of a range
    // of this process's own mapping (page-aligned, inside the allocation);
    // nothing is read or written and the contents are unaffected.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
    }
}

/// TSC frequency in Hz (valid after EAL init).
pub fn tsc_hz() -> u64 {
    // SAFETY: returns a value computed at EAL init; no preconditions.
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}
