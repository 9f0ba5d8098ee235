//! Partial failures that moto never produces: DynamoDB leaving batch items unprocessed, and SQS
//! refusing some entries of a batch. A small fake of the two JSON protocols, on a free port,
//! answers just those calls.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use chrono::{TimeZone, Utc};
use hlsync_aws::{Clients, DynamoState, SqsQueue, local_sdk_config};
use hlsync_core::state::Pushed;
use serde_json::{Value, json};

#[derive(Default)]
struct Fake {
    /// DynamoDB items by `pk`, as the wire JSON.
    items: HashMap<String, Value>,
    batch_writes: usize,
    batch_gets: usize,
    /// Keys already left unprocessed once: they go through next time.
    refused: HashSet<String>,
    /// How often each SQS body was offered.
    offered: HashMap<String, usize>,
}

type Shared = Arc<Mutex<Fake>>;

/// Serves the fake; returns clients pointed at it.
async fn fake() -> (Clients, Shared) {
    let shared = Shared::default();
    let app = Router::new()
        .route("/", post(handle))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (Clients::new(&local_sdk_config(&url).await), shared)
}

async fn handle(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: String,
) -> ([(&'static str, &'static str); 1], String) {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let request: Value = serde_json::from_str(&body).expect("json request");
    let mut fake = shared.lock().expect("lock");
    let answer = match target.as_str() {
        "DynamoDB_20120810.BatchWriteItem" => batch_write(&mut fake, &request),
        "DynamoDB_20120810.BatchGetItem" => batch_get(&mut fake, &request),
        "AmazonSQS.SendMessageBatch" => send_batch(&mut fake, &request),
        other => panic!("the fake does not answer {other}"),
    };
    (
        [("content-type", "application/x-amz-json-1.0")],
        answer.to_string(),
    )
}

/// Leaves every other item of a batch unprocessed the first time it is seen, as DynamoDB does
/// when capacity runs short; it goes through on the retry.
fn split(
    fake: &mut Fake,
    entries: &[Value],
    pk: impl Fn(&Value) -> String,
) -> (Vec<Value>, Vec<Value>) {
    let (mut done, mut rest) = (Vec::new(), Vec::new());
    for (i, entry) in entries.iter().enumerate() {
        if i % 2 == 1 && fake.refused.insert(pk(entry)) {
            rest.push(entry.clone());
        } else {
            done.push(entry.clone());
        }
    }
    (done, rest)
}

fn batch_write(fake: &mut Fake, request: &Value) -> Value {
    fake.batch_writes += 1;
    let mut unprocessed = serde_json::Map::new();
    for (table, writes) in request["RequestItems"].as_object().expect("RequestItems") {
        let writes = writes.as_array().expect("writes");
        let (done, rest) = split(fake, writes, |w| {
            format!("w{}", w["PutRequest"]["Item"]["pk"]["S"])
        });
        for write in done {
            let item = &write["PutRequest"]["Item"];
            let pk = item["pk"]["S"].as_str().expect("pk").to_owned();
            fake.items.insert(pk, item.clone());
        }
        if !rest.is_empty() {
            unprocessed.insert(table.clone(), Value::from(rest));
        }
    }
    json!({ "UnprocessedItems": unprocessed })
}

fn batch_get(fake: &mut Fake, request: &Value) -> Value {
    fake.batch_gets += 1;
    let mut responses = serde_json::Map::new();
    let mut unprocessed = serde_json::Map::new();
    for (table, spec) in request["RequestItems"].as_object().expect("RequestItems") {
        let keys = spec["Keys"].as_array().expect("keys");
        let (done, rest) = split(fake, keys, |k| format!("r{}", k["pk"]["S"]));
        let found: Vec<Value> = done
            .iter()
            .filter_map(|key| {
                fake.items
                    .get(key["pk"]["S"].as_str().expect("pk"))
                    .cloned()
            })
            .collect();
        responses.insert(table.clone(), Value::from(found));
        if !rest.is_empty() {
            unprocessed.insert(
                table.clone(),
                json!({ "Keys": rest, "ConsistentRead": true }),
            );
        }
    }
    json!({ "Responses": responses, "UnprocessedKeys": unprocessed })
}

/// Bodies starting `transient` fail once (SQS's fault); bodies starting `bad` always fail (ours).
fn send_batch(fake: &mut Fake, request: &Value) -> Value {
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for entry in request["Entries"].as_array().expect("entries") {
        let id = entry["Id"].clone();
        let body = entry["MessageBody"].as_str().expect("body").to_owned();
        let offered = fake.offered.entry(body.clone()).or_default();
        *offered += 1;
        if body.starts_with("bad") {
            failed.push(json!({"Id": id, "SenderFault": true, "Code": "InvalidMessageContents", "Message": "no"}));
        } else if body.starts_with("transient") && *offered == 1 {
            failed.push(json!({"Id": id, "SenderFault": false, "Code": "InternalError", "Message": "try again"}));
        } else {
            successful
                .push(json!({"Id": id, "MessageId": format!("m-{body}"), "MD5OfMessageBody": "-"}));
        }
    }
    json!({ "Successful": successful, "Failed": failed })
}

fn pushed(i: usize) -> Pushed {
    Pushed {
        hash: format!("h{i}"),
        cursor: None,
        pushed_at: Utc.timestamp_opt(1_790_000_000, 0).single().expect("valid"),
        opt_out: None,
    }
}

#[tokio::test]
async fn unprocessed_batch_items_and_keys_are_retried_until_done() {
    let (clients, shared) = fake().await;
    let store = DynamoState::new(clients.dynamodb, "state");
    let items: Vec<(String, Pushed)> = (0..60).map(|i| (format!("k{i}"), pushed(i))).collect();
    store
        .put_pushed_keys("contact#", &items)
        .await
        .expect("put");
    let keys: Vec<String> = items.iter().map(|(k, _)| k.clone()).collect();
    let found = store.get_pushed_keys("contact#", &keys).await.expect("get");
    assert_eq!(found.len(), 60);
    assert_eq!(found.get("k42"), Some(&pushed(42)));
    let fake = shared.lock().expect("lock");
    assert_eq!(fake.items.len(), 60);
    // 3 write chunks (25, 25, 10) and 1 read chunk, each needing a second round.
    assert_eq!(fake.batch_writes, 6);
    assert_eq!(fake.batch_gets, 2);
}

#[tokio::test]
async fn refused_entries_are_retried_when_sqs_is_at_fault_and_reported_when_we_are() {
    let (clients, shared) = fake().await;
    let queue = SqsQueue::new(clients.sqs, "http://queue.example/123/work");
    let mut bodies: Vec<String> = (0..23).map(|i| format!("ok-{i}")).collect();
    bodies[4] = "transient-4".into();
    bodies[17] = "bad-17".into();
    bodies[21] = "transient-21".into();
    let failures = queue.send_batch(bodies).await.expect("send");
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        (failures[0].index, failures[0].code.as_str()),
        (17, "InvalidMessageContents")
    );
    let fake = shared.lock().expect("lock");
    assert_eq!(fake.offered.get("transient-4"), Some(&2));
    assert_eq!(fake.offered.get("bad-17"), Some(&1));
    assert_eq!(fake.offered.get("ok-0"), Some(&1));
}
