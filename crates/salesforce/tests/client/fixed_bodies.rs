//! The client against fixed bodies shaped like the examples of Salesforce's REST API, OAuth and
//! SOAP documentation, so that it does not only fit hlsync's own simulator.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::common::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hlsync_core::id::SfId;
use hlsync_salesforce::{ClientOptions, CompositeQuery, LoginState, SalesforceClient, SfError};
use hlsync_sim::scripted::{Reply, ScriptedServer, Seen};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde_json::{Value, json};

const ACCESS_TOKEN: &str = "00Dx0000000BV7z!AR8AQAxo9UfVkh8AlV0Gomt9Czx9LjHnSSpwBMmbRcgKFmxOtvxjTrKW19ye6PE3Ds1eQz3z8jr3W7_VbWmEu4Q8TVGSTHxs";
const DATE: &str = "Tue, 24 Nov 2026 10:00:00 GMT";

/// The documented token answer (note the trailing slash of instance_url).
fn token_answer(base: &str) -> Reply {
    Reply::json(
        200,
        &json!({
            "id": "https://login.salesforce.com/id/00Dx0000000BV7z/005x00000012Q9P",
            "issued_at": "1278448832702",
            "instance_url": format!("{base}/"),
            "signature": "0CmxinZir53Yex7nE0TD+zMpvIWYGb/bdJh6XfOH6EQ=",
            "access_token": ACCESS_TOKEN,
            "token_type": "Bearer"
        })
        .to_string(),
    )
}

fn data(status: u16, body: &str) -> Reply {
    data_with_usage(status, body, "api-usage=18/5000")
}

fn data_with_usage(status: u16, body: &str, limit_info: &str) -> Reply {
    Reply::json(status, body)
        .with("sforce-limit-info", limit_info)
        .with("date", DATE)
}

fn contact(id: &str, last: &str) -> Value {
    json!({"attributes": {"type": "Contact", "url": format!("/services/data/v62.0/sobjects/Contact/{id}")},
           "Id": id, "LastName": last})
}

fn id15(s: &str) -> SfId {
    s.parse().unwrap()
}

fn cc_creds(base: &str) -> hlsync_salesforce::SalesforceCredentials {
    creds(json!({"login_url": base, "auth": "client_credentials",
                 "client_id": "3MVG9lKcPoNINVBIPJjdw1J9LLM82Hn", "client_secret": "CC-SECRET-5551"}))
}

/// A server that answers the OAuth token request as documented and every other request by
/// `rest`, and a client that logs in to it with client credentials.
async fn logged_in(
    rest: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
) -> (ScriptedServer, SalesforceClient) {
    let server = ScriptedServer::start(move |req, base| {
        if req.path == "/services/oauth2/token" {
            token_answer(base)
        } else {
            rest(req)
        }
    })
    .await;
    let sf = client(cc_creds(&server.base));
    (server, sf)
}

/// Salesforce's documented error body: a list of one error.
fn api_error(code: &str, message: &str) -> Value {
    json!([{"message": message, "errorCode": code}])
}

/// A data answer of `status` carrying [`api_error`].
fn error_reply(status: u16, code: &str, message: &str) -> Reply {
    data(status, &api_error(code, message).to_string())
}

