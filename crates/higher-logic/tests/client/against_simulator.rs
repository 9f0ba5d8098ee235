//! The client against the Higher Logic Push API v2 simulator (`hlsync-sim`), over real HTTP.
//!
//! The simulator checks every element strictly (unknown keys, types, the exact delete shapes,
//! `.fffZ` dates), so a push it accepts is one SPEC.md §6 describes. Waits are checked on
//! tokio's paused clock (virtual time), never on the wall clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use hlsync_core::{
    Address, Email, Group, GroupKey, HigherLogicConfig, Meeting, Member, Phone, SfId,
};
use hlsync_higher_logic::rate::Acquire;
use hlsync_higher_logic::{
    HigherLogicClient, HigherLogicCredentials, HlError, RateLimiter, RecordResult, RetryPolicy,
    Unlimited, wire,
};
use hlsync_sim::higher_logic::{HigherLogicSim, HlSimOptions};
use serde_json::json;
use tokio::time::Instant;

fn key(i: usize) -> SfId {
    // All-digit ids have the case-safe suffix AAA.
    format!("003{i:012}AAA").parse().expect("valid id")
}

fn campaign(i: usize) -> SfId {
    format!("701{i:012}AAA").parse().expect("valid id")
}

fn member(i: usize) -> Member {
    Member {
        contact_id: key(i),
        first_name: Some(format!("First{i}")),
        last_name: Some("Member".into()),
        primary_email: Some(format!("m{i}@example.org")),
        organization_name: Some("Example Labs".into()),
        title: None,
        is_member: true,
        do_not_email: false,
        groups: vec![
            Group::new(
                "Chapter",
                GroupKey::field_value("HL_Chapter__c", "Ohio"),
                "Ohio",
            ),
            Group::new(
                "Membership",
                GroupKey::field_value("HL_Member_Type__c", "Gold"),
                "Gold",
            ),
        ],
        addresses: vec![Address {
            line1: Some("1 Main St".into()),
            line2: None,
            city: Some("Columbus".into()),
            state_province: Some("OH".into()),
            postal_code: Some("43004".into()),
            country_code: Some("US".into()),
            address_type: "Main".into(),
            is_primary: true,
        }],
        phones: vec![Phone {
            number: "614-555-0100".into(),
            phone_type: "Work".into(),
            is_preferred: true,
        }],
        emails: vec![Email {
            address: format!("m{i}@example.org"),
            email_type: "Primary Email".into(),
            is_preferred: true,
        }],
        is_deleted: false,
        modstamp: Some(Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap()),
    }
}

fn members(n: usize) -> Vec<Member> {
    (0..n).map(member).collect()
}

fn meeting(i: usize) -> Meeting {
    Meeting {
        meeting_id: campaign(i),
        title: Some(format!("Conference {i}")),
        description: Some("Two days".into()),
        meeting_type: Some("Event".into()),
        begin_date: NaiveDate::from_ymd_opt(2026, 12, 1),
        end_date: NaiveDate::from_ymd_opt(2026, 12, 2),
        is_deleted: false,
    }
}

fn creds(sim: &HigherLogicSim) -> HigherLogicCredentials {
    HigherLogicCredentials {
        api_key: sim.api_key().to_owned().into(),
    }
}

fn config(sim: &HigherLogicSim) -> HigherLogicConfig {
    HigherLogicConfig {
        base_url: sim.base_url(),
        max_calls_per_minute: 6_000,
        batch_size: 200,
        email_preferences_url: Some(sim.email_preferences_url()),
    }
}

/// Fast retries, no request timeout (see `with_request_timeout`), a generous rate.
fn client(sim: &HigherLogicSim) -> HigherLogicClient {
    client_with(&config(sim), creds(sim))
}

fn client_with(cfg: &HigherLogicConfig, creds: HigherLogicCredentials) -> HigherLogicClient {
    HigherLogicClient::new(cfg, creds, true)
        .expect("client builds")
        .with_request_timeout(None)
        .with_retry_policy(RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(30),
        })
}

async fn sim() -> HigherLogicSim {
    HigherLogicSim::start(HlSimOptions::default())
        .await
        .expect("simulator starts")
}

fn all_ok(results: &[RecordResult]) -> bool {
    results.iter().all(RecordResult::is_ok)
}

