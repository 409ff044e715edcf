//! Scheduler names and flags as the control plane validates them.
//!
//! One place to ask "is this a scheduler?"; the answer comes from the `sched`
//! crate (its list of names and its flag parser), so the control plane accepts
//! exactly what the dataplane can build.

/// Schedulers the dataplane implements, as ipvsadm spells them.
pub use sched::SCHEDULERS;

/// ipvsadm's default scheduler (`-s` not given).
pub use sched::DEFAULT_SCHEDULER;

/// Checks a scheduler name; the error lists the known ones.
pub fn check_scheduler(name: &str) -> Result<(), String> {
    if SCHEDULERS.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "unknown scheduler \"{name}\" (one of {})",
            SCHEDULERS.join(", ")
        ))
    }
}

/// Checks scheduler flags (`-b`). Flags that do not apply to the scheduler are
/// accepted and ignored, as IPVS does.
pub fn check_sched_flags(_scheduler: &str, flags: &[String]) -> Result<(), String> {
    sched::SchedFlags::parse(flags)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Splits ipvsadm's `-b flag,flag` argument.
pub fn split_sched_flags(arg: &str) -> Vec<String> {
    arg.split([',', '|'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_flags() {
        assert!(check_scheduler("wlc").is_ok());
        assert!(check_scheduler("conhash").is_ok());
        assert!(check_scheduler("best")
            .unwrap_err()
            .starts_with("unknown scheduler \"best\" (one of rr, wrr"));
        assert!(check_sched_flags("sh", &split_sched_flags("sh-fallback,sh-port")).is_ok());
        assert!(check_sched_flags("sh", &split_sched_flags("sh-magic"))
            .unwrap_err()
            .contains("sh-magic"));
    }
}
