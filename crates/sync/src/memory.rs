//! In-memory stand-ins for the ports, for unit tests of the pipeline. They keep the same
//! contracts as the real adapters (conditional watermark writes, (cursor, Id) ordering, pages),
//! so a test against them means something.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hlsync_core::allotment::ApiUsage;
use hlsync_core::event::Meeting;
use hlsync_core::id::SfId;
use hlsync_core::member::Member;
use hlsync_core::time::{format_millis, parse_sf_datetime};
use serde_json::Value;

use crate::error::SyncError;
use crate::ports::{
    Change, ChangePages, ChangeQuery, Community, Crm, Describe, EmailPreferenceChange, Filter,
    FindBy, IdScan, Keys, OrgStatus, PushResult, Pushed, Record, StateStore, StoredWatermark,
    WorkQueue, WriteResult,
};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A test that panicked while holding the lock has failed already; keep going with its data.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A Salesforce org in memory: records per object, keyed by Id.
pub struct MemoryCrm {
    pub objects: Mutex<BTreeMap<String, BTreeMap<SfId, Record>>>,
    pub describe: Mutex<Describe>,
    pub now: Mutex<DateTime<Utc>>,
    pub usage: Mutex<ApiUsage>,
    pub page_size: usize,
    /// Ids whose updates Salesforce refuses for good (a validation rule).
    pub refuse_updates: Mutex<HashSet<SfId>>,
    /// Ids whose updates fail for now (a row lock).
    pub lock_updates: Mutex<HashSet<SfId>>,
    /// Every update applied, as (object, Id, fields).
    pub updates: Mutex<Vec<(String, SfId, Record)>>,
    calls: Arc<AtomicU64>,
}

impl MemoryCrm {
    pub fn new(describe: Describe, now: DateTime<Utc>) -> Self {
        MemoryCrm {
            objects: Mutex::new(BTreeMap::new()),
            describe: Mutex::new(describe),
            now: Mutex::new(now),
            usage: Mutex::new(ApiUsage {
                used: 0,
                max: 100_000,
            }),
            page_size: 2000,
            refuse_updates: Mutex::new(HashSet::new()),
            lock_updates: Mutex::new(HashSet::new()),
            updates: Mutex::new(Vec::new()),
            calls: Arc::new(AtomicU64::new(0)),
        }
    }

    #[must_use]
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    pub fn put(&self, object: &str, record: Record) {
        let id: SfId = record
            .get("Id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .expect("test records carry a valid Id");
        lock(&self.objects)
            .entry(object.to_string())
            .or_default()
            .insert(id, record);
    }

    pub fn set_now(&self, now: DateTime<Utc>) {
        *lock(&self.now) = now;
    }

    /// A record as stored (deleted or not).
    pub fn get(&self, object: &str, id: &SfId) -> Option<Record> {
        lock(&self.objects).get(object)?.get(id).cloned()
    }

    /// Changes fields of a stored record without touching anything else (a test sets
    /// `SystemModstamp` itself, or leaves it, as a formula change does).
    pub fn patch(&self, object: &str, id: &SfId, fields: Record) {
        if let Some(record) = lock(&self.objects)
            .get_mut(object)
            .and_then(|o| o.get_mut(id))
        {
            record.extend(fields);
        }
    }

    fn call(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        lock(&self.usage).used += 1;
    }

    /// `changes` as the pages of one query call (the first page comes with the call).
    fn pages(&self, changes: Vec<Change>) -> Box<dyn ChangePages> {
        let pages: Vec<Vec<Change>> = changes
            .chunks(self.page_size)
            .map(<[Change]>::to_vec)
            .collect();
        self.call();
        Box::new(MemoryPages {
            pages: pages.into_iter(),
            calls: Arc::clone(&self.calls),
            first: true,
        })
    }
}

fn field<'a>(record: &'a Record, name: &str) -> Option<&'a Value> {
    record
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn is_deleted(record: &Record) -> bool {
    field(record, "IsDeleted")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// A field of `record`, or of the record a lookup names (`Account.Name`: through `AccountId`).
fn resolve(
    objects: &BTreeMap<String, BTreeMap<SfId, Record>>,
    record: &Record,
    path: &str,
) -> Option<Value> {
    match path.split_once('.') {
        None => field(record, path).cloned(),
        Some((parent, rest)) => {
            let parent_id: SfId = field(record, &format!("{parent}Id"))
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())?;
            let parent_record = objects.get(parent)?.get(&parent_id)?;
            resolve(objects, parent_record, rest)
        }
    }
}

