//! The Higher Logic data Push API v2 simulator (SPEC.md §6).
//!
//! It stands in for `https://datapushapi.higherlogic.com/v2` in tests, benchmarks and the demo.
//! It deliberately does not depend on hlsync-core: it checks the JSON it receives on its own, so
//! a client that sends the wrong shape is caught here instead of being agreed with by shared
//! types. Where Higher Logic's documentation is silent (the required fields, the answer bodies,
//! the error format), the simulator is strict and says so below: a client that passes it sends
//! exactly what SPEC.md §6 describes.
//!
//! # Calls
//!
//! - Every call carries the header `ApiKey: <key>`. A missing or wrong key answers 401.
//! - `POST /v2/contactinfo` and `POST /v2/meeting`: `Content-Type: application/json` (or
//!   `text/json`, which Higher Logic also takes; anything else answers 415), body a JSON array of
//!   1 to `max_records_per_call` elements (default 200).
//! - `GET /v2/emailpreferences?since=<ISO-8601>`: the tenant's email-preference feed of SPEC.md
//!   §6. It is not part of Higher Logic's push API; the simulator serves it so that tests can
//!   drive the write-back. It answers `{"changes":[{"ContactId","DoNotEmail","UpdatedOn"}]}`:
//!   every member-made change (`set_email_opt_out`) whose `UpdatedOn` is strictly after `since`,
//!   oldest first, all of them (a member who changed twice appears twice; the reader keeps the
//!   later). Pushes are not member changes and never appear in it. A missing or unreadable
//!   `since` answers 400.
//!
//! # Answers
//!
//! - An accepted push answers **200 with an empty body**: Higher Logic publishes no per-record
//!   result, and an empty body makes a client that tries to read one fail at once.
//! - Every refusal answers a JSON object `{"Message": "<what is wrong>"}` (the .NET style of
//!   Higher Logic's other APIs): 400 bad body or query, 401 key, 404 path, 415 content type,
//!   429 rate (with `Retry-After: <seconds>`), 500/503 injected faults.
//! - A 400 for an element names it by its index in the array (from 0) and its id, then the
//!   problem with the JSON path of the key:
//!   `{"Message":"element 3 (ContactId 0030000000000AbAAA): Groups[1].GroupType is required"}`.
//!   Only the first problem found is reported.
//!
//! # Strictness, all or nothing
//!
//! Each element is checked against the shapes below; a single bad element (or a refused
//! ContactId, see `refuse_contacts`) refuses the whole request and nothing of it is stored.
//! A key not listed for its object is an error (`unknown key ContactDetails.Nickname`).
//!
//! - ContactInfo: `ContactDetails` (required object) and the optional arrays `Groups`,
//!   `Addresses`, `PhoneNumbers`, `EmailAddresses`.
//!   - `ContactDetails`: `ContactId` (required), `FirstName`, `LastName`, `PrimaryEmailAddress`,
//!     `OrganizationName`, `Title` (string or null), `IsMember`, `IsOrganization`, `DoNotEmail`,
//!     `IsDeleted` (booleans; `IsDeleted` true only in the delete shape).
//!   - `Groups[]`: `GroupId` (required), `GroupName` (required string, may be empty),
//!     `GroupType` (required), `Role` (string or null). A GroupId + GroupType pair appears once
//!     per element.
//!   - `Addresses[]`: `AddressLine1`, `AddressLine2`, `City`, `StateProvince`, `PostalCode`
//!     (string or null), `CountryCode` (null or two ASCII capitals), `AddressType` (required),
//!     `IsPrimary` (boolean).
//!   - `PhoneNumbers[]`: `FormattedNumber`, `PhoneType` (required), `IsPreferred` (boolean).
//!   - `EmailAddresses[]`: `EmailAddress`, `EmailType` (required), `IsPreferred` (boolean).
//!   - Delete shape, exactly: `{"ContactDetails":{"ContactId":"…","IsDeleted":true}}`; any other
//!     key in it, or any collection beside it (even empty), is a 400.
//! - Meeting: `MeetingId` (required), `Title`, `Description`, `MeetingType` (string or null),
//!   `BeginDate`, `EndDate` (null or a UTC date-time written exactly `yyyy-MM-ddTHH:mm:ss.fffZ`),
//!   `IsDeleted` (boolean). Delete shape, exactly: `{"MeetingId":"…","IsDeleted":true}`.
//!
//! "Required" keys are ids and types: present, and a string that is not blank (`GroupName` only
//! needs to be a string). For every other key, **absence means the same as null for text, and
//! false for booleans** — that is Higher Logic's full-record rule (a field left out is cleared),
//! so both spellings store the same record and compare equal. A present value must have its type:
//! null is not a boolean, and a collection, when present, must be an array (not null). An absent
//! collection is empty. The hlsync client sends every key of `ContactDetails` and every
//! collection for a live member, so it never relies on the defaults.
//!
//! # Stored state
//!
//! An accepted element **replaces** the whole stored record (full-record replacement): what it
//! leaves out is gone. The record is stored normalised: every key of every object present,
//! absent collections as `[]`. Two elements for the same id in one request are applied in order
//! (the later wins). A delete removes the member (or meeting) and marks it deleted until a live
//! push re-creates it. `history` counts pushes per ContactId and whether each changed the stored
//! state; the order of entries in a collection is not a change.
//!
//! Event groups: a `Groups` entry whose `GroupType` is `event_group_type` (default "Event")
//! names a meeting by its `GroupId`. One that names no meeting the simulator holds is accepted
//! (what Higher Logic does with it is unknown) and recorded in `orphan_event_groups`, so tests
//! can check that meetings are pushed before the registrations that name them.
//!
//! Email opt-out: `email_opt_out(id)` is the last `DoNotEmail` the simulator saw for the member,
//! from a push or a member-made change, whichever the simulator saw last (the `at` of
//! `set_email_opt_out_at` only dates the change in the feed). A member-made change also sets
//! `DoNotEmail` in the stored record, as Higher Logic would show it; a delete leaves the
//! preference alone.
//!
//! # Order of checks and faults
//!
//! Each call is counted, then: key (401); scripted throttling `throttle_next_calls` (429); the
//! rate limit, `max_calls_per_minute` calls in any 60 s window (429 with the seconds until a
//! slot frees, rounded up); scripted outages `fail_next_calls` (503); random faults at
//! `error_rate` (500 or 503, from a seeded generator, so a seed replays the same faults); then
//! the content type and body (415/400). Every call that passed the key takes a slot in the rate
//! window, whatever it is answered.
//!
//! Time: the rate-limit window uses tokio's clock, so tests that pause tokio's clock see a
//! consistent simulator; `set_email_opt_out` dates changes with the wall clock.

