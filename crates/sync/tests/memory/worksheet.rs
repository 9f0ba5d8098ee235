//! The rest of the worksheet against the in-memory ports: meetings and registrations, the full
//! refresh for formula fields, and the email opt-out write-back (issue 6). The same flows run end
//! to end against moto and the simulators in tests/e2e/worksheet.rs at the workspace root.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use hlsync_core::schema::FieldType;
use hlsync_sync::Deadline;
use hlsync_sync::error::{Service, SyncError};
use hlsync_sync::faults::{FaultyCommunity, FaultyCrm, FaultyQueue, Op, Script};
use hlsync_sync::full::FEED_FULL_REFRESH;
use hlsync_sync::member::{MemberDeps, MemberReport, member_refresh};
use hlsync_sync::memory::MemoryQueue;
use hlsync_sync::optout::FEED_EMAIL_PREFERENCES;
use hlsync_sync::periodic::{self, PeriodicDeps, PeriodicReport};
use hlsync_sync::ports::{Community, Crm, Describe, StateStore, WorkQueue};
use hlsync_sync::testing::{
    self, MemoryWorld, campaign, campaign_member, field, formula, obj, periodic_opts, sf_time,
    sfid, t0, with,
};
use serde_json::{Map, Value, json};

fn describe(is_formula: bool) -> Describe {
    testing::describe(vec![formula(
        field("HL_Is_Board__c", "Is Board", FieldType::Boolean),
        is_formula,
    )])
}

fn contact(n: usize, at: DateTime<Utc>) -> Map<String, Value> {
    with(testing::contact(n, at), json!({"HL_Is_Board__c": false}))
}

/// The in-memory world with this file's config and describe.
type World = MemoryWorld;

/// How this file's tests drive their world.
trait WorksheetWorld: Sized {
    fn new(formula: bool, page_size: usize) -> Self;
    async fn periodic_with(&self, queue: &dyn WorkQueue) -> Result<PeriodicReport, SyncError>;
    async fn periodic_via(
        &self,
        queue: &dyn WorkQueue,
        community: &dyn Community,
    ) -> Result<PeriodicReport, SyncError>;
    async fn members(&self) -> MemberReport;
    async fn sync(&self) -> (PeriodicReport, MemberReport);
}

impl WorksheetWorld for World {
    fn new(formula: bool, page_size: usize) -> Self {
        let cfg = testing::config(
            r#"
            [contacts]
            full_refresh_every = "24h"
            [events]
            enabled = true
            campaign_type = "Event"
            registered_statuses = ["Registered", "Attended"]
            [higher_logic]
            email_preferences_url = "http://127.0.0.1:1/v2/emailpreferences"
            "#,
        );
        MemoryWorld::build(cfg, describe(formula), page_size)
    }

    async fn periodic_with(&self, queue: &dyn WorkQueue) -> Result<PeriodicReport, SyncError> {
        self.periodic_via(queue, self.community.as_ref()).await
    }

    async fn periodic_via(
        &self,
        queue: &dyn WorkQueue,
        community: &dyn Community,
    ) -> Result<PeriodicReport, SyncError> {
        let deps = PeriodicDeps {
            cfg: &self.cfg,
            crm: self.crm.as_ref(),
            community: Some(community),
            state: self.state.as_ref(),
            queue,
        };
        periodic::run(&deps, &periodic_opts("run")).await
    }

    async fn members(&self) -> MemberReport {
        member_refresh(&self.member_deps(), self.queue.take(), &Deadline::none())
            .await
            .expect("batch runs")
    }

    /// A Periodic Refresh and a Member Refresh of what it queued; the clock then moves past the
    /// settle time so the next sync sees this one's writes.
    async fn sync(&self) -> (PeriodicReport, MemberReport) {
        let p = self
            .periodic_with(self.queue.as_ref())
            .await
            .expect("periodic refresh");
        let m = self.members().await;
        self.advance(TimeDelta::minutes(5));
        (p, m)
    }
}

// ----- events -------------------------------------------------------------------------------

fn events_world() -> World {
    let w = World::new(false, 2000);
    let at = t0() - TimeDelta::days(1);
    for n in 1..=3 {
        w.crm.put("Contact", contact(n, at));
    }
    w.crm.put("Campaign", campaign(1, "Event", at));
    w.crm.put("Campaign", campaign(2, "Webinar", at));
    w.crm
        .put("CampaignMember", campaign_member(1, 1, 1, "Registered", at));
    w.crm
        .put("CampaignMember", campaign_member(2, 1, 2, "Sent", at));
    w.crm
        .put("CampaignMember", campaign_member(3, 2, 3, "Registered", at));
    w
}

fn event_roles(w: &World, contact: usize) -> Vec<(String, String, String)> {
    w.community
        .member(sfid("003", contact).as_str())
        .expect("pushed")
        .event_groups("Event")
        .map(|g| (g.key.to_string(), g.name.clone(), g.role.clone()))
        .collect()
}

