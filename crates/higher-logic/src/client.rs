//! The push API client: batching, pacing, retries, and per-record results.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hlsync_core::SfId;
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::error::HlError;
use crate::rate::{IntervalLimiter, RateLimiter};
use crate::wire::{self, PushRecord, PushResponse};

/// What Higher Logic needs to know who is calling: the `higher_logic` part of the secret.
#[derive(Clone, Debug)]
pub struct HigherLogicCredentials {
    pub tenant_code: String,
    /// Never printed: `SecretString`'s `Debug` is redacted.
    pub api_key: SecretString,
}

/// The outcome of one record of a push, in the order the records were given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordResult {
    /// LegacyContactKey, EventKey, or `EventKey:LegacyContactKey` for a registration.
    pub key: String,
    /// `Err` holds Higher Logic's message: this record (only) should be retried or dead-lettered.
    pub outcome: Result<(), String>,
}

impl RecordResult {
    pub fn is_ok(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// A member changed their email opt-out in the community.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailPreferenceChange {
    /// The member's LegacyContactKey.
    pub key: SfId,
    pub email_opt_out: bool,
    pub updated_on: DateTime<Utc>,
}

/// How hard to try one request before giving up with a retryable [`HlError`].
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Tries per request, the first included.
    pub max_attempts: u32,
    /// Backoff before the second try after a 5xx or connection error; doubles each time.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest `Retry-After` the client sleeps through. A longer one ends the request with
    /// [`HlError::Throttled`] at once: a Lambda should not idle for minutes, and retrying sooner
    /// than asked only earns another 429.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Full backoff for the try after `attempt` (1-based), before jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20);
        self.initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }

    /// Backoff with jitter in [half, full], so that functions failing together do not retry
    /// together.
    fn jittered_backoff(&self, attempt: u32) -> Duration {
        let full = self.backoff(attempt);
        let half = full / 2;
        let spread = u64::try_from((full - half).as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rand::rng().random_range(0..=spread))
    }
}

/// Default per-request timeout: generous for 200 records, short enough for a Lambda to recover.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Client of Higher Logic's data push API. Cheap to share behind an `Arc`; one per cold start.
pub struct HigherLogicClient {
    http: reqwest::Client,
    /// Always ends with `/`, so that joining an endpoint name appends to it.
    base: Url,
    tenant_code: HeaderValue,
    /// Marked sensitive, so the HTTP stack never prints it; built from the `SecretString` once.
    api_key: HeaderValue,
    limiter: Arc<dyn RateLimiter>,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    calls: AtomicU64,
}

impl std::fmt::Debug for HigherLogicClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HigherLogicClient")
            .field("base", &self.base.as_str())
            .field("tenant_code", &self.tenant_code)
            .field("api_key", &self.api_key)
            .field("retry", &self.retry)
            .field("calls", &self.calls_made())
            .finish_non_exhaustive()
    }
}

