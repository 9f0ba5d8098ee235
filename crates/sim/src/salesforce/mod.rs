//! The Salesforce simulator: an in-process HTTP server that answers the REST API calls, OAuth
//! token requests and SOAP logins hlsync makes, the way Salesforce documents them, over a store
//! that tests drive directly (insert, update, delete, back-dated commits, describe changes, a
//! controllable clock, API usage and injected faults).
//!
//! The login URL and the instance URL are the same server: `base_url()`.

mod auth;
mod ids;
mod schema;
pub mod seed;
mod server;
pub mod soql;
mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use serde_json::{Map, Value};

pub use ids::{case_safe_suffix, to_18};
pub use schema::{FieldSpec, FieldType, default_contact_custom_fields};
pub use seed::{Dataset, generate, generate_at};
pub use store::{MASTER_RECORD_TYPE_ID, format_datetime};

use crate::serve::Server;
use store::Store;

/// The default integration user's username (a simulator value, not a secret).
pub const DEFAULT_USERNAME: &str = "integration@example.org";
/// The default integration user's password.
pub const DEFAULT_PASSWORD: &str = "Passw0rd!";
/// The default integration user's security token, appended to the password in password logins.
pub const DEFAULT_SECURITY_TOKEN: &str = "TOKEN123";
/// The default connected app's consumer key.
pub const DEFAULT_CLIENT_ID: &str = "hlsync-client";
/// The default connected app's consumer secret.
pub const DEFAULT_CLIENT_SECRET: &str = "hlsync-secret";
/// Salesforce's default daily API request allotment for the simulated org.
pub const DEFAULT_DAILY_API_MAX: u64 = 100_000;
/// Failed logins after which Salesforce's default password policy locks a user.
pub const MAX_FAILED_LOGINS: u32 = 3;
/// The organization Id every simulated session belongs to.
pub const ORG_ID: &str = "00DSm0000000001AAA";

/// A user who can log in.
#[derive(Clone, Debug)]
pub struct SimUser {
    pub username: String,
    pub password: String,
    pub security_token: String,
}

impl SimUser {
    pub fn new(username: &str, password: &str, security_token: &str) -> Self {
        Self {
            username: username.to_owned(),
            password: password.to_owned(),
            security_token: security_token.to_owned(),
        }
    }
}

/// The connected app clients authenticate as. `run_as` is the user a client-credentials login
/// acts as (Salesforce's "Run As" setting); it defaults to the first user.
#[derive(Clone, Debug)]
pub struct ConnectedApp {
    pub client_id: String,
    pub client_secret: String,
    pub run_as: Option<String>,
}

impl Default for ConnectedApp {
    fn default() -> Self {
        Self {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            run_as: None,
        }
    }
}

/// Faults the simulator injects into `/services/data` calls. Random ones are drawn from a
/// generator seeded with `SimOptions::seed`, so the same calls in the same order fail the same way.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultPlan {
    /// Probability (0..=1) that a call answers 503 SERVER_UNAVAILABLE.
    pub p_503: f64,
    /// Probability (0..=1) that a call answers 500 UNKNOWN_EXCEPTION.
    pub p_500: f64,
    /// Probability (0..=1) that a call is answered only after `slow`.
    pub p_slow: f64,
    pub slow: Duration,
    /// The next N data calls answer 503 whatever the probabilities, then the API recovers.
    pub fail_next_503: u32,
    /// A query or queryAll matching more than this many rows answers 400 QUERY_TIMEOUT.
    pub query_timeout_over_rows: Option<usize>,
}

