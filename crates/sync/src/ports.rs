//! The boundaries of the sync logic. The pipeline sees these traits, never an SDK: each has a real
//! adapter (`crate::adapters`), an in-memory one for tests (`crate::memory`) and a fault-injecting
//! wrapper (`crate::faults`); the last two behind the `testing` feature.
//!
//! Each trait says what an implementation must guarantee, and the pipeline relies on nothing
//! more. What holds for all of them:
//! - an error says the call may not have happened, never that it did not: a write may have
//!   landed before its answer was lost (a dropped connection, a timeout). Every write is
//!   therefore safe to make twice, and a caller that got an error reads again before it relies
//!   on what is stored;
//! - an adapter sorts its client's errors into [`SyncError`]'s kinds (`Rejected` for refused
//!   credentials, `Transient` for what may pass: 5xx, throttling, the network), so the pipeline
//!   decides from the kind alone.

#![deny(missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hlsync_core::allotment::ApiUsage;
use hlsync_core::event::Meeting;
use hlsync_core::id::SfId;
use hlsync_core::member::Member;
use hlsync_core::watermark::Window;
use serde_json::{Map, Value};

use crate::error::SyncError;

/// A Salesforce record as JSON: field name to value (a relationship path's fields as a nested
/// record).
pub type Record = Map<String, Value>;

/// What Salesforce says about itself at the start of a run: one cheap call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrgStatus {
    /// The org's API calls in the last 24 hours and its daily limit.
    pub usage: ApiUsage,
    /// Salesforce's clock (its `Date` header): windows are measured on it, not on ours.
    pub now: DateTime<Utc>,
}

/// An object's fields and record types, as its describe gives them.
pub use hlsync_core::schema::Describe;

/// A condition the pipeline's queries add, in a form every adapter can evaluate (the Salesforce
/// adapter writes it as SOQL with [`Filter::soql`]; the in-memory one evaluates it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// `IsDeleted = true`.
    Deleted,
    /// `<path> = '<value>'`; a dotted path follows a lookup (`Campaign.Type`). Text compares
    /// without case, as SOQL does.
    Equals {
        /// The field, or a dotted path to a lookup's field.
        path: String,
        /// The text it must equal.
        value: String,
    },
    /// Rows of a `SystemModstamp` window whose Flow-kept `field` did not move in it: deleted,
    /// null, or not later than the window's start (undeletes, and edits the Flow missed).
    CursorBehind {
        /// The Flow-kept cursor field.
        field: String,
    },
}

impl Filter {
    /// The SOQL condition; `window_from` is the start of the window the query reads.
    pub fn soql(&self, window_from: Option<DateTime<Utc>>) -> String {
        match self {
            Filter::Deleted => "IsDeleted = true".to_owned(),
            Filter::Equals { path, value } => format!("{path} = {}", soql_text(value)),
            Filter::CursorBehind { field } => match window_from {
                Some(from) => format!(
                    "IsDeleted = true OR {field} = null OR {field} <= {}",
                    hlsync_core::time::format_soql_datetime(from)
                ),
                None => format!("IsDeleted = true OR {field} = null"),
            },
        }
    }
}

/// A text as a SOQL string literal (quotes and backslashes escaped).
pub fn soql_text(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Which changed records to list: those of `object` whose `cursor_field` falls in `window`,
/// ordered by (cursor, Id). The cursor may be a lookup's field (`Account.SystemModstamp`: the
/// Contacts of changed Accounts).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeQuery {
    /// The object queried (`Contact`, `CampaignMember`).
    pub object: String,
    /// The field the window is measured on; may be a lookup's (`Account.SystemModstamp`).
    pub cursor_field: String,
    /// The cursor range to read, and where within it to resume.
    pub window: Window,
    /// Extra condition ANDed to the window.
    pub filter: Option<Filter>,
    /// `queryAll` (deleted rows included) rather than `query`.
    pub include_deleted: bool,
    /// A reference field whose value is the record to work on instead of the changed one
    /// (a CampaignMember's `ContactId`: its Contact is re-read); `None`: the record itself.
    pub key_field: Option<String>,
}

impl ChangeQuery {
    /// The SOQL that lists the window's changes. Page edges are ordered by (cursor, Id), so
    /// records that share a timestamp are never lost when a run resumes mid-window.
    pub fn soql(&self) -> String {
        let cursor = &self.cursor_field;
        let key = self
            .key_field
            .as_ref()
            .map(|k| format!(", {k}"))
            .unwrap_or_default();
        let mut soql = format!(
            "SELECT Id, {cursor}, IsDeleted{key} FROM {} WHERE {}",
            self.object,
            self.window.soql_condition(cursor)
        );
        if let Some(filter) = &self.filter {
            soql.push_str(&format!(" AND ({})", filter.soql(Some(self.window.from))));
        }
        soql.push_str(&format!(" ORDER BY {cursor} ASC, Id ASC"));
        soql
    }
}

