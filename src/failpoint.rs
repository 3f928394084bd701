//! Crash points for the crash sweep (`tests/e2e_crash.rs`): compiled in only
//! with the `failpoints` cargo feature, never in release or image builds.
//!
//! [`failpoint!`]`("name")` marks a step of the reconcile pipeline. Without
//! the feature it expands to nothing. With it, when the environment variable
//! `DTS_OPERATOR_FAILPOINT` names this point (`name`, or `name@N` for its
//! N-th hit in this process, counting from 1), the process sends itself
//! SIGKILL there: a real crash, with no destructor run and nothing flushed
//! beyond what was already written, exactly what an OOM kill or a node loss
//! does between two steps. Unset, or naming another point, a failpoint only
//! compares a string.
//!
//! The points (docs/design.md §4): `mark-before` and `mark-after` around the
//! write of the `Stopping` / `Requested` mark, `call-after` once a changing
//! DTS call (StopDtsJob, SuspendDtsJob, StartDtsJob) has answered and before
//! the answer is recorded, `status-after` after the status write of a
//! reconcile that called DTS, `events-before` before its Events are
//! published.

/// The environment variable that arms one failpoint.
pub const ENV: &str = "DTS_OPERATOR_FAILPOINT";

/// Every failpoint in the pipeline, in the order one reconcile passes them.
pub const POINTS: &[&str] = &[
    "mark-before",
    "mark-after",
    "call-after",
    "status-after",
    "events-before",
];

/// Marks a crash point (see the module documentation).
#[cfg(feature = "failpoints")]
macro_rules! failpoint {
    ($name:literal) => {
        $crate::failpoint::hit($name)
    };
}

/// Marks a crash point; without the `failpoints` feature, nothing.
#[cfg(not(feature = "failpoints"))]
macro_rules! failpoint {
    ($name:literal) => {};
}

pub(crate) use failpoint;

/// The armed point and the hit that fires it, parsed from `spec`
/// (`name` or `name@N`, N ≥ 1). `None` for an empty or malformed value.
pub fn parse(spec: &str) -> Option<(&str, u32)> {
    let spec = spec.trim();
    let (name, nth) = match spec.split_once('@') {
        Some((name, n)) => (name, n.parse::<u32>().ok().filter(|n| *n >= 1)?),
        None => (spec, 1),
    };
    (!name.is_empty()).then_some((name, nth))
}

/// Counts a hit of `name` and kills the process if it is the armed one.
#[cfg(feature = "failpoints")]
pub fn hit(name: &'static str) {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;

    static ARMED: OnceLock<Option<(String, u32)>> = OnceLock::new();
    static HITS: AtomicU32 = AtomicU32::new(0);
    let armed = ARMED.get_or_init(|| {
        let value = std::env::var(ENV).ok()?;
        let armed = parse(&value).map(|(n, nth)| (n.to_owned(), nth));
        if armed.is_none() {
            tracing::warn!(value = %value, "{ENV} is not `name` or `name@N`; no failpoint armed");
        }
        armed
    });
    let Some((armed, nth)) = armed else { return };
    if armed != name {
        return;
    }
    let n = HITS.fetch_add(1, Ordering::SeqCst) + 1;
    tracing::debug!(failpoint = name, hit = n, "failpoint reached");
    if n == *nth {
        eprintln!("failpoint {name} (hit {n}): SIGKILL");
        // SAFETY: kill(2) and getpid(2) have no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_a_name_and_an_optional_hit_number() {
        assert_eq!(parse("mark-after"), Some(("mark-after", 1)));
        assert_eq!(parse("call-after@2"), Some(("call-after", 2)));
        assert_eq!(parse(" status-after@3 "), Some(("status-after", 3)));
        assert_eq!(parse(""), None);
        assert_eq!(parse("@2"), None);
        assert_eq!(parse("call-after@0"), None);
        assert_eq!(parse("call-after@x"), None);
    }
}
