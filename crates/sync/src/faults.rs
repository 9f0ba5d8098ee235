//! Fault-injecting wrappers: every retry and failure path of the pipeline is tested on purpose.
//! A wrapper passes calls through to the wrapped port, except the ones a test scripted to fail,
//! or, in random mode, the ones a seeded generator picks (the convergence test).
//!
//! Fault points are an enum ([`Op`]): a misspelt one does not compile.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hlsync_core::allotment::ApiUsage;
use hlsync_core::event::Meeting;
use hlsync_core::id::SfId;
use hlsync_core::member::Member;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::error::{Service, SyncError};
use crate::ports::{
    ChangePages, ChangeQuery, Community, Crm, Describe, EmailPreferenceChange, FindBy, IdScan,
    OrgStatus, PushResult, Pushed, Record, StateStore, StoredWatermark, WorkQueue, WriteResult,
};

/// A call a wrapper can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    // Salesforce
    OrgStatus,
    Describe,
    Changes,
    NextPage,
    Read,
    Scan,
    FindBy,
    Update,
    // Higher Logic
    PushMembers,
    PushMeetings,
    EmailPreferences,
    // The work queue
    Send,
    DeadLetter,
    // The state store
    Watermark,
    SaveWatermark,
    Lease,
    Pushed,
    RecordPushed,
    Doc,
    Pace,
}

impl Op {
    /// The error a service would give for this call in random mode: an outage, most of the
    /// time; an expired session that would not come back (a `Rejected`) is left to scripts,
    /// since the pipeline stops for good on it.
    fn random_error(self, rng: &mut StdRng) -> SyncError {
        let service = match self {
            Op::OrgStatus
            | Op::Describe
            | Op::Changes
            | Op::NextPage
            | Op::Read
            | Op::Scan
            | Op::FindBy
            | Op::Update => Service::Salesforce,
            Op::PushMembers | Op::PushMeetings | Op::EmailPreferences => Service::HigherLogic,
            _ => Service::Aws,
        };
        match self {
            // A conditional write another function won.
            Op::SaveWatermark if rng.random_bool(0.5) => SyncError::Conflict("fault".into()),
            Op::Changes | Op::NextPage if rng.random_bool(0.2) => {
                SyncError::QueryTimeout("fault".into())
            }
            _ => SyncError::Transient {
                service,
                message: format!("injected fault on {self:?}"),
            },
        }
    }
}

type MakeError = Box<dyn Fn() -> SyncError + Send + Sync>;

/// Which calls fail: per operation, a queue of outcomes for the next calls (`None` passes);
/// and, in random mode, a seeded chance for any call to fail.
#[derive(Default)]
pub struct Script {
    plan: Mutex<HashMap<Op, VecDeque<Option<MakeError>>>>,
    random: Mutex<Option<(StdRng, f64)>>,
}

impl Script {
    /// Any call fails with probability `rate`, decided by a generator seeded with `seed`.
    pub fn random(seed: u64, rate: f64) -> Self {
        Script {
            plan: Mutex::default(),
            random: Mutex::new(Some((StdRng::seed_from_u64(seed), rate.clamp(0.0, 1.0)))),
        }
    }