/// One changed record, as a window query lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The changed record's Id.
    pub id: SfId,
    /// Its value of the query's cursor field (`SystemModstamp` for a scan).
    pub cursor: DateTime<Utc>,
    /// Its `IsDeleted`: the record is in the recycle bin.
    pub deleted: bool,
    /// The value of the query's `key_field` (null for a Lead's CampaignMember); `None` when the
    /// query has none.
    pub key: Option<SfId>,
}

/// Which rows a [`FindBy`] selects by its key field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keys {
    /// Rows whose key is one of these (queried [`FindBy::IDS_PER_QUERY`] at a time).
    In(Vec<SfId>),
    /// Rows whose key is after `after` (from the first when `None`) and at most `through`: a
    /// page of the Id order, one query whatever its size.
    Range {
        /// Exclusive lower bound; `None`: from the first.
        after: Option<SfId>,
        /// Inclusive upper bound.
        through: SfId,
    },
}

/// Live records of `object` whose reference `field` is one of `keys` (and that pass `filter`):
/// a Contact's CampaignMembers, an Account's Contacts, the Contacts of an Id range. Read with
/// `query`, many Ids per call.
#[derive(Debug, Clone, PartialEq)]
pub struct FindBy {
    /// The object queried.
    pub object: String,
    /// Fields to select; relationship paths (`Campaign.Name`) come back as nested records.
    pub fields: Vec<String>,
    /// The key field `keys` select by (a reference, or `Id`).
    pub field: String,
    /// Which key values to select.
    pub keys: Keys,
    /// Extra condition ANDed to the keys.
    pub filter: Option<Filter>,
    /// Rows in the recycle bin too (`queryAll`): a deleted row still names what it belonged to.
    pub with_deleted: bool,
}

impl FindBy {
    /// How many Ids one query carries: 500 quoted 18-character Ids keep the encoded URL under
    /// Salesforce's 16,384-byte limit with room for the select list.
    pub const IDS_PER_QUERY: usize = 500;

    /// The SOQL of each query this takes, in order: one per [`FindBy::IDS_PER_QUERY`] Ids, or
    /// one for a range. None for an empty list.
    pub fn soqls(&self) -> Vec<String> {
        match &self.keys {
            Keys::In(ids) => ids
                .chunks(Self::IDS_PER_QUERY)
                .map(|chunk| {
                    let list: Vec<String> = chunk.iter().map(|id| format!("'{id}'")).collect();
                    self.soql_where(&format!("{} IN ({})", self.field, list.join(",")))
                })
                .collect(),
            Keys::Range { after, through } => {
                let upper = format!("{} <= '{through}'", self.field);
                let condition = match after {
                    Some(after) => format!("{} > '{after}' AND {upper}", self.field),
                    None => upper,
                };
                vec![self.soql_where(&condition)]
            }
        }
    }

    fn soql_where(&self, condition: &str) -> String {
        let mut soql = format!(
            "SELECT {} FROM {} WHERE {condition}",
            self.fields.join(", "),
            self.object,
        );
        if let Some(filter) = &self.filter {
            soql.push_str(&format!(" AND ({})", filter.soql(None)));
        }
        soql.push_str(" ORDER BY Id ASC");
        soql
    }

    /// Whether `key` is one this selects.
    pub fn selects(&self, key: &SfId) -> bool {
        match &self.keys {
            Keys::In(ids) => ids.contains(key),
            Keys::Range { after, through } => {
                after.as_ref().is_none_or(|after| key > after) && key <= through
            }
        }
    }
}

/// Every live record of `object` in Id order, from after `after` (keyset paging): the full
/// refresh's scan, which no time window can express.
#[derive(Debug, Clone, PartialEq)]
pub struct IdScan {
    /// The object scanned.
    pub object: String,
    /// Resume after this Id (the last one a previous page or run got to).
    pub after: Option<SfId>,
}

impl IdScan {
    /// Pages carry `SystemModstamp` as their cursor, so that a message says how new the read was.
    pub fn soql(&self) -> String {
        let mut soql = format!("SELECT Id, SystemModstamp, IsDeleted FROM {}", self.object);
        if let Some(after) = &self.after {
            soql.push_str(&format!(" WHERE Id > '{after}'"));
        }
        soql.push_str(" ORDER BY Id ASC");
        soql
    }
}

/// The outcome of writing one record back to Salesforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResult {
    /// The record written.
    pub id: SfId,
    /// `None` when Salesforce saved the record.
    pub error: Option<String>,
}

