//! The pipeline against the in-memory ports: the watermark rules, fan-out, batching, skipping and
//! every failure path, without any I/O. (The same flows run end to end against moto and the
//! simulators in tests/ at the workspace root.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hlsync_core::id::SfId;
use hlsync_core::schema::{FieldInfo, FieldType};
use hlsync_sync::Deadline;
use hlsync_sync::error::{Service, SyncError};
use hlsync_sync::faults::{FaultyCommunity, FaultyCrm, FaultyQueue, FaultyState, Op, Script};
use hlsync_sync::member::{IncomingMessage, MemberDeps, member_refresh};
use hlsync_sync::memory::{MemoryCommunity, MemoryCrm, MemoryState};
use hlsync_sync::periodic::{FEED_CONTACTS, PeriodicOptions, periodic_refresh};
use hlsync_sync::ports::{Community, Crm, Describe, StateStore, WorkQueue};
use hlsync_sync::testing::{
    self, MemoryWorld, contact_id as id, field, periodic_opts, sf_time, t0, with,
};
use serde_json::{Value, json};

fn describe() -> Describe {
    testing::describe(vec![
        field("FirstName", "First Name", FieldType::String),
        field("Email", "Email", FieldType::Email),
        field("HL_Staff__c", "Staff", FieldType::Boolean),
    ])
}

fn contact(n: usize, modstamp: DateTime<Utc>) -> serde_json::Map<String, Value> {
    with(
        testing::contact(n, modstamp),
        json!({"FirstName": format!("First{n}"), "Email": format!("c{n}@example.org"),
               "HL_Staff__c": false}),
    )
}

/// The in-memory world with this file's config and describe.
type World = MemoryWorld;

/// How this file's tests drive their world.
trait PipelineWorld: Sized {
    fn new(page_size: usize) -> Self;
    fn opts(run: &str) -> PeriodicOptions;
    async fn periodic(
        &self,
        crm: &dyn Crm,
        queue: &dyn WorkQueue,
    ) -> Result<hlsync_sync::periodic::PeriodicReport, SyncError>;
    async fn members(
        &self,
        crm: &dyn Crm,
        community: &dyn Community,
    ) -> hlsync_sync::member::MemberReport;
    async fn established(page_size: usize) -> Self;
    async fn sync(&self) -> hlsync_sync::member::MemberReport;
}

impl PipelineWorld for World {
    fn new(page_size: usize) -> Self {
        MemoryWorld::build(testing::config(""), describe(), page_size)
    }

    fn opts(run: &str) -> PeriodicOptions {
        periodic_opts(run)
    }

    async fn periodic(
        &self,
        crm: &dyn Crm,
        queue: &dyn WorkQueue,
    ) -> Result<hlsync_sync::periodic::PeriodicReport, SyncError> {
        periodic_refresh(
            &self.cfg,
            crm,
            self.state.as_ref(),
            queue,
            &Self::opts("run"),
        )
        .await
    }

    async fn members(
        &self,
        crm: &dyn Crm,
        community: &dyn Community,
    ) -> hlsync_sync::member::MemberReport {
        let deps = MemberDeps {
            crm,
            community,
            ..self.member_deps()
        };
        member_refresh(&deps, self.queue.take(), &Deadline::none())
            .await
            .expect("batch runs")
    }

    /// The initial load over an empty org: the Contact feeds' watermarks start at `t0 - settle`,
    /// so the next runs read change windows.
    async fn established(page_size: usize) -> Self {
        let w = World::new(page_size);
        let r = w
            .periodic(w.crm.as_ref(), w.queue.as_ref())
            .await
            .expect("initial load");
        assert!(r.full_refresh.is_some_and(|f| f.initial && f.completed));
        let wm = w.state.watermark(FEED_CONTACTS).await.expect("watermark");
        assert_eq!(wm.at, Some(t0() - chrono::Duration::seconds(60)));
        w
    }

    /// One Periodic Refresh and one Member Refresh over everything it queued.
    async fn sync(&self) -> hlsync_sync::member::MemberReport {
        self.periodic(self.crm.as_ref(), self.queue.as_ref())
            .await
            .expect("periodic refresh");
        self.members(self.crm.as_ref(), self.community.as_ref())
            .await
    }
}

#[tokio::test]
async fn initial_sync_pushes_every_contact_and_a_second_sync_pushes_nothing() {
    let w = World::new(2000);
    for n in 0..25 {
        // Inside the next window's lookback.
        w.crm
            .put("Contact", contact(n, t0() - chrono::Duration::minutes(5)));
    }
    let report = w.sync().await;
    assert_eq!(report.pushed, 25);
    assert_eq!(w.community.len(), 25);
    let m = w.community.member(id(3).as_str()).expect("pushed");
    assert_eq!(m.first_name.as_deref(), Some("First3"));
    assert!(m.is_member);

    w.crm.set_now(t0() + chrono::Duration::minutes(30));
    let calls = w.community.calls_made();
    let report = w.sync().await;
    assert_eq!(report.pushed, 0, "nothing changed, nothing pushed");
    assert_eq!(
        w.community.calls_made(),
        calls,
        "no Higher Logic call at all"
    );
    assert_eq!(
        report.received, 25,
        "the lookback re-reads the last window's records"
    );
    assert_eq!(
        report.already_current, 25,
        "and they are known to be current without a Salesforce read"
    );
}

