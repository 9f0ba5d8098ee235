//! The client: one place where every Salesforce call is made, so that the allotment guard, limit
//! accounting, session refresh and retries apply to all of them alike.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use hlsync_core::allotment::{self, ApiUsage};
use hlsync_core::config::{SalesforceConfig, check_url};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use crate::auth::{self, Attempt, JwtKey, Session};
use crate::credentials::{AuthFlow, SalesforceCredentials};
use crate::describe::check_api_name;
use crate::error::SfError;
use hlsync_core::schema::Describe;

/// Salesforce answers 414 to request URLs past about 16 KB: hlsync never builds one.
pub const MAX_URL_BYTES: usize = 16_000;

/// How hard to retry transient failures (5xx, connection errors, timeouts). 4xx are never retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Tries in all, the first included (at least 1).
    pub attempts: u32,
    /// The delay before the second try; it doubles for each try after, with jitter.
    pub base_delay: Duration,
    /// The longest delay between two tries, jitter included.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The pause before try number `next_attempt` (2 for the first retry). Jittered between half
    /// and all of the exponential delay, so that concurrent Lambdas do not retry in step.
    pub fn delay(&self, next_attempt: u32) -> Duration {
        let retry = next_attempt.saturating_sub(2).min(30) as usize;
        self.backoff()
            .with_jitter()
            .build()
            .nth(retry)
            .unwrap_or(self.max_delay)
    }

    /// backon's exponential schedule at half the policy's delays: its jitter adds up to as much
    /// again, so each pause falls between half and all of `base_delay * 2^n`, capped at
    /// `max_delay`.
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_min_delay(self.base_delay.min(self.max_delay) / 2)
            .with_max_delay(self.max_delay / 2)
            .with_factor(2.0)
            .without_max_times()
    }
}

/// Tuning that is not part of the product config (tests shorten the delays).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Retries of transient failures, logins included.
    pub retry: RetryPolicy,
    /// The whole of one request, answer included.
    pub request_timeout: Duration,
    /// Opening the connection alone.
    pub connect_timeout: Duration,
    /// `Sforce-Query-Options: batchSize` for queries that do not set their own (200..=2000;
    /// `None`: Salesforce's default of 2000).
    pub query_batch_size: Option<u32>,
    /// Once usage was seen at the ceiling, how long before the guard asks `limits` again
    /// whether it has fallen (the 24-hour window rolls on), rather than refusing for good.
    pub guard_recheck_after: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_mins(2),
            connect_timeout: Duration::from_secs(10),
            query_batch_size: None,
            guard_recheck_after: Duration::from_mins(5),
        }
    }
}

/// Whether the client holds a session, for `hlsync status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginState {
    /// No login yet: the first call will log in.
    NotLoggedIn,
    /// A session is held.
    LoggedIn {
        /// Where the org's API lives, as the login answered.
        instance_url: String,
    },
    /// Salesforce rejected the credentials; this client will not try again.
    Rejected {
        /// Who tried to log in (the connected app for client credentials).
        username: String,
        /// Salesforce's reason.
        reason: String,
    },
}

/// A Salesforce REST client for one org. Cheap to clone: clones share the session, the describe
/// cache and the counters.
#[derive(Clone)]
pub struct SalesforceClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    http: reqwest::Client,
    creds: SalesforceCredentials,
    jwt_key: Option<JwtKey>,
    login_url: String,
    api_version: String,
    cfg: SalesforceConfig,
    allow_insecure_http: bool,
    pub(crate) options: ClientOptions,
    auth: Mutex<AuthState>,
    observed: StdMutex<Observed>,
    calls: AtomicU64,
    login_calls: AtomicU64,
    describes: Mutex<HashMap<String, Arc<Describe>>>,
}

#[derive(Default)]
struct AuthState {
    session: Option<Arc<Session>>,
    rejected: Option<String>,
    generation: u64,
}

#[derive(Default, Clone, Copy)]
struct Observed {
    usage: Option<ApiUsage>,
    /// When `usage` was read (this process's clock).
    usage_seen: Option<std::time::Instant>,
    server_time: Option<DateTime<Utc>>,
}

impl fmt::Debug for SalesforceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SalesforceClient")
            .field("login_url", &self.inner.login_url)
            .field("auth", &self.inner.creds.auth)
            .field("user", &self.inner.creds.principal())
            .field("api_version", &self.inner.api_version)
            .field("calls_made", &self.calls_made())
            .finish_non_exhaustive()
    }
}