fn form(body: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn form_get(body: &str, key: &str) -> Option<String> {
    form(body)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

#[tokio::test]
async fn client_credentials_login_then_query_pages_along_next_records_url() {
    let (server, sf) = logged_in(|req| match req.path.as_str() {
        "/services/data/v62.0/query" => data_with_usage(
            200,
            &json!({"totalSize": 3, "done": false,
                    "nextRecordsUrl": "/services/data/v62.0/query/01gD0000002HU6KIAW-2",
                    "records": [contact("003D000000QV9n2IAD", "A"), contact("003D000000QV9n3IAD", "B")]})
            .to_string(),
            "api-usage=19/5000; api-bursts=2/100",
        ),
        "/services/data/v62.0/query/01gD0000002HU6KIAW-2" => data(
            200,
            &json!({"totalSize": 3, "done": true, "records": [contact("003D000000QV9n4IAD", "C")]})
                .to_string(),
        ),
        _ => error_reply(404, "NOT_FOUND", "The requested resource does not exist"),
    })
    .await;
    let mut pager = sf
        .query("SELECT Id, LastName FROM Contact")
        .unwrap()
        .batch_size(200);
    let first = pager.next_page().await.unwrap().unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(pager.total_size(), Some(3));
    assert_eq!(sf.usage().map(|u| (u.used, u.max)), Some((19, 5000)));
    let second = pager.next_page().await.unwrap().unwrap();
    assert_eq!(second[0]["LastName"], "C");
    assert!(pager.next_page().await.unwrap().is_none());
    assert!(pager.is_done());

    let seen = server.seen();
    assert_eq!(seen.len(), 3, "one login and two pages");
    let login = &seen[0];
    assert_eq!(
        form_get(login.text(), "grant_type").as_deref(),
        Some("client_credentials")
    );
    assert_eq!(
        form_get(login.text(), "client_secret").as_deref(),
        Some("CC-SECRET-5551")
    );
    let q = &seen[1];
    assert_eq!(
        form_get(q.query.as_deref().unwrap_or_default(), "q").as_deref(),
        Some("SELECT Id, LastName FROM Contact")
    );
    assert_eq!(
        q.header("authorization"),
        Some(format!("Bearer {ACCESS_TOKEN}").as_str())
    );
    assert_eq!(q.header("sforce-query-options"), Some("batchSize=200"));
    assert_eq!(sf.calls_made(), 2);
    assert_eq!(sf.usage().map(|u| u.used), Some(18));
    assert_eq!(
        sf.server_time().map(|t| t.to_rfc3339()).as_deref(),
        Some("2026-11-24T10:00:00+00:00")
    );
    assert!(matches!(
        sf.login_state().await,
        LoginState::LoggedIn { .. }
    ));
}

#[tokio::test]
async fn password_flow_sends_password_followed_by_security_token() {
    let server = ScriptedServer::start(|req, base| match req.path.as_str() {
        "/services/oauth2/token" => token_answer(base),
        _ => data(200, r#"{"DailyApiRequests":{"Max":15000,"Remaining":14998,"Ant Migration Tool":{"Max":0,"Remaining":0}},"DailyAsyncApexExecutions":{"Max":250000,"Remaining":250000}}"#),
    })
    .await;
    let sf = client(creds(json!({"login_url": server.base, "auth": "password",
        "client_id": "cid", "client_secret": "cs", "username": "integration@org",
        "password": "Passw0rd!", "security_token": "TOKEN123"})));
    let usage = sf.limits().await.unwrap();
    assert_eq!((usage.used, usage.max), (2, 15000));
    let login = &server.seen()[0];
    assert_eq!(
        form_get(login.text(), "grant_type").as_deref(),
        Some("password")
    );
    assert_eq!(
        form_get(login.text(), "username").as_deref(),
        Some("integration@org")
    );
    assert_eq!(
        form_get(login.text(), "password").as_deref(),
        Some("Passw0rd!TOKEN123")
    );
}

#[tokio::test]
async fn jwt_bearer_assertion_is_rs256_signed_with_the_documented_claims() {
    let server = ScriptedServer::start(|req, base| match req.path.as_str() {
        "/services/oauth2/token" => token_answer(base),
        _ => data(
            200,
            r#"{"DailyApiRequests":{"Max":15000,"Remaining":15000}}"#,
        ),
    })
    .await;
    let sf = client(creds(
        json!({"login_url": server.base, "auth": "jwt_bearer",
        "client_id": "3MVG9-app", "username": "integration@org", "private_key_pem": TEST_KEY_PEM}),
    ));
    sf.limits().await.unwrap();
    let login = &server.seen()[0];
    assert_eq!(
        form_get(login.text(), "grant_type").as_deref(),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    let assertion = form_get(login.text(), "assertion").unwrap();
    let parts: Vec<&str> = assertion.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    // Salesforce's documented header, and nothing else.
    assert_eq!(header, json!({"alg": "RS256"}));
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["iss"], "3MVG9-app");
    assert_eq!(claims["sub"], "integration@org");
    assert_eq!(claims["aud"], server.base.as_str());
    let exp = claims["exp"].as_i64().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        exp > now && exp <= now + 180,
        "exp {exp} not within 3 minutes of {now}"
    );
    let key = rsa::RsaPublicKey::from_public_key_pem(TEST_PUBLIC_KEY_PEM).unwrap();
    let verifier = VerifyingKey::<sha2::Sha256>::new(key);
    let signature =
        Signature::try_from(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().as_slice()).unwrap();
    verifier
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .expect("the assertion's signature verifies with the public key");
}

#[test]
fn a_bad_private_key_is_refused_at_construction_without_quoting_it() {
    let err = hlsync_salesforce::SalesforceClient::new(
        &sf_config(),
        creds(
            json!({"login_url": "https://login.salesforce.com", "auth": "jwt_bearer",
            "client_id": "c", "username": "u", "private_key_pem": "NOT-A-KEY-SECRET"}),
        ),
        false,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("private_key_pem"), "{msg}");
    assert!(!msg.contains("NOT-A-KEY-SECRET"), "{msg}");
}

#[test]
fn http_login_url_is_refused_unless_allowed() {
    let c = creds(
        json!({"login_url": "http://login.example.org", "auth": "soap",
                         "username": "u", "password": "p"}),
    );
    let err = hlsync_salesforce::SalesforceClient::new(&sf_config(), c.clone(), false).unwrap_err();
    assert!(matches!(err, SfError::Config(_)), "{err}");
    assert!(hlsync_salesforce::SalesforceClient::new(&sf_config(), c, true).is_ok());
}

const SOAP_LOGIN_RESPONSE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body><loginResponse><result>
  <metadataServerUrl>BASE/services/Soap/m/62.0/00DD0000000EFW9</metadataServerUrl>
  <passwordExpired>false</passwordExpired><sandbox>false</sandbox>
  <serverUrl>BASE/services/Soap/u/62.0/00DD0000000EFW9</serverUrl>
  <sessionId>00DD0000000EFW9!AQ0AQSoapSession</sessionId>
  <userId>005D0000000nVYVIA2</userId>
  <userInfo><organizationId>00DD0000000EFW9MAO</organizationId><roleId xsi:nil="true"/>
   <userName>integration@org</userName></userInfo>
 </result></loginResponse></soapenv:Body></soapenv:Envelope>"#;

const SOAP_INVALID_LOGIN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body><soapenv:Fault><faultcode>sf:INVALID_LOGIN</faultcode>
  <faultstring>INVALID_LOGIN: Invalid username, password, security token; or user locked out.</faultstring>
  <detail><sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>
   <sf:exceptionMessage>Invalid username, password, security token; or user locked out.</sf:exceptionMessage>
  </sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;

#[tokio::test]
async fn soap_login_uses_session_id_and_the_origin_of_server_url() {
    let server = ScriptedServer::start(|req, base| match req.path.as_str() {
        "/services/Soap/u/62.0" => Reply::xml(200, &SOAP_LOGIN_RESPONSE.replace("BASE", base)),
        _ => data(
            200,
            r#"{"DailyApiRequests":{"Max":15000,"Remaining":14000}}"#,
        ),
    })
    .await;
    let sf = client(creds(json!({"login_url": server.base, "auth": "soap",
        "username": "integration@org", "password": "pw<&>", "security_token": "TK"})));
    let usage = sf.limits().await.unwrap();
    assert_eq!(usage.used, 1000);
    let seen = server.seen();
    assert!(
        seen[0]
            .text()
            .contains("<urn:username>integration@org</urn:username>")
    );
    assert!(
        seen[0]
            .text()
            .contains("<urn:password>pw&lt;&amp;&gt;TK</urn:password>")
    );
    assert_eq!(seen[1].path, "/services/data/v62.0/limits");
    assert_eq!(
        seen[1].header("authorization"),
        Some("Bearer 00DD0000000EFW9!AQ0AQSoapSession")
    );
}

#[tokio::test]
async fn soap_invalid_login_is_rejected_once_and_never_retried() {
    let server = ScriptedServer::start(|_, _| Reply::xml(500, SOAP_INVALID_LOGIN)).await;
    let sf = client(creds(json!({"login_url": server.base, "auth": "soap",
        "username": "integration@org", "password": "wrong"})));
    for _ in 0..3 {
        let err = sf.limits().await.unwrap_err();
        match &err {
            SfError::LoginRejected { username, reason } => {
                assert_eq!(username, "integration@org");
                assert!(reason.starts_with("INVALID_LOGIN"), "{reason}");
            }
            other => panic!("expected LoginRejected, got {other:?}"),
        }
        assert!(!err.is_retryable());
    }
    assert_eq!(
        server.seen().len(),
        1,
        "one login request, whatever the caller does"
    );
    assert_eq!(sf.calls_made(), 0);
    assert!(matches!(
        sf.login_state().await,
        LoginState::Rejected { .. }
    ));
}

#[tokio::test]
async fn oauth_invalid_grant_is_rejected_once_and_never_retried() {
    let server = ScriptedServer::start(|_, _| {
        Reply::json(
            400,
            r#"{"error":"invalid_grant","error_description":"authentication failure"}"#,
        )
    })
    .await;
    let sf = client(cc_creds(&server.base));
    for _ in 0..3 {
        let err = sf.describe("Contact", false).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("(invalid_grant: authentication failure): fix the secret"),
            "{err}"
        );
    }
    assert_eq!(server.seen().len(), 1);
    assert_eq!(sf.logins_made(), 1);
}

#[tokio::test]
async fn expired_session_logs_in_once_more_and_repeats_the_call() {
    let limit_calls = Arc::new(AtomicUsize::new(0));
    let counter = limit_calls.clone();
    let (server, sf) = logged_in(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            error_reply(401, "INVALID_SESSION_ID", "Session expired or invalid")
        } else {
            data(
                200,
                r#"{"DailyApiRequests":{"Max":15000,"Remaining":14000}}"#,
            )
        }
    })
    .await;
    sf.limits().await.unwrap();
    assert_eq!(server.count("/oauth2/token"), 2);
    assert_eq!(server.count("/limits"), 2);
}