    /// Stops random faults (scripted ones still apply).
    pub fn calm(&self) {
        *self.random.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The next call of `op` after `pass` successful ones fails with `error()`.
    pub fn fail(&self, op: Op, pass: usize, error: impl Fn() -> SyncError + Send + Sync + 'static) {
        let mut plan = self.plan.lock().unwrap_or_else(|e| e.into_inner());
        let q = plan.entry(op).or_default();
        q.extend((0..pass).map(|_| None));
        q.push_back(Some(Box::new(error)));
    }

    /// Whether a random decision says yes, with probability `p` (false when not random).
    pub fn chance(&self, p: f64) -> bool {
        let mut random = self.random.lock().unwrap_or_else(|e| e.into_inner());
        random
            .as_mut()
            .is_some_and(|(rng, _)| rng.random_bool(p.clamp(0.0, 1.0)))
    }

    fn check(&self, op: Op) -> Result<(), SyncError> {
        {
            let mut plan = self.plan.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(Some(make)) = plan.get_mut(&op).and_then(VecDeque::pop_front) {
                return Err(make());
            }
        }
        let mut random = self.random.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((rng, rate)) = random.as_mut()
            && rng.random_bool(*rate)
        {
            return Err(op.random_error(rng));
        }
        Ok(())
    }
}

pub struct FaultyCrm {
    pub inner: Arc<dyn Crm>,
    pub script: Arc<Script>,
}

#[async_trait]
impl Crm for FaultyCrm {
    async fn org_status(&self) -> Result<OrgStatus, SyncError> {
        self.script.check(Op::OrgStatus)?;
        self.inner.org_status().await
    }
    async fn describe_contact(&self, refresh: bool) -> Result<Arc<Describe>, SyncError> {
        self.script.check(Op::Describe)?;
        self.inner.describe_contact(refresh).await
    }
    async fn changes(&self, query: ChangeQuery) -> Result<Box<dyn ChangePages>, SyncError> {
        self.script.check(Op::Changes)?;
        let inner = self.inner.changes(query).await?;
        Ok(Box::new(FaultyPages {
            inner,
            script: Arc::clone(&self.script),
        }))
    }
    async fn read(
        &self,
        object: &str,
        ids: &[SfId],
        fields: &[String],
    ) -> Result<Vec<Option<Record>>, SyncError> {
        self.script.check(Op::Read)?;
        self.inner.read(object, ids, fields).await
    }
    async fn scan(&self, scan: IdScan) -> Result<Box<dyn ChangePages>, SyncError> {
        self.script.check(Op::Scan)?;
        let inner = self.inner.scan(scan).await?;
        Ok(Box::new(FaultyPages {
            inner,
            script: Arc::clone(&self.script),
        }))
    }
    async fn find_many(&self, queries: Vec<FindBy>) -> Result<Vec<Vec<Record>>, SyncError> {
        self.script.check(Op::FindBy)?;
        self.inner.find_many(queries).await
    }
    async fn update(
        &self,
        records: Vec<(String, SfId, Record)>,
    ) -> Result<Vec<WriteResult>, SyncError> {
        self.script.check(Op::Update)?;
        self.inner.update(records).await
    }
    fn calls_made(&self) -> u64 {
        self.inner.calls_made()
    }
    fn usage(&self) -> Option<ApiUsage> {
        self.inner.usage()
    }
}

struct FaultyPages {
    inner: Box<dyn ChangePages>,
    script: Arc<Script>,
}

#[async_trait]
impl ChangePages for FaultyPages {
    async fn next_page(&mut self) -> Result<Option<Vec<crate::ports::Change>>, SyncError> {
        self.script.check(Op::NextPage)?;
        self.inner.next_page().await
    }
}

pub struct FaultyCommunity {
    pub inner: Arc<dyn Community>,
    pub script: Arc<Script>,
}

#[async_trait]
impl Community for FaultyCommunity {
    async fn push_members(&self, members: &[Member]) -> Result<Vec<PushResult>, SyncError> {
        self.script.check(Op::PushMembers)?;
        // In random mode a record may be refused on its own (a 400 halved down to it), as
        // Higher Logic refuses one it does not take: it is not stored, the others are.
        let refused: Vec<bool> = members.iter().map(|_| self.script.chance(0.02)).collect();
        let taken: Vec<Member> = members
            .iter()
            .zip(&refused)
            .filter(|(_, refused)| !**refused)
            .map(|(m, _)| m.clone())
            .collect();
        let mut results = self.inner.push_members(&taken).await?.into_iter();
        Ok(members
            .iter()
            .zip(refused)
            .map(|(m, refused)| match refused {
                true => PushResult {
                    key: m.contact_id.to_string(),
                    error: Some(format!("{}: refused by an injected fault", m.contact_id)),
                },
                false => results.next().unwrap_or_else(|| PushResult {
                    key: m.contact_id.to_string(),
                    error: Some("no result".into()),
                }),
            })
            .collect())
    }
    async fn push_meetings(&self, meetings: &[Meeting]) -> Result<Vec<PushResult>, SyncError> {
        self.script.check(Op::PushMeetings)?;
        self.inner.push_meetings(meetings).await
    }
    async fn email_preferences_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<EmailPreferenceChange>, SyncError> {
        self.script.check(Op::EmailPreferences)?;
        self.inner.email_preferences_since(since).await
    }
    fn calls_made(&self) -> u64 {
        self.inner.calls_made()
    }
}

pub struct FaultyQueue {
    pub inner: Arc<dyn WorkQueue>,
    pub script: Arc<Script>,
}

#[async_trait]
impl WorkQueue for FaultyQueue {
    async fn send(&self, bodies: Vec<String>) -> Result<Vec<usize>, SyncError> {
        self.script.check(Op::Send)?;
        self.inner.send(bodies).await
    }
    async fn send_later(
        &self,
        bodies: Vec<String>,
        delay: Duration,
    ) -> Result<Vec<usize>, SyncError> {
        self.script.check(Op::Send)?;
        self.inner.send_later(bodies, delay).await
    }
    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), SyncError> {
        self.script.check(Op::DeadLetter)?;
        self.inner.dead_letter(body, reason).await
    }
}