mod wire;

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
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::serve::Server;
use wire::{ContactPush, MeetingPush};

/// API key the simulator accepts unless told otherwise (a simulator value, not a secret).
pub const DEFAULT_API_KEY: &str = "hl-sim-api-key";
/// Generous enough that a correctly limited client never meets it unless a test lowers it.
pub const DEFAULT_MAX_CALLS_PER_MINUTE: u32 = 6_000;
/// Largest array a push endpoint accepts unless told otherwise (SPEC.md §3 `batch_size`).
pub const DEFAULT_MAX_RECORDS_PER_CALL: usize = 200;
/// The `GroupType` of a registration unless told otherwise (SPEC.md §3 `events.group_type`).
pub const DEFAULT_EVENT_GROUP_TYPE: &str = "Event";
/// Path prefix of every endpoint; `base_url()` ends with it.
pub const API_PREFIX: &str = "/v2";

/// Faults the simulator injects, reproducibly (seeded).
#[derive(Clone, Debug, Default)]
pub struct HlFaults {
    /// Seed of the generator that decides which calls fail at `error_rate`.
    pub seed: u64,
    /// Probability (0.0..=1.0) that an authenticated call answers 500 or 503 instead of working.
    pub error_rate: f64,
    /// The next N authenticated calls answer 503, then the API recovers.
    pub fail_next_calls: u32,
    /// A `/contactinfo` request holding any of these ContactIds answers 400 naming it, and
    /// nothing of it is stored (see `HigherLogicSim::refuse_contacts`).
    pub refused_contacts: BTreeSet<String>,
}

/// How to start a [`HigherLogicSim`].
#[derive(Clone, Debug)]
pub struct HlSimOptions {
    /// Port on 127.0.0.1; 0 picks a free one (what tests want).
    pub port: u16,
    /// The `ApiKey` header every call must carry.
    pub api_key: String,
    /// Calls accepted in any 60 s window before answering 429; 0 means unlimited.
    pub max_calls_per_minute: u32,
    /// Most elements in one push body (at least 1).
    pub max_records_per_call: usize,
    /// The `GroupType` whose `GroupId` names a meeting (checked by `orphan_event_groups`).
    pub event_group_type: String,
    pub faults: HlFaults,
}