/// One REST call, described independently of the session it will run under.
pub(crate) struct Call {
    /// For messages and logs, e.g. "query" or "describe Contact".
    pub what: String,
    pub method: Method,
    /// From `/services/...` on (the instance URL is prepended at send time).
    pub path: String,
    pub body: Option<Value>,
    pub query_batch_size: Option<u32>,
    /// Checked by the allotment guard (all calls but the guard's own `limits` re-check).
    pub guarded: bool,
}

impl SalesforceClient {
    /// A client for the org of `creds`. Checks the secret and the login URL now, so that a bad
    /// secret fails at start-up instead of as a (lockout-counting) failed login. Does not call
    /// Salesforce: the first API call logs in.
    pub fn new(
        cfg: &SalesforceConfig,
        creds: SalesforceCredentials,
        allow_insecure_http: bool,
    ) -> Result<Self, SfError> {
        Self::with_options(cfg, creds, allow_insecure_http, ClientOptions::default())
    }

    /// [`new`](Self::new) with tuning that is not part of the product config (tests shorten the
    /// retry delays).
    pub fn with_options(
        cfg: &SalesforceConfig,
        creds: SalesforceCredentials,
        allow_insecure_http: bool,
        options: ClientOptions,
    ) -> Result<Self, SfError> {
        creds.validate()?;
        let login_url = creds.login_url.trim().trim_end_matches('/').to_string();
        check_url(
            &login_url,
            allow_insecure_http,
            "salesforce.login_url (in the secret)",
        )?;
        let jwt_key = match (creds.auth, &creds.private_key_pem) {
            (AuthFlow::JwtBearer, Some(pem)) => Some(JwtKey::parse(pem)?),
            _ => None,
        };
        let http = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .connect_timeout(options.connect_timeout)
            // A redirect could lead to plain http or another host; Salesforce's API does not redirect.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hlsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SfError::Decode {
                what: "building the HTTP client".to_string(),
                detail: e.to_string(),
            })?;
        Ok(SalesforceClient {
            inner: Arc::new(Inner {
                http,
                jwt_key,
                login_url,
                api_version: cfg.api_version.clone(),
                cfg: cfg.clone(),
                allow_insecure_http,
                options,
                creds,
                auth: Mutex::new(AuthState::default()),
                observed: StdMutex::new(Observed::default()),
                calls: AtomicU64::new(0),
                login_calls: AtomicU64::new(0),
                describes: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// API calls this client sent (retries and re-sent calls included; logins excluded, as
    /// Salesforce does not count them against the allotment).
    pub fn calls_made(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }

    /// Login requests this client sent.
    pub fn logins_made(&self) -> u64 {
        self.inner.login_calls.load(Ordering::Relaxed)
    }

    /// The org's API usage as its last response reported it (`Sforce-Limit-Info`).
    pub fn usage(&self) -> Option<ApiUsage> {
        self.observed().usage
    }

    /// Salesforce's clock: the `Date` header of the last response.
    pub fn server_time(&self) -> Option<DateTime<Utc>> {
        self.observed().server_time
    }

    /// hlsync's ceiling for the org's usage, given what the org reported (the configured
    /// allotment alone while nothing is known).
    pub fn ceiling(&self) -> u64 {
        allotment::ceiling(&self.inner.cfg, self.usage().map(|u| u.max))
    }

    /// The REST API version every path uses (`salesforce.api_version`, e.g. `62.0`).
    pub fn api_version(&self) -> &str {
        &self.inner.api_version
    }

    /// Whether the client holds a session, or was refused one (makes no call).
    pub async fn login_state(&self) -> LoginState {
        let auth = self.inner.auth.lock().await;
        if let Some(reason) = &auth.rejected {
            return LoginState::Rejected {
                username: self.inner.creds.principal(),
                reason: reason.clone(),
            };
        }
        match &auth.session {
            Some(s) => LoginState::LoggedIn {
                instance_url: s.instance_url.clone(),
            },
            None => LoginState::NotLoggedIn,
        }
    }

    /// Logs in now unless a session is held (for `hlsync check`; every call logs in by itself).
    pub async fn login(&self) -> Result<(), SfError> {
        self.session().await.map(|_| ())
    }

    /// Refuses to start a job of `planned_calls` calls that would take usage past the ceiling.
    /// Costs one call (`limits`) when no usage is known yet.
    pub async fn ensure_budget(&self, planned_calls: u64) -> Result<ApiUsage, SfError> {
        let usage = match self.usage() {
            Some(u) => u,
            None => self.limits().await?,
        };
        let ceiling = allotment::ceiling(&self.inner.cfg, Some(usage.max));
        if !allotment::allows(usage, &self.inner.cfg, planned_calls) {
            warn!(
                used = usage.used,
                planned = planned_calls,
                ceiling,
                "refusing a Salesforce job that would pass the API allotment ceiling"
            );
            return Err(SfError::BudgetExhausted {
                used: usage.used,
                planned: planned_calls,
                ceiling,
            });
        }
        Ok(usage)
    }

    /// `GET limits`: the org's daily API usage (`DailyApiRequests`).
    pub async fn limits(&self) -> Result<ApiUsage, SfError> {
        self.limits_call(true).await
    }

    /// The guard's own re-check: not refused by the guard it serves.
    async fn limits_unguarded(&self) -> Result<ApiUsage, SfError> {
        Box::pin(self.limits_call(false)).await
    }

    async fn limits_call(&self, guarded: bool) -> Result<ApiUsage, SfError> {
        let body = self
            .send(Call {
                what: "limits".to_string(),
                method: Method::GET,
                path: self.data_path("limits"),
                body: None,
                query_batch_size: None,
                guarded,
            })
            .await?;
        let daily = body.get("DailyApiRequests");
        let field = |name: &str| daily.and_then(|d| d.get(name)).and_then(Value::as_u64);
        let (Some(max), Some(remaining)) = (field("Max"), field("Remaining")) else {
            return Err(SfError::Decode {
                what: "limits".to_string(),
                detail: "no DailyApiRequests.Max and .Remaining".to_string(),
            });
        };
        let usage = ApiUsage {
            used: max.saturating_sub(remaining),
            max,
        };
        self.observed_mut(|o| {
            o.usage = Some(usage);
            o.usage_seen = Some(std::time::Instant::now());
        });
        Ok(usage)
    }

    /// `sobjects/{object}/describe`, from the cache unless `refresh` (or not cached yet). Cached
    /// per client (clones share it): a refresh picks up new HL_ fields without a redeploy.
    pub async fn describe(&self, object: &str, refresh: bool) -> Result<Arc<Describe>, SfError> {
        check_api_name(object)?;
        let key = object.to_ascii_lowercase();
        if !refresh && let Some(d) = self.inner.describes.lock().await.get(&key) {
            return Ok(d.clone());
        }
        let what = format!("describe {object}");
        let answer = self
            .send(Call {
                what: what.clone(),
                method: Method::GET,
                path: self.data_path(&format!("sobjects/{object}/describe")),
                body: None,
                query_batch_size: None,
                guarded: true,
            })
            .await?;
        let describe: Describe = serde_json::from_value(answer).map_err(|e| SfError::Decode {
            what: what.clone(),
            detail: e.to_string(),
        })?;
        let describe = Arc::new(describe);
        debug!(
            object,
            fields = describe.fields.len(),
            record_types = describe.record_types.len(),
            "described"
        );
        self.inner
            .describes
            .lock()
            .await
            .insert(key, describe.clone());
        Ok(describe)
    }

    /// `/services/data/vXX.X/{rest}`.
    pub(crate) fn data_path(&self, rest: &str) -> String {
        format!("/services/data/v{}/{rest}", self.inner.api_version)
    }

    fn observed(&self) -> Observed {
        match self.inner.observed.lock() {
            Ok(g) => *g,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    fn observed_mut(&self, f: impl FnOnce(&mut Observed)) {
        match self.inner.observed.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Reads the headers every Salesforce response carries: usage and the server clock.
    fn observe(&self, headers: &HeaderMap) {
        let usage = headers
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok())
            .and_then(allotment::parse_limit_info);
        let date = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
            .map(|d| d.with_timezone(&Utc));
        self.observed_mut(|o| {
            if usage.is_some() {
                o.usage = usage;
                o.usage_seen = Some(std::time::Instant::now());
            }
            if date.is_some() {
                o.server_time = date;
            }
        });
    }

    /// The allotment guard, checked before every API call. Once it has refused, a warm function
    /// would otherwise refuse for good (no call, so no newer usage); so when the usage it holds
    /// is older than `guard_recheck_after`, it asks `limits` once (that one call spent to learn
    /// whether the 24-hour usage has fallen) and judges again.
    async fn guard(&self) -> Result<(), SfError> {
        if self.refusal().is_none() {
            return Ok(());
        }
        let stale = self
            .observed()
            .usage_seen
            .is_none_or(|at| at.elapsed() >= self.inner.options.guard_recheck_after);
        if stale {
            info!(
                "usage was at hlsync's ceiling a while ago: asking Salesforce whether it has fallen"
            );
            self.limits_unguarded().await?;
        }
        match self.refusal() {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// The guard's refusal of one more call, from the usage held now.
    fn refusal(&self) -> Option<SfError> {
        if let Some(usage) = self.usage() {
            // Room for this one call: usage stays below the ceiling (SPEC §5).
            if !allotment::allows(usage, &self.inner.cfg, 1) {
                let ceiling = allotment::ceiling(&self.inner.cfg, Some(usage.max));
                warn!(
                    used = usage.used,
                    max = usage.max,
                    ceiling,
                    "Salesforce API usage reached hlsync's ceiling: not calling"
                );
                return Some(SfError::AllotmentGuard {
                    used: usage.used,
                    ceiling,
                });
            }
        }
        None
    }

    async fn session(&self) -> Result<Arc<Session>, SfError> {
        let mut auth = self.inner.auth.lock().await;
        if let Some(s) = &auth.session {
            return Ok(s.clone());
        }
        self.login_locked(&mut auth).await
    }

    /// Replaces the session that answered 401, unless a concurrent call already did.
    async fn relogin(&self, stale: &Session) -> Result<Arc<Session>, SfError> {
        let mut auth = self.inner.auth.lock().await;
        if let Some(s) = &auth.session
            && s.generation != stale.generation
        {
            return Ok(s.clone());
        }
        auth.session = None;
        self.login_locked(&mut auth).await
    }

    /// Logs in, holding the auth lock so that concurrent callers share one login.
    async fn login_locked(&self, auth: &mut AuthState) -> Result<Arc<Session>, SfError> {
        let username = self.inner.creds.principal();
        if let Some(reason) = &auth.rejected {
            return Err(SfError::LoginRejected {
                username,
                reason: reason.clone(),
            });
        }
        let policy = self.inner.options.retry;
        let flow = self.inner.creds.auth.as_str();
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.inner.login_calls.fetch_add(1, Ordering::Relaxed);
            debug!(flow, user = %username, attempt, "logging in to Salesforce");
            let outcome = auth::login(
                &self.inner.http,
                &self.inner.creds,
                &self.inner.login_url,
                &self.inner.api_version,
                self.inner.jwt_key.as_ref(),
            )
            .await;
            let transient = match outcome {
                Attempt::Done {
                    token,
                    instance_url,
                } => {
                    check_url(
                        &instance_url,
                        self.inner.allow_insecure_http,
                        "the instance_url Salesforce returned at login",
                    )?;
                    auth.generation += 1;
                    let session = Arc::new(Session {
                        token,
                        instance_url,
                        generation: auth.generation,
                    });
                    info!(flow, user = %username, instance_url = %session.instance_url, "logged in to Salesforce");
                    auth.session = Some(session.clone());
                    return Ok(session);
                }
                Attempt::Rejected(reason) => {
                    warn!(flow, user = %username, %reason, "Salesforce rejected the login; not retrying until the secret changes");
                    auth.rejected = Some(reason.clone());
                    return Err(SfError::LoginRejected { username, reason });
                }
                Attempt::Invalid(detail) => {
                    return Err(SfError::Decode {
                        what: "login".to_string(),
                        detail,
                    });
                }
                Attempt::Transient(detail) => detail,
                // The request may have reached Salesforce and counted as a failed login: never
                // resent blindly. The caller's next attempt goes through the credentials' gate.
                Attempt::Transport(e) => {
                    return Err(SfError::LoginUnavailable {
                        url: self.inner.login_url.clone(),
                        detail: format!(
                            "{} (not retried: the request may have reached Salesforce)",
                            e.without_url()
                        ),
                    });
                }
            };
            if attempt >= policy.attempts.max(1) {
                return Err(SfError::LoginUnavailable {
                    url: self.inner.login_url.clone(),
                    detail: transient,
                });
            }
            warn!(flow, attempt, detail = %transient, "Salesforce login failed for a passing reason; retrying");
            tokio::time::sleep(policy.delay(attempt + 1)).await;
        }
    }

    /// Sends one API call: allotment guard, session (one re-login on 401), limit accounting on
    /// every response, bounded retries with backoff on transient failures. Returns the JSON answer
    /// (`Null` for an empty body).
    pub(crate) async fn send(&self, call: Call) -> Result<Value, SfError> {
        self.send_in_session(call).await.map(|(answer, _)| answer)
    }

    /// `send`, also returning the session the answer came under: a composite subrequest can
    /// answer 401 inside a 200, and its caller then replaces that session (`renew_session`).
    ///
    /// Each attempt: the allotment guard, the request under the session in hand, the answer
    /// (a failure in transit waits and tries again, up to the policy's attempts), then either
    /// the JSON of a success or what its error status calls for (`after_error`).
    pub(crate) async fn send_in_session(
        &self,
        call: Call,
    ) -> Result<(Value, Arc<Session>), SfError> {
        let policy = self.inner.options.retry;
        let max_attempts = policy.attempts.max(1);
        let mut attempt = 0;
        let mut relogged = false;
        if call.guarded {
            self.guard().await?;
        }
        let mut session = self.session().await?;
        loop {
            attempt += 1;
            if call.guarded {
                self.guard().await?;
            }
            let request = self.request(&call, &session)?;
            self.inner.calls.fetch_add(1, Ordering::Relaxed);
            let path_only = call.path.split('?').next().unwrap_or_default();
            debug!(what = %call.what, method = %call.method, path = %path_only, attempt, "calling Salesforce");
            let (status, text) = match self.exchange(request).await {
                Ok(answer) => answer,
                Err(e) => {
                    self.pause_or_fail_transport(&call, attempt, max_attempts, e)
                        .await?;
                    continue;
                }
            };
            debug!(what = %call.what, status = status.as_u16(), usage = ?self.usage(), "Salesforce answered");
            if status.is_success() {
                return Ok((json_answer(&call, &text)?, session));
            }
            match after_error(&call, status, &text, attempt, max_attempts, relogged)? {
                AfterError::Relogin => {
                    // The fresh session's try does not count against the attempts.
                    relogged = true;
                    attempt -= 1;
                    session = self.relogin(&session).await?;
                }
                AfterError::Retry => tokio::time::sleep(policy.delay(attempt + 1)).await,
            }
        }
    }

    /// The HTTP request of `call` under `session`: the URL (refused before sending when it is
    /// longer than Salesforce takes), the bearer token (marked sensitive, so that no log or
    /// `Debug` prints it), and the call's batch size header and JSON body.
    fn request(&self, call: &Call, session: &Session) -> Result<RequestBuilder, SfError> {
        let url = format!("{}{}", session.instance_url, call.path);
        if url.len() > MAX_URL_BYTES {
            return Err(SfError::QueryTooLong {
                bytes: url.len(),
                limit: MAX_URL_BYTES,
            });
        }
        let mut bearer =
            HeaderValue::from_str(&format!("Bearer {}", session.token.expose_secret())).map_err(
                |_| SfError::Decode {
                    what: "login".to_string(),
                    detail: "the access token is not a valid header value".to_string(),
                },
            )?;
        bearer.set_sensitive(true);
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), &url)
            .header(AUTHORIZATION, bearer)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(n) = call.query_batch_size {
            request = request.header("Sforce-Query-Options", format!("batchSize={n}"));
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        Ok(request)
    }

    /// Sends `request` and reads the whole answer, noting the org's API usage from its headers
    /// first. An error, in sending or in reading, is a failure in transit.
    async fn exchange(
        &self,
        request: RequestBuilder,
    ) -> Result<(StatusCode, String), reqwest::Error> {
        let response = request.send().await?;
        self.observe(response.headers());
        let status = response.status();
        let text = response.text().await?;
        Ok((status, text))
    }

    /// Logs in again after `stale` was refused, unless a concurrent call already did.
    pub(crate) async fn renew_session(&self, stale: &Session) -> Result<(), SfError> {
        self.relogin(stale).await.map(|_| ())
    }

    async fn pause_or_fail_transport(
        &self,
        call: &Call,
        attempt: u32,
        max_attempts: u32,
        error: reqwest::Error,
    ) -> Result<(), SfError> {
        if error.is_builder() || attempt >= max_attempts {
            return Err(SfError::Transport {
                what: call.what.clone(),
                attempts: attempt,
                source: error.without_url(),
            });
        }
        warn!(what = %call.what, attempt, error = %error.without_url(), "Salesforce call failed in transit; retrying");
        tokio::time::sleep(self.inner.options.retry.delay(attempt + 1)).await;
        Ok(())
    }
}

/// What `send_in_session` does after an error status that does not end the call.
enum AfterError {
    /// Log in again and repeat the call under the fresh session.
    Relogin,
    /// Wait, then try again.
    Retry,
}

/// The JSON of a success answer; an empty body is `Null`.
fn json_answer(call: &Call, text: &str) -> Result<Value, SfError> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text).map_err(|e| SfError::Decode {
        what: call.what.clone(),
        detail: format!("not JSON: {e}"),
    })
}

/// What an error answer to try `attempt` calls for: a first 401 a fresh login, a 5xx another
/// try while tries are left; anything else is the error returned.
fn after_error(
    call: &Call,
    status: StatusCode,
    text: &str,
    attempt: u32,
    max_attempts: u32,
    relogged: bool,
) -> Result<AfterError, SfError> {
    let (code, message) = error_of(text);
    match status {
        StatusCode::UNAUTHORIZED if !relogged => {
            // INVALID_SESSION_ID: the session expired or was revoked. One fresh login, then the
            // same call once more; a second 401 is not a session problem.
            info!(what = %call.what, %code, "Salesforce session expired; logging in again");
            Ok(AfterError::Relogin)
        }
        StatusCode::UNAUTHORIZED => Err(SfError::SessionRejected { code, message }),
        StatusCode::FORBIDDEN if code == "REQUEST_LIMIT_EXCEEDED" => {
            warn!(what = %call.what, %message, "Salesforce: API request limit exceeded; stopping");
            Err(SfError::LimitExceeded { message })
        }
        StatusCode::BAD_REQUEST if code == "QUERY_TIMEOUT" => {
            Err(SfError::QueryTimeout { message })
        }
        s if s.is_server_error() => {
            if attempt >= max_attempts {
                return Err(SfError::Unavailable {
                    what: call.what.clone(),
                    status: s.as_u16(),
                    code,
                    message,
                    attempts: attempt,
                });
            }
            warn!(what = %call.what, status = s.as_u16(), %code, attempt, "Salesforce server error; retrying");
            Ok(AfterError::Retry)
        }
        s => Err(SfError::Api {
            what: call.what.clone(),
            status: s.as_u16(),
            code,
            message,
        }),
    }
}

/// The `errorCode` and `message` of Salesforce's documented error body
/// `[{"message","errorCode"}]` (the first entry; other shapes give what they have).
pub(crate) fn error_of(text: &str) -> (String, String) {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let first = match &parsed {
        Some(Value::Array(items)) => items.first(),
        Some(v @ Value::Object(_)) => Some(v),
        _ => None,
    };
    let get = |k: &str| {
        first
            .and_then(|e| e.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let code = get("errorCode")
        .or_else(|| get("error"))
        .unwrap_or_else(|| "UNKNOWN".to_string());
    let message = get("message")
        .or_else(|| get("error_description"))
        .unwrap_or_else(|| text.chars().take(200).collect());
    (code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_read_in_documented_shape() {
        let (code, message) = error_of(
            r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
        );
        assert_eq!(code, "INVALID_SESSION_ID");
        assert_eq!(message, "Session expired or invalid");
        let (code, _) = error_of("<html>gateway</html>");
        assert_eq!(code, "UNKNOWN");
    }

    #[test]
    fn backoff_doubles_to_the_cap_without_jitter() {
        let p = RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let halves: Vec<Duration> = p.backoff().build().take(6).collect();
        let expected = [50, 100, 200, 400, 500, 500].map(Duration::from_millis);
        for (got, want) in halves.iter().zip(expected) {
            // backon multiplies in f32 seconds: equal to the microsecond.
            assert!(got.abs_diff(want) < Duration::from_micros(1), "{halves:?}");
        }
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let p = RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        // backon's f32 arithmetic may pass a bound by nanoseconds.
        let slack = Duration::from_micros(1);
        for _ in 0..50 {
            let d2 = p.delay(2);
            assert!(d2 >= Duration::from_millis(50) && d2 <= Duration::from_millis(100) + slack);
            let d4 = p.delay(4);
            assert!(d4 >= Duration::from_millis(200) && d4 <= Duration::from_millis(400) + slack);
            assert!(p.delay(30) <= Duration::from_secs(1));
        }
        let odd = RetryPolicy {
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(1),
            ..p
        };
        assert!(odd.delay(2) <= Duration::from_secs(1));
    }
}