/// How to start a [`SalesforceSim`].
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Port on 127.0.0.1; 0 picks a free one (what tests want).
    pub port: u16,
    /// API versions served, such as "62.0"; others answer 404 NOT_FOUND.
    pub api_versions: Vec<String>,
    pub daily_api_max: u64,
    pub users: Vec<SimUser>,
    pub connected_app: ConnectedApp,
    /// PEM public key (SPKI "PUBLIC KEY" or PKCS#1 "RSA PUBLIC KEY") of the connected app's
    /// certificate. With it, JWT bearer assertions must carry a valid RS256 signature; without
    /// it the signature is not checked (the claims still are).
    pub jwt_public_key_pem: Option<String>,
    pub seed: u64,
    pub faults: FaultPlan,
    /// Contact's custom fields; `default_contact_custom_fields()` unless replaced.
    pub contact_custom_fields: Vec<FieldSpec>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            port: 0,
            api_versions: ["58.0", "59.0", "60.0", "61.0", "62.0", "63.0", "64.0"]
                .iter()
                .map(|v| (*v).to_owned())
                .collect(),
            daily_api_max: DEFAULT_DAILY_API_MAX,
            users: vec![SimUser::new(
                DEFAULT_USERNAME,
                DEFAULT_PASSWORD,
                DEFAULT_SECURITY_TOKEN,
            )],
            connected_app: ConnectedApp::default(),
            jwt_public_key_pem: None,
            seed: 0,
            faults: FaultPlan::default(),
            contact_custom_fields: default_contact_custom_fields(),
        }
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(
        "the Salesforce simulator could not listen on {addr}: {source}; choose another port, or 0 for any free port"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid Salesforce simulator option: {0}")]
    InvalidOption(String),
    #[error(
        "the JWT public key is not a PEM RSA public key ({0}); pass the connected app certificate's public key in PEM form"
    )]
    InvalidPublicKey(String),
}

/// What the simulator has served since start (or the last `reset_counters`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Every request received, by endpoint name ("query", "queryAll", "query_more", "describe",
    /// "describe_global", "sobject", "composite_retrieve", "composite_update", "composite",
    /// "limits", "resources", "versions", "oauth_token", "soap_login", "unknown"), whatever the
    /// answer. A composite request counts once, under "composite", whatever it holds.
    pub calls_by_endpoint: BTreeMap<String, u64>,
    /// Subrequests run inside composite requests, by the endpoint name of their url (the names
    /// of `calls_by_endpoint`). They are not API calls: a composite request is one call.
    pub subrequests_by_endpoint: BTreeMap<String, u64>,
    /// Data calls counted toward the org's daily usage (authenticated and under the limit).
    pub api_calls: u64,
    pub failed_logins: u64,
    pub successful_logins: u64,
    /// Users locked out by failed logins, by username.
    pub locked_users: BTreeSet<String>,
    /// 500/503 answers injected by the fault plan (scripted or random), and QUERY_TIMEOUTs.
    pub faults_served: u64,
}

impl Counters {
    /// Subrequests run inside composite requests, all endpoints together.
    pub fn subrequests(&self) -> u64 {
        self.subrequests_by_endpoint.values().sum()
    }
}

struct UserState {
    spec: SimUser,
    id: String,
    failed_logins: u32,
    locked: bool,
}

/// A query's results, kept for `nextRecordsUrl` the way Salesforce keeps a query locator.
struct Cursor {
    owner: String,
    records: Arc<Vec<Value>>,
    batch_size: usize,
    last_used: DateTime<Utc>,
}

struct State {
    store: Store,
    users: Vec<UserState>,
    /// access token -> user Id.
    sessions: HashMap<String, String>,
    usage: u64,
    daily_api_max: u64,
    counters: Counters,
    faults: FaultPlan,
    rng: StdRng,
    cursors: HashMap<String, Cursor>,
    /// Open cursors per user, oldest first (Salesforce keeps at most 10).
    cursor_order: VecDeque<String>,
    next_token: u64,
    next_cursor: u64,
}

struct Shared {
    base_url: String,
    api_versions: Vec<String>,
    connected_app: ConnectedApp,
    jwt_key: Option<rsa::RsaPublicKey>,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Handlers never leave the state half-written across an await, so a poisoned lock (a
        // panicking test hook) is still consistent enough to serve.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running Salesforce simulator. Stops when dropped (or on `shutdown`).
pub struct SalesforceSim {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Server,
}

impl std::fmt::Debug for SalesforceSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesforceSim")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn check_probability(name: &str, p: f64) -> Result<(), SimError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(SimError::InvalidOption(format!(
            "faults.{name} must be between 0 and 1, got {p}"
        )))
    }
}

fn check_faults(faults: &FaultPlan) -> Result<(), SimError> {
    check_probability("p_503", faults.p_503)?;
    check_probability("p_500", faults.p_500)?;
    check_probability("p_slow", faults.p_slow)?;
    if faults.p_503 + faults.p_500 > 1.0 {
        return Err(SimError::InvalidOption(
            "faults.p_503 + faults.p_500 must not exceed 1".to_owned(),
        ));
    }
    Ok(())
}

