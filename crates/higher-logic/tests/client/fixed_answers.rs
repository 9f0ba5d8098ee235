//! The client against a scripted server (`hlsync_sim::scripted`, not the simulator) that records
//! every request and answers by hand-written rules from SPEC.md §6: this pins the client to the
//! documented format and answers, not to whatever the simulator happens to do.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use hlsync_core::{
    Address, Email, Group, GroupKey, HigherLogicConfig, Meeting, Member, Phone, SfId,
};
use hlsync_higher_logic::{
    HigherLogicClient, HigherLogicCredentials, HlError, RecordResult, RetryPolicy, Unlimited,
};
use hlsync_sim::scripted::{Method, Reply, ScriptedServer, Seen, StatusCode};
use serde_json::{Value, json};

const API_KEY: &str = "hl-push-key-123";

/// What a push sends, read from a request the server saw.
trait PushBody {
    /// The body as the JSON array a push sends.
    fn records(&self) -> Vec<Value>;
    /// The `ContactId` of each `/contactinfo` element of the body.
    fn contact_ids(&self) -> Vec<String>;
}

impl PushBody for Seen {
    fn records(&self) -> Vec<Value> {
        serde_json::from_slice(&self.body).expect("a push body is a JSON array")
    }

    fn contact_ids(&self) -> Vec<String> {
        self.records()
            .iter()
            .map(|r| {
                r["ContactDetails"]["ContactId"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }
}

fn config(addr: SocketAddr) -> HigherLogicConfig {
    HigherLogicConfig {
        base_url: format!("http://{addr}/v2"),
        max_calls_per_minute: 60_000,
        batch_size: 200,
        email_preferences_url: None,
    }
}

fn client_with(cfg: &HigherLogicConfig) -> HigherLogicClient {
    let creds = HigherLogicCredentials {
        api_key: API_KEY.to_owned().into(),
    };
    HigherLogicClient::new(cfg, creds, true)
        .unwrap()
        .with_rate_limiter(Arc::new(Unlimited))
        .with_retry_policy(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            max_retry_after: Duration::from_mins(1),
        })
}

fn client(server: &ScriptedServer) -> HigherLogicClient {
    client_with(&config(server.addr))
}

fn key(i: usize) -> SfId {
    // All-digit ids have the case-safe suffix AAA.
    format!("003{i:012}AAA").parse().unwrap()
}

fn member(i: usize) -> Member {
    Member {
        contact_id: key(i),
        first_name: Some(format!("First{i}")),
        last_name: Some("Member".into()),
        primary_email: Some(format!("m{i}@example.org")),
        organization_name: None,
        title: None,
        is_member: true,
        do_not_email: false,
        groups: vec![Group::new(
            "Membership",
            GroupKey::field_value("HL_Member_Type__c", "Gold"),
            "Gold",
        )],
        addresses: Vec::new(),
        phones: Vec::new(),
        emails: vec![Email {
            address: format!("m{i}@example.org"),
            email_type: "Primary Email".into(),
            is_preferred: true,
        }],
        is_deleted: false,
        modstamp: None,
    }
}

fn members(n: usize) -> Vec<Member> {
    (0..n).map(member).collect()
}

/// The key travels in `ApiKey` and nowhere else: a request carries no header but these.
fn assert_only_expected_headers(request: &Seen) {
    const EXPECTED: [&str; 6] = [
        "accept",
        "apikey",
        "content-length",
        "content-type",
        "host",
        "user-agent",
    ];
    for name in request.headers.keys() {
        assert!(
            EXPECTED.contains(&name.as_str()),
            "unexpected header {name} on {} {}",
            request.method,
            request.path
        );
    }
}

fn outcomes(results: &[RecordResult]) -> Vec<(&str, Option<&str>)> {
    results
        .iter()
        .map(|r| (r.key.as_str(), r.outcome.as_ref().err().map(String::as_str)))
        .collect()
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one request checked against each row of SPEC §6's table"
)]
async fn pushes_are_json_arrays_with_the_api_key_header() {
    let server = ScriptedServer::start(|_, _| Reply::new(200, "")).await;
    let client = client(&server);
    let campaign: SfId = "701000000000001AAA".parse().unwrap();
    let full = Member {
        organization_name: Some("Analytical Engines".into()),
        title: Some("Countess".into()),
        do_not_email: true,
        groups: vec![
            Group::new(
                "Membership",
                GroupKey::field_value("HL_Member_Type__c", "Gold"),
                "Gold",
            ),
            Group {
                group_type: "Event".into(),
                key: GroupKey::event(&campaign),
                name: "Annual Conference".into(),
                role: "Attended".into(),
            },
        ],
        addresses: vec![Address {
            line1: Some("1 Main St".into()),
            line2: Some("Suite 2".into()),
            city: Some("Toronto".into()),
            state_province: Some("ON".into()),
            postal_code: None,
            country_code: Some("CA".into()),
            address_type: "Main".into(),
            is_primary: true,
        }],
        phones: vec![Phone {
            number: "416-555-0100".into(),
            phone_type: "Mobile".into(),
            is_preferred: true,
        }],
        ..member(1)
    };
    let deleted = Member::deleted(key(2), None);
    let results = client.push_members(&[full, deleted]).await.unwrap();
    assert_eq!(
        outcomes(&results),
        [(key(1).as_str(), None), (key(2).as_str(), None)]
    );

    let meetings = [
        Meeting {
            meeting_id: campaign.clone(),
            title: Some("Annual Conference".into()),
            description: None,
            meeting_type: Some("Event".into()),
            begin_date: NaiveDate::from_ymd_opt(2026, 12, 1),
            end_date: NaiveDate::from_ymd_opt(2026, 12, 3),
            is_deleted: false,
        },
        Meeting::deleted("701000000000002AAA".parse().unwrap()),
    ];
    let results = client.push_meetings(&meetings).await.unwrap();
    assert_eq!(
        outcomes(&results),
        [("701000000000001AAA", None), ("701000000000002AAA", None)]
    );

    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.header("ApiKey"), Some(API_KEY));
        assert_eq!(request.header("Content-Type"), Some("application/json"));
        assert_only_expected_headers(request);
    }
    assert_eq!(seen[0].path, "/v2/contactinfo");
    let expected: Value = serde_json::from_str(
        r#"[{"ContactDetails": {"ContactId": "003000000000001AAA", "FirstName": "First1",
                                "LastName": "Member", "PrimaryEmailAddress": "m1@example.org",
                                "OrganizationName": "Analytical Engines", "Title": "Countess",
                                "IsMember": true, "IsOrganization": false, "DoNotEmail": true,
                                "IsDeleted": false},
             "Groups": [{"GroupId": "HL_Member_Type__c:Gold", "GroupName": "Gold",
                         "GroupType": "Membership", "Role": ""},
                        {"GroupId": "701000000000001AAA", "GroupName": "Annual Conference",
                         "GroupType": "Event", "Role": "Attended"}],
             "Addresses": [{"AddressLine1": "1 Main St", "AddressLine2": "Suite 2",
                            "City": "Toronto", "StateProvince": "ON", "PostalCode": null,
                            "CountryCode": "CA", "AddressType": "Main", "IsPrimary": true}],
             "PhoneNumbers": [{"FormattedNumber": "416-555-0100", "PhoneType": "Mobile",
                               "IsPreferred": true}],
             "EmailAddresses": [{"EmailAddress": "m1@example.org", "EmailType": "Primary Email",
                                 "IsPreferred": true}]},
            {"ContactDetails": {"ContactId": "003000000000002AAA", "IsDeleted": true}}]"#,
    )
    .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&seen[0].body).unwrap(),
        expected
    );
    assert_eq!(seen[1].path, "/v2/meeting");
    assert_eq!(
        serde_json::from_slice::<Value>(&seen[1].body).unwrap(),
        json!([{"MeetingId": "701000000000001AAA", "Title": "Annual Conference",
                "Description": null, "MeetingType": "Event",
                "BeginDate": "2026-12-01T00:00:00.000Z", "EndDate": "2026-12-03T00:00:00.000Z",
                "IsDeleted": false},
               {"MeetingId": "701000000000002AAA", "IsDeleted": true}])
    );
    assert_eq!(client.calls_made(), 2);
}

