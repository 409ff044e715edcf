//! Scheduler names and flags as the control plane validates them.
//!
//! One place to ask "is this a scheduler?", so that switching to the `sched`
//! crate's own list (`sched::SCHEDULERS`, `sched::SchedFlags::parse`) is a change
//! here only. TODO: use `sched::SCHEDULERS` / `sched::SchedFlags` once they land.

/// Schedulers the dataplane implements, as ipvsadm spells them.
pub const SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "sed", "nq", "lblc", "lblcr", "dh", "sh", "mh", "conhash", "fo",
];

/// ipvsadm's default scheduler (`-s` not given).
pub const DEFAULT_SCHEDULER: &str = "wlc";

/// Scheduler flags accepted by `-b` on `-A/-E` (ipvsadm names).
const SCHED_FLAGS: &[&str] = &[
    "flag-1",
    "flag-2",
    "flag-3",
    "sh-fallback",
    "sh-port",
    "mh-fallback",
    "mh-port",
];

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

/// Checks scheduler flags for a scheduler.
pub fn check_sched_flags(scheduler: &str, flags: &[String]) -> Result<(), String> {
    for f in flags {
        if !SCHED_FLAGS.contains(&f.as_str()) {
            return Err(format!(
                "unknown scheduler flag \"{f}\" (one of {})",
                SCHED_FLAGS.join(", ")
            ));
        }
        let family = f.split('-').next().unwrap_or("");
        if (family == "sh" || family == "mh") && family != scheduler {
            return Err(format!(
                "scheduler flag \"{f}\" applies to the {family} scheduler only"
            ));
        }
    }
    Ok(())
}

/// Splits ipvsadm's `-b flag,flag` argument.
pub fn split_sched_flags(arg: &str) -> Vec<String> {
    arg.split([',', '|'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}