#[tokio::test]
async fn pushes_450_members_in_3_calls_and_the_simulator_holds_exactly_what_was_sent() {
    let sim = sim().await;
    let client = client(&sim);
    let input = members(450);
    let results = client.push_members(&input).await.unwrap();

    assert_eq!(client.calls_made(), 3);
    assert_eq!(sim.counters().contactinfo_calls, 3);
    assert_eq!(sim.counters().records_received, 450);
    assert_eq!(sim.counters().bad_requests, 0);
    assert_eq!(results.len(), 450);
    for (result, member) in results.iter().zip(&input) {
        assert_eq!(result.key, member.contact_id.as_str());
        assert_eq!(result.outcome, Ok(()));
    }
    assert_eq!(sim.members().len(), 450);
    // The client sends every key, so the simulator's normalised record is the element itself.
    let stored = sim.member(key(7).as_str()).unwrap();
    assert_eq!(
        stored,
        serde_json::to_value(wire::contact_info(&member(7))).unwrap()
    );
    assert_eq!(stored["ContactDetails"]["FirstName"], "First7");
    assert_eq!(stored["Addresses"][0]["AddressLine2"], json!(null));
}

#[tokio::test]
async fn an_empty_push_makes_no_call() {
    let sim = sim().await;
    let client = client(&sim);
    assert!(client.push_members(&[]).await.unwrap().is_empty());
    assert!(client.push_meetings(&[]).await.unwrap().is_empty());
    assert_eq!(client.calls_made(), 0);
    assert_eq!(sim.counters().total_calls(), 0);
}

#[tokio::test]
async fn a_refused_contact_among_200_is_found_by_halving_and_its_neighbours_stored() {
    let sim = sim().await;
    let bad = key(61);
    sim.refuse_contacts([bad.as_str()]);
    let client = client(&sim);
    let results = client.push_members(&members(200)).await.unwrap();

    let failed: Vec<&RecordResult> = results.iter().filter(|r| !r.is_ok()).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].key, bad.as_str());
    let message = failed[0].outcome.as_ref().unwrap_err();
    assert!(
        message.contains(bad.as_str()) && message.contains("refused"),
        "{message}"
    );
    // The neighbours went through; the refused one was never stored.
    assert_eq!(sim.members().len(), 199);
    assert!(sim.member(bad.as_str()).is_none());
    assert!(client.calls_made() <= 17, "{} calls", client.calls_made());
    assert_eq!(sim.counters().contactinfo_calls, client.calls_made());
}

#[tokio::test]
async fn a_batch_larger_than_the_server_takes_is_halved_until_it_fits() {
    // A tenant limit below batch_size: the 400 that refuses the whole array is met by halving.
    let sim = HigherLogicSim::start(HlSimOptions {
        max_records_per_call: 100,
        ..HlSimOptions::default()
    })
    .await
    .unwrap();
    let client = client(&sim);
    let results = client.push_members(&members(200)).await.unwrap();
    assert!(all_ok(&results));
    assert_eq!(client.calls_made(), 3, "200 refused, then 100 and 100");
    assert_eq!(sim.members().len(), 200);
}

#[tokio::test]
async fn inactive_deleted_and_repeated_pushes() {
    let sim = sim().await;
    let client = client(&sim);
    client.push_members(&members(2)).await.unwrap();

    // The same record again changes nothing.
    assert!(all_ok(&client.push_members(&members(1)).await.unwrap()));
    assert!(!sim.history(key(0).as_str()).unwrap().last_push_changed);

    // Inactive: IsMember false and no groups, the rest of the record kept.
    let inactive = Member {
        is_member: false,
        groups: Vec::new(),
        ..member(0)
    };
    // Deleted: the delete shape.
    let gone = Member::deleted(key(1), None);
    let results = client.push_members(&[inactive, gone]).await.unwrap();
    assert!(all_ok(&results));
    let stored = sim.member(key(0).as_str()).unwrap();
    assert_eq!(stored["ContactDetails"]["IsMember"], false);
    assert_eq!(stored["Groups"], json!([]));
    assert_eq!(stored["ContactDetails"]["FirstName"], "First0");
    assert!(sim.is_deleted(key(1).as_str()));
    assert!(sim.member(key(1).as_str()).is_none());
}

