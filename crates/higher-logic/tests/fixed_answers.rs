//! The client against answers written by hand from SPEC.md §6, served by a tiny server that
//! ignores what it is sent: this pins the client to the documented format, not to whatever the
//! simulator happens to do.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use chrono::{TimeZone, Utc};
use hlsync_core::{Address, HigherLogicConfig, Member, SfId};
use hlsync_higher_logic::{HigherLogicClient, HigherLogicCredentials, HlError, RetryPolicy};

const KEY_1: &str = "003000000000001AAA";
const KEY_2: &str = "003000000000002AAA";
const KEY_3: &str = "003000000000003AAA";

/// Results out of order, one record missing, one error.
const CONTACT_ANSWER: &str = r#"{"results":[
  {"LegacyContactKey":"003000000000002AAA","status":"error","message":"EmailAddress is not a valid address"},
  {"LegacyContactKey":"003000000000001AAA","status":"ok","message":""}
]}"#;

const PREFERENCES_ANSWER: &str = r#"{"changes":[
  {"LegacyContactKey":"003000000000001AAA","EmailOptOut":true,"UpdatedOn":"2026-11-24T10:00:00.000Z"},
  {"LegacyContactKey":"003000000000002AAA","EmailOptOut":false,"UpdatedOn":"2026-11-24T11:30:00.000Z"}
]}"#;

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

fn client(addr: SocketAddr) -> HigherLogicClient {
    let cfg = HigherLogicConfig {
        base_url: format!("http://{addr}/v2"),
        max_calls_per_minute: 6_000,
    };
    let creds = HigherLogicCredentials {
        tenant_code: "tenant".into(),
        api_key: "key".to_owned().into(),
    };
    HigherLogicClient::new(&cfg, creds, true)
        .unwrap()
        .with_retry_policy(RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
            ..RetryPolicy::default()
        })
}

fn member(key: &str) -> Member {
    let id: SfId = key.parse().unwrap();
    Member {
        address: Address::default(),
        email_address: Some("x@example.org".into()),
        is_active: true,
        is_deleted: false,
        ..Member::deleted(id, None)
    }
}

#[tokio::test]
async fn per_record_results_follow_the_input_whatever_the_answer_order() {
    let addr = serve(Router::new().route(
        "/v2/contactinfo",
        post(|headers: HeaderMap| async move {
            // The credentials travel as the documented headers.
            assert_eq!(headers["x-api-key"], "key");
            assert_eq!(headers["x-tenant-code"], "tenant");
            (StatusCode::OK, CONTACT_ANSWER)
        }),
    ))
    .await;
    let results = client(addr)
        .push_contacts(&[member(KEY_1), member(KEY_2), member(KEY_3)])
        .await
        .unwrap();
    assert_eq!(results[0].key, KEY_1);
    assert_eq!(results[0].outcome, Ok(()));
    assert_eq!(
        results[1].outcome,
        Err("EmailAddress is not a valid address".into())
    );
    assert_eq!(results[2].key, KEY_3);
    assert!(
        results[2]
            .outcome
            .as_ref()
            .unwrap_err()
            .contains("no result")
    );
}

#[tokio::test]
async fn email_preference_changes_are_read() {
    let addr = serve(Router::new().route(
        "/v2/emailpreferences",
        get(|| async { (StatusCode::OK, PREFERENCES_ANSWER) }),
    ))
    .await;
    let changes = client(addr)
        .email_preferences_since(Utc::now())
        .await
        .unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0].key.as_str(), KEY_1);
    assert!(changes[0].email_opt_out);
    assert_eq!(
        changes[1].updated_on,
        Utc.with_ymd_and_hms(2026, 11, 24, 11, 30, 0).unwrap()
    );
}

#[tokio::test]
async fn an_answer_in_another_format_is_not_retried() {
    let addr = serve(Router::new().route(
        "/v2/contactinfo",
        post(|| async { (StatusCode::OK, "<html>login</html>") }),
    ))
    .await;
    let client = client(addr);
    let error = client.push_contacts(&[member(KEY_1)]).await.unwrap_err();
    assert!(matches!(error, HlError::BadResponse { .. }), "{error}");
    assert!(!error.is_retryable());
    assert_eq!(client.calls_made(), 1);
}

#[tokio::test]
async fn a_wrong_base_url_says_so() {
    let addr = serve(Router::new()).await;
    let client = client(addr);
    let error = client.push_contacts(&[member(KEY_1)]).await.unwrap_err();
    assert!(
        matches!(error, HlError::UnexpectedStatus { status: 404, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("base_url"));
    assert_eq!(client.calls_made(), 1);
}

#[tokio::test]
async fn a_400_is_a_wire_format_problem_and_not_retried() {
    let addr = serve(Router::new().route(
        "/v2/contactinfo",
        post(|| async {
            (
                StatusCode::BAD_REQUEST,
                r#"{"message":"the body must be a JSON array of records"}"#,
            )
        }),
    ))
    .await;
    let client = client(addr);
    let error = client.push_contacts(&[member(KEY_1)]).await.unwrap_err();
    assert!(matches!(error, HlError::BadRequest { .. }), "{error}");
    assert!(error.to_string().contains("JSON array"));
    assert_eq!(client.calls_made(), 1);
}