fn datetime(value: Option<Value>) -> Option<DateTime<Utc>> {
    value
        .as_ref()
        .and_then(Value::as_str)
        .and_then(parse_sf_datetime)
}

/// The pipeline's filters, as Salesforce would evaluate them (`window_from`: the start of the
/// window the query reads).
fn matches_filter(
    objects: &BTreeMap<String, BTreeMap<SfId, Record>>,
    record: &Record,
    filter: Option<&Filter>,
    window_from: Option<DateTime<Utc>>,
) -> bool {
    match filter {
        None => true,
        Some(Filter::Deleted) => is_deleted(record),
        Some(Filter::Equals { path, value }) => resolve(objects, record, path)
            .as_ref()
            .and_then(Value::as_str)
            .is_some_and(|v| v.eq_ignore_ascii_case(value)),
        Some(Filter::CursorBehind { field: name }) => {
            is_deleted(record)
                || match datetime(resolve(objects, record, name)) {
                    None => true,
                    Some(at) => window_from.is_some_and(|from| at <= from),
                }
        }
    }
}

/// The rows of `objects` a [`FindBy`] selects, as Salesforce returns them.
fn find_in(objects: &BTreeMap<String, BTreeMap<SfId, Record>>, query: &FindBy) -> Vec<Record> {
    let listed: Option<HashSet<&SfId>> = match &query.keys {
        Keys::In(ids) => Some(ids.iter().collect()),
        Keys::Range { .. } => None,
    };
    let selects = |k: &SfId| {
        listed
            .as_ref()
            .map_or_else(|| query.selects(k), |l| l.contains(k))
    };
    let mut out = Vec::new();
    for (id, record) in objects.get(&query.object).into_iter().flatten() {
        let key: Option<SfId> = field(record, &query.field)
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok());
        if (is_deleted(record) && !query.with_deleted)
            || !key.is_some_and(|k| selects(&k))
            || !matches_filter(objects, record, query.filter.as_ref(), None)
        {
            continue;
        }
        let mut row = Record::new();
        row.insert("Id".into(), Value::String(id.to_string()));
        for f in &query.fields {
            match f.split_once('.') {
                None => {
                    row.insert(f.clone(), field(record, f).cloned().unwrap_or(Value::Null));
                }
                // A relationship path comes back as a nested record, as in Salesforce (null
                // when the reference is empty).
                Some((parent, name)) => {
                    let parent_record = field(record, &format!("{parent}Id"))
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse::<SfId>().ok())
                        .and_then(|pid| objects.get(parent)?.get(&pid));
                    let Some(p) = parent_record else {
                        row.entry(parent.to_string()).or_insert(Value::Null);
                        continue;
                    };
                    let nested = row
                        .entry(parent.to_string())
                        .or_insert_with(|| Value::Object(Record::new()));
                    if let Value::Object(nested) = nested {
                        nested.insert(
                            name.to_string(),
                            field(p, name).cloned().unwrap_or(Value::Null),
                        );
                    }
                }
            }
        }
        out.push(row);
    }
    out
}

struct MemoryPages {
    pages: std::vec::IntoIter<Vec<Change>>,
    calls: Arc<AtomicU64>,
    first: bool,
}

#[async_trait]
impl ChangePages for MemoryPages {
    async fn next_page(&mut self) -> Result<Option<Vec<Change>>, SyncError> {
        // The query call brings the first page; each further page is one more call.
        let page = self.pages.next();
        if page.is_some() && !self.first {
            self.calls.fetch_add(1, Ordering::SeqCst);
        }
        self.first = false;
        Ok(page)
    }
}