#[tokio::test]
async fn meetings_go_first_and_registrations_name_them() {
    let sim = sim().await;
    let client = client(&sim);
    let results = client
        .push_meetings(&[meeting(1), Meeting::deleted(campaign(2))])
        .await
        .unwrap();
    assert_eq!(results[0].key, campaign(1).as_str());
    assert_eq!(results[1].key, campaign(2).as_str());
    assert!(all_ok(&results));
    let stored = sim.meeting(campaign(1).as_str()).unwrap();
    assert_eq!(stored["BeginDate"], "2026-12-01T00:00:00.000Z");
    assert_eq!(stored["EndDate"], "2026-12-02T00:00:00.000Z");
    assert!(sim.is_meeting_deleted(campaign(2).as_str()));

    let mut registered = member(5);
    registered.groups.push(Group {
        group_type: "Event".into(),
        key: GroupKey::event(&campaign(1)),
        name: "Conference 1".into(),
        role: "Registered".into(),
    });
    assert!(all_ok(&client.push_members(&[registered]).await.unwrap()));
    assert!(sim.orphan_event_groups().is_empty());
    let stored = sim.member(key(5).as_str()).unwrap();
    assert!(stored["Groups"].as_array().unwrap().contains(
        &json!({"GroupId": campaign(1).as_str(), "GroupName": "Conference 1",
                              "GroupType": "Event", "Role": "Registered"})
    ));
    assert_eq!(sim.counters().meeting_calls, 1);
}