#[tokio::test]
async fn changes_younger_than_settle_wait_for_the_next_run() {
    let w = World::established(2000).await;
    let now = t0() + chrono::Duration::minutes(10);
    w.crm.set_now(now);
    w.crm
        .put("Contact", contact(1, now - chrono::Duration::seconds(30)));
    w.crm
        .put("Contact", contact(2, now - chrono::Duration::seconds(90)));
    let report = w.sync().await;
    assert_eq!(report.pushed, 1);
    assert!(w.community.member(id(2).as_str()).is_some());
    w.crm.set_now(now + chrono::Duration::minutes(5));
    let report = w.sync().await;
    assert_eq!(report.pushed, 1);
    assert!(w.community.member(id(1).as_str()).is_some());
}

#[tokio::test]
async fn a_late_commit_within_the_lookback_is_not_lost() {
    let w = World::established(2000).await;
    w.crm
        .put("Contact", contact(1, t0() + chrono::Duration::minutes(3)));
    w.crm.set_now(t0() + chrono::Duration::minutes(5));
    w.sync().await;
    // Committed late: it shows up now with a SystemModstamp older than the watermark.
    w.crm
        .put("Contact", contact(2, t0() + chrono::Duration::minutes(2)));
    w.crm.set_now(t0() + chrono::Duration::minutes(10));
    w.sync().await;
    assert!(w.community.member(id(2).as_str()).is_some());
}

#[tokio::test]
async fn a_window_ending_before_the_watermark_is_empty_and_never_wedges_the_feed() {
    let mut w = World::established(2000).await;
    w.crm
        .put("Contact", contact(1, t0() + chrono::Duration::minutes(3)));
    w.crm.set_now(t0() + chrono::Duration::minutes(10));
    w.sync().await;
    let wm = w.state.watermark(FEED_CONTACTS).await.expect("watermark");
    // `settle` raised past the time since the last run: the next window would end before the
    // watermark. The run does nothing and fails nothing, however often it runs.
    w.cfg.salesforce.settle = Duration::from_hours(1);
    for _ in 0..3 {
        let r = w
            .periodic(w.crm.as_ref(), w.queue.as_ref())
            .await
            .expect("no conflict, no wedge");
        assert_eq!(r.sent(), 0);
        assert!(r.completed());
    }
    assert_eq!(
        w.state
            .watermark(FEED_CONTACTS)
            .await
            .expect("watermark")
            .at,
        wm.at,
        "never moved back"
    );
    // Settled again later: the changes since arrive.
    w.crm
        .put("Contact", contact(2, t0() + chrono::Duration::minutes(15)));
    w.crm.set_now(t0() + chrono::Duration::minutes(80));
    let report = w.sync().await;
    assert_eq!(report.pushed, 1);
}

#[tokio::test]
async fn records_sharing_one_timestamp_across_page_edges_and_a_deadline_stop_are_not_lost() {
    let w = World::established(200).await;
    let at = t0() + chrono::Duration::minutes(1);
    for n in 0..500 {
        w.crm.put("Contact", contact(n, at));
    }
    w.crm.set_now(t0() + chrono::Duration::minutes(10));
    // The deadline has passed: the run sends one page, checkpoints, and stops.
    let opts = PeriodicOptions {
        deadline: Deadline::at(Instant::now(), Duration::ZERO),
        ..World::opts("first")
    };
    let r = periodic_refresh(
        &w.cfg,
        w.crm.as_ref(),
        w.state.as_ref(),
        w.queue.as_ref(),
        &opts,
    )
    .await
    .expect("runs");
    assert_eq!(r.sent(), 200);
    assert!(!r.completed());
    let wm = w.state.watermark(FEED_CONTACTS).await.expect("watermark");
    assert_eq!(
        wm.at,
        Some(t0() - chrono::Duration::seconds(60)),
        "the watermark does not move before the window is done"
    );
    assert!(wm.checkpoint.is_some());

    let r = w
        .periodic(w.crm.as_ref(), w.queue.as_ref())
        .await
        .expect("resumes");
    assert_eq!(
        r.sent(),
        300,
        "resumes after the exact (cursor, Id) of the last record sent"
    );
    assert!(r.completed());
    let report = w.members(w.crm.as_ref(), w.community.as_ref()).await;
    assert_eq!(report.contacts, 500);
    assert_eq!(w.community.len(), 500);
}

#[tokio::test]
async fn a_query_timeout_splits_the_window() {
    let w = World::established(2000).await;
    for n in 0..10 {
        w.crm.put(
            "Contact",
            contact(n, t0() + chrono::Duration::minutes(n as i64 + 1)),
        );
    }
    w.crm.set_now(t0() + chrono::Duration::hours(1));
    let script = Arc::new(Script::default());
    script.fail(Op::Changes, 0, || {
        SyncError::QueryTimeout("too many rows".into())
    });
    script.fail(Op::Changes, 0, || {
        SyncError::QueryTimeout("too many rows".into())
    });
    let crm = FaultyCrm {
        inner: w.crm.clone(),
        script,
    };
    let r = w
        .periodic(&crm, w.queue.as_ref())
        .await
        .expect("split and done");
    assert_eq!(r.feeds[0].splits, 2);
    assert_eq!(r.sent(), 10);
    assert!(r.completed());
}

