//! The Higher Logic data push API simulator (SPEC.md §6).
//!
//! It stands in for the tenant's push API in tests, benchmarks and the demo. It deliberately does
//! not depend on hlsync-core: it validates the JSON it receives on its own, so a client that sends
//! the wrong shape is caught here instead of being agreed with by shared types.
//!
//! Time: the rate-limit window uses tokio's clock, so tests that pause tokio's clock see a
//! consistent simulator; `UpdatedOn` values are wall-clock (`chrono::Utc::now`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::serve::Server;

/// Tenant code the simulator accepts unless told otherwise (a simulator value, not a secret).
pub const DEFAULT_TENANT_CODE: &str = "hlsync-sim";
/// API key the simulator accepts unless told otherwise (a simulator value, not a secret).
pub const DEFAULT_API_KEY: &str = "hl-sim-api-key";
/// Generous enough that a correctly limited client never meets it unless a test lowers it.
pub const DEFAULT_MAX_CALLS_PER_MINUTE: u32 = 6_000;
/// Largest array a push endpoint accepts (SPEC.md §6).
pub const MAX_RECORDS_PER_CALL: usize = 200;
/// Path prefix of every endpoint; `base_url()` ends with it.
pub const API_PREFIX: &str = "/v2";

const CONTACT_FIELDS: &[&str] = &[
    "LegacyContactKey",
    "FirstName",
    "LastName",
    "EmailAddress",
    "CompanyName",
    "Title",
    "Phone",
    "MobilePhone",
    "Address",
    "IsActive",
    "IsDeleted",
    "EmailOptOut",
    "SecurityGroups",
    "CommunityGroups",
    "UpdatedOn",
];
const CONTACT_TEXT_FIELDS: &[&str] = &[
    "FirstName",
    "LastName",
    "EmailAddress",
    "CompanyName",
    "Title",
    "Phone",
    "MobilePhone",
];
const ADDRESS_FIELDS: &[&str] = &["Street", "City", "StateProvince", "PostalCode", "Country"];
const GROUP_FIELDS: &[&str] = &["GroupKey", "GroupName"];
const EVENT_FIELDS: &[&str] = &["EventKey", "Name", "StartDate", "EndDate", "IsDeleted"];
const REGISTRATION_FIELDS: &[&str] = &["EventKey", "LegacyContactKey", "Status", "IsDeleted"];

/// Faults the simulator injects, reproducibly (seeded).
#[derive(Clone, Debug, Default)]
pub struct HlFaults {
    /// Seed of the generator that decides which calls fail at `error_rate`.
    pub seed: u64,
    /// Probability (0.0..=1.0) that an authenticated call answers 500 or 503 instead of working.
    pub error_rate: f64,
    /// The next N authenticated calls answer 503, then the API recovers.
    pub fail_next_calls: u32,
    /// Records with these keys (LegacyContactKey or EventKey) get `status:"error"`; the rest of
    /// their batch is stored as usual.
    pub failing_keys: BTreeSet<String>,
}

/// How to start a [`HigherLogicSim`].
#[derive(Clone, Debug)]
pub struct HlSimOptions {
    /// Port on 127.0.0.1; 0 picks a free one (what tests want).
    pub port: u16,
    pub tenant_code: String,
    pub api_key: String,
    /// Calls accepted in any 60 s window before answering 429; 0 means unlimited.
    pub max_calls_per_minute: u32,
    pub faults: HlFaults,
}