impl HigherLogicClient {
    /// `base_url` must already have passed the config's URL check (https unless insecure http is
    /// allowed); see `new` in lib.rs.
    pub(crate) fn from_parts(
        base_url: &Url,
        max_calls_per_minute: u32,
        creds: HigherLogicCredentials,
    ) -> Result<Self, HlError> {
        let per_minute = NonZeroU32::new(max_calls_per_minute).ok_or(HlError::Config {
            key: "higher_logic.max_calls_per_minute",
            reason: "must be at least 1".to_owned(),
        })?;
        if creds.tenant_code.trim().is_empty() {
            return Err(HlError::Config {
                key: "higher_logic.tenant_code (secret)",
                reason: "is empty".to_owned(),
            });
        }
        if creds.api_key.expose_secret().trim().is_empty() {
            return Err(HlError::Config {
                key: "higher_logic.api_key (secret)",
                reason: "is empty".to_owned(),
            });
        }
        let mut api_key =
            HeaderValue::from_str(creds.api_key.expose_secret()).map_err(|_| HlError::Config {
                key: "higher_logic.api_key (secret)",
                reason: "holds characters an HTTP header cannot carry (check for a stray newline)"
                    .to_owned(),
            })?;
        api_key.set_sensitive(true);
        let tenant_code =
            HeaderValue::from_str(&creds.tenant_code).map_err(|_| HlError::Config {
                key: "higher_logic.tenant_code (secret)",
                reason: "holds characters an HTTP header cannot carry (check for a stray newline)"
                    .to_owned(),
            })?;
        let mut base = base_url.clone();
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("hlsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HlError::Config {
                key: "higher_logic",
                reason: format!("the HTTP client could not be built: {e}"),
            })?;
        Ok(Self {
            http,
            base,
            tenant_code,
            api_key,
            limiter: Arc::new(IntervalLimiter::per_minute(per_minute)),
            retry: RetryPolicy::default(),
            timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            calls: AtomicU64::new(0),
        })
    }

    /// Paces calls with `limiter` instead of the in-process one built from
    /// `max_calls_per_minute` (for a limit shared across functions).
    pub fn with_rate_limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.limiter = limiter;
        self
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// `None`: no per-request timeout (tests on tokio's paused clock, where a pending timeout
    /// would be reached by auto-advance while the simulator is still answering).
    pub fn with_request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// HTTP calls sent so far, retries included (each one counts against the tenant's limit).
    pub fn calls_made(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// Pushes records in calls of at most 200 and returns one result per record, in input
    /// order. A request that fails as a whole (after retries) ends the push with that error;
    /// calls already made stay made, which is safe because a push is idempotent.
    pub(crate) async fn push<R: PushRecord>(
        &self,
        records: &[R],
    ) -> Result<Vec<RecordResult>, HlError> {
        let mut results = Vec::with_capacity(records.len());
        for chunk in records.chunks(wire::MAX_RECORDS_PER_CALL) {
            let body = serde_json::to_vec(chunk).map_err(|e| HlError::BadRequest {
                message: format!("the records could not be encoded as JSON: {e}"),
            })?;
            let url = self.endpoint(R::PATH)?;
            let answer = self.call(Method::POST, &url, Some(body)).await?;
            let answer: PushResponse =
                serde_json::from_slice(&answer).map_err(|e| HlError::BadResponse {
                    url: url.to_string(),
                    message: format!("expected {{\"results\":[…]}}: {e}"),
                })?;
            let matched = match_results(chunk, answer);
            tracing::debug!(
                endpoint = R::PATH,
                records = chunk.len(),
                failed = matched.iter().filter(|r| !r.is_ok()).count(),
                "pushed to Higher Logic"
            );
            results.extend(matched);
        }
        Ok(results)
    }

    /// Opt-out changes members made in Higher Logic strictly after `since`.
    pub async fn email_preferences_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<EmailPreferenceChange>, HlError> {
        let mut url = self.endpoint(wire::EMAIL_PREFERENCES_PATH)?;
        url.query_pairs_mut()
            .append_pair(wire::SINCE_PARAM, &wire::format_timestamp(since));
        let answer = self.call(Method::GET, &url, None).await?;
        let answer: wire::EmailPreferencesResponse =
            serde_json::from_slice(&answer).map_err(|e| HlError::BadResponse {
                url: url.to_string(),
                message: format!("expected {{\"changes\":[…]}}: {e}"),
            })?;
        Ok(answer
            .changes
            .into_iter()
            .filter_map(|c| match c.legacy_contact_key.parse::<SfId>() {
                Ok(key) => Some(EmailPreferenceChange {
                    key,
                    email_opt_out: c.email_opt_out,
                    updated_on: c.updated_on,
                }),
                Err(error) => {
                    // One unreadable entry must not hold back every other member's change.
                    tracing::warn!(%error, "skipping an email preference change with a bad LegacyContactKey");
                    None
                }
            })
            .collect())
    }

    fn endpoint(&self, name: &str) -> Result<Url, HlError> {
        self.base.join(name).map_err(|e| HlError::Config {
            key: "higher_logic.base_url",
            reason: format!("cannot append /{name} to it: {e}"),
        })
    }

    /// One request, paced and retried; returns the body of a 2xx answer.
    async fn call(
        &self,
        method: Method,
        url: &Url,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, HlError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.limiter.acquire().await?;
            self.calls.fetch_add(1, Ordering::Relaxed);

            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header(wire::API_KEY_HEADER, self.api_key.clone())
                .header(wire::TENANT_CODE_HEADER, self.tenant_code.clone())
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(body) = &body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            if let Some(timeout) = self.timeout {
                request = request.timeout(timeout);
            }

            let (error, wait) = match self.send_once(request, url, attempt).await {
                Attempt::Done(body) => return Ok(body),
                Attempt::Fatal(error) => return Err(error),
                Attempt::Retry { error, wait } => (error, wait),
            };
            if attempt >= self.retry.max_attempts {
                return Err(error);
            }
            let wait = wait.unwrap_or_else(|| self.retry.jittered_backoff(attempt));
            tracing::warn!(%url, attempt, wait_ms = wait.as_millis() as u64, %error, "retrying Higher Logic call");
            tokio::time::sleep(wait).await;
        }
    }

    async fn send_once(
        &self,
        request: reqwest::RequestBuilder,
        url: &Url,
        attempt: u32,
    ) -> Attempt {
        let transport = |e: reqwest::Error| Attempt::Retry {
            error: HlError::Transport {
                url: url.to_string(),
                attempts: attempt,
                message: error_chain(&e),
            },
            wait: None,
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return transport(e),
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = match response.bytes().await {
            Ok(body) => body.to_vec(),
            Err(e) => return transport(e),
        };
        if status.is_success() {
            return Attempt::Done(body);
        }
        let message = server_message(&body);
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Attempt::Fatal(HlError::Rejected {
                status: status.as_u16(),
                message,
            }),
            StatusCode::TOO_MANY_REQUESTS => {
                let error = HlError::Throttled {
                    attempts: attempt,
                    retry_after,
                };
                match retry_after {
                    Some(wait) if wait > self.retry.max_retry_after => Attempt::Fatal(error),
                    wait => Attempt::Retry { error, wait },
                }
            }
            StatusCode::BAD_REQUEST => Attempt::Fatal(HlError::BadRequest { message }),
            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => Attempt::Retry {
                error: HlError::Unavailable {
                    status: s.as_u16(),
                    attempts: attempt,
                    message,
                },
                // A 503 may say when to come back; otherwise back off.
                wait: retry_after.filter(|w| *w <= self.retry.max_backoff),
            },
            s => Attempt::Fatal(HlError::UnexpectedStatus {
                status: s.as_u16(),
                url: url.to_string(),
                message,
            }),
        }
    }
}