/// Higher Logic publishes no per-record result body: whatever a 2xx carries, it accepts the
/// whole request, even a body that reads like an error report.
#[tokio::test]
async fn a_2xx_accepts_every_record_whatever_its_body() {
    let answers: [(u16, &str); 5] = [
        (200, ""),
        (
            200,
            r#"{"errors":[{"ContactId":"003000000000001AAA","message":"ignored"}]}"#,
        ),
        (200, "<html>thanks</html>"),
        (202, "queued"),
        (204, ""),
    ];
    for (status, body) in answers {
        let server = ScriptedServer::start(move |_, _| Reply::new(status, body)).await;
        let client = client(&server);
        let results = client.push_members(&members(3)).await.unwrap();
        assert_eq!(results.len(), 3);
        assert!(results.iter().all(RecordResult::is_ok), "{status} {body:?}");
        assert_eq!(client.calls_made(), 1);
    }
}

/// The server refuses (400, with a message) any request that holds one of `refused`.
fn refusing(refused: &[SfId]) -> impl Fn(&Seen, &str) -> Reply + Send + Sync + 'static {
    let refused: Vec<String> = refused.iter().map(|k| k.as_str().to_owned()).collect();
    move |seen: &Seen, _: &str| {
        let ids = seen.contact_ids();
        match refused.iter().find(|r| ids.contains(r)) {
            Some(bad) => Reply::new(
                400,
                &json!({"Message": format!("PrimaryEmailAddress of {bad} is not a valid email address")})
                    .to_string(),
            ),
            None => Reply::new(200, ""),
        }
    }
}