impl Default for HlSimOptions {
    fn default() -> Self {
        Self {
            port: 0,
            tenant_code: DEFAULT_TENANT_CODE.to_owned(),
            api_key: DEFAULT_API_KEY.to_owned(),
            max_calls_per_minute: DEFAULT_MAX_CALLS_PER_MINUTE,
            faults: HlFaults::default(),
        }
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum HlSimError {
    #[error(
        "the Higher Logic simulator could not listen on {addr}: {source}; choose another port, or 0 for any free port"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid Higher Logic simulator option: {0}")]
    InvalidOption(String),
}

/// What the simulator has served since start (or the last `reset_counters`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HlCounters {
    pub contactinfo_calls: u64,
    pub events_calls: u64,
    pub registrations_calls: u64,
    pub emailpreferences_calls: u64,
    /// Records in all push bodies that parsed as an array, valid or not.
    pub records_received: u64,
    /// Records answered with `status:"error"`.
    pub record_errors: u64,
    /// 429 answers.
    pub throttled: u64,
    /// Injected 500/503 answers.
    pub faults_served: u64,
    /// 401/403 answers.
    pub auth_rejected: u64,
    /// 400 answers (bad body or query).
    pub bad_requests: u64,
}

impl HlCounters {
    /// Every call that reached an endpoint, whatever it was answered.
    pub fn total_calls(&self) -> u64 {
        self.contactinfo_calls
            + self.events_calls
            + self.registrations_calls
            + self.emailpreferences_calls
    }
}

/// How often a member was pushed, and whether pushes changed the stored record. `UpdatedOn` and
/// the order of groups do not count as changes: the push is meant to be idempotent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PushHistory {
    pub pushes: u64,
    pub changes: u64,
    pub last_push_changed: bool,
}

/// One member-made opt-out change, as `GET /emailpreferences` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailPreferenceChange {
    pub key: String,
    pub email_opt_out: bool,
    pub updated_on: DateTime<Utc>,
}

#[derive(Clone, Copy)]
enum Endpoint {
    ContactInfo,
    Events,
    Registrations,
    EmailPreferences,
}

struct Inner {
    max_calls_per_minute: u32,
    rng: StdRng,
    error_rate: f64,
    fail_next: u32,
    throttle_next: u32,
    throttle_retry_after: u64,
    failing_keys: BTreeSet<String>,
    recent_calls: VecDeque<Instant>,
    members: BTreeMap<String, Value>,
    history: BTreeMap<String, PushHistory>,
    opt_out: BTreeMap<String, bool>,
    opt_out_changes: Vec<EmailPreferenceChange>,
    events: BTreeMap<String, Value>,
    registrations: BTreeMap<(String, String), Value>,
    counters: HlCounters,
}

struct Shared {
    tenant_code: String,
    api_key: String,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking handler cannot leave the maps half-updated in a way tests care about, so a
        // poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running Higher Logic push API simulator. Stops when dropped (or on `shutdown`).
pub struct HigherLogicSim {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Server,
}

impl std::fmt::Debug for HigherLogicSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HigherLogicSim")
            .field("addr", &self.addr)
            .field("tenant_code", &self.shared.tenant_code)
            .finish_non_exhaustive()
    }
}

impl HigherLogicSim {
    /// Binds 127.0.0.1:`opts.port` and serves until dropped. Returns once the socket listens, so
    /// a client may call `base_url()` at once.
    pub async fn start(opts: HlSimOptions) -> Result<Self, HlSimError> {
        if !(0.0..=1.0).contains(&opts.faults.error_rate) {
            return Err(HlSimError::InvalidOption(format!(
                "faults.error_rate must be between 0 and 1, got {}",
                opts.faults.error_rate
            )));
        }
        if opts.tenant_code.is_empty() || opts.api_key.is_empty() {
            return Err(HlSimError::InvalidOption(
                "tenant_code and api_key must not be empty".to_owned(),
            ));
        }
        let (listener, addr) = crate::serve::bind(opts.port)
            .await
            .map_err(|(addr, source)| HlSimError::Bind { addr, source })?;

        let shared = Arc::new(Shared {
            tenant_code: opts.tenant_code,
            api_key: opts.api_key,
            inner: Mutex::new(Inner {
                max_calls_per_minute: opts.max_calls_per_minute,
                rng: StdRng::seed_from_u64(opts.faults.seed),
                error_rate: opts.faults.error_rate,
                fail_next: opts.faults.fail_next_calls,
                throttle_next: 0,
                throttle_retry_after: 0,
                failing_keys: opts.faults.failing_keys,
                recent_calls: VecDeque::new(),
                members: BTreeMap::new(),
                history: BTreeMap::new(),
                opt_out: BTreeMap::new(),
                opt_out_changes: Vec::new(),
                events: BTreeMap::new(),
                registrations: BTreeMap::new(),
                counters: HlCounters::default(),
            }),
        });

        let router = Router::new()
            .route(&format!("{API_PREFIX}/contactinfo"), post(post_contactinfo))
            .route(&format!("{API_PREFIX}/events"), post(post_events))
            .route(
                &format!("{API_PREFIX}/registrations"),
                post(post_registrations),
            )
            .route(
                &format!("{API_PREFIX}/emailpreferences"),
                get(get_emailpreferences),
            )
            .fallback(not_found)
            .with_state(Arc::clone(&shared));

        Ok(Self {
            addr,
            shared,
            server: Server::spawn(listener, router, "Higher Logic simulator"),
        })
    }

