//! The rest of the worksheet end to end: meetings and registrations, community groups,
//! formula fields and the full refresh, the GDPR opt-out write-back, and `hlsync check`; against
//! moto server, the simulators, the real SDKs and real HTTP.

use std::collections::BTreeSet;
use std::time::Duration;

use hlsync_cli::local::{LocalOptions, LocalSystem};
use serde_json::{Map, Value, json};

use crate::common::{is_live, sync};

const EVENTS: &str = r#"
[events]
enabled = true
campaign_type = "Event"
registered_statuses = ["Registered", "Attended"]
"#;

async fn system(contacts: usize, extra_config: &str) -> LocalSystem {
    crate::common::start(LocalOptions {
        contacts,
        extra_config: extra_config.to_string(),
        ..LocalOptions::default()
    })
    .await
}

fn fields(v: Value) -> Map<String, Value> {
    serde_json::from_value(v).expect("an object")
}

fn text<'a>(r: &'a Map<String, Value>, name: &str) -> &'a str {
    r.get(name).and_then(Value::as_str).unwrap_or_default()
}

fn endpoint_calls(sys: &LocalSystem, name: &str) -> u64 {
    sys.salesforce
        .counters()
        .calls_by_endpoint
        .get(name)
        .copied()
        .unwrap_or(0)
}

/// The Contacts Higher Logic holds as members (active: they carry their groups).
fn active_contacts(sys: &LocalSystem) -> BTreeSet<String> {
    sys.salesforce
        .all("Contact")
        .iter()
        .filter(|c| is_live(c) && c.get("Active__c") == Some(&json!(true)))
        .map(|c| text(c, "Id").to_string())
        .collect()
}

/// What Higher Logic must hold: (meeting ids, registered (event, contact) pairs of active
/// members).
fn expected_events(sys: &LocalSystem) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let events: BTreeSet<String> = sys
        .salesforce
        .all("Campaign")
        .iter()
        .filter(|c| is_live(c) && text(c, "Type") == "Event")
        .map(|c| text(c, "Id").to_string())
        .collect();
    let active = active_contacts(sys);
    let registered: BTreeSet<(String, String)> = sys
        .salesforce
        .all("CampaignMember")
        .iter()
        .filter(|m| is_live(m) && events.contains(text(m, "CampaignId")))
        .filter(|m| ["Registered", "Attended"].contains(&text(m, "Status")))
        .filter(|m| active.contains(text(m, "ContactId")))
        .map(|m| {
            (
                text(m, "CampaignId").to_string(),
                text(m, "ContactId").to_string(),
            )
        })
        .collect();
    (events, registered)
}

