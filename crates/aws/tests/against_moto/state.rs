//! The DynamoDB state table against moto.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::{clients, unique};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use hlsync_aws::{AwsError, DynamoState, create_table};
use hlsync_core::SfId;
use hlsync_core::state::Pushed;

async fn store() -> DynamoState {
    let clients = clients().await;
    let table = unique("state");
    create_table(&clients.dynamodb, &table)
        .await
        .expect("create table");
    DynamoState::new(clients.dynamodb, table)
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_790_000_000 + secs, 0)
        .single()
        .expect("valid time")
}

#[tokio::test]
async fn create_table_is_idempotent() {
    let clients = clients().await;
    let table = unique("state");
    create_table(&clients.dynamodb, &table)
        .await
        .expect("first");
    create_table(&clients.dynamodb, &table)
        .await
        .expect("second");
    let ttl = clients
        .dynamodb
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .expect("describe ttl");
    let description = ttl.time_to_live_description().expect("ttl description");
    assert_eq!(description.attribute_name(), Some("expires_at"));
}

#[tokio::test]
async fn missing_table_names_it_and_says_provision() {
    let clients = clients().await;
    let store = DynamoState::new(clients.dynamodb, "no-such-table");
    let err = store.get_watermark("contacts").await.expect_err("no table");
    assert!(matches!(err, AwsError::TableMissing { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("`no-such-table`") && text.contains("hlsync provision"),
        "{text}"
    );
}

#[tokio::test]
async fn watermark_starts_empty_and_only_moves_forward() {
    let store = store().await;
    let empty = store.get_watermark("contacts").await.expect("get");
    assert_eq!(empty.version, 0);
    assert_eq!(empty.at, None);

    let precise = at(10) + TimeDelta::nanoseconds(123_456_789);
    assert_eq!(
        store
            .save_watermark("contacts", Some(precise), Some(r#"{"page":2}"#.into()), 0)
            .await
            .expect("first save"),
        1
    );
    let stored = store.get_watermark("contacts").await.expect("get");
    assert_eq!(stored.at, Some(precise));
    assert_eq!(stored.checkpoint.as_deref(), Some(r#"{"page":2}"#));
    assert_eq!(stored.version, 1);

    // Backwards, even with the right version: refused.
    let err = store
        .save_watermark("contacts", Some(at(5)), None, 1)
        .await
        .expect_err("backwards");
    assert!(matches!(err, AwsError::Conflict { .. }), "{err:?}");
    let err = store
        .save_watermark("contacts", None, None, 1)
        .await
        .expect_err("cleared");
    assert!(matches!(err, AwsError::Conflict { .. }), "{err:?}");
    // The same instant again (a checkpoint within a window) is fine.
    store
        .save_watermark("contacts", Some(precise), None, 1)
        .await
        .expect("same instant");
    store
        .save_watermark("contacts", Some(at(20)), None, 2)
        .await
        .expect("forward");
    // A stale version: refused.
    let err = store
        .save_watermark("contacts", Some(at(30)), None, 2)
        .await
        .expect_err("stale");
    assert!(matches!(err, AwsError::Conflict { .. }), "{err:?}");
    // Another run's first save after ours existed: refused.
    let err = store
        .save_watermark("contacts", Some(at(40)), None, 0)
        .await
        .expect_err("not new");
    assert!(!err.is_retryable());

    let stored = store.get_watermark("contacts").await.expect("get");
    assert_eq!(
        (stored.at, stored.checkpoint, stored.version),
        (Some(at(20)), None, 3)
    );
    // Feeds are independent.
    assert_eq!(store.get_watermark("events").await.expect("get").version, 0);
}

#[tokio::test]
async fn concurrent_saves_from_the_same_version_have_one_winner() {
    let store = store().await;
    for expected in 0..3u64 {
        let saves = (0..8).map(|i| {
            let store = store.clone();
            let when = at(100 * i64::try_from(expected).unwrap_or(0) + i);
            tokio::spawn(async move {
                store
                    .save_watermark("contacts", Some(when), None, expected)
                    .await
            })
        });
        let results = futures::future::join_all(saves).await;
        let mut wins = 0;
        for result in results {
            match result.expect("task") {
                Ok(version) => {
                    assert_eq!(version, expected + 1);
                    wins += 1;
                }
                Err(AwsError::Conflict { .. }) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(wins, 1, "round {expected}");
        assert_eq!(
            store.get_watermark("contacts").await.expect("get").version,
            expected + 1
        );
    }
}

#[tokio::test]
async fn lease_is_exclusive_until_expiry_or_release() {
    let store = store().await;
    let ttl = Duration::from_mins(1);
    let now = Utc::now();
    assert!(
        store
            .try_acquire_lease_at("periodic", "run-a", ttl, now)
            .await
            .expect("a")
    );
    assert!(
        !store
            .try_acquire_lease_at("periodic", "run-b", ttl, now)
            .await
            .expect("b")
    );
    assert!(
        store
            .try_acquire_lease_at("periodic", "run-a", ttl, now)
            .await
            .expect("a again")
    );
    assert!(
        store
            .try_acquire_lease_at("other", "run-b", ttl, now)
            .await
            .expect("other lease")
    );

    // Renewal is the owner's only.
    assert!(
        !store
            .renew_lease_at("periodic", "run-b", ttl, now)
            .await
            .expect("b renew")
    );
    let renewed = now + TimeDelta::seconds(50);
    assert!(
        store
            .renew_lease_at("periodic", "run-a", ttl, renewed)
            .await
            .expect("a renew")
    );
    // Not expired at the first expiry any more.
    let later = now + TimeDelta::seconds(70);
    assert!(
        !store
            .try_acquire_lease_at("periodic", "run-b", ttl, later)
            .await
            .expect("b")
    );
    // Expired after the renewed one.
    let expired = renewed + TimeDelta::seconds(61);
    assert!(
        store
            .try_acquire_lease_at("periodic", "run-b", ttl, expired)
            .await
            .expect("b after expiry")
    );

    assert!(
        !store
            .release_lease("periodic", "run-a")
            .await
            .expect("a release")
    );
    assert!(
        store
            .release_lease("periodic", "run-b")
            .await
            .expect("b release")
    );
    assert!(
        !store
            .release_lease("periodic", "run-b")
            .await
            .expect("b release twice")
    );
    assert!(
        store
            .try_acquire_lease("periodic", "run-a", ttl)
            .await
            .expect("a after release")
    );
}

fn pushed(i: usize) -> Pushed {
    Pushed {
        hash: format!("hash-{i}"),
        cursor: i
            .is_multiple_of(2)
            .then(|| at(i64::try_from(i).unwrap_or(0)) + TimeDelta::milliseconds(7)),
        pushed_at: at(10_000),
        opt_out: i
            .is_multiple_of(3)
            .then(|| (i.is_multiple_of(2), at(i64::try_from(i).unwrap_or(0)))),
    }
}

#[tokio::test]
async fn a_push_record_never_gives_way_to_an_older_one() {
    let store = store().await;
    let record = |cursor: i64, hash: &str| Pushed {
        hash: hash.into(),
        cursor: Some(at(cursor)),
        pushed_at: at(10_000),
        opt_out: None,
    };
    let key = "003000000000001AAA".to_owned();
    let refused = store
        .put_pushed_if_newer("contact#", &[(key.clone(), record(20, "newer"))])
        .await
        .expect("first write");
    assert!(refused.is_empty());
    // An older read pushed later: refused, the newer record stays.
    let refused = store
        .put_pushed_if_newer(
            "contact#",
            &[
                (key.clone(), record(10, "older")),
                ("other".into(), record(5, "x")),
            ],
        )
        .await
        .expect("second write");
    assert_eq!(refused, vec![key.clone()]);
    let found = store
        .get_pushed_keys("contact#", &[key.clone(), "other".into()])
        .await
        .expect("read");
    assert_eq!(found[&key].hash, "newer");
    assert_eq!(found["other"].hash, "x");
    // The same cursor again, or a newer one: written.
    for (cursor, hash) in [(20, "same"), (30, "newest")] {
        let refused = store
            .put_pushed_if_newer("contact#", &[(key.clone(), record(cursor, hash))])
            .await
            .expect("write");
        assert!(refused.is_empty(), "{hash}");
    }
    let found = store
        .get_pushed_keys("contact#", std::slice::from_ref(&key))
        .await
        .expect("read");
    assert_eq!(found[&key].hash, "newest");
}

#[tokio::test]
async fn pushed_records_round_trip_in_chunks() {
    let store = store().await;
    let keys: Vec<String> = (0..250).map(|i| format!("key{i:04}")).collect();
    let items: Vec<(String, Pushed)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), pushed(i)))
        .collect();
    store
        .put_pushed_keys("contact#", &items)
        .await
        .expect("put 250");

    // Duplicates and unknown keys in the request are fine.
    let mut wanted = keys.clone();
    wanted.extend(keys[..30].iter().cloned());
    wanted.push("never-pushed".into());
    let found = store
        .get_pushed_keys("contact#", &wanted)
        .await
        .expect("get 250");
    assert_eq!(found.len(), 250);
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(found.get(key), Some(&pushed(i)), "{key}");
    }
    // Another prefix is another namespace.
    assert!(
        store
            .get_pushed_keys("event#", &keys)
            .await
            .expect("get events")
            .is_empty()
    );
}

#[tokio::test]
async fn the_last_write_of_a_key_wins_within_one_call() {
    let store = store().await;
    let items = vec![
        ("a".to_owned(), pushed(1)),
        ("a".to_owned(), pushed(2)),
        ("b".to_owned(), pushed(3)),
    ];
    store
        .put_pushed_for("registration#", &items)
        .await
        .expect("put");
    let found = store
        .get_pushed_for("registration#", &["a".to_owned(), "b".to_owned()])
        .await
        .expect("get");
    assert_eq!(
        found,
        HashMap::from([("a".to_owned(), pushed(2)), ("b".to_owned(), pushed(3))])
    );
    assert!(
        store
            .get_pushed_keys("registration#", &[])
            .await
            .expect("empty")
            .is_empty()
    );
}

#[tokio::test]
async fn documents_round_trip_and_expire() {
    let store = store().await;
    assert_eq!(
        store.get_record("run#periodic").await.expect("absent"),
        None
    );
    let doc = serde_json::json!({"pushed": 12, "errors": [], "at": "2026-11-24T19:00:00Z"});
    store
        .put_record("run#periodic", &doc, None)
        .await
        .expect("put");
    assert_eq!(
        store.get_record("run#periodic").await.expect("get"),
        Some(doc.clone())
    );
    store
        .put_record("usage", &doc, Some(Duration::from_hours(1)))
        .await
        .expect("put ttl");
    assert_eq!(
        store.get_record("usage").await.expect("get ttl"),
        Some(doc.clone())
    );

    // DynamoDB removes expired items only eventually: one still stored must read as absent.
    store
        .client()
        .put_item()
        .table_name(store.table())
        .item("pk", AttributeValue::S("doc#old".into()))
        .item("doc", AttributeValue::S(doc.to_string()))
        .item(
            "expires_at",
            AttributeValue::N((Utc::now().timestamp() - 10).to_string()),
        )
        .send()
        .await
        .expect("raw put");
    assert_eq!(store.get_record("old").await.expect("expired"), None);
    store.delete_record("run#periodic").await.expect("delete");
    assert_eq!(
        store.get_record("run#periodic").await.expect("deleted"),
        None
    );
}

#[tokio::test]
async fn contact_push_records_are_keyed_by_the_18_character_id() {
    let store = store().await;
    let ids: Vec<SfId> = (0..120)
        .map(|i| format!("003Dn00000{i:05}").parse().expect("15-char id"))
        .collect();
    let items: Vec<(SfId, Pushed)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), pushed(i)))
        .collect();
    store.put_pushed(&items[..100]).await.expect("put");
    let found = store.get_pushed(&ids).await.expect("get");
    assert_eq!(found.len(), 100);
    assert_eq!(found.get(&ids[7]), Some(&pushed(7)));
    assert!(!found.contains_key(&ids[110]));
    // Stored under `contact#<18-char id>`, where other parts of hlsync can find them.
    let raw = store
        .get_pushed_keys("contact#", &[ids[7].to_string()])
        .await
        .expect("raw");
    assert_eq!(ids[7].to_string().len(), 18);
    assert_eq!(raw.len(), 1);
}

#[tokio::test]
async fn a_shared_pace_gives_every_caller_its_own_slot() {
    let store = store().await;
    let interval = Duration::from_millis(40);
    let reservations = (0..24).map(|_| {
        let store = store.clone();
        async move { store.reserve_slot("higher-logic", interval).await }
    });
    let mut slots: Vec<DateTime<Utc>> = futures::future::try_join_all(reservations)
        .await
        .expect("reserved");
    slots.sort();
    for pair in slots.windows(2) {
        assert!(
            pair[1] - pair[0] >= TimeDelta::milliseconds(40),
            "two callers in one slot: {pair:?}"
        );
    }
    // Another name is another pace.
    let other = store
        .reserve_slot("another", interval)
        .await
        .expect("reserved");
    assert!(
        other <= Utc::now() + TimeDelta::milliseconds(5),
        "an idle pace goes now"
    );
}
