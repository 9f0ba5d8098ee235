//! How much of an invocation's time the pipeline may use.

use std::time::{Duration, Instant, SystemTime};

use hlsync_sync::Deadline;
use lambda_runtime::Context;
use tracing::warn;

/// The most a function keeps in hand to finish cleanly (save the checkpoint, report, print EMF).
pub const MAX_MARGIN: Duration = Duration::from_secs(30);

/// When no deadline is known (a context built by hand, as local tools and tests do), a lease
/// lasts as long as the longest Lambda invocation.
pub const LEASE_WITHOUT_DEADLINE: Duration = Duration::from_mins(15);

/// What one invocation may spend.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub deadline: Deadline,
    /// How long the Periodic Refresh lease lasts if the run dies holding it.
    pub lease_ttl: Duration,
    /// Time left at the start of the handler (`None`: no deadline known).
    pub time_left: Option<Duration>,
}

/// 30 s, or 10 % of the time left when that is smaller (a short timeout must still leave time
/// for work).
pub fn safety_margin(time_left: Duration) -> Duration {
    MAX_MARGIN.min(time_left / 10)
}

impl Budget {
    /// From the time left in the invocation; `None` when the context carries no deadline.
    pub fn from_time_left(time_left: Option<Duration>) -> Self {
        match time_left {
            Some(left) => {
                let margin = safety_margin(left);
                Budget {
                    deadline: Deadline::at(Instant::now() + left, margin),
                    lease_ttl: left + margin,
                    time_left,
                }
            }
            None => Budget {
                deadline: Deadline::none(),
                lease_ttl: LEASE_WITHOUT_DEADLINE,
                time_left: None,
            },
        }
    }

    pub fn from_context(ctx: &Context) -> Self {
        // The runtime API always sends a deadline; 0 is what `Context::default()` holds.
        let time_left = match ctx.deadline {
            0 => None,
            ms if ms < EARLIEST_PLAUSIBLE_DEADLINE_MS => {
                warn!(
                    deadline_ms = ms,
                    "the Runtime API sent a deadline that is no Unix time in milliseconds (an emulator's?); running as if none were known"
                );
                None
            }
            _ => Some(
                ctx.deadline()
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO),
            ),
        };
        Self::from_time_left(time_left)
    }
}

/// 2020-01-01T00:00:00Z in Unix milliseconds. `Lambda-Runtime-Deadline-Ms` is a Unix time in
/// milliseconds; a smaller value cannot be one. cargo-lambda's emulator (`cargo lambda watch`)
/// sends `600000`, meaning ten minutes from now: read as a Unix time it lies in 1970, leaves no
/// time at all, and every batch would be handed back untouched.
pub const EARLIEST_PLAUSIBLE_DEADLINE_MS: u64 = 1_577_836_800_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_the_smaller_of_30s_and_a_tenth() {
        assert_eq!(safety_margin(Duration::from_mins(10)), MAX_MARGIN);
        assert_eq!(safety_margin(Duration::from_mins(5)), MAX_MARGIN);
        assert_eq!(
            safety_margin(Duration::from_mins(1)),
            Duration::from_secs(6)
        );
        assert_eq!(safety_margin(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn the_lease_outlives_the_invocation_by_the_margin() {
        let b = Budget::from_time_left(Some(Duration::from_secs(100)));
        assert_eq!(b.lease_ttl, Duration::from_secs(110));
        assert!(!b.deadline.near());
    }

    #[test]
    fn no_time_left_means_stop_at_once() {
        assert!(Budget::from_time_left(Some(Duration::ZERO)).deadline.near());
    }

    #[test]
    fn a_context_without_deadline_has_none() {
        let b = Budget::from_context(&Context::default());
        assert!(b.time_left.is_none());
        assert!(!b.deadline.near());
        assert_eq!(b.lease_ttl, LEASE_WITHOUT_DEADLINE);
    }

    #[test]
    fn a_deadline_that_is_no_unix_time_counts_as_unknown() {
        // What `cargo lambda watch` sends: ten minutes, as a duration.
        let mut ctx = Context::default();
        ctx.deadline = 600_000;
        let b = Budget::from_context(&ctx);
        assert!(b.time_left.is_none());
        assert!(!b.deadline.near());
        assert_eq!(b.lease_ttl, LEASE_WITHOUT_DEADLINE);
    }

    #[test]
    fn a_deadline_just_passed_leaves_no_time() {
        let mut ctx = Context::default();
        let a_second_ago = SystemTime::now() - Duration::from_secs(1);
        ctx.deadline = a_second_ago
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let b = Budget::from_context(&ctx);
        assert_eq!(b.time_left, Some(Duration::ZERO));
        assert!(b.deadline.near());
    }

    #[test]
    fn a_context_deadline_is_read() {
        let mut ctx = Context::default();
        let in_a_minute = SystemTime::now() + Duration::from_mins(1);
        ctx.deadline = in_a_minute
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let b = Budget::from_context(&ctx);
        let left = b.time_left.unwrap_or_default();
        assert!(left > Duration::ZERO && left <= Duration::from_mins(1));
        assert!(!b.deadline.near());
    }
}
