//! Fault-injecting wrappers: every retry and failure path of the pipeline is tested on purpose.
//! A wrapper passes calls through to the wrapped port, except the ones a test scripted to fail,
//! or, in random mode, the ones a seeded generator picks (the convergence test).
//!
//! Fault points are an enum ([`Op`]): a misspelt one does not compile.
//!
//! A fault strikes either before the call (nothing reaches the service: an outage, throttling,
//! a conditional write that lost) or after it ([`Script::fail_after`]: the call went through and
//! its answer was lost on the way back, so the caller is told it failed although the write
//! landed, as when a connection drops after DynamoDB committed).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
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
    Record,
    Pace,
}

impl Op {
    /// A call of the state store.
    fn is_state(self) -> bool {
        matches!(
            self,
            Op::Watermark
                | Op::SaveWatermark
                | Op::Lease
                | Op::Pushed
                | Op::RecordPushed
                | Op::Record
                | Op::Pace
        )
    }

    /// The error a service would give for this call in random mode: an outage, most of the
    /// time; an expired session that would not come back (a `Rejected`) is left to scripts,
    /// since the pipeline stops for good on it.
    fn random_error(self, rng: &mut StdRng) -> SyncError {
        if self.is_state() {
            // A conditional write another function won (FaultyState makes the race real).
            if self == Op::SaveWatermark && rng.random_bool(0.5) {
                return SyncError::Conflict("injected race".into());
            }
            return SyncError::Transient {
                service: Service::Aws,
                message: format!(
                    "ProvisionedThroughputExceededException: injected throttling on {self:?}"
                ),
            };
        }
        match self {
            Op::Changes | Op::NextPage if rng.random_bool(0.2) => {
                SyncError::QueryTimeout("fault".into())
            }
            _ => SyncError::Transient {
                service: self.service(),
                message: format!("injected fault on {self:?}"),
            },
        }
    }

    /// The service this call goes to.
    fn service(self) -> Service {
        match self {
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
        }
    }
}

type MakeError = Box<dyn Fn() -> SyncError + Send + Sync>;

/// Where a fault strikes a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strike {
    /// Before the call: nothing reaches the service.
    Before,
    /// After the call: it went through (a write landed), and its answer was lost.
    After,
}

/// A fault drawn for one call.
type Drawn = Option<(Strike, SyncError)>;

/// What the next call of an operation meets: `None` passes.
type Planned = Option<(Strike, MakeError)>;

/// Which calls fail: per operation, a queue of outcomes for the next calls (`None` passes);
/// and, in random mode, a seeded chance for any call to fail.
#[derive(Default)]
pub struct Script {
    plan: Mutex<HashMap<Op, VecDeque<Planned>>>,
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
        *self
            .random
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// The next call of `op` after `pass` successful ones fails with `error()`, before it
    /// reaches the service.
    pub fn fail(&self, op: Op, pass: usize, error: impl Fn() -> SyncError + Send + Sync + 'static) {
        self.plan(op, pass, Strike::Before, Box::new(error));
    }

    /// The next call of `op` after `pass` successful ones fails as if its service were down: a
    /// retryable [`SyncError::Transient`] of that service saying `message`.
    pub fn outage(&self, op: Op, pass: usize, message: &'static str) {
        self.fail(op, pass, move || SyncError::Transient {
            service: op.service(),
            message: message.into(),
        });
    }

    /// The next call of `op` after `pass` successful ones is made, and then answers `error()`:
    /// a write that landed although its caller is told it failed.
    pub fn fail_after(
        &self,
        op: Op,
        pass: usize,
        error: impl Fn() -> SyncError + Send + Sync + 'static,
    ) {
        self.plan(op, pass, Strike::After, Box::new(error));
    }

    fn plan(&self, op: Op, pass: usize, strike: Strike, error: MakeError) {
        let mut plan = self
            .plan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let q = plan.entry(op).or_default();
        q.extend((0..pass).map(|_| None));
        q.push_back(Some((strike, error)));
    }