/// Every record that came back Ok was in a request the server answered with a 2xx.
fn assert_accepted_by_the_server(results: &[RecordResult], seen: &[Seen]) {
    let accepted: HashSet<String> = seen
        .iter()
        .filter(|s| s.status.is_success())
        .flat_map(Seen::contact_ids)
        .collect();
    for result in results.iter().filter(|r| r.is_ok()) {
        assert!(
            accepted.contains(&result.key),
            "{} is Ok but no accepted request held it",
            result.key
        );
    }
}

#[tokio::test]
async fn one_refused_record_in_200_is_found_by_halving() {
    let bad = key(137);
    let server = ScriptedServer::start(refusing(std::slice::from_ref(&bad))).await;
    let client = client(&server);
    let input = members(200);
    let results = client.push_members(&input).await.unwrap();

    let keys: Vec<&str> = results.iter().map(|r| r.key.as_str()).collect();
    let expected_keys: Vec<&str> = input.iter().map(|m| m.contact_id.as_str()).collect();
    assert_eq!(keys, expected_keys, "one result per record, in input order");
    let failed: Vec<&RecordResult> = results.iter().filter(|r| !r.is_ok()).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].key, bad.as_str());
    assert_eq!(
        failed[0].outcome,
        Err(format!(
            "PrimaryEmailAddress of {bad} is not a valid email address"
        ))
    );

    let seen = server.seen();
    assert_accepted_by_the_server(&results, &seen);
    assert!(seen.len() <= 17, "{} requests", seen.len());
    assert_eq!(client.calls_made(), seen.len() as u64);
    // The first request carried the whole batch; one refused the record alone.
    assert_eq!(seen[0].contact_ids().len(), 200);
    assert!(
        seen.iter()
            .any(|s| s.status == StatusCode::BAD_REQUEST && s.contact_ids() == [bad.as_str()])
    );
}

