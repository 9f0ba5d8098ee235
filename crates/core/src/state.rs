//! What the state store keeps for the sync between runs, as the sync's ports and the store's
//! adapter both speak it: a feed's watermark, and what was last pushed for a record.

use chrono::{DateTime, Utc};

/// Where a feed's last completed window ended, and where an unfinished one stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredWatermark {
    /// The end of the last completed window; `None` before the feed's first.
    pub at: Option<DateTime<Utc>>,
    /// The sync's own JSON for a window stopped part way, opaque to the store.
    pub checkpoint: Option<String>,
    /// Moves by one with every save; 0 when nothing is stored.
    pub version: u64,
}

/// What was last pushed for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The content hash of the member record pushed; empty while the push is pending.
    pub hash: String,
    /// The record's cursor (`SystemModstamp`, or the configured field) in the read pushed.
    pub cursor: Option<DateTime<Utc>>,
    /// When it was pushed.
    pub pushed_at: DateTime<Utc>,
    /// A Contact's `HasOptedOutOfEmail` as last read, and the `SystemModstamp` of the first read
    /// that showed that value (when it changed, as near as hlsync can tell).
    pub opt_out: Option<(bool, DateTime<Utc>)>,
}

impl Pushed {
    /// The record of a push about to be sent (write-ahead): Higher Logic may hold the record
    /// from now on, whatever happens next. Its empty hash equals no real one.
    pub fn pending() -> Self {
        Pushed {
            hash: String::new(),
            cursor: None,
            pushed_at: Utc::now(),
            opt_out: None,
        }
    }

    /// Whether this records a push whose outcome is unknown (see [`Pushed::pending`]).
    pub fn is_pending(&self) -> bool {
        self.hash.is_empty()
    }
}