    /// `http://127.0.0.1:PORT/v2`: what goes in `[higher_logic] base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}{API_PREFIX}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn tenant_code(&self) -> &str {
        &self.shared.tenant_code
    }

    pub fn api_key(&self) -> &str {
        &self.shared.api_key
    }

    /// Stops accepting calls and waits for the server task to end.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }

    /// Every member as last pushed, by LegacyContactKey.
    pub fn members(&self) -> BTreeMap<String, Value> {
        self.shared.lock().members.clone()
    }

    pub fn member(&self, key: &str) -> Option<Value> {
        self.shared.lock().members.get(key).cloned()
    }

    pub fn history(&self, key: &str) -> Option<PushHistory> {
        self.shared.lock().history.get(key).cloned()
    }

    /// Every event as last pushed, by EventKey.
    pub fn events(&self) -> BTreeMap<String, Value> {
        self.shared.lock().events.clone()
    }

    pub fn event(&self, key: &str) -> Option<Value> {
        self.shared.lock().events.get(key).cloned()
    }

    /// Every registration as last pushed, by (EventKey, LegacyContactKey). Deleted ones stay,
    /// with `IsDeleted: true`, so tests can see the deletion arrived.
    pub fn registrations(&self) -> BTreeMap<(String, String), Value> {
        self.shared.lock().registrations.clone()
    }

    /// The member's opt-out as Higher Logic holds it now: the last push or member change.
    pub fn email_opt_out(&self, key: &str) -> Option<bool> {
        self.shared.lock().opt_out.get(key).copied()
    }

    /// A member changes their email opt-out in the community now.
    pub fn set_email_opt_out(&self, key: &str, opted_out: bool) {
        self.set_email_opt_out_at(key, opted_out, Utc::now());
    }

    /// A member changes their email opt-out in the community at `at`.
    pub fn set_email_opt_out_at(&self, key: &str, opted_out: bool, at: DateTime<Utc>) {
        let mut inner = self.shared.lock();
        inner.opt_out.insert(key.to_owned(), opted_out);
        inner.opt_out_changes.push(EmailPreferenceChange {
            key: key.to_owned(),
            email_opt_out: opted_out,
            updated_on: at,
        });
    }

    /// The next `n` authenticated calls answer 503 (added to any already scripted).
    pub fn fail_next_calls(&self, n: u32) {
        let mut inner = self.shared.lock();
        inner.fail_next = inner.fail_next.saturating_add(n);
    }

    /// The next `n` authenticated calls answer 429 with `Retry-After: retry_after_secs`.
    pub fn throttle_next_calls(&self, n: u32, retry_after_secs: u64) {
        let mut inner = self.shared.lock();
        inner.throttle_next = inner.throttle_next.saturating_add(n);
        inner.throttle_retry_after = retry_after_secs;
    }

    /// Records with these keys get `status:"error"` until `clear_record_failures`.
    pub fn fail_records<I, S>(&self, keys: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut inner = self.shared.lock();
        inner.failing_keys.extend(keys.into_iter().map(Into::into));
    }

    pub fn clear_record_failures(&self) {
        self.shared.lock().failing_keys.clear();
    }

    /// Probability (clamped to 0..=1) that a call answers 500 or 503.
    pub fn set_error_rate(&self, rate: f64) {
        self.shared.lock().error_rate = rate.clamp(0.0, 1.0);
    }

    /// 0 means unlimited.
    pub fn set_max_calls_per_minute(&self, max: u32) {
        let mut inner = self.shared.lock();
        inner.max_calls_per_minute = max;
        inner.recent_calls.clear();
    }

    pub fn counters(&self) -> HlCounters {
        self.shared.lock().counters.clone()
    }

    pub fn reset_counters(&self) {
        self.shared.lock().counters = HlCounters::default();
    }
}

