//! Where each feed stands, and the one place it moves: every feed (the change windows, the full
//! refresh, the email preferences) keeps its progress through a [`Mark`].
//!
//! The rules:
//! - a watermark never moves back: a save asks for the later of the stored value and the new one;
//! - every save is conditional on the version this run read, so of two runs that race, one wins
//!   and the other stops with [`SyncError::Conflict`];
//! - an unfinished window or scan keeps a checkpoint beside the watermark, saved after each page
//!   is on the queue, so a run that stops resumes exactly where it stopped;
//! - a window that would end at or before the watermark is empty ([`WindowCheckpoint::plan`]):
//!   when Salesforce's clock minus `settle` falls behind the watermark (settle raised, a faster
//!   schedule, a step in the clock) there is nothing settled to read yet, and nothing to save.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hlsync_core::id::SfId;
use hlsync_core::watermark::{Cursor, Window};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::error::SyncError;
use crate::ports::StateStore;

/// A feed's stored watermark and checkpoint as this run read them.
#[derive(Debug)]
pub struct Mark {
    feed: &'static str,
    at: Option<DateTime<Utc>>,
    checkpoint: Option<String>,
    version: u64,
}

impl Mark {
    /// Reads the feed's watermark.
    pub async fn load(state: &dyn StateStore, feed: &'static str) -> Result<Mark, SyncError> {
        let stored = state.watermark(feed).await?;
        Ok(Mark {
            feed,
            at: stored.at,
            checkpoint: stored.checkpoint,
            version: stored.version,
        })
    }

    pub fn feed(&self) -> &'static str {
        self.feed
    }

    /// Where the last completed window ended (`None`: the feed never completed one).
    pub fn at(&self) -> Option<DateTime<Utc>> {
        self.at
    }

    /// The unfinished window or scan, if one is stored and readable. An unreadable one (written
    /// by another version) is dropped with a warning: the feed starts a fresh window, which the
    /// lookback and the idempotent push make safe.
    pub fn checkpoint<T: DeserializeOwned>(&self) -> Option<T> {
        let text = self.checkpoint.as_deref()?;
        match serde_json::from_str(text) {
            Ok(cp) => Some(cp),
            Err(e) => {
                warn!(feed = self.feed, error = %e, "unreadable checkpoint; starting afresh");
                None
            }
        }
    }

    async fn save(
        &mut self,
        state: &dyn StateStore,
        at: Option<DateTime<Utc>>,
        checkpoint: Option<String>,
    ) -> Result<(), SyncError> {
        // Never back: a target behind the stored watermark leaves it where it is.
        let at = at.max(self.at);
        state
            .save_watermark(self.feed, at, checkpoint.clone(), self.version)
            .await?;
        self.at = at;
        self.checkpoint = checkpoint;
        self.version += 1;
        Ok(())
    }

    /// Saves the progress of an unfinished window or scan; the watermark stays.
    pub async fn save_checkpoint<T: Serialize>(
        &mut self,
        state: &dyn StateStore,
        checkpoint: &T,
    ) -> Result<(), SyncError> {
        let text =
            serde_json::to_string(checkpoint).map_err(|e| SyncError::failed(e.to_string()))?;
        self.save(state, self.at, Some(text)).await
    }

    /// The window (or scan) is done up to `to`: the watermark moves there, unless it already is
    /// later, and the checkpoint goes.
    pub async fn advance(
        &mut self,
        state: &dyn StateStore,
        to: DateTime<Utc>,
    ) -> Result<(), SyncError> {
        self.save(state, Some(to), None).await
    }

    /// Drops an unfinished checkpoint without moving the watermark (one that cannot be used).
    pub async fn clear_checkpoint(&mut self, state: &dyn StateStore) -> Result<(), SyncError> {
        if self.checkpoint.is_none() {
            return Ok(());
        }
        self.save(state, self.at, None).await
    }
}

/// An unfinished change window, stored with the watermark so the next run resumes it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowCheckpoint {
    pub from: DateTime<Utc>,
    /// Where the part being read ends (before `target` after a QUERY_TIMEOUT split).
    pub to: DateTime<Utc>,
    /// The end of the window this run set out to read.
    pub target: DateTime<Utc>,
    /// The last record sent, as (cursor, Id).
    pub after: Option<(DateTime<Utc>, SfId)>,
}

