//! The two bootstrap binaries under a Lambda runtime: cargo-lambda's emulator (`cargo lambda
//! watch`) serves the Lambda Runtime API and the invoke endpoint; the binaries built with these
//! tests run against it as Lambda runs a `bootstrap`, and this test invokes them over HTTP as
//! `cargo lambda invoke` does, against moto and the simulators (`LocalSystem`).
//!
//! What the direct handler tests cannot show: the binaries' `main`s, the event (de)serialisation
//! by `lambda_runtime` (an EventBridge Scheduler input, SQS records as the event source hands
//! them, the `batchItemFailures` answer), and an init error reported as the invocation's answer.
//!
//! The emulator runs with `--only-lambda-apis`: left to itself, `watch` starts each function
//! with `cargo run -p hlsync-lambdas --bin NAME`, which resolves the dependencies' features for
//! that package alone (tokio without `test-util`, hyper without `server`, …), unlike
//! `cargo test --workspace`, and so compiles nearly every dependency a second time: minutes on a
//! cold two-core machine. Starting the binaries under test ourselves costs nothing and runs the
//! exact binaries this test was built with.
//!
//! Needs `cargo-lambda` (`make venv-lambda`; `make test` installs it) and `moto_server`
//! (`make venv`): without them the test fails with the command that installs them.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::MessageSystemAttributeName;
use hlsync_aws::queue::REASON_ATTRIBUTE;
use hlsync_aws::{SqsQueue, put_secret};
use hlsync_cli::local::{LocalOptions, LocalSystem};
use hlsync_cli::output::Progress;
use hlsync_sync::runtime::ENV_SECRET_ID;
use secrecy::SecretString;
use serde_json::{Value, json};

/// How to get cargo-lambda when it cannot be found; said verbatim in the failure.
const INSTALL_HINT: &str =
    "cargo-lambda not found: run `make venv-lambda` (installs it into .venv; `make test` does)";

const PERIODIC: &str = env!("CARGO_BIN_EXE_periodic-refresh");
const MEMBER: &str = env!("CARGO_BIN_EXE_member-refresh");

/// The emulator's HTTP port answers within a second or two; this bounds a broken start.
const READY_TIMEOUT: Duration = Duration::from_mins(1);
/// An invocation's answer (a batch here takes well under a second).
const INVOKE_TIMEOUT: Duration = Duration::from_mins(2);
const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------------
// The emulator and the functions.