#[tokio::test]
async fn a_queue_that_refuses_messages_keeps_the_watermark() {
    let w = World::established(2000).await;
    w.crm
        .put("Contact", contact(1, t0() + chrono::Duration::minutes(1)));
    w.crm.set_now(t0() + chrono::Duration::minutes(5));
    let before = w.state.watermark(FEED_CONTACTS).await.expect("wm").at;
    let script = Arc::new(Script::default());
    script.outage(Op::Send, 0, "SQS is down");
    let queue = FaultyQueue {
        inner: w.queue.clone(),
        script,
    };
    let err = w.periodic(w.crm.as_ref(), &queue).await.expect_err("fails");
    assert!(err.is_retryable());
    assert_eq!(
        w.state.watermark(FEED_CONTACTS).await.expect("wm").at,
        before
    );
    // The next run sends it.
    let r = w
        .periodic(w.crm.as_ref(), w.queue.as_ref())
        .await
        .expect("runs");
    assert_eq!(r.sent(), 1);
}

#[tokio::test]
async fn the_allotment_guard_refuses_to_start() {
    let w = World::new(2000);
    w.crm
        .put("Contact", contact(1, t0() - chrono::Duration::hours(1)));
    w.crm.usage.lock().expect("lock").used = 50_000; // 0.5 of 100,000
    let err = w
        .periodic(w.crm.as_ref(), w.queue.as_ref())
        .await
        .expect_err("refused");
    assert!(matches!(err, SyncError::Allotment(_)), "{err}");
    assert!(err.to_string().contains("max_allotment_share"));
    assert_eq!(w.crm.calls_made(), 1, "only the status call was made");
    assert!(w.queue.sent.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn a_second_run_while_one_holds_the_lease_does_nothing() {
    let w = World::new(2000);
    w.crm
        .put("Contact", contact(1, t0() - chrono::Duration::hours(1)));
    assert!(
        w.state
            .try_lease("periodic-refresh", "other", Duration::from_mins(1))
            .await
            .expect("lease")
    );
    let r = w
        .periodic(w.crm.as_ref(), w.queue.as_ref())
        .await
        .expect("runs");
    assert!(r.skipped.is_some());
    assert_eq!(w.crm.calls_made(), 0);
}

#[tokio::test]
async fn deletes_deactivations_and_group_changes_arrive_and_nothing_else_is_pushed() {
    let w = World::new(2000);
    for n in 0..5 {
        w.crm
            .put("Contact", contact(n, t0() - chrono::Duration::hours(1)));
    }
    w.sync().await;
    let later = t0() + chrono::Duration::minutes(10);
    let mut c = contact(1, later - chrono::Duration::minutes(3));
    c.insert("IsDeleted".into(), json!(true));
    w.crm.put("Contact", c);
    let mut c = contact(2, later - chrono::Duration::minutes(3));
    c.insert("Active__c".into(), json!(false));
    w.crm.put("Contact", c);
    let mut c = contact(3, later - chrono::Duration::minutes(3));
    c.insert("HL_Member_Type__c".into(), json!("Silver"));
    w.crm.put("Contact", c);
    // A modstamp bump that changes nothing mapped.
    w.crm
        .put("Contact", contact(4, later - chrono::Duration::minutes(3)));
    w.crm.set_now(later);
    let report = w.sync().await;
    assert_eq!(report.pushed, 3);
    assert_eq!(report.deleted, 1);
    assert_eq!(report.deactivated, 1);
    assert_eq!(report.skipped_unchanged, 1);
    assert!(w.community.is_deleted(id(1).as_str()));
    assert!(w.community.member(id(1).as_str()).is_none());
    let inactive = w.community.member(id(2).as_str()).expect("pushed");
    assert!(!inactive.is_member);
    assert!(
        inactive.groups.is_empty(),
        "an inactive member holds no group: Higher Logic replaces the whole record"
    );
    let groups = w.community.member(id(3).as_str()).expect("pushed").groups;
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].name, "Silver");
    assert_eq!(groups[0].group_type, "Membership");
}

fn message(n: usize, body: String) -> IncomingMessage {
    IncomingMessage {
        message_id: format!("m{n}"),
        body,
    }
}

fn body(n: usize) -> String {
    format!(r#"{{"v":1,"kind":"contact","id":"{}","run":"r"}}"#, id(n))
}

#[tokio::test]
async fn a_malformed_message_is_dead_lettered_without_failing_its_batch() {
    let w = World::new(2000);
    w.crm.put("Contact", contact(1, t0()));
    let deps = w.member_deps();
    let batch = vec![
        message(1, body(1)),
        message(2, "{not json".into()),
        message(3, body(1)),
    ];
    let report = member_refresh(&deps, batch, &Deadline::none())
        .await
        .expect("runs");
    assert!(report.failed_message_ids.is_empty());
    assert_eq!(report.dead_lettered, 1);
    assert_eq!(report.contacts, 1, "duplicates in a batch are read once");
    assert_eq!(report.pushed, 1);
    let dead = w.queue.dead.lock().expect("lock").clone();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, "{not json");
}

