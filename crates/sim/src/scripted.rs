//! A scripted HTTP server for client tests: it answers each request with what a closure (the
//! script) says and records every request it received, with the status it answered.
//!
//! Where the simulators behave like Salesforce and Higher Logic, this server behaves only as a
//! test says, so a client can be pinned to the documented formats and answers (and to failures
//! the simulators never give) rather than to whatever a simulator happens to do.
//!
//! ```no_run
//! # async fn example() {
//! use hlsync_sim::scripted::{Reply, ScriptedServer};
//!
//! // The first request is refused, every later one accepted.
//! let server = ScriptedServer::start(|request, _base| match request.number {
//!     0 => Reply::new(503, "busy").with("Retry-After", "1"),
//!     _ => Reply::json(200, r#"{"ok":true}"#),
//! })
//! .await;
//! // ... point a client at `server.base` and call it ...
//! let seen = server.seen();
//! assert_eq!(seen[1].path, "/v2/contactinfo");
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Response, Uri};

pub use axum::body::Bytes;
pub use axum::http::{HeaderMap, Method, StatusCode};

use crate::serve::{Server, bind};

/// One request as the server received it, and the status it was answered with.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Its place among the requests this server received, from 0.
    pub number: usize,
    pub method: Method,
    pub path: String,
    /// The query string without its `?`; `None` where the URI had none.
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The body exactly as it came.
    pub body: Bytes,
    /// The status the script answered with. The script itself, which decides it, sees `200 OK`.
    pub status: StatusCode,
}

impl Seen {
    /// The value of header `name` (any case), if it is there and is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text. Panics (failing the test) if it is not UTF-8.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("a request body that is UTF-8 text")
    }
}

/// What the server answers to one request: a status, headers, a body.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    /// A reply with no header of its own (no `content-type` either).
    pub fn new(status: u16, body: &str) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: body.to_owned(),
        }
    }

    /// A JSON reply, as Salesforce's REST API sends it.
    pub fn json(status: u16, body: &str) -> Self {
        Reply::new(status, body).with("content-type", "application/json;charset=UTF-8")
    }

    /// An XML reply, as Salesforce's SOAP API sends it.
    pub fn xml(status: u16, body: &str) -> Self {
        Reply::new(status, body).with("content-type", "text/xml;charset=UTF-8")
    }

    /// The same reply with one more header.
    #[must_use]
    pub fn with(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// The script: the reply to a request, given the request and the server's base URL (for
/// answers that point back at the server, such as a login's `instance_url`).
type Script = dyn Fn(&Seen, &str) -> Reply + Send + Sync;

#[derive(Clone)]
struct Shared {
    script: Arc<Script>,
    seen: Arc<Mutex<Vec<Seen>>>,
    base: String,
}

/// A server on a free port of 127.0.0.1 that answers by its script and records every request.
/// It stops when dropped.
pub struct ScriptedServer {
    /// `http://127.0.0.1:PORT`, with no trailing slash.
    pub base: String,
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _server: Server,
}

impl ScriptedServer {
    /// Binds a free port and starts serving: requests sent from now on are answered (the
    /// listener is bound before this returns, so none is refused).
    pub async fn start(script: impl Fn(&Seen, &str) -> Reply + Send + Sync + 'static) -> Self {
        let (listener, addr) = bind(0).await.unwrap_or_else(|(addr, error)| {
            panic!("the scripted server cannot bind {addr}: {error}")
        });
        let base = format!("http://{addr}");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            script: Arc::new(script),
            seen: Arc::clone(&seen),
            base: base.clone(),
        };
        let router = Router::new().fallback(answer).with_state(shared);
        let server = Server::spawn(listener, router, "scripted server");
        ScriptedServer {
            base,
            addr,
            seen,
            _server: server,
        }
    }

    /// Every request received so far, in the order they came.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.seen).clone()
    }

    /// How many requests so far had a path containing `part`.
    pub fn count(&self, part: &str) -> usize {
        lock(&self.seen)
            .iter()
            .filter(|s| s.path.contains(part))
            .count()
    }
}

/// The log, even after a script panicked while holding it: the requests before stay readable.
fn lock(seen: &Mutex<Vec<Seen>>) -> MutexGuard<'_, Vec<Seen>> {
    seen.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records the request and answers it by the script. The log stays locked while the script runs,
/// so that `number` is the request's place even when requests arrive together.
async fn answer(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let mut log = lock(&shared.seen);
    let mut seen = Seen {
        number: log.len(),
        method,
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body,
        status: StatusCode::OK,
    };
    let reply = (shared.script)(&seen, &shared.base);
    seen.status = StatusCode::from_u16(reply.status)
        .unwrap_or_else(|_| panic!("the script answered {}, not an HTTP status", reply.status));
    log.push(seen);
    drop(log);
    let mut response = Response::builder().status(reply.status);
    for (name, value) in reply.headers {
        response = response.header(name, value);
    }
    response
        .body(Body::from(reply.body))
        .expect("a reply with a valid status and headers")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_each_request_with_its_number_and_the_status_it_got() {
        let server = ScriptedServer::start(|request, base| match request.number {
            0 => Reply::new(503, "busy").with("retry-after", "1"),
            _ => Reply::json(200, &format!(r#"{{"base":"{base}"}}"#)),
        })
        .await;
        let http = reqwest::Client::new();
        let first = http
            .get(format!("{}/a?x=1", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(first.status().as_u16(), 503);
        assert_eq!(first.headers()["retry-after"], "1");
        let second = http
            .post(format!("{}/b", server.base))
            .header("x-test", "yes")
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(
            second.text().await.unwrap(),
            format!(r#"{{"base":"{}"}}"#, server.base)
        );

        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            (seen[0].number, &seen[0].method, seen[0].path.as_str()),
            (0, &Method::GET, "/a")
        );
        assert_eq!(seen[0].query.as_deref(), Some("x=1"));
        assert_eq!(seen[0].status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(seen[1].number, 1);
        assert_eq!(seen[1].query, None);
        assert_eq!(seen[1].header("X-Test"), Some("yes"));
        assert_eq!(seen[1].text(), "hello");
        assert_eq!(seen[1].status, StatusCode::OK);
        assert_eq!(server.count("/b"), 1);
        assert_eq!(server.base, format!("http://{}", server.addr));
    }
}