/// `HLSYNC_CARGO_LAMBDA`, else the workspace's `.venv/bin/cargo-lambda`, else `PATH`.
fn find_cargo_lambda() -> PathBuf {
    if let Some(path) = std::env::var_os("HLSYNC_CARGO_LAMBDA").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "HLSYNC_CARGO_LAMBDA is set to {}, which is not a file: point it at cargo-lambda, or unset it and run `make venv-lambda`",
            path.display()
        );
        return path;
    }
    let venv = workspace_root().join(".venv/bin/cargo-lambda");
    if venv.is_file() {
        return venv;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("cargo-lambda"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/lambdas sits two levels below the workspace")
        .to_path_buf()
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn read_log(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    text
}

fn tail(path: &Path, what: &str) -> String {
    let text = read_log(path);
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(40);
    format!(
        "--- {what}: last lines of {} ---\n{}",
        path.display(),
        lines[from..].join("\n")
    )
}

/// A child process in a process group of its own, with its output in a log file; the whole
/// group is stopped on drop, even when the test failed.
struct Process {
    what: String,
    child: Child,
    /// For the emulator: closing it makes its wrapper stop it even if this process dies without
    /// running destructors.
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Process {
    fn spawn(what: String, mut command: Command, log: PathBuf, stdin: Stdio) -> Process {
        let log_file = File::create(&log).expect("a log file");
        command
            // `make test`'s jobserver belongs to the outer cargo.
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .env_remove("CARGO_MAKEFLAGS")
            .stdin(stdin)
            .stdout(Stdio::from(log_file.try_clone().expect("the log file")))
            .stderr(Stdio::from(log_file))
            .process_group(0);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdin = child.stdin.take();
        Process {
            what,
            child,
            stdin,
            log,
        }
    }

    fn tail(&self) -> String {
        tail(&self.log, &self.what)
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        drop(self.stdin.take());
        // The child leads its process group, which holds everything it started: SIGKILL to the
        // group (nothing of theirs needs a clean stop; cargo-lambda's own takes a second).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// `cargo lambda watch --only-lambda-apis` on a free port of 127.0.0.1.
struct Emulator {
    process: Process,
    addr: SocketAddr,
}

impl Emulator {
    fn start(cargo_lambda: &Path) -> Emulator {
        let port = free_port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        // The wrapper stops the emulator when our end of its stdin closes: on drop, and when
        // this process ends without running destructors.
        let script = r#"exec 3<&0
"$@" </dev/null 3<&- & emulator=$!
{ read -r _ <&3; kill -TERM "$emulator" 2>/dev/null; } &
wait "$emulator""#;
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(script)
            .arg("hlsync-emulator")
            .arg(cargo_lambda)
            .args([
                "lambda",
                "watch",
                "-v",
                "--only-lambda-apis",
                "--ignore-changes",
            ])
            .args(["--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &port.to_string()])
            .args(["--timeout", &INVOKE_TIMEOUT.as_secs().to_string()])
            .arg("--manifest-path")
            .arg(workspace_root().join("Cargo.toml"))
            .current_dir(workspace_root());
        let log = std::env::temp_dir().join(format!("hlsync-emulator-{port}.log"));
        let process = Process::spawn(
            format!("cargo lambda watch ({})", cargo_lambda.display()),
            command,
            log,
            Stdio::piped(),
        );
        let mut emulator = Emulator { process, addr };
        emulator.wait_ready();
        emulator
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        while started.elapsed() < READY_TIMEOUT {
            if TcpStream::connect_timeout(&self.addr, POLL).is_ok() {
                return;
            }
            if let Some(status) = self.process.exited() {
                panic!(
                    "the emulator exited before it listened ({status}):\n{}",
                    self.process.tail()
                );
            }
            std::thread::sleep(POLL);
        }
        panic!(
            "the emulator did not listen on {} within {READY_TIMEOUT:?}:\n{}",
            self.addr,
            self.process.tail()
        );
    }

    /// Starts `binary` as the function `name` against this emulator's Runtime API, with the
    /// function environment (`remove`: variables left out), as Lambda starts a `bootstrap`.
    fn function(
        &self,
        binary: &str,
        name: &str,
        env: &[(String, String)],
        remove: &[&str],
    ) -> Process {
        let mut command = Command::new(binary);
        command
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://{}/.rt/{name}", self.addr),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("RUST_LOG", "info");
        for var in remove {
            command.env_remove(var);
        }
        let log = std::env::temp_dir().join(format!(
            "hlsync-function-{name}-{}-{}.log",
            self.addr.port(),
            uuid::Uuid::new_v4().simple()
        ));
        Process::spawn(format!("function {name}"), command, log, Stdio::null())
    }

    /// `POST /2015-03-31/functions/NAME/invocations`, as `cargo lambda invoke` does: the HTTP
    /// status and the function's answer (or error document). While it waits, it checks that
    /// the emulator and the function are still there: a dead one would never answer.
    async fn invoke(
        &mut self,
        function: &mut Process,
        name: &str,
        payload: &Value,
    ) -> (u16, Value) {
        let url = format!(
            "http://{}/2015-03-31/functions/{name}/invocations",
            self.addr
        );
        let request = reqwest::Client::new()
            .post(&url)
            .timeout(INVOKE_TIMEOUT)
            .json(payload)
            .send();
        tokio::pin!(request);
        let response = loop {
            tokio::select! {
                response = &mut request => break response,
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    if let Some(status) = self.process.exited() {
                        panic!("the emulator exited ({status}) during an invocation of {name}:\n{}", self.process.tail());
                    }
                    if let Some(status) = function.exited() {
                        panic!("{name} exited ({status}) before it answered:\n{}", function.tail());
                    }
                }
            }
        };
        let response = response.unwrap_or_else(|e| {
            panic!(
                "invoking {name}: {e}\n{}\n{}",
                function.tail(),
                self.process.tail()
            )
        });
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }
}

// ---------------------------------------------------------------------------------------------
// The system and its messages.

async fn system() -> LocalSystem {
    LocalSystem::start(LocalOptions {
        contacts: 24,
        ..LocalOptions::default()
    })
    .await
    .unwrap_or_else(|e| {
        panic!("the local system starts (moto_server missing? run `make venv`): {e:#}")
    })
}

/// The first Periodic Refresh and its Member Refresh, in this process: every Contact in Higher
/// Logic.
async fn initial_load(sys: &LocalSystem) {
    let rt = sys.runtime();
    hlsync_cli::commands::periodic_refresh(&rt, &Progress::hidden())
        .await
        .expect("the initial load is queued");
    let report = hlsync_cli::drain::drain_with(
        &rt,
        &hlsync_cli::drain::DrainOptions::new(500),
        &Progress::hidden(),
        &std::sync::atomic::AtomicBool::new(true),
    )
    .await
    .expect("the initial load is drained");
    assert_eq!(report.dead_lettered, 0, "{report:?}");
}

/// The mark the test's edit leaves on every first name.
const EDIT: &str = "-edited";

/// Higher Logic holds the member's record as edited.
fn has_the_edit(sys: &LocalSystem, id: &str) -> bool {
    sys.higher_logic.member(id).is_some_and(|m| {
        m["ContactDetails"]["FirstName"]
            .as_str()
            .is_some_and(|n| n.ends_with(EDIT))
    })
}

/// A message as SQS hands it to a function: the record of an SQS event.
struct Record {
    body: String,
    json: Value,
}

/// Receives everything visible on `queue` (up to `want` messages), polling until it is there,
/// and returns each as an SQS event record, attributes and all.
async fn receive_records(sys: &LocalSystem, queue_url: &str, want: usize) -> Vec<Record> {
    let queue = SqsQueue::new(sys.clients.sqs.clone(), queue_url);
    let arn = queue.arn().await.expect("the queue's ARN");
    let mut records = Vec::new();
    let started = Instant::now();
    while records.len() < want {
        assert!(
            started.elapsed() < Duration::from_mins(1),
            "only {} of {want} messages arrived on {queue_url}",
            records.len()
        );
        let out = sys
            .clients
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("ReceiveMessage");
        for m in out.messages() {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str().to_string(), json!(v)))
                .collect();
            let message_id = m.message_id().unwrap_or_default().to_string();
            let body = m.body().unwrap_or_default().to_string();
            let json = json!({
                "messageId": message_id,
                "receiptHandle": m.receipt_handle(),
                "body": body,
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            });
            records.push(Record { body, json });
        }
        if out.messages().is_empty() {
            tokio::time::sleep(POLL).await;
        }
    }
    records
}

fn sqs_event(records: &[&Record]) -> Value {
    json!({ "Records": records.iter().map(|r| r.json.clone()).collect::<Vec<_>>() })
}

fn failed_ids(answer: &Value) -> BTreeSet<String> {
    answer["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("not a partial batch response: {answer}"))
        .iter()
        .map(|f| {
            f["itemIdentifier"]
                .as_str()
                .unwrap_or_else(|| panic!("a failure without itemIdentifier: {answer}"))
                .to_string()
        })
        .collect()
}

/// The bodies on the DLQ and each one's `hlsync-reason`.
async fn dead_letters(sys: &LocalSystem, want: usize) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let started = Instant::now();
    while found.len() < want && started.elapsed() < Duration::from_secs(30) {
        let out = sys
            .clients
            .sqs
            .receive_message()
            .queue_url(&sys.resources.dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .message_attribute_names("All")
            .send()
            .await
            .expect("ReceiveMessage on the DLQ");
        for m in out.messages() {
            let reason = m
                .message_attributes()
                .and_then(|a| a.get(REASON_ATTRIBUTE))
                .and_then(|v| v.string_value())
                .unwrap_or_default()
                .to_string();
            found.push((m.body().unwrap_or_default().to_string(), reason));
        }
        if out.messages().is_empty() {
            tokio::time::sleep(POLL).await;
        }
    }
    found
}

/// The EMF documents a function printed: the lines of its output that are one, as CloudWatch
/// reads them (a document nested in a log line would not count).
fn emf_documents(function: &Process) -> Vec<Value> {
    read_log(&function.log)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|doc| doc.get("_aws").is_some())
        .collect()
}

fn is_live_member(contact: &serde_json::Map<String, Value>) -> bool {
    contact.get("IsDeleted") != Some(&json!(true)) && contact.get("Active__c") == Some(&json!(true))
}

fn contact_of(record: &Record) -> String {
    serde_json::from_str::<Value>(&record.body).expect("a work message")["id"]
        .as_str()
        .expect("an id")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario across both functions, told in order"
)]
async fn the_bootstrap_binaries_answer_the_lambda_emulator() {
    let t0 = Instant::now();
    let step = |what: &str| eprintln!("[{:>5.2} s] {what}", t0.elapsed().as_secs_f64());
    let cargo_lambda = find_cargo_lambda();
    let sys = system().await;
    step("moto and the simulators up");
    let env = sys.function_env();
    let mut emulator = Emulator::start(&cargo_lambda);

    // 0. The initial load, in this process: it queues one range message per page, and the test
    //    below wants one message per Contact. Then every Contact is edited, so the Periodic
    //    Refresh has each to fan out.
    step("initial load");
    initial_load(&sys).await;
    let contacts = sys.edit_first_names(usize::MAX, EDIT);

    // 1. The Periodic Refresh, invoked with the input the EventBridge Scheduler target of
    //    infra/template.yaml sends, fans every changed Contact out to the queue.
    step("periodic refresh");
    let mut periodic = emulator.function(PERIODIC, "periodic-refresh", &env, &[]);
    let execution_id = uuid::Uuid::new_v4().to_string();
    let scheduled = json!({
        "scheduled_time": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "execution_id": execution_id,
    });
    let (status, summary) = emulator
        .invoke(&mut periodic, "periodic-refresh", &scheduled)
        .await;
    assert_eq!(status, 200, "{summary}\n{}", periodic.tail());
    assert_eq!(summary["run_id"], execution_id.as_str(), "{summary}");
    assert_eq!(summary["completed"], true, "{summary}\n{}", periodic.tail());
    assert!(summary["scheduled_time"].is_string(), "{summary}");
    let sent = summary["messages"]
        .as_u64()
        .expect("a count of messages sent") as usize;
    assert_eq!(
        sent,
        contacts.len(),
        "one message per edited Contact: {summary}"
    );
    // The binary's main set up the metrics: one EMF document for the invocation, on its own line.
    let emf = emf_documents(&periodic);
    assert_eq!(emf.len(), 1, "{emf:?}\n{}", periodic.tail());
    assert_eq!(
        emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "hlsync"
    );
    assert_eq!(emf[0]["Function"], "periodic-refresh");
    assert_eq!(emf[0]["run_id"], execution_id.as_str());
    assert_eq!(
        emf[0]["ContactsChanged"][0].as_f64(),
        summary["changed"].as_f64(),
        "{}",
        emf[0]
    );
    drop(periodic);
    let records = receive_records(&sys, &sys.resources.queue_url, sent).await;
    assert_eq!(records.len(), sent);

    // Two bodies no function can read, as real messages on the queue.
    let queue = SqsQueue::new(sys.clients.sqs.clone(), sys.resources.queue_url.clone());
    for body in ["this is not a work message", "{\"neither\": \"is this\"}"] {
        queue.send_one(body, None).await.expect("SendMessage");
    }
    let mut malformed = receive_records(&sys, &sys.resources.queue_url, 2).await;
    malformed.sort_by_key(|r| r.body.starts_with('{'));

    // 2. The Member Refresh on half of the messages and a malformed one. Higher Logic refuses
    //    one member's record: it is dead-lettered with Higher Logic's reason, and so is the
    //    malformed body; nothing is left to retry, so the answer names no message.
    step("member refresh, partial batch");
    let live: Vec<String> = contacts
        .iter()
        .filter(|c| is_live_member(c))
        .filter_map(|c| Some(c.get("Id")?.as_str()?.to_string()))
        .collect();
    let refused = live
        .first()
        .expect("a live member among the seeded Contacts")
        .clone();
    sys.higher_logic.refuse_contacts([refused.clone()]);
    let in_first_half = |i: usize, r: &Record| contact_of(r) == refused || i < sent / 2;
    let half = |first: bool| -> Vec<&Record> {
        records
            .iter()
            .enumerate()
            .filter(|(i, r)| in_first_half(*i, r) == first)
            .map(|(_, r)| r)
            .collect()
    };
    let (first_half, second_half) = (half(true), half(false));

    let mut member = emulator.function(MEMBER, "member-refresh", &env, &[]);
    let mut batch = first_half.clone();
    batch.push(&malformed[0]);
    let (status, answer) = emulator
        .invoke(&mut member, "member-refresh", &sqs_event(&batch))
        .await;
    assert_eq!(status, 200, "{answer}\n{}", member.tail());
    assert_eq!(failed_ids(&answer), BTreeSet::new(), "{answer}");
    for id in first_half.iter().map(|r| contact_of(r)) {
        if id == refused {
            assert!(!has_the_edit(&sys, &id), "{id} was refused");
        } else if live.contains(&id) {
            assert!(
                has_the_edit(&sys, &id),
                "{id} not pushed\n{}",
                member.tail()
            );
        }
    }
    let dead = dead_letters(&sys, 2).await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    let on_dlq = |needle: &str| dead.iter().find(|(body, _)| body.contains(needle));
    let (_, reason) = on_dlq(&refused).expect("the refused member's message on the DLQ");
    assert!(reason.contains("Higher Logic refused"), "{reason}");
    let (_, reason) = on_dlq("this is not a work message").expect("the malformed body on the DLQ");
    assert!(!reason.is_empty(), "a reason for the malformed body");
    let emf = emf_documents(&member);
    assert_eq!(emf.len(), 1, "{emf:?}\n{}", member.tail());
    assert_eq!(emf[0]["Function"], "member-refresh");
    // Both dead-lettered messages, and nothing handed back.
    assert_eq!(
        emf[0]["MessagesFailed"],
        json!([dead.len() as f64]),
        "{}",
        emf[0]
    );
    drop(member);

    // 3. The other half, on a function whose secret holds a wrong Higher Logic key: Higher
    //    Logic rejects it and the batch stops. Its messages are handed back to the queue, delayed
    //    until the key may have changed (so they spend no receives towards the DLQ), and the
    //    answer names none; the malformed one is dead-lettered all the same.
    step("member refresh, wrong key");
    let wrong_secret = format!("{}-wrong-key", sys.resources.secret_id);
    let mut secret: Value = serde_json::from_str(
        &std::fs::read_to_string(sys.dir.join("secret.json")).expect("secret.json"),
    )
    .expect("the secret's JSON");
    secret["higher_logic"]["api_key"] = json!("not-the-api-key");
    put_secret(
        &sys.clients.secrets,
        &wrong_secret,
        &SecretString::from(secret.to_string()),
    )
    .await
    .expect("the wrong-key secret stored");
    let mut wrong_env = env.clone();
    wrong_env.push((ENV_SECRET_ID.into(), wrong_secret));
    let pushed_before = sys.higher_logic.counters().records_received;

    // A function is one deployment's: a function killed while it waits for its next event may
    // leave that request open in the emulator, which would hand it the next invocation.
    drop(emulator);
    let mut emulator = Emulator::start(&cargo_lambda);
    let mut member = emulator.function(MEMBER, "member-refresh", &wrong_env, &[]);
    let mut batch = second_half.clone();
    batch.push(&malformed[1]);
    let (status, answer) = emulator
        .invoke(&mut member, "member-refresh", &sqs_event(&batch))
        .await;
    assert_eq!(status, 200, "{answer}\n{}", member.tail());
    assert_eq!(
        failed_ids(&answer),
        BTreeSet::new(),
        "{answer}\n{}",
        member.tail()
    );
    let depth = queue.depth().await.expect("the queue's depth");
    assert_eq!(
        depth.delayed,
        second_half.len() as u64,
        "the stopped batch handed back, delayed: {depth:?}\n{}",
        member.tail()
    );
    let dead = dead_letters(&sys, 1).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].0.contains("is this"), "{dead:?}");
    assert_eq!(
        sys.higher_logic.counters().records_received,
        pushed_before,
        "nothing pushed"
    );
    drop(member);

    // 4. Without HLSYNC_SECRET_ID the function cannot start: it says so in its log and reports
    //    the init error to the Runtime API, which answers the invocation with it. (The emulator
    //    hands an init error to an invocation already waiting, so the function is started, as
    //    Lambda would, until one is: the first start nearly always.)
    step("init error");
    drop(emulator);
    let emulator = Emulator::start(&cargo_lambda);
    let payload = sqs_event(&[&records[0]]);
    let url = format!(
        "http://{}/2015-03-31/functions/member-refresh/invocations",
        emulator.addr
    );
    let invocation = tokio::spawn(async move {
        let response = reqwest::Client::new()
            .post(&url)
            .timeout(INVOKE_TIMEOUT)
            .json(&payload)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok::<_, reqwest::Error>((status, response.text().await?))
    });
    let mut starts = 0;
    let mut last_log = String::new();
    while !invocation.is_finished() {
        starts += 1;
        assert!(
            starts <= 20,
            "no init error answered the invocation after {starts} starts:\n{last_log}"
        );
        let mut broken = emulator.function(MEMBER, "member-refresh", &env, &[ENV_SECRET_ID]);
        let started = Instant::now();
        while broken.exited().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the function did not exit:\n{}",
                broken.tail()
            );
            tokio::time::sleep(POLL).await;
        }
        last_log = read_log(&broken.log);
        let status = broken.exited();
        assert!(
            status.is_some_and(|s| !s.success()),
            "exit status {status:?}"
        );
        assert!(
            last_log
                .lines()
                .any(|l| l.contains("cannot start") && l.contains(ENV_SECRET_ID)),
            "{}",
            broken.tail()
        );
        let waited = Instant::now();
        while !invocation.is_finished() && waited.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(POLL).await;
        }
    }
    let (status, text) = invocation
        .await
        .expect("the invocation task")
        .unwrap_or_else(|e| {
            panic!(
                "the invocation got no answer: {e}\n{last_log}\n{}",
                emulator.process.tail()
            )
        });
    step(&format!("init error answered after {starts} start(s)"));
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    assert_eq!(
        answer["errorType"], "hlsync.EnvironmentError",
        "status {status}: {answer}"
    );
    assert!(
        answer["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains(ENV_SECRET_ID)),
        "status {status}: {answer}"
    );
}
