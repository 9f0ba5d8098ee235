//! Shared test support: a scripted HTTP server answering fixed bodies, and client builders.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, Uri};
use hlsync_core::config::SalesforceConfig;
use hlsync_salesforce::{ClientOptions, RetryPolicy, SalesforceClient, SalesforceCredentials};

/// One request the scripted server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// A fixed answer: status, extra headers, body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Answer {
    pub fn json(status: u16, body: &str) -> Self {
        Answer {
            status,
            headers: vec![("content-type", "application/json;charset=UTF-8".into())],
            body: body.to_string(),
        }
    }

    pub fn xml(status: u16, body: &str) -> Self {
        Answer {
            status,
            headers: vec![("content-type", "text/xml;charset=UTF-8".into())],
            body: body.to_string(),
        }
    }

    pub fn with(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
}

type Script = dyn Fn(&Seen, &str) -> Answer + Send + Sync;

#[derive(Clone)]
struct ServerState {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Script>,
    base: String,
}

/// A local server that records every request and answers with `script(request, base_url)`.
pub struct FixedServer {
    pub base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FixedServer {
    pub async fn start(script: impl Fn(&Seen, &str) -> Answer + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = ServerState {
            seen: seen.clone(),
            script: Arc::new(script),
            base: base.clone(),
        };
        let app = Router::new().fallback(handle).with_state(state);
        // The listener is bound already: connections queue until the server task runs.
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FixedServer { base, seen, task }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests whose path contains `part`.
    pub fn count(&self, part: &str) -> usize {
        self.seen().iter().filter(|s| s.path.contains(part)).count()
    }
}

impl Drop for FixedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(state): State<ServerState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response<Body> {
    let seen = Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        headers,
        body,
    };
    state.seen.lock().unwrap().push(seen.clone());
    let answer = (state.script)(&seen, &state.base);
    let mut builder = Response::builder().status(answer.status);
    for (k, v) in answer.headers {
        builder = builder.header(k, v);
    }
    builder.body(Body::from(answer.body)).unwrap()
}

/// The `[salesforce]` config of SPEC.md §3 with its defaults.
pub fn sf_config() -> SalesforceConfig {
    sf_config_with(100_000, 0.5)
}

pub fn sf_config_with(daily_api_allotment: u64, max_allotment_share: f64) -> SalesforceConfig {
    SalesforceConfig {
        daily_api_allotment,
        max_allotment_share,
        ..SalesforceConfig::default()
    }
}

/// Retries that take milliseconds, not seconds.
pub fn fast_options() -> ClientOptions {
    ClientOptions {
        retry: RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
        request_timeout: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(5),
        query_batch_size: None,
        ..ClientOptions::default()
    }
}

pub fn creds(json: serde_json::Value) -> SalesforceCredentials {
    serde_json::from_value(json).unwrap()
}

pub fn client(creds: SalesforceCredentials) -> SalesforceClient {
    SalesforceClient::with_options(&sf_config(), creds, true, fast_options()).unwrap()
}

pub fn client_with(cfg: &SalesforceConfig, creds: SalesforceCredentials) -> SalesforceClient {
    SalesforceClient::with_options(cfg, creds, true, fast_options()).unwrap()
}

pub const TEST_KEY_PEM: &str = include_str!("../fixtures/jwt_test_key.pem");
pub const TEST_PUBLIC_KEY_PEM: &str = include_str!("../fixtures/jwt_test_key.pub.pem");