impl WindowCheckpoint {
    /// The window to read now: the stored unfinished one, or the next one after the watermark.
    /// `None` when there is nothing settled to read: the next window would end at or before
    /// the watermark.
    pub fn plan(
        mark: &Mark,
        sf_now: DateTime<Utc>,
        lookback: Duration,
        settle: Duration,
    ) -> Option<WindowCheckpoint> {
        if let Some(cp) = mark.checkpoint::<WindowCheckpoint>() {
            // A checkpoint left by a version without this rule may aim behind the watermark.
            if mark.at().is_none_or(|at| cp.target > at) {
                return Some(cp);
            }
        }
        let w = Window::next(mark.at(), sf_now, lookback, settle)?;
        if mark.at().is_some_and(|at| w.to <= at) {
            return None;
        }
        Some(WindowCheckpoint {
            from: w.from,
            to: w.to,
            target: w.to,
            after: None,
        })
    }

    /// The part to read, from where the last page ended.
    pub fn window(&self) -> Window {
        Window {
            from: self.from,
            to: self.to,
            after: self.after.clone().map(|(at, id)| Cursor { at, id }),
        }
    }
}

/// An unfinished scan of every record by Id (the full refresh), stored with its watermark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanCheckpoint {
    /// When the scan started, on Salesforce's clock: the watermark once it completes.
    pub started: DateTime<Utc>,
    /// The last Id queued.
    pub after: Option<SfId>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryState;
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, h, m, 0)
            .single()
            .expect("valid")
    }

    const MIN: Duration = Duration::from_mins(1);

    #[tokio::test]
    async fn a_window_ending_at_or_before_the_watermark_is_empty_and_nothing_moves_back() {
        let state = MemoryState::default();
        let mut mark = Mark::load(&state, "f").await.expect("load");
        mark.advance(&state, t(10, 0)).await.expect("first");
        // settle raised past the time since: the next window would end before the watermark.
        assert_eq!(
            WindowCheckpoint::plan(&mark, t(10, 5), 10 * MIN, 10 * MIN),
            None
        );
        assert_eq!(WindowCheckpoint::plan(&mark, t(10, 1), 10 * MIN, MIN), None);
        let cp = WindowCheckpoint::plan(&mark, t(10, 2), 10 * MIN, MIN).expect("a minute");
        assert_eq!((cp.from, cp.target), (t(9, 50), t(10, 1)));
        // A target behind the watermark never moves it back, and the save does not conflict.
        mark.advance(&state, t(9, 0)).await.expect("no conflict");
        assert_eq!(mark.at(), Some(t(10, 0)));
        let again = Mark::load(&state, "f").await.expect("load");
        assert_eq!(again.at(), Some(t(10, 0)));
    }

    #[tokio::test]
    async fn a_stale_checkpoint_aiming_behind_the_watermark_is_not_resumed() {
        let state = MemoryState::default();
        let mut mark = Mark::load(&state, "f").await.expect("load");
        mark.advance(&state, t(10, 0)).await.expect("first");
        let stale = WindowCheckpoint {
            from: t(9, 0),
            to: t(9, 30),
            target: t(9, 30),
            after: None,
        };
        mark.save_checkpoint(&state, &stale).await.expect("saved");
        let mark = Mark::load(&state, "f").await.expect("load");
        assert_eq!(WindowCheckpoint::plan(&mark, t(10, 0), 10 * MIN, MIN), None);
        let next = WindowCheckpoint::plan(&mark, t(10, 30), 10 * MIN, MIN).expect("next");
        assert_eq!(next.target, t(10, 29));
    }

    #[tokio::test]
    async fn of_two_runs_that_race_one_wins() {
        let state = MemoryState::default();
        let mut a = Mark::load(&state, "f").await.expect("load");
        let mut b = Mark::load(&state, "f").await.expect("load");
        a.advance(&state, t(10, 0)).await.expect("a wins");
        assert!(matches!(
            b.advance(&state, t(10, 1)).await,
            Err(SyncError::Conflict(_))
        ));
    }
}