#[tokio::test]
async fn a_401_with_a_fresh_session_is_not_retried_again() {
    let (server, sf) =
        logged_in(|_| error_reply(401, "INVALID_SESSION_ID", "Session expired or invalid")).await;
    let err = sf.limits().await.unwrap_err();
    assert!(matches!(err, SfError::SessionRejected { .. }), "{err:?}");
    assert_eq!(server.count("/oauth2/token"), 2);
    assert_eq!(server.count("/limits"), 2);
}

#[tokio::test]
async fn server_unavailable_is_retried_then_succeeds() {
    let n = Arc::new(AtomicUsize::new(0));
    let counter = n.clone();
    let (_server, sf) = logged_in(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) < 2 {
            error_reply(503, "SERVER_UNAVAILABLE", "Server is unavailable")
        } else {
            data(
                200,
                r#"{"DailyApiRequests":{"Max":15000,"Remaining":14000}}"#,
            )
        }
    })
    .await;
    sf.limits().await.unwrap();
    assert_eq!(sf.calls_made(), 3);
}

#[tokio::test]
async fn server_errors_give_up_after_the_configured_tries() {
    let (server, sf) =
        logged_in(|_| error_reply(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred")).await;
    let err = sf.limits().await.unwrap_err();
    assert!(
        matches!(
            err,
            SfError::Unavailable {
                attempts: 4,
                status: 500,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(server.count("/limits"), 4);
}

#[tokio::test]
async fn request_limit_exceeded_stops_without_retry() {
    let (server, sf) = logged_in(|_| {
        error_reply(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        )
    })
    .await;
    let err = paging_error(sf.query("SELECT Id FROM Contact")).await;
    assert!(matches!(err, SfError::LimitExceeded { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(server.count("/query"), 1);
}

#[tokio::test]
async fn query_timeout_is_surfaced_for_the_caller_to_split() {
    let (server, sf) = logged_in(|_| {
        error_reply(
            400,
            "QUERY_TIMEOUT",
            "Your query request was running for too long.",
        )
    })
    .await;
    let err = paging_error(sf.query_all("SELECT Id FROM Contact")).await;
    assert!(matches!(err, SfError::QueryTimeout { .. }), "{err:?}");
    assert_eq!(server.count("/queryAll"), 1);
}

#[tokio::test]
async fn a_query_too_long_for_a_url_is_never_sent() {
    let (server, sf) = logged_in(|_| data(414, "")).await;
    let soql = soql_too_long_for_a_url();
    let err = sf.query(&soql).unwrap_err();
    assert!(matches!(err, SfError::QueryTooLong { .. }), "{err:?}");

    // A path just under the limit, pushed over it by the instance URL: refused at send time.
    let prefix = "/services/data/v62.0/query?q=";
    let head = "SELECT Id FROM Contact WHERE LastName = 'x'";
    let encoded_len = |s: &str| {
        url::form_urlencoded::byte_serialize(s.as_bytes())
            .map(str::len)
            .sum::<usize>()
    };
    let pad = "x".repeat(15_995 - prefix.len() - encoded_len(head));
    let soql = format!("SELECT Id FROM Contact WHERE LastName = '{pad}x'");
    let pager = sf.query(&soql).expect("the path alone fits");
    let err = pager.collect_all().await.unwrap_err();
    assert!(matches!(err, SfError::QueryTooLong { .. }), "{err:?}");
    assert_eq!(server.count("/query"), 0);
}

#[tokio::test]
async fn next_records_url_to_another_host_is_refused() {
    let (_server, sf) = logged_in(|_| {
        data(200, r#"{"totalSize":4,"done":false,"nextRecordsUrl":"https://evil.example.org/x","records":[]}"#)
    })
    .await;
    let err = paging_error(sf.query("SELECT Id FROM Contact")).await;
    assert!(matches!(err, SfError::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn retrieve_chunks_by_2000_and_aligns_nulls_and_errors() {
    let ids: Vec<SfId> = (0..2500)
        .map(|i| id15(&format!("003D00000{i:06}")))
        .collect();
    let missing = ids[10].clone();
    let deleted = ids[2100].clone();
    let (m, d) = (missing.to_string(), deleted.to_string());
    let (server, sf) = logged_in(move |req| match req.path.as_str() {
        "/services/data/v62.0/composite/sobjects/Contact" => {
            let body: Value = serde_json::from_str(req.text()).unwrap();
            let answer: Vec<Value> = body["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| {
                    let id = id.as_str().unwrap();
                    if id == m {
                        Value::Null
                    } else if id == d {
                        json!({"success": false, "errors": [{"statusCode": "ENTITY_IS_DELETED",
                               "message": "entity is deleted", "fields": []}]})
                    } else {
                        contact(id, "X")
                    }
                })
                .collect();
            data(200, &Value::Array(answer).to_string())
        }
        _ => data(404, "[]"),
    })
    .await;
    let fields = vec!["Id".to_string(), "LastName".to_string()];
    let out = sf.retrieve("Contact", &ids, &fields).await.unwrap();
    assert_eq!(out.len(), 2500);
    assert!(out[10].is_none());
    assert!(out[2100].is_none());
    assert_eq!(out.iter().filter(|r| r.is_some()).count(), 2498);
    assert_eq!(out[2499].as_ref().unwrap()["Id"], ids[2499].as_str());
    let calls: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST" && s.path.contains("composite"))
        .collect();
    assert_eq!(calls.len(), 2);
    let sizes: Vec<usize> = calls
        .iter()
        .map(|c| {
            serde_json::from_str::<Value>(c.text()).unwrap()["ids"]
                .as_array()
                .unwrap()
                .len()
        })
        .collect();
    assert_eq!(sizes, vec![2000, 500]);
    let first: Value = serde_json::from_str(calls[0].text()).unwrap();
    assert_eq!(first["fields"], json!(["Id", "LastName"]));
}

#[tokio::test]
async fn update_sends_all_or_none_false_in_chunks_of_200_with_per_record_results() {
    let ids: Vec<SfId> = (0..250)
        .map(|i| id15(&format!("003D00000{i:06}")))
        .collect();
    let bad = ids[3].to_string();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen_bodies = bodies.clone();
    let (_server, sf) = logged_in(move |req| match req.path.as_str() {
        "/services/data/v62.0/composite/sobjects" if req.method == "PATCH" => {
            let body: Value = serde_json::from_str(req.text()).unwrap();
            seen_bodies.lock().unwrap().push(body.clone());
            let answer: Vec<Value> = body["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let id = r["id"].as_str().unwrap();
                    if id == bad {
                        json!({"success": false, "errors": [{"statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                               "message": "no", "fields": ["HasOptedOutOfEmail"]}]})
                    } else {
                        json!({"id": id, "success": true, "errors": []})
                    }
                })
                .collect();
            data(200, &Value::Array(answer).to_string())
        }
        _ => data(404, "[]"),
    })
    .await;
    let records = ids
        .iter()
        .map(|id| {
            let mut m = serde_json::Map::new();
            m.insert("HasOptedOutOfEmail".into(), Value::Bool(true));
            ("Contact".to_string(), id.clone(), m)
        })
        .collect();
    let results = sf.update(records).await.unwrap();
    assert_eq!(results.len(), 250);
    assert!(!results[3].success);
    assert_eq!(results[3].id, ids[3]);
    assert_eq!(
        results[3].errors[0].status_code,
        "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    );
    assert_eq!(results[3].errors[0].fields, vec!["HasOptedOutOfEmail"]);
    assert!(results.iter().enumerate().all(|(i, r)| i == 3 || r.success));
    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["allOrNone"], false);
    assert_eq!(bodies[0]["records"].as_array().unwrap().len(), 200);
    assert_eq!(bodies[1]["records"].as_array().unwrap().len(), 50);
    assert_eq!(bodies[0]["records"][0]["attributes"]["type"], "Contact");
}

#[tokio::test]
async fn describe_is_cached_until_refreshed() {
    let (server, sf) = logged_in(|_| {
        data(200, r#"{"name":"Contact","fields":[
            {"name":"Id","label":"Contact ID","type":"id","calculated":false},
            {"name":"HL_Member_Type__c","label":"Member Type","type":"picklist","calculated":false,
             "picklistValues":[{"active":true,"label":"Gold","value":"Gold"}]}],
            "recordTypeInfos":[{"active":true,"available":true,"developerName":"Master","master":true,
             "name":"Master","recordTypeId":"012000000000000AAA"}]}"#)
    })
    .await;
    let d1 = sf.describe("Contact", false).await.unwrap();
    let d2 = sf.describe("Contact", false).await.unwrap();
    assert!(Arc::ptr_eq(&d1, &d2));
    assert_eq!(server.count("/describe"), 1);
    sf.describe("Contact", true).await.unwrap();
    assert_eq!(server.count("/describe"), 2);
    assert_eq!(d1.field("HL_Member_Type__c").unwrap().label, "Member Type");
    assert!(sf.describe("Contact/../x", false).await.is_err());
}

#[tokio::test]
async fn allotment_guard_refuses_at_the_ceiling_without_calling() {
    // daily_api_allotment 1000 at share 0.5: ceiling 500 (the org's max is larger).
    let used = Arc::new(AtomicUsize::new(497));
    let u = used.clone();
    let server = ScriptedServer::start(move |req, base| {
        if req.path.as_str() == "/services/oauth2/token" {
            token_answer(base)
        } else {
            let n = u.fetch_add(1, Ordering::SeqCst) + 1;
            Reply::json(200, r#"{"DailyApiRequests":{"Max":100000,"Remaining":1}}"#)
                .with("sforce-limit-info", &format!("api-usage={n}/100000"))
        }
    })
    .await;
    let sf = client_with(&sf_config_with(1000, 0.5), cc_creds(&server.base));
    assert_eq!(sf.ceiling(), 500);
    sf.describe("Account", true).await.unwrap_err(); // not a describe body: decode error, but counted
    sf.describe("Account", true).await.unwrap_err();
    assert_eq!(sf.usage().map(|u| u.used), Some(499));
    // One more call would reach the ceiling: usage stays below it.
    let err = sf.describe("Account", true).await.unwrap_err();
    assert!(
        matches!(
            err,
            SfError::AllotmentGuard {
                used: 499,
                ceiling: 500
            }
        ),
        "{err:?}"
    );
    assert!(err.stops_all_calls());
    assert_eq!(server.count("/describe"), 2);
    assert_eq!(sf.calls_made(), 2);
    let err = sf.ensure_budget(1).await.unwrap_err();
    assert!(matches!(err, SfError::BudgetExhausted { .. }), "{err:?}");
}

#[tokio::test]
async fn ensure_budget_refuses_a_job_that_would_pass_the_ceiling() {
    let (server, sf) = logged_in(|_| {
        Reply::json(
            200,
            r#"{"DailyApiRequests":{"Max":100000,"Remaining":60000}}"#,
        )
        .with("sforce-limit-info", "api-usage=40000/100000")
    })
    .await;
    let usage = sf.ensure_budget(9_999).await.unwrap();
    assert_eq!(usage.used, 40000);
    let err = sf.ensure_budget(10_000).await.unwrap_err();
    assert!(
        matches!(
            err,
            SfError::BudgetExhausted {
                used: 40000,
                planned: 10_000,
                ceiling: 50_000
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        server.count("/limits"),
        1,
        "the second check uses the known usage"
    );
}

/// The sync crate boxes pagers as `'static` trait objects and awaits these futures inside
/// `async_trait` methods: both need `Send`.
#[test]
fn client_pager_and_futures_are_send() {
    fn owned<T: Send + Sync + 'static>() {}
    fn send<T: Send>(_: &T) {}
    owned::<hlsync_salesforce::SalesforceClient>();
    owned::<hlsync_salesforce::QueryPager>();
    let sf = hlsync_salesforce::SalesforceClient::new(
        &sf_config(),
        cc_creds("https://login.salesforce.com"),
        false,
    )
    .unwrap();
    let mut pager = sf.query("SELECT Id FROM Contact").unwrap();
    send(&pager.next_page());
    send(&sf.limits());
    send(&sf.describe("Contact", false));
    send(&sf.retrieve("Contact", &[], &[]));
    send(&sf.update(Vec::new()));
    send(&sf.query_many(&[]));
    send(&sf.ensure_budget(1));
    send(&sf.login());
}

/// A login whose answer never comes (the connection drops after the request was read) may have
/// counted as a failed login at Salesforce: it is never resent by the client.
#[tokio::test]
async fn a_login_whose_fate_is_unknown_is_not_resent() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let requests = std::sync::Arc::new(AtomicU32::new(0));
    let seen = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            if socket.read(&mut buf).await.unwrap_or(0) > 0 {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            drop(socket);
        }
    });
    let sf = client(cc_creds(&base));
    let err = sf.limits().await.unwrap_err();
    assert!(matches!(err, SfError::LoginUnavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("not retried"), "{err}");
    assert_eq!(
        requests.load(Ordering::SeqCst),
        1,
        "one login request, not resent"
    );
}

// ---- Composite: several queries in one call ----

/// A composite answer in the documented shape, one result per subrequest.
fn composite_answer(results: Value) -> Reply {
    data(200, &json!({"compositeResponse": results}).to_string())
}

fn result(reference: &str, status: u16, body: Value) -> Value {
    json!({"body": body, "httpHeaders": {}, "httpStatusCode": status, "referenceId": reference})
}

/// A composite answer to one subrequest, `q0`.
fn only_result(status: u16, body: Value) -> Reply {
    composite_answer(json!([result("q0", status, body)]))
}

fn subrequests(req: &Seen) -> Vec<Value> {
    let body: Value = serde_json::from_str(req.text()).unwrap();
    body["compositeRequest"].as_array().unwrap().clone()
}

#[tokio::test]
async fn query_many_sends_two_queries_in_one_composite_request_then_the_next_page() {
    let (server, sf) = logged_in(|req| match req.path.as_str() {
        "/services/data/v62.0/composite" if subrequests(req).len() == 2 => composite_answer(json!([
            result("q0", 200, json!({"totalSize": 3, "done": false,
                "nextRecordsUrl": "/services/data/v62.0/query/01gD0000002HU6KIAW-2",
                "records": [contact("003D000000QV9n2IAD", "A"), contact("003D000000QV9n3IAD", "B")]})),
            result("q1", 200, json!({"totalSize": 1, "done": true,
                "records": [contact("003D000000QV9n5IAD", "Deleted")]})),
        ])),
        "/services/data/v62.0/composite" => composite_answer(json!([
            result("q0", 200, json!({"totalSize": 3, "done": true,
                "records": [contact("003D000000QV9n4IAD", "C")]})),
        ])),
        _ => error_reply(404, "NOT_FOUND", "The requested resource does not exist"),
    })
    .await;
    let out = sf
        .query_many(&[
            CompositeQuery::query("SELECT Id, LastName FROM Contact"),
            CompositeQuery::query_all("SELECT Id FROM Contact WHERE IsDeleted = true"),
        ])
        .await
        .unwrap();
    let last_names = |records: &[hlsync_salesforce::Record]| {
        records
            .iter()
            .map(|r| r["LastName"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(last_names(&out[0]), ["A", "B", "C"]);
    assert_eq!(last_names(&out[1]), ["Deleted"]);

    let seen = server.seen();
    let composites: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path.ends_with("/composite"))
        .collect();
    assert_eq!(composites.len(), 2);
    assert!(composites.iter().all(|s| s.method == "POST"));
    assert_eq!(
        composites[0].header("content-type"),
        Some("application/json")
    );
    let first: Value = serde_json::from_str(composites[0].text()).unwrap();
    assert_eq!(
        first,
        json!({"allOrNone": false, "compositeRequest": [
            {"method": "GET", "url": "/services/data/v62.0/query?q=SELECT+Id%2C+LastName+FROM+Contact",
             "referenceId": "q0"},
            {"method": "GET", "url": "/services/data/v62.0/queryAll?q=SELECT+Id+FROM+Contact+WHERE+IsDeleted+%3D+true",
             "referenceId": "q1"},
        ]})
    );
    let second: Value = serde_json::from_str(composites[1].text()).unwrap();
    assert_eq!(
        second,
        json!({"allOrNone": false, "compositeRequest": [
            {"method": "GET", "url": "/services/data/v62.0/query/01gD0000002HU6KIAW-2", "referenceId": "q0"},
        ]})
    );
    assert_eq!(sf.calls_made(), 2, "one call per composite request");
    assert_eq!(sf.usage().map(|u| (u.used, u.max)), Some((18, 5000)));
}

#[tokio::test]
async fn query_many_sends_the_batch_size_as_a_subrequest_header() {
    let server = ScriptedServer::start(|req, base| match req.path.as_str() {
        "/services/oauth2/token" => token_answer(base),
        _ => only_result(200, json!({"totalSize": 0, "done": true, "records": []})),
    })
    .await;
    let sf = SalesforceClient::with_options(
        &sf_config(),
        cc_creds(&server.base),
        true,
        ClientOptions {
            query_batch_size: Some(500),
            ..fast_options()
        },
    )
    .unwrap();
    sf.query_many(&[CompositeQuery::query("SELECT Id FROM Contact")])
        .await
        .unwrap();
    let sent = subrequests(&server.seen()[1]);
    assert_eq!(
        sent[0]["httpHeaders"],
        json!({"Sforce-Query-Options": "batchSize=500"})
    );
}

#[tokio::test]
async fn a_failed_subrequest_fails_the_read_naming_its_query() {
    let (server, sf) = logged_in(|_| {
        composite_answer(json!([
            result("q0", 200, json!({"totalSize": 3, "done": false,
                "nextRecordsUrl": "/services/data/v62.0/query/01gD0000002HU6KIAW-2",
                "records": [contact("003D000000QV9n2IAD", "A")]})),
            result("q1", 400, api_error("INVALID_FIELD", "\nSELECT Id, Nmae FROM Contact\n           ^\nERROR at Row:1:Column:12\nNo such column 'Nmae' on entity 'Contact'.")),
        ]))
    })
    .await;
    let err = sf
        .query_many(&[
            CompositeQuery::query("SELECT Id FROM Contact"),
            CompositeQuery::query("SELECT Id, Nmae FROM Contact"),
        ])
        .await
        .unwrap_err();
    match &err {
        SfError::Api {
            what,
            status,
            code,
            message,
        } => {
            assert_eq!(*status, 400);
            assert_eq!(code, "INVALID_FIELD");
            assert!(what.contains("`SELECT Id, Nmae FROM Contact`"), "{what}");
            assert!(message.contains("No such column 'Nmae'"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    assert!(
        err.to_string().contains("SELECT Id, Nmae FROM Contact"),
        "{err}"
    );
    assert_eq!(
        server.count("/composite"),
        1,
        "no page is read after the failure"
    );
}

#[tokio::test]
async fn a_subrequest_query_timeout_is_the_plain_endpoints_error() {
    let (_server, sf) = logged_in(|_| {
        only_result(
            400,
            api_error(
                "QUERY_TIMEOUT",
                "Your query request was running for too long.",
            ),
        )
    })
    .await;
    let err = sf
        .query_many(&[CompositeQuery::query_all("SELECT Id FROM Contact")])
        .await
        .unwrap_err();
    assert!(matches!(err, SfError::QueryTimeout { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(
        err.to_string()
            .contains("queryAll `SELECT Id FROM Contact`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_subrequest_server_error_asks_that_page_again_then_gives_up_retryably() {
    let n = Arc::new(AtomicUsize::new(0));
    let counter = n.clone();
    let server = ScriptedServer::start(move |req, base| {
        if req.path.as_str() == "/services/oauth2/token" {
            token_answer(base)
        } else {
            let call = counter.fetch_add(1, Ordering::SeqCst);
            let unavailable = |r: &str| {
                result(
                    r,
                    503,
                    api_error("SERVER_UNAVAILABLE", "Server is unavailable"),
                )
            };
            let ok = |r: &str, last: &str| {
                result(
                    r,
                    200,
                    json!({"totalSize": 1, "done": true,
                "records": [contact("003D000000QV9n2IAD", last)]}),
                )
            };
            match call {
                // First request: q0 read, q1 unavailable; second: q1 alone, read.
                0 => composite_answer(json!([ok("q0", "A"), unavailable("q1")])),
                1 => composite_answer(json!([ok("q1", "B")])),
                _ => composite_answer(json!([unavailable("q0")])),
            }
        }
    })
    .await;
    let sf = client(cc_creds(&server.base));
    let queries = [
        CompositeQuery::query("SELECT Id FROM Contact"),
        CompositeQuery::query("SELECT Id FROM Account"),
    ];
    let out = sf.query_many(&queries).await.unwrap();
    assert_eq!(out[0][0]["LastName"], "A");
    assert_eq!(out[1][0]["LastName"], "B");
    let second = subrequests(&server.seen()[2]);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0]["referenceId"], "q1");

    // Unavailable on every try: the policy's 4 tries, then a retryable error naming the query.
    let err = sf.query_many(&queries[1..]).await.unwrap_err();
    assert!(
        matches!(&err, SfError::Unavailable { attempts: 4, status: 503, what, .. }
            if what.contains("SELECT Id FROM Account")),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(server.count("/composite"), 2 + 4);
}

#[tokio::test]
async fn a_subrequest_refusing_the_session_logs_in_once_more() {
    let n = Arc::new(AtomicUsize::new(0));
    let counter = n.clone();
    let (server, sf) = logged_in(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            only_result(
                401,
                api_error("INVALID_SESSION_ID", "Session expired or invalid"),
            )
        } else {
            only_result(200, json!({"totalSize": 0, "done": true, "records": []}))
        }
    })
    .await;
    let out = sf
        .query_many(&[CompositeQuery::query("SELECT Id FROM Contact")])
        .await
        .unwrap();
    assert!(out[0].is_empty());
    assert_eq!(server.count("/oauth2/token"), 2);
    assert_eq!(server.count("/composite"), 2);

    let (refused, sf) = logged_in(|_| {
        only_result(
            401,
            api_error("INVALID_SESSION_ID", "Session expired or invalid"),
        )
    })
    .await;
    let err = sf
        .query_many(&[CompositeQuery::query("SELECT Id FROM Contact")])
        .await
        .unwrap_err();
    assert!(matches!(err, SfError::SessionRejected { .. }), "{err:?}");
    assert_eq!(refused.count("/oauth2/token"), 2);
}

#[tokio::test]
async fn a_composite_request_refused_as_a_whole_is_an_error() {
    // Salesforce's answer to a request over its limits: one result, without a referenceId.
    let (_server, sf) = logged_in(|_| {
        composite_answer(json!([
            {"body": [{"errorCode": "LIMIT_EXCEEDED",
                       "message": "The request can\u{2019}t contain more than 25 operations."}],
             "httpHeaders": {}, "httpStatusCode": 400, "referenceId": null},
        ]))
    })
    .await;
    let err = sf
        .query_many(&[CompositeQuery::query("SELECT Id FROM Contact")])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SfError::Api { status: 400, code, .. } if code == "LIMIT_EXCEEDED"),
        "{err:?}"
    );
}

#[tokio::test]
async fn query_many_of_nothing_or_of_a_too_long_query_calls_nothing() {
    let server = ScriptedServer::start(|_, _| data(500, "")).await;
    let sf = client(cc_creds(&server.base));
    assert!(sf.query_many(&[]).await.unwrap().is_empty());
    let long = soql_too_long_for_a_url();
    let err = sf
        .query_many(&[
            CompositeQuery::query("SELECT Id FROM Contact"),
            CompositeQuery::query(long),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, SfError::QueryTooLong { .. }), "{err:?}");
    assert!(server.seen().is_empty(), "no login, no call");
    assert_eq!(sf.calls_made(), 0);
}