#[async_trait]
impl Crm for MemoryCrm {
    async fn org_status(&self) -> Result<OrgStatus, SyncError> {
        self.call();
        Ok(OrgStatus {
            usage: *lock(&self.usage),
            now: *lock(&self.now),
        })
    }

    async fn describe_contact(&self, _refresh: bool) -> Result<Arc<Describe>, SyncError> {
        self.call();
        Ok(Arc::new(lock(&self.describe).clone()))
    }

    async fn changes(&self, query: ChangeQuery) -> Result<Box<dyn ChangePages>, SyncError> {
        let objects = lock(&self.objects);
        let mut changes: Vec<Change> = objects
            .get(&query.object)
            .into_iter()
            .flat_map(|records| records.iter())
            .filter(|(_, r)| query.include_deleted || !is_deleted(r))
            .filter(|(_, r)| {
                matches_filter(&objects, r, query.filter.as_ref(), Some(query.window.from))
            })
            .filter_map(|(id, r)| {
                let cursor = datetime(resolve(&objects, r, &query.cursor_field))?;
                let key = query.key_field.as_ref().and_then(|k| {
                    field(r, k)
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse().ok())
                });
                Some(Change {
                    id: id.clone(),
                    cursor,
                    deleted: is_deleted(r),
                    key,
                })
            })
            .filter(|c| {
                let w = &query.window;
                c.cursor > w.from
                    && c.cursor <= w.to
                    && w.after
                        .as_ref()
                        .is_none_or(|a| (c.cursor, &c.id) > (a.at, &a.id))
            })
            .collect();
        changes.sort_by(|a, b| (a.cursor, &a.id).cmp(&(b.cursor, &b.id)));
        drop(objects);
        Ok(self.pages(changes))
    }

    async fn read(
        &self,
        object: &str,
        ids: &[SfId],
        fields: &[String],
    ) -> Result<Vec<Option<Record>>, SyncError> {
        for _ in ids.chunks(2000) {
            self.call();
        }
        let objects = lock(&self.objects);
        let records = objects.get(object);
        Ok(ids
            .iter()
            .map(|id| {
                let record = records?.get(id)?;
                if is_deleted(record) {
                    return None;
                }
                Some(
                    fields
                        .iter()
                        .map(|f| (f.clone(), field(record, f).cloned().unwrap_or(Value::Null)))
                        .collect(),
                )
            })
            .collect())
    }

    async fn scan(&self, scan: IdScan) -> Result<Box<dyn ChangePages>, SyncError> {
        let objects = lock(&self.objects);
        let changes: Vec<Change> = objects
            .get(&scan.object)
            .into_iter()
            .flat_map(|records| records.iter())
            .filter(|(id, r)| !is_deleted(r) && scan.after.as_ref().is_none_or(|a| *id > a))
            .filter_map(|(id, r)| {
                let cursor = field(r, "SystemModstamp")
                    .and_then(Value::as_str)
                    .and_then(parse_sf_datetime)?;
                Some(Change {
                    id: id.clone(),
                    cursor,
                    deleted: false,
                    key: None,
                })
            })
            .collect();
        drop(objects);
        Ok(self.pages(changes))
    }

    async fn find_many(&self, queries: Vec<FindBy>) -> Result<Vec<Vec<Record>>, SyncError> {
        // As the Salesforce adapter sends them: five queries per API call.
        let soqls: usize = queries.iter().map(|q| q.soqls().len()).sum();
        for _ in 0..soqls.div_ceil(5) {
            self.call();
        }
        let objects = lock(&self.objects);
        Ok(queries
            .iter()
            .map(|query| find_in(&objects, query))
            .collect())
    }

    async fn update(
        &self,
        records: Vec<(String, SfId, Record)>,
    ) -> Result<Vec<WriteResult>, SyncError> {
        for _ in records.chunks(200) {
            self.call();
        }
        let refuse = lock(&self.refuse_updates).clone();
        let locked = lock(&self.lock_updates).clone();
        let stamp = Value::String(format_millis(*lock(&self.now)));
        let mut objects = lock(&self.objects);
        let mut results = Vec::with_capacity(records.len());
        for (object, id, fields) in records {
            let live = objects
                .get_mut(&object)
                .and_then(|o| o.get_mut(&id))
                .filter(|r| !is_deleted(r));
            let error = match live {
                _ if refuse.contains(&id) => {
                    Some("FIELD_CUSTOM_VALIDATION_EXCEPTION: refused by the test".to_string())
                }
                _ if locked.contains(&id) => Some(
                    "UNABLE_TO_LOCK_ROW: unable to obtain exclusive access to this record"
                        .to_string(),
                ),
                None => Some("ENTITY_IS_DELETED: entity is deleted".to_string()),
                Some(record) => {
                    record.extend(fields.clone());
                    // Every write moves SystemModstamp, as in Salesforce.
                    record.insert("SystemModstamp".into(), stamp.clone());
                    lock(&self.updates).push((object.clone(), id.clone(), fields));
                    None
                }
            };
            results.push(WriteResult { id, error });
        }
        Ok(results)
    }

    fn calls_made(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn usage(&self) -> Option<ApiUsage> {
        Some(*lock(&self.usage))
    }
}

