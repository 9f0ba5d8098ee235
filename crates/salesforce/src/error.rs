//! The one error type of the Salesforce client. Each message tells the operator what to do next,
//! and each variant knows whether trying again later can help.

use hlsync_core::config::ConfigError;

/// Everything that can go wrong talking to Salesforce.
#[derive(Debug, thiserror::Error)]
pub enum SfError {
    /// A URL in the config or the secret is not acceptable (e.g. `http` without `allow_insecure_http`).
    #[error("{0}")]
    Config(#[from] ConfigError),

    /// The secret's `salesforce` object lacks something the chosen `auth` flow needs.
    #[error(
        "the secret's `salesforce.{field}` is {problem} (auth = {auth}): fix the secret in Secrets Manager"
    )]
    Credentials {
        /// The field of the secret's `salesforce` object.
        field: &'static str,
        /// The flow that needs it.
        auth: &'static str,
        /// What is wrong with it (never its value).
        problem: String,
    },

    /// Salesforce refused the credentials. Never retried: repeated failed logins lock the user out.
    #[error(
        "Salesforce rejected the login for {username} ({reason}): fix the secret; hlsync will not retry \
         until the secret changes"
    )]
    LoginRejected {
        /// Who tried to log in.
        username: String,
        /// Salesforce's reason (`error: error_description`, or the SOAP fault).
        reason: String,
    },

    /// The login endpoint could not be reached or answered with a server error.
    #[error(
        "could not log in to Salesforce at {url}: {detail}; hlsync will try again on its next run"
    )]
    LoginUnavailable {
        /// The login URL.
        url: String,
        /// What went wrong.
        detail: String,
    },

    /// Salesforce answered 401 even with a session fresh from a login.
    #[error(
        "Salesforce rejected a fresh session ({code}: {message}): check that the integration user has \
         the \"API Enabled\" permission and that the connected app allows it"
    )]
    SessionRejected {
        /// Salesforce's `errorCode`, e.g. `INVALID_SESSION_ID`.
        code: String,
        /// Salesforce's message.
        message: String,
    },

    /// The allotment guard: usage already reached hlsync's share of the daily allotment.
    #[error(
        "Salesforce API usage is {used}, at or past hlsync's ceiling of {ceiling} calls for the last 24 hours \
         (salesforce.max_allotment_share of salesforce.daily_api_allotment): hlsync stops calling Salesforce \
         until usage drops; raise the share in the config if the org can afford it"
    )]
    AllotmentGuard {
        /// Calls the org used in the last 24 hours, as last reported.
        used: u64,
        /// hlsync's ceiling for that usage.
        ceiling: u64,
    },

    /// A job that would need more calls than the allotment has left under the ceiling.
    #[error(
        "Salesforce API usage is {used} of a ceiling of {ceiling}: a job of {planned} more calls would pass it, \
         so it was not started; wait for usage to drop or raise salesforce.max_allotment_share"
    )]
    BudgetExhausted {
        /// Calls the org used in the last 24 hours, as last reported.
        used: u64,
        /// Calls the job would make.
        planned: u64,
        /// hlsync's ceiling for the usage.
        ceiling: u64,
    },

    /// 403 REQUEST_LIMIT_EXCEEDED: the org as a whole is out of API calls. Stop, do not retry.
    #[error(
        "Salesforce refused the call: the org's API request limit is exceeded ({message}); hlsync stops until \
         the 24 hour allotment frees up. Check which integrations use the allotment"
    )]
    LimitExceeded {
        /// Salesforce's message.
        message: String,
    },

    /// 400 QUERY_TIMEOUT: the query ran too long; the caller should split its window.
    #[error("Salesforce timed the query out ({message}): query a smaller window")]
    QueryTimeout {
        /// Salesforce's message (and, for a composite subrequest, which query).
        message: String,
    },

    /// Refused before sending: the URL would pass what Salesforce accepts (it answers 414).
    #[error(
        "the SOQL query would make a {bytes}-byte URL, over the {limit}-byte limit: split it into smaller queries"
    )]
    QueryTooLong {
        /// The URL's length.
        bytes: usize,
        /// The longest URL hlsync sends ([`MAX_URL_BYTES`](crate::MAX_URL_BYTES)).
        limit: usize,
    },

    /// An object or field name that is not a Salesforce API name (refused before sending).
    #[error(
        "`{0}` is not a Salesforce API name (letters, digits and underscores): check the config"
    )]
    InvalidName(String),

    /// Salesforce answered a client error (4xx) that retrying cannot fix.
    #[error("Salesforce answered {status} {code} to {what}: {message}")]
    Api {
        /// The call, e.g. `query` or `describe Contact`.
        what: String,
        /// The HTTP status.
        status: u16,
        /// Salesforce's `errorCode`.
        code: String,
        /// Salesforce's message.
        message: String,
    },

    /// Server errors (5xx) that outlasted every retry.
    #[error(
        "Salesforce is unavailable ({status} {code}: {message}) after {attempts} tries of {what}; hlsync will \
         try again on its next run"
    )]
    Unavailable {
        /// The call.
        what: String,
        /// The last HTTP status.
        status: u16,
        /// Salesforce's `errorCode` in the last answer.
        code: String,
        /// Salesforce's message in the last answer.
        message: String,
        /// Tries made.
        attempts: u32,
    },

    /// Connection errors and timeouts that outlasted every retry.
    #[error(
        "could not reach Salesforce for {what} after {attempts} tries: {source}; check the network path \
         to the instance"
    )]
    Transport {
        /// The call.
        what: String,
        /// Tries made.
        attempts: u32,
        /// The last failure (without the URL, which may hold a query).
        #[source]
        source: reqwest::Error,
    },

    /// A response that does not have the documented shape.
    #[error("unexpected answer from Salesforce to {what}: {detail}")]
    Decode {
        /// The call, or what was being built.
        what: String,
        /// What does not fit.
        detail: String,
    },
}

impl SfError {
    /// Whether the same call can succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SfError::LoginUnavailable { .. }
                | SfError::Unavailable { .. }
                | SfError::Transport { .. }
        )
    }

    /// Whether hlsync must stop calling Salesforce (credentials rejected or the allotment is spent),
    /// as opposed to an error that concerns one call only.
    pub fn stops_all_calls(&self) -> bool {
        matches!(
            self,
            SfError::LoginRejected { .. }
                | SfError::AllotmentGuard { .. }
                | SfError::LimitExceeded { .. }
                | SfError::SessionRejected { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_rejected_tells_the_operator_what_to_do() {
        let e = SfError::LoginRejected {
            username: "integration@org".into(),
            reason: "invalid_grant".into(),
        };
        assert_eq!(
            e.to_string(),
            "Salesforce rejected the login for integration@org (invalid_grant): fix the secret; hlsync will \
             not retry until the secret changes"
        );
        assert!(!e.is_retryable());
        assert!(e.stops_all_calls());
    }

    #[test]
    fn only_transient_errors_are_retryable() {
        let unavailable = SfError::Unavailable {
            what: "query".into(),
            status: 503,
            code: "SERVER_UNAVAILABLE".into(),
            message: "busy".into(),
            attempts: 4,
        };
        assert!(unavailable.is_retryable());
        let limit = SfError::LimitExceeded {
            message: "TotalRequests Limit exceeded.".into(),
        };
        assert!(!limit.is_retryable());
        let timeout = SfError::QueryTimeout {
            message: "Your query request was running for too long.".into(),
        };
        assert!(!timeout.is_retryable());
    }
}
