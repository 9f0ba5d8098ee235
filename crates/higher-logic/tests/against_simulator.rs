//! The client against the Higher Logic simulator, over real HTTP.
//!
//! Waits are checked on tokio's paused clock (virtual time), never on the wall clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use hlsync_core::{Address, Event, Group, GroupKey, HigherLogicConfig, Member, Registration, SfId};
use hlsync_higher_logic::rate::Acquire;
use hlsync_higher_logic::wire::{EventRecord, RegistrationRecord};
use hlsync_higher_logic::{
    HigherLogicClient, HigherLogicCredentials, HlError, RateLimiter, RetryPolicy, Unlimited,
};
use hlsync_sim::higher_logic::{HigherLogicSim, HlSimOptions};
use serde_json::json;
use tokio::time::Instant;

fn key(i: usize) -> SfId {
    // All-digit ids have the case-safe suffix AAA.
    format!("003{i:012}AAA").parse().expect("valid id")
}

fn member(i: usize) -> Member {
    Member {
        legacy_contact_key: key(i),
        first_name: Some(format!("First{i}")),
        last_name: Some("Member".into()),
        email_address: Some(format!("m{i}@example.org")),
        company_name: None,
        title: None,
        phone: None,
        mobile_phone: None,
        address: Address {
            city: Some("Columbus".into()),
            ..Address::default()
        },
        is_active: true,
        is_deleted: false,
        email_opt_out: false,
        security_groups: vec![Group {
            key: GroupKey::field_value("HL_Member_Type__c", "Gold"),
            name: "Gold".into(),
        }],
        community_groups: vec![],
        updated_on: Some(Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap()),
    }
}

fn members(n: usize) -> Vec<Member> {
    (0..n).map(member).collect()
}

fn creds(sim: &HigherLogicSim) -> HigherLogicCredentials {
    HigherLogicCredentials {
        tenant_code: sim.tenant_code().to_owned(),
        api_key: sim.api_key().to_owned().into(),
    }
}

/// Fast retries, no request timeout (see `with_request_timeout`), a generous rate.
fn client(sim: &HigherLogicSim) -> HigherLogicClient {
    client_with(sim, creds(sim), 6_000)
}

