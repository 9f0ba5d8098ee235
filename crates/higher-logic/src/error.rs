//! What can go wrong talking to Higher Logic, and what the operator should do about it.

use std::time::Duration;

use crate::rate::RateLimitError;

/// An error from the Higher Logic client: a whole push (or the client) failed.
///
/// A record that Higher Logic refuses (HTTP 400 on a request holding it alone) is not an error:
/// it comes back as an `Err` in its [`crate::RecordResult`], and its neighbours go through.
#[derive(Debug, thiserror::Error)]
pub enum HlError {
    /// A Higher Logic setting is not usable.
    #[error("invalid Higher Logic setting `{key}`: {reason}; fix it in the hlsync config")]
    Config {
        /// The config key, e.g. `higher_logic.base_url`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A URL setting refused by the config's own check (e.g. `http` without
    /// `allow_insecure_http`).
    #[error(transparent)]
    InvalidConfig(#[from] hlsync_core::ConfigError),

    /// 401 or 403: the API key is refused. Not retried with the same key.
    #[error(
        "Higher Logic refused the API key (HTTP {status}: {message}); check higher_logic.api_key in the secret; hlsync will not retry with this key, and resumes by itself when the secret changes"
    )]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// Higher Logic's explanation.
        message: String,
    },

    /// 429 after every try, or with a `Retry-After` longer than the client waits.
    #[error(
        "Higher Logic is still answering 429 Too Many Requests after {attempts} tries{}; the work will be retried later. If this persists, lower higher_logic.max_calls_per_minute",
        retry_after.map(|d| format!(" (it asked to wait {}s)", d.as_secs())).unwrap_or_default()
    )]
    Throttled {
        /// Tries made.
        attempts: u32,
        /// The last `Retry-After`, if the answer had one.
        retry_after: Option<Duration>,
    },

    /// 5xx or 408 after every try.
    #[error(
        "Higher Logic is unavailable at {url} (HTTP {status}: {message}) after {attempts} tries; the work will be retried later"
    )]
    Unavailable {
        /// The URL called.
        url: String,
        /// The last HTTP status.
        status: u16,
        /// Tries made.
        attempts: u32,
        /// Higher Logic's last explanation.
        message: String,
    },

    /// No answer (connection error, timeout) after every try.
    #[error(
        "could not reach Higher Logic at {url} after {attempts} tries: {message}; check {setting} and the network path to it"
    )]
    Transport {
        /// The URL called.
        url: String,
        /// The config key of the URL (`higher_logic.base_url` or
        /// `higher_logic.email_preferences_url`).
        setting: &'static str,
        /// Tries made.
        attempts: u32,
        /// The failure and its causes.
        message: String,
    },

    /// A status this client does not expect (e.g. 404: a wrong base URL).
    #[error(
        "Higher Logic answered HTTP {status} ({message}) at {url}; check that {setting} is right (base_url is the data Push API v2 root, such as https://datapushapi.higherlogic.com/v2)"
    )]
    UnexpectedStatus {
        /// The HTTP status.
        status: u16,
        /// The URL called.
        url: String,
        /// The config key of the URL.
        setting: &'static str,
        /// Higher Logic's explanation.
        message: String,
    },

    /// The email-preference feed answered something that is not its documented shape.
    #[error(
        "the email-preference feed at {url} answered something other than {{\"changes\":[…]}} ({message}); check higher_logic.email_preferences_url and the feed's format (SPEC.md §6)"
    )]
    BadResponse {
        /// The feed URL called.
        url: String,
        /// What does not fit.
        message: String,
    },

    /// The records could not be serialized (a bug).
    #[error(
        "the records could not be encoded as JSON ({message}); this is a bug in hlsync, please report it"
    )]
    Encoding {
        /// serde_json's message.
        message: String,
    },

    /// A shared rate limiter could not grant a call.
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
            | HlError::UnexpectedStatus { .. }
            | HlError::BadResponse { .. }
            | HlError::Encoding { .. } => false,
        }
    }

    /// Whether Higher Logic refused the API key: callers record it against the secret's version
    /// and stop calling Higher Logic with that key.
    pub fn is_credentials_rejected(&self) -> bool {
        matches!(self, HlError::Rejected { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_do_and_retries_follow_the_kind() {
        let rejected = HlError::Rejected {
            status: 401,
            message: "Invalid API key".into(),
        };
        assert!(!rejected.is_retryable());
        assert!(rejected.is_credentials_rejected());
        let text = rejected.to_string();
        assert!(
            text.contains("check higher_logic.api_key in the secret"),
            "{text}"
        );
        assert!(text.contains("will not retry with this key"), "{text}");

        let throttled = HlError::Throttled {
            attempts: 3,
            retry_after: Some(Duration::from_secs(30)),
        };
        assert!(throttled.is_retryable());
        assert!(!throttled.is_credentials_rejected());
        assert!(throttled.to_string().contains("wait 30s"));

        let feed = HlError::UnexpectedStatus {
            status: 404,
            url: "https://relay.example.org/prefs".into(),
            setting: "higher_logic.email_preferences_url",
            message: "Not Found".into(),
        };
        assert!(!feed.is_retryable());
        assert!(
            feed.to_string()
                .contains("check that higher_logic.email_preferences_url")
        );
    }
}
