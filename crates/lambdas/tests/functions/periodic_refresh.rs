//! The periodic-refresh handler against moto and the simulators, without the Lambda runtime.

use std::time::Duration;

use crate::common::{Setup, context, deploy, emf_values, insert_contact, moto};
use hlsync_lambdas::LambdaError;
use hlsync_lambdas::{member, periodic};
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
    d.sf.advance(Duration::from_mins(2));
    let payload = json!({
        "scheduled_time": "2026-11-24T10:00:00Z",
        "execution_id": "exec-7"
    });

    let summary = periodic::handle(&d.rt, LambdaEvent::new(payload, context("req-1")))
        .await
        .expect("the run succeeds");

    assert_eq!(summary.run_id, "exec-7");
    // The first run is the initial load (an Id scan), not a window.
    assert_eq!(summary.sent, 2);
    // One range message carries both Contacts.
    assert_eq!(summary.messages, 1);
    assert!(summary.completed);
    assert!(summary.scheduled_time.is_some());
    assert!(summary.allotment_share_percent.is_some());
    let depth = d.queue.depth().await.expect("queue readable");
    assert_eq!(depth.visible, 1, "{depth:?}");
}

#[tokio::test]
async fn a_run_past_the_allotment_is_a_function_error_with_the_operator_message() {
    moto();
    let d = deploy(Setup::default()).await;
    insert_contact(&d.sf, "Lovelace");
    d.sf.advance(Duration::from_mins(2));
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
    let values = emf_values(outcome.emf.as_deref());
    assert!(
        values["AllotmentShare"].as_f64() >= Some(60.0),
        "{values:?}"
    );
    assert!(!values.contains_key("ContactsChanged"), "{values:?}");
}

#[tokio::test]
async fn what_the_periodic_run_sends_the_member_function_pushes() {
    moto();
    let d = deploy(Setup::default()).await;
    let ada = insert_contact(&d.sf, "Lovelace");
    let grace = insert_contact(&d.sf, "Hopper");
    d.sf.advance(Duration::from_mins(2));

    // An EventBridge rule's Scheduled Event: no execution id, so the run is the request's.
    let scheduled_event = json!({
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-24T10:05:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/hlsync-periodic"],
        "detail": {}
    });
    let summary = periodic::handle(&d.rt, LambdaEvent::new(scheduled_event, context("req-p")))
        .await
        .expect("the periodic run succeeds");
    assert_eq!(summary.run_id, "req-p");
    let received = d
        .queue
        .receive(10, None, Duration::ZERO)
        .await
        .expect("queue readable");
    // The initial load: one range message for both Contacts.
    assert_eq!(received.len(), 1, "{received:?}");
    // The records as the SQS event source hands them to the member function.
    let records: Vec<_> = received
        .iter()
        .map(|m| json!({"messageId": m.message_id, "receiptHandle": m.receipt_handle, "body": m.body}))
        .collect();
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_value(json!({ "Records": records })).expect("an SQS event");

    let response = member::handle(&d.rt, LambdaEvent::new(event, context("req-m")))
        .await
        .unwrap_or_else(|never| match never {});

    assert!(response.batch_item_failures.is_empty());
    for id in [&ada, &grace] {
        let pushed = d.hl.member(id).expect("member pushed");
        assert_eq!(
            pushed["ContactDetails"]["ContactId"],
            id.as_str(),
            "{pushed}"
        );
    }
}