fn client_with(
    sim: &HigherLogicSim,
    creds: HigherLogicCredentials,
    per_minute: u32,
) -> HigherLogicClient {
    let cfg = HigherLogicConfig {
        base_url: sim.base_url(),
        max_calls_per_minute: per_minute,
    };
    HigherLogicClient::new(&cfg, creds, true)
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

#[tokio::test]
async fn pushes_450_members_in_3_calls_with_results_in_order() {
    let sim = sim().await;
    let client = client(&sim);
    let input = members(450);
    let results = client.push_contacts(&input).await.unwrap();

    assert_eq!(client.calls_made(), 3);
    assert_eq!(sim.counters().contactinfo_calls, 3);
    assert_eq!(sim.counters().records_received, 450);
    assert_eq!(results.len(), 450);
    for (result, member) in results.iter().zip(&input) {
        assert_eq!(result.key, member.legacy_contact_key.as_str());
        assert_eq!(result.outcome, Ok(()));
    }
    let stored = sim.member(key(7).as_str()).unwrap();
    assert_eq!(stored["FirstName"], "First7");
    assert_eq!(
        stored["SecurityGroups"],
        json!([{"GroupKey": "HL_Member_Type__c:Gold", "GroupName": "Gold"}])
    );
    assert_eq!(stored["UpdatedOn"], "2026-11-24T10:00:00.000Z");
}

#[tokio::test]
async fn an_empty_push_makes_no_call() {
    let sim = sim().await;
    let client = client(&sim);
    assert!(client.push_contacts(&[]).await.unwrap().is_empty());
    assert_eq!(client.calls_made(), 0);
}

#[tokio::test]
async fn a_failing_record_is_reported_alone() {
    let sim = sim().await;
    sim.fail_records([key(1).as_str()]);
    let client = client(&sim);
    let results = client.push_contacts(&members(3)).await.unwrap();
    assert!(results[0].is_ok());
    let message = results[1].outcome.as_ref().unwrap_err();
    assert!(message.contains("simulated failure"), "{message}");
    assert!(results[2].is_ok());
    assert_eq!(sim.members().len(), 2);
}

#[tokio::test]
async fn a_deleted_member_and_a_repeat_push_are_accepted_by_the_api() {
    let sim = sim().await;
    let client = client(&sim);
    client.push_contacts(&members(1)).await.unwrap();
    let again = client.push_contacts(&members(1)).await.unwrap();
    assert!(again[0].is_ok());
    assert!(!sim.history(key(0).as_str()).unwrap().last_push_changed);

    let gone = Member::deleted(key(0), None);
    let results = client.push_contacts(&[gone]).await.unwrap();
    assert_eq!(results[0].outcome, Ok(()));
    let stored = sim.member(key(0).as_str()).unwrap();
    assert_eq!(stored["IsDeleted"], true);
    assert_eq!(stored["IsActive"], false);
    assert_eq!(stored["SecurityGroups"], json!([]));
    assert_eq!(stored["UpdatedOn"], serde_json::Value::Null);
}

#[tokio::test(start_paused = true)]
async fn waits_for_retry_after_then_succeeds() {
    let sim = sim().await;
    sim.throttle_next_calls(1, 3);
    let client = client(&sim);
    let start = Instant::now();
    let results = client.push_contacts(&members(2)).await.unwrap();
    assert!(results.iter().all(|r| r.is_ok()));
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
    let error = client.push_contacts(&members(1)).await.unwrap_err();
    assert!(
        matches!(error, HlError::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(3_600))
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
    client.push_contacts(&members(400)).await.unwrap();
    let error = client.push_contacts(&members(1)).await.unwrap_err();
    assert!(matches!(error, HlError::Throttled { .. }), "{error}");
    assert_eq!(sim.counters().throttled, 1);
}

#[tokio::test]
async fn a_503_burst_is_retried_until_it_passes() {
    let sim = sim().await;
    sim.fail_next_calls(3);
    let client = client(&sim);
    let results = client.push_contacts(&members(5)).await.unwrap();
    assert!(results.iter().all(|r| r.is_ok()));
    assert_eq!(client.calls_made(), 4);
    assert_eq!(sim.counters().faults_served, 3);
}

#[tokio::test]
async fn a_longer_outage_ends_with_a_retryable_error() {
    let sim = sim().await;
    sim.fail_next_calls(10);
    let client = client(&sim);
    let error = client.push_contacts(&members(1)).await.unwrap_err();
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
async fn rejected_credentials_are_not_retried() {
    let sim = sim().await;
    let wrong_key = HigherLogicCredentials {
        tenant_code: sim.tenant_code().to_owned(),
        api_key: "not-the-key".to_owned().into(),
    };
    let client = client_with(&sim, wrong_key, 6_000);
    let error = client.push_contacts(&members(1)).await.unwrap_err();
    assert!(
        matches!(error, HlError::Rejected { status: 401, .. }),
        "{error}"
    );
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("api_key"));
    assert_eq!(client.calls_made(), 1);

    let wrong_tenant = HigherLogicCredentials {
        tenant_code: "another-tenant".to_owned(),
        api_key: sim.api_key().to_owned().into(),
    };
    let client = client_with(&sim, wrong_tenant, 6_000);
    let error = client
        .email_preferences_since(Utc::now())
        .await
        .unwrap_err();
    assert!(
        matches!(error, HlError::Rejected { status: 403, .. }),
        "{error}"
    );
    assert_eq!(sim.counters().auth_rejected, 2);
    assert!(sim.members().is_empty());
}

#[tokio::test]
async fn an_unreachable_server_is_a_retryable_transport_error() {
    // A socket bound but not listening holds the port (no other test can take it) and refuses
    // connections.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let cfg = HigherLogicConfig {
        base_url: format!("http://{}/v2", socket.local_addr().unwrap()),
        max_calls_per_minute: 6_000,
    };
    let creds = HigherLogicCredentials {
        tenant_code: "t".into(),
        api_key: "k".to_owned().into(),
    };
    let client = HigherLogicClient::new(&cfg, creds, true)
        .unwrap()
        .with_retry_policy(RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            ..RetryPolicy::default()
        });
    let error = client.push_contacts(&members(1)).await.unwrap_err();
    assert!(
        matches!(error, HlError::Transport { attempts: 4, .. }),
        "{error}"
    );
    assert!(error.is_retryable());
    assert_eq!(client.calls_made(), 4);
}

#[tokio::test(start_paused = true)]
async fn the_rate_limiter_spaces_calls_in_virtual_time() {
    let sim = sim().await;
    // 60 a minute: one call a second. 450 records are 3 calls: the 3rd goes 2 s after the 1st.
    let client = client_with(&sim, creds(&sim), 60);
    let start = Instant::now();
    client.push_contacts(&members(450)).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(client.calls_made(), 3);
}