/// A Higher Logic tenant in memory: the last record pushed per key, replaced whole by each push
/// (Push API v2), deletes removing it.
#[derive(Default)]
pub struct MemoryCommunity {
    pub members: Mutex<BTreeMap<String, Member>>,
    /// ContactIds whose delete was taken (and not re-created since).
    pub deleted: Mutex<HashSet<String>>,
    /// Keys whose records are refused (a 400 for that record alone).
    pub refuse: Mutex<HashSet<String>>,
    /// The size of each push request.
    pub pushes: Mutex<Vec<usize>>,
    pub meetings: Mutex<BTreeMap<String, Meeting>>,
    /// (ContactId, MeetingId) of event groups pushed before their meeting: must stay empty.
    pub orphan_event_groups: Mutex<Vec<(String, String)>>,
    /// The GroupType of event registrations (for the orphan check); "Event" when empty.
    pub event_group_type: Mutex<String>,
    /// Opt-out changes members made in the community (never the pushes).
    pub preferences: Mutex<Vec<EmailPreferenceChange>>,
    calls: AtomicU64,
}

impl MemoryCommunity {
    /// A member changes their email opt-out in the community at `at`.
    pub fn set_email_opt_out(&self, key: &SfId, opted_out: bool, at: DateTime<Utc>) {
        if let Some(m) = lock(&self.members).get_mut(key.as_str()) {
            m.do_not_email = opted_out;
        }
        lock(&self.preferences).push(EmailPreferenceChange {
            key: key.clone(),
            do_not_email: opted_out,
            updated_on: at,
        });
    }

    fn refused(&self, key: &str) -> Option<PushResult> {
        lock(&self.refuse).contains(key).then(|| PushResult {
            key: key.to_owned(),
            error: Some(format!("ContactId {key}: refused by the test")),
        })
    }

