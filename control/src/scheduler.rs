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

/// The scheduler a named flag belongs to (`flag-1..3` belong to none: IPVS
/// passes them to any scheduler, as ipvsadm does).
fn flag_owner(flag: &str) -> Option<&'static str> {
    match flag {
        "sh-fallback" | "sh-port" => Some("sh"),
        "mh-fallback" | "mh-port" => Some("mh"),
        "conhash-sport" | "conhash-5tuple" => Some("conhash"),
        _ => None,
    }
}

/// Checks scheduler flags (`-b`) and returns them in ipvsadm's canonical
/// spelling and order for the scheduler (`sh-fallback,sh-port`; `flag-1` for
/// schedulers without named flags). A named flag of another scheduler is
/// refused, as ipvsadm refuses it ("incompatible scheduler flag").
pub fn check_sched_flags(scheduler: &str, flags: &[String]) -> Result<Vec<String>, String> {
    for f in flags.iter().map(|f| f.trim()) {
        if let Some(owner) = flag_owner(f) {
            if owner != scheduler {
                return Err(format!(
                    "incompatible scheduler flag \"{f}\": it is for the {owner} scheduler, not {scheduler}"
                ));
            }
        }
    }
    let parsed = sched::SchedFlags::parse(flags).map_err(|e| e.to_string())?;
    Ok(parsed
        .names(scheduler)
        .into_iter()
        .map(str::to_string)
        .collect())
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
        let ok = |s: &str, f: &str| check_sched_flags(s, &split_sched_flags(f)).unwrap();
        assert_eq!(ok("sh", "sh-port,sh-fallback"), ["sh-fallback", "sh-port"]);
        assert_eq!(ok("sh", "flag-2,flag-1"), ["sh-fallback", "sh-port"]);
        assert_eq!(ok("mh", "mh-port"), ["mh-port"]);
        assert_eq!(ok("rr", "flag-3,flag-1"), ["flag-1", "flag-3"]);
        assert_eq!(ok("conhash", "conhash-sport"), ["conhash-sport"]);
        assert!(check_sched_flags("sh", &split_sched_flags("sh-magic"))
            .unwrap_err()
            .contains("sh-magic"));
        assert_eq!(
            check_sched_flags("rr", &split_sched_flags("sh-port")).unwrap_err(),
            "incompatible scheduler flag \"sh-port\": it is for the sh scheduler, not rr"
        );
        assert!(check_sched_flags("sh", &split_sched_flags("mh-port")).is_err());
    }
}
