//! Client-side call pacing. Higher Logic answers 429 when a tenant calls too fast; pacing the
//! calls ourselves keeps those answers (and the retries they cost) rare.
//!
//! The limiter is a trait so that the pipeline can share one limit across concurrent functions
//! (SPEC.md §6: "across all concurrent functions") by plugging in a limiter backed by shared
//! state; [`IntervalLimiter`] is the in-process one.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Why a call could not get permission to go out. Only a shared (remote) limiter can fail;
/// the in-process one never does.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the Higher Logic rate limiter failed: {0}; the work can be retried")]
pub struct RateLimitError(pub String);

/// The future a [`RateLimiter`] returns.
pub type Acquire<'a> = Pin<Box<dyn Future<Output = Result<(), RateLimitError>> + Send + 'a>>;

/// Grants permission for one HTTP call to Higher Logic. The client calls `acquire` before every
/// request it sends, retries included, so the limit counts what the server counts.
pub trait RateLimiter: Send + Sync {
    /// Resolves when one more call may be sent now.
    fn acquire(&self) -> Acquire<'_>;
}

/// Spaces calls evenly: at most one every `60 s / calls_per_minute`, with no burst.
///
/// Even spacing (rather than a bucket that allows a burst) keeps any 60-second window at or
/// under the limit, which is how the server counts. Waiters are served in the order they called
/// `acquire`: each one reserves the next free slot under the lock and then sleeps until it.
///
/// Not `governor`: its waits run on its own clock and timer (quanta, futures-timer), not tokio's,
/// so they would not follow tokio's paused clock in tests; and it checks rather than reserves, so
/// waiters would race for each slot instead of keeping their order. Reserving a slot is also
/// what the pipeline's shared DynamoDB pace does, so both limiters behave alike.
#[derive(Debug)]
pub struct IntervalLimiter {
    interval: Duration,
    next_free: Mutex<Option<Instant>>,
}

impl IntervalLimiter {
    /// At most `calls_per_minute` calls in any minute, evenly spaced.
    pub fn per_minute(calls_per_minute: NonZeroU32) -> Self {
        Self {
            interval: Duration::from_mins(1) / calls_per_minute.get(),
            next_free: Mutex::new(None),
        }
    }

    /// The time between two calls.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn reserve(&self) -> Instant {
        // The guarded value is a plain timestamp: a poisoned lock still holds a usable one.
        let mut next_free = self
            .next_free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let slot = next_free.map_or(now, |next| next.max(now));
        *next_free = Some(slot + self.interval);
        slot
    }
}

impl RateLimiter for IntervalLimiter {
    fn acquire(&self) -> Acquire<'_> {
        let slot = self.reserve();
        Box::pin(async move {
            tokio::time::sleep_until(slot).await;
            Ok(())
        })
    }
}

/// No pacing at all: for callers that pace calls some other way.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unlimited;

impl RateLimiter for Unlimited {
    fn acquire(&self) -> Acquire<'_> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn per_minute(n: u32) -> IntervalLimiter {
        IntervalLimiter::per_minute(NonZeroU32::new(n).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn spaces_calls_evenly_in_virtual_time() {
        let limiter = per_minute(60);
        assert_eq!(limiter.interval(), Duration::from_secs(1));
        let start = Instant::now();
        for _ in 0..10 {
            limiter.acquire().await.unwrap();
        }
        // The first call goes at once, the next nine one second apart.
        assert_eq!(start.elapsed(), Duration::from_secs(9));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_the_limit() {
        let limiter = Arc::new(per_minute(120));
        let granted = Arc::new(AtomicU32::new(0));
        for _ in 0..10 {
            let limiter = Arc::clone(&limiter);
            let granted = Arc::clone(&granted);
            tokio::spawn(async move {
                limiter.acquire().await.unwrap();
                granted.fetch_add(1, Ordering::SeqCst);
            });
        }
        // Slots at 0, 0.5, 1.0, ... s: by 2.25 s five have been granted.
        tokio::time::sleep(Duration::from_millis(2_250)).await;
        assert_eq!(granted.load(Ordering::SeqCst), 5);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(granted.load(Ordering::SeqCst), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_limiter_does_not_bank_calls() {
        let limiter = per_minute(60);
        limiter.acquire().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        let start = Instant::now();
        limiter.acquire().await.unwrap();
        limiter.acquire().await.unwrap();
        // Thirty idle seconds buy one immediate call, not a burst of thirty.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn unlimited_never_waits() {
        Unlimited.acquire().await.unwrap();
    }
}