impl Default for HlSimOptions {
    fn default() -> Self {
        Self {
            port: 0,
            api_key: DEFAULT_API_KEY.to_owned(),
            max_calls_per_minute: DEFAULT_MAX_CALLS_PER_MINUTE,
            max_records_per_call: DEFAULT_MAX_RECORDS_PER_CALL,
            event_group_type: DEFAULT_EVENT_GROUP_TYPE.to_owned(),
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
    pub meeting_calls: u64,
    pub emailpreferences_calls: u64,
    /// Elements in all push bodies that were arrays of an accepted length, valid or not.
    pub records_received: u64,
    /// 429 answers.
    pub throttled: u64,
    /// Injected 500/503 answers.
    pub faults_served: u64,
    /// 401 answers.
    pub auth_rejected: u64,
    /// 400 answers (bad body, bad element, refused ContactId, bad query) and 415 answers.
    pub bad_requests: u64,
}

impl HlCounters {
    /// Every call that reached an endpoint, whatever it was answered.
    pub fn total_calls(&self) -> u64 {
        self.contactinfo_calls + self.meeting_calls + self.emailpreferences_calls
    }
}

/// How often a ContactId was pushed (live or delete), and whether pushes changed what the
/// simulator holds for it. The same record again, even with its collections in another order,
/// is not a change: the push is meant to be idempotent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PushHistory {
    pub pushes: u64,
    pub changes: u64,
    pub last_push_changed: bool,
}

/// One member-made opt-out change, as the feed reports it.
#[derive(Clone, Debug)]
struct PreferenceChange {
    contact_id: String,
    do_not_email: bool,
    updated_on: DateTime<Utc>,
}

#[derive(Clone, Copy)]
enum Endpoint {
    ContactInfo,
    Meeting,
    EmailPreferences,
}

struct Inner {
    max_calls_per_minute: u32,
    rng: StdRng,
    error_rate: f64,
    fail_next: u32,
    throttle_next: u32,
    throttle_retry_after: u64,
    refused_contacts: BTreeSet<String>,
    recent_calls: VecDeque<Instant>,
    members: BTreeMap<String, Value>,
    deleted_members: BTreeSet<String>,
    history: BTreeMap<String, PushHistory>,
    opt_out: BTreeMap<String, bool>,
    preference_changes: Vec<PreferenceChange>,
    meetings: BTreeMap<String, Value>,
    deleted_meetings: BTreeSet<String>,
    orphan_event_groups: BTreeSet<(String, String)>,
    counters: HlCounters,
}

struct Shared {
    api_key: String,
    max_records_per_call: usize,
    event_group_type: String,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Handlers validate before they store, so a panic cannot leave the maps half-updated
        // in a way tests care about: a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running Higher Logic Push API v2 simulator. Stops when dropped (or on `shutdown`).
pub struct HigherLogicSim {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Server,
}

impl std::fmt::Debug for HigherLogicSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HigherLogicSim")
            .field("addr", &self.addr)
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
        if opts.api_key.is_empty() {
            return Err(HlSimError::InvalidOption(
                "api_key must not be empty".to_owned(),
            ));
        }
        if opts.max_records_per_call == 0 {
            return Err(HlSimError::InvalidOption(
                "max_records_per_call must be at least 1".to_owned(),
            ));
        }
        if opts.event_group_type.trim().is_empty() {
            return Err(HlSimError::InvalidOption(
                "event_group_type must not be empty".to_owned(),
            ));
        }
        let (listener, addr) = crate::serve::bind(opts.port)
            .await
            .map_err(|(addr, source)| HlSimError::Bind { addr, source })?;

        let shared = Arc::new(Shared {
            api_key: opts.api_key,
            max_records_per_call: opts.max_records_per_call,
            event_group_type: opts.event_group_type,
            inner: Mutex::new(Inner {
                max_calls_per_minute: opts.max_calls_per_minute,
                rng: StdRng::seed_from_u64(opts.faults.seed),
                error_rate: opts.faults.error_rate,
                fail_next: opts.faults.fail_next_calls,
                throttle_next: 0,
                throttle_retry_after: 0,
                refused_contacts: opts.faults.refused_contacts,
                recent_calls: VecDeque::new(),
                members: BTreeMap::new(),
                deleted_members: BTreeSet::new(),
                history: BTreeMap::new(),
                opt_out: BTreeMap::new(),
                preference_changes: Vec::new(),
                meetings: BTreeMap::new(),
                deleted_meetings: BTreeSet::new(),
                orphan_event_groups: BTreeSet::new(),
                counters: HlCounters::default(),
            }),
        });

