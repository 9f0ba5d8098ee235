//! No secret in any log line or `Debug` output, with every event of every crate recorded at
//! TRACE. A binary of its own: tracing caches per call site whether anyone listens, so the
//! subscriber must be the global one, installed before any call site fires.

mod common;

use std::sync::{Arc, Mutex, OnceLock};

use chrono::Duration as TimeDelta;
use common::*;
use hlsync_sim::salesforce::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_PASSWORD, DEFAULT_SECURITY_TOKEN,
    DEFAULT_USERNAME, SalesforceSim, SimOptions,
};
use hlsync_sim::scripted::{Reply, ScriptedServer};
use serde_json::{Map, Value, json};

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything logged by any test of this binary.
fn logs() -> &'static LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = LogBuffer::default();
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        buffer
    })
}

fn logged() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned()
}

fn assert_absent(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} leaked into:\n{text}");
    }
}

const ACCESS_TOKEN: &str = "00Dx0000000BV7z!AR8AQ-ACCESS-TOKEN-4242";

#[tokio::test]
async fn fixed_server_login_query_and_relogin_log_no_secret() {
    logs();
    let server = ScriptedServer::start(|req, base| match req.path.as_str() {
        "/services/oauth2/token" => Reply::json(
            200,
            &json!({"access_token": ACCESS_TOKEN, "instance_url": base, "token_type": "Bearer",
                    "id": "https://login.salesforce.com/id/00Dx0000000BV7z/005x00000012Q9P",
                    "issued_at": "1278448832702", "signature": "0CmxinZir53Yex7nE0TD+zMpvIWYGb/bdJh6XfOH6EQ="})
            .to_string(),
        ),
        "/services/data/v62.0/query" => Reply::json(
            200,
            r#"{"totalSize":1,"done":true,"records":[{"attributes":{"type":"Contact"},"Id":"003D000000QV9n2IAD"}]}"#,
        )
        .with("sforce-limit-info", "api-usage=18/5000"),
        _ => Reply::json(401, r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#),
    })
    .await;
    let c = creds(json!({"login_url": server.base, "auth": "password",
        "client_id": "cid", "client_secret": "CLIENT-SECRET-777", "username": "integration@org",
        "password": "PASSWORD-888", "security_token": "SECTOKEN-999"}));
    let sf = client(c.clone());
    sf.query("SELECT Id FROM Contact")
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    // A 401 path as well: re-login, then a second 401, all logged.
    let _ = sf.describe("Contact", false).await;
    tracing::debug!(client = ?sf, credentials = ?c, "debug output of the client and its secret");
    let text = logged();
    assert!(
        text.contains("calling Salesforce"),
        "the client logs at debug:\n{text}"
    );
    assert!(text.contains("logging in again"), "{text}");
    assert_absent(
        &text,
        &[
            "CLIENT-SECRET-777",
            "PASSWORD-888",
            "SECTOKEN-999",
            ACCESS_TOKEN,
            "ACCESS-TOKEN-4242",
        ],
    );
}

#[tokio::test]
async fn simulator_logins_and_queries_log_no_secret() {
    logs();
    let sim = SalesforceSim::start(SimOptions::default()).await.unwrap();
    let at = sim.now() - TimeDelta::hours(1);
    for i in 0..300 {
        let mut fields = Map::new();
        fields.insert("LastName".into(), Value::from(format!("Contact {i}")));
        sim.insert_with_modstamp("Contact", fields, at);
    }
    for auth in ["client_credentials", "password", "soap"] {
        let c = creds(json!({"login_url": sim.base_url(), "auth": auth,
            "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET,
            "username": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD,
            "security_token": DEFAULT_SECURITY_TOKEN}));
        let sf = client(c.clone());
        let records = sf
            .query("SELECT Id FROM Contact")
            .unwrap()
            .batch_size(200)
            .collect_all()
            .await
            .unwrap();
        assert_eq!(records.len(), 300);
        sim.expire_sessions();
        sf.describe("Contact", false).await.unwrap();
        tracing::debug!(client = ?sf, credentials = ?c, "debug output of the client and its secret");
    }
    let text = logged();
    assert!(text.contains("logged in to Salesforce"), "{text}");
    assert_absent(
        &text,
        &[
            DEFAULT_PASSWORD,
            DEFAULT_SECURITY_TOKEN,
            DEFAULT_CLIENT_SECRET,
        ],
    );
}
