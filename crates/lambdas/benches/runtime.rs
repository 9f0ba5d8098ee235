//! `make bench`, the functions as Lambda runs them: the release bootstrap binaries, each started
//! as a fresh process under a small fake Lambda Runtime API on a free port of 127.0.0.1.
//!
//! 1. init time: from spawning the process to its first `GET /runtime/invocation/next` (config,
//!    environment, AWS SDK config and clients built; nothing called yet), the median of several
//!    starts of each binary;
//! 2. peak RSS of the Member Refresh (`VmHWM` of its process, read after it answered) handling
//!    one SQS event of 500, 2,000 and 10,000 messages against moto and the simulators, with that
//!    many Contacts seeded.
//!
//! The binaries are those `cargo bench` builds for this package: release settings (the bench
//! profile), this machine's architecture, and dependency features unified with the bench's
//! dev-dependencies. `make package` builds them for arm64 with the package's own features: close,
//! not identical. Figures are printed beside their targets, never asserted.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hlsync_cli::local::{LocalOptions, LocalSystem};
use hlsync_core::id::SfId;
use hlsync_sync::message::WorkMessage;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

const PERIODIC: &str = env!("CARGO_BIN_EXE_periodic-refresh");
const MEMBER: &str = env!("CARGO_BIN_EXE_member-refresh");

/// Starts per binary for the init figure.
const INIT_STARTS: usize = 11;
const INIT_TARGET_MS: f64 = 30.0;
/// The target, in MB (10^6 bytes); `VmHWM` is reported in KiB and printed in MiB beside it.
const RSS_TARGET_MB: f64 = 64.0;
const RSS_TARGET_BATCH: usize = 2_000;
const BATCHES: [usize; 3] = [500, 2_000, 10_000];
/// The memory Lambda reports to the function (the template's MemorySize).
const MEMORY_MB: &str = "256";
/// How long a process may take to reach its first request, and a batch to be answered.
const INIT_TIMEOUT: Duration = Duration::from_secs(30);
const ANSWER_TIMEOUT: Duration = Duration::from_mins(15);

// ---------------------------------------------------------------------------------------------
// The fake Runtime API: hands out queued events on `next`, collects the answers.

/// What the function posted: to which endpoint (`response`, `error`, `init/error`), and the
/// document.
struct Answer {
    endpoint: &'static str,
    doc: Value,
}

impl Answer {
    fn new(endpoint: &'static str, body: &Bytes) -> Answer {
        let doc =
            serde_json::from_slice(body).unwrap_or_else(|_| json!(String::from_utf8_lossy(body)));
        Answer { endpoint, doc }
    }
}

#[derive(Default)]
struct ApiState {
    events: Mutex<VecDeque<(String, Vec<u8>)>>,
    event_queued: Notify,
}

#[derive(Clone)]
struct Api {
    state: Arc<ApiState>,
    /// Each `next` request's arrival, in order.
    next_seen: mpsc::UnboundedSender<Instant>,
    answers: mpsc::UnboundedSender<(String, Answer)>,
}

async fn next(State(api): State<Api>) -> Response {
    let _ = api.next_seen.send(Instant::now());
    loop {
        let notified = api.state.event_queued.notified();
        let queued = api
            .state
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front();
        if let Some((request_id, body)) = queued {
            let deadline = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                + ANSWER_TIMEOUT;
            let mut headers = HeaderMap::new();
            let mut set = |name: &'static str, value: String| {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(name, v);
                }
            };
            set("lambda-runtime-aws-request-id", request_id);
            set(
                "lambda-runtime-deadline-ms",
                deadline.as_millis().to_string(),
            );
            set(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:bench".into(),
            );
            set("content-type", "application/json".into());
            return (StatusCode::OK, headers, body).into_response();
        }
        // No event: hold the request open, as Lambda does between invocations.
        notified.await;
    }
}

async fn response(State(api): State<Api>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    let _ = api.answers.send((id, Answer::new("response", &body)));
    StatusCode::ACCEPTED
}

async fn error(State(api): State<Api>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    let _ = api.answers.send((id, Answer::new("error", &body)));
    StatusCode::ACCEPTED
}

async fn init_error(State(api): State<Api>, body: Bytes) -> StatusCode {
    let _ = api
        .answers
        .send((String::new(), Answer::new("init/error", &body)));
    StatusCode::ACCEPTED
}

struct FakeRuntimeApi {
    addr: SocketAddr,
    state: Arc<ApiState>,
    next_seen: mpsc::UnboundedReceiver<Instant>,
    answers: mpsc::UnboundedReceiver<(String, Answer)>,
}