    pub fn member(&self, key: &str) -> Option<Member> {
        lock(&self.members).get(key).cloned()
    }
    pub fn is_deleted(&self, key: &str) -> bool {
        lock(&self.deleted).contains(key)
    }
    pub fn len(&self) -> usize {
        lock(&self.members).len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Community for MemoryCommunity {
    async fn push_members(&self, members: &[Member]) -> Result<Vec<PushResult>, SyncError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        lock(&self.pushes).push(members.len());
        let event_type = {
            let t = lock(&self.event_group_type);
            if t.is_empty() {
                "Event".to_owned()
            } else {
                t.clone()
            }
        };
        let meetings = lock(&self.meetings);
        let mut stored = lock(&self.members);
        let mut deleted = lock(&self.deleted);
        Ok(members
            .iter()
            .map(|m| {
                let key = m.contact_id.to_string();
                if let Some(refused) = self.refused(&key) {
                    return refused;
                }
                if m.is_deleted {
                    stored.remove(&key);
                    deleted.insert(key.clone());
                } else {
                    for g in m.event_groups(&event_type) {
                        if !meetings.contains_key(g.key.as_str()) {
                            lock(&self.orphan_event_groups).push((key.clone(), g.key.to_string()));
                        }
                    }
                    deleted.remove(&key);
                    stored.insert(key.clone(), m.clone());
                }
                PushResult { key, error: None }
            })
            .collect())
    }

    async fn push_meetings(&self, meetings: &[Meeting]) -> Result<Vec<PushResult>, SyncError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut stored = lock(&self.meetings);
        Ok(meetings
            .iter()
            .map(|m| {
                let key = m.meeting_id.to_string();
                if let Some(refused) = self.refused(&key) {
                    return refused;
                }
                if m.is_deleted {
                    stored.remove(&key);
                } else {
                    stored.insert(key.clone(), m.clone());
                }
                PushResult { key, error: None }
            })
            .collect())
    }