fn error_body(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "message": message.into() }))).into_response()
}

/// A call answered with an error instead of being handled.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
    retry_after_secs: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after_secs: None,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = error_body(self.status, self.message);
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

async fn not_found() -> Response {
    error_body(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint: the push API serves {API_PREFIX}/contactinfo, /events, /registrations and /emailpreferences"
        ),
    )
}

/// Checks everything that comes before the body: counting, credentials, rate, scripted and
/// random faults. `Err` is the answer to send instead of handling the call.
fn admit(shared: &Shared, endpoint: Endpoint, headers: &HeaderMap) -> Result<(), Refusal> {
    let mut inner = shared.lock();
    let counters = &mut inner.counters;
    match endpoint {
        Endpoint::ContactInfo => counters.contactinfo_calls += 1,
        Endpoint::Events => counters.events_calls += 1,
        Endpoint::Registrations => counters.registrations_calls += 1,
        Endpoint::EmailPreferences => counters.emailpreferences_calls += 1,
    }

    let header_is = |name: &str, expected: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == expected)
    };
    if !header_is("x-api-key", &shared.api_key) {
        inner.counters.auth_rejected += 1;
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "missing or invalid x-api-key",
        ));
    }
    if !header_is("x-tenant-code", &shared.tenant_code) {
        inner.counters.auth_rejected += 1;
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "the API key is not valid for this x-tenant-code",
        ));
    }

    if inner.throttle_next > 0 {
        inner.throttle_next -= 1;
        let retry_after = inner.throttle_retry_after;
        return Err(throttled(&mut inner, retry_after));
    }

    let now = Instant::now();
    let window = Duration::from_secs(60);
    while inner
        .recent_calls
        .front()
        .is_some_and(|&t| now.duration_since(t) >= window)
    {
        inner.recent_calls.pop_front();
    }
    let max = inner.max_calls_per_minute as usize;
    if max > 0 && inner.recent_calls.len() >= max {
        let oldest = inner.recent_calls.front().copied().unwrap_or(now);
        let wait = window.saturating_sub(now.duration_since(oldest));
        // Round up: a client that waits the whole advertised time must then get in.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Err(throttled(&mut inner, secs.max(1)));
    }
    inner.recent_calls.push_back(now);

    if inner.fail_next > 0 {
        inner.fail_next -= 1;
        inner.counters.faults_served += 1;
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "simulated outage (scripted): retry later",
        ));
    }
    let error_rate = inner.error_rate;
    if error_rate > 0.0 && inner.rng.random_bool(error_rate) {
        inner.counters.faults_served += 1;
        let status = if inner.rng.random_bool(0.5) {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return Err(Refusal::new(status, "simulated server error (random)"));
    }
    Ok(())
}

fn throttled(inner: &mut Inner, retry_after_secs: u64) -> Refusal {
    inner.counters.throttled += 1;
    Refusal {
        retry_after_secs: Some(retry_after_secs),
        ..Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many calls: wait for Retry-After seconds",
        )
    }
}

/// Parses a push body: a JSON array of 1..=200 items. `Err` is the 400 answer.
fn parse_batch(shared: &Shared, body: &[u8]) -> Result<Vec<Value>, Refusal> {
    let problem = match serde_json::from_slice::<Value>(body) {
        Err(e) => format!("the body is not valid JSON: {e}"),
        Ok(Value::Array(items)) if items.is_empty() => {
            "the body is an empty array: send 1 to 200 records".to_owned()
        }
        Ok(Value::Array(items)) if items.len() > MAX_RECORDS_PER_CALL => format!(
            "the body holds {} records: send at most {MAX_RECORDS_PER_CALL} per call",
            items.len()
        ),
        Ok(Value::Array(items)) => {
            shared.lock().counters.records_received += items.len() as u64;
            return Ok(items);
        }
        Ok(_) => "the body must be a JSON array of records".to_owned(),
    };
    shared.lock().counters.bad_requests += 1;
    Err(Refusal::new(StatusCode::BAD_REQUEST, problem))
}

