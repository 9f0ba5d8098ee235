//! The member-refresh handler against moto and the simulators, without the Lambda runtime.

use crate::common::{Setup, context, deploy, emf_document, emf_values, insert_contact, moto};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use hlsync_core::id::SfId;
use hlsync_lambdas::budget::Budget;
use hlsync_lambdas::member;
use hlsync_sync::message::WorkMessage;
use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};

fn body(id: &str) -> String {
    let id: SfId = id.parse().expect("an 18-character Id");
    WorkMessage::contact(id, None, "test-run", false).to_body()
}

fn sqs_event(records: Vec<Value>) -> SqsEvent {
    serde_json::from_value(json!({ "Records": records })).expect("an SQS event")
}

fn record(message_id: &str, body: &str) -> Value {
    json!({
        "messageId": message_id,
        "receiptHandle": format!("rh-{message_id}"),
        "body": body,
        "eventSource": "aws:sqs",
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
    })
}

fn failed_ids(response: &SqsBatchResponse) -> Vec<String> {
    let mut ids: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_malformed_body_is_dead_lettered_and_the_rest_pushed() {
    moto();
    let d = deploy(Setup::default()).await;
    let ada = insert_contact(&d.sf, "Lovelace");
    let grace = insert_contact(&d.sf, "Hopper");
    let event = sqs_event(vec![
        record("m-ada", &body(&ada)),
        record("m-bad", "this is not a work message"),
        record("m-grace", &body(&grace)),
    ]);

    let response = member::handle(&d.rt, LambdaEvent::new(event, context("req-1")))
        .await
        .unwrap_or_else(|never| match never {});

    assert!(
        failed_ids(&response).is_empty(),
        "{:?}",
        response.batch_item_failures
    );
    for id in [&ada, &grace] {
        let pushed = d.hl.member(id).expect("member pushed to Higher Logic");
        assert_eq!(pushed["ContactDetails"]["IsMember"], true, "{pushed}");
    }
    let dead = d
        .dlq
        .receive(10, None, std::time::Duration::ZERO)
        .await
        .expect("DLQ readable");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].body.contains("this is not a work message"));
}

#[tokio::test]
async fn a_refused_record_is_dead_lettered_and_a_bodiless_message_reported_failed() {
    moto();
    let d = deploy(Setup::default()).await;
    let ada = insert_contact(&d.sf, "Lovelace");
    let grace = insert_contact(&d.sf, "Hopper");
    d.hl.refuse_contacts([grace.clone()]);
    let mut records = vec![
        record("m-ada", &body(&ada)),
        record("m-grace", &body(&grace)),
        record("m-grace-again", &body(&grace)),
    ];
    records.push(json!({"messageId": "m-empty", "eventSource": "aws:sqs"}));

    let outcome = member::refresh(
        &d.rt,
        sqs_event(records),
        "req-2",
        Budget::from_context(&context("req-2")),
    )
    .await;

    // Higher Logic refused Grace's record alone (a 400, halved down to her): her messages go
    // straight to the DLQ with its message, Ada's record went through.
    assert_eq!(failed_ids(&outcome.response), vec!["m-empty"]);
    assert!(d.hl.member(&ada).is_some());
    assert!(d.hl.member(&grace).is_none());
    let dead = d
        .dlq
        .receive(10, None, std::time::Duration::ZERO)
        .await
        .expect("DLQ readable");
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(dead.iter().all(|m| m.body.contains(grace.as_str())));

    // The EMF line measures the same batch.
    let values = emf_values(outcome.emf.as_deref());
    assert_eq!(values["MembersPushed"], 1.0);
    assert_eq!(values["MessagesFailed"], 3.0);
    assert!(
        values["SalesforceApiCalls"].as_f64() >= Some(1.0),
        "{values:?}"
    );
    assert!(
        values["HigherLogicCalls"].as_f64() >= Some(1.0),
        "{values:?}"
    );
    assert!(values.contains_key("RunDurationMs"));
    let doc = emf_document(outcome.emf.as_deref());
    assert_eq!(doc["Function"], "member-refresh");
    assert_eq!(doc["run_id"], "req-2");
    assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "hlsync");
    assert_eq!(
        doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Function"]])
    );
}

#[tokio::test]
async fn a_batch_that_cannot_be_worked_is_handed_back_to_wait_without_an_error() {
    moto();
    let d = deploy(Setup {
        hl_api_key: Some("not-the-key".into()),
    })
    .await;
    let ada = insert_contact(&d.sf, "Lovelace");
    let grace = insert_contact(&d.sf, "Hopper");
    let event = sqs_event(vec![
        record("m-ada", &body(&ada)),
        record("m-grace", &body(&grace)),
    ]);

    // The handler's error type is Infallible: a rejected login is an answer, not an error.
    let response = member::handle(&d.rt, LambdaEvent::new(event, context("req-3")))
        .await
        .unwrap_or_else(|never| match never {});

    // Not failed (five of those would walk the backlog to the DLQ): handed back to the queue as
    // new messages that wait out the stop.
    assert!(failed_ids(&response).is_empty(), "{response:?}");
    assert!(d.hl.members().is_empty());
    let depth = d.queue.depth().await.expect("queue readable");
    assert_eq!(depth.delayed, 2, "{depth:?}");
    assert_eq!(d.dlq.depth().await.expect("dlq").visible, 0);
}

#[tokio::test]
async fn one_refused_record_among_200_costs_only_that_record() {
    moto();
    let d = deploy(Setup::default()).await;
    let ids: Vec<String> = (0..200)
        .map(|i| insert_contact(&d.sf, &format!("Member{i:03}")))
        .collect();
    // One in the middle of the request, so that halving has work on both sides.
    let refused = ids[137].clone();
    d.hl.refuse_contacts([refused.clone()]);
    let records: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| record(&format!("m-{i}"), &body(id)))
        .collect();
    let before = d.hl.counters();

    let response = member::handle(
        &d.rt,
        LambdaEvent::new(sqs_event(records), context("req-4")),
    )
    .await
    .unwrap_or_else(|never| match never {});

    assert!(failed_ids(&response).is_empty(), "nothing to retry");
    let requests = d.hl.counters().contactinfo_calls - before.contactinfo_calls;
    assert!(
        requests <= 17,
        "1 request, then 2 per halving down to the one record: {requests}"
    );
    let members = d.hl.members();
    assert_eq!(members.len(), 199, "its 199 neighbours went through");
    assert!(!members.contains_key(&refused));
    let dead = d
        .dlq
        .receive(10, None, std::time::Duration::ZERO)
        .await
        .expect("DLQ readable");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].body.contains(&refused), "{}", dead[0].body);
}
