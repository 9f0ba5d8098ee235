//! Typed records in the state store: the run reports `hlsync status` shows, remembered rejections,
//! the opt-out write-backs, the full refresh's requests and marks.
//!
//! Each kind is a type that says its key and how long it is kept ([`StateRecord`]), next to the
//! code that writes it; every reader (another function, the CLI) loads it by that type through
//! [`StateRecords`], never by a key spelled twice. Underneath, the state store keeps them as JSON
//! ([`StateStore::get_record`]), so a record written by an older hlsync still reads when the
//! fields added since have defaults.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::SyncError;
use crate::ports::StateStore;

/// One kind of record kept in the state store.
pub trait StateRecord: Serialize + DeserializeOwned + Send + Sync {
    /// What tells one record of the kind from another: `()` for a kind with one record.
    type Id: ?Sized + Sync;
    /// How long the store keeps a record at least; `None`: until it is replaced.
    const TTL: Option<Duration> = None;
    /// The state key of the record `id` names.
    fn key(id: &Self::Id) -> String;
}

/// Loading and storing [`StateRecord`]s, for every state store.
#[async_trait]
pub trait StateRecords {
    /// The record `id` names, `None` when none is stored (or it expired). A stored record that
    /// does not read as `R` is an error that names its key.
    async fn load<R: StateRecord>(&self, id: &R::Id) -> Result<Option<R>, SyncError>;
    /// Stores the record, replacing any, for [`StateRecord::TTL`].
    async fn store<R: StateRecord>(&self, id: &R::Id, record: &R) -> Result<(), SyncError>;
}

#[async_trait]
impl<S: StateStore + ?Sized> StateRecords for S {
    async fn load<R: StateRecord>(&self, id: &R::Id) -> Result<Option<R>, SyncError> {
        let key = R::key(id);
        let Some(value) = self.get_record(&key).await? else {
            return Ok(None);
        };
        serde_json::from_value(value).map(Some).map_err(|e| {
            SyncError::failed(format!(
                "the state record `{key}` does not read as {} ({e}); delete its item \
                 (`doc#{key}`) from the state table, and hlsync writes it again when next due",
                std::any::type_name::<R>()
            ))
        })
    }

    async fn store<R: StateRecord>(&self, id: &R::Id, record: &R) -> Result<(), SyncError> {
        let key = R::key(id);
        let value = serde_json::to_value(record).map_err(|e| {
            SyncError::failed(format!("could not encode the state record `{key}`: {e}"))
        })?;
        self.put_record(&key, value, R::TTL).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryState;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Note {
        text: String,
        #[serde(default)]
        added_later: u32,
    }

    impl StateRecord for Note {
        type Id = str;
        const TTL: Option<Duration> = Some(Duration::from_mins(1));
        fn key(id: &str) -> String {
            format!("note#{id}")
        }
    }

    #[tokio::test]
    async fn a_record_round_trips_under_its_own_key() {
        let state = MemoryState::default();
        assert_eq!(state.load::<Note>("a").await.expect("reads"), None);
        let note = Note {
            text: "hi".into(),
            added_later: 2,
        };
        state.store("a", &note).await.expect("stores");
        assert_eq!(state.load::<Note>("a").await.expect("reads"), Some(note));
        assert_eq!(state.load::<Note>("b").await.expect("reads"), None);
        assert!(state.get_record("note#a").await.expect("raw").is_some());
    }

    #[tokio::test]
    async fn an_older_record_reads_and_a_foreign_one_names_its_key() {
        let state = MemoryState::default();
        state
            .put_record("note#old", serde_json::json!({"text": "before"}), None)
            .await
            .expect("raw put");
        let old = state.load::<Note>("old").await.expect("reads");
        assert_eq!(old.map(|n| n.added_later), Some(0));

        state
            .put_record("note#bad", serde_json::json!({"txt": 1}), None)
            .await
            .expect("raw put");
        let err = state.load::<Note>("bad").await.expect_err("refused");
        assert!(err.to_string().contains("`note#bad`"), "{err}");
        assert!(err.to_string().contains("delete"), "{err}");
    }
}
