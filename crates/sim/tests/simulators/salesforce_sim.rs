//! The Salesforce simulator over real HTTP, endpoint by endpoint, as a client sees it.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hlsync_sim::salesforce::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_PASSWORD, DEFAULT_SECURITY_TOKEN,
    DEFAULT_USERNAME, FaultPlan, FieldSpec, SalesforceSim, SimOptions, generate_at,
};
use reqwest::StatusCode;
use serde_json::{Map, Value, json};

const V: &str = "62.0";

const TEST_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIICdwIBADANBgkqhkiG9w0BAQEFAASCAmEwggJdAgEAAoGBALc6rimVOVqyyBAE
Ca5U8NqILAOvDW6zqn5/pbN7bqKgkBcfC6MG3+H73KE64vqZGBEb4Hi5vdjSwjYc
Jx7fWUD8/pdSxDCJSBU3d4Zcvg/cvW3QLnmG9XGVbD1Owj8rDB9cvoSyxs3UL74G
MrKlTHojslE5E2hhH/UiBvXoI4p7AgMBAAECgYBSYxREplBvs8u5R9eCh7b0zB3e
WivUBv02e/bpySpp/YBMpSz6VPD+D92YsX216Hil2L8KCZqPj9S7t9TvUMY0axvF
vBw7bI5rL/GgTMOUoBm3XfOTZ1VBVGHf9Q87tRR0zJg1NCOPzBS4AdPkeK15ECw0
s80Yin5ZsLjeIQkJQQJBAOtmFULnoz1vRRehGK9gSuavXzGfACklOGyAqefPL491
5nsHnCfPWT6jbhOAFfmNtJobxtmrzwPAE+rjeR0CnFkCQQDHQ8gDiwiUs2PS/9Ai
/pzus9EvXvyXHBNoWFbF/xzGbny0Jiksi6DJ6URABC8ZvtN1LdUecS/eX+DOc2L+
JfLzAkEAjqHWNCni0XDAbqbgLDOubsTIa2qqUEQLQkNbr+fsK4MG2nkr9zs+GiQw
qIQtzH4+djpqbK4by2vxJZwbYKaaUQJAAdMFCcNEGNhrmYruBOP/28+Zoq1j8p43
L0VfxgBH6yknyx5uUhIVLsQL8+oV5E5y8SeyQ80Vexu1my5DQcBnMQJBAJ7uksmx
W/KPzEv/6RQ+dvJl7DAyOQ3pXY9wjB8P0ojAsUgPiD1PiDF7Y6VK9irKgtdm1am2
DXTtTiW+czjb/HY=
-----END PRIVATE KEY-----";

const TEST_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC3Oq4plTlassgQBAmuVPDaiCwD
rw1us6p+f6Wze26ioJAXHwujBt/h+9yhOuL6mRgRG+B4ub3Y0sI2HCce31lA/P6X
UsQwiUgVN3eGXL4P3L1t0C55hvVxlWw9TsI/KwwfXL6EssbN1C++BjKypUx6I7JR
ORNoYR/1Igb16COKewIDAQAB
-----END PUBLIC KEY-----";