enum Attempt {
    Done(Vec<u8>),
    Fatal(HlError),
    Retry {
        error: HlError,
        /// `None`: back off by the policy.
        wait: Option<Duration>,
    },
}

/// Pairs each record with its result by key, so that an answer in another order still lands on
/// the right record; a record without a result is an error result of its own.
fn match_results<R: PushRecord>(records: &[R], answer: PushResponse) -> Vec<RecordResult> {
    let mut by_key: HashMap<String, VecDeque<Result<(), String>>> = HashMap::new();
    for result in answer.results {
        let Some(key) = R::result_key(&result) else {
            tracing::warn!(
                ?result,
                "Higher Logic returned a result that names no record"
            );
            continue;
        };
        let outcome = if result.is_ok() {
            Ok(())
        } else {
            Err(result
                .message
                .filter(|m| !m.trim().is_empty())
                .unwrap_or_else(|| format!("Higher Logic answered status {:?}", result.status)))
        };
        by_key
            .entry(canonical_key(&key))
            .or_default()
            .push_back(outcome);
    }
    records
        .iter()
        .map(|record| {
            let key = record.key();
            let outcome = by_key
                .get_mut(&key)
                .and_then(VecDeque::pop_front)
                .unwrap_or_else(|| {
                    Err(
                        "Higher Logic returned no result for this record; it will be sent again"
                            .to_owned(),
                    )
                });
            RecordResult { key, outcome }
        })
        .collect()
}

