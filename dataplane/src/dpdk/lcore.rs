//! Running closures on worker lcores (`rte_eal_remote_launch`).

use std::ffi::c_void;

type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

unsafe extern "C" fn trampoline(arg: *mut c_void) -> i32 {
    // SAFETY: arg is the Box<Job> leaked by `launch`, consumed exactly once here.
    let job: Box<Job> = unsafe { Box::from_raw(arg as *mut Job) };
    // A panic must not unwind into C: report it as a failed job.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).unwrap_or(-1)
}

/// Run `f` on worker lcore `lcore`. It must be idle (waiting for work).
pub fn launch(lcore: u32, f: impl FnOnce() -> i32 + Send + 'static) -> Result<(), String> {
    let job: Box<Job> = Box::new(Box::new(f));
    let arg = Box::into_raw(job) as *mut c_void;
    // SAFETY: trampoline has the lcore_function_t signature; arg is consumed by it
    // (or reclaimed below when the launch fails).
    let rc = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
    if rc != 0 {
        // SAFETY: the launch failed, so the trampoline never ran; reclaim the box.
        drop(unsafe { Box::from_raw(arg as *mut Job) });
        return Err(format!(
            "cannot launch on lcore {lcore}: {}",
            super::strerror(rc)
        ));
    }
    Ok(())
}

/// Wait for the job on `lcore` to return; its return value.
pub fn wait(lcore: u32) -> i32 {
    // SAFETY: plain blocking wait on an lcore id.
    unsafe { dpdk_sys::rte_eal_wait_lcore(lcore) }
}

/// Whether `lcore` is in the EAL core list (the EAL is initialised).
pub fn is_enabled(lcore: u32) -> bool {
    // SAFETY: a plain query of EAL's lcore configuration.
    unsafe { dpdk_sys::rte_lcore_is_enabled(lcore) != 0 }
}

/// The main lcore (the thread that initialised the EAL).
pub fn main_lcore() -> u32 {
    // SAFETY: a plain query of EAL's lcore configuration.
    unsafe { dpdk_sys::rte_get_main_lcore() }
}