fn result_entry(ids: &[(&str, Option<String>)], outcome: &Result<(), String>) -> Value {
    let mut entry = Map::new();
    for (name, value) in ids {
        entry.insert(
            (*name).to_owned(),
            value.clone().map_or(Value::Null, Value::String),
        );
    }
    match outcome {
        Ok(()) => {
            entry.insert("status".to_owned(), json!("ok"));
            entry.insert("message".to_owned(), Value::Null);
        }
        Err(message) => {
            entry.insert("status".to_owned(), json!("error"));
            entry.insert("message".to_owned(), json!(message));
        }
    }
    Value::Object(entry)
}

fn results_response(results: Vec<Value>) -> Response {
    (StatusCode::OK, Json(json!({ "results": results }))).into_response()
}

/// What the three push endpoints share: admit the call, parse the batch, then `apply` each
/// record under one lock and answer one result entry per record, named by its `id_fields`.
fn push_batch(
    shared: &Shared,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: &[u8],
    id_fields: &[&str],
    mut apply: impl FnMut(&mut Inner, Value) -> Result<(), String>,
) -> Response {
    if let Err(answer) = admit(shared, endpoint, headers) {
        return answer.into_response();
    }
    let records = match parse_batch(shared, body) {
        Ok(records) => records,
        Err(answer) => return answer.into_response(),
    };
    let mut inner = shared.lock();
    let results = records
        .into_iter()
        .map(|record| {
            let ids: Vec<(&str, Option<String>)> = id_fields
                .iter()
                .map(|&name| {
                    let id = record.get(name).and_then(Value::as_str).map(str::to_owned);
                    (name, id)
                })
                .collect();
            let outcome = apply(&mut inner, record);
            if outcome.is_err() {
                inner.counters.record_errors += 1;
            }
            result_entry(&ids, &outcome)
        })
        .collect();
    results_response(results)
}

async fn post_contactinfo(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    push_batch(
        &shared,
        Endpoint::ContactInfo,
        &headers,
        &body,
        &["LegacyContactKey"],
        |inner, record| {
            let checked = validate_contact(&record)?;
            refuse_failing_key(inner, &checked.key)?;
            store_contact(inner, checked.key, checked.email_opt_out, record);
            Ok(())
        },
    )
}

/// The injected per-record failure for a key in `failing_keys`.
fn refuse_failing_key(inner: &Inner, key: &str) -> Result<(), String> {
    if inner.failing_keys.contains(key) {
        return Err(format!("simulated failure for record {key}"));
    }
    Ok(())
}

fn store_contact(inner: &mut Inner, key: String, email_opt_out: bool, record: Value) {
    let changed = inner
        .members
        .get(&key)
        .is_none_or(|old| comparable(old) != comparable(&record));
    let history = inner.history.entry(key.clone()).or_default();
    history.pushes += 1;
    if changed {
        history.changes += 1;
    }
    history.last_push_changed = changed;
    // A push sets the current opt-out but is not a member-made change: it never shows up in
    // GET /emailpreferences, or hlsync would echo its own writes back to Salesforce.
    inner.opt_out.insert(key.clone(), email_opt_out);
    inner.members.insert(key, record);
}

/// The record as far as "did this push change anything" is concerned.
fn comparable(record: &Value) -> Value {
    let mut record = record.clone();
    if let Some(obj) = record.as_object_mut() {
        obj.remove("UpdatedOn");
        for list in ["SecurityGroups", "CommunityGroups"] {
            if let Some(Value::Array(groups)) = obj.get_mut(list) {
                groups.sort_by(|a, b| {
                    let key =
                        |g: &Value| g.get("GroupKey").and_then(Value::as_str).map(str::to_owned);
                    key(a).cmp(&key(b))
                });
            }
        }
    }
    record
}

#[derive(Debug)]
struct CheckedContact {
    key: String,
    email_opt_out: bool,
}

