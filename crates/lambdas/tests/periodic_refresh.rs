//! The periodic-refresh handler against moto and the simulators, without the Lambda runtime.

mod common;

use std::time::Duration;

use common::{Setup, context, deploy, emf_values, insert_contact, moto};
use hlsync_lambdas::LambdaError;
use hlsync_lambdas::periodic;
use hlsync_sync::SyncError;
use lambda_runtime::LambdaEvent;
use serde_json::json;

#[tokio::test]
async fn a_scheduled_run_fans_changes_out_under_the_execution_id() {
    moto();
    let d = deploy(Setup::default()).await;
    insert_contact(&d.sf, "Lovelace");
    insert_contact(&d.sf, "Hopper");
    // Past the settle time, so the window takes them.
    d.sf.advance(Duration::from_secs(120));
    let payload = json!({
        "scheduled_time": "2026-11-24T10:00:00Z",
        "execution_id": "exec-7"
    });

    let summary = periodic::handle(&d.rt, LambdaEvent::new(payload, context("req-1")))
        .await
        .expect("the run succeeds");

    assert_eq!(summary.run_id, "exec-7");
    assert_eq!(summary.changed, 2);
    assert_eq!(summary.sent, 2);
    assert!(summary.completed);
    assert!(summary.scheduled_time.is_some());
    assert!(summary.allotment_share_percent.is_some());
    let depth = d.queue.depth().await.expect("queue readable");
    assert_eq!(depth.visible, 2, "{depth:?}");
}

#[tokio::test]
async fn a_run_past_the_allotment_is_a_function_error_with_the_operator_message() {
    moto();
    let d = deploy(Setup::default()).await;
    insert_contact(&d.sf, "Lovelace");
    d.sf.advance(Duration::from_secs(120));
    // Default allotment 100,000 at share 0.5: 60,000 used is past hlsync's ceiling.
    d.sf.set_api_usage(60_000);

    let input = periodic::parse_schedule_input(&json!({}));
    let outcome = periodic::refresh(
        &d.rt,
        input,
        "req-2".into(),
        hlsync_lambdas::budget::Budget::from_context(&context("req-2")),
    )
    .await;

    match &outcome.result {
        Err(e @ LambdaError::Run(SyncError::Allotment(message))) => {
            assert_eq!(e.kind(), "hlsync.AllotmentReached");
            assert!(message.contains("max_allotment_share"), "{message}");
        }
        other => panic!("expected the allotment error, got {other:?}"),
    }
    assert_eq!(d.queue.depth().await.expect("queue readable").visible, 0);
    // The failed run still reports what it saw: usage past the alarm, no contact count.
    let values = emf_values(&outcome.emf);
    assert!(
        values["AllotmentShare"].as_f64() >= Some(60.0),
        "{values:?}"
    );
    assert!(!values.contains_key("ContactsChanged"), "{values:?}");
}
