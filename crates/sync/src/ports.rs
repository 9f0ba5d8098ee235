//! The boundaries of the sync logic. The pipeline sees these traits, never an SDK: each has a real
//! adapter (`crate::adapters`), an in-memory one for tests (`crate::memory`) and a fault-injecting
//! wrapper (`crate::faults`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hlsync_core::allotment::ApiUsage;
use hlsync_core::event::{Event, Registration};
use hlsync_core::id::SfId;
use hlsync_core::member::Member;
use hlsync_core::watermark::Window;
use serde_json::{Map, Value};

use crate::error::SyncError;

pub type Record = Map<String, Value>;

/// What Salesforce says about itself at the start of a run: one cheap call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrgStatus {
    pub usage: ApiUsage,
    /// Salesforce's clock (its `Date` header): windows are measured on it, not on ours.
    pub now: DateTime<Utc>,
}

/// An object's fields and record types, as its describe gives them.
pub use hlsync_salesforce::Describe;

/// Which changed records to list: those of `object` whose `cursor_field` falls in `window`,
/// ordered by (cursor, Id).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeQuery {
    pub object: String,
    pub cursor_field: String,
    pub window: Window,
    /// Extra SOQL condition ANDed to the window (e.g. `IsDeleted = true`).
    pub filter: Option<String>,
    /// `queryAll` (deleted rows included) rather than `query`.
    pub include_deleted: bool,
}

impl ChangeQuery {
    /// The SOQL that lists the window's changes. Page edges are ordered by (cursor, Id), so
    /// records that share a timestamp are never lost when a run resumes mid-window.
    pub fn soql(&self) -> String {
        let cursor = &self.cursor_field;
        let mut soql = format!(
            "SELECT Id, {cursor}, IsDeleted FROM {} WHERE {}",
            self.object,
            self.window.soql_condition(cursor)
        );
        if let Some(filter) = &self.filter {
            soql.push_str(&format!(" AND ({filter})"));
        }
        soql.push_str(&format!(" ORDER BY {cursor} ASC, Id ASC"));
        soql
    }
}

/// One changed record, as a window query lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub id: SfId,
    pub cursor: DateTime<Utc>,
    pub deleted: bool,
}

/// Every live record of `object` in Id order, from after `after` (keyset paging): the full
/// refresh's scan, which no time window can express.
#[derive(Debug, Clone, PartialEq)]
pub struct IdScan {
    pub object: String,
    /// Resume after this Id (the last one a previous page or run got to).
    pub after: Option<SfId>,
    /// Extra SOQL condition ANDed to the scan.
    pub filter: Option<String>,
}

impl IdScan {
    /// Pages carry `SystemModstamp` as their cursor, so that a message says how new the read was.
    pub fn soql(&self) -> String {
        let mut conditions = Vec::new();
        if let Some(after) = &self.after {
            conditions.push(format!("Id > '{after}'"));
        }
        if let Some(filter) = &self.filter {
            conditions.push(format!("({filter})"));
        }
        let mut soql = format!("SELECT Id, SystemModstamp, IsDeleted FROM {}", self.object);
        if !conditions.is_empty() {
            soql.push_str(" WHERE ");
            soql.push_str(&conditions.join(" AND "));
        }
        soql.push_str(" ORDER BY Id ASC");
        soql
    }
}

/// The outcome of writing one record back to Salesforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResult {
    pub id: SfId,
    /// `None` when Salesforce saved the record.
    pub error: Option<String>,
}

/// The pages of a change query, fetched one at a time so the caller can checkpoint between them.
#[async_trait]
pub trait ChangePages: Send {
    async fn next_page(&mut self) -> Result<Option<Vec<Change>>, SyncError>;
}

