//! What can go wrong in a sync run, sorted by what the caller should do about it.
//!
//! The adapters translate each client's own error into one of these kinds, keeping its message
//! (which already tells the operator what to do). The pipeline only needs to know the kind.

use std::fmt;

/// The outside system an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Salesforce,
    HigherLogic,
    Aws,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Salesforce => "Salesforce",
            Service::HigherLogic => "Higher Logic",
            Service::Aws => "AWS",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Credentials were rejected. Never retried with the same secret: the run stops.
    #[error("{message}")]
    Rejected { service: Service, message: String },
    /// The API allotment guard refused, or Salesforce answered REQUEST_LIMIT_EXCEEDED. The run
    /// stops; the next scheduled run tries again.
    #[error("{0}")]
    Allotment(String),
    /// A window query took too long on Salesforce's side: the caller splits the window.
    #[error("Salesforce query timed out (QUERY_TIMEOUT): {0}")]
    QueryTimeout(String),
    /// Another run moved the watermark first: this run stops without writing.
    #[error("the watermark `{0}` was advanced by another run; this run stops and leaves it alone")]
    Conflict(String),
    /// Worth trying again later (5xx, throttling, a network error) after the client's own retries.
    #[error("{service} is unavailable for now (will be retried): {message}")]
    Transient { service: Service, message: String },
    /// Anything else: a bug, a bad configuration, a schema that does not fit.
    #[error("{message}")]
    Failed {
        service: Option<Service>,
        message: String,
    },
}

impl SyncError {
    pub fn failed(message: impl Into<String>) -> Self {
        SyncError::Failed {
            service: None,
            message: message.into(),
        }
    }

    /// Whether a later attempt of the same work may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SyncError::Transient { .. } | SyncError::QueryTimeout(_) | SyncError::Conflict(_)
        )
    }

    /// Whether the whole run must stop (as opposed to failing one record).
    pub fn stops_run(&self) -> bool {
        matches!(
            self,
            SyncError::Rejected { .. } | SyncError::Allotment(_) | SyncError::Conflict(_)
        )
    }
}