    /// Whether a random decision says yes, with probability `p` (false when not random).
    pub fn chance(&self, p: f64) -> bool {
        let mut random = self
            .random
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        random
            .as_mut()
            .is_some_and(|(rng, _)| rng.random_bool(p.clamp(0.0, 1.0)))
    }

    /// The fault planned for this call of `op`, or one drawn at random. `writes`: the call
    /// changes something, so a random fault may also strike after it (a lost answer).
    fn draw(&self, op: Op, writes: bool) -> Drawn {
        {
            let mut plan = self
                .plan
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(Some((strike, make))) = plan.get_mut(&op).and_then(VecDeque::pop_front) {
                return Some((strike, make()));
            }
        }
        let mut random = self
            .random
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (rng, rate) = random.as_mut()?;
        if !rng.random_bool(*rate) {
            return None;
        }
        let error = op.random_error(rng);
        // A lost answer is a transport failure: a conditional write that lost was refused.
        let after = writes && !matches!(error, SyncError::Conflict(_)) && rng.random_bool(0.3);
        Some((if after { Strike::After } else { Strike::Before }, error))
    }

    /// Makes `call` as `drawn` says: not at all, with its answer replaced by the fault, or
    /// plainly.
    async fn strike<T>(
        drawn: Drawn,
        call: impl Future<Output = Result<T, SyncError>>,
    ) -> Result<T, SyncError> {
        match drawn {
            None => call.await,
            Some((Strike::Before, error)) => Err(error),
            Some((Strike::After, error)) => {
                // Whatever the service answered is lost on the way back.
                let _ = call.await;
                Err(error)
            }
        }
    }

    /// A call of `op` that only reads, or whose random faults all strike before it.
    async fn call<T>(
        &self,
        op: Op,
        call: impl Future<Output = Result<T, SyncError>>,
    ) -> Result<T, SyncError> {
        Self::strike(self.draw(op, false), call).await
    }

    /// A call of `op` that writes: a random fault may strike before or after it.
    async fn write<T>(
        &self,
        op: Op,
        call: impl Future<Output = Result<T, SyncError>>,
    ) -> Result<T, SyncError> {
        Self::strike(self.draw(op, true), call).await
    }
}

/// Salesforce with faults: outages and query timeouts, on any call.
pub struct FaultyCrm {
    pub inner: Arc<dyn Crm>,
    pub script: Arc<Script>,
}

#[async_trait]
impl Crm for FaultyCrm {
    async fn org_status(&self) -> Result<OrgStatus, SyncError> {
        self.script
            .call(Op::OrgStatus, self.inner.org_status())
            .await
    }
    async fn describe_contact(&self, refresh: bool) -> Result<Arc<Describe>, SyncError> {
        self.script
            .call(Op::Describe, self.inner.describe_contact(refresh))
            .await
    }
    async fn changes(&self, query: ChangeQuery) -> Result<Box<dyn ChangePages>, SyncError> {
        let inner = self
            .script
            .call(Op::Changes, self.inner.changes(query))
            .await?;
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
        self.script
            .call(Op::Read, self.inner.read(object, ids, fields))
            .await
    }
    async fn scan(&self, scan: IdScan) -> Result<Box<dyn ChangePages>, SyncError> {
        let inner = self.script.call(Op::Scan, self.inner.scan(scan)).await?;
        Ok(Box::new(FaultyPages {
            inner,
            script: Arc::clone(&self.script),
        }))
    }
    async fn find_many(&self, queries: Vec<FindBy>) -> Result<Vec<Vec<Record>>, SyncError> {
        self.script
            .call(Op::FindBy, self.inner.find_many(queries))
            .await
    }
    async fn update(
        &self,
        records: Vec<(String, SfId, Record)>,
    ) -> Result<Vec<WriteResult>, SyncError> {
        self.script
            .call(Op::Update, self.inner.update(records))
            .await
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
        self.script.call(Op::NextPage, self.inner.next_page()).await
    }
}

/// Higher Logic with faults: outages on any call, and (in random mode) records refused on
/// their own.
pub struct FaultyCommunity {
    pub inner: Arc<dyn Community>,
    pub script: Arc<Script>,
}