#[tokio::test]
async fn two_refused_records_in_one_batch_are_both_found() {
    for (a, b) in [(10, 170), (40, 41), (0, 199)] {
        let refused = [key(a), key(b)];
        let server = ScriptedServer::start(refusing(&refused)).await;
        let client = client(&server);
        let results = client.push_members(&members(200)).await.unwrap();
        let failed: Vec<&str> = results
            .iter()
            .filter(|r| !r.is_ok())
            .map(|r| r.key.as_str())
            .collect();
        assert_eq!(failed, [key(a).as_str(), key(b).as_str()]);
        for result in results.iter().filter(|r| !r.is_ok()) {
            assert!(result.outcome.as_ref().unwrap_err().contains(&result.key));
        }
        let seen = server.seen();
        assert_accepted_by_the_server(&results, &seen);
        assert!(seen.len() <= 33, "{a},{b}: {} requests", seen.len());
    }
}

#[tokio::test]
async fn a_refused_meeting_is_found_too() {
    let server = ScriptedServer::start(|seen: &Seen, _: &str| {
        let text = String::from_utf8_lossy(&seen.body).into_owned();
        if text.contains("701000000000002AAA") {
            Reply::new(400, r#"{"Message":"BeginDate is after EndDate"}"#)
        } else {
            Reply::new(200, "")
        }
    })
    .await;
    let client = client(&server);
    let meetings: Vec<Meeting> = (1..=3)
        .map(|i| Meeting::deleted(format!("70100000000000{i}AAA").parse().unwrap()))
        .collect();
    let results = client.push_meetings(&meetings).await.unwrap();
    assert_eq!(
        outcomes(&results),
        [
            ("701000000000001AAA", None),
            ("701000000000002AAA", Some("BeginDate is after EndDate")),
            ("701000000000003AAA", None),
        ]
    );
    // [1,2,3] refused → [1,2] refused → [1] ok, [2] refused → [3] ok.
    assert_eq!(client.calls_made(), 5);
}

#[tokio::test]
async fn batch_size_splits_requests_in_order() {
    let server = ScriptedServer::start(|_, _| Reply::new(200, "")).await;
    let client = client(&server);
    let input = members(450);
    let results = client.push_members(&input).await.unwrap();
    assert_eq!(results.len(), 450);
    assert!(results.iter().all(RecordResult::is_ok));
    let seen = server.seen();
    let sizes: Vec<usize> = seen.iter().map(|s| s.contact_ids().len()).collect();
    assert_eq!(sizes, [200, 200, 50]);
    let sent: Vec<String> = seen.iter().flat_map(Seen::contact_ids).collect();
    let expected: Vec<String> = input
        .iter()
        .map(|m| m.contact_id.as_str().to_owned())
        .collect();
    assert_eq!(sent, expected);

    // A smaller batch_size from the config.
    let server = ScriptedServer::start(|_, _| Reply::new(200, "")).await;
    let client = client_with(&HigherLogicConfig {
        batch_size: 50,
        ..config(server.addr)
    });
    client.push_members(&members(120)).await.unwrap();
    let sizes: Vec<usize> = server
        .seen()
        .iter()
        .map(|s| s.contact_ids().len())
        .collect();
    assert_eq!(sizes, [50, 50, 20]);
}

#[tokio::test]
async fn an_empty_push_makes_no_call() {
    let server = ScriptedServer::start(|_, _| Reply::new(200, "")).await;
    let client = client(&server);
    assert_eq!(client.push_members(&[]).await.unwrap(), []);
    assert_eq!(client.push_meetings(&[]).await.unwrap(), []);
    assert_eq!(client.calls_made(), 0);
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn a_refused_key_stops_after_one_call() {
    for status in [401, 403] {
        let server = ScriptedServer::start(move |_, _| {
            Reply::new(status, r#"{"Message":"Invalid API key"}"#)
        })
        .await;
        let client = client(&server);
        let error = client.push_members(&members(450)).await.unwrap_err();
        assert!(
            matches!(&error, HlError::Rejected { status: s, .. } if *s == status),
            "{error}"
        );
        assert!(error.is_credentials_rejected());
        assert!(!error.is_retryable());
        let text = error.to_string();
        assert!(text.contains("Invalid API key"), "{text}");
        assert!(text.contains("higher_logic.api_key"), "{text}");
        assert_eq!(client.calls_made(), 1);
        assert_eq!(server.seen().len(), 1);
    }
}

/// On tokio's paused clock: the client sleeps through `Retry-After` (virtual time moves by it)
/// and then succeeds.
#[tokio::test(start_paused = true)]
async fn a_429_waits_for_retry_after_then_succeeds() {
    let server = ScriptedServer::start(|req, _| {
        if req.number == 0 {
            Reply::new(429, "").with("Retry-After", "20")
        } else {
            Reply::new(200, "")
        }
    })
    .await;
    let client = client(&server).with_request_timeout(None);
    let start = tokio::time::Instant::now();
    let results = client.push_members(&members(2)).await.unwrap();
    assert!(results.iter().all(RecordResult::is_ok));
    assert!(
        start.elapsed() >= Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(client.calls_made(), 2);
}

#[tokio::test]
async fn a_429_asking_too_long_a_wait_ends_the_push_at_once() {
    let server =
        ScriptedServer::start(|_, _| Reply::new(429, "").with("Retry-After", "3600")).await;
    let client = client(&server);
    let error = client.push_members(&members(2)).await.unwrap_err();
    assert!(
        matches!(error, HlError::Throttled { retry_after: Some(d), .. } if d == Duration::from_hours(1)),
        "{error}"
    );
    assert!(error.is_retryable());
    assert_eq!(client.calls_made(), 1);
}

#[tokio::test]
async fn a_503_or_408_is_retried() {
    for status in [503, 408, 500] {
        let server = ScriptedServer::start(move |req, _| {
            if req.number == 0 {
                Reply::new(status, "busy")
            } else {
                Reply::new(200, "")
            }
        })
        .await;
        let client = client(&server);
        let results = client.push_members(&members(3)).await.unwrap();
        assert!(results.iter().all(RecordResult::is_ok), "{status}");
        assert_eq!(client.calls_made(), 2, "{status}");
    }
}

#[tokio::test]
async fn a_server_that_stays_down_is_a_retryable_error() {
    let server = ScriptedServer::start(|_, _| Reply::new(502, "Bad Gateway")).await;
    let client = client(&server);
    let error = client.push_members(&members(3)).await.unwrap_err();
    assert!(
        matches!(
            error,
            HlError::Unavailable {
                status: 502,
                attempts: 3,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.is_retryable());
    assert_eq!(client.calls_made(), 3, "max_attempts");
}

#[tokio::test]
async fn an_unreachable_server_is_a_retryable_error_naming_base_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = client_with(&config(addr));
    let error = client.push_members(&members(1)).await.unwrap_err();
    assert!(
        matches!(error, HlError::Transport { attempts: 3, .. }),
        "{error}"
    );
    assert!(error.is_retryable());
    assert!(error.to_string().contains("higher_logic.base_url"));
    assert_eq!(client.calls_made(), 3);
}

#[tokio::test]
async fn any_other_status_is_fatal_and_names_base_url() {
    let server = ScriptedServer::start(|_, _| Reply::new(404, "Not Found")).await;
    let client = client(&server);
    let error = client.push_members(&members(3)).await.unwrap_err();
    assert!(
        matches!(error, HlError::UnexpectedStatus { status: 404, .. }),
        "{error}"
    );
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("higher_logic.base_url"));
    assert_eq!(client.calls_made(), 1);
}

fn feed_config(server: &ScriptedServer, path_and_query: &str) -> HigherLogicConfig {
    HigherLogicConfig {
        email_preferences_url: Some(format!("http://{}{path_and_query}", server.addr)),
        ..config(server.addr)
    }
}

#[tokio::test]
async fn the_email_preference_feed_is_asked_since_an_instant_and_read() {
    let server = ScriptedServer::start(|_, _| {
        Reply::new(
            200,
            r#"{"changes":[
                {"ContactId":"003000000000001AAA","DoNotEmail":true,"UpdatedOn":"2026-11-24T10:00:00.000Z"},
                {"ContactId":"not an id","DoNotEmail":true,"UpdatedOn":"2026-11-24T10:00:00.000Z"},
                {"ContactId":"003000000000003AAA","DoNotEmail":true,"UpdatedOn":"last tuesday"},
                {"ContactId":"003000000000002","DoNotEmail":false,"UpdatedOn":"2026-11-24T06:30:00.000-05:00"}]}"#,
        )
    })
    .await;
    let client = client_with(&feed_config(&server, "/relay/prefs?tenant=acme"));
    assert!(client.has_email_preferences());
    let since = Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap()
        + chrono::Duration::microseconds(123_456);
    let changes = client.email_preferences_since(since).await.unwrap();

    // Unreadable entries are skipped; the others are read, the 15-character Id made 18.
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0].key.as_str(), "003000000000001AAA");
    assert!(changes[0].do_not_email);
    assert_eq!(
        changes[0].updated_on,
        Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap()
    );
    assert_eq!(changes[1].key.as_str(), "003000000000002AAA");
    assert!(!changes[1].do_not_email);
    assert_eq!(
        changes[1].updated_on,
        Utc.with_ymd_and_hms(2026, 11, 24, 11, 30, 0).unwrap()
    );

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::GET);
    assert_eq!(seen[0].path, "/relay/prefs");
    assert_eq!(seen[0].header("ApiKey"), Some(API_KEY));
    assert_eq!(seen[0].header("Content-Type"), None, "a GET has no body");
    assert_only_expected_headers(&seen[0]);
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(seen[0].query.as_deref().unwrap().as_bytes())
            .into_owned()
            .collect();
    assert_eq!(
        query,
        [
            ("tenant".to_owned(), "acme".to_owned()),
            ("since".to_owned(), "2026-11-24T09:00:00.123Z".to_owned()),
        ]
    );
    assert_eq!(client.calls_made(), 1);
}

