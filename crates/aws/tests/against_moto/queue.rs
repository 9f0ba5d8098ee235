//! The SQS work queue, its dead-letter queue and redrive, against moto.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::{clients, unique};
use hlsync_aws::{
    AwsError, QueueDepth, RedriveMethod, SqsQueue, create_queue_pair, queue_url, redrive,
};

/// The queue pair as `hlsync provision` makes it, but with a zero visibility timeout so that a
/// message can be received again at once (no waiting in tests).
async fn queue_pair() -> (SqsQueue, SqsQueue) {
    let clients = clients().await;
    let name = unique("work");
    let (url, dlq_url) = create_queue_pair(
        &clients.sqs,
        &name,
        &format!("{name}-dlq"),
        5,
        Duration::ZERO,
    )
    .await
    .expect("create queues");
    (
        SqsQueue::new(clients.sqs.clone(), url),
        SqsQueue::new(clients.sqs, dlq_url),
    )
}

/// Receives until the queue answers empty, deleting nothing.
async fn receive_all(queue: &SqsQueue, hide_for: Duration) -> Vec<hlsync_aws::Received> {
    let mut all = Vec::new();
    loop {
        let batch = queue
            .receive(10, Some(hide_for), Duration::ZERO)
            .await
            .expect("receive");
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

#[tokio::test]
async fn send_35_receive_and_delete() {
    let (queue, _) = queue_pair().await;
    let bodies: Vec<String> = (0..35).map(|i| format!(r#"{{"id":{i}}}"#)).collect();
    let failures = queue.send_batch(bodies.clone()).await.expect("send");
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(queue.depth().await.expect("depth").visible, 35);

    let received = receive_all(&queue, Duration::from_mins(5)).await;
    let got: BTreeSet<&str> = received.iter().map(|m| m.body.as_str()).collect();
    let sent: BTreeSet<&str> = bodies.iter().map(String::as_str).collect();
    assert_eq!(got, sent);
    assert!(received.iter().all(|m| m.receive_count == 1));
    let depth = queue.depth().await.expect("depth");
    assert_eq!((depth.visible, depth.in_flight), (0, 35));

    let handles: Vec<String> = received.iter().map(|m| m.receipt_handle.clone()).collect();
    let failures = queue.delete_batch(&handles).await.expect("delete");
    assert!(failures.is_empty(), "{failures:?}");
    let depth = queue.depth().await.expect("depth");
    assert_eq!((depth.visible, depth.in_flight, depth.delayed), (0, 0, 0));
}

#[tokio::test]
async fn a_bad_receipt_handle_is_a_per_entry_failure() {
    let (queue, _) = queue_pair().await;
    queue.send_batch(vec!["one".into()]).await.expect("send");
    let received = queue
        .receive(10, Some(Duration::from_mins(5)), Duration::ZERO)
        .await
        .expect("receive");
    assert_eq!(received.len(), 1);
    let handles = vec![
        "not-a-receipt-handle".to_owned(),
        received[0].receipt_handle.clone(),
    ];
    let failures = queue.delete_batch(&handles).await.expect("delete");
    assert_eq!(
        failures.iter().map(|f| f.index).collect::<Vec<_>>(),
        vec![0]
    );
}

#[tokio::test]
async fn change_visibility_returns_a_message_early() {
    let (queue, _) = queue_pair().await;
    queue.send_batch(vec!["later".into()]).await.expect("send");
    let first = queue
        .receive(1, Some(Duration::from_mins(5)), Duration::ZERO)
        .await
        .expect("receive");
    assert_eq!(first.len(), 1);
    assert!(
        queue
            .receive(1, None, Duration::ZERO)
            .await
            .expect("hidden")
            .is_empty()
    );
    queue
        .change_visibility(&first[0].receipt_handle, Duration::ZERO)
        .await
        .expect("change");
    let again = queue
        .receive(1, None, Duration::ZERO)
        .await
        .expect("receive again");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receive_count, 2);
}

#[tokio::test]
async fn after_five_receives_messages_land_on_the_dlq_and_redrive_brings_them_back() {
    let (queue, dlq) = queue_pair().await;
    let bodies: Vec<String> = (0..3).map(|i| format!("poison-{i}")).collect();
    assert!(
        queue
            .send_batch(bodies.clone())
            .await
            .expect("send")
            .is_empty()
    );
    // A zero visibility timeout makes each message visible again at once: every receive is a
    // delivery, as when a handler fails it five times.
    for round in 1..=5u32 {
        let got = queue
            .receive(10, Some(Duration::ZERO), Duration::ZERO)
            .await
            .expect("receive");
        let counts: Vec<u32> = got.iter().map(|m| m.receive_count).collect();
        assert_eq!(counts, vec![round; 3], "round {round}");
    }
    // The next receive past the limit moves them to the DLQ instead of delivering them.
    let sixth = queue
        .receive(10, Some(Duration::ZERO), Duration::ZERO)
        .await
        .expect("receive");
    assert!(sixth.is_empty(), "{sixth:?}");
    assert_eq!(dlq.depth().await.expect("dlq depth").visible, 3);
    assert_eq!(queue.depth().await.expect("depth").visible, 0);

    let report = redrive(dlq_client(&dlq), dlq.url(), queue.url(), None)
        .await
        .expect("redrive");
    assert_eq!(report.moved, 3);
    assert_eq!(report.failed, 0);
    // moto has no StartMessageMoveTask: the copy must have been used.
    assert_eq!(report.method, RedriveMethod::Copy);
    assert_eq!(dlq.depth().await.expect("dlq depth"), QueueDepth::default());
    let back = receive_all(&queue, Duration::from_mins(5)).await;
    let got: BTreeSet<String> = back.iter().map(|m| m.body.clone()).collect();
    assert_eq!(got, bodies.into_iter().collect());
    assert!(back.iter().all(|m| m.receive_count == 1));
}

fn dlq_client(queue: &SqsQueue) -> &aws_sdk_sqs::Client {
    queue.client()
}

#[tokio::test]
async fn redrive_moves_at_most_max() {
    let (queue, dlq) = queue_pair().await;
    let bodies: Vec<String> = (0..25).map(|i| format!("dead-{i}")).collect();
    assert!(dlq.send_batch(bodies).await.expect("send").is_empty());
    let report = redrive(dlq.client(), dlq.url(), queue.url(), Some(12))
        .await
        .expect("redrive");
    assert_eq!((report.moved, report.method), (12, RedriveMethod::Copy));
    assert_eq!(queue.depth().await.expect("depth").visible, 12);
    assert_eq!(dlq.depth().await.expect("dlq depth").visible, 13);
}

#[tokio::test]
async fn dead_letters_can_carry_a_reason() {
    let (_, dlq) = queue_pair().await;
    let id = dlq
        .send_one(r#"{"id":"003"}"#, Some("malformed body"))
        .await
        .expect("send");
    assert!(!id.is_empty());
    assert_eq!(dlq.depth().await.expect("depth").visible, 1);
}

#[tokio::test]
async fn provisioning_is_idempotent_and_names_are_found() {
    let clients = clients().await;
    let name = unique("work");
    let dlq_name = format!("{name}-dlq");
    let first = create_queue_pair(&clients.sqs, &name, &dlq_name, 5, Duration::from_secs(30))
        .await
        .expect("first");
    let second = create_queue_pair(&clients.sqs, &name, &dlq_name, 5, Duration::from_secs(90))
        .await
        .expect("second");
    assert_eq!(first, second);
    assert_eq!(queue_url(&clients.sqs, &name).await.expect("url"), first.0);
    assert_eq!(
        queue_url(&clients.sqs, &dlq_name).await.expect("dlq url"),
        first.1
    );

    let err = queue_url(&clients.sqs, "no-such-queue")
        .await
        .expect_err("missing");
    assert!(matches!(err, AwsError::QueueMissing { .. }), "{err:?}");
    assert!(
        err.to_string().contains("`no-such-queue`") && err.to_string().contains("hlsync provision")
    );
}