/// What Higher Logic holds: its meetings, and the `Event` groups on its members' records.
fn actual_events(sys: &LocalSystem) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let meetings = sys.higher_logic.meetings().into_keys().collect();
    let registrations = sys
        .higher_logic
        .members()
        .into_iter()
        .flat_map(|(contact, record)| {
            record["Groups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|g| g["GroupType"] == "Event")
                .map(|g| {
                    (
                        g["GroupId"].as_str().unwrap_or_default().to_string(),
                        contact.clone(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    (meetings, registrations)
}

#[tokio::test(flavor = "multi_thread")]
async fn meetings_and_registrations_reach_higher_logic_in_batches_and_follow_changes() {
    let sys = system(200, EVENTS).await;
    // An event nobody registered for, to be deleted later.
    let dropped_event = sys.salesforce.insert(
        "Campaign",
        fields(json!({"Name": "Cancelled Gala", "Type": "Event", "StartDate": "2026-12-24"})),
    );
    // Past the settle time, so the first window sees it.
    sys.salesforce.advance(Duration::from_mins(2));
    let rt = sys.runtime();
    let report = sync(&rt).await;
    assert!(report.periodic.completed());
    assert_eq!(report.member_refresh.failed_deliveries, 0);
    let (want_events, want_regs) = expected_events(&sys);
    assert!(!want_events.is_empty() && !want_regs.is_empty());
    assert_eq!(
        actual_events(&sys),
        (want_events.clone(), want_regs.clone())
    );
    assert!(
        sys.higher_logic.orphan_event_groups().is_empty(),
        "every meeting was pushed before the records that name it"
    );
    // Batch reads: per Member Refresh batch one read each of Contacts, Accounts and Campaigns,
    // and one query of the registrations per 500 Contacts; never a single-record read.
    let batches = report.member_refresh.batches;
    assert!(endpoint_calls(&sys, "composite_retrieve") <= 3 * batches);
    assert_eq!(endpoint_calls(&sys, "sobject"), 0);

    // A cancellation, a deletion, a new registration and a deleted event.
    let active = active_contacts(&sys);
    let members: Vec<Map<String, Value>> = sys
        .salesforce
        .all("CampaignMember")
        .into_iter()
        .filter(|m| is_live(m) && want_events.contains(text(m, "CampaignId")))
        .filter(|m| active.contains(text(m, "ContactId")))
        .collect();
    let registered: Vec<&Map<String, Value>> = members
        .iter()
        .filter(|m| ["Registered", "Attended"].contains(&text(m, "Status")))
        .collect();
    let not_registered = members
        .iter()
        .find(|m| !["Registered", "Attended"].contains(&text(m, "Status")))
        .expect("an active member who has not registered");
    assert!(registered.len() >= 2);
    let cancelled = registered[0];
    let removed = registered[1];
    assert!(sys.salesforce.update(
        "CampaignMember",
        text(cancelled, "Id"),
        fields(json!({"Status": "Sent"}))
    ));
    assert!(sys.salesforce.delete("CampaignMember", text(removed, "Id")));
    assert!(sys.salesforce.update(
        "CampaignMember",
        text(not_registered, "Id"),
        fields(json!({"Status": "Registered"}))
    ));
    assert!(want_events.contains(&dropped_event));
    assert!(sys.salesforce.delete("Campaign", &dropped_event));
    sys.salesforce.advance(Duration::from_mins(2));
    let report = sync(&rt).await;
    assert_eq!(report.member_refresh.failed_deliveries, 0);

    let key = |m: &Map<String, Value>| {
        (
            text(m, "CampaignId").to_string(),
            text(m, "ContactId").to_string(),
        )
    };
    let (want_events, want_regs) = expected_events(&sys);
    let (events, regs) = actual_events(&sys);
    assert_eq!(events, want_events);
    assert!(!events.contains(&dropped_event));
    assert!(sys.higher_logic.is_meeting_deleted(&dropped_event));
    assert_eq!(
        regs, want_regs,
        "registrations follow, through each Contact's record"
    );
    assert!(
        !regs.contains(&key(cancelled)),
        "a cancelled registration is gone"
    );
    assert!(
        !regs.contains(&key(removed)),
        "a deleted registration is gone"
    );
    assert!(
        regs.contains(&key(not_registered)),
        "a new registration arrived"
    );
    // The Contacts that lost a registration keep the rest of their record.
    let lost = sys
        .higher_logic
        .member(text(removed, "ContactId"))
        .expect("still a member");
    assert_eq!(lost["ContactDetails"]["IsMember"], json!(true));

    // Nothing changed since: no push at all.
    sys.salesforce.advance(Duration::from_mins(2));
    let before = sys.higher_logic.counters();
    let report = sync(&rt).await;
    let after = sys.higher_logic.counters();
    assert_eq!(report.member_refresh.pushed, 0);
    assert_eq!(after.meeting_calls, before.meeting_calls);
    assert_eq!(after.contactinfo_calls, before.contactinfo_calls);
}

fn groups_of(record: &Value, group_type: &str) -> Vec<Value> {
    record["Groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["GroupType"] == group_type)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_contact_moving_chapter_changes_community_groups_only() {
    let sys = system(80, "").await;
    let rt = sys.runtime();
    sync(&rt).await;
    let contact = sys
        .salesforce
        .all("Contact")
        .into_iter()
        .find(|c| {
            is_live(c)
                && c.get("Active__c") == Some(&json!(true))
                && text(c, "HL_Chapter__c") == "Ohio"
        })
        .or_else(|| {
            sys.salesforce
                .all("Contact")
                .into_iter()
                .find(|c| is_live(c) && c.get("Active__c") == Some(&json!(true)))
        })
        .expect("an active Contact");
    let id = text(&contact, "Id").to_string();
    assert!(
        sys.salesforce
            .update("Contact", &id, fields(json!({"HL_Chapter__c": "Ohio"})))
    );
    sys.salesforce.advance(Duration::from_mins(2));
    sync(&rt).await;
    let before = sys.higher_logic.member(&id).expect("pushed");
    assert_eq!(
        groups_of(&before, "Chapter"),
        [
            json!({"GroupId": "HL_Chapter__c:Ohio", "GroupName": "Ohio", "GroupType": "Chapter", "Role": ""})
        ]
    );

    assert!(
        sys.salesforce
            .update("Contact", &id, fields(json!({"HL_Chapter__c": "Texas"})))
    );
    sys.salesforce.advance(Duration::from_mins(2));
    let report = sync(&rt).await;
    assert_eq!(report.member_refresh.pushed, 1);
    let after = sys.higher_logic.member(&id).expect("pushed");
    assert_eq!(
        groups_of(&after, "Chapter"),
        [
            json!({"GroupId": "HL_Chapter__c:Texas", "GroupName": "Texas", "GroupType": "Chapter", "Role": ""})
        ],
        "the old community group is gone, the new one present"
    );
    assert_eq!(
        groups_of(&after, "Membership"),
        groups_of(&before, "Membership")
    );
    let security = groups_of(&after, "Membership");
    assert!(
        security.iter().all(|g| !g["GroupId"]
            .as_str()
            .unwrap_or_default()
            .starts_with("HL_Chapter__c")),
        "a community field feeds no security group"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_formula_change_is_pushed_by_the_daily_full_refresh_and_nothing_else_is() {
    let sys = system(200, "").await;
    let rt = sys.runtime();
    let first = sync(&rt).await;
    assert!(
        first
            .periodic
            .full_refresh
            .as_ref()
            .is_some_and(|f| f.initial && f.completed),
        "the initial load reads every Contact: it is the period's full refresh"
    );
    let contact = sys
        .salesforce
        .all("Contact")
        .into_iter()
        .find(|c| is_live(c) && c.get("Active__c") == Some(&json!(true)))
        .expect("an active Contact");
    let id = text(&contact, "Id").to_string();
    let board = contact.get("HL_Is_Board__c") == Some(&json!(true));
    let stamp = sys.salesforce.get("Contact", &id).expect("contact")["SystemModstamp"].clone();
    assert!(
        sys.salesforce
            .update("Contact", &id, fields(json!({"HL_Is_Board__c": !board})))
    );
    assert_eq!(
        sys.salesforce.get("Contact", &id).expect("contact")["SystemModstamp"],
        stamp,
        "a formula change does not move SystemModstamp"
    );

    // Within the period: no window sees it, no full refresh runs.
    sys.salesforce.advance(Duration::from_hours(1));
    let report = sync(&rt).await;
    assert!(report.periodic.full_refresh.is_none());
    assert_eq!(report.member_refresh.pushed, 0);

    sys.salesforce.advance(Duration::from_hours(24));
    let sf_before = sys.salesforce.counters();
    let hl_before = sys.higher_logic.counters();
    let report = sync(&rt).await;
    let full = report
        .periodic
        .full_refresh
        .clone()
        .expect("due after a day");
    assert!(full.completed);
    assert_eq!(full.formula_fields, ["HL_Is_Board__c"]);
    assert_eq!(
        report.member_refresh.pushed, 1,
        "exactly the changed member"
    );
    let member = sys.higher_logic.member(&id).expect("member");
    let has_board = groups_of(&member, "Membership")
        .iter()
        .any(|g| g["GroupId"] == "HL_Is_Board__c");
    assert_eq!(has_board, !board);
    // It costs Salesforce reads in batches, and one Higher Logic push.
    let sf_after = sys.salesforce.counters();
    let retrieves = sf_after
        .calls_by_endpoint
        .get("composite_retrieve")
        .copied()
        .unwrap_or(0)
        - sf_before
            .calls_by_endpoint
            .get("composite_retrieve")
            .copied()
            .unwrap_or(0);
    assert!(
        retrieves <= 2 * report.member_refresh.batches,
        "{retrieves} reads for {} batches",
        report.member_refresh.batches
    );
    // The Periodic Refresh: the status call, the window query, one scan page (the describe is
    // cached); the Member Refresh: at most a describe and two reads per batch.
    let batches = report.member_refresh.batches;
    assert!(sf_after.api_calls - sf_before.api_calls <= 4 + 2 * batches);
    assert_eq!(
        endpoint_calls(&sys, "sobject"),
        0,
        "never one call per Contact"
    );
    assert_eq!(
        sys.higher_logic.counters().contactinfo_calls - hl_before.contactinfo_calls,
        1
    );

    // A second full refresh inside the period does not run.
    sys.salesforce.advance(Duration::from_hours(1));
    let report = sync(&rt).await;
    assert!(report.periodic.full_refresh.is_none());
    assert_eq!(report.member_refresh.contacts, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_members_opt_out_is_written_back_once_without_ping_pong() {
    let sys = system(60, "").await;
    let rt = sys.runtime();
    sync(&rt).await;
    let contact = sys
        .salesforce
        .all("Contact")
        .into_iter()
        .find(|c| {
            is_live(c)
                && c.get("Active__c") == Some(&json!(true))
                && c.get("HasOptedOutOfEmail") == Some(&json!(false))
        })
        .expect("a Contact not opted out");
    let id = text(&contact, "Id").to_string();
    assert_eq!(sys.higher_logic.email_opt_out(&id), Some(false));

    sys.higher_logic.set_email_opt_out(&id, true);
    let patches_before = endpoint_calls(&sys, "composite_update");
    let mut pushes = Vec::new();
    for _ in 0..3 {
        sys.salesforce.advance(Duration::from_mins(2));
        let report = sync(&rt).await;
        pushes.push(report.member_refresh.pushed);
    }
    assert_eq!(
        endpoint_calls(&sys, "composite_update") - patches_before,
        1,
        "exactly one PATCH"
    );
    let sf = sys.salesforce.get("Contact", &id).expect("contact");
    assert_eq!(sf["HasOptedOutOfEmail"], json!(true));
    assert_eq!(sys.higher_logic.email_opt_out(&id), Some(true));
    assert_eq!(
        sys.higher_logic.member(&id).expect("member")["ContactDetails"]["DoNotEmail"],
        json!(true)
    );
    // The member's record is pushed once, at once: the write-back queues its re-read, its push
    // record still describing the value before the member's change. Then all is quiet (the
    // write's SystemModstamp bump finds the record current).
    assert_eq!(pushes, [1, 0, 0]);
}

/// `hlsync check`, with another config file when given.
fn check(sys: &LocalSystem, config: Option<&std::path::Path>) -> std::process::Output {
    match config.and_then(|p| p.to_str()) {
        Some(path) => crate::common::hlsync(sys, &["--config", path, "check"]),
        None => crate::common::hlsync(sys, &["check"]),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_lists_the_fields_and_warns_about_formulas_and_refuses_a_bad_config() {
    let sys = system(5, "").await;
    let out = check(&sys, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "active field: Active__c",
        "HL_Member_Type__c",
        "HL_Chapter__c",
        "community groups of GroupType Chapter",
        "security groups of GroupType Membership",
        "HL_Is_Board__c",
        "(formula)",
        "full refresh",
    ] {
        assert!(stdout.contains(want), "{want:?} missing from:\n{stdout}");
    }

    // The active field must be a checkbox.
    let bad = sys.dir.join("bad.toml");
    std::fs::write(
        &bad,
        sys.config_toml
            .replace(r#"active_field = "Active__c""#, r#"active_field = "Email""#),
    )
    .expect("write");
    let out = check(&sys, Some(&bad));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("contacts.active_field") && stderr.contains("checkbox"),
        "{stderr}"
    );

    // A community field that does not exist.
    std::fs::write(
        &bad,
        sys.config_toml.replace(
            r#"community_fields = { HL_Chapter__c = "Chapter" }"#,
            r#"community_fields = ["HL_Region__c"]"#,
        ),
    )
    .expect("write");
    let out = check(&sys, Some(&bad));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HL_Region__c"), "{stderr}");

    // A Flow-kept cursor field: check counts the Contacts it is null on.
    std::fs::write(
        &bad,
        sys.config_toml.replace(
            "[salesforce]\n",
            "[salesforce]\ncursor_field = \"Sync_Modified__c\"\n",
        ),
    )
    .expect("write");
    let out = check(&sys, Some(&bad));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("have no value in Sync_Modified__c"),
        "{stdout}"
    );

    // A cursor field the org does not have, and one that is not a date/time.
    for (cursor, why) in [
        ("HL_Mod_Date__c", "has no field"),
        ("Email", "not a date/time"),
    ] {
        std::fs::write(
            &bad,
            sys.config_toml.replace(
                "[salesforce]\n",
                &format!("[salesforce]\ncursor_field = \"{cursor}\"\n"),
            ),
        )
        .expect("write");
        let out = check(&sys, Some(&bad));
        assert!(!out.status.success(), "{cursor}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("salesforce.cursor_field"), "{stderr}");
        assert!(stderr.contains(why), "{stderr}");
    }
}
