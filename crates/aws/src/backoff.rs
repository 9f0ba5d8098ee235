//! Backoff between retries of work that AWS accepted only in part (unprocessed batch items,
//! failed batch entries): the SDK retries whole failed calls itself, not these.

use std::time::Duration;

const BASE: Duration = Duration::from_millis(50);
const CAP: Duration = Duration::from_secs(2);

/// Exponential with "full jitter" (a random wait up to the exponential bound), so that
/// concurrent batches that were refused together do not come back together.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let bound = BASE.saturating_mul(1u32 << attempt.min(16)).min(CAP);
    let random = uuid::Uuid::new_v4().as_u128();
    let millis = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX).max(1);
    let jitter = u64::try_from(random % u128::from(millis)).unwrap_or(0);
    // Never zero: half the bound is the least wait, the rest is jitter.
    Duration::from_millis(millis / 2 + jitter / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_is_capped() {
        for attempt in 0..40 {
            let wait = backoff(attempt);
            let bound = BASE.saturating_mul(1u32 << attempt.min(16)).min(CAP);
            assert!(wait <= bound, "attempt {attempt}: {wait:?} > {bound:?}");
            assert!(wait >= (bound / 2).checked_sub(Duration::from_millis(1)).unwrap());
        }
    }
}