    async fn email_preferences_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<EmailPreferenceChange>, SyncError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut out: Vec<EmailPreferenceChange> = lock(&self.preferences)
            .iter()
            .filter(|c| c.updated_on > since)
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.updated_on, &a.key).cmp(&(b.updated_on, &b.key)));
        Ok(out)
    }

    fn calls_made(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

/// DynamoDB in memory, with the same conditional-write rules.
#[derive(Default)]
pub struct MemoryState {
    pub watermarks: Mutex<HashMap<String, StoredWatermark>>,
    /// Lease name → (owner, expiry on `clock`).
    pub leases: Mutex<HashMap<String, (String, DateTime<Utc>)>>,
    /// The clock leases expire on (a test moves it); the system's when unset.
    pub clock: Mutex<Option<DateTime<Utc>>>,
    pub pushed: Mutex<HashMap<SfId, Pushed>>,
    /// Push records of other kinds, keyed `prefix + key`.
    pub pushed_other: Mutex<HashMap<String, Pushed>>,
    pub docs: Mutex<HashMap<String, Value>>,
    /// The next free slot of each shared pace.
    pub paces: Mutex<HashMap<String, DateTime<Utc>>>,
}

#[async_trait]
impl StateStore for MemoryState {
    async fn watermark(&self, feed: &str) -> Result<StoredWatermark, SyncError> {
        Ok(lock(&self.watermarks)
            .get(feed)
            .cloned()
            .unwrap_or_default())
    }

    async fn save_watermark(
        &self,
        feed: &str,
        at: Option<DateTime<Utc>>,
        checkpoint: Option<String>,
        expected_version: u64,
    ) -> Result<(), SyncError> {
        let mut marks = lock(&self.watermarks);
        let current = marks.get(feed).cloned().unwrap_or_default();
        if current.version != expected_version || at < current.at {
            return Err(SyncError::Conflict(feed.to_string()));
        }
        marks.insert(
            feed.to_string(),
            StoredWatermark {
                at,
                checkpoint,
                version: expected_version + 1,
            },
        );
        Ok(())
    }

    async fn try_lease(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, SyncError> {
        let now = lock(&self.clock).unwrap_or_else(Utc::now);
        let mut leases = lock(&self.leases);
        match leases.get(name) {
            Some((holder, expires)) if holder != owner && *expires > now => Ok(false),
            _ => {
                let ttl = chrono::TimeDelta::from_std(ttl).unwrap_or(chrono::TimeDelta::MAX);
                leases.insert(name.to_string(), (owner.to_string(), now + ttl));
                Ok(true)
            }
        }
    }

    async fn reserve_slot(
        &self,
        name: &str,
        interval: Duration,
    ) -> Result<DateTime<Utc>, SyncError> {
        let now = Utc::now();
        let mut paces = lock(&self.paces);
        let slot = paces.get(name).copied().map_or(now, |next| next.max(now));
        let step = chrono::TimeDelta::from_std(interval).unwrap_or(chrono::TimeDelta::MAX);
        paces.insert(name.to_owned(), slot + step);
        Ok(slot)
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), SyncError> {
        let mut leases = lock(&self.leases);
        if leases.get(name).is_some_and(|(h, _)| h == owner) {
            leases.remove(name);
        }
        Ok(())
    }

    async fn pushed(&self, ids: &[SfId]) -> Result<HashMap<SfId, Pushed>, SyncError> {
        let pushed = lock(&self.pushed);
        Ok(ids
            .iter()
            .filter_map(|id| pushed.get(id).map(|p| (id.clone(), p.clone())))
            .collect())
    }

    async fn record_pushed(&self, items: &[(SfId, Pushed)]) -> Result<Vec<SfId>, SyncError> {
        let mut pushed = lock(&self.pushed);
        let mut refused = Vec::new();
        for (id, p) in items {
            let newer_stored = pushed
                .get(id)
                .is_some_and(|stored| p.cursor.is_some() && stored.cursor > p.cursor);
            if newer_stored {
                refused.push(id.clone());
            } else {
                pushed.insert(id.clone(), p.clone());
            }
        }
        Ok(refused)
    }

    async fn pushed_keys(
        &self,
        prefix: &str,
        keys: &[String],
    ) -> Result<HashMap<String, Pushed>, SyncError> {
        let pushed = lock(&self.pushed_other);
        Ok(keys
            .iter()
            .filter_map(|k| {
                pushed
                    .get(&format!("{prefix}{k}"))
                    .map(|p| (k.clone(), p.clone()))
            })
            .collect())
    }

    async fn record_pushed_keys(
        &self,
        prefix: &str,
        items: &[(String, Pushed)],
    ) -> Result<(), SyncError> {
        let mut pushed = lock(&self.pushed_other);
        for (k, p) in items {
            pushed.insert(format!("{prefix}{k}"), p.clone());
        }
        Ok(())
    }

    async fn get_record(&self, key: &str) -> Result<Option<Value>, SyncError> {
        Ok(lock(&self.docs).get(key).cloned())
    }

    async fn put_record(
        &self,
        key: &str,
        value: Value,
        _ttl: Option<Duration>,
    ) -> Result<(), SyncError> {
        lock(&self.docs).insert(key.to_string(), value);
        Ok(())
    }
}

/// A work queue in memory: what was sent, what was sent for later, what was dead-lettered.
#[derive(Default)]
pub struct MemoryQueue {
    pub sent: Mutex<Vec<String>>,
    /// Sent with a delay (`send_later`), not yet due: `release_delayed` makes them due.
    pub delayed: Mutex<Vec<(String, Duration)>>,
    pub dead: Mutex<Vec<(String, String)>>,
}

impl MemoryQueue {
    /// The delayed messages become deliverable (their delay has passed).
    pub fn release_delayed(&self) -> usize {
        let delayed: Vec<(String, Duration)> = lock(&self.delayed).drain(..).collect();
        let n = delayed.len();
        lock(&self.sent).extend(delayed.into_iter().map(|(body, _)| body));
        n
    }
}

impl MemoryQueue {
    /// Takes every message sent so far, as a batch for the Member Refresh.
    pub fn take(&self) -> Vec<crate::member::IncomingMessage> {
        lock(&self.sent)
            .drain(..)
            .enumerate()
            .map(|(i, body)| crate::member::IncomingMessage {
                message_id: format!("m{i}"),
                body,
            })
            .collect()
    }
}

#[async_trait]
impl WorkQueue for MemoryQueue {
    async fn send(&self, bodies: Vec<String>) -> Result<Vec<usize>, SyncError> {
        lock(&self.sent).extend(bodies);
        Ok(Vec::new())
    }

    async fn send_later(
        &self,
        bodies: Vec<String>,
        delay: Duration,
    ) -> Result<Vec<usize>, SyncError> {
        lock(&self.delayed).extend(bodies.into_iter().map(|b| (b, delay)));
        Ok(Vec::new())
    }

    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), SyncError> {
        lock(&self.dead).push((body.to_string(), reason.to_string()));
        Ok(())
    }
}