fn validate_contact(record: &Value) -> Result<CheckedContact, String> {
    let obj = record
        .as_object()
        .ok_or("a contact record must be a JSON object")?;
    let key = sf_id_field(obj, "LegacyContactKey")?;
    exact_fields(obj, CONTACT_FIELDS, "contact record")?;
    for &field in CONTACT_TEXT_FIELDS {
        nullable_text(obj, field)?;
    }
    match obj.get("Address") {
        Some(Value::Null) => {}
        Some(Value::Object(address)) => {
            exact_fields(address, ADDRESS_FIELDS, "Address")?;
            for &field in ADDRESS_FIELDS {
                nullable_text(address, field).map_err(|e| format!("Address: {e}"))?;
            }
        }
        _ => return Err("Address must be an object or null".to_owned()),
    }
    let is_active = bool_field(obj, "IsActive")?;
    let is_deleted = bool_field(obj, "IsDeleted")?;
    let email_opt_out = bool_field(obj, "EmailOptOut")?;
    let security = groups_field(obj, "SecurityGroups")?;
    let community = groups_field(obj, "CommunityGroups")?;
    nullable_timestamp(obj, "UpdatedOn")?;
    if is_deleted && is_active {
        return Err("a deleted member (IsDeleted true) must have IsActive false".to_owned());
    }
    if is_deleted && (security + community) > 0 {
        return Err("a deleted member (IsDeleted true) must have no groups".to_owned());
    }
    Ok(CheckedContact { key, email_opt_out })
}

async fn post_events(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    push_batch(
        &shared,
        Endpoint::Events,
        &headers,
        &body,
        &["EventKey"],
        |inner, record| {
            let key = validate_event(&record)?;
            refuse_failing_key(inner, &key)?;
            inner.events.insert(key, record);
            Ok(())
        },
    )
}

fn validate_event(record: &Value) -> Result<String, String> {
    let obj = record
        .as_object()
        .ok_or("an event record must be a JSON object")?;
    let key = sf_id_field(obj, "EventKey")?;
    exact_fields(obj, EVENT_FIELDS, "event record")?;
    nullable_text(obj, "Name")?;
    nullable_date(obj, "StartDate")?;
    nullable_date(obj, "EndDate")?;
    bool_field(obj, "IsDeleted")?;
    Ok(key)
}

async fn post_registrations(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    push_batch(
        &shared,
        Endpoint::Registrations,
        &headers,
        &body,
        &["EventKey", "LegacyContactKey"],
        |inner, record| {
            let (event, contact) = validate_registration(&record)?;
            refuse_failing_key(inner, &event)?;
            refuse_failing_key(inner, &contact)?;
            // Higher Logic files registrations under an event it knows.
            if !inner.events.contains_key(&event) {
                return Err(format!(
                    "unknown EventKey {event}: push the event before its registrations"
                ));
            }
            inner.registrations.insert((event, contact), record);
            Ok(())
        },
    )
}

fn validate_registration(record: &Value) -> Result<(String, String), String> {
    let obj = record
        .as_object()
        .ok_or("a registration record must be a JSON object")?;
    let event = sf_id_field(obj, "EventKey")?;
    let contact = sf_id_field(obj, "LegacyContactKey")?;
    exact_fields(obj, REGISTRATION_FIELDS, "registration record")?;
    let is_deleted = bool_field(obj, "IsDeleted")?;
    // A removal may carry no status; a live registration must say what it is.
    match obj.get("Status") {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        Some(Value::Null) if is_deleted => {}
        _ => {
            return Err(
                "Status must be a non-empty string (null only when IsDeleted is true)".to_owned(),
            );
        }
    }
    Ok((event, contact))
}

async fn get_emailpreferences(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(answer) = admit(&shared, Endpoint::EmailPreferences, &headers) {
        return answer.into_response();
    }
    let since = query
        .as_deref()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(name, _)| name == "since")
                .map(|(_, value)| value.into_owned())
        })
        .ok_or_else(|| "the since query parameter is required (ISO-8601)".to_owned())
        .and_then(|raw| {
            DateTime::parse_from_rfc3339(&raw)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("since={raw} is not an ISO-8601 date-time: {e}"))
        });
    let since = match since {
        Ok(since) => since,
        Err(message) => {
            shared.lock().counters.bad_requests += 1;
            return error_body(StatusCode::BAD_REQUEST, message);
        }
    };

    let inner = shared.lock();
    // One entry per member: the latest change after `since`, as a preferences feed reports state.
    let mut latest: BTreeMap<&str, &EmailPreferenceChange> = BTreeMap::new();
    for change in inner
        .opt_out_changes
        .iter()
        .filter(|c| c.updated_on > since)
    {
        let slot = latest.entry(change.key.as_str()).or_insert(change);
        if change.updated_on >= slot.updated_on {
            *slot = change;
        }
    }
    let mut changes: Vec<&EmailPreferenceChange> = latest.into_values().collect();
    changes.sort_by(|a, b| (a.updated_on, &a.key).cmp(&(b.updated_on, &b.key)));
    let changes: Vec<Value> = changes
        .into_iter()
        .map(|c| {
            json!({
                "LegacyContactKey": c.key,
                "EmailOptOut": c.email_opt_out,
                "UpdatedOn": c.updated_on.to_rfc3339_opts(SecondsFormat::Millis, true),
            })
        })
        .collect();
    (StatusCode::OK, Json(json!({ "changes": changes }))).into_response()
}

