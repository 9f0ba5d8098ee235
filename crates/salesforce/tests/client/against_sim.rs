//! The client against the Salesforce simulator, over real HTTP: every behaviour of SPEC.md §4-§5.

use std::collections::BTreeSet;

use crate::common::*;
use chrono::{DateTime, Duration as TimeDelta, TimeZone, Utc};
use hlsync_core::id::SfId;
use hlsync_core::time::format_soql_datetime;
use hlsync_salesforce::{
    ClientOptions, CompositeQuery, Record, SalesforceClient, SalesforceCredentials, SfError,
};
use hlsync_sim::salesforce::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_PASSWORD, DEFAULT_SECURITY_TOKEN,
    DEFAULT_USERNAME, FaultPlan, FieldSpec, SalesforceSim, SimOptions,
};
use serde_json::{Map, Value, json};

async fn sim() -> SalesforceSim {
    SalesforceSim::start(SimOptions::default()).await.unwrap()
}

fn cc(sim: &SalesforceSim) -> SalesforceCredentials {
    creds(
        json!({"login_url": sim.base_url(), "auth": "client_credentials",
                 "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}),
    )
}

fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn insert_contacts(sim: &SalesforceSim, n: usize, at: DateTime<Utc>) -> Vec<String> {
    (0..n)
        .map(|i| {
            sim.insert_with_modstamp(
                "Contact",
                fields(json!({"LastName": format!("Contact {i}"), "Email": format!("c{i}@example.org")})),
                at,
            )
        })
        .collect()
}

/// A simulator with 150 Contacts whose queries of more than 100 rows time out.
async fn sim_timing_out_queries_over_100_rows() -> SalesforceSim {
    let sim = SalesforceSim::start(SimOptions {
        faults: FaultPlan {
            query_timeout_over_rows: Some(100),
            ..FaultPlan::default()
        },
        ..SimOptions::default()
    })
    .await
    .unwrap();
    insert_contacts(&sim, 150, sim.now() - TimeDelta::hours(1));
    sim
}

fn ids_of(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["Id"].as_str().unwrap().to_string())
        .collect()
}

async fn login_and_read_limits(sim: &SalesforceSim, c: SalesforceCredentials) {
    let sf = client(c);
    let usage = sf.limits().await.unwrap();
    assert_eq!(usage.max, 100_000);
    assert!(sf.server_time().is_some(), "Date header read");
    let counters = sim.counters();
    assert_eq!(counters.successful_logins, 1);
    assert_eq!(counters.failed_logins, 0);
}

#[tokio::test]
async fn client_credentials_flow_logs_in() {
    let sim = sim().await;
    login_and_read_limits(&sim, cc(&sim)).await;
}

#[tokio::test]
async fn password_flow_logs_in() {
    let sim = sim().await;
    let c = creds(json!({"login_url": sim.base_url(), "auth": "password",
        "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET,
        "username": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD,
        "security_token": DEFAULT_SECURITY_TOKEN}));
    login_and_read_limits(&sim, c).await;
}

#[tokio::test]
async fn jwt_bearer_flow_logs_in_with_a_verified_signature() {
    let sim = SalesforceSim::start(SimOptions {
        jwt_public_key_pem: Some(TEST_PUBLIC_KEY_PEM.to_string()),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let c = creds(json!({"login_url": sim.base_url(), "auth": "jwt_bearer",
        "client_id": DEFAULT_CLIENT_ID, "username": DEFAULT_USERNAME, "private_key_pem": TEST_KEY_PEM}));
    login_and_read_limits(&sim, c).await;
}

#[tokio::test]
async fn soap_flow_logs_in() {
    let sim = sim().await;
    let c = creds(json!({"login_url": sim.base_url(), "auth": "soap",
        "username": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD,
        "security_token": DEFAULT_SECURITY_TOKEN}));
    login_and_read_limits(&sim, c).await;
}

#[tokio::test]
async fn a_rejected_login_is_never_retried() {
    let sim = sim().await;
    let c = creds(json!({"login_url": sim.base_url(), "auth": "password",
        "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET,
        "username": DEFAULT_USERNAME, "password": "wrong", "security_token": DEFAULT_SECURITY_TOKEN}));
    let sf = client(c);
    for _ in 0..5 {
        let err = paging_error(sf.query("SELECT Id FROM Contact")).await;
        assert!(matches!(err, SfError::LoginRejected { .. }), "{err:?}");
        assert!(err.to_string().contains(DEFAULT_USERNAME), "{err}");
    }
    let counters = sim.counters();
    assert_eq!(counters.failed_logins, 1);
    assert!(
        counters.locked_users.is_empty(),
        "one failure does not lock the user"
    );
    assert_eq!(counters.api_calls, 0);
}

#[tokio::test]
async fn pages_4500_records_with_batch_size() {
    let sim = sim().await;
    let at = sim.now() - TimeDelta::hours(1);
    let inserted: BTreeSet<String> = insert_contacts(&sim, 4500, at).into_iter().collect();
    let sf = client(cc(&sim));
    let mut pager = sf
        .query("SELECT Id, LastName FROM Contact ORDER BY SystemModstamp, Id")
        .unwrap()
        .batch_size(1000);
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    while let Some(page) = pager.next_page().await.unwrap() {
        sizes.push(page.len());
        seen.extend(ids_of(&page));
    }
    assert_eq!(pager.total_size(), Some(4500));
    assert_eq!(sizes, vec![1000, 1000, 1000, 1000, 500]);
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), 4500, "no duplicate");
    assert_eq!(unique, inserted, "no loss");
    assert_eq!(sf.calls_made(), 5);
    let counters = sim.counters();
    assert_eq!(counters.calls_by_endpoint.get("query"), Some(&1));
    assert_eq!(counters.calls_by_endpoint.get("query_more"), Some(&4));
}

#[tokio::test]
async fn pages_ending_on_a_shared_timestamp_lose_and_repeat_nothing() {
    let sim = sim().await;
    let base = Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap();
    // 150 at t1, 300 at t2, 150 at t3: 200-record pages end inside the t2 group.
    let mut all = insert_contacts(&sim, 150, base);
    all.extend(insert_contacts(&sim, 300, base + TimeDelta::seconds(1)));
    all.extend(insert_contacts(&sim, 150, base + TimeDelta::seconds(2)));
    let expected: BTreeSet<String> = all.iter().cloned().collect();
    let sf = client(cc(&sim));
    let window = format!(
        "SystemModstamp > {} AND SystemModstamp <= {}",
        format_soql_datetime(base - TimeDelta::seconds(1)),
        format_soql_datetime(base + TimeDelta::seconds(2))
    );
    let soql = |extra: &str| {
        format!(
            "SELECT Id, SystemModstamp FROM Contact WHERE {window}{extra} ORDER BY SystemModstamp ASC, Id ASC"
        )
    };

    // Along nextRecordsUrl.
    let records = sf
        .query(&soql(""))
        .unwrap()
        .batch_size(200)
        .collect_all()
        .await
        .unwrap();
    let ids = ids_of(&records);
    assert_eq!(ids.len(), 600);
    assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), expected);

    // Resuming from a checkpoint on the last record of the first page, the way a run that
    // stopped mid-window does: the (cursor, Id) keyset condition.
    let mut pager = sf.query(&soql("")).unwrap().batch_size(200);
    let first = pager.next_page().await.unwrap().unwrap();
    let last = first.last().unwrap();
    let last_at =
        hlsync_core::time::parse_sf_datetime(last["SystemModstamp"].as_str().unwrap()).unwrap();
    assert_eq!(
        last_at,
        base + TimeDelta::seconds(1),
        "the page ends inside the shared timestamp"
    );
    let after = format!(
        " AND (SystemModstamp > {at} OR (SystemModstamp = {at} AND Id > '{id}'))",
        at = format_soql_datetime(last_at),
        id = last["Id"].as_str().unwrap()
    );
    let rest = sf
        .query(&soql(&after))
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    let mut resumed = ids_of(&first);
    resumed.extend(ids_of(&rest));
    assert_eq!(resumed.len(), 600, "no duplicate across the checkpoint");
    assert_eq!(
        resumed.into_iter().collect::<BTreeSet<_>>(),
        expected,
        "no loss"
    );
}

