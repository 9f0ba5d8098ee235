//! What can go wrong talking to Higher Logic, and what the operator should do about it.

use std::time::Duration;

use crate::rate::RateLimitError;

/// An error from the Higher Logic client. Record-level failures are not errors: they come back
/// as [`crate::RecordResult`]s; an `HlError` means a whole request (or the client) failed.
#[derive(Debug, thiserror::Error)]
pub enum HlError {
    #[error("invalid Higher Logic setting `{key}`: {reason}; fix it in the hlsync config")]
    Config { key: &'static str, reason: String },

    #[error(transparent)]
    InvalidConfig(#[from] hlsync_core::ConfigError),

    #[error(
        "Higher Logic rejected the credentials (HTTP {status}: {message}); check tenant_code and api_key under higher_logic in the secret. hlsync will not retry with these credentials"
    )]
    Rejected { status: u16, message: String },

    #[error(
        "Higher Logic refused the request as malformed (HTTP 400: {message}); retrying will not help: compare crates/higher-logic/src/wire.rs with the tenant's API documentation"
    )]
    BadRequest { message: String },

    #[error(
        "Higher Logic is still answering 429 Too Many Requests after {attempts} tries{}; the work will be retried later. If this persists, lower higher_logic.max_calls_per_minute",
        retry_after.map(|d| format!(" (it asked to wait {}s)", d.as_secs())).unwrap_or_default()
    )]
    Throttled {
        attempts: u32,
        retry_after: Option<Duration>,
    },

    #[error(
        "Higher Logic is unavailable (HTTP {status}: {message}) after {attempts} tries; the work will be retried later"
    )]
    Unavailable {
        status: u16,
        attempts: u32,
        message: String,
    },

    #[error(
        "could not reach Higher Logic at {url} after {attempts} tries: {message}; check higher_logic.base_url and the network path to it"
    )]
    Transport {
        url: String,
        attempts: u32,
        message: String,
    },

    #[error(
        "Higher Logic answered HTTP {status} ({message}) at {url}; check that higher_logic.base_url points at the data push API (it ends in /v2 or similar)"
    )]
    UnexpectedStatus {
        status: u16,
        url: String,
        message: String,
    },

    #[error(
        "Higher Logic's answer from {url} could not be read ({message}); check that higher_logic.base_url points at the data push API"
    )]
    BadResponse { url: String, message: String },

    #[error(transparent)]
    RateLimiter(#[from] RateLimitError),
}

impl HlError {
    /// Whether the same request may succeed later (so the work should be retried or left on the
    /// queue) rather than needing a person to change something first.
    pub fn is_retryable(&self) -> bool {
        match self {
            HlError::Throttled { .. }
            | HlError::Unavailable { .. }
            | HlError::Transport { .. }
            | HlError::RateLimiter(_) => true,
            HlError::Config { .. }
            | HlError::InvalidConfig(_)
            | HlError::Rejected { .. }
            | HlError::BadRequest { .. }
            | HlError::UnexpectedStatus { .. }
            | HlError::BadResponse { .. } => false,
        }
    }

    /// Whether Higher Logic refused the credentials: callers stop calling it altogether.
    pub fn is_credentials_rejected(&self) -> bool {
        matches!(self, HlError::Rejected { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_split() {
        let rejected = HlError::Rejected {
            status: 401,
            message: "bad key".into(),
        };
        assert!(!rejected.is_retryable());
        assert!(rejected.is_credentials_rejected());
        assert!(rejected.to_string().contains("api_key"));
        let throttled = HlError::Throttled {
            attempts: 3,
            retry_after: Some(Duration::from_secs(30)),
        };
        assert!(throttled.is_retryable());
        assert!(throttled.to_string().contains("wait 30s"));
        assert!(
            !HlError::BadRequest {
                message: "x".into()
            }
            .is_retryable()
        );
    }
}