impl FakeRuntimeApi {
    async fn start() -> FakeRuntimeApi {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("a free port for the fake Runtime API");
        let addr = listener.local_addr().expect("its address");
        let (next_tx, next_seen) = mpsc::unbounded_channel();
        let (answers_tx, answers) = mpsc::unbounded_channel();
        let state = Arc::new(ApiState::default());
        let api = Api {
            state: state.clone(),
            next_seen: next_tx,
            answers: answers_tx,
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(api);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeRuntimeApi {
            addr,
            state,
            next_seen,
            answers,
        }
    }

    fn queue_event(&self, request_id: &str, body: Vec<u8>) {
        self.state
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back((request_id.to_string(), body));
        self.state.event_queued.notify_waiters();
    }

    /// Forgets the arrivals and answers of processes already gone.
    fn drain(&mut self) {
        while self.next_seen.try_recv().is_ok() {}
        while self.answers.try_recv().is_ok() {}
    }
}

// ---------------------------------------------------------------------------------------------
// The function processes.

/// A bootstrap process, killed when dropped.
struct Function {
    child: Child,
}

impl Function {
    fn spawn(binary: &str, api: SocketAddr, env: &[(String, String)]) -> Function {
        let name = Path::new(binary)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("bootstrap")
            .to_string();
        let child = Command::new(binary)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", MEMORY_MB)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[$LATEST]bench")
            // Errors only: the figures, not the logs, are what this prints.
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        Function { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// `VmHWM` (peak resident set) of a process, in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------------------------
// 1. Init time.

async fn bench_init(api: &mut FakeRuntimeApi, env: &[(String, String)]) {
    for binary in [PERIODIC, MEMBER] {
        let mut took = Vec::with_capacity(INIT_STARTS);
        for _ in 0..INIT_STARTS {
            api.drain();
            let started = Instant::now();
            let function = Function::spawn(binary, api.addr, env);
            let first_next = tokio::time::timeout(INIT_TIMEOUT, api.next_seen.recv())
                .await
                .ok()
                .flatten()
                .unwrap_or_else(|| {
                    let said = api
                        .answers
                        .try_recv()
                        .map(|(_, a)| format!("it posted to {}: {}", a.endpoint, a.doc))
                        .unwrap_or_default();
                    panic!("{binary} never asked for an event within {INIT_TIMEOUT:?}; {said}")
                });
            took.push(ms(first_next.duration_since(started)));
            drop(function);
        }
        let name = Path::new(binary)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(binary);
        let min = took.iter().copied().fold(f64::INFINITY, f64::min);
        let max = took.iter().copied().fold(0.0, f64::max);
        println!(
            "init           {name:<17} {:>6.1} ms median of {INIT_STARTS} starts (min {min:.1}, max {max:.1}): process start to its first GET /runtime/invocation/next  [target <= {INIT_TARGET_MS:.0} ms]",
            median(took),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Peak RSS of the Member Refresh.

/// An SQS event with one message per Contact, as the Periodic Refresh would send them and the
/// SQS event source hands them over.
fn sqs_event(sys: &LocalSystem) -> Value {
    let records: Vec<Value> = sys
        .salesforce
        .all("Contact")
        .iter()
        .filter_map(|c| {
            let id: SfId = c.get("Id")?.as_str()?.parse().ok()?;
            let cursor = c
                .get("SystemModstamp")
                .and_then(Value::as_str)
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&chrono::Utc));
            let deleted = c.get("IsDeleted").and_then(Value::as_bool).unwrap_or(false);
            Some(WorkMessage::contact(id, cursor, "bench", deleted).to_body())
        })
        .enumerate()
        .map(|(i, body)| {
            json!({
                "messageId": format!("bench-{i:05}"),
                "receiptHandle": format!("bench-receipt-{i:05}"),
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1767225600000",
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "1767225600001"
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:hlsync-member-refresh",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

async fn bench_member_rss(api: &mut FakeRuntimeApi, n: usize) {
    let sys = LocalSystem::start(LocalOptions {
        contacts: n,
        ..LocalOptions::default()
    })
    .await
    .unwrap_or_else(|e| {
        panic!("the local system starts (moto_server missing? run `make venv`): {e:#}")
    });
    let event = sqs_event(&sys);
    let messages = event["Records"].as_array().map_or(0, Vec::len);
    let body = serde_json::to_vec(&event).expect("the event serialises");
    let env: Vec<(String, String)> = sys.function_env();

    api.drain();
    let function = Function::spawn(MEMBER, api.addr, &env);
    let request_id = format!("bench-{n}");
    let started = Instant::now();
    api.queue_event(&request_id, body.clone());
    let (id, answer) = tokio::time::timeout(ANSWER_TIMEOUT, api.answers.recv())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!("member-refresh did not answer a batch of {n} within {ANSWER_TIMEOUT:?}")
        });
    let took = started.elapsed();
    let rss = peak_rss_mib(function.pid());
    drop(function);
    assert!(
        !(answer.endpoint != "response" || id != request_id),
        "member-refresh posted to {} for {id:?}: {}",
        answer.endpoint,
        answer.doc
    );
    let failed = answer.doc["batchItemFailures"]
        .as_array()
        .map_or(0, Vec::len);
    let pushed = sys.higher_logic.members().len();
    let target = if n == RSS_TARGET_BATCH {
        format!(
            "  [target <= {RSS_TARGET_MB:.0} MB = {:.1} MiB at a batch of {RSS_TARGET_BATCH}]",
            RSS_TARGET_MB * 1e6 / MIB
        )
    } else {
        String::new()
    };
    println!(
        "member RSS     {n:>6} messages {:>7.1} MiB ({:.1} MB) peak RSS (VmHWM) of member-refresh after answering one SQS event of {messages} messages ({} KiB event; {pushed} members pushed, {failed} reported failed, {:.1} s){target}",
        rss.unwrap_or(f64::NAN),
        rss.unwrap_or(f64::NAN) * MIB / 1e6,
        body.len() / 1024,
        took.as_secs_f64(),
    );
}

#[tokio::main]
async fn main() {
    println!(
        "hlsync Lambda runtime benchmarks: release bootstrap binaries under a fake Runtime API (moto and the simulators for the Member Refresh)"
    );
    let mut api = FakeRuntimeApi::start().await;
    {
        // The environment of a deployed function; nothing is called before the first event.
        let sys = LocalSystem::start(LocalOptions {
            contacts: 0,
            ..LocalOptions::default()
        })
        .await
        .unwrap_or_else(|e| {
            panic!("the local system starts (moto_server missing? run `make venv`): {e:#}")
        });
        bench_init(&mut api, &sys.function_env()).await;
    }
    for n in BATCHES {
        bench_member_rss(&mut api, n).await;
    }
}