/// The pages of a change query, fetched one at a time so the caller can checkpoint between them.
///
/// Contract: pages come in the query's order ((cursor, Id) for a window, Id for a scan), and a
/// page boundary is a promise: every record of a page sorts before every record of the next, so
/// a caller that saved the last (cursor, Id) it handled and queries again from after it gets
/// exactly the records it had not reached. `None` once the last page was given. After an error
/// the caller does not go on with these pages: it queries again from its checkpoint.
#[async_trait]
pub trait ChangePages: Send {
    /// The next page of changes, in order; `None` once the last page was given.
    async fn next_page(&mut self) -> Result<Option<Vec<Change>>, SyncError>;
}

/// The customer's Salesforce org.
///
/// Contract:
/// - reads see the org as it is when they run; a change window lists exactly the records whose
///   cursor falls in `(from, to]` (after the window's `after`, in (cursor, Id) order). A record
///   may be listed by two windows (the lookback re-reads the end of the last one): callers
///   tolerate the same change twice;
/// - every call counts against the org's daily allotment, and [`Crm::calls_made`] counts them
///   as Salesforce does (a query page is a call, a composite request of five queries is one);
/// - `QueryTimeout` comes only from window queries and their pages (the caller narrows the
///   window); `Rejected` means the credentials are refused and no further call may help;
/// - [`Crm::update`] sets fields to values, so writing the same update twice is harmless; an
///   error leaves unknown which records were written.
#[async_trait]
pub trait Crm: Send + Sync {
    /// The org's API usage and Salesforce's clock, from one call made at the start of a run.
    async fn org_status(&self) -> Result<OrgStatus, SyncError>;
    /// The Contact describe; cached by the adapter unless `refresh`.
    async fn describe_contact(&self, refresh: bool) -> Result<Arc<Describe>, SyncError>;
    /// The changes of a window, as pages fetched one at a time (each page a call).
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
    /// Every live record the query finds, all pages read: one API call per
    /// [`FindBy::IDS_PER_QUERY`] Ids (more only when one chunk finds over 2,000 records). Either
    /// all of them or an error: never a partial answer.
    async fn find_by(&self, query: FindBy) -> Result<Vec<Record>, SyncError> {
        let mut all = self.find_many(vec![query]).await?;
        Ok(all.pop().unwrap_or_default())
    }
    /// Several finds at once, answered in order: an adapter may send their queries together
    /// (Salesforce's Composite resource runs five queries in one API call). All or an error.
    async fn find_many(&self, queries: Vec<FindBy>) -> Result<Vec<Vec<Record>>, SyncError>;
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
    /// The record's key: its ContactId for a member, its MeetingId for a meeting.
    pub key: String,
    /// `None` when Higher Logic accepted the record.
    pub error: Option<String>,
}

/// A member's email opt-out changed in Higher Logic, as the tenant's feed lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailPreferenceChange {
    /// The member's ContactId.
    pub key: SfId,
    /// Whether the member now refuses email.
    pub do_not_email: bool,
    /// Higher Logic's time of the change.
    pub updated_on: DateTime<Utc>,
}

/// The Higher Logic community (its data Push API v2).
///
/// Contract: a push replaces the whole record Higher Logic holds (what it leaves out is
/// removed), so pushing the same record twice changes nothing: callers may retry freely. Records
/// are taken or refused one by one: one refused record never keeps its neighbours out. A push
/// that fails as a whole may still have been taken in part or in full (the answer lost): the
/// caller treats every record of it as perhaps pushed. The last push of a record wins, so of
/// two pushes of one Contact in flight at once either may stand: callers order them (the
/// conditional push records of [`StateStore::record_pushed`]).
#[async_trait]
pub trait Community: Send + Sync {
    /// Pushes full member records (one request's worth: at most `higher_logic.batch_size`);
    /// one result per record, in input order, keyed by ContactId.
    async fn push_members(&self, members: &[Member]) -> Result<Vec<PushResult>, SyncError>;
    /// Pushes meetings (Campaigns), at most `batch_size`; one result per record, in input
    /// order, keyed by MeetingId. A member's event group names a meeting pushed before it.
    async fn push_meetings(&self, meetings: &[Meeting]) -> Result<Vec<PushResult>, SyncError>;
    /// Opt-out changes members made in Higher Logic strictly after `since`, from the tenant's
    /// email-preference feed (only called when `higher_logic.email_preferences_url` is set).
    async fn email_preferences_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<EmailPreferenceChange>, SyncError>;
    /// Higher Logic API calls this client has made.
    fn calls_made(&self) -> u64;
}

/// A watermark as stored (where the last completed window ended, and where an unfinished one
/// stopped), and what was last pushed for a record: the state adapter's own types.
pub use hlsync_core::state::{Pushed, StoredWatermark};