/// A limiter that counts permissions, to show every call (retries too) asks for one.
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
    let limiter = Arc::new(Counting {
        granted: AtomicU64::new(0),
    });
    let client = client(&sim).with_rate_limiter(limiter.clone());
    client.push_contacts(&members(250)).await.unwrap();
    assert_eq!(client.calls_made(), 3);
    assert_eq!(limiter.granted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn events_and_registrations_round_trip() {
    let sim = sim().await;
    let client = client(&sim);
    let event_key: SfId = "701000000000001AAA".parse().unwrap();
    let events = [Event {
        event_key: event_key.clone(),
        name: Some("Annual Meeting".into()),
        start_date: NaiveDate::from_ymd_opt(2026, 12, 1),
        end_date: None,
        is_deleted: false,
    }];
    let results = client.push_events(&events).await.unwrap();
    assert_eq!(results[0].key, event_key.as_str());
    assert!(results[0].is_ok());
    let stored = sim.event(event_key.as_str()).unwrap();
    assert_eq!(stored["StartDate"], "2026-12-01");
    assert_eq!(stored["EndDate"], serde_json::Value::Null);

    let registration = |event: &SfId, status: Option<&str>, is_deleted: bool| Registration {
        event_key: event.clone(),
        legacy_contact_key: key(1),
        status: status.map(Into::into),
        is_deleted,
    };
    let unknown_event: SfId = "701000000000002AAA".parse().unwrap();
    let results = client
        .push_registrations(&[
            registration(&event_key, Some("Registered"), false),
            registration(&unknown_event, Some("Registered"), false),
        ])
        .await
        .unwrap();
    assert_eq!(results[0].key, format!("{event_key}:{}", key(1)));
    assert!(results[0].is_ok());
    let message = results[1].outcome.as_ref().unwrap_err();
    assert!(message.contains("unknown EventKey"), "{message}");

    // A removal may carry no status.
    let results = client
        .push_registrations(&[registration(&event_key, None, true)])
        .await
        .unwrap();
    assert!(results[0].is_ok());
    let registrations = sim.registrations();
    assert_eq!(registrations.len(), 1);
    let stored = &registrations[&(event_key.to_string(), key(1).to_string())];
    assert_eq!(stored["IsDeleted"], true);
}

#[tokio::test]
async fn raw_wire_records_can_be_pushed_too() {
    let sim = sim().await;
    let client = client(&sim);
    let events = [EventRecord {
        event_key: "701000000000003AAA".into(),
        name: None,
        start_date: None,
        end_date: None,
        is_deleted: true,
    }];
    assert!(client.push_event_records(&events).await.unwrap()[0].is_ok());
    let registrations = [RegistrationRecord {
        event_key: "701000000000003AAA".into(),
        legacy_contact_key: key(2).to_string(),
        status: Some("Attended".into()),
        is_deleted: false,
    }];
    let results = client
        .push_registration_records(&registrations)
        .await
        .unwrap();
    assert!(results[0].is_ok());
}

#[tokio::test]
async fn email_preferences_since() {
    let sim = sim().await;
    let client = client(&sim);
    let t0 = Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap();
    sim.set_email_opt_out_at(key(1).as_str(), true, t0);
    sim.set_email_opt_out_at(key(2).as_str(), true, t0 + chrono::Duration::minutes(5));
    sim.set_email_opt_out_at(
        "not-a-salesforce-id",
        true,
        t0 + chrono::Duration::minutes(6),
    );

    let changes = client.email_preferences_since(t0).await.unwrap();
    assert_eq!(changes.len(), 1, "strictly after since; bad keys skipped");
    assert_eq!(changes[0].key, key(2));
    assert!(changes[0].email_opt_out);
    assert_eq!(changes[0].updated_on, t0 + chrono::Duration::minutes(5));
    let all = client
        .email_preferences_since(t0 - chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
}

#[tokio::test]
async fn construction_checks_its_settings_and_hides_the_key() {
    let sim = sim().await;
    let cfg = HigherLogicConfig {
        base_url: sim.base_url(),
        max_calls_per_minute: 180,
    };
    let error = HigherLogicClient::new(&cfg, creds(&sim), false).unwrap_err();
    assert!(error.to_string().contains("https"), "{error}");
    assert!(!error.is_retryable());

    let zero = HigherLogicConfig {
        max_calls_per_minute: 0,
        ..cfg.clone()
    };
    assert!(matches!(
        HigherLogicClient::new(&zero, creds(&sim), true),
        Err(HlError::Config { .. })
    ));

    let client = HigherLogicClient::new(&cfg, creds(&sim), true).unwrap();
    let printed = format!("{client:?} {:?}", creds(&sim));
    assert!(!printed.contains(sim.api_key()), "{printed}");
}
