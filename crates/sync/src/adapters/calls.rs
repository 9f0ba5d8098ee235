//! The call count of an adapter whose client is replaced when the secret rotates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// The calls made by an adapter's clients: the current client's own count plus what the clients
/// it replaced had made, so that the total never goes back when a new secret brings a new client.
/// The current client is held here outside the adapter's async lock, so that reading the count
/// never waits on a login.
pub(crate) struct CallCount<C> {
    retired: AtomicU64,
    latest: Mutex<Option<C>>,
    calls_of: fn(&C) -> u64,
}

impl<C> CallCount<C> {
    /// No client yet; `calls_of` reads a client's own count.
    pub(crate) fn new(calls_of: fn(&C) -> u64) -> Self {
        CallCount {
            retired: AtomicU64::new(0),
            latest: Mutex::new(None),
            calls_of,
        }
    }

    /// `replaced` (if any) is retired, its calls kept; `next` (if any) is counted from now on.
    pub(crate) fn switch(&self, replaced: Option<&C>, next: Option<C>) {
        if let Some(old) = replaced {
            self.retired
                .fetch_add((self.calls_of)(old), Ordering::SeqCst);
        }
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = next;
    }

    pub(crate) fn total(&self) -> u64 {
        let current = self
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, self.calls_of);
        self.retired.load(Ordering::SeqCst) + current
    }
}