/// Durable state (DynamoDB in production), shared by every function and the CLI at once.
///
/// Contract:
/// - reads are strongly consistent: a read sees every write that was answered before it began;
/// - any call may fail for now (throttling: `SyncError::Transient`), and a write may land
///   although its caller was told it failed; every write is safe to repeat;
/// - the conditional writes ([`StateStore::save_watermark`], [`StateStore::record_pushed`]) are
///   how concurrent runs are ordered: of two that race, one wins and the other is refused.
///   Being refused is a normal outcome, not a fault to retry blindly;
/// - the other writes are last-writer-wins.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The feed's stored watermark, checkpoint and version (all default when none is stored).
    async fn watermark(&self, feed: &str) -> Result<StoredWatermark, SyncError>;
    /// Conditional: only when the stored version is still `expected_version` (0: none stored)
    /// and `at` does not move backwards; otherwise `SyncError::Conflict`. On success the stored
    /// version becomes `expected_version + 1`. A conflict means another run moved the feed: the
    /// caller stops and leaves the feed to it. After any other error the stored version is
    /// unknown (the write may have landed): the caller loads the watermark again before saving.
    async fn save_watermark(
        &self,
        feed: &str,
        at: Option<DateTime<Utc>>,
        checkpoint: Option<String>,
        expected_version: u64,
    ) -> Result<(), SyncError>;
    /// Takes the lease `name` for `owner` until `ttl` from now, when it is free, expired or
    /// already `owner`'s (taking it again renews it); `false` when someone else holds it. A
    /// lease expires on its own, so a holder that crashed (or never heard it got it) blocks the
    /// others for `ttl` at most.
    async fn try_lease(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, SyncError>;
    /// Reserves the next slot of a pace shared by every function and the CLI (one call every
    /// `interval`), answering when it is. Every caller gets its own slot: together they never go
    /// faster than the pace.
    async fn reserve_slot(
        &self,
        name: &str,
        interval: Duration,
    ) -> Result<DateTime<Utc>, SyncError>;
    /// Gives the lease up if `owner` holds it; someone else's lease is left alone. Releasing
    /// twice is harmless.
    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), SyncError>;
    /// The push records stored for `ids`; an Id with none is left out of the map.
    async fn pushed(&self, ids: &[SfId]) -> Result<HashMap<SfId, Pushed>, SyncError>;
    /// Conditional per record: a record is written only where no record of a later cursor is
    /// stored (two functions pushed the same Contact from reads of different ages; the newer
    /// stays). Answers the Ids refused that way. The records are not written together: after an
    /// error any of them may be stored, which is why a push is recorded as pending (write-ahead)
    /// before it is sent.
    async fn record_pushed(&self, items: &[(SfId, Pushed)]) -> Result<Vec<SfId>, SyncError>;
    /// Push records of other kinds (events, registrations), each kind under its own key prefix;
    /// a key with none is left out of the map.
    async fn pushed_keys(
        &self,
        prefix: &str,
        keys: &[String],
    ) -> Result<HashMap<String, Pushed>, SyncError>;
    /// Unconditional: the last write of a key wins.
    async fn record_pushed_keys(
        &self,
        prefix: &str,
        items: &[(String, Pushed)],
    ) -> Result<(), SyncError>;
    /// The JSON of a typed record (run reports, requests, remembered rejections): read through
    /// [`crate::records::StateRecords`], which gives it its type. `None` when none is stored; one
    /// whose `ttl` has passed may be gone.
    async fn get_record(&self, key: &str) -> Result<Option<Value>, SyncError>;
    /// Stores a record's JSON, replacing any; with `ttl` it may disappear once that has passed
    /// (never before). Written through [`crate::records::StateRecords`].
    async fn put_record(
        &self,
        key: &str,
        value: Value,
        ttl: Option<Duration>,
    ) -> Result<(), SyncError>;
}

/// The work queue between the two functions (SQS in production).
///
/// Contract: delivery is at least once and in no particular order: a message may come twice
/// (a redelivery, a send retried after its answer was lost) or after a later one, so the
/// Member Refresh must tolerate duplicates and decide from what it reads, never from the order
/// of messages. A message the consumer does not acknowledge comes back; one that keeps failing
/// ends on the dead-letter queue.
#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// Sends message bodies; returns the indexes of the ones that were not accepted. After an
    /// error any of them may have been accepted.
    async fn send(&self, bodies: Vec<String>) -> Result<Vec<usize>, SyncError>;
    /// As `send`, the messages delivered only after `delay` (at most 15 minutes): work handed
    /// back to wait out a stop (the allotment, rejected credentials, an outage) as new messages,
    /// so that waiting never counts towards the receives that lead to the dead-letter queue.
    async fn send_later(
        &self,
        bodies: Vec<String>,
        delay: Duration,
    ) -> Result<Vec<usize>, SyncError>;
    /// Puts a message that can never succeed straight on the dead-letter queue.
    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), SyncError>;
}