/// The customer's Salesforce org.
#[async_trait]
pub trait Crm: Send + Sync {
    async fn org_status(&self) -> Result<OrgStatus, SyncError>;
    /// The Contact describe; cached by the adapter unless `refresh`.
    async fn describe_contact(&self, refresh: bool) -> Result<Arc<Describe>, SyncError>;
    async fn changes(&self, query: ChangeQuery) -> Result<Box<dyn ChangePages>, SyncError>;
    /// Reads records by Id, many per API call; `None` where a record is missing or deleted.
    async fn read(
        &self,
        object: &str,
        ids: &[SfId],
        fields: &[String],
    ) -> Result<Vec<Option<Record>>, SyncError>;
    /// Lists every live record of an object in Id order (`query`, not `queryAll`).
    async fn scan(&self, scan: IdScan) -> Result<Box<dyn ChangePages>, SyncError>;
    /// Updates records (`(object, Id, fields)`), many per API call; one result per record, in order.
    async fn update(
        &self,
        records: Vec<(String, SfId, Record)>,
    ) -> Result<Vec<WriteResult>, SyncError>;
    /// Salesforce API calls this client has made (the scarcest resource: every run reports it).
    fn calls_made(&self) -> u64;
    /// The last API usage Salesforce reported.
    fn usage(&self) -> Option<ApiUsage>;
}

/// The outcome of pushing one record to Higher Logic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushResult {
    pub key: String,
    /// `None` when Higher Logic accepted the record.
    pub error: Option<String>,
}

/// A member's opt-out change made in Higher Logic.
pub use hlsync_higher_logic::EmailPreferenceChange;

/// The Higher Logic community.
#[async_trait]
pub trait Community: Send + Sync {
    /// Pushes full member records; one result per record, in order.
    async fn push_members(&self, members: &[Member]) -> Result<Vec<PushResult>, SyncError>;
    /// Pushes events (Campaigns); results keyed by EventKey.
    async fn push_events(&self, events: &[Event]) -> Result<Vec<PushResult>, SyncError>;
    /// Pushes registrations (CampaignMembers); results keyed `EventKey:LegacyContactKey`.
    async fn push_registrations(
        &self,
        registrations: &[Registration],
    ) -> Result<Vec<PushResult>, SyncError>;
    /// Opt-out changes members made in Higher Logic strictly after `since`.
    async fn email_preferences_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<EmailPreferenceChange>, SyncError>;
    fn calls_made(&self) -> u64;
}

/// A watermark as stored (where the last completed window ended, and where an unfinished one
/// stopped), and what was last pushed for a record: the state adapter's own types.
pub use hlsync_aws::{Pushed, Watermark as StoredWatermark};

/// Durable state (DynamoDB in production).
#[async_trait]
pub trait StateStore: Send + Sync {
    async fn watermark(&self, feed: &str) -> Result<StoredWatermark, SyncError>;
    /// Conditional: only when the stored version is still `expected_version` (0: none stored)
    /// and `at` does not move backwards; otherwise `SyncError::Conflict`. On success the stored
    /// version becomes `expected_version + 1`.
    async fn save_watermark(
        &self,
        feed: &str,
        at: Option<DateTime<Utc>>,
        checkpoint: Option<String>,
        expected_version: u64,
    ) -> Result<(), SyncError>;
    async fn try_lease(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, SyncError>;
    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), SyncError>;
    async fn pushed(&self, ids: &[SfId]) -> Result<HashMap<SfId, Pushed>, SyncError>;
    async fn record_pushed(&self, items: &[(SfId, Pushed)]) -> Result<(), SyncError>;
    /// Push records of other kinds (events, registrations), each kind under its own key prefix.
    async fn pushed_keys(
        &self,
        prefix: &str,
        keys: &[String],
    ) -> Result<HashMap<String, Pushed>, SyncError>;
    async fn record_pushed_keys(
        &self,
        prefix: &str,
        items: &[(String, Pushed)],
    ) -> Result<(), SyncError>;
    async fn get_doc(&self, key: &str) -> Result<Option<Value>, SyncError>;
    async fn put_doc(
        &self,
        key: &str,
        value: Value,
        ttl: Option<Duration>,
    ) -> Result<(), SyncError>;
}

/// The work queue between the two functions (SQS in production).
#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// Sends message bodies; returns the indexes of the ones that were not accepted.
    async fn send(&self, bodies: Vec<String>) -> Result<Vec<usize>, SyncError>;
    /// Puts a message that can never succeed straight on the dead-letter queue.
    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), SyncError>;
}