#[tokio::test]
async fn meetings_go_to_meeting_and_registrations_travel_on_the_members_record() {
    let w = events_world();
    let (p, m) = w.sync().await;
    assert!(p.completed());
    let feeds: Vec<&str> = p.feeds.iter().map(|f| f.feed.as_str()).collect();
    // The initial load reads every Contact; the Contact feeds begin with it.
    assert_eq!(
        feeds,
        ["contacts", "accounts", "campaigns", "campaign-members"]
    );
    assert!(p.full_refresh.is_some_and(|f| f.initial && f.completed));
    // Only the Event campaign is a meeting.
    let meetings = w.community.meetings.lock().expect("meetings").clone();
    assert_eq!(
        meetings.keys().cloned().collect::<Vec<_>>(),
        [sfid("701", 1).to_string()]
    );
    // Only the registered member of it carries its group, named after it, with the status.
    let event = sfid("701", 1).to_string();
    assert_eq!(
        event_roles(&w, 1),
        [(event.clone(), "Campaign 1".into(), "Registered".into())]
    );
    assert!(event_roles(&w, 2).is_empty(), "Sent is not registered");
    assert!(event_roles(&w, 3).is_empty(), "a Webinar is not an event");
    assert_eq!((m.meetings_pushed, m.registrations_pushed), (1, 1));
    assert!(
        w.community
            .orphan_event_groups
            .lock()
            .expect("lock")
            .is_empty()
    );

    // Nothing changed: nothing is pushed again.
    let (p, m) = w.sync().await;
    assert_eq!((m.meetings_pushed, m.pushed), (0, 0));
    let feeds: Vec<&str> = p.feeds.iter().map(|f| f.feed.as_str()).collect();
    assert_eq!(
        feeds,
        ["contacts", "accounts", "campaigns", "campaign-members"]
    );

    // Member 1 cancels, member 2 registers: each Contact's record is pushed again, whole.
    let now = w.now();
    w.crm
        .put("CampaignMember", campaign_member(1, 1, 1, "Sent", now));
    w.crm
        .put("CampaignMember", campaign_member(2, 1, 2, "Attended", now));
    w.advance(TimeDelta::minutes(2));
    let (p, m) = w.sync().await;
    let members_feed = p
        .feeds
        .iter()
        .find(|f| f.feed == "campaign-members")
        .expect("feed");
    assert_eq!(
        members_feed.sent, 2,
        "a CampaignMember change queues its Contact"
    );
    assert_eq!(m.pushed, 2);
    assert!(
        event_roles(&w, 1).is_empty(),
        "the lost registration is gone"
    );
    assert_eq!(
        event_roles(&w, 2),
        [(event.clone(), "Campaign 1".into(), "Attended".into())],
        "the new registration arrived"
    );
    let other = w.community.member(sfid("003", 1).as_str()).expect("kept");
    assert_eq!(
        other.groups.len(),
        1,
        "the rest of the record is whole: {:?}",
        other.groups
    );

    // A deleted membership removes the group; a deleted Campaign deletes the meeting.
    let now = w.now();
    let mut gone = campaign_member(2, 1, 2, "Attended", now);
    gone.insert("IsDeleted".into(), json!(true));
    w.crm.put("CampaignMember", gone);
    let mut gone = campaign(1, "Event", now);
    gone.insert("IsDeleted".into(), json!(true));
    w.crm.put("Campaign", gone);
    w.advance(TimeDelta::minutes(2));
    let (_, m) = w.sync().await;
    assert_eq!(m.meetings_pushed, 1);
    assert!(event_roles(&w, 2).is_empty());
    assert!(w.community.meetings.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn a_member_brings_its_meeting_along_whatever_the_queue_order() {
    let w = events_world();
    w.periodic_with(w.queue.as_ref()).await.expect("periodic");
    // Only the Contact messages (the initial load's ranges) reach the Member Refresh first.
    let all = w.queue.take();
    let (contacts, rest): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|m| !m.body.contains(r#""kind":"campaign""#));
    let deps = w.member_deps();
    let r = member_refresh(&deps, contacts, &Deadline::none())
        .await
        .expect("batch");
    assert!(
        r.failed_message_ids.is_empty(),
        "{:?}",
        r.failed_message_ids
    );
    assert_eq!((r.meetings_pushed, r.registrations_pushed), (1, 1));
    assert!(
        w.community
            .orphan_event_groups
            .lock()
            .expect("lock")
            .is_empty(),
        "the meeting went first"
    );
    // The Campaign's own message later finds it current.
    let r = member_refresh(&deps, rest, &Deadline::none())
        .await
        .expect("batch");
    assert_eq!(r.meetings_pushed, 0);
}

#[tokio::test]
async fn a_contact_is_never_pushed_from_a_partial_read() {
    let w = events_world();
    w.periodic_with(w.queue.as_ref()).await.expect("periodic");
    // Contacts and their registrations are read together: whatever fails, nothing is pushed.
    let script = Arc::new(Script::default());
    for _ in 0..10 {
        script.outage(Op::FindBy, 0, "503");
    }
    let crm = FaultyCrm {
        inner: w.crm.clone(),
        script,
    };
    let deps = MemberDeps {
        crm: &crm,
        ..w.member_deps()
    };
    let messages = w.queue.take();
    let contact_messages = messages
        .iter()
        .filter(|m| !m.body.contains(r#""kind":"campaign""#))
        .count();
    assert!(contact_messages > 0);
    let r = member_refresh(&deps, messages, &Deadline::none())
        .await
        .expect("batch");
    assert_eq!(r.pushed, 0, "no registrations read: no member pushed");
    assert!(w.community.is_empty());
    assert!(r.failed_message_ids.is_empty());
    // The Campaigns are read another way (their meetings need no registrations): only the
    // Contacts' messages wait.
    assert_eq!(
        r.requeued, contact_messages as u64,
        "the Contacts' messages handed back to wait out Salesforce's outage"
    );
}

#[tokio::test]
async fn registrations_cost_one_query_per_500_contacts() {
    let w = World::new(false, 2000);
    let at = t0() - TimeDelta::days(1);
    w.crm.put("Campaign", campaign(1, "Event", at));
    for n in 1..=1000 {
        w.crm.put("Contact", contact(n, at));
        w.crm
            .put("CampaignMember", campaign_member(n, 1, n, "Registered", at));
    }
    let batch: Vec<hlsync_sync::member::IncomingMessage> = (1..=1000)
        .map(|n| hlsync_sync::member::IncomingMessage {
            message_id: format!("m{n}"),
            body: json!({"v":1,"kind":"contact","id":sfid("003", n).to_string(),"run":"r"})
                .to_string(),
        })
        .collect();
    let deps = w.member_deps();
    let r = member_refresh(&deps, batch, &Deadline::none())
        .await
        .expect("batch");
    assert_eq!((r.pushed, r.registrations_pushed), (1000, 1000));
    // A describe; the Contacts (two queries of 500) and their registrations (two more), sent
    // together in one call; one Campaign read.
    assert_eq!(r.salesforce_calls, 3);
}

#[tokio::test]
async fn a_refused_meeting_is_dead_lettered_and_its_members_wait() {
    let w = events_world();
    w.community
        .refuse
        .lock()
        .expect("refuse")
        .insert(sfid("701", 1).to_string());
    let (_, m) = w.sync().await;
    assert_eq!(m.meetings_pushed, 0);
    assert!(
        w.community.member(sfid("003", 1).as_str()).is_none(),
        "its registrant waits for the meeting"
    );
    assert!(w.community.member(sfid("003", 2).as_str()).is_some());
    let dead = w.queue.dead.lock().expect("dead").clone();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].0.contains(r#""kind":"campaign""#));
    w.community.refuse.lock().expect("refuse").clear();
    // Redelivered: the member is pushed now, its meeting first.
    let body =
        json!({"v":1,"kind":"contact","id":sfid("003", 1).to_string(),"run":"r"}).to_string();
    w.queue.send(vec![body]).await.expect("send");
    let m = w.members().await;
    assert_eq!((m.meetings_pushed, m.pushed), (1, 1));
}

#[tokio::test]
async fn an_old_campaign_member_message_queues_its_contact() {
    let w = events_world();
    let body = json!({"v":1,"kind":"campaign_member","id":sfid("00v", 1).to_string(),"run":"r"})
        .to_string();
    w.queue.send(vec![body]).await.expect("send");
    let m = w.members().await;
    assert_eq!((m.pushed, m.registrations_pushed), (1, 1));
    assert_eq!(event_roles(&w, 1).len(), 1);
}

// ----- full refresh -------------------------------------------------------------------------

fn formula_world(formula: bool, page_size: usize) -> World {
    let w = World::new(formula, page_size);
    for n in 1..=5 {
        w.crm.put("Contact", contact(n, t0() - TimeDelta::days(2)));
    }
    w
}

#[tokio::test]
async fn a_formula_change_is_found_by_the_full_refresh_once_a_period() {
    let w = formula_world(true, 2000);
    let (p, m) = w.sync().await;
    assert_eq!(m.pushed, 5);
    // The initial load read everything: it counts as the period's full refresh.
    assert!(p.full_refresh.is_some_and(|f| f.initial && f.completed));
    let mark = w.state.watermark(FEED_FULL_REFRESH).await.expect("mark");
    assert!(mark.at.is_some());

    // A formula value changes; SystemModstamp does not move.
    w.crm.patch(
        "Contact",
        &sfid("003", 3),
        obj(json!({"HL_Is_Board__c": true})),
    );
    let (p, m) = w.sync().await;
    assert!(p.full_refresh.is_none(), "not due within the period");
    assert_eq!(m.pushed, 0, "no window sees a formula change");

    w.advance(TimeDelta::hours(24));
    let calls = w.crm.calls_made();
    let (p, m) = w.sync().await;
    let full = p.full_refresh.expect("due after a day");
    assert!(full.completed);
    assert_eq!(full.sent, 5);
    assert_eq!(full.formula_fields, ["HL_Is_Board__c"]);
    assert_eq!(m.pushed, 1, "exactly the member whose formula changed");
    let board = w.community.member(sfid("003", 3).as_str()).expect("member");
    assert!(
        board
            .groups
            .iter()
            .any(|g| g.key.as_str() == "HL_Is_Board__c")
    );
    // Batch reads: status, four window queries (Contacts, Accounts, Campaigns,
    // CampaignMembers), a describe, one scan page, then a describe and one call reading the
    // range's Contacts and their registrations: never one call per Contact.
    assert_eq!(w.crm.calls_made() - calls, 9);

    // A second one inside the period does not run.
    w.advance(TimeDelta::hours(1));
    let (p, m) = w.sync().await;
    assert!(p.full_refresh.is_none());
    assert_eq!(m.contacts, 0);
}

#[tokio::test]
async fn without_formula_fields_no_full_refresh_runs() {
    let w = formula_world(false, 2000);
    w.sync().await;
    w.advance(TimeDelta::hours(25));
    let (p, m) = w.sync().await;
    assert!(p.full_refresh.is_none());
    assert_eq!(m.contacts, 0);
    // And it does not describe again every run until the next period.
    let mark = w.state.watermark(FEED_FULL_REFRESH).await.expect("mark");
    assert!(mark.at.is_some_and(|at| at > t0() + TimeDelta::hours(20)));
}

#[tokio::test]
async fn a_stopped_full_refresh_resumes_after_its_last_page() {
    let w = formula_world(true, 2);
    w.sync().await;
    w.advance(TimeDelta::hours(25));
    // The queue takes the first page of the full refresh, then fails.
    let script = Arc::new(Script::default());
    let queue = FaultyQueue {
        inner: w.queue.clone(),
        script: Arc::clone(&script),
    };
    script.outage(Op::Send, 1, "SQS is down");
    let err = w
        .periodic_with(&queue)
        .await
        .expect_err("the second page fails");
    assert!(err.is_retryable());
    // One range message per page of the scan.
    assert_eq!(w.queue.sent.lock().expect("sent").len(), 1);
    let mark = w.state.watermark(FEED_FULL_REFRESH).await.expect("mark");
    assert!(mark.checkpoint.is_some());

    let p = w.periodic_with(w.queue.as_ref()).await.expect("resumes");
    let full = p.full_refresh.expect("resumed");
    assert!(full.resumed && full.completed);
    assert_eq!(
        (full.sent, full.messages),
        (3, 2),
        "only the Contacts after the checkpoint"
    );
    let sent = w.queue.take();
    assert_eq!(sent.len(), 3);
    assert!(
        sent.iter()
            .all(|m| m.body.contains(r#""kind":"contact_range""#))
    );
    // The ranges follow each other: each starts after the last Id of the one before.
    let ranges: Vec<(Option<String>, String)> = sent
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_str(&m.body).expect("json");
            (
                v["after"].as_str().map(str::to_owned),
                v["id"].as_str().expect("id").to_owned(),
            )
        })
        .collect();
    assert_eq!(ranges[0].0, None);
    assert_eq!(ranges[1].0.as_deref(), Some(ranges[0].1.as_str()));
    assert_eq!(ranges[2].0.as_deref(), Some(ranges[1].1.as_str()));
    // And worked, they make every member.
    let deps = w.member_deps();
    let r = member_refresh(&deps, sent, &Deadline::none())
        .await
        .expect("ranges");
    assert_eq!(r.contacts, 5);
    assert!(r.failed_message_ids.is_empty());
}

// ----- email opt-out write-back ---------------------------------------------------------------

#[tokio::test]
async fn a_members_opt_out_is_written_back_once_and_does_not_bounce() {
    let w = formula_world(false, 2000);
    w.sync().await;
    let key = sfid("003", 2);
    w.community.set_email_opt_out(&key, true, w.now());
    for _ in 0..3 {
        w.sync().await;
    }
    let updates = w.crm.updates.lock().expect("updates").clone();
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0].2["HasOptedOutOfEmail"], json!(true));
    let contact = w.crm.get("Contact", &key).expect("contact");
    assert_eq!(contact["HasOptedOutOfEmail"], json!(true));
    assert!(
        w.community
            .member(key.as_str())
            .expect("member")
            .do_not_email
    );
    let mark = w
        .state
        .watermark(FEED_EMAIL_PREFERENCES)
        .await
        .expect("mark");
    assert!(mark.at.is_some());
}

#[tokio::test]
async fn a_later_salesforce_change_wins_and_a_tie_opts_out() {
    let w = formula_world(false, 2000);
    w.sync().await;
    let early = t0() - TimeDelta::days(3);
    // Older than what Higher Logic was last given: Salesforce's value stays.
    w.community.set_email_opt_out(&sfid("003", 1), true, early);
    // Exactly as new as the push cursor: opted out wins.
    w.community
        .set_email_opt_out(&sfid("003", 4), true, t0() - TimeDelta::days(2));
    let (p, _) = w.sync().await;
    let r = p.email_preferences.expect("read");
    assert_eq!((r.changes, r.written, r.unchanged), (2, 1, 1));
    let updates = w.crm.updates.lock().expect("updates").clone();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].1, sfid("003", 4));
}

#[tokio::test]
async fn a_write_refused_for_now_holds_the_watermark_and_is_retried() {
    let w = formula_world(false, 2000);
    w.sync().await;
    let (a, b) = (sfid("003", 1), sfid("003", 2));
    w.community.set_email_opt_out(&a, true, w.now());
    w.community
        .set_email_opt_out(&b, true, w.now() + TimeDelta::seconds(5));
    w.crm.lock_updates.lock().expect("lock").insert(a.clone());
    let (p, _) = w.sync().await;
    let r = p.email_preferences.expect("read");
    assert_eq!((r.written, r.failed, r.dead_lettered), (1, 1, 0));
    assert_eq!(r.watermark, None, "not past the locked change");

    w.crm.lock_updates.lock().expect("lock").clear();
    let (p, _) = w.sync().await;
    let r = p.email_preferences.expect("read");
    assert_eq!(
        r.written, 1,
        "the locked one, and not the one already written"
    );
    assert!(r.watermark.is_some());
    // The feed is re-read with an overlap: the duplicates change nothing.
    let (p, _) = w.sync().await;
    assert_eq!(p.email_preferences.expect("read").written, 0);
    assert_eq!(w.crm.updates.lock().expect("updates").len(), 2);
}

#[tokio::test]
async fn a_write_refused_for_good_is_dead_lettered_and_does_not_pin_the_feed() {
    let w = formula_world(false, 2000);
    w.sync().await;
    let (a, b) = (sfid("003", 1), sfid("003", 2));
    w.community.set_email_opt_out(&a, true, w.now());
    w.community
        .set_email_opt_out(&b, true, w.now() + TimeDelta::seconds(5));
    w.crm
        .refuse_updates
        .lock()
        .expect("refuse")
        .insert(a.clone());
    let (p, _) = w.sync().await;
    let r = p.email_preferences.expect("read");
    assert_eq!((r.written, r.failed, r.dead_lettered), (1, 0, 1));
    assert!(r.watermark.is_some(), "the watermark moves past it");
    let dead = w.queue.dead.lock().expect("dead").clone();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].0.contains(r#""kind":"opt_out""#), "{}", dead[0].0);
    assert!(
        dead[0].1.contains("FIELD_CUSTOM_VALIDATION_EXCEPTION") && dead[0].1.contains(a.as_str()),
        "{}",
        dead[0].1
    );
    // Fixed, and brought back by a redrive: the Member Refresh writes it.
    w.crm.refuse_updates.lock().expect("refuse").clear();
    let body = w.queue.dead.lock().expect("dead").remove(0).0;
    w.queue.send(vec![body]).await.expect("redrive");
    let m = w.members().await;
    assert!(m.failed_message_ids.is_empty() && m.dead_lettered == 0);
    let contact = w.crm.get("Contact", &a).expect("contact");
    assert_eq!(contact["HasOptedOutOfEmail"], json!(true));
}

#[tokio::test]
async fn an_unrelated_salesforce_edit_after_a_members_opt_out_does_not_lose_it() {
    let w = formula_world(false, 2000);
    w.sync().await;
    let key = sfid("003", 3);
    // 10:05 the member opts out in Higher Logic; 10:06 someone edits the Contact's name in
    // Salesforce, and that edit is pushed (with DoNotEmail still false) before the write-back.
    w.community.set_email_opt_out(&key, true, w.now());
    w.advance(TimeDelta::minutes(1));
    let mut edited = w.crm.get("Contact", &key).expect("contact");
    edited.insert("LastName".into(), json!("Renamed"));
    edited.insert("SystemModstamp".into(), json!(sf_time(w.now())));
    w.crm.put("Contact", edited);
    w.advance(TimeDelta::minutes(2));
    let p = w
        .periodic_via(w.queue.as_ref(), &NoPreferences)
        .await
        .expect("a run that does not see the member's change yet");
    assert_eq!(p.email_preferences.expect("read").changes, 0);
    w.members().await;
    assert!(
        !w.community
            .member(key.as_str())
            .expect("member")
            .do_not_email
    );
    // The write-back still judges the member's change later than the flag's last change in
    // Salesforce (not than the Contact's SystemModstamp), writes it, and the next push carries it.
    w.advance(TimeDelta::minutes(2));
    let (p, _) = w.sync().await;
    assert_eq!(p.email_preferences.expect("read").written, 1);
    w.advance(TimeDelta::minutes(2));
    w.sync().await;
    assert_eq!(
        w.crm.get("Contact", &key).expect("contact")["HasOptedOutOfEmail"],
        json!(true)
    );
    assert!(
        w.community
            .member(key.as_str())
            .expect("member")
            .do_not_email
    );
}

/// A Higher Logic whose email-preference feed does not list the member's change yet (it lists
/// late), and that a Periodic Refresh never pushes to.
struct NoPreferences;

#[async_trait::async_trait]
impl Community for NoPreferences {
    async fn push_members(
        &self,
        _: &[hlsync_core::member::Member],
    ) -> Result<Vec<hlsync_sync::ports::PushResult>, SyncError> {
        unreachable!("not pushed in a Periodic Refresh")
    }
    async fn push_meetings(
        &self,
        _: &[hlsync_core::event::Meeting],
    ) -> Result<Vec<hlsync_sync::ports::PushResult>, SyncError> {
        unreachable!("not pushed in a Periodic Refresh")
    }
    async fn email_preferences_since(
        &self,
        _: DateTime<Utc>,
    ) -> Result<Vec<hlsync_sync::ports::EmailPreferenceChange>, SyncError> {
        Ok(Vec::new())
    }
    fn calls_made(&self) -> u64 {
        0
    }
}

#[tokio::test]
async fn higher_logic_trouble_in_the_write_back_never_holds_up_the_contacts() {
    let w = formula_world(false, 2000);
    w.sync().await;
    w.community
        .set_email_opt_out(&sfid("003", 1), true, w.now());
    let script = Arc::new(Script::default());
    let community = FaultyCommunity {
        inner: w.community.clone(),
        script: Arc::clone(&script),
    };
    // Unavailable: the run succeeds, says why, and the watermark waits.
    script.outage(Op::EmailPreferences, 0, "503");
    let p = w
        .periodic_via(w.queue.as_ref(), &community)
        .await
        .expect("the run goes on");
    let r = p.email_preferences.expect("attempted");
    assert!(r.error.is_some_and(|e| e.contains("503")));
    assert!(w.crm.updates.lock().expect("updates").is_empty());
    // Rejected credentials stop the run.
    script.fail(Op::EmailPreferences, 0, || SyncError::Rejected {
        service: Service::HigherLogic,
        message: "401".into(),
    });
    assert!(w.periodic_via(w.queue.as_ref(), &community).await.is_err());
    // Then it catches up.
    let p = w
        .periodic_via(w.queue.as_ref(), &community)
        .await
        .expect("runs");
    assert_eq!(p.email_preferences.expect("read").written, 1);
}

#[tokio::test]
async fn without_an_email_preference_feed_there_is_no_write_back_and_no_call() {
    let mut w = formula_world(false, 2000);
    w.cfg.higher_logic.email_preferences_url = None;
    w.community
        .set_email_opt_out(&sfid("003", 1), true, w.now());
    let calls = w.community.calls_made();
    let p = w.periodic_with(w.queue.as_ref()).await.expect("runs");
    assert!(p.email_preferences.is_none(), "no write-back step");
    assert_eq!(w.community.calls_made(), calls, "no call to Higher Logic");
    assert!(w.crm.updates.lock().expect("updates").is_empty());
}

// ----- changes outside the Contact row --------------------------------------------------------

#[tokio::test]
async fn an_account_renamed_reaches_its_contacts_organization_name() {
    let w = formula_world(false, 2000);
    let at = t0() - TimeDelta::days(2);
    w.crm.put(
        "Account",
        obj(
            json!({"Id": sfid("001", 1).to_string(), "Name": "Old Name", "IsDeleted": false,
                   "SystemModstamp": sf_time(at)}),
        ),
    );
    for n in [1, 2] {
        let mut c = contact(n, at);
        c.insert("AccountId".into(), json!(sfid("001", 1).to_string()));
        w.crm.put("Contact", c);
    }
    w.sync().await;
    let org = |n| {
        w.community
            .member(sfid("003", n).as_str())
            .expect("member")
            .organization_name
    };
    assert_eq!(org(1).as_deref(), Some("Old Name"));
    // The Account is renamed; no Contact row changes.
    w.crm.put(
        "Account",
        obj(
            json!({"Id": sfid("001", 1).to_string(), "Name": "New Name", "IsDeleted": false,
                   "SystemModstamp": sf_time(w.now())}),
        ),
    );
    w.advance(TimeDelta::minutes(2));
    let (p, m) = w.sync().await;
    let accounts = p.feeds.iter().find(|f| f.feed == "accounts").expect("feed");
    assert_eq!(accounts.sent, 2, "its Contacts are queued");
    assert_eq!(m.pushed, 2);
    assert_eq!(org(1).as_deref(), Some("New Name"));
    assert_eq!(org(2).as_deref(), Some("New Name"));
}

#[tokio::test]
async fn a_renamed_checkbox_label_brings_a_full_refresh_and_the_new_group_name() {
    let w = formula_world(false, 2000);
    let mut board = contact(3, t0() - TimeDelta::days(2));
    board.insert("HL_Is_Board__c".into(), json!(true));
    w.crm.put("Contact", board);
    w.sync().await;
    let name = || {
        w.community
            .member(sfid("003", 3).as_str())
            .expect("member")
            .groups
            .iter()
            .find(|g| g.key.as_str() == "HL_Is_Board__c")
            .map(|g| g.name.clone())
    };
    assert_eq!(name().as_deref(), Some("Is Board"));
    // An admin renames the checkbox's label: no Contact changes.
    for f in &mut w.crm.describe.lock().expect("lock").fields {
        if f.name == "HL_Is_Board__c" {
            f.label = "Board of Directors".into();
        }
    }
    // A Contact change brings the describe to the Member Refresh, which sees the rename...
    w.crm.put("Contact", contact(1, w.now()));
    w.advance(TimeDelta::minutes(2));
    w.sync().await;
    // ...and the next Periodic Refresh re-reads every Contact.
    w.advance(TimeDelta::minutes(2));
    let (p, _) = w.sync().await;
    let full = p
        .full_refresh
        .expect("a full refresh, long before a day passed");
    assert!(full.reason.contains("describe"), "{}", full.reason);
    assert_eq!(name().as_deref(), Some("Board of Directors"));
}

#[tokio::test]
async fn a_campaign_leaving_or_joining_the_event_type_follows_in_higher_logic() {
    let w = events_world();
    w.sync().await;
    let event = sfid("701", 1).to_string();
    assert!(
        w.community
            .meetings
            .lock()
            .expect("lock")
            .contains_key(&event)
    );
    assert_eq!(event_roles(&w, 1).len(), 1);

    // The Event becomes a Webinar: its meeting goes, and so does its registrant's group.
    w.crm.put("Campaign", campaign(1, "Webinar", w.now()));
    w.advance(TimeDelta::minutes(2));
    w.sync().await;
    w.sync().await;
    assert!(
        !w.community
            .meetings
            .lock()
            .expect("lock")
            .contains_key(&event)
    );
    assert!(
        event_roles(&w, 1).is_empty(),
        "the group went with the meeting"
    );

    // The Webinar 2 becomes an Event: its existing registration arrives.
    assert!(event_roles(&w, 3).is_empty());
    w.crm.put("Campaign", campaign(2, "Event", w.now()));
    w.advance(TimeDelta::minutes(2));
    w.sync().await;
    w.sync().await;
    assert!(
        w.community
            .meetings
            .lock()
            .expect("lock")
            .contains_key(&sfid("701", 2).to_string())
    );
    assert_eq!(
        event_roles(&w, 3).len(),
        1,
        "the existing registration arrived"
    );
    assert!(
        w.community
            .orphan_event_groups
            .lock()
            .expect("lock")
            .is_empty()
    );
}

#[tokio::test]
async fn a_campaign_that_leaves_the_event_type_and_comes_back_unseen_returns_to_its_registrants() {
    let w = events_world();
    w.sync().await;
    assert_eq!(event_roles(&w, 1).len(), 1);

    // The Event becomes a Webinar and its registrant is edited: the registrant is read while it
    // is a Webinar (and loses the group), before the Campaign's own message is worked.
    w.crm.put("Campaign", campaign(1, "Webinar", w.now()));
    let mut c1 = contact(1, w.now());
    c1.insert("HL_Member_Type__c".into(), json!("Silver"));
    w.crm.put("Contact", c1);
    w.advance(TimeDelta::minutes(2));
    w.periodic_with(w.queue.as_ref()).await.expect("periodic");
    let (campaigns, others): (Vec<_>, Vec<_>) = w
        .queue
        .take()
        .into_iter()
        .partition(|m| m.body.contains(r#""kind":"campaign""#));
    assert!(!campaigns.is_empty(), "the Campaign's change was queued");
    let deps = w.member_deps();
    member_refresh(&deps, others, &Deadline::none())
        .await
        .expect("contacts");
    assert!(event_roles(&w, 1).is_empty(), "read while a Webinar");

    // Back to an Event before its message is worked: that message maps the same meeting as
    // was pushed, but the Campaign was edited since: its registrants are read again.
    w.advance(TimeDelta::minutes(1));
    w.crm.put("Campaign", campaign(1, "Event", w.now()));
    member_refresh(&deps, campaigns, &Deadline::none())
        .await
        .expect("campaign");
    w.advance(TimeDelta::minutes(2));
    w.sync().await;
    w.sync().await;
    assert_eq!(
        event_roles(&w, 1),
        [(
            sfid("701", 1).to_string(),
            "Campaign 1".into(),
            "Registered".into()
        )]
    );
}

#[tokio::test]
async fn a_registration_deleted_as_its_campaign_stops_being_an_event_leaves_its_member() {
    let w = events_world();
    w.sync().await;
    // Nothing left over (the meeting's own message queues its registrants once more).
    while !w.queue.sent.lock().expect("queue").is_empty() {
        w.members().await;
    }
    assert_eq!(event_roles(&w, 1).len(), 1);
    // Within one window: the registration is deleted and the Campaign becomes a Webinar. The
    // registrations feed lists those of events only, so the Campaign's change finds the deleted
    // registration.
    let mut gone = campaign_member(1, 1, 1, "Registered", w.now());
    gone.insert("IsDeleted".into(), json!(true));
    w.crm.put("CampaignMember", gone);
    w.crm.put("Campaign", campaign(1, "Webinar", w.now()));
    w.advance(TimeDelta::minutes(2));
    w.sync().await;
    w.sync().await;
    assert!(event_roles(&w, 1).is_empty());
}

#[tokio::test]
async fn a_salesforce_change_back_after_a_written_opt_out_reaches_higher_logic() {
    let w = formula_world(false, 2000);
    w.sync().await;
    let key = sfid("003", 2);
    w.community.set_email_opt_out(&key, true, w.now());
    w.advance(TimeDelta::minutes(1));
    // The write-back writes the member's opt-out; what this run and the next queue is held.
    let held = MemoryQueue::default();
    let p = w.periodic_with(&held).await.expect("periodic");
    assert_eq!(p.email_preferences.expect("read").written, 1);
    w.advance(TimeDelta::minutes(15));
    w.periodic_with(&held).await.expect("periodic");
    // Past the feed's lookback, someone opts the Contact back in in Salesforce.
    let mut c2 = contact(2, w.now());
    c2.insert("HasOptedOutOfEmail".into(), json!(false));
    w.crm.put("Contact", c2);
    w.advance(TimeDelta::minutes(2));
    // The held messages are worked now, then the sync goes on: Higher Logic, which the member
    // changed (so the push record no longer describes it), gets Salesforce's value.
    let deps = w.member_deps();
    member_refresh(&deps, held.take(), &Deadline::none())
        .await
        .expect("held");
    w.sync().await;
    w.sync().await;
    assert_eq!(
        w.crm.get("Contact", &key).expect("contact")["HasOptedOutOfEmail"],
        json!(false)
    );
    assert!(
        !w.community
            .member(key.as_str())
            .expect("member")
            .do_not_email
    );
}

#[tokio::test]
async fn two_opposite_changes_at_one_instant_leave_both_sides_opted_out() {
    let w = formula_world(false, 2000);
    let key = sfid("003", 2);
    let mut c2 = contact(2, t0() - TimeDelta::days(2));
    c2.insert("HasOptedOutOfEmail".into(), json!(true));
    w.crm.put("Contact", c2);
    w.sync().await;
    // The member flips twice within one `UpdatedOn`: Higher Logic ends opted in, but the feed
    // cannot say which came last. A tie opts out, and Higher Logic is told so.
    w.community.set_email_opt_out(&key, false, w.now());
    w.community.set_email_opt_out(&key, true, w.now());
    w.community.set_email_opt_out(&key, false, w.now());
    w.advance(TimeDelta::minutes(1));
    w.sync().await;
    w.sync().await;
    assert_eq!(
        w.crm.get("Contact", &key).expect("contact")["HasOptedOutOfEmail"],
        json!(true)
    );
    assert!(
        w.community
            .member(key.as_str())
            .expect("member")
            .do_not_email
    );
}

#[tokio::test]
async fn the_initial_load_reads_registrations_without_a_message_per_registrant() {
    let w = events_world();
    w.periodic_with(w.queue.as_ref()).await.expect("periodic");
    let first = w.queue.take();
    // Ranges and Campaigns: the registrations feed starts at the initial load, which reads them.
    let per_contact = first
        .iter()
        .filter(|m| m.body.contains(r#""kind":"contact""#))
        .count();
    assert_eq!(per_contact, 0, "no message per registered Contact");
    let deps = w.member_deps();
    let r = member_refresh(&deps, first, &Deadline::none())
        .await
        .expect("batch");
    assert!(r.failed_message_ids.is_empty(), "{r:?}");
    assert_eq!(r.meetings_pushed, 1);
    // The meeting was pushed by its Campaign's message or brought along by its registrant; its
    // edit came before the initial load, which read every registrant after it: none is queued
    // again.
    let again = w.queue.take();
    assert!(again.is_empty(), "{} registrants queued again", again.len());
    assert_eq!(event_roles(&w, 1).len(), 1);
}

#[tokio::test]
async fn a_campaign_edited_before_a_refresh_that_scanned_nothing_still_reaches_its_registrants() {
    let w = events_world();
    w.sync().await;
    assert_eq!(event_roles(&w, 1)[0].1, "Campaign 1");
    // The Campaign is renamed; its message is worked only after a day has passed, in the run
    // where the full refresh, not needed (no formula field), moves its watermark without a scan.
    let mut renamed = w
        .crm
        .get("Campaign", &sfid("701", 1))
        .expect("the Campaign");
    let at = sf_time(w.now());
    renamed.insert("Name".into(), json!("Renamed"));
    renamed.insert("SystemModstamp".into(), json!(at));
    renamed.insert("LastModifiedDate".into(), json!(at));
    w.crm.put("Campaign", renamed);
    w.advance(TimeDelta::hours(25));
    let (p, _) = w.sync().await;
    assert!(p.full_refresh.is_none(), "no scan: {:?}", p.full_refresh);
    // Its registrant was queued again and now names the meeting anew.
    w.sync().await;
    assert_eq!(event_roles(&w, 1)[0].1, "Renamed");
}