impl FaultyCommunity {
    /// In random mode a record may be refused on its own (a 400 halved down to it), as Higher
    /// Logic refuses one it does not take: it is not stored, the others are.
    async fn push_some(&self, members: &[Member]) -> Result<Vec<PushResult>, SyncError> {
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
            .map(|(m, refused)| {
                if refused {
                    PushResult {
                        key: m.contact_id.to_string(),
                        error: Some(format!("{}: refused by an injected fault", m.contact_id)),
                    }
                } else {
                    results.next().unwrap_or_else(|| PushResult {
                        key: m.contact_id.to_string(),
                        error: Some("no result".into()),
                    })
                }
            })
            .collect())
    }
}

#[async_trait]
impl Community for FaultyCommunity {
    async fn push_members(&self, members: &[Member]) -> Result<Vec<PushResult>, SyncError> {
        self.script
            .call(Op::PushMembers, self.push_some(members))
            .await
    }
    async fn push_meetings(&self, meetings: &[Meeting]) -> Result<Vec<PushResult>, SyncError> {
        self.script
            .call(Op::PushMeetings, self.inner.push_meetings(meetings))
            .await
    }
    async fn email_preferences_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<EmailPreferenceChange>, SyncError> {
        self.script
            .call(
                Op::EmailPreferences,
                self.inner.email_preferences_since(since),
            )
            .await
    }
    fn calls_made(&self) -> u64 {
        self.inner.calls_made()
    }
}

/// The work queue with faults: sends and dead letters refused.
pub struct FaultyQueue {
    pub inner: Arc<dyn WorkQueue>,
    pub script: Arc<Script>,
}

#[async_trait]
impl WorkQueue for FaultyQueue {
    async fn send(&self, bodies: Vec<String>) -> Result<Vec<usize>, SyncError> {
        self.script.call(Op::Send, self.inner.send(bodies)).await
    }
    async fn send_later(
        &self,
        bodies: Vec<String>,
        delay: Duration,
    ) -> Result<Vec<usize>, SyncError> {
        self.script
            .call(Op::Send, self.inner.send_later(bodies, delay))
            .await
    }
    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), SyncError> {
        self.script
            .call(Op::DeadLetter, self.inner.dead_letter(body, reason))
            .await
    }
}

/// The state store with the faults DynamoDB has:
/// - throttling (`ProvisionedThroughputExceededException`, retryable) on any call;
/// - a conditional watermark write that loses a race: another run saves the feed's watermark
///   first (the same value, so nothing is skipped), the stored version moves on, and this
///   write is refused by the store itself with `SyncError::Conflict`;
/// - a write that lands but whose answer is lost ([`Strike::After`]): the caller sees an error
///   although the watermark, push record, lease or document was written.
pub struct FaultyState {
    pub inner: Arc<dyn StateStore>,
    pub script: Arc<Script>,
}

impl FaultyState {
    pub fn new(inner: Arc<dyn StateStore>, script: Arc<Script>) -> Self {
        FaultyState { inner, script }
    }
}

