//! hlsync's two functions as plain async functions over traits:
//! - [`periodic::periodic_refresh`]: what changed in Salesforce -> messages on the work queue;
//!   the only place the watermark moves.
//! - [`member::member_refresh`]: messages -> Contacts re-read in batches -> members pushed to
//!   Higher Logic.
//!
//! They see the outside world only through [`ports`]; [`adapters`] binds those to the real
//! clients. With the `testing` feature (tests and benches only): `memory` binds them to
//! in-memory stand-ins, `faults` injects failures on purpose, and `testing` builds the worlds
//! tests run in (config, describe, records).

pub mod adapters;
pub mod credentials;
pub mod error;
#[cfg(feature = "testing")]
pub mod faults;
pub mod full;
pub mod member;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod message;
pub mod optout;
pub mod periodic;
pub mod ports;
pub mod records;
pub mod runtime;
#[cfg(feature = "testing")]
pub mod testing;
pub mod watermark;

use std::time::{Duration, Instant};

pub use error::{Service, SyncError};

/// When a function must stop starting new work (the Lambda's deadline less a safety margin).
/// Measured on tokio's clock, which is the system's except in tests that pause it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deadline {
    stop_at: Option<tokio::time::Instant>,
}

impl Deadline {
    /// No deadline: the CLI runs until the work is done.
    pub fn none() -> Self {
        Deadline { stop_at: None }
    }

    /// Stop starting work `margin` before `deadline`.
    pub fn at(deadline: Instant, margin: Duration) -> Self {
        let deadline = tokio::time::Instant::from_std(deadline);
        Deadline {
            stop_at: Some(deadline.checked_sub(margin).unwrap_or(deadline)),
        }
    }

    /// Stop starting work `after` from now (on tokio's clock).
    pub fn after(after: Duration) -> Self {
        Deadline {
            stop_at: Some(tokio::time::Instant::now() + after),
        }
    }

    pub fn near(&self) -> bool {
        self.stop_at
            .is_some_and(|t| tokio::time::Instant::now() >= t)
    }
}
