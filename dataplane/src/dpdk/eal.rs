//! EAL initialisation and cleanup.
//!
//! `rte_eal_init` may run once per process and pins the calling thread to the
//! main lcore; `Eal` represents that one initialisation and cleans up on drop.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// The initialised EAL. Drop runs `rte_eal_cleanup`.
pub struct Eal {
    _private: (),
}

impl Eal {
    /// Initialise EAL with `args` (argv[0] is supplied here).
    pub fn init(args: &[String]) -> Result<Eal, String> {
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err("EAL is already initialised in this process".into());
        }
        let mut owned: Vec<CString> = Vec::with_capacity(args.len() + 1);
        owned.push(CString::new("dpvsd").unwrap_or_default());
        for a in args {
            owned.push(
                CString::new(a.as_str()).map_err(|_| format!("EAL argument {a:?} contains NUL"))?,
            );
        }
        let mut argv: Vec<*mut libc::c_char> = owned
            .iter()
            .map(|c| c.as_ptr() as *mut libc::c_char)
            .collect();
        argv.push(std::ptr::null_mut());
        // SAFETY: argv is a NULL-terminated array of valid C strings that outlive
        // the call (EAL may permute the pointers but keeps no reference past init
        // except to strings we leak below).
        let rc = unsafe { dpdk_sys::rte_eal_init(owned.len() as i32, argv.as_mut_ptr()) };
        if rc < 0 {
            INITIALISED.store(false, Ordering::SeqCst);
            let errno = super::last_errno();
            return Err(format!(
                "{} (rte_errno {errno}); EAL args: {}",
                super::strerror(errno),
                args.join(" ")
            ));
        }
        // EAL may keep pointers into argv strings (e.g. for --file-prefix).
        std::mem::forget(owned);
        Ok(Eal { _private: () })
    }

    /// The main lcore id.
    pub fn main_lcore(&self) -> u32 {
        // SAFETY: valid after a successful rte_eal_init.
        unsafe { dpdk_sys::rte_get_main_lcore() }
    }

    /// Whether `lcore` is enabled in the EAL core list.
    pub fn lcore_enabled(&self, lcore: u32) -> bool {
        // SAFETY: bounds-checked inside DPDK (returns 0 for ids >= RTE_MAX_LCORE).
        unsafe { dpdk_sys::rte_lcore_is_enabled(lcore) != 0 }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: called once, after every port is closed and every worker joined
        // (owners of those drop before the Eal they borrow from).
        unsafe {
            dpdk_sys::rte_eal_cleanup();
        }
    }
}