#[tokio::test]
async fn one_call_reads_a_whole_batch_and_a_refused_record_is_dead_lettered_alone() {
    let w = World::new(2000);
    for n in 0..300 {
        w.crm.put("Contact", contact(n, t0()));
    }
    w.community
        .refuse
        .lock()
        .expect("lock")
        .insert(id(7).to_string());
    let deps = w.member_deps();
    let batch: Vec<IncomingMessage> = (0..300).map(|n| message(n, body(n))).collect();
    let report = member_refresh(&deps, batch, &Deadline::none())
        .await
        .expect("runs");
    assert!(report.failed_message_ids.is_empty());
    assert_eq!(report.dead_lettered, 1);
    let dead = w.queue.dead.lock().expect("lock").clone();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, body(7));
    assert!(
        dead[0].1.contains("refused") && dead[0].1.contains(id(7).as_str()),
        "the reason is Higher Logic's message: {}",
        dead[0].1
    );
    assert_eq!(report.pushed, 299);
    assert_eq!(
        report.salesforce_calls, 2,
        "one describe, one batch read (no Accounts)"
    );
    assert_eq!(report.higher_logic_calls, 2, "200 records per push");
}

#[tokio::test]
async fn a_contact_missing_when_read_is_pushed_as_deleted_only_if_it_was_pushed_before() {
    let w = World::new(2000);
    w.crm.put("Contact", contact(1, t0()));
    let deps = w.member_deps();
    member_refresh(&deps, vec![message(1, body(1))], &Deadline::none())
        .await
        .expect("runs");
    w.crm
        .objects
        .lock()
        .expect("lock")
        .get_mut("Contact")
        .expect("contacts")
        .clear();
    let report = member_refresh(
        &deps,
        vec![message(1, body(1)), message(2, body(2))],
        &Deadline::none(),
    )
    .await
    .expect("runs");
    assert_eq!(report.deleted, 1);
    assert!(w.community.is_deleted(id(1).as_str()));
    assert!(
        !w.community.is_deleted(id(2).as_str()),
        "never pushed: nothing to delete"
    );
    assert_eq!(w.community.pushes.lock().expect("lock").clone(), [1, 1]);
}

#[tokio::test]
async fn an_outage_or_a_rejection_hands_the_batch_back_to_wait_without_spending_receives() {
    let w = World::new(2000);
    w.crm.put("Contact", contact(1, t0()));
    let script = Arc::new(Script::default());
    script.outage(Op::PushMembers, 0, "503");
    script.fail(Op::PushMembers, 0, || SyncError::Rejected {
        service: Service::HigherLogic,
        message: "bad API key".into(),
    });
    let community = FaultyCommunity {
        inner: w.community.clone(),
        script,
    };
    let deps = MemberDeps {
        community: &community,
        ..w.member_deps()
    };
    // An outage: the message is not failed (five of those would dead-letter the whole backlog)
    // but handed back as a new message that waits a couple of minutes.
    let report = member_refresh(&deps, vec![message(1, body(1))], &Deadline::none())
        .await
        .expect("runs");
    assert!(report.failed_message_ids.is_empty());
    assert_eq!(report.requeued, 1);
    let delayed = w.queue.delayed.lock().expect("lock").clone();
    assert_eq!(delayed, vec![(body(1), Duration::from_mins(2))]);
    w.queue.delayed.lock().expect("lock").clear();
    // A rejection stops the batch: handed back for longer; the malformed message in it was
    // dead-lettered already and is neither failed nor handed back.
    let batch = vec![message(1, body(1)), message(9, "not a message".into())];
    let err = member_refresh(&deps, batch, &Deadline::none())
        .await
        .expect_err("stops");
    assert!(err.error.stops_run());
    assert!(err.report.failed_message_ids.is_empty());
    assert_eq!((err.report.requeued, err.report.dead_lettered), (1, 1));
    let delayed = w.queue.delayed.lock().expect("lock").clone();
    assert_eq!(delayed, vec![(body(1), Duration::from_mins(15))]);
    // When it is due, it goes through.
    assert_eq!(w.queue.release_delayed(), 1);
    let report = member_refresh(&deps, w.queue.take(), &Deadline::none())
        .await
        .expect("runs");
    assert_eq!(report.pushed, 1);
}

/// What happens ahead of each request pushing members, in [`BeforePush`].
#[async_trait::async_trait]
trait PushHook: Send + Sync {
    async fn before_push(&self) -> Result<(), SyncError>;
}

/// The in-memory Higher Logic with `hook` run ahead of every request pushing members.
struct BeforePush<H> {
    inner: Arc<MemoryCommunity>,
    hook: H,
}

#[async_trait::async_trait]
impl<H: PushHook> Community for BeforePush<H> {
    async fn push_members(
        &self,
        members: &[hlsync_core::member::Member],
    ) -> Result<Vec<hlsync_sync::ports::PushResult>, SyncError> {
        self.hook.before_push().await?;
        self.inner.push_members(members).await
    }
    async fn push_meetings(
        &self,
        meetings: &[hlsync_core::event::Meeting],
    ) -> Result<Vec<hlsync_sync::ports::PushResult>, SyncError> {
        self.inner.push_meetings(meetings).await
    }
    async fn email_preferences_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<hlsync_sync::ports::EmailPreferenceChange>, SyncError> {
        self.inner.email_preferences_since(since).await
    }
    fn calls_made(&self) -> u64 {
        self.inner.calls_made()
    }
}

/// Higher Logic taking this long per request: the time a paced push takes.
struct Slow(Duration);

#[async_trait::async_trait]
impl PushHook for Slow {
    async fn before_push(&self) -> Result<(), SyncError> {
        tokio::time::sleep(self.0).await;
        Ok(())
    }
}