fn exact_fields(obj: &Map<String, Value>, expected: &[&str], what: &str) -> Result<(), String> {
    if let Some(missing) = expected.iter().find(|f| !obj.contains_key(**f)) {
        return Err(format!("{what}: missing field {missing}"));
    }
    if let Some(unknown) = obj.keys().find(|k| !expected.contains(&k.as_str())) {
        return Err(format!("{what}: unknown field {unknown}"));
    }
    Ok(())
}

/// An 18-character case-safe Salesforce Id: 15 characters would be case-sensitive and collide.
fn sf_id_field(obj: &Map<String, Value>, name: &str) -> Result<String, String> {
    match obj.get(name) {
        Some(Value::String(id))
            if id.len() == 18 && id.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            Ok(id.clone())
        }
        Some(Value::String(id)) => Err(format!(
            "{name} must be an 18-character Salesforce Id, got {id:?}"
        )),
        Some(_) => Err(format!("{name} must be a string")),
        None => Err(format!("missing field {name}")),
    }
}

fn nullable_text(obj: &Map<String, Value>, name: &str) -> Result<(), String> {
    match obj.get(name) {
        Some(Value::Null | Value::String(_)) => Ok(()),
        _ => Err(format!("{name} must be a string or null")),
    }
}

fn bool_field(obj: &Map<String, Value>, name: &str) -> Result<bool, String> {
    obj.get(name)
        .and_then(Value::as_bool)
        .ok_or_else(|| format!("{name} must be true or false"))
}

fn nullable_timestamp(obj: &Map<String, Value>, name: &str) -> Result<(), String> {
    match obj.get(name) {
        Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if DateTime::parse_from_rfc3339(s).is_ok() => Ok(()),
        _ => Err(format!(
            "{name} must be null or an ISO-8601 date-time such as 2026-11-24T10:00:00.000Z"
        )),
    }
}

/// Campaign dates are dates; a date-time is accepted too.
fn nullable_date(obj: &Map<String, Value>, name: &str) -> Result<(), String> {
    match obj.get(name) {
        Some(Value::Null) => Ok(()),
        Some(Value::String(s))
            if NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
                || DateTime::parse_from_rfc3339(s).is_ok() =>
        {
            Ok(())
        }
        _ => Err(format!("{name} must be null or a date such as 2026-11-24")),
    }
}

