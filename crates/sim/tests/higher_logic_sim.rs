//! The Higher Logic simulator over real HTTP, as a client sees it.

use chrono::{TimeZone, Utc};
use hlsync_sim::higher_logic::{
    DEFAULT_API_KEY, DEFAULT_TENANT_CODE, HigherLogicSim, HlFaults, HlSimOptions,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const KEY_A: &str = "003000000000001AAA";
const KEY_B: &str = "003000000000002AAA";
const EVENT: &str = "701000000000001AAA";

fn contact(key: &str, title: &str) -> Value {
    json!({
        "LegacyContactKey": key, "FirstName": "Ada", "LastName": "Lovelace",
        "EmailAddress": "ada@example.org", "CompanyName": "Analytical Engines",
        "Title": title, "Phone": null, "MobilePhone": null,
        "Address": {"Street": "1 Main St", "City": "Columbus", "StateProvince": "OH",
                    "PostalCode": "43004", "Country": "US"},
        "IsActive": true, "IsDeleted": false, "EmailOptOut": false,
        "SecurityGroups": [{"GroupKey": "HL_Member_Type__c:Gold", "GroupName": "Gold"}],
        "CommunityGroups": [{"GroupKey": "HL_Chapter__c:Ohio", "GroupName": "Ohio"}],
        "UpdatedOn": "2026-11-24T10:00:00.000Z"
    })
}

async fn start() -> HigherLogicSim {
    HigherLogicSim::start(HlSimOptions::default())
        .await
        .expect("simulator starts")
}

async fn post(sim: &HigherLogicSim, path: &str, body: &Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/{path}", sim.base_url()))
        .header("x-api-key", DEFAULT_API_KEY)
        .header("x-tenant-code", DEFAULT_TENANT_CODE)
        .json(body)
        .send()
        .await
        .expect("simulator answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get_prefs(sim: &HigherLogicSim, since: &str) -> (StatusCode, Value) {
    let mut url = reqwest::Url::parse(&format!("{}/emailpreferences", sim.base_url())).unwrap();
    url.query_pairs_mut().append_pair("since", since);
    let response = reqwest::Client::new()
        .get(url)
        .header("x-api-key", DEFAULT_API_KEY)
        .header("x-tenant-code", DEFAULT_TENANT_CODE)
        .send()
        .await
        .expect("simulator answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn stores_members_with_per_record_results() {
    let sim = start().await;
    let mut bad = contact(KEY_B, "Engineer");
    bad.as_object_mut().unwrap().remove("EmailOptOut");
    let (status, body) = post(
        &sim,
        "contactinfo",
        &json!([contact(KEY_A, "Countess"), bad]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["LegacyContactKey"], KEY_A);
    assert_eq!(results[0]["status"], "ok");
    assert_eq!(results[1]["LegacyContactKey"], KEY_B);
    assert_eq!(results[1]["status"], "error");
    assert!(
        results[1]["message"]
            .as_str()
            .unwrap()
            .contains("EmailOptOut")
    );

    assert_eq!(sim.members().len(), 1);
    assert_eq!(sim.member(KEY_A).unwrap()["Title"], "Countess");
    let counters = sim.counters();
    assert_eq!(counters.contactinfo_calls, 1);
    assert_eq!(counters.records_received, 2);
    assert_eq!(counters.record_errors, 1);
}

#[tokio::test]
async fn full_record_push_replaces_groups_and_tracks_changes() {
    let sim = start().await;
    post(&sim, "contactinfo", &json!([contact(KEY_A, "Countess")])).await;
    post(&sim, "contactinfo", &json!([contact(KEY_A, "Countess")])).await;
    let history = sim.history(KEY_A).unwrap();
    assert_eq!((history.pushes, history.changes), (2, 1));
    assert!(
        !history.last_push_changed,
        "the same record twice is no change"
    );

    let mut fewer = contact(KEY_A, "Countess");
    fewer["CommunityGroups"] = json!([]);
    post(&sim, "contactinfo", &json!([fewer])).await;
    let stored = sim.member(KEY_A).unwrap();
    assert_eq!(stored["CommunityGroups"], json!([]));
    assert!(sim.history(KEY_A).unwrap().last_push_changed);

    let mut deleted = contact(KEY_A, "Countess");
    deleted["IsDeleted"] = json!(true);
    deleted["IsActive"] = json!(false);
    deleted["SecurityGroups"] = json!([]);
    deleted["CommunityGroups"] = json!([]);
    let (_, body) = post(&sim, "contactinfo", &json!([deleted])).await;
    assert_eq!(body["results"][0]["status"], "ok");
    assert_eq!(sim.member(KEY_A).unwrap()["IsDeleted"], true);
    assert_eq!(sim.history(KEY_A).unwrap().pushes, 4);
}

#[tokio::test]
async fn batches_outside_1_to_200_are_rejected() {
    let sim = start().await;
    let (status, _) = post(&sim, "contactinfo", &json!([])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let too_many: Vec<Value> = (0..201).map(|_| contact(KEY_A, "x")).collect();
    let (status, body) = post(&sim, "contactinfo", &json!(too_many)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("at most 200"));
    let (status, _) = post(&sim, "events", &json!({"EventKey": EVENT})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(sim.counters().bad_requests, 3);
    assert!(sim.members().is_empty());
}

#[tokio::test]
async fn credentials_are_checked_on_every_call() {
    let sim = start().await;
    let client = reqwest::Client::new();
    let url = format!("{}/contactinfo", sim.base_url());
    let body = json!([contact(KEY_A, "x")]);
    let bad_key = client
        .post(&url)
        .header("x-api-key", "wrong")
        .header("x-tenant-code", DEFAULT_TENANT_CODE)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_key.status(), StatusCode::UNAUTHORIZED);
    let bad_tenant = client
        .post(&url)
        .header("x-api-key", DEFAULT_API_KEY)
        .header("x-tenant-code", "someone-else")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_tenant.status(), StatusCode::FORBIDDEN);
    let no_headers = client
        .get(format!(
            "{}/emailpreferences?since=2026-01-01T00:00:00Z",
            sim.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(no_headers.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(sim.counters().auth_rejected, 3);
    assert!(sim.members().is_empty());
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let sim = HigherLogicSim::start(HlSimOptions {
        max_calls_per_minute: 2,
        ..HlSimOptions::default()
    })
    .await
    .unwrap();
    let body = json!([contact(KEY_A, "x")]);
    assert_eq!(post(&sim, "contactinfo", &body).await.0, StatusCode::OK);
    assert_eq!(post(&sim, "contactinfo", &body).await.0, StatusCode::OK);
    let response = reqwest::Client::new()
        .post(format!("{}/contactinfo", sim.base_url()))
        .header("x-api-key", DEFAULT_API_KEY)
        .header("x-tenant-code", DEFAULT_TENANT_CODE)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(sim.counters().throttled, 1);
    assert_eq!(sim.history(KEY_A).unwrap().pushes, 2);
}

/// The advertised Retry-After is honest: waiting it out (on tokio's paused clock) gets in.
#[tokio::test(start_paused = true)]
async fn waiting_out_retry_after_gets_in() {
    let sim = HigherLogicSim::start(HlSimOptions {
        max_calls_per_minute: 1,
        ..HlSimOptions::default()
    })
    .await
    .unwrap();
    let body = json!([contact(KEY_A, "x")]);
    assert_eq!(post(&sim, "contactinfo", &body).await.0, StatusCode::OK);
    tokio::time::advance(std::time::Duration::from_secs(20)).await;
    let response = reqwest::Client::new()
        .post(format!("{}/contactinfo", sim.base_url()))
        .header("x-api-key", DEFAULT_API_KEY)
        .header("x-tenant-code", DEFAULT_TENANT_CODE)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after <= 40, "Retry-After {retry_after}");
    tokio::time::advance(std::time::Duration::from_secs(retry_after)).await;
    assert_eq!(post(&sim, "contactinfo", &body).await.0, StatusCode::OK);
    assert_eq!(sim.counters().throttled, 1);
}

#[tokio::test]
async fn scripted_faults_then_recovery() {
    let sim = HigherLogicSim::start(HlSimOptions {
        faults: HlFaults {
            fail_next_calls: 2,
            failing_keys: [KEY_B.to_owned()].into(),
            ..HlFaults::default()
        },
        ..HlSimOptions::default()
    })
    .await
    .unwrap();
    let body = json!([contact(KEY_A, "x"), contact(KEY_B, "y")]);
    assert_eq!(
        post(&sim, "contactinfo", &body).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        post(&sim, "contactinfo", &body).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (status, answer) = post(&sim, "contactinfo", &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["results"][0]["status"], "ok");
    assert_eq!(answer["results"][1]["status"], "error");
    assert!(sim.member(KEY_B).is_none());

    sim.throttle_next_calls(1, 7);
    let response = reqwest::Client::new()
        .post(format!("{}/contactinfo", sim.base_url()))
        .header("x-api-key", DEFAULT_API_KEY)
        .header("x-tenant-code", DEFAULT_TENANT_CODE)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "7");
    let counters = sim.counters();
    assert_eq!((counters.faults_served, counters.throttled), (2, 1));
    sim.reset_counters();
    assert_eq!(sim.counters().total_calls(), 0);
}

#[tokio::test]
async fn random_faults_are_reproducible_from_the_seed() {
    async fn statuses(seed: u64) -> Vec<StatusCode> {
        let sim = HigherLogicSim::start(HlSimOptions {
            faults: HlFaults {
                seed,
                error_rate: 0.5,
                ..HlFaults::default()
            },
            ..HlSimOptions::default()
        })
        .await
        .unwrap();
        let mut seen = Vec::new();
        for _ in 0..20 {
            seen.push(
                post(&sim, "contactinfo", &json!([contact(KEY_A, "x")]))
                    .await
                    .0,
            );
        }
        seen
    }
    let first = statuses(42).await;
    assert_eq!(first, statuses(42).await);
    assert!(first.iter().any(|s| s.is_server_error()));
    assert!(first.contains(&StatusCode::OK));
}

#[tokio::test]
async fn events_and_registrations() {
    let sim = start().await;
    let event = json!({"EventKey": EVENT, "Name": "Annual Meeting", "StartDate": "2026-12-01",
                       "EndDate": "2026-12-02", "IsDeleted": false});
    let (status, body) = post(&sim, "events", &json!([event])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["results"][0],
        json!({"EventKey": EVENT, "status": "ok", "message": null})
    );
    assert_eq!(sim.event(EVENT).unwrap()["Name"], "Annual Meeting");

    let reg = |event: &str, status: &str| json!({"EventKey": event, "LegacyContactKey": KEY_A, "Status": status, "IsDeleted": false});
    let (_, body) = post(
        &sim,
        "registrations",
        &json!([
            reg(EVENT, "Registered"),
            reg("701000000000009AAA", "Registered")
        ]),
    )
    .await;
    assert_eq!(body["results"][0]["status"], "ok");
    assert_eq!(body["results"][0]["LegacyContactKey"], KEY_A);
    assert_eq!(body["results"][1]["status"], "error");
    assert!(
        body["results"][1]["message"]
            .as_str()
            .unwrap()
            .contains("unknown EventKey")
    );
    let regs = sim.registrations();
    assert_eq!(regs.len(), 1);
    assert_eq!(
        regs[&(EVENT.to_owned(), KEY_A.to_owned())]["Status"],
        "Registered"
    );
    assert_eq!(sim.counters().registrations_calls, 1);
}

#[tokio::test]
async fn email_preferences_report_member_changes_strictly_after_since() {
    let sim = start().await;
    let mut opted_out = contact(KEY_A, "x");
    opted_out["EmailOptOut"] = json!(true);
    post(&sim, "contactinfo", &json!([opted_out])).await;
    assert_eq!(sim.email_opt_out(KEY_A), Some(true));
    let (_, body) = get_prefs(&sim, "2000-01-01T00:00:00Z").await;
    assert_eq!(
        body,
        json!({"changes": []}),
        "hlsync's own pushes are not member changes"
    );

    let t1 = Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap();
    let t2 = Utc.with_ymd_and_hms(2026, 11, 24, 11, 0, 0).unwrap();
    sim.set_email_opt_out_at(KEY_A, false, t1);
    sim.set_email_opt_out_at(KEY_B, true, t1);
    sim.set_email_opt_out_at(KEY_B, false, t2);
    assert_eq!(sim.email_opt_out(KEY_A), Some(false));

    let (status, body) = get_prefs(&sim, "2026-11-24T09:00:00Z").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"changes": [
            {"LegacyContactKey": KEY_A, "EmailOptOut": false, "UpdatedOn": "2026-11-24T10:00:00.000Z"},
            {"LegacyContactKey": KEY_B, "EmailOptOut": false, "UpdatedOn": "2026-11-24T11:00:00.000Z"}
        ]})
    );
    let (_, body) = get_prefs(&sim, "2026-11-24T10:00:00.000Z").await;
    assert_eq!(
        body["changes"].as_array().unwrap().len(),
        1,
        "strictly after since"
    );
    let (status, _) = get_prefs(&sim, "yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn shutdown_stops_listening() {
    let sim = start().await;
    let url = sim.base_url();
    sim.shutdown().await;
    let attempt = reqwest::Client::new()
        .post(format!("{url}/contactinfo"))
        .json(&json!([]))
        .send()
        .await;
    assert!(attempt.is_err());
}