/// The state store with faults: throttling (a retryable error) on any call, and conditional
/// watermark writes that another function won.
pub struct FaultyState {
    pub inner: Arc<dyn StateStore>,
    pub script: Arc<Script>,
}

#[async_trait]
impl StateStore for FaultyState {
    async fn watermark(&self, feed: &str) -> Result<StoredWatermark, SyncError> {
        self.script.check(Op::Watermark)?;
        self.inner.watermark(feed).await
    }
    async fn save_watermark(
        &self,
        feed: &str,
        at: Option<DateTime<Utc>>,
        checkpoint: Option<String>,
        expected_version: u64,
    ) -> Result<(), SyncError> {
        self.script.check(Op::SaveWatermark)?;
        self.inner
            .save_watermark(feed, at, checkpoint, expected_version)
            .await
    }
    async fn try_lease(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, SyncError> {
        self.script.check(Op::Lease)?;
        self.inner.try_lease(name, owner, ttl).await
    }
    async fn reserve_slot(
        &self,
        name: &str,
        interval: Duration,
    ) -> Result<DateTime<Utc>, SyncError> {
        self.script.check(Op::Pace)?;
        self.inner.reserve_slot(name, interval).await
    }
    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), SyncError> {
        self.script.check(Op::Lease)?;
        self.inner.release_lease(name, owner).await
    }
    async fn pushed(&self, ids: &[SfId]) -> Result<HashMap<SfId, Pushed>, SyncError> {
        self.script.check(Op::Pushed)?;
        self.inner.pushed(ids).await
    }
    async fn record_pushed(&self, items: &[(SfId, Pushed)]) -> Result<Vec<SfId>, SyncError> {
        self.script.check(Op::RecordPushed)?;
        self.inner.record_pushed(items).await
    }
    async fn pushed_keys(
        &self,
        prefix: &str,
        keys: &[String],
    ) -> Result<HashMap<String, Pushed>, SyncError> {
        self.script.check(Op::Pushed)?;
        self.inner.pushed_keys(prefix, keys).await
    }
    async fn record_pushed_keys(
        &self,
        prefix: &str,
        items: &[(String, Pushed)],
    ) -> Result<(), SyncError> {
        self.script.check(Op::RecordPushed)?;
        self.inner.record_pushed_keys(prefix, items).await
    }
    async fn get_doc(&self, key: &str) -> Result<Option<Value>, SyncError> {
        self.script.check(Op::Doc)?;
        self.inner.get_doc(key).await
    }
    async fn put_doc(
        &self,
        key: &str,
        value: Value,
        ttl: Option<Duration>,
    ) -> Result<(), SyncError> {
        self.script.check(Op::Doc)?;
        self.inner.put_doc(key, value, ttl).await
    }
}