fn groups_field(obj: &Map<String, Value>, name: &str) -> Result<usize, String> {
    let groups = obj
        .get(name)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{name} must be an array of {{GroupKey, GroupName}}"))?;
    let mut seen = BTreeSet::new();
    for group in groups {
        let group = group
            .as_object()
            .ok_or_else(|| format!("{name}: each group must be an object"))?;
        exact_fields(group, GROUP_FIELDS, name)?;
        for field in GROUP_FIELDS {
            match group.get(*field) {
                Some(Value::String(s)) if !s.trim().is_empty() => {}
                _ => return Err(format!("{name}: {field} must be a non-empty string")),
            }
        }
        if let Some(key) = group.get("GroupKey").and_then(Value::as_str)
            && !seen.insert(key)
        {
            return Err(format!("{name}: GroupKey {key} appears twice"));
        }
    }
    Ok(groups.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(key: &str) -> Value {
        json!({
            "LegacyContactKey": key, "FirstName": "Ada", "LastName": "Lovelace",
            "EmailAddress": "ada@example.org", "CompanyName": null, "Title": null,
            "Phone": null, "MobilePhone": null,
            "Address": {"Street": null, "City": "Columbus", "StateProvince": "OH",
                        "PostalCode": null, "Country": "US"},
            "IsActive": true, "IsDeleted": false, "EmailOptOut": false,
            "SecurityGroups": [{"GroupKey": "HL_Member_Type__c:Gold", "GroupName": "Gold"}],
            "CommunityGroups": [],
            "UpdatedOn": "2026-11-24T10:00:00.000Z"
        })
    }

    const KEY: &str = "003000000000001AAA";

    #[test]
    fn a_complete_contact_is_valid() {
        let checked = validate_contact(&contact(KEY)).unwrap();
        assert_eq!(checked.key, KEY);
    }

    #[test]
    fn shape_errors_are_named() {
        let mut c = contact("003000000000001");
        assert!(validate_contact(&c).unwrap_err().contains("18-character"));

        c = contact(KEY);
        c.as_object_mut().unwrap().remove("Title");
        assert!(
            validate_contact(&c)
                .unwrap_err()
                .contains("missing field Title")
        );

        c = contact(KEY);
        c["Email"] = json!("x");
        assert!(
            validate_contact(&c)
                .unwrap_err()
                .contains("unknown field Email")
        );

        c = contact(KEY);
        c["IsActive"] = json!("true");
        assert!(validate_contact(&c).unwrap_err().contains("IsActive"));

        c = contact(KEY);
        c["SecurityGroups"] = json!([{"GroupKey": "k"}]);
        assert!(validate_contact(&c).unwrap_err().contains("GroupName"));

        c = contact(KEY);
        c["UpdatedOn"] = json!("yesterday");
        assert!(validate_contact(&c).unwrap_err().contains("UpdatedOn"));
    }

    #[test]
    fn a_deleted_member_is_inactive_and_has_no_groups() {
        let mut c = contact(KEY);
        c["IsDeleted"] = json!(true);
        c["IsActive"] = json!(false);
        assert!(validate_contact(&c).unwrap_err().contains("no groups"));
        c["SecurityGroups"] = json!([]);
        assert!(validate_contact(&c).is_ok());
        c["IsActive"] = json!(true);
        assert!(validate_contact(&c).unwrap_err().contains("IsActive false"));
    }

    #[test]
    fn duplicate_group_keys_are_rejected() {
        let mut c = contact(KEY);
        c["CommunityGroups"] = json!([
            {"GroupKey": "HL_Chapter__c:Ohio", "GroupName": "Ohio"},
            {"GroupKey": "HL_Chapter__c:Ohio", "GroupName": "Ohio"}
        ]);
        assert!(validate_contact(&c).unwrap_err().contains("appears twice"));
    }

    #[test]
    fn group_order_and_updated_on_do_not_count_as_changes() {
        let mut a = contact(KEY);
        a["SecurityGroups"] = json!([
            {"GroupKey": "A", "GroupName": "A"}, {"GroupKey": "B", "GroupName": "B"}
        ]);
        let mut b = a.clone();
        b["SecurityGroups"] = json!([
            {"GroupKey": "B", "GroupName": "B"}, {"GroupKey": "A", "GroupName": "A"}
        ]);
        b["UpdatedOn"] = json!("2026-11-25T10:00:00.000Z");
        assert_eq!(comparable(&a), comparable(&b));
        b["Title"] = json!("Countess");
        assert_ne!(comparable(&a), comparable(&b));
    }

    #[test]
    fn events_and_registrations_validate_their_fields() {
        let event = json!({"EventKey": "701000000000001AAA", "Name": "Gala",
                           "StartDate": "2026-12-01", "EndDate": null, "IsDeleted": false});
        assert!(validate_event(&event).is_ok());
        let mut bad = event.clone();
        bad["StartDate"] = json!("December");
        assert!(validate_event(&bad).unwrap_err().contains("StartDate"));

        let reg = json!({"EventKey": "701000000000001AAA", "LegacyContactKey": KEY,
                         "Status": "Registered", "IsDeleted": false});
        assert!(validate_registration(&reg).is_ok());
        let mut bad = reg.clone();
        bad["Status"] = json!("");
        assert!(validate_registration(&bad).unwrap_err().contains("Status"));
    }
}