/// A world of `contacts` Contacts pushed 10 to a request, and its Higher Logic taking 300ms a
/// request.
fn slow_world(contacts: usize) -> (World, BeforePush<Slow>) {
    let mut w = World::new(2000);
    w.cfg.higher_logic.batch_size = 10;
    for n in 0..contacts {
        w.crm.put("Contact", contact(n, t0()));
    }
    let slow = BeforePush {
        inner: w.community.clone(),
        hook: Slow(Duration::from_millis(300)),
    };
    (w, slow)
}

// On tokio's paused clock: the slow pushes and the deadline are virtual time, not a race.
#[tokio::test(start_paused = true)]
async fn the_deadline_is_checked_between_push_requests_and_what_was_pushed_is_recorded() {
    let (w, slow) = slow_world(50);
    let deps = MemberDeps {
        community: &slow,
        ..w.member_deps()
    };
    let batch: Vec<IncomingMessage> = (0..50).map(|n| message(n, body(n))).collect();
    // Room for the read and one request before the stop.
    let deadline = Deadline::after(Duration::from_millis(200));
    let report = member_refresh(&deps, batch, &deadline).await.expect("runs");
    assert_eq!(report.pushed, 10, "the first request only");
    assert_eq!(report.failed_message_ids.len(), 40, "the rest is retried");
    let recorded = w
        .state
        .pushed(&(0..50).map(id).collect::<Vec<_>>())
        .await
        .expect("state");
    assert_eq!(recorded.len(), 10, "what was pushed is recorded");
    // The retry pushes only what was not pushed yet.
    let retry: Vec<IncomingMessage> = report
        .failed_message_ids
        .iter()
        .map(|m| {
            let n: usize = m.trim_start_matches('m').parse().expect("id");
            message(n, body(n))
        })
        .collect();
    let report = member_refresh(&deps, retry, &Deadline::none())
        .await
        .expect("runs");
    assert_eq!(report.pushed, 40);
}

/// Salesforce as one function saw it a moment ago: reads of Contacts answer the stale version.
struct StaleCrm {
    inner: Arc<MemoryCrm>,
    stale: serde_json::Map<String, Value>,
}

#[async_trait::async_trait]
impl Crm for StaleCrm {
    async fn org_status(&self) -> Result<hlsync_sync::ports::OrgStatus, SyncError> {
        self.inner.org_status().await
    }
    async fn describe_contact(&self, refresh: bool) -> Result<Arc<Describe>, SyncError> {
        self.inner.describe_contact(refresh).await
    }
    async fn changes(
        &self,
        query: hlsync_sync::ports::ChangeQuery,
    ) -> Result<Box<dyn hlsync_sync::ports::ChangePages>, SyncError> {
        self.inner.changes(query).await
    }
    async fn read(
        &self,
        object: &str,
        ids: &[SfId],
        fields: &[String],
    ) -> Result<Vec<Option<serde_json::Map<String, Value>>>, SyncError> {
        let fresh = self.inner.read(object, ids, fields).await?;
        Ok(ids
            .iter()
            .zip(fresh)
            .map(|(id, record)| {
                let stale_id = self.stale.get("Id").and_then(Value::as_str);
                match (object, stale_id) {
                    ("Contact", Some(s)) if s.parse::<SfId>().ok().as_ref() == Some(id) => {
                        Some(self.stale.clone())
                    }
                    _ => record,
                }
            })
            .collect())
    }
    async fn scan(
        &self,
        scan: hlsync_sync::ports::IdScan,
    ) -> Result<Box<dyn hlsync_sync::ports::ChangePages>, SyncError> {
        self.inner.scan(scan).await
    }
    async fn find_many(
        &self,
        queries: Vec<hlsync_sync::ports::FindBy>,
    ) -> Result<Vec<Vec<serde_json::Map<String, Value>>>, SyncError> {
        let objects: Vec<String> = queries.iter().map(|q| q.object.clone()).collect();
        let found = self.inner.find_many(queries).await?;
        let stale_id = self.stale.get("Id").and_then(Value::as_str);
        Ok(objects
            .iter()
            .zip(found)
            .map(|(object, records)| {
                records
                    .into_iter()
                    .map(|record| {
                        let id = record.get("Id").and_then(Value::as_str);
                        if object == "Contact" && id.is_some() && id == stale_id {
                            self.stale.clone()
                        } else {
                            record
                        }
                    })
                    .collect()
            })
            .collect())
    }
    async fn update(
        &self,
        records: Vec<(String, SfId, serde_json::Map<String, Value>)>,
    ) -> Result<Vec<hlsync_sync::ports::WriteResult>, SyncError> {
        self.inner.update(records).await
    }
    fn calls_made(&self) -> u64 {
        self.inner.calls_made()
    }
    fn usage(&self) -> Option<hlsync_core::allotment::ApiUsage> {
        self.inner.usage()
    }
}

/// While this function's first request is in flight, another function pushes and records the
/// newer version of the same Contact first.
struct Overtaken {
    inner: Arc<MemoryCommunity>,
    state: Arc<MemoryState>,
    newer: hlsync_core::member::Member,
    fired: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl PushHook for Overtaken {
    async fn before_push(&self) -> Result<(), SyncError> {
        if !self.fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.inner
                .push_members(std::slice::from_ref(&self.newer))
                .await?;
            let record = hlsync_sync::ports::Pushed {
                hash: self.newer.content_hash().to_string(),
                cursor: self.newer.modstamp,
                pushed_at: Utc::now(),
                opt_out: None,
            };
            self.state
                .record_pushed(&[(self.newer.contact_id.clone(), record)])
                .await?;
        }
        Ok(())
    }
}