#[async_trait]
impl StateStore for FaultyState {
    async fn watermark(&self, feed: &str) -> Result<StoredWatermark, SyncError> {
        self.script
            .call(Op::Watermark, self.inner.watermark(feed))
            .await
    }
    async fn save_watermark(
        &self,
        feed: &str,
        at: Option<DateTime<Utc>>,
        checkpoint: Option<String>,
        expected_version: u64,
    ) -> Result<(), SyncError> {
        let drawn = self.script.draw(Op::SaveWatermark, true);
        if let Some((Strike::Before, SyncError::Conflict(_))) = drawn {
            // Another run saves first: the same progress, one version on.
            let stored = self.inner.watermark(feed).await?;
            self.inner
                .save_watermark(feed, stored.at, stored.checkpoint, stored.version)
                .await?;
            return self
                .inner
                .save_watermark(feed, at, checkpoint, expected_version)
                .await;
        }
        let save = self
            .inner
            .save_watermark(feed, at, checkpoint, expected_version);
        Script::strike(drawn, save).await
    }
    async fn try_lease(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, SyncError> {
        self.script
            .write(Op::Lease, self.inner.try_lease(name, owner, ttl))
            .await
    }
    async fn reserve_slot(
        &self,
        name: &str,
        interval: Duration,
    ) -> Result<DateTime<Utc>, SyncError> {
        self.script
            .write(Op::Pace, self.inner.reserve_slot(name, interval))
            .await
    }
    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), SyncError> {
        self.script
            .write(Op::Lease, self.inner.release_lease(name, owner))
            .await
    }
    async fn pushed(&self, ids: &[SfId]) -> Result<HashMap<SfId, Pushed>, SyncError> {
        self.script.call(Op::Pushed, self.inner.pushed(ids)).await
    }
    async fn record_pushed(&self, items: &[(SfId, Pushed)]) -> Result<Vec<SfId>, SyncError> {
        self.script
            .write(Op::RecordPushed, self.inner.record_pushed(items))
            .await
    }
    async fn pushed_keys(
        &self,
        prefix: &str,
        keys: &[String],
    ) -> Result<HashMap<String, Pushed>, SyncError> {
        self.script
            .call(Op::Pushed, self.inner.pushed_keys(prefix, keys))
            .await
    }
    async fn record_pushed_keys(
        &self,
        prefix: &str,
        items: &[(String, Pushed)],
    ) -> Result<(), SyncError> {
        self.script
            .write(
                Op::RecordPushed,
                self.inner.record_pushed_keys(prefix, items),
            )
            .await
    }
    async fn get_record(&self, key: &str) -> Result<Option<Value>, SyncError> {
        self.script
            .call(Op::Record, self.inner.get_record(key))
            .await
    }
    async fn put_record(
        &self,
        key: &str,
        value: Value,
        ttl: Option<Duration>,
    ) -> Result<(), SyncError> {
        self.script
            .write(Op::Record, self.inner.put_record(key, value, ttl))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryState;

    fn throttled() -> SyncError {
        SyncError::Transient {
            service: Service::Aws,
            message: "ProvisionedThroughputExceededException".into(),
        }
    }

    #[tokio::test]
    async fn a_watermark_race_is_real_the_store_itself_refuses_the_loser() {
        let inner = Arc::new(MemoryState::default());
        let script = Arc::new(Script::default());
        script.fail(Op::SaveWatermark, 1, || SyncError::Conflict("race".into()));
        let state = FaultyState::new(inner.clone(), script);
        state
            .save_watermark("f", None, Some("a".into()), 0)
            .await
            .expect("the first save passes");
        let lost = state.save_watermark("f", None, Some("b".into()), 1).await;
        assert!(matches!(lost, Err(SyncError::Conflict(_))), "{lost:?}");
        // The winner saved the same progress, one version on.
        let stored = inner.watermark("f").await.expect("reads");
        assert_eq!(stored.version, 2);
        assert_eq!(stored.checkpoint.as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn a_fault_before_a_write_keeps_it_out_and_one_after_lets_it_land() {
        let inner = Arc::new(MemoryState::default());
        let script = Arc::new(Script::default());
        script.fail(Op::Record, 0, throttled);
        script.fail_after(Op::Record, 0, throttled);
        let state = FaultyState::new(inner.clone(), script);
        let doc = serde_json::json!({"n": 1});
        assert!(state.put_record("before", doc.clone(), None).await.is_err());
        assert!(state.put_record("after", doc.clone(), None).await.is_err());
        assert_eq!(inner.get_record("before").await.expect("reads"), None);
        assert_eq!(
            inner.get_record("after").await.expect("reads"),
            Some(doc.clone())
        );
        // The plan is spent: calls pass again.
        state.put_record("later", doc, None).await.expect("passes");
    }

    #[test]
    fn random_faults_follow_the_seed() {
        let draws = |seed| {
            let script = Script::random(seed, 0.3);
            (0..200)
                .map(|_| {
                    script
                        .draw(Op::RecordPushed, true)
                        .map(|(strike, e)| (strike, e.to_string()))
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
        // Throttling strikes before and after writes alike.
        let seven = draws(7);
        assert!(seven.iter().flatten().any(|(s, _)| *s == Strike::Before));
        assert!(seven.iter().flatten().any(|(s, _)| *s == Strike::After));
    }
}