#[tokio::test]
async fn no_feed_configured_means_no_call() {
    let server = ScriptedServer::start(|_, _| Reply::new(200, r#"{"changes":[]}"#)).await;
    let client = client(&server);
    assert!(!client.has_email_preferences());
    let changes = client.email_preferences_since(Utc::now()).await.unwrap();
    assert!(changes.is_empty());
    assert_eq!(client.calls_made(), 0);
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn a_feed_that_answers_wrongly_names_its_setting() {
    let server = ScriptedServer::start(|req, _| match req.number {
        0 => Reply::new(200, "<html>login</html>"),
        1 => Reply::new(404, "Not Found"),
        2 => Reply::new(400, r#"{"Message":"since is required"}"#),
        _ => Reply::new(401, "no"),
    })
    .await;
    let client = client_with(&feed_config(&server, "/prefs"));

    let error = client
        .email_preferences_since(Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(error, HlError::BadResponse { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("higher_logic.email_preferences_url")
    );

    for expected_status in [404, 400] {
        let error = client
            .email_preferences_since(Utc::now())
            .await
            .unwrap_err();
        assert!(
            matches!(&error, HlError::UnexpectedStatus { status, .. } if *status == expected_status),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("higher_logic.email_preferences_url")
        );
    }

    let error = client
        .email_preferences_since(Utc::now())
        .await
        .unwrap_err();
    assert!(error.is_credentials_rejected(), "{error}");
    assert_eq!(client.calls_made(), 4);
}