fn fields(v: Value) -> Map<String, Value> {
    serde_json::from_value(v).unwrap_or_default()
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().into()
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn new(sim: &SalesforceSim) -> Self {
        let http = reqwest::Client::new();
        let base = sim.base_url();
        let (status, body) = token_request(
            &http,
            &base,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("client_secret", DEFAULT_CLIENT_SECRET),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let token = body["access_token"].as_str().unwrap().to_owned();
        Self { http, base, token }
    }

    fn url(&self, tail: &str) -> String {
        if tail.starts_with("/services/") {
            format!("{}{tail}", self.base)
        } else {
            format!("{}/services/data/v{V}/{tail}", self.base)
        }
    }

    async fn get(&self, tail: &str) -> reqwest::Response {
        self.http
            .get(self.url(tail))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    async fn query(&self, resource: &str, soql: &str, batch: Option<usize>) -> reqwest::Response {
        let q = form(&[("q", soql)]);
        let mut request = self
            .http
            .get(self.url(&format!("{resource}?{q}")))
            .bearer_auth(&self.token);
        if let Some(n) = batch {
            request = request.header("Sforce-Query-Options", format!("batchSize={n}"));
        }
        request.send().await.unwrap()
    }

    async fn json(&self, response: reqwest::Response) -> (StatusCode, Value) {
        let status = response.status();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn send(&self, method: reqwest::Method, tail: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .request(method, self.url(tail))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        self.json(response).await
    }
}

async fn token_request(
    http: &reqwest::Client,
    base: &str,
    pairs: &[(&str, &str)],
) -> (StatusCode, Value) {
    let response = http
        .post(format!("{base}/services/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(pairs))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn password_login(password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "password".to_owned()),
        ("client_id", DEFAULT_CLIENT_ID.to_owned()),
        ("client_secret", DEFAULT_CLIENT_SECRET.to_owned()),
        ("username", DEFAULT_USERNAME.to_owned()),
        ("password", password.to_owned()),
    ]
}

async fn password_request(
    http: &reqwest::Client,
    base: &str,
    password: &str,
) -> (StatusCode, Value) {
    let pairs = password_login(password);
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    token_request(http, base, &refs).await
}

async fn start() -> SalesforceSim {
    SalesforceSim::start(SimOptions::default()).await.unwrap()
}

fn contact(last: &str) -> Map<String, Value> {
    fields(json!({"LastName": last, "FirstName": "Ada", "Email": "ada@example.org"}))
}

// ---- logins ----

#[tokio::test]
async fn client_credentials_login_answers_the_documented_body() {
    let sim = start().await;
    let http = reqwest::Client::new();
    let (status, body) = token_request(
        &http,
        &sim.base_url(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for key in [
        "access_token",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
        "signature",
    ] {
        assert!(body[key].is_string(), "missing {key} in {body}");
    }
    assert_eq!(body["instance_url"], sim.base_url());
    assert_eq!(body["token_type"], "Bearer");

    let (status, body) = token_request(
        &http,
        &sim.base_url(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", "wrong"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_client");
    let counters = sim.counters();
    assert_eq!((counters.successful_logins, counters.failed_logins), (1, 1));
}

#[tokio::test]
async fn password_login_needs_the_security_token_and_locks_after_three_failures() {
    let sim = start().await;
    let http = reqwest::Client::new();
    let base = sim.base_url();
    let right = format!("{DEFAULT_PASSWORD}{DEFAULT_SECURITY_TOKEN}");

    let (status, _) = password_request(&http, &base, &right).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = password_request(&http, &base, DEFAULT_PASSWORD).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "invalid_grant", "error_description": "authentication failure"})
    );

    password_request(&http, &base, "nope").await;
    password_request(&http, &base, "nope again").await;
    assert!(sim.counters().locked_users.contains(DEFAULT_USERNAME));
    // Locked: even the right password fails now.
    let (status, body) = password_request(&http, &base, &right).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(sim.counters().failed_logins, 4);

    sim.unlock_user(DEFAULT_USERNAME);
    let (status, _) = password_request(&http, &base, &right).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_success_resets_the_failure_count() {
    let sim = start().await;
    let http = reqwest::Client::new();
    let base = sim.base_url();
    let right = format!("{DEFAULT_PASSWORD}{DEFAULT_SECURITY_TOKEN}");
    for _ in 0..2 {
        password_request(&http, &base, "bad").await;
    }
    assert_eq!(
        password_request(&http, &base, &right).await.0,
        StatusCode::OK
    );
    for _ in 0..2 {
        password_request(&http, &base, "bad").await;
    }
    assert!(sim.counters().locked_users.is_empty());
}

fn sign_jwt(claims: &Value) -> String {
    use rsa::pkcs1v15::SigningKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(TEST_PRIVATE_KEY).unwrap();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{claims}");
    let signer = SigningKey::<sha2::Sha256>::new(key);
    let signature = signer.sign(signing_input.as_bytes()).to_vec();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

#[tokio::test]
async fn jwt_bearer_login_checks_claims_and_signature() {
    let sim = SalesforceSim::start(SimOptions {
        jwt_public_key_pem: Some(TEST_PUBLIC_KEY.to_owned()),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    sim.set_now(at("2026-11-24T12:00:00Z"));
    let http = reqwest::Client::new();
    let base = sim.base_url();
    let exp = at("2026-11-24T12:03:00Z").timestamp();
    let claims =
        json!({"iss": DEFAULT_CLIENT_ID, "sub": DEFAULT_USERNAME, "aud": base, "exp": exp});
    let grant = "urn:ietf:params:oauth:grant-type:jwt-bearer";

    let assertion = sign_jwt(&claims);
    let (status, body) = token_request(
        &http,
        &base,
        &[("grant_type", grant), ("assertion", &assertion)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = json!("https://login.example.com");
    let (status, body) = token_request(
        &http,
        &base,
        &[("grant_type", grant), ("assertion", &sign_jwt(&wrong_aud))],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error_description"], "audience is invalid");

    let mut expired = claims.clone();
    expired["exp"] = json!(at("2026-11-24T11:59:00Z").timestamp());
    let (status, body) = token_request(
        &http,
        &base,
        &[("grant_type", grant), ("assertion", &sign_jwt(&expired))],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");

    // Claims changed after signing: the signature no longer matches.
    let (head, rest) = assertion.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let mut other = claims.clone();
    other["sub"] = json!("someone@example.org");
    let forged = format!("{head}.{}.{sig}", URL_SAFE_NO_PAD.encode(other.to_string()));
    let (status, body) = token_request(
        &http,
        &base,
        &[("grant_type", grant), ("assertion", &forged)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error_description"], "invalid assertion");
    assert_eq!(sim.counters().failed_logins, 3);
}

fn soap_login_body(username: &str, password: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com"><env:Body><urn:login><urn:username>{username}</urn:username><urn:password>{password}</urn:password></urn:login></env:Body></env:Envelope>"#
    )
}

#[tokio::test]
async fn soap_login_returns_a_session_or_an_invalid_login_fault() {
    let sim = start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/services/Soap/u/{V}", sim.base_url());
    let right = format!("{DEFAULT_PASSWORD}{DEFAULT_SECURITY_TOKEN}");
    let response = http
        .post(&url)
        .header("content-type", "text/xml; charset=UTF-8")
        .header("SOAPAction", "login")
        .body(soap_login_body(DEFAULT_USERNAME, &right))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let xml = response.text().await.unwrap();
    let session = xml
        .split("<sessionId>")
        .nth(1)
        .and_then(|s| s.split("</sessionId>").next())
        .unwrap()
        .to_owned();
    assert!(xml.contains("<serverUrl>") && xml.contains("<userId>005"));

    // The SOAP session id is a REST bearer token too.
    let limits = http
        .get(format!("{}/services/data/v{V}/limits", sim.base_url()))
        .bearer_auth(&session)
        .send()
        .await
        .unwrap();
    assert_eq!(limits.status(), StatusCode::OK);

    let response = http
        .post(&url)
        .header("content-type", "text/xml; charset=UTF-8")
        .body(soap_login_body(DEFAULT_USERNAME, DEFAULT_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let xml = response.text().await.unwrap();
    assert!(
        xml.contains("<faultcode") && xml.contains("INVALID_LOGIN"),
        "{xml}"
    );
    assert_eq!(sim.counters().failed_logins, 1);
}

// ---- query ----

#[tokio::test]
async fn query_pages_follow_batch_size_and_next_records_url() {
    let sim = start().await;
    for i in 0..450 {
        sim.insert("Contact", contact(&format!("Member {i:03}")));
    }
    let c = Client::new(&sim).await;
    let (status, page) = c
        .json(
            c.query(
                "query",
                "SELECT Id, LastName FROM Contact ORDER BY LastName",
                Some(200),
            )
            .await,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["totalSize"], 450);
    assert_eq!(page["done"], false);
    let records = page["records"].as_array().unwrap();
    assert_eq!(records.len(), 200);
    assert_eq!(records[0]["LastName"], "Member 000");
    assert_eq!(records[0]["attributes"]["type"], "Contact");
    let next = page["nextRecordsUrl"].as_str().unwrap().to_owned();
    assert!(
        next.starts_with(&format!("/services/data/v{V}/query/01g")) && next.ends_with("-200"),
        "{next}"
    );

    // The rest comes from the snapshot taken when the query ran, not from the live data.
    sim.insert("Contact", contact("Member 999"));
    let (_, page2) = c.json(c.get(&next).await).await;
    assert_eq!(page2["records"].as_array().unwrap().len(), 200);
    assert_eq!(page2["records"][0]["LastName"], "Member 200");
    let next = page2["nextRecordsUrl"].as_str().unwrap().to_owned();
    let (_, page3) = c.json(c.get(&next).await).await;
    assert_eq!(page3["records"].as_array().unwrap().len(), 50);
    assert_eq!(page3["done"], true);
    assert!(page3.get("nextRecordsUrl").is_none());
    assert_eq!(page3["totalSize"], 450);

    // Without the header: pages of 2,000.
    let (_, all) = c
        .json(c.query("query", "SELECT Id FROM Contact", None).await)
        .await;
    assert_eq!(all["records"].as_array().unwrap().len(), 451);
    assert_eq!(all["done"], true);

    let (status, body) = c
        .json(
            c.get(&format!("/services/data/v{V}/query/01gnope-200"))
                .await,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body[0]["errorCode"], "INVALID_QUERY_LOCATOR");
}

#[tokio::test]
async fn query_hides_deleted_rows_and_query_all_shows_them() {
    let sim = start().await;
    let keep = sim.insert("Contact", contact("Kept"));
    let gone = sim.insert("Contact", contact("Gone"));
    assert!(sim.delete("Contact", &gone));
    let c = Client::new(&sim).await;
    let soql = "SELECT Id, IsDeleted FROM Contact ORDER BY Id";
    let (_, live) = c.json(c.query("query", soql, None).await).await;
    assert_eq!(live["totalSize"], 1);
    assert_eq!(live["records"][0]["Id"], keep.as_str());
    let (_, all) = c.json(c.query("queryAll", soql, None).await).await;
    assert_eq!(all["totalSize"], 2);
    assert_eq!(all["records"][1]["Id"], gone.as_str());
    assert_eq!(all["records"][1]["IsDeleted"], true);

    assert!(sim.undelete("Contact", &gone));
    let (_, live) = c.json(c.query("query", soql, None).await).await;
    assert_eq!(live["totalSize"], 2);
}

#[tokio::test]
async fn queries_traverse_relationships_and_filter_on_modstamps() {
    let sim = start().await;
    sim.set_now(at("2026-11-24T10:00:00Z"));
    let member_rt = sim.add_record_type("Contact", "Member", "Member");
    let acct = sim.insert("Account", fields(json!({"Name": "Acme"})));
    let mut with_account = contact("Linked");
    with_account.insert("AccountId".into(), json!(acct));
    with_account.insert("RecordTypeId".into(), json!(member_rt));
    let linked = sim.insert("Contact", with_account);
    sim.advance(Duration::from_mins(1));
    sim.insert("Contact", contact("Alone"));
    // A late commit: written now, stamped before the others.
    sim.insert_with_modstamp("Contact", contact("Late"), at("2026-11-24T09:00:00Z"));

    let c = Client::new(&sim).await;
    let (status, body) = c
        .json(
            c.query(
                "query",
                "SELECT Id, lastname, Account.Name, RecordType.DeveloperName FROM Contact WHERE SystemModstamp >= 2026-11-24T10:00:00Z ORDER BY SystemModstamp, Id",
                None,
            )
            .await,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["totalSize"], 2);
    let first = &body["records"][0];
    assert_eq!(first["Id"], linked.as_str());
    assert_eq!(
        first["LastName"], "Linked",
        "field names come back as describe spells them"
    );
    assert_eq!(first["Account"]["Name"], "Acme");
    assert_eq!(first["Account"]["attributes"]["type"], "Account");
    assert_eq!(first["RecordType"]["DeveloperName"], "Member");
    assert_eq!(body["records"][1]["Account"], Value::Null);

    let (_, late) = c
        .json(
            c.query(
                "query",
                "SELECT Id, SystemModstamp FROM Contact WHERE LastName = 'Late'",
                None,
            )
            .await,
        )
        .await;
    assert_eq!(
        late["records"][0]["SystemModstamp"],
        "2026-11-24T09:00:00.000+0000"
    );
}

#[tokio::test]
async fn bad_queries_answer_salesforce_errors() {
    let sim = start().await;
    let c = Client::new(&sim).await;
    let (status, body) = c
        .json(c.query("query", "SELECT Nope__c FROM Contact", None).await)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body[0]["errorCode"], "INVALID_FIELD");
    let (status, body) = c
        .json(c.query("query", "SELECT FROM Contact WHERE", None).await)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body[0]["errorCode"], "MALFORMED_QUERY");
    let (status, body) = c
        .json(c.query("query", "SELECT Id FROM Widget__c", None).await)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body[0]["errorCode"], "INVALID_TYPE");
    // A literal of the wrong type for the field, as Salesforce checks against describe.
    let (status, body) = c
        .json(
            c.query(
                "query",
                "SELECT Id FROM Contact WHERE SystemModstamp > 'yesterday'",
                None,
            )
            .await,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body[0]["errorCode"], "INVALID_FIELD");
    let (status, body) = c
        .json(
            c.query("query", "SELECT Id, Acct.Name FROM Contact", None)
                .await,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body[0]["errorCode"], "INVALID_FIELD");
    assert!(
        body[0]["message"]
            .as_str()
            .unwrap()
            .contains("relationship 'Acct'")
    );
}

#[tokio::test]
async fn a_query_over_the_timeout_threshold_answers_query_timeout() {
    let sim = SalesforceSim::start(SimOptions {
        faults: FaultPlan {
            query_timeout_over_rows: Some(5),
            ..FaultPlan::default()
        },
        ..SimOptions::default()
    })
    .await
    .unwrap();
    for i in 0..8 {
        sim.insert("Contact", contact(&format!("C{i}")));
    }
    let c = Client::new(&sim).await;
    // LIMIT does not help: the rows still have to be scanned.
    let (status, body) = c
        .json(
            c.query("query", "SELECT Id FROM Contact LIMIT 2", None)
                .await,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body[0]["errorCode"], "QUERY_TIMEOUT");
    let (status, _) = c
        .json(
            c.query(
                "query",
                "SELECT Id FROM Contact WHERE LastName IN ('C1','C2')",
                None,
            )
            .await,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_user_keeps_at_most_ten_open_cursors() {
    let sim = start().await;
    for i in 0..250 {
        sim.insert("Contact", contact(&format!("C{i}")));
    }
    let c = Client::new(&sim).await;
    let mut next = Vec::new();
    for _ in 0..11 {
        let (_, page) = c
            .json(
                c.query("queryAll", "SELECT Id FROM Contact", Some(200))
                    .await,
            )
            .await;
        next.push(page["nextRecordsUrl"].as_str().unwrap().to_owned());
    }
    // Opening the eleventh released the oldest.
    let (status, body) = c.json(c.get(&next[0]).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body[0]["errorCode"], "INVALID_QUERY_LOCATOR");
    let (status, page) = c.json(c.get(&next[10]).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["records"].as_array().unwrap().len(), 50);

    // Locators are released after 15 idle minutes of the org's clock.
    sim.advance(Duration::from_mins(16));
    let (status, _) = c.json(c.get(&next[9]).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn count_queries_answer_a_total_and_no_records() {
    let sim = start().await;
    for i in 0..3 {
        sim.insert("Contact", contact(&format!("C{i}")));
    }
    let c = Client::new(&sim).await;
    let (status, body) = c
        .json(c.query("query", "SELECT COUNT() FROM Contact", None).await)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"totalSize": 3, "done": true, "records": []}));
}

// ---- sobjects ----

#[tokio::test]
async fn composite_retrieve_answers_in_id_order_with_null_for_deleted_and_missing() {
    let sim = start().await;
    let a = sim.insert("Contact", contact("A"));
    let b = sim.insert("Contact", contact("B"));
    let d = sim.insert("Contact", contact("D"));
    sim.delete("Contact", &d);
    let missing = "003Sm0zzzzzzzzzAAA";
    let missing = hlsync_sim::salesforce::to_18(&missing[..15]).unwrap();
    let c = Client::new(&sim).await;
    let (status, body) = c
        .send(
            reqwest::Method::POST,
            "composite/sobjects/Contact",
            json!({"ids": [b, d, a, missing], "fields": ["Id", "LastName", "Email"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list = body.as_array().unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!(list[0]["LastName"], "B");
    assert_eq!(list[0]["attributes"]["type"], "Contact");
    assert_eq!(list[1], Value::Null);
    assert_eq!(list[2]["Id"], a.as_str());
    assert_eq!(list[3], Value::Null);

    let (status, body) = c
        .send(
            reqwest::Method::POST,
            "composite/sobjects/Contact",
            json!({"ids": [a], "fields": ["Id", "Account.Name"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body[0]["errorCode"], "INVALID_FIELD");

    // The GET form of the same resource.
    let (status, body) = c
        .json(
            c.get(&format!(
                "composite/sobjects/Contact?ids={a},{d}&fields=LastName"
            ))
            .await,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body[0]["LastName"], "A");
    assert_eq!(body[1], Value::Null);

    let (status, body) = c.json(c.get(&format!("sobjects/Contact/{d}")).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body[0]["errorCode"], "ENTITY_IS_DELETED");
    let (status, body) = c.json(c.get(&format!("sobjects/Contact/{a}")).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["LastName"], "A");
}

#[tokio::test]
async fn patch_collections_report_each_record_and_bump_modstamps() {
    let sim = start().await;
    sim.set_now(at("2026-11-24T10:00:00Z"));
    let ok = sim.insert("Contact", contact("Ok"));
    let deleted = sim.insert("Contact", contact("Deleted"));
    sim.delete("Contact", &deleted);
    sim.advance(Duration::from_secs(30));
    let c = Client::new(&sim).await;
    let record = |id: &str, extra: Value| {
        let mut r = json!({"attributes": {"type": "Contact"}, "id": id});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    };
    let (status, body) = c
        .send(
            reqwest::Method::PATCH,
            "composite/sobjects",
            json!({"allOrNone": false, "records": [
                record(&ok, json!({"HasOptedOutOfEmail": true})),
                record(&deleted, json!({"HasOptedOutOfEmail": true})),
                record(&ok, json!({"Bogus__c": 1})),
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body[0], json!({"id": ok, "success": true, "errors": []}));
    assert_eq!(body[1]["success"], false);
    assert_eq!(body[1]["errors"][0]["statusCode"], "ENTITY_IS_DELETED");
    assert_eq!(body[2]["errors"][0]["statusCode"], "INVALID_FIELD");
    let stored = sim.get("Contact", &ok).unwrap();
    assert_eq!(stored["HasOptedOutOfEmail"], true);
    assert_eq!(stored["SystemModstamp"], "2026-11-24T10:00:30.000+0000");

    // allOrNone: one failure rolls every record back.
    let (_, body) = c
        .send(
            reqwest::Method::PATCH,
            "composite/sobjects",
            json!({"allOrNone": true, "records": [
                record(&ok, json!({"HasOptedOutOfEmail": false})),
                record(&deleted, json!({"Title": "x"})),
            ]}),
        )
        .await;
    assert_eq!(
        body[0]["errors"][0]["statusCode"],
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert_eq!(sim.get("Contact", &ok).unwrap()["HasOptedOutOfEmail"], true);

    let too_many: Vec<Value> = (0..201).map(|_| record(&ok, json!({}))).collect();
    let (status, _) = c
        .send(
            reqwest::Method::PATCH,
            "composite/sobjects",
            json!({"records": too_many}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn describe_reflects_field_and_record_type_changes_at_run_time() {
    let sim = start().await;
    let c = Client::new(&sim).await;
    let (status, body) = c.json(c.get("sobjects/Contact/describe").await).await;
    assert_eq!(status, StatusCode::OK);
    let field = |body: &Value, name: &str| {
        body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .cloned()
    };
    let board = field(&body, "HL_Is_Board__c").unwrap();
    assert_eq!(
        (board["type"].as_str(), board["calculated"].as_bool()),
        (Some("boolean"), Some(true))
    );
    assert_eq!(field(&body, "HL_Staff__c").unwrap()["label"], "Staff");
    assert_eq!(
        field(&body, "HL_Committees__c").unwrap()["type"],
        "multipicklist"
    );
    assert!(field(&body, "HL_Region__c").is_none());
    let infos = body["recordTypeInfos"].as_array().unwrap();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0]["master"], true);

    sim.add_field(
        "Contact",
        FieldSpec::picklist("HL_Region__c", "Region", &["North", "South"]),
    );
    let staff = sim.add_record_type("Contact", "Staff", "Staff");
    let (_, body) = c.json(c.get("sobjects/Contact/describe").await).await;
    let region = field(&body, "HL_Region__c").unwrap();
    assert_eq!(region["picklistValues"][1]["value"], "South");
    let infos = body["recordTypeInfos"].as_array().unwrap();
    assert!(
        infos
            .iter()
            .any(|i| i["recordTypeId"] == staff.as_str() && i["developerName"] == "Staff")
    );
    let (status, _) = c
        .json(
            c.query("query", "SELECT HL_Region__c FROM Contact", None)
                .await,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    sim.remove_field("Contact", "HL_Region__c");
    let (status, _) = c
        .json(
            c.query("query", "SELECT HL_Region__c FROM Contact", None)
                .await,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = c.json(c.get("sobjects/Widget__c/describe").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body[0]["errorCode"], "NOT_FOUND");
}

// ---- limits, sessions, sizes, versions ----

#[tokio::test]
async fn every_data_response_carries_usage_and_the_limit_answers_403() {
    let sim = SalesforceSim::start(SimOptions {
        daily_api_max: 5,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    sim.set_now(at("2026-11-24T10:00:00Z"));
    let c = Client::new(&sim).await;
    let response = c.get("limits").await;
    assert_eq!(response.headers()["sforce-limit-info"], "api-usage=1/5");
    assert_eq!(response.headers()["date"], "Tue, 24 Nov 2026 10:00:00 GMT");
    let (_, body) = c.json(response).await;
    assert_eq!(body["DailyApiRequests"], json!({"Max": 5, "Remaining": 4}));

    let response = c.get("sobjects/Nope/describe").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()["sforce-limit-info"], "api-usage=2/5");

    sim.set_api_usage(5);
    let response = c.get("limits").await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.headers()["sforce-limit-info"], "api-usage=5/5");
    let (_, body) = c.json(response).await;
    assert_eq!(
        body,
        json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    );
}

#[tokio::test]
async fn expired_sessions_answer_401_until_the_client_logs_in_again() {
    let sim = start().await;
    let c = Client::new(&sim).await;
    assert_eq!(c.get("limits").await.status(), StatusCode::OK);
    sim.expire_sessions();
    let response = c.get("limits").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("sforce-limit-info"));
    let (_, body) = c.json(response).await;
    assert_eq!(
        body,
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    );
    let fresh = Client::new(&sim).await;
    assert_eq!(fresh.get("limits").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn oversized_urls_and_headers_are_refused() {
    let sim = start().await;
    let c = Client::new(&sim).await;
    let long = format!(
        "SELECT Id FROM Contact WHERE LastName = '{}'",
        "x".repeat(17_000)
    );
    assert_eq!(
        c.query("query", &long, None).await.status(),
        StatusCode::URI_TOO_LONG
    );
    let response = c
        .http
        .get(c.url("limits"))
        .bearer_auth(&c.token)
        .header("X-Padding", "y".repeat(10_000))
        .header("X-More-Padding", "z".repeat(7_000))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_eq!(sim.api_usage(), 0, "refused requests never reach the org");
}

#[tokio::test]
async fn unknown_versions_and_resources_answer_404() {
    let sim = start().await;
    let c = Client::new(&sim).await;
    let (status, body) = c.json(c.get("/services/data/v12.0/limits").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body[0]["errorCode"], "NOT_FOUND");
    let (status, body) = c.json(c.get("/services/data").await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.as_array().unwrap().iter().any(|v| v["version"] == V));
    let (status, body) = c.send(reqwest::Method::POST, "limits", json!({})).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body[0]["errorCode"], "METHOD_NOT_ALLOWED");
}

// ---- faults ----

async fn statuses(seed: u64, calls: usize) -> Vec<u16> {
    let sim = SalesforceSim::start(SimOptions {
        seed,
        faults: FaultPlan {
            p_503: 0.3,
            p_500: 0.1,
            ..FaultPlan::default()
        },
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let c = Client::new(&sim).await;
    let mut out = Vec::with_capacity(calls);
    for _ in 0..calls {
        out.push(c.get("limits").await.status().as_u16());
    }
    out
}

#[tokio::test]
async fn random_faults_repeat_for_a_seed() {
    let first = statuses(42, 40).await;
    assert_eq!(first, statuses(42, 40).await);
    assert_ne!(first, statuses(43, 40).await);
    assert!(first.contains(&503) && first.contains(&200));
}

#[tokio::test]
async fn scripted_faults_fail_the_next_calls_then_recover() {
    let sim = start().await;
    let c = Client::new(&sim).await;
    sim.fail_next_calls(2);
    for _ in 0..2 {
        let response = c.get("limits").await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let (_, body) = c.json(response).await;
        assert_eq!(body[0]["errorCode"], "SERVER_UNAVAILABLE");
    }
    assert_eq!(c.get("limits").await.status(), StatusCode::OK);
    assert_eq!(sim.counters().faults_served, 2);
    assert_eq!(sim.counters().calls_by_endpoint["limits"], 3);
}

// ---- composite ----

fn query_sub(reference: &str, resource: &str, soql: &str, batch: Option<usize>) -> Value {
    let mut sub = json!({
        "method": "GET",
        "url": format!("/services/data/v{V}/{resource}?{}", form(&[("q", soql)])),
        "referenceId": reference,
    });
    if let Some(n) = batch {
        sub["httpHeaders"] = json!({"Sforce-Query-Options": format!("batchSize={n}")});
    }
    sub
}

fn get_sub(reference: &str, tail: &str) -> Value {
    let url = if tail.starts_with("/services/") {
        tail.to_owned()
    } else {
        format!("/services/data/v{V}/{tail}")
    };
    json!({"method": "GET", "url": url, "referenceId": reference})
}

async fn composite(c: &Client, subrequests: Vec<Value>) -> (StatusCode, Vec<Value>) {
    let (status, body) = c
        .send(
            reqwest::Method::POST,
            "composite",
            json!({"allOrNone": false, "compositeRequest": subrequests}),
        )
        .await;
    let results = body["compositeResponse"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no compositeResponse in {body}"));
    (status, results)
}

#[tokio::test]
async fn composite_runs_subrequests_in_one_call_through_the_plain_endpoints() {
    let sim = start().await;
    let mut ids = Vec::new();
    for i in 0..450 {
        ids.push(sim.insert("Contact", contact(&format!("Member {i:03}"))));
    }
    assert!(sim.delete("Contact", &ids[449]));
    let c = Client::new(&sim).await;
    sim.reset_counters();
    let usage = sim.api_usage();
    let soql = "SELECT Id, LastName FROM Contact ORDER BY LastName";
    let (status, results) = composite(
        &c,
        vec![
            query_sub("live", "query", soql, Some(200)),
            query_sub("all", "queryAll", "SELECT Id FROM Contact", None),
            get_sub("describe", "sobjects/Contact/describe"),
            get_sub(
                "one",
                &format!("sobjects/Contact/{}?fields=LastName", ids[7]),
            ),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sim.api_usage(), usage + 1, "one call toward the limit");
    let counters = sim.counters();
    assert_eq!(counters.api_calls, 1);
    assert_eq!(counters.calls_by_endpoint.get("composite"), Some(&1));
    assert_eq!(counters.calls_by_endpoint.get("query"), None);
    assert_eq!(counters.subrequests(), 4);
    assert_eq!(counters.subrequests_by_endpoint.get("queryAll"), Some(&1));

    let refs: Vec<&str> = results
        .iter()
        .map(|r| r["referenceId"].as_str().unwrap())
        .collect();
    assert_eq!(refs, ["live", "all", "describe", "one"]);
    assert!(
        results.iter().all(|r| r["httpStatusCode"] == 200),
        "{results:?}"
    );
    let live = &results[0]["body"];
    assert_eq!(live["totalSize"], 449, "the deleted row is left out");
    assert_eq!(
        live["records"].as_array().unwrap().len(),
        200,
        "the subrequest's batch size"
    );
    assert_eq!(
        results[1]["body"]["totalSize"], 450,
        "queryAll sees the deleted row"
    );
    assert_eq!(results[1]["body"]["done"], true);
    assert_eq!(results[2]["body"]["name"], "Contact");
    assert_eq!(results[3]["body"]["LastName"], "Member 007");

    // The next page of a query read inside a composite request, read outside it...
    let next = live["nextRecordsUrl"].as_str().unwrap().to_owned();
    let (status, page2) = c.json(c.get(&next).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page2["records"][0]["LastName"], "Member 200");
    // ...and the last page, read inside one again.
    let next = page2["nextRecordsUrl"].as_str().unwrap().to_owned();
    let (_, results) = composite(&c, vec![get_sub("more", &next)]).await;
    assert_eq!(results[0]["httpStatusCode"], 200);
    assert_eq!(results[0]["body"]["records"].as_array().unwrap().len(), 49);
    assert_eq!(results[0]["body"]["done"], true);
    assert_eq!(
        sim.counters().subrequests_by_endpoint.get("query_more"),
        Some(&1)
    );

    // A plain query's next page, read inside a composite request.
    let (_, plain) = c.json(c.query("query", soql, Some(300)).await).await;
    let next = plain["nextRecordsUrl"].as_str().unwrap();
    let (_, results) = composite(&c, vec![get_sub("more", next)]).await;
    assert_eq!(results[0]["body"]["records"][0]["LastName"], "Member 300");
}

#[tokio::test]
async fn composite_limits_answer_limit_exceeded_and_run_nothing() {
    let sim = start().await;
    sim.insert("Contact", contact("Only"));
    let c = Client::new(&sim).await;
    sim.reset_counters();

    let six: Vec<Value> = (0..6)
        .map(|i| query_sub(&format!("q{i}"), "query", "SELECT Id FROM Contact", None))
        .collect();
    let (status, results) = composite(&c, six).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0]["httpStatusCode"], 400);
    assert_eq!(results[0]["referenceId"], Value::Null);
    assert_eq!(results[0]["body"][0]["errorCode"], "LIMIT_EXCEEDED");
    assert_eq!(sim.counters().subrequests(), 0);
    assert_eq!(
        sim.counters().api_calls,
        1,
        "the refused request still counts"
    );

    // Query-more requests count toward the five like queries.
    let mut mixed: Vec<Value> = (0..5)
        .map(|i| query_sub(&format!("q{i}"), "queryAll", "SELECT Id FROM Contact", None))
        .collect();
    mixed.push(get_sub(
        "more",
        &format!("/services/data/v{V}/query/01gX-200"),
    ));
    let (_, results) = composite(&c, mixed).await;
    assert_eq!(results[0]["body"][0]["errorCode"], "LIMIT_EXCEEDED");

    let many: Vec<Value> = (0..26)
        .map(|i| get_sub(&format!("d{i}"), "sobjects/Contact/describe"))
        .collect();
    let (_, results) = composite(&c, many).await;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["body"][0]["errorCode"], "LIMIT_EXCEEDED");
    assert!(
        results[0]["body"][0]["message"]
            .as_str()
            .unwrap()
            .contains("25"),
        "{results:?}"
    );

    // Five queries and twenty other subrequests: the most one request may hold.
    let mut full: Vec<Value> = (0..5)
        .map(|i| query_sub(&format!("q{i}"), "query", "SELECT Id FROM Contact", None))
        .collect();
    full.extend((0..20).map(|i| get_sub(&format!("d{i}"), "sobjects/Contact/describe")));
    let (_, results) = composite(&c, full).await;
    assert_eq!(results.len(), 25);
    assert!(results.iter().all(|r| r["httpStatusCode"] == 200));
    assert_eq!(sim.counters().subrequests(), 25);
}

#[tokio::test]
async fn composite_subrequest_errors_stay_in_their_result() {
    let sim = SalesforceSim::start(SimOptions {
        faults: FaultPlan {
            query_timeout_over_rows: Some(3),
            ..FaultPlan::default()
        },
        ..SimOptions::default()
    })
    .await
    .unwrap();
    for i in 0..5 {
        sim.insert("Contact", contact(&format!("C{i}")));
    }
    let c = Client::new(&sim).await;
    let (status, results) = composite(
        &c,
        vec![
            query_sub("good", "query", "SELECT Id FROM Contact WHERE LastName = 'C1'", None),
            query_sub("bad", "query", "SELEC Id FROM Contact", None),
            query_sub("slow", "query", "SELECT Id FROM Contact", None),
            get_sub("ref", "sobjects/Contact/@{good.records[0].Id}"),
            get_sub("nowhere", "tooling/query"),
            json!({"method": "PATCH", "url": format!("/services/data/v{V}/sobjects/Contact/describe"),
                   "referenceId": "patch"}),
            json!({"method": "PATCH", "url": format!("/services/data/v{V}/composite/sobjects"),
                   "referenceId": "write", "body": {"allOrNone": false, "records": []}}),
            get_sub("old", "/services/data/v20.0/sobjects"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let by_ref = |r: &str| {
        results
            .iter()
            .find(|x| x["referenceId"] == r)
            .unwrap_or_else(|| panic!("no {r} in {results:?}"))
            .clone()
    };
    assert_eq!(by_ref("good")["httpStatusCode"], 200);
    assert_eq!(by_ref("good")["body"]["totalSize"], 1);
    assert_eq!(by_ref("bad")["httpStatusCode"], 400);
    assert_eq!(by_ref("bad")["body"][0]["errorCode"], "MALFORMED_QUERY");
    assert_eq!(by_ref("slow")["body"][0]["errorCode"], "QUERY_TIMEOUT");
    assert_eq!(by_ref("ref")["httpStatusCode"], 400);
    assert!(
        by_ref("ref")["body"][0]["message"]
            .as_str()
            .unwrap()
            .contains("@{reference}")
    );
    assert_eq!(by_ref("nowhere")["httpStatusCode"], 404);
    assert_eq!(by_ref("patch")["httpStatusCode"], 405);
    assert_eq!(by_ref("write")["httpStatusCode"], 400);
    assert_eq!(by_ref("old")["httpStatusCode"], 404);
    assert_eq!(sim.counters().api_calls, 1);

    // allOrNone: the subrequests that succeeded answer 400 as well.
    let (_, results) = c
        .send(
            reqwest::Method::POST,
            "composite",
            json!({"allOrNone": true, "compositeRequest": [
                query_sub("good", "query", "SELECT Id FROM Contact WHERE LastName = 'C1'", None),
                query_sub("bad", "query", "SELEC Id FROM Contact", None),
            ]}),
        )
        .await;
    let results = results["compositeResponse"].as_array().unwrap();
    assert_eq!(results[0]["httpStatusCode"], 400);
    assert_eq!(results[0]["body"][0]["errorCode"], "PROCESSING_HALTED");
    assert_eq!(results[1]["body"][0]["errorCode"], "MALFORMED_QUERY");

    // A body that does not describe subrequests fails as a whole.
    for body in [
        json!({"allOrNone": false}),
        json!({"compositeRequest": [{"method": "GET", "url": "/services/data/v62.0/limits"}]}),
        json!({"compositeRequest": [get_sub("a b", "limits")]}),
        json!({"compositeRequest": [get_sub("same", "limits"), get_sub("same", "limits")]}),
    ] {
        let (status, answer) = c.send(reqwest::Method::POST, "composite", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer[0]["errorCode"], "JSON_PARSER_ERROR");
    }
}

#[tokio::test]
async fn a_fault_fails_the_whole_composite_request() {
    let sim = start().await;
    let c = Client::new(&sim).await;
    sim.fail_next_calls(1);
    let (status, body) = c
        .send(
            reqwest::Method::POST,
            "composite",
            json!({"compositeRequest": [query_sub("q", "query", "SELECT Id FROM Contact", None)]}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body[0]["errorCode"], "SERVER_UNAVAILABLE");
    assert_eq!(sim.counters().subrequests(), 0);
    let (status, list) = c.json(c.get("composite").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list["sobjects"],
        format!("/services/data/v{V}/composite/sobjects")
    );
}

// ---- generated data ----

#[tokio::test]
async fn a_generated_dataset_loads_and_answers_queries() {
    let sim = start().await;
    let data = generate_at(300, 5, at("2026-11-24T19:00:00Z"));
    sim.load(&data);
    assert_eq!(sim.all("Contact").len(), 300);
    let c = Client::new(&sim).await;
    let (status, body) = c
        .json(
            c.query(
                "queryAll",
                "SELECT Id, Account.Name, RecordType.Name, HL_Committees__c FROM Contact WHERE RecordType.DeveloperName = 'Staff'",
                None,
            )
            .await,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let records = body["records"].as_array().unwrap();
    assert!(!records.is_empty());
    assert!(records.iter().all(|r| r["RecordType"]["Name"] == "Staff"));
    let (_, events) = c
        .json(
            c.query(
                "query",
                "SELECT COUNT() FROM Campaign WHERE Type = 'Event'",
                None,
            )
            .await,
        )
        .await;
    assert!(events["totalSize"].as_u64().unwrap() > 0);
}