#[tokio::test]
#[expect(clippy::too_many_lines, reason = "one scenario, told in order")]
async fn an_older_read_never_stays_in_higher_logic_after_a_newer_push() {
    let w = World::new(2000);
    let old = contact(1, t0());
    let mut new = contact(1, t0() + chrono::Duration::minutes(1));
    new.insert("LastName".into(), json!("Newer"));
    w.crm.put("Contact", new.clone());
    let stale = StaleCrm {
        inner: w.crm.clone(),
        stale: old,
    };

    // 1. The newer version is already recorded when the older read is about to be pushed: the
    //    older one is not sent.
    let fresh_deps = MemberDeps {
        cfg: &w.cfg,
        crm: w.crm.as_ref(),
        community: w.community.as_ref(),
        state: w.state.as_ref(),
        queue: w.queue.as_ref(),
    };
    let forced = |n: usize| {
        message(
            n,
            format!(
                r#"{{"v":1,"kind":"contact","id":"{}","run":"r","full":true}}"#,
                id(1)
            ),
        )
    };
    member_refresh(&fresh_deps, vec![forced(1)], &Deadline::none())
        .await
        .expect("newer pushed");
    let stale_deps = MemberDeps {
        crm: &stale,
        ..fresh_deps
    };
    let calls = w.community.calls_made();
    let report = member_refresh(&stale_deps, vec![forced(2)], &Deadline::none())
        .await
        .expect("runs");
    assert_eq!(report.pushed, 0);
    assert_eq!(
        w.community.calls_made(),
        calls,
        "the older read is not sent"
    );
    let held = w.community.member(id(1).as_str()).expect("member");
    assert_eq!(held.last_name.as_deref(), Some("Newer"));

    // 2. The newer version lands while the older one is in flight: Higher Logic briefly holds
    //    the older one, the record is refused, and the Contact is queued again, forced.
    let w = World::new(2000);
    w.crm.put("Contact", new.clone());
    let stale = StaleCrm {
        inner: w.crm.clone(),
        stale: contact(1, t0()),
    };
    let schema_describe = describe();
    let cfg = w.cfg.clone();
    let schema = hlsync_core::schema::ContactSchema::build(
        &schema_describe.fields,
        &schema_describe.record_types,
        &cfg,
    )
    .expect("schema");
    let newer = hlsync_core::mapping::map_contact(
        &hlsync_core::mapping::ContactInput {
            fields: &new,
            account_name: None,
            registrations: &[],
        },
        &schema,
        &cfg,
    )
    .expect("maps");
    let overtaken = BeforePush {
        inner: w.community.clone(),
        hook: Overtaken {
            inner: w.community.clone(),
            state: w.state.clone(),
            newer,
            fired: std::sync::atomic::AtomicBool::new(false),
        },
    };
    let deps = MemberDeps {
        crm: &stale,
        community: &overtaken,
        ..w.member_deps()
    };
    member_refresh(&deps, vec![forced(1)], &Deadline::none())
        .await
        .expect("runs");
    assert_eq!(
        w.community
            .member(id(1).as_str())
            .expect("member")
            .last_name
            .as_deref(),
        Some("Last1"),
        "the older push landed last"
    );
    let requeued = w.queue.take();
    assert_eq!(requeued.len(), 1, "the Contact is queued again");
    assert!(requeued[0].body.contains(r#""force":true"#));
    let deps = MemberDeps {
        crm: w.crm.as_ref(),
        community: w.community.as_ref(),
        ..deps
    };
    member_refresh(&deps, requeued, &Deadline::none())
        .await
        .expect("runs");
    assert_eq!(
        w.community
            .member(id(1).as_str())
            .expect("member")
            .last_name
            .as_deref(),
        Some("Newer"),
        "Higher Logic ends at the newest"
    );
}

#[tokio::test]
async fn with_a_flow_kept_cursor_nulls_are_loaded_and_undeletes_found() {
    let mut w = World::new(2000);
    w.cfg.salesforce.cursor_field = "HL_Mod_Date__c".into();
    w.crm.describe.lock().expect("lock").fields.push(FieldInfo {
        name: "HL_Mod_Date__c".into(),
        label: "HL Mod Date".into(),
        field_type: FieldType::DateTime,
        calculated: false,
    });
    let with_cursor = |n: usize, at: DateTime<Utc>| {
        let mut c = contact(n, at);
        c.insert("HL_Mod_Date__c".into(), json!(sf_time(at)));
        c
    };
    w.crm
        .put("Contact", with_cursor(1, t0() - chrono::Duration::days(1)));
    // The Flow never ran on this one: its cursor is null.
    w.crm
        .put("Contact", contact(2, t0() - chrono::Duration::days(1)));
    let report = w.sync().await;
    assert_eq!(
        report.pushed, 2,
        "the initial load reads every Contact, nulls included"
    );

    // Contact 1 deleted, and then undeleted: SystemModstamp moves, the Flow-kept field does not.
    let later = t0() + chrono::Duration::minutes(5);
    let mut deleted = with_cursor(1, t0() - chrono::Duration::days(1));
    deleted.insert("IsDeleted".into(), json!(true));
    deleted.insert("SystemModstamp".into(), json!(sf_time(later)));
    w.crm.put("Contact", deleted);
    w.crm.set_now(later + chrono::Duration::minutes(5));
    let report = w.sync().await;
    assert_eq!(report.deleted, 1);
    assert!(w.community.is_deleted(id(1).as_str()));
    let undeleted_at = later + chrono::Duration::minutes(10);
    let mut undeleted = with_cursor(1, t0() - chrono::Duration::days(1));
    undeleted.insert("SystemModstamp".into(), json!(sf_time(undeleted_at)));
    w.crm.put("Contact", undeleted);
    w.crm.set_now(undeleted_at + chrono::Duration::minutes(5));
    let report = w.sync().await;
    assert_eq!(report.pushed, 1, "the undelete is found on SystemModstamp");
    assert!(w.community.member(id(1).as_str()).is_some());
    assert!(!w.community.is_deleted(id(1).as_str()));
}

// ----- range messages (bulk work) ------------------------------------------------------------

fn range(n: usize, after: Option<usize>, through: usize, force: bool) -> IncomingMessage {
    let m =
        hlsync_sync::message::WorkMessage::contact_range(after.map(id), id(through), "r", force);
    message(n, m.to_body())
}

#[tokio::test]
async fn a_range_is_read_in_one_call_and_a_bad_contact_in_it_goes_to_the_dlq_alone() {
    let w = World::new(2000);
    for n in 0..=2000 {
        w.crm.put("Contact", contact(n, t0()));
    }
    w.community
        .refuse
        .lock()
        .expect("lock")
        .insert(id(7).to_string());
    let deps = w.member_deps();
    // The Contacts after id(0) up to id(1999): 1,999 of them.
    let report = member_refresh(
        &deps,
        vec![range(1, Some(0), 1999, false)],
        &Deadline::none(),
    )
    .await
    .expect("runs");
    assert!(report.failed_message_ids.is_empty(), "the range is done");
    assert_eq!(report.contacts, 1999);
    assert_eq!(report.pushed, 1998);
    assert!(
        w.community.member(id(0).as_str()).is_none(),
        "before the range"
    );
    assert!(
        w.community.member(id(2000).as_str()).is_none(),
        "after the range"
    );
    // The refused Contact alone is on the DLQ, as a message of its own.
    let dead = w.queue.dead.lock().expect("lock").clone();
    assert_eq!(dead.len(), 1);
    let body: Value = serde_json::from_str(&dead[0].0).expect("json");
    assert_eq!(body["kind"], "contact");
    assert_eq!(body["id"], id(7).to_string());
    assert!(dead[0].1.contains("refused"), "{}", dead[0].1);
    assert_eq!(
        report.salesforce_calls, 2,
        "a describe and one query for the whole range"
    );
    assert_eq!(report.higher_logic_calls, 10, "200 records per push");

    // The same range again: nothing changed, nothing pushed, one read.
    let again = member_refresh(
        &deps,
        vec![range(2, Some(0), 1999, false)],
        &Deadline::none(),
    )
    .await
    .expect("runs");
    assert_eq!((again.pushed, again.skipped_unchanged), (0, 1998));
    // Forced (`hlsync resync`): all pushed again, the refused one aside.
    let forced = member_refresh(
        &deps,
        vec![range(3, Some(0), 1999, true)],
        &Deadline::none(),
    )
    .await
    .expect("runs");
    assert_eq!(forced.pushed, 1998);
}

#[tokio::test]
async fn a_range_that_cannot_be_read_is_retried_as_a_range() {
    let w = World::new(2000);
    for n in 0..10 {
        w.crm.put("Contact", contact(n, t0()));
    }
    let script = Arc::new(Script::default());
    script.fail(Op::FindBy, 0, || {
        SyncError::QueryTimeout("the range query timed out".into())
    });
    let crm = FaultyCrm {
        inner: w.crm.clone(),
        script,
    };
    let deps = MemberDeps {
        crm: &crm,
        ..w.member_deps()
    };
    let report = member_refresh(
        &deps,
        vec![range(1, None, 9, false), message(2, body(3))],
        &Deadline::none(),
    )
    .await
    .expect("runs");
    // The single Contact's read went first and took the fault: its message is retried; the
    // range, read on its own, is done.
    assert!(report.failed_message_ids.contains(&"m2".to_owned()));
    assert!(!report.failed_message_ids.contains(&"m1".to_owned()));

    let script = Arc::new(Script::default());
    script.fail(Op::FindBy, 0, || {
        SyncError::QueryTimeout("the range query timed out".into())
    });
    let crm = FaultyCrm {
        inner: w.crm.clone(),
        script,
    };
    let deps = MemberDeps { crm: &crm, ..deps };
    let report = member_refresh(&deps, vec![range(1, None, 9, false)], &Deadline::none())
        .await
        .expect("runs");
    assert_eq!(
        report.failed_message_ids,
        ["m1"],
        "retried whole, as a range"
    );
    assert_eq!(report.pushed, 0);
}

// On tokio's paused clock: the slow pushes and the deadline are virtual time, not a race.
#[tokio::test(start_paused = true)]
async fn near_the_deadline_the_rest_of_a_range_and_the_ranges_not_started_are_handed_back() {
    let (w, slow) = slow_world(60);
    let deps = MemberDeps {
        community: &slow,
        ..w.member_deps()
    };
    // Room for the read and one request before the stop.
    let deadline = Deadline::after(Duration::from_millis(200));
    let report = member_refresh(
        &deps,
        vec![range(1, None, 29, false), range(2, Some(29), 59, false)],
        &deadline,
    )
    .await
    .expect("runs");
    assert_eq!(report.pushed, 10, "the first request only");
    assert!(
        report.failed_message_ids.is_empty(),
        "nothing spends a receive: {:?}",
        report.failed_message_ids
    );
    assert_eq!(report.requeued, 2);
    let handed_back = w.queue.take();
    let ranges: Vec<(Option<String>, String)> = handed_back
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_str(&m.body).expect("json");
            assert_eq!(v["kind"], "contact_range");
            (
                v["after"].as_str().map(str::to_owned),
                v["id"].as_str().expect("id").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        ranges,
        [
            (Some(id(9).to_string()), id(29).to_string()),
            (Some(id(29).to_string()), id(59).to_string()),
        ],
        "the rest of the first range, and the second untouched"
    );
    // Worked later, they push exactly what was left.
    let report = member_refresh(&deps, handed_back, &Deadline::none())
        .await
        .expect("runs");
    assert_eq!(report.pushed, 50);
    assert_eq!(w.community.len(), 60);
}

/// The state store with `script`'s faults, over the world's.
fn faulty_state(w: &World, script: &Arc<Script>) -> FaultyState {
    FaultyState::new(w.state.clone(), script.clone())
}

#[tokio::test]
async fn a_watermark_saved_whose_answer_was_lost_loses_no_change() {
    let w = World::established(2).await;
    for n in 1..=5 {
        w.crm
            .put("Contact", contact(n, t0() + chrono::Duration::minutes(1)));
    }
    w.crm.set_now(t0() + chrono::Duration::minutes(5));
    let script = Arc::new(Script::default());
    // The first checkpoint lands, and the run is told it failed.
    script.fail_after(Op::SaveWatermark, 0, || SyncError::Transient {
        service: Service::Aws,
        message: "connection reset".into(),
    });
    let state = faulty_state(&w, &script);
    let err = periodic_refresh(
        &w.cfg,
        w.crm.as_ref(),
        &state,
        w.queue.as_ref(),
        &World::opts("lost"),
    )
    .await
    .expect_err("the run stops on the error");
    assert!(err.is_retryable());
    // The lease is the run's own to give back: the next run is not locked out.
    let r = w
        .periodic(w.crm.as_ref(), w.queue.as_ref())
        .await
        .expect("runs");
    assert!(r.skipped.is_none(), "{r:?}");
    w.members(w.crm.as_ref(), w.community.as_ref()).await;
    assert_eq!(w.community.len(), 5);
}

#[tokio::test]
async fn a_watermark_race_lost_to_another_run_stops_this_one_and_loses_nothing() {
    let w = World::established(2).await;
    for n in 1..=5 {
        w.crm
            .put("Contact", contact(n, t0() + chrono::Duration::minutes(1)));
    }
    w.crm.set_now(t0() + chrono::Duration::minutes(5));
    let script = Arc::new(Script::default());
    // Another run saves the feed first, after this one's first page.
    script.fail(Op::SaveWatermark, 1, || SyncError::Conflict("race".into()));
    let state = faulty_state(&w, &script);
    let err = periodic_refresh(
        &w.cfg,
        w.crm.as_ref(),
        &state,
        w.queue.as_ref(),
        &World::opts("loser"),
    )
    .await
    .expect_err("the run that lost stops");
    assert!(matches!(err, SyncError::Conflict(_)), "{err}");
    w.sync().await;
    assert_eq!(w.community.len(), 5);
}

#[tokio::test]
async fn push_records_written_whose_answer_was_lost_are_pushed_again_not_lost() {
    let w = World::established(2000).await;
    for n in 1..=4 {
        w.crm
            .put("Contact", contact(n, t0() + chrono::Duration::minutes(1)));
    }
    w.crm.set_now(t0() + chrono::Duration::minutes(5));
    w.periodic(w.crm.as_ref(), w.queue.as_ref())
        .await
        .expect("runs");
    let messages = w.queue.take();
    let throttled = || SyncError::Transient {
        service: Service::Aws,
        message: "ProvisionedThroughputExceededException".into(),
    };
    let script = Arc::new(Script::default());
    // The pending records land, and the answer is lost: nothing is pushed.
    script.fail_after(Op::RecordPushed, 0, throttled);
    let state = faulty_state(&w, &script);
    let deps = MemberDeps {
        state: &state,
        ..w.member_deps()
    };
    let first = member_refresh(&deps, messages, &Deadline::none())
        .await
        .expect("batch runs");
    assert_eq!(first.pushed, 0, "{first:?}");
    // Throttling is an outage: the batch is handed back to wait.
    assert_eq!(w.queue.release_delayed(), 4, "{first:?}");
    // Again: the pending records pass, the members are pushed, and the answer of the final
    // records is lost.
    script.fail_after(Op::RecordPushed, 1, throttled);
    let second = member_refresh(&deps, w.queue.take(), &Deadline::none())
        .await
        .expect("batch runs");
    assert_eq!(second.pushed, 4, "{second:?}");
    assert_eq!(w.community.len(), 4);
    assert_eq!(w.queue.release_delayed(), 4, "{second:?}");
    // Again: the push records say the members are current.
    let third = member_refresh(&deps, w.queue.take(), &Deadline::none())
        .await
        .expect("batch runs");
    assert_eq!((third.pushed, third.already_current), (0, 4), "{third:?}");
    assert!(third.failed_message_ids.is_empty(), "{third:?}");
    assert_eq!(w.queue.release_delayed(), 0);
}