        let router = Router::new()
            .route(&format!("{API_PREFIX}/contactinfo"), post(post_contactinfo))
            .route(&format!("{API_PREFIX}/meeting"), post(post_meeting))
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

    /// `http://127.0.0.1:PORT/v2/emailpreferences`: what goes in
    /// `[higher_logic] email_preferences_url`.
    pub fn email_preferences_url(&self) -> String {
        format!("{}/emailpreferences", self.base_url())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `ApiKey` the simulator accepts.
    pub fn api_key(&self) -> &str {
        &self.shared.api_key
    }

    /// Stops accepting calls and waits for the server task to end.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }

    /// Every member as last pushed (normalised), by ContactId. Deleted members are not here.
    pub fn members(&self) -> BTreeMap<String, Value> {
        self.shared.lock().members.clone()
    }

    pub fn member(&self, contact_id: &str) -> Option<Value> {
        self.shared.lock().members.get(contact_id).cloned()
    }

    /// A delete was accepted for this ContactId and no live push re-created it since.
    pub fn is_deleted(&self, contact_id: &str) -> bool {
        self.shared.lock().deleted_members.contains(contact_id)
    }

    pub fn history(&self, contact_id: &str) -> Option<PushHistory> {
        self.shared.lock().history.get(contact_id).cloned()
    }

    /// Every meeting as last pushed (normalised), by MeetingId. Deleted meetings are not here.
    pub fn meetings(&self) -> BTreeMap<String, Value> {
        self.shared.lock().meetings.clone()
    }

    pub fn meeting(&self, meeting_id: &str) -> Option<Value> {
        self.shared.lock().meetings.get(meeting_id).cloned()
    }

    /// A delete was accepted for this MeetingId and no live push re-created it since.
    pub fn is_meeting_deleted(&self, meeting_id: &str) -> bool {
        self.shared.lock().deleted_meetings.contains(meeting_id)
    }

    /// (ContactId, GroupId) of every accepted event group that named a meeting the simulator
    /// did not hold at the time.
    pub fn orphan_event_groups(&self) -> BTreeSet<(String, String)> {
        self.shared.lock().orphan_event_groups.clone()
    }

    /// The member's `DoNotEmail` as the simulator holds it now: from the last push or the last
    /// member-made change, whichever the simulator saw last. `None`: never pushed nor changed.
    pub fn email_opt_out(&self, contact_id: &str) -> Option<bool> {
        self.shared.lock().opt_out.get(contact_id).copied()
    }

    /// A member changes their email preference in the community now.
    pub fn set_email_opt_out(&self, contact_id: &str, do_not_email: bool) {
        self.set_email_opt_out_at(contact_id, do_not_email, Utc::now());
    }

    /// A member changes their email preference in the community, dated `at` (kept to the
    /// millisecond, as the feed writes it). The feed lists it, and the stored member's
    /// `DoNotEmail` follows it.
    pub fn set_email_opt_out_at(&self, contact_id: &str, do_not_email: bool, at: DateTime<Utc>) {
        let mut inner = self.shared.lock();
        inner.opt_out.insert(contact_id.to_owned(), do_not_email);
        if let Some(details) = inner
            .members
            .get_mut(contact_id)
            .and_then(|member| member.get_mut("ContactDetails"))
            .and_then(Value::as_object_mut)
        {
            details.insert("DoNotEmail".to_owned(), Value::Bool(do_not_email));
        }
        // Kept to the millisecond the feed shows, so that asking again from a reported
        // `UpdatedOn` does not report the same change once more.
        inner.preference_changes.push(PreferenceChange {
            contact_id: contact_id.to_owned(),
            do_not_email,
            updated_on: at.trunc_subsecs(3),
        });
    }

    /// `/contactinfo` requests holding any of these ContactIds answer 400 naming it, until
    /// `clear_refusals`.
    pub fn refuse_contacts<I, S>(&self, contact_ids: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut inner = self.shared.lock();
        inner
            .refused_contacts
            .extend(contact_ids.into_iter().map(Into::into));
    }

    pub fn clear_refusals(&self) {
        self.shared.lock().refused_contacts.clear();
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

    /// Probability (clamped to 0..=1) that a call answers 500 or 503.
    pub fn set_error_rate(&self, rate: f64) {
        self.shared.lock().error_rate = rate.clamp(0.0, 1.0);
    }

    /// 0 means unlimited. Starts a fresh 60 s window.
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

/// A call answered with an error instead of being handled: `{"Message": …}`.
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
        let mut response = (self.status, Json(json!({ "Message": self.message }))).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A 400 (or 415), counted.
fn bad_request(inner: &mut Inner, status: StatusCode, message: impl Into<String>) -> Refusal {
    inner.counters.bad_requests += 1;
    Refusal::new(status, message)
}

async fn not_found() -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint: the simulator serves POST {API_PREFIX}/contactinfo, POST {API_PREFIX}/meeting and GET {API_PREFIX}/emailpreferences"
        ),
    )
}

/// Checks everything that comes before the body: counting, the key, throttling, the rate
/// limit, scripted and random faults.
fn admit(shared: &Shared, endpoint: Endpoint, headers: &HeaderMap) -> Result<(), Refusal> {
    let mut inner = shared.lock();
    let counters = &mut inner.counters;
    match endpoint {
        Endpoint::ContactInfo => counters.contactinfo_calls += 1,
        Endpoint::Meeting => counters.meeting_calls += 1,
        Endpoint::EmailPreferences => counters.emailpreferences_calls += 1,
    }

    let key_matches = headers
        .get("ApiKey")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == shared.api_key);
    if !key_matches {
        inner.counters.auth_rejected += 1;
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "missing or invalid ApiKey header",
        ));
    }

    if inner.throttle_next > 0 {
        inner.throttle_next -= 1;
        let retry_after = inner.throttle_retry_after;
        return Err(throttled(&mut inner, retry_after));
    }

    let now = Instant::now();
    let window = Duration::from_mins(1);
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

