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
use hlsync_core::event::{Event, Registration};
use hlsync_core::id::SfId;
use hlsync_core::member::Member;
use hlsync_core::time::{format_millis, parse_sf_datetime};
use serde_json::Value;

use crate::error::SyncError;
use crate::ports::{
    Change, ChangePages, ChangeQuery, Community, Crm, Describe, EmailPreferenceChange, IdScan,
    OrgStatus, PushResult, Pushed, Record, StateStore, StoredWatermark, WorkQueue, WriteResult,
};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A test that panicked while holding the lock has failed already; keep going with its data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A Salesforce org in memory: records per object, keyed by Id.
pub struct MemoryCrm {
    pub objects: Mutex<BTreeMap<String, BTreeMap<SfId, Record>>>,
    pub describe: Mutex<Describe>,
    pub now: Mutex<DateTime<Utc>>,
    pub usage: Mutex<ApiUsage>,
    pub page_size: usize,
    /// Ids whose updates Salesforce refuses (per-record error).
    pub refuse_updates: Mutex<HashSet<SfId>>,
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
            updates: Mutex::new(Vec::new()),
            calls: Arc::new(AtomicU64::new(0)),
        }
    }

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

/// The filters the pipeline sends: `IsDeleted = true`, and `Field = 'text'` or
/// `Parent.Field = 'text'` (through the `ParentId` lookup).
fn matches_filter(
    objects: &BTreeMap<String, BTreeMap<SfId, Record>>,
    record: &Record,
    filter: Option<&str>,
) -> bool {
    let Some(filter) = filter else { return true };
    if filter == "IsDeleted = true" {
        return is_deleted(record);
    }
    let Some((path, literal)) = filter.split_once(" = ") else {
        panic!("MemoryCrm does not understand the filter {filter:?}");
    };
    let want = literal
        .trim()
        .trim_matches('\'')
        .replace("\\'", "'")
        .replace("\\\\", "\\");
    let value = match path.split_once('.') {
        None => field(record, path).cloned(),
        Some((parent, name)) => {
            let parent_id: Option<SfId> = field(record, &format!("{parent}Id"))
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok());
            parent_id
                .and_then(|id| objects.get(parent)?.get(&id))
                .and_then(|p| field(p, name).cloned())
        }
    };
    value
        .as_ref()
        .and_then(Value::as_str)
        .is_some_and(|v| v.eq_ignore_ascii_case(&want))
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
            .filter(|(_, r)| matches_filter(&objects, r, query.filter.as_deref()))
            .filter_map(|(id, r)| {
                let cursor = field(r, &query.cursor_field)
                    .and_then(Value::as_str)
                    .and_then(parse_sf_datetime)?;
                Some(Change {
                    id: id.clone(),
                    cursor,
                    deleted: is_deleted(r),
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
            .filter(|(id, r)| {
                !is_deleted(r)
                    && scan.after.as_ref().is_none_or(|a| *id > a)
                    && matches_filter(&objects, r, scan.filter.as_deref())
            })
            .filter_map(|(id, r)| {
                let cursor = field(r, "SystemModstamp")
                    .and_then(Value::as_str)
                    .and_then(parse_sf_datetime)?;
                Some(Change {
                    id: id.clone(),
                    cursor,
                    deleted: false,
                })
            })
            .collect();
        drop(objects);
        Ok(self.pages(changes))
    }

    async fn update(
        &self,
        records: Vec<(String, SfId, Record)>,
    ) -> Result<Vec<WriteResult>, SyncError> {
        for _ in records.chunks(200) {
            self.call();
        }
        let refuse = lock(&self.refuse_updates).clone();
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

/// A Higher Logic tenant in memory: the last record pushed per key.
#[derive(Default)]
pub struct MemoryCommunity {
    pub members: Mutex<BTreeMap<String, Member>>,
    /// Keys whose records are refused (per-record error).
    pub refuse: Mutex<HashSet<String>>,
    pub pushes: Mutex<Vec<usize>>,
    pub events: Mutex<BTreeMap<String, Event>>,
    /// Keyed `EventKey:LegacyContactKey`.
    pub registrations: Mutex<BTreeMap<String, Registration>>,
    /// Opt-out changes members made in the community (never the pushes).
    pub preferences: Mutex<Vec<EmailPreferenceChange>>,
    calls: AtomicU64,
}

impl MemoryCommunity {
    /// A member changes their email opt-out in the community at `at`.
    pub fn set_email_opt_out(&self, key: &SfId, opted_out: bool, at: DateTime<Utc>) {
        if let Some(m) = lock(&self.members).get_mut(key.as_str()) {
            m.email_opt_out = opted_out;
        }
        lock(&self.preferences).push(EmailPreferenceChange {
            key: key.clone(),
            email_opt_out: opted_out,
            updated_on: at,
        });
    }

    fn push_keyed<T: Clone>(
        &self,
        records: &[T],
        key: impl Fn(&T) -> String,
        into: &Mutex<BTreeMap<String, T>>,
    ) -> Vec<PushResult> {
        let refuse = lock(&self.refuse).clone();
        for _ in records.chunks(200) {
            self.calls.fetch_add(1, Ordering::SeqCst);
        }
        let mut stored = lock(into);
        records
            .iter()
            .map(|r| {
                let key = key(r);
                if refuse.contains(&key) {
                    return PushResult {
                        key,
                        error: Some("refused by the test".into()),
                    };
                }
                stored.insert(key.clone(), r.clone());
                PushResult { key, error: None }
            })
            .collect()
    }

    pub fn member(&self, key: &str) -> Option<Member> {
        lock(&self.members).get(key).cloned()
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
        let refuse = lock(&self.refuse).clone();
        let mut stored = lock(&self.members);
        for chunk in members.chunks(200) {
            self.calls.fetch_add(1, Ordering::SeqCst);
            lock(&self.pushes).push(chunk.len());
        }
        Ok(members
            .iter()
            .map(|m| {
                let key = m.legacy_contact_key.to_string();
                if refuse.contains(&key) {
                    return PushResult {
                        key,
                        error: Some("refused by the test".into()),
                    };
                }
                stored.insert(key.clone(), m.clone());
                PushResult { key, error: None }
            })
            .collect())
    }

    async fn push_events(&self, events: &[Event]) -> Result<Vec<PushResult>, SyncError> {
        Ok(self.push_keyed(events, |e| e.event_key.to_string(), &self.events))
    }

    async fn push_registrations(
        &self,
        registrations: &[Registration],
    ) -> Result<Vec<PushResult>, SyncError> {
        let known: HashSet<String> = lock(&self.events).keys().cloned().collect();
        let (filed, unknown): (Vec<&Registration>, Vec<&Registration>) = registrations
            .iter()
            .partition(|r| known.contains(r.event_key.as_str()));
        let filed: Vec<Registration> = filed.into_iter().cloned().collect();
        let key = |r: &Registration| format!("{}:{}", r.event_key, r.legacy_contact_key);
        let mut results = self.push_keyed(&filed, key, &self.registrations);
        // As Higher Logic does: a registration is filed under an event it knows.
        results.extend(unknown.into_iter().map(|r| PushResult {
            key: key(r),
            error: Some(format!("unknown EventKey {}", r.event_key)),
        }));
        let order: HashMap<String, usize> = registrations
            .iter()
            .enumerate()
            .map(|(i, r)| (key(r), i))
            .collect();
        results.sort_by_key(|r| order.get(&r.key).copied().unwrap_or(usize::MAX));
        Ok(results)
    }

    async fn email_preferences_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<EmailPreferenceChange>, SyncError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut latest: BTreeMap<SfId, EmailPreferenceChange> = BTreeMap::new();
        for c in lock(&self.preferences)
            .iter()
            .filter(|c| c.updated_on > since)
        {
            if latest
                .get(&c.key)
                .is_none_or(|l| c.updated_on >= l.updated_on)
            {
                latest.insert(c.key.clone(), c.clone());
            }
        }
        let mut out: Vec<EmailPreferenceChange> = latest.into_values().collect();
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
    pub leases: Mutex<HashMap<String, String>>,
    pub pushed: Mutex<HashMap<SfId, Pushed>>,
    /// Push records of other kinds, keyed `prefix + key`.
    pub pushed_other: Mutex<HashMap<String, Pushed>>,
    pub docs: Mutex<HashMap<String, Value>>,
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

    async fn try_lease(&self, name: &str, owner: &str, _ttl: Duration) -> Result<bool, SyncError> {
        let mut leases = lock(&self.leases);
        match leases.get(name) {
            Some(holder) if holder != owner => Ok(false),
            _ => {
                leases.insert(name.to_string(), owner.to_string());
                Ok(true)
            }
        }
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), SyncError> {
        let mut leases = lock(&self.leases);
        if leases.get(name).is_some_and(|h| h == owner) {
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

    async fn record_pushed(&self, items: &[(SfId, Pushed)]) -> Result<(), SyncError> {
        let mut pushed = lock(&self.pushed);
        for (id, p) in items {
            pushed.insert(id.clone(), p.clone());
        }
        Ok(())
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

    async fn get_doc(&self, key: &str) -> Result<Option<Value>, SyncError> {
        Ok(lock(&self.docs).get(key).cloned())
    }

    async fn put_doc(
        &self,
        key: &str,
        value: Value,
        _ttl: Option<Duration>,
    ) -> Result<(), SyncError> {
        lock(&self.docs).insert(key.to_string(), value);
        Ok(())
    }
}

/// A work queue in memory: what was sent, what was dead-lettered.
#[derive(Default)]
pub struct MemoryQueue {
    pub sent: Mutex<Vec<String>>,
    pub dead: Mutex<Vec<(String, String)>>,
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

    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), SyncError> {
        lock(&self.dead).push((body.to_string(), reason.to_string()));
        Ok(())
    }
}