impl SalesforceSim {
    /// Binds 127.0.0.1:`opts.port` and serves until dropped. Returns once the socket listens,
    /// so a client may call `base_url()` at once.
    pub async fn start(opts: SimOptions) -> Result<Self, SimError> {
        check_faults(&opts.faults)?;
        if opts.api_versions.is_empty() {
            return Err(SimError::InvalidOption(
                "api_versions must name at least one version, such as \"62.0\"".to_owned(),
            ));
        }
        if opts.users.is_empty() {
            return Err(SimError::InvalidOption(
                "users must hold at least one user (the integration user)".to_owned(),
            ));
        }
        let jwt_key = opts
            .jwt_public_key_pem
            .as_deref()
            .map(auth::parse_public_key)
            .transpose()?;

        let (listener, addr) = crate::serve::bind(opts.port)
            .await
            .map_err(|(addr, source)| SimError::Bind { addr, source })?;

        let users = opts
            .users
            .into_iter()
            .enumerate()
            .map(|(i, spec)| UserState {
                spec,
                id: ids::make_id("005", store::STORE_INSTANCE, i as u64 + 1),
                failed_logins: 0,
                locked: false,
            })
            .collect();
        let shared = Arc::new(Shared {
            base_url: format!("http://{addr}"),
            api_versions: opts.api_versions,
            connected_app: opts.connected_app,
            jwt_key,
            state: Mutex::new(State {
                store: Store::new(opts.contact_custom_fields),
                users,
                sessions: HashMap::new(),
                usage: 0,
                daily_api_max: opts.daily_api_max,
                counters: Counters::default(),
                rng: StdRng::seed_from_u64(opts.seed),
                faults: opts.faults,
                cursors: HashMap::new(),
                cursor_order: VecDeque::new(),
                next_token: 1,
                next_cursor: 1,
            }),
        });

        let router = server::router(Arc::clone(&shared));
        Ok(Self {
            addr,
            shared,
            server: Server::spawn(listener, router, "Salesforce simulator"),
        })
    }

    /// `http://127.0.0.1:PORT`: both the login URL and the instance URL.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting calls and waits for the server task to end.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }

    // ---- store hooks ----

    /// Inserts a record stamped with the simulator's clock; returns its 18-character Id.
    /// Field names are matched case-insensitively. IsDeleted and the audit dates are the
    /// store's own; formula values may be given (the store holds what a formula evaluates to).
    /// A well-formed unused `Id` is kept. Fields not (yet) in describe are stored but invisible
    /// to queries until `add_field` names them. Panics on an unknown object or a duplicate Id,
    /// which are mistakes in the calling test.
    pub fn insert(&self, object: &str, fields: Map<String, Value>) -> String {
        let mut state = self.shared.lock();
        let now = state.store.now();
        match state.store.insert_at(object, fields, now, false) {
            Ok(id) => id,
            Err(e) => panic!(
                "SalesforceSim::insert({object}): {}: {}",
                e.status_code, e.message
            ),
        }
    }

    /// Inserts a record whose CreatedDate, LastModifiedDate and SystemModstamp are `at`: a
    /// transaction that committed late shows a modstamp older than records already read.
    pub fn insert_with_modstamp(
        &self,
        object: &str,
        fields: Map<String, Value>,
        at: DateTime<Utc>,
    ) -> String {
        let mut state = self.shared.lock();
        match state.store.insert_at(object, fields, at, false) {
            Ok(id) => id,
            Err(e) => panic!(
                "SalesforceSim::insert_with_modstamp({object}): {}: {}",
                e.status_code, e.message
            ),
        }
    }

    /// Updates a live record as a user would and bumps its modstamps. Formula (calculated)
    /// fields may be set too, which is how a test changes one: Salesforce recomputes formulas
    /// without moving SystemModstamp, so an update of formula fields alone does not move it.
    /// Returns false when the record is missing or deleted or a field is unknown or mistyped.
    pub fn update(&self, object: &str, id: &str, fields: Map<String, Value>) -> bool {
        self.shared
            .lock()
            .store
            .update(object, id, fields, false)
            .is_ok()
    }

    /// Soft delete: IsDeleted = true, the record moves to the recycle bin (queryAll still sees it).
    pub fn delete(&self, object: &str, id: &str) -> bool {
        self.shared.lock().store.set_deleted(object, id, true)
    }

    pub fn undelete(&self, object: &str, id: &str) -> bool {
        self.shared.lock().store.set_deleted(object, id, false)
    }

