//! Client of Higher Logic's data Push API v2 (SPEC.md §6): members and meetings out, members'
//! email-preference changes in (from the tenant's feed, where it has one).
//!
//! - [`HigherLogicClient::push_members`] posts whole member records to `/contactinfo` (a
//!   registration is an `Event` group on its member's record);
//!   [`HigherLogicClient::push_meetings`] posts events to `/meeting`. Every request is a JSON
//!   array of 1 to `batch_size` records, authenticated by the `ApiKey` header.
//! - Higher Logic publishes no per-record result: a 2xx accepts the whole request, a 400 refuses
//!   it. A refused request is split in halves, down to the single records it refuses, so that
//!   each record gets its own [`RecordResult`] (in input order) and one bad record does not hold
//!   back its neighbours.
//! - Calls are paced by a [`RateLimiter`] (in-process by default, pluggable for a shared limit);
//!   429s wait for `Retry-After`, 5xx, 408 and connection errors back off with jitter, 401/403
//!   stop with [`HlError::Rejected`].
//! - [`HigherLogicClient::email_preferences_since`] reads the tenant's email-preference feed
//!   (`higher_logic.email_preferences_url`), and makes no call when there is none.
//! - The wire format (paths, header, JSON fields, date format) is in [`wire`], and only there.

#![deny(missing_docs)]

mod client;
mod error;
pub mod rate;
pub mod wire;

pub use client::{
    DEFAULT_REQUEST_TIMEOUT, EmailPreferenceChange, HigherLogicClient, HigherLogicCredentials,
    RecordResult, RetryPolicy,
};
pub use error::HlError;
pub use rate::{IntervalLimiter, RateLimitError, RateLimiter, Unlimited};

#[cfg(test)]
mod tests {
    use hlsync_core::HigherLogicConfig;

    use super::*;

    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync>() {}

    /// The sync functions run these on a multi-threaded runtime and share one client.
    #[test]
    fn the_client_and_its_futures_can_cross_threads() {
        assert_send_sync::<HigherLogicClient>();
        let cfg = HigherLogicConfig::new("https://datapushapi.example.org/v2");
        let creds = HigherLogicCredentials {
            api_key: "k".to_owned().into(),
        };
        let client = HigherLogicClient::new(&cfg, creds, false).unwrap();
        assert_send(&client.push_members(&[]));
        assert_send(&client.push_meetings(&[]));
        assert_send(&client.email_preferences_since(chrono::Utc::now()));
        assert_eq!(
            client.base_url().as_str(),
            "https://datapushapi.example.org/v2/"
        );
        assert!(!client.has_email_preferences());
    }
}