/// Admits a push call and reads its body: a JSON array of 1..=max elements.
fn push_elements(
    shared: &Shared,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<Value>, Refusal> {
    admit(shared, endpoint, headers)?;
    let mut inner = shared.lock();

    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if !matches!(
        media_type.as_deref(),
        Some("application/json" | "text/json")
    ) {
        return Err(bad_request(
            &mut inner,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type must be application/json, got {}",
                media_type.as_deref().unwrap_or("none")
            ),
        ));
    }

    let max = shared.max_records_per_call;
    let problem = match serde_json::from_slice::<Value>(body) {
        Err(e) => format!("the body is not JSON: {e}"),
        Ok(Value::Array(elements)) if elements.is_empty() => {
            format!("the body is an empty array: send 1 to {max} elements")
        }
        Ok(Value::Array(elements)) if elements.len() > max => format!(
            "the body holds {} elements: send at most {max} per call",
            elements.len()
        ),
        Ok(Value::Array(elements)) => {
            inner.counters.records_received += elements.len() as u64;
            return Ok(elements);
        }
        Ok(other) => format!(
            "the body must be a JSON array of 1 to {max} elements, got {}",
            json_kind(&other)
        ),
    };
    Err(bad_request(&mut inner, StatusCode::BAD_REQUEST, problem))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `element 3 (ContactId 003…)`, or `element 3` when the element has no usable id.
fn element_label(index: usize, id_name: &str, id: Option<&str>) -> String {
    match id {
        Some(id) => format!("element {index} ({id_name} {id})"),
        None => format!("element {index}"),
    }
}

/// An accepted push: 200 with an empty body (see the module docs).
fn accepted() -> Response {
    StatusCode::OK.into_response()
}

async fn post_contactinfo(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let elements = match push_elements(&shared, Endpoint::ContactInfo, &headers, &body) {
        Ok(elements) => elements,
        Err(refusal) => return refusal.into_response(),
    };
    let mut inner = shared.lock();
    // All or nothing: every element is checked before any is stored.
    let mut pushes = Vec::with_capacity(elements.len());
    for (index, element) in elements.iter().enumerate() {
        let label = element_label(index, "ContactId", wire::contact_id_of(element));
        let push = match wire::contact(element) {
            Ok(push) => push,
            Err(problem) => {
                return bad_request(
                    &mut inner,
                    StatusCode::BAD_REQUEST,
                    format!("{label}: {problem}"),
                )
                .into_response();
            }
        };
        if inner.refused_contacts.contains(push.contact_id()) {
            let message = format!(
                "{label}: Higher Logic refused ContactId {} (simulated refusal)",
                push.contact_id()
            );
            return bad_request(&mut inner, StatusCode::BAD_REQUEST, message).into_response();
        }
        pushes.push(push);
    }
    for push in pushes {
        store_contact(&mut inner, &shared.event_group_type, push);
    }
    accepted()
}

fn store_contact(inner: &mut Inner, event_group_type: &str, push: ContactPush) {
    let (contact_id, changed) = match push {
        ContactPush::Live { contact_id, record } => {
            let changed = inner
                .members
                .get(&contact_id)
                .is_none_or(|old| wire::comparable(old) != wire::comparable(&record));
            for group in record["Groups"].as_array().into_iter().flatten() {
                let meeting_id = group["GroupId"].as_str().unwrap_or_default();
                if group["GroupType"] == event_group_type
                    && !inner.meetings.contains_key(meeting_id)
                {
                    inner
                        .orphan_event_groups
                        .insert((contact_id.clone(), meeting_id.to_owned()));
                }
            }
            // A push sets the current preference but is not a member-made change: it never
            // shows in the feed, or hlsync would echo its own writes back to Salesforce.
            let do_not_email = record["ContactDetails"]["DoNotEmail"] == true;
            inner.opt_out.insert(contact_id.clone(), do_not_email);
            inner.deleted_members.remove(&contact_id);
            inner.members.insert(contact_id.clone(), record);
            (contact_id, changed)
        }
        ContactPush::Delete { contact_id } => {
            let changed = !inner.deleted_members.contains(&contact_id);
            inner.members.remove(&contact_id);
            inner.deleted_members.insert(contact_id.clone());
            (contact_id, changed)
        }
    };
    let history = inner.history.entry(contact_id).or_default();
    history.pushes += 1;
    if changed {
        history.changes += 1;
    }
    history.last_push_changed = changed;
}

async fn post_meeting(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let elements = match push_elements(&shared, Endpoint::Meeting, &headers, &body) {
        Ok(elements) => elements,
        Err(refusal) => return refusal.into_response(),
    };
    let mut inner = shared.lock();
    let mut pushes = Vec::with_capacity(elements.len());
    for (index, element) in elements.iter().enumerate() {
        match wire::meeting(element) {
            Ok(push) => pushes.push(push),
            Err(problem) => {
                let label = element_label(index, "MeetingId", wire::meeting_id_of(element));
                return bad_request(
                    &mut inner,
                    StatusCode::BAD_REQUEST,
                    format!("{label}: {problem}"),
                )
                .into_response();
            }
        }
    }
    for push in pushes {
        match push {
            MeetingPush::Live { meeting_id, record } => {
                inner.deleted_meetings.remove(&meeting_id);
                inner.meetings.insert(meeting_id, record);
            }
            MeetingPush::Delete { meeting_id } => {
                inner.meetings.remove(&meeting_id);
                inner.deleted_meetings.insert(meeting_id);
            }
        }
    }
    accepted()
}

async fn get_emailpreferences(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(refusal) = admit(&shared, Endpoint::EmailPreferences, &headers) {
        return refusal.into_response();
    }
    let since = match parse_since(query.as_deref()) {
        Ok(since) => since,
        Err(message) => {
            return bad_request(&mut shared.lock(), StatusCode::BAD_REQUEST, message)
                .into_response();
        }
    };

    let inner = shared.lock();
    let mut changes: Vec<&PreferenceChange> = inner
        .preference_changes
        .iter()
        .filter(|change| change.updated_on > since)
        .collect();
    // Stable: changes with the same UpdatedOn stay in the order they were made.
    changes.sort_by_key(|change| change.updated_on);
    let changes: Vec<Value> = changes
        .into_iter()
        .map(|change| {
            json!({
                "ContactId": change.contact_id,
                "DoNotEmail": change.do_not_email,
                "UpdatedOn": change.updated_on.to_rfc3339_opts(SecondsFormat::Millis, true),
            })
        })
        .collect();
    (StatusCode::OK, Json(json!({ "changes": changes }))).into_response()
}

fn parse_since(query: Option<&str>) -> Result<DateTime<Utc>, String> {
    let raw = query
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(name, _)| name == "since")
                .map(|(_, value)| value.into_owned())
        })
        .ok_or("the since query parameter is required: an ISO-8601 date-time such as 2026-11-24T10:00:00.000Z")?;
    DateTime::parse_from_rfc3339(&raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!(
                "since={raw} is not an ISO-8601 date-time with a zone ({e}); a '+' in a query must be sent as %2B"
            )
        })
}