/// A result key with each Salesforce Id in it in its 18-character form, so that an answer that
/// quotes a 15-character or re-cased Id still names its record (`EventKey:LegacyContactKey`
/// keys have two).
fn canonical_key(key: &str) -> String {
    key.split(':')
        .map(|part| {
            part.trim()
                .parse::<SfId>()
                .map_or_else(|_| part.to_owned(), |id| id.as_str().to_owned())
        })
        .collect::<Vec<_>>()
        .join(":")
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// The server's explanation, short enough for a log line: its `message` field if the body is
/// JSON, else the start of the body.
fn server_message(body: &[u8]) -> String {
    const MAX: usize = 300;
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned));
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    if text.is_empty() {
        return "no message".to_owned();
    }
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// reqwest's top-level message is often just "error sending request"; the cause says why.
fn error_chain(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {

    #[test]
    fn result_keys_name_records_by_their_18_character_ids() {
        assert_eq!(canonical_key("003000000000001"), "003000000000001AAA");
        assert_eq!(canonical_key("003000000000001aaa"), "003000000000001AAA");
        assert_eq!(
            canonical_key("701000000000001:003000000000001"),
            "701000000000001AAA:003000000000001AAA"
        );
        assert_eq!(canonical_key("not-an-id"), "not-an-id");
    }

    use reqwest::header::HeaderValue;

    use super::*;
    use crate::wire::{ContactRecord, PushResult};

    fn record(key: &str) -> ContactRecord {
        ContactRecord {
            legacy_contact_key: key.into(),
            first_name: None,
            last_name: None,
            email_address: None,
            company_name: None,
            title: None,
            phone: None,
            mobile_phone: None,
            address: crate::wire::AddressRecord {
                street: None,
                city: None,
                state_province: None,
                postal_code: None,
                country: None,
            },
            is_active: true,
            is_deleted: false,
            email_opt_out: false,
            security_groups: vec![],
            community_groups: vec![],
            updated_on: None,
        }
    }

    fn result(key: &str, status: &str, message: Option<&str>) -> PushResult {
        PushResult {
            legacy_contact_key: Some(key.into()),
            event_key: None,
            status: status.into(),
            message: message.map(Into::into),
        }
    }

    #[test]
    fn results_are_matched_by_key_in_input_order() {
        let records = [record("A"), record("B"), record("C"), record("A")];
        let answer = PushResponse {
            results: vec![
                result("B", "error", Some("bad email")),
                result("A", "ok", None),
                result("A", "error", None),
            ],
        };
        let results = match_results(&records, answer);
        let keys: Vec<&str> = results.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["A", "B", "C", "A"]);
        assert_eq!(results[0].outcome, Ok(()));
        assert_eq!(results[1].outcome, Err("bad email".into()));
        assert!(
            results[2]
                .outcome
                .as_ref()
                .unwrap_err()
                .contains("no result")
        );
        assert!(
            results[3]
                .outcome
                .as_ref()
                .unwrap_err()
                .contains("\"error\"")
        );
    }

    proptest::proptest! {
        /// Whatever order the answer lists results in, and whichever it leaves out, each record
        /// gets its own outcome, in input order.
        #[test]
        fn every_record_gets_its_own_result(
            answered in proptest::collection::vec((proptest::bool::ANY, proptest::bool::ANY), 1..60),
            seed in proptest::num::u64::ANY,
        ) {
            let keys: Vec<String> = (0..answered.len()).map(|i| format!("K{i}")).collect();
            let records: Vec<ContactRecord> = keys.iter().map(|k| record(k)).collect();
            let mut results: Vec<PushResult> = keys
                .iter()
                .zip(&answered)
                .filter(|(_, (present, _))| *present)
                .map(|(k, (_, ok))| result(k, if *ok { "ok" } else { "error" }, Some("no")))
                .collect();
            // A deterministic shuffle driven by the generated seed.
            let len = results.len();
            for i in (1..len).rev() {
                let j = (seed.rotate_left(i as u32) % (i as u64 + 1)) as usize;
                results.swap(i, j);
            }
            let matched = match_results(&records, PushResponse { results });
            proptest::prop_assert_eq!(matched.len(), records.len());
            for ((out, key), (present, ok)) in matched.iter().zip(&keys).zip(&answered) {
                proptest::prop_assert_eq!(&out.key, key);
                proptest::prop_assert_eq!(out.is_ok(), *present && *ok);
            }
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_below_it() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            ..RetryPolicy::default()
        };
        assert_eq!(policy.backoff(1), Duration::from_millis(100));
        assert_eq!(policy.backoff(2), Duration::from_millis(200));
        assert_eq!(policy.backoff(4), Duration::from_millis(500));
        assert_eq!(policy.backoff(60), Duration::from_millis(500));
        for attempt in 1..6 {
            let wait = policy.jittered_backoff(attempt);
            assert!(wait >= policy.backoff(attempt) / 2 && wait <= policy.backoff(attempt));
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(
            retry_after(&headers),
            Some(Duration::ZERO),
            "a past date: go now"
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn server_messages_are_short() {
        assert_eq!(server_message(br#"{"message":"nope"}"#), "nope");
        assert_eq!(server_message(b""), "no message");
        let long = "x".repeat(1000);
        assert!(server_message(long.as_bytes()).chars().count() <= 301);
    }
}