#[tokio::test]
async fn a_session_expiring_mid_paging_logs_in_once_and_paging_completes() {
    let sim = sim().await;
    insert_contacts(&sim, 1000, sim.now() - TimeDelta::hours(1));
    let sf = client(cc(&sim));
    let mut pager = sf.query("SELECT Id FROM Contact").unwrap().batch_size(200);
    let mut n = pager.next_page().await.unwrap().unwrap().len();
    sim.expire_sessions();
    while let Some(page) = pager.next_page().await.unwrap() {
        n += page.len();
    }
    assert_eq!(n, 1000);
    assert_eq!(sim.counters().successful_logins, 2, "exactly one re-login");
    assert_eq!(sf.logins_made(), 2);
}

#[tokio::test]
async fn a_503_burst_is_retried_then_succeeds() {
    let sim = sim().await;
    let sf = client(cc(&sim));
    sim.fail_next_calls(3);
    let usage = sf.limits().await.unwrap();
    assert!(usage.max > 0);
    assert_eq!(sf.calls_made(), 4);
    assert_eq!(sim.counters().faults_served, 3);
}

#[tokio::test]
async fn a_longer_503_outage_gives_up_with_a_retryable_error() {
    let sim = sim().await;
    let sf = client(cc(&sim));
    sim.fail_next_calls(10);
    let err = sf.limits().await.unwrap_err();
    assert!(
        matches!(
            err,
            SfError::Unavailable {
                status: 503,
                attempts: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn query_timeout_is_surfaced() {
    let sim = sim_timing_out_queries_over_100_rows().await;
    let sf = client(cc(&sim));
    let err = paging_error(sf.query_all("SELECT Id FROM Contact")).await;
    assert!(matches!(err, SfError::QueryTimeout { .. }), "{err:?}");
    assert_eq!(sf.calls_made(), 1, "not retried");
    // A narrower query (a smaller window, as the caller would split it) goes through.
    let small = sf
        .query_all("SELECT Id FROM Contact WHERE Email = 'c7@example.org'")
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(small.len(), 1);
}

#[tokio::test]
async fn the_allotment_guard_stops_before_the_ceiling() {
    let sim = sim().await;
    // Default config: 0.5 of min(100,000, org max 100,000) = 50,000.
    sim.set_api_usage(49_997);
    let sf = client(cc(&sim));
    let mut made = 0;
    let err = loop {
        match sf.limits().await {
            Ok(_) => made += 1,
            Err(e) => break e,
        }
        assert!(made < 10, "the guard never stopped");
    };
    assert!(
        matches!(
            err,
            SfError::AllotmentGuard {
                used: 49_999,
                ceiling: 50_000
            }
        ),
        "{err:?}"
    );
    assert_eq!(made, 2);
    assert_eq!(sim.api_usage(), 49_999, "usage stays below the ceiling");
    assert_eq!(sim.counters().api_calls, 2);
    assert!(matches!(
        sf.ensure_budget(1).await,
        Err(SfError::BudgetExhausted { .. })
    ));
}

#[tokio::test]
async fn a_warm_client_at_the_ceiling_asks_again_once_usage_may_have_fallen() {
    let sim = sim().await;
    sim.set_api_usage(49_998);
    // A warm function whose guard re-checks at once (in production: after 5 minutes).
    let sf = SalesforceClient::with_options(
        &sf_config(),
        cc(&sim),
        true,
        ClientOptions {
            guard_recheck_after: std::time::Duration::ZERO,
            ..fast_options()
        },
    )
    .unwrap();
    sf.limits().await.unwrap();
    assert!(matches!(
        sf.describe("Contact", false).await,
        Err(SfError::AllotmentGuard { .. })
    ));
    // The 24-hour usage falls as the window rolls on: the guard's own `limits` call sees it, and
    // work resumes without a new function.
    sim.set_api_usage(30_000);
    sf.describe("Contact", false)
        .await
        .expect("usage has fallen");
    assert!(sf.usage().is_some_and(|u| u.used < 31_000));

    // With the default, a warm client refuses without calling until the re-check is due.
    sim.set_api_usage(49_998);
    let warm = client(cc(&sim));
    warm.limits().await.unwrap();
    let before = sim.counters().api_calls;
    for _ in 0..3 {
        assert!(warm.describe("Contact", false).await.is_err());
    }
    assert_eq!(
        sim.counters().api_calls,
        before,
        "no call while usage is fresh"
    );
}

#[tokio::test]
async fn ensure_budget_refuses_to_start_a_job_over_the_ceiling() {
    let sim = sim().await;
    sim.set_api_usage(45_000);
    let sf = client(cc(&sim));
    let usage = sf.ensure_budget(4_000).await.unwrap();
    assert_eq!(usage.used, 45_001, "the limits call itself counts");
    let err = sf.ensure_budget(5_000).await.unwrap_err();
    assert!(
        matches!(
            err,
            SfError::BudgetExhausted {
                planned: 5_000,
                ceiling: 50_000,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(sim.counters().api_calls, 1);
}

#[tokio::test]
async fn request_limit_exceeded_is_not_retried() {
    let sim = sim().await;
    sim.set_daily_api_max(1_000);
    sim.set_api_usage(1_000);
    // An allotment larger than the org's: the guard knows nothing yet, so the call goes out.
    let sf = client(cc(&sim));
    let err = sf.describe("Contact", false).await.unwrap_err();
    assert!(matches!(err, SfError::LimitExceeded { .. }), "{err:?}");
    assert!(!err.is_retryable() && err.stops_all_calls());
    assert_eq!(sf.calls_made(), 1);
    assert_eq!(sim.counters().calls_by_endpoint.get("describe"), Some(&1));
}

#[tokio::test]
async fn describe_picks_up_a_new_hl_field_after_refresh() {
    let sim = sim().await;
    let sf = client(cc(&sim));
    let before = sf.describe("Contact", false).await.unwrap();
    assert!(before.field("HL_Member_Type__c").is_some());
    assert!(before.field("HL_Is_Board__c").unwrap().calculated);
    assert!(before.field("HL_Region__c").is_none());
    assert!(sim.add_field("Contact", FieldSpec::text("HL_Region__c", "Region")));
    let cached = sf.describe("Contact", false).await.unwrap();
    assert!(
        cached.field("HL_Region__c").is_none(),
        "cached until refreshed"
    );
    let after = sf.describe("Contact", true).await.unwrap();
    assert_eq!(after.field("HL_Region__c").unwrap().label, "Region");
    assert_eq!(sim.counters().calls_by_endpoint.get("describe"), Some(&2));
}

#[tokio::test]
async fn describe_reads_record_types() {
    let sim = sim().await;
    let id = sim.add_record_type("Contact", "Member", "Member_RT");
    let sf = client(cc(&sim));
    let d = sf.describe("Contact", false).await.unwrap();
    let rt = d
        .record_types
        .iter()
        .find(|r| r.developer_name == "Member_RT")
        .unwrap();
    assert_eq!(rt.id.as_str(), id);
    assert_eq!(rt.name, "Member");
}

#[tokio::test]
async fn retrieve_2500_ids_takes_two_calls_and_a_deleted_id_reads_none() {
    let sim = sim().await;
    let ids = insert_contacts(&sim, 2500, sim.now() - TimeDelta::hours(1));
    assert!(sim.delete("Contact", &ids[1234]));
    let sf_ids: Vec<SfId> = ids.iter().map(|s| s.parse().unwrap()).collect();
    let sf = client(cc(&sim));
    let wanted = vec![
        "Id".to_string(),
        "LastName".to_string(),
        "Email".to_string(),
    ];
    let out = sf.retrieve("Contact", &sf_ids, &wanted).await.unwrap();
    assert_eq!(out.len(), 2500);
    assert!(out[1234].is_none());
    for (i, r) in out.iter().enumerate().filter(|(i, _)| *i != 1234) {
        let r = r.as_ref().unwrap();
        assert_eq!(r["Id"], ids[i].as_str());
        assert_eq!(r["LastName"], format!("Contact {i}").as_str());
    }
    assert_eq!(
        sim.counters().calls_by_endpoint.get("composite_retrieve"),
        Some(&2)
    );
    assert_eq!(sf.calls_made(), 2);
}

#[tokio::test]
async fn update_reports_per_record_results() {
    let sim = sim().await;
    let ids = insert_contacts(&sim, 3, sim.now() - TimeDelta::hours(1));
    assert!(sim.delete("Contact", &ids[1]));
    let sf = client(cc(&sim));
    let records = ids
        .iter()
        .map(|id| {
            (
                "Contact".to_string(),
                id.parse::<SfId>().unwrap(),
                fields(json!({"HasOptedOutOfEmail": true})),
            )
        })
        .collect();
    let results = sf.update(records).await.unwrap();
    assert_eq!(results.len(), 3);
    assert!(results[0].success && results[2].success);
    assert!(!results[1].success);
    assert_eq!(results[1].id.as_str(), ids[1]);
    assert!(!results[1].errors.is_empty());
    assert_eq!(
        sim.get("Contact", &ids[0]).unwrap()["HasOptedOutOfEmail"],
        true
    );
    assert_eq!(
        sim.counters().calls_by_endpoint.get("composite_update"),
        Some(&1)
    );
}

#[tokio::test]
async fn server_time_follows_the_simulator_clock() {
    let sim = sim().await;
    let at = Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap();
    sim.set_now(at);
    let sf = client(cc(&sim));
    sf.limits().await.unwrap();
    assert_eq!(sf.server_time(), Some(at));
}

#[tokio::test]
async fn clones_share_session_and_counters() {
    let sim = sim().await;
    let sf: SalesforceClient = client(cc(&sim));
    let other = sf.clone();
    let (a, b) = tokio::join!(sf.limits(), other.limits());
    a.unwrap();
    b.unwrap();
    assert_eq!(
        sim.counters().successful_logins,
        1,
        "concurrent calls share one login"
    );
    assert_eq!(sf.calls_made(), 2);
}

#[tokio::test]
async fn random_server_errors_during_paging_lose_and_repeat_nothing() {
    let sim = SalesforceSim::start(SimOptions {
        seed: 7,
        faults: FaultPlan {
            p_503: 0.2,
            p_500: 0.1,
            ..FaultPlan::default()
        },
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let inserted: BTreeSet<String> = insert_contacts(&sim, 2000, sim.now() - TimeDelta::hours(1))
        .into_iter()
        .collect();
    let mut options = fast_options();
    options.retry.attempts = 12;
    let sf = SalesforceClient::with_options(&sf_config(), cc(&sim), true, options).unwrap();
    let records = sf
        .query("SELECT Id FROM Contact ORDER BY Id")
        .unwrap()
        .batch_size(200)
        .collect_all()
        .await
        .unwrap();
    let ids = ids_of(&records);
    assert_eq!(ids.len(), 2000);
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), inserted);
    let faults = sim.counters().faults_served;
    assert!(faults > 0, "the seed injects faults");
    assert_eq!(sf.calls_made(), 10 + faults);
}

// ---- several queries per call (Composite) ----

fn client_with_batch(sim: &SalesforceSim, batch: u32) -> SalesforceClient {
    SalesforceClient::with_options(
        &sf_config(),
        cc(sim),
        true,
        ClientOptions {
            query_batch_size: Some(batch),
            ..fast_options()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn query_many_reads_seven_queries_five_per_call() {
    let sim = sim().await;
    let ids = insert_contacts(&sim, 700, sim.now() - TimeDelta::hours(1));
    // "Contact 697".."Contact 699" go to the recycle bin.
    for id in &ids[697..] {
        assert!(sim.delete("Contact", id));
    }
    let queries = [
        // 697 live rows: pages of 200, 200, 200, 97.
        CompositeQuery::query("SELECT Id, LastName FROM Contact ORDER BY Id"),
        // "Contact 1", "Contact 10".."19", "Contact 100".."199": one page.
        CompositeQuery::query("SELECT Id FROM Contact WHERE LastName LIKE 'Contact 1%'"),
        CompositeQuery::query_all("SELECT Id, IsDeleted FROM Contact WHERE IsDeleted = true"),
        // 450 rows: 200, 200, 50.
        CompositeQuery::query("SELECT Id FROM Contact ORDER BY LastName LIMIT 450"),
        CompositeQuery::query("SELECT Id FROM Contact WHERE Email LIKE 'c2%'"),
        // 250 rows: 200, 50.
        CompositeQuery::query("SELECT Id, Email FROM Contact ORDER BY Email LIMIT 250"),
        CompositeQuery::query("SELECT Id FROM Contact ORDER BY Id LIMIT 10"),
    ];
    let sf = client_with_batch(&sim, 200);
    sf.login().await.unwrap();
    sim.reset_counters();
    let usage = sim.api_usage();

    let out = sf.query_many(&queries).await.unwrap();

    // Five queries under way at a time, one page of each per call:
    //   call 1: first pages of queries 0-4 (1, 2 and 4 are done in one page);
    //   call 2: next pages of 0 and 3, first pages of 5 and 6 (6 is done);
    //   call 3: third pages of 0 and 3 (3 done), second page of 5 (done);
    //   call 4: last page of 0.
    let counters = sim.counters();
    assert_eq!(counters.calls_by_endpoint.get("composite"), Some(&4));
    assert_eq!(counters.api_calls, 4);
    assert_eq!(sim.api_usage(), usage + 4);
    assert_eq!(sf.calls_made(), 4);
    assert_eq!(sf.usage().map(|u| u.used), Some(usage + 4));
    assert_eq!(counters.subrequests(), 13, "13 pages in all");
    assert_eq!(counters.subrequests_by_endpoint.get("query_more"), Some(&6));
    assert_eq!(counters.calls_by_endpoint.get("query"), None);

    let sizes: Vec<usize> = out.iter().map(Vec::len).collect();
    assert_eq!(sizes, [697, 111, 3, 450, 111, 250, 10]);
    assert!(out[2].iter().all(|r| r["IsDeleted"] == true));
    // The same records, in the same order, as the plain endpoint gives.
    for (q, got) in queries.iter().zip(&out) {
        let pager = if q.all {
            sf.query_all(&q.soql)
        } else {
            sf.query(&q.soql)
        };
        let plain = pager.unwrap().collect_all().await.unwrap();
        assert_eq!(ids_of(got), ids_of(&plain), "{}", q.soql);
    }
}

#[tokio::test]
async fn query_many_names_the_malformed_query_that_failed() {
    let sim = sim().await;
    insert_contacts(&sim, 5, sim.now() - TimeDelta::hours(1));
    let sf = client(cc(&sim));
    let err = sf
        .query_many(&[
            CompositeQuery::query("SELECT Id FROM Contact"),
            CompositeQuery::query("SELECT Id, Nmae FROM Contact"),
            CompositeQuery::query_all("SELECT Id FROM Contact"),
        ])
        .await
        .unwrap_err();
    match &err {
        SfError::Api {
            what, status, code, ..
        } => {
            assert_eq!((*status, code.as_str()), (400, "INVALID_FIELD"));
            assert!(what.contains("`SELECT Id, Nmae FROM Contact`"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(sim.counters().api_calls, 1);
}

#[tokio::test]
async fn query_many_surfaces_a_query_timeout_and_refuses_long_soql_without_a_call() {
    let sim = sim_timing_out_queries_over_100_rows().await;
    let sf = client(cc(&sim));
    let long = soql_too_long_for_a_url();
    let err = sf
        .query_many(&[CompositeQuery::query(long)])
        .await
        .unwrap_err();
    assert!(matches!(err, SfError::QueryTooLong { .. }), "{err:?}");
    assert_eq!(sim.counters().successful_logins, 0, "nothing was sent");

    let err = sf
        .query_many(&[
            CompositeQuery::query("SELECT Id FROM Contact WHERE Email = 'c7@example.org'"),
            CompositeQuery::query_all("SELECT Id FROM Contact"),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, SfError::QueryTimeout { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("queryAll `SELECT Id FROM Contact`"),
        "{err}"
    );
    assert_eq!(sf.calls_made(), 1, "not retried");
}

#[tokio::test]
async fn query_many_retries_a_failed_composite_request_as_any_call() {
    let sim = sim().await;
    insert_contacts(&sim, 3, sim.now() - TimeDelta::hours(1));
    let sf = client(cc(&sim));
    sim.fail_next_calls(2);
    let out = sf
        .query_many(&[
            CompositeQuery::query("SELECT Id FROM Contact"),
            CompositeQuery::query("SELECT Id FROM Contact LIMIT 1"),
        ])
        .await
        .unwrap();
    assert_eq!(out[0].len(), 3);
    assert_eq!(out[1].len(), 1);
    assert_eq!(sf.calls_made(), 3);
    assert_eq!(sim.counters().faults_served, 2);
    assert_eq!(
        sim.counters().subrequests(),
        2,
        "only the third try ran its subrequests"
    );

    // An expired session: one login more, then the same composite request.
    sim.expire_sessions();
    let out = sf
        .query_many(&[CompositeQuery::query("SELECT Id FROM Contact")])
        .await
        .unwrap();
    assert_eq!(out[0].len(), 3);
    assert_eq!(sim.counters().successful_logins, 2);
}