#[tokio::test(start_paused = true)]
async fn waits_for_retry_after_then_succeeds() {
    let sim = sim().await;
    sim.throttle_next_calls(1, 3);
    let client = client(&sim);
    let start = Instant::now();
    let results = client.push_members(&members(2)).await.unwrap();
    assert!(all_ok(&results));
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(client.calls_made(), 2);
    assert_eq!(sim.counters().throttled, 1);
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_ends_the_request_at_once() {
    let sim = sim().await;
    sim.throttle_next_calls(1, 3_600);
    let client = client(&sim);
    let error = client.push_members(&members(1)).await.unwrap_err();
    assert!(
        matches!(error, HlError::Throttled { retry_after: Some(d), .. } if d == Duration::from_hours(1)),
        "{error}"
    );
    assert!(error.is_retryable());
    assert_eq!(client.calls_made(), 1);
}

#[tokio::test]
async fn a_server_side_limit_too_long_to_wait_out_is_reported() {
    // The simulator allows 2 calls a minute; the client, misconfigured, would go faster.
    let sim = HigherLogicSim::start(HlSimOptions {
        max_calls_per_minute: 2,
        ..HlSimOptions::default()
    })
    .await
    .unwrap();
    let client = client(&sim).with_retry_policy(RetryPolicy {
        max_retry_after: Duration::ZERO,
        ..RetryPolicy::default()
    });
    client.push_members(&members(400)).await.unwrap();
    let error = client.push_members(&members(1)).await.unwrap_err();
    assert!(matches!(error, HlError::Throttled { .. }), "{error}");
    assert_eq!(sim.counters().throttled, 1);
}

#[tokio::test]
async fn a_503_burst_is_retried_until_it_passes() {
    let sim = sim().await;
    sim.fail_next_calls(3);
    let client = client(&sim);
    let results = client.push_members(&members(5)).await.unwrap();
    assert!(all_ok(&results));
    assert_eq!(client.calls_made(), 4);
    assert_eq!(sim.counters().faults_served, 3);
}

#[tokio::test]
async fn a_longer_outage_ends_with_a_retryable_error() {
    let sim = sim().await;
    sim.fail_next_calls(10);
    let client = client(&sim);
    let error = client.push_members(&members(1)).await.unwrap_err();
    assert!(
        matches!(
            error,
            HlError::Unavailable {
                status: 503,
                attempts: 4,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.is_retryable());
    assert_eq!(client.calls_made(), 4);
}

#[tokio::test]
async fn a_refused_key_is_not_retried() {
    let sim = sim().await;
    let wrong_key = HigherLogicCredentials {
        api_key: "not-the-key".to_owned().into(),
    };
    let client = client_with(&config(&sim), wrong_key);
    let error = client.push_members(&members(1)).await.unwrap_err();
    assert!(
        matches!(error, HlError::Rejected { status: 401, .. }),
        "{error}"
    );
    assert!(error.is_credentials_rejected());
    assert!(error.to_string().contains("higher_logic.api_key"));
    assert_eq!(client.calls_made(), 1);

    let error = client
        .email_preferences_since(Utc::now())
        .await
        .unwrap_err();
    assert!(
        matches!(error, HlError::Rejected { status: 401, .. }),
        "{error}"
    );
    assert_eq!(client.calls_made(), 2);
    assert_eq!(sim.counters().auth_rejected, 2);
    assert!(sim.members().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_rate_limiter_spaces_calls_in_virtual_time() {
    let sim = sim().await;
    // 60 a minute: one call a second. 450 records are 3 calls: the 3rd goes 2 s after the 1st.
    let cfg = HigherLogicConfig {
        max_calls_per_minute: 60,
        ..config(&sim)
    };
    let client = client_with(&cfg, creds(&sim));
    let start = Instant::now();
    client.push_members(&members(450)).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(client.calls_made(), 3);
}

/// A limiter that counts permissions, to show every call (retries and halvings too) asks one.
struct Counting {
    granted: AtomicU64,
}

impl RateLimiter for Counting {
    fn acquire(&self) -> Acquire<'_> {
        self.granted.fetch_add(1, Ordering::SeqCst);
        Unlimited.acquire()
    }
}

#[tokio::test]
async fn a_plugged_in_limiter_is_asked_before_every_call() {
    let sim = sim().await;
    sim.fail_next_calls(1);
    sim.refuse_contacts([key(3).as_str()]);
    let limiter = Arc::new(Counting {
        granted: AtomicU64::new(0),
    });
    let client = client(&sim).with_rate_limiter(limiter.clone());
    // 250 records: a 503 and a retry, the first 200 refused and halved down to key(3)
    // (200, 100, 50, 25, 13, 7, 4, 2, 1: 17 requests), then 50.
    let results = client.push_members(&members(250)).await.unwrap();
    assert_eq!(results.iter().filter(|r| !r.is_ok()).count(), 1);
    assert_eq!(client.calls_made(), 1 + 17 + 1);
    assert_eq!(limiter.granted.load(Ordering::SeqCst), client.calls_made());
    assert_eq!(sim.counters().contactinfo_calls, client.calls_made());
}

#[tokio::test]
async fn email_preference_changes_are_read_strictly_after_since() {
    let sim = sim().await;
    let client = client(&sim);
    assert!(client.has_email_preferences());
    let t0 = Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap();
    sim.set_email_opt_out_at(key(1).as_str(), true, t0);
    sim.set_email_opt_out_at(key(2).as_str(), true, t0 + chrono::Duration::minutes(5));
    sim.set_email_opt_out_at(
        "not-a-salesforce-id",
        true,
        t0 + chrono::Duration::minutes(6),
    );
    sim.set_email_opt_out_at(
        &key(1).as_str()[..15],
        false,
        t0 + chrono::Duration::minutes(7),
    );

    let changes = client.email_preferences_since(t0).await.unwrap();
    assert_eq!(changes.len(), 2, "strictly after since; bad ids skipped");
    assert_eq!(changes[0].key, key(2));
    assert!(changes[0].do_not_email);
    assert_eq!(changes[0].updated_on, t0 + chrono::Duration::minutes(5));
    assert_eq!(changes[1].key, key(1), "a 15-character Id is made 18");
    assert!(!changes[1].do_not_email);

    let all = client
        .email_preferences_since(t0 - chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(sim.counters().emailpreferences_calls, 2);
}

#[tokio::test]
async fn without_a_feed_url_the_feed_is_never_called() {
    let sim = sim().await;
    sim.set_email_opt_out(key(1).as_str(), true);
    let cfg = HigherLogicConfig {
        email_preferences_url: None,
        ..config(&sim)
    };
    let client = client_with(&cfg, creds(&sim));
    assert!(!client.has_email_preferences());
    assert!(
        client
            .email_preferences_since(Utc::now() - chrono::Duration::days(1))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(client.calls_made(), 0);
    assert_eq!(sim.counters().emailpreferences_calls, 0);
}

#[tokio::test]
async fn construction_checks_its_settings() {
    let sim = sim().await;
    let error = HigherLogicClient::new(&config(&sim), creds(&sim), false).unwrap_err();
    assert!(error.to_string().contains("https"), "{error}");
    assert!(
        error.to_string().contains("higher_logic.base_url"),
        "{error}"
    );
    assert!(!error.is_retryable());

    let zero = HigherLogicConfig {
        max_calls_per_minute: 0,
        ..config(&sim)
    };
    assert!(matches!(
        HigherLogicClient::new(&zero, creds(&sim), true),
        Err(HlError::Config { .. })
    ));
}