    /// Sets SystemModstamp alone, as a late commit or a back-dated system change shows it.
    pub fn set_modstamp(&self, object: &str, id: &str, at: DateTime<Utc>) -> bool {
        self.shared.lock().store.set_modstamp(object, id, at)
    }

    /// The record (deleted or not), with every field.
    pub fn get(&self, object: &str, id: &str) -> Option<Map<String, Value>> {
        self.shared.lock().store.get(object, id).cloned()
    }

    /// Every record of `object`, deleted ones included, in Id order.
    pub fn all(&self, object: &str) -> Vec<Map<String, Value>> {
        let state = self.shared.lock();
        state
            .store
            .object(object)
            .map(|o| o.records.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The simulator's clock (whole seconds, as Salesforce stores date-times).
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.lock().store.now()
    }

    /// Freezes the clock at `at`; from then on it moves only by `advance`.
    pub fn set_now(&self, at: DateTime<Utc>) {
        self.shared.lock().store.set_now(at);
    }

    pub fn advance(&self, by: Duration) {
        let by = TimeDelta::from_std(by).unwrap_or(TimeDelta::MAX);
        self.shared.lock().store.advance(by);
    }

    /// Adds (or replaces) a field in `object`'s describe; existing records read it as null
    /// (false for a checkbox). Returns false for an unknown object.
    pub fn add_field(&self, object: &str, spec: FieldSpec) -> bool {
        self.shared.lock().store.add_field(object, spec)
    }

    pub fn remove_field(&self, object: &str, name: &str) -> bool {
        self.shared.lock().store.remove_field(object, name)
    }

    /// Adds an active record type to `object`; returns its Id (a RecordType record).
    pub fn add_record_type(&self, object: &str, name: &str, developer_name: &str) -> String {
        let mut fields = Map::new();
        fields.insert("Name".to_owned(), Value::from(name));
        fields.insert("DeveloperName".to_owned(), Value::from(developer_name));
        fields.insert("SobjectType".to_owned(), Value::from(object));
        fields.insert("IsActive".to_owned(), Value::Bool(true));
        self.insert("RecordType", fields)
    }

    /// Invalidates every access token and session: the next data call answers 401 INVALID_SESSION_ID.
    pub fn expire_sessions(&self) {
        self.shared.lock().sessions.clear();
    }

    /// Sets the org's used API requests in the current 24 hours.
    pub fn set_api_usage(&self, used: u64) {
        self.shared.lock().usage = used;
    }

    pub fn api_usage(&self) -> u64 {
        self.shared.lock().usage
    }

    pub fn set_daily_api_max(&self, max: u64) {
        self.shared.lock().daily_api_max = max;
    }

    pub fn counters(&self) -> Counters {
        self.shared.lock().counters.clone()
    }

    /// Zeroes the counters (locked users stay locked; `unlock_user` frees them).
    pub fn reset_counters(&self) {
        let mut state = self.shared.lock();
        let locked = std::mem::take(&mut state.counters.locked_users);
        state.counters = Counters {
            locked_users: locked,
            ..Counters::default()
        };
    }

    /// An administrator unlocks the user (and clears their failed-login count).
    pub fn unlock_user(&self, username: &str) {
        let mut state = self.shared.lock();
        for user in state
            .users
            .iter_mut()
            .filter(|u| u.spec.username == username)
        {
            user.locked = false;
            user.failed_logins = 0;
        }
        state.counters.locked_users.remove(username);
    }

    /// Replaces the fault plan; the random stream continues (it is not reseeded).
    pub fn faults(&self, plan: FaultPlan) -> Result<(), SimError> {
        check_faults(&plan)?;
        self.shared.lock().faults = plan;
        Ok(())
    }

    /// The next `n` data calls answer 503 (added to any already scripted).
    pub fn fail_next_calls(&self, n: u32) {
        let mut state = self.shared.lock();
        state.faults.fail_next_503 = state.faults.fail_next_503.saturating_add(n);
    }

    /// Loads a generated dataset (record types, accounts, contacts, campaigns, members) with
    /// its own Ids and modstamps.
    pub fn load(&self, dataset: &Dataset) {
        let mut state = self.shared.lock();
        let now = state.store.now();
        for (object, records) in dataset.objects() {
            for record in records {
                if let Err(e) = state.store.insert_at(object, record.clone(), now, true) {
                    tracing::warn!(object, code = e.status_code, message = %e.message, "dataset record not loaded");
                }
            }
        }
    }
}
