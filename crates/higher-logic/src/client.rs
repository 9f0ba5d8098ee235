//! The Push API client: batching, halving refused requests, pacing, retries, and the
//! email-preference feed.

use std::num::NonZeroU32;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use hlsync_core::config::MAX_BATCH_SIZE;
use hlsync_core::{HigherLogicConfig, Meeting, Member, SfId, check_url};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use url::Url;

use crate::error::HlError;
use crate::rate::{IntervalLimiter, RateLimiter};
use crate::wire;

const BASE_URL_KEY: &str = "higher_logic.base_url";
const EMAIL_PREFERENCES_URL_KEY: &str = "higher_logic.email_preferences_url";
const API_KEY_KEY: &str = "higher_logic.api_key (secret)";

/// Who a request is for: what its errors name, and whether its answer's body matters.
#[derive(Clone, Copy)]
struct Target {
    /// The config key of the URL, for error messages.
    setting: &'static str,
    /// Only the feed reads a 2xx body; a push's 2xx accepts the request whatever follows it.
    reads_body: bool,
}

const PUSH: Target = Target {
    setting: BASE_URL_KEY,
    reads_body: false,
};

const FEED: Target = Target {
    setting: EMAIL_PREFERENCES_URL_KEY,
    reads_body: true,
};

/// What Higher Logic needs to know who is calling: the `higher_logic` part of the secret.
#[derive(Clone, Debug)]
pub struct HigherLogicCredentials {
    /// The tenant's Push API key. Never printed: `SecretString`'s `Debug` is redacted.
    pub api_key: SecretString,
}

/// The outcome of one record of a push. A push returns one per record, in input order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordResult {
    /// The record's 18-character key: `ContactId` for a member, `MeetingId` for a meeting.
    pub key: String,
    /// `Err` holds Higher Logic's message for a record it refused on its own (HTTP 400): this
    /// record, and only it, should be dead-lettered.
    pub outcome: Result<(), String>,
}

impl RecordResult {
    /// Whether Higher Logic accepted the record.
    pub fn is_ok(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// A member changed their email preference in Higher Logic (read from the tenant's feed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailPreferenceChange {
    /// The member's `ContactId`.
    pub key: SfId,
    /// The preference as it now stands: `true` if the member wants no email.
    pub do_not_email: bool,
    /// When the member changed it.
    pub updated_on: DateTime<Utc>,
}

/// How hard to try one request before giving up with a retryable [`HlError`].
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Tries per request, the first included.
    pub max_attempts: u32,
    /// Backoff before the second try after a 5xx, a 408 or a connection error; doubles each time.
    pub initial_backoff: Duration,
    /// The longest backoff, jitter included; also the longest `Retry-After` of a 503 (or 408)
    /// the client follows (a longer one backs off as if it were absent).
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
            max_retry_after: Duration::from_mins(1),
        }
    }
}

impl RetryPolicy {
    /// backon's exponential schedule at half the policy's backoff: its jitter adds up to as much
    /// again, so each pause falls between half and all of `initial_backoff * 2^n`, capped at
    /// `max_backoff`.
    fn schedule(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_min_delay(self.initial_backoff.min(self.max_backoff) / 2)
            .with_max_delay(self.max_backoff / 2)
            .with_factor(2.0)
            .without_max_times()
    }

    /// The pause after try `attempt` (1-based) failed, jittered between half and all of the
    /// exponential backoff, so that functions failing together do not retry together.
    fn jittered_backoff(&self, attempt: u32) -> Duration {
        let retry = attempt.saturating_sub(1).min(30) as usize;
        self.schedule()
            .with_jitter()
            .build()
            .nth(retry)
            .unwrap_or(self.max_backoff)
    }
}

/// Default per-request timeout: generous for a full batch, short enough for a Lambda to recover.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Client of Higher Logic's data Push API v2. Cheap to share behind an `Arc`; one per cold start.
pub struct HigherLogicClient {
    http: reqwest::Client,
    /// Always ends with `/`, so that joining an endpoint name appends to it.
    base: Url,
    email_preferences: Option<Url>,
    /// Marked sensitive, so the HTTP stack never prints it; built from the `SecretString` once.
    api_key: HeaderValue,
    batch_size: usize,
    limiter: Arc<dyn RateLimiter>,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    calls: AtomicU64,
}

impl std::fmt::Debug for HigherLogicClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HigherLogicClient")
            .field("base", &self.base.as_str())
            .field(
                "email_preferences",
                &self.email_preferences.as_ref().map(Url::as_str),
            )
            // A sensitive `HeaderValue` prints as `Sensitive`.
            .field("api_key", &self.api_key)
            .field("batch_size", &self.batch_size)
            .field("retry", &self.retry)
            .field("calls", &self.calls_made())
            .finish_non_exhaustive()
    }
}

/// How Higher Logic answered one request, once retries are over.
enum Answer {
    /// 2xx: every record of the request is accepted. The body, for the feed's GET only (empty
    /// for a push: Higher Logic publishes no per-record result body).
    Accepted(Vec<u8>),
    /// 400: the request is refused, with Higher Logic's explanation.
    Refused(String),
}

/// How one HTTP attempt ended.
enum Attempt {
    Done(Answer),
    Fatal(HlError),
    Retry {
        error: HlError,
        /// `None`: back off by the policy.
        wait: Option<Duration>,
    },
}

impl HigherLogicClient {
    /// A client for the tenant at `cfg.base_url`, paced at `cfg.max_calls_per_minute` in this
    /// process, pushing `cfg.batch_size` records per request. Both URLs must be https unless
    /// `allow_insecure_http` (emulators and tests).
    pub fn new(
        cfg: &HigherLogicConfig,
        creds: HigherLogicCredentials,
        allow_insecure_http: bool,
    ) -> Result<Self, HlError> {
        let mut base = parse_url(&cfg.base_url, allow_insecure_http, BASE_URL_KEY)?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let email_preferences = match cfg.email_preferences_url.as_deref().map(str::trim) {
            // The config reads `email_preferences_url = ""` as unset; so does the client.
            None | Some("") => None,
            Some(url) => Some(parse_url(
                url,
                allow_insecure_http,
                EMAIL_PREFERENCES_URL_KEY,
            )?),
        };
        let per_minute = NonZeroU32::new(cfg.max_calls_per_minute).ok_or(HlError::Config {
            key: "higher_logic.max_calls_per_minute",
            reason: "must be at least 1".to_owned(),
        })?;
        if !(1..=MAX_BATCH_SIZE).contains(&cfg.batch_size) {
            return Err(HlError::Config {
                key: "higher_logic.batch_size",
                reason: format!(
                    "must be between 1 and {MAX_BATCH_SIZE} records per push request, got {}",
                    cfg.batch_size
                ),
            });
        }
        if creds.api_key.expose_secret().trim().is_empty() {
            return Err(HlError::Config {
                key: API_KEY_KEY,
                reason: "is empty".to_owned(),
            });
        }
        let mut api_key =
            HeaderValue::from_str(creds.api_key.expose_secret()).map_err(|_| HlError::Config {
                key: API_KEY_KEY,
                reason: "holds characters an HTTP header cannot carry (check for a stray newline)"
                    .to_owned(),
            })?;
        api_key.set_sensitive(true);
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
            email_preferences,
            api_key,
            batch_size: cfg.batch_size,
            limiter: Arc::new(IntervalLimiter::per_minute(per_minute)),
            retry: RetryPolicy::default(),
            timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            calls: AtomicU64::new(0),
        })
    }

    /// Paces calls with `limiter` instead of the in-process one built from
    /// `max_calls_per_minute` (for a limit shared across functions).
    #[must_use]
    pub fn with_rate_limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// Retries by `retry` instead of [`RetryPolicy::default`].
    #[must_use]
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// `None`: no per-request timeout (tests on tokio's paused clock, where a pending timeout
    /// would be reached by auto-advance while the server is still answering).
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// HTTP calls sent so far: every attempt, halvings and retries included (each one counts
    /// against the tenant's limit).
    pub fn calls_made(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The Push API's root, ending with `/`.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The most records one request carries (`higher_logic.batch_size`).
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Whether the tenant has an email-preference feed (`higher_logic.email_preferences_url`).
    pub fn has_email_preferences(&self) -> bool {
        self.email_preferences.is_some()
    }

    /// Pushes members to `POST /contactinfo` (whole records: Higher Logic replaces what it
    /// holds; a deleted member is sent as the delete shape).
    ///
    /// Returns one result per member, in input order. See [`Self::push_meetings`] for how a
    /// refused request is narrowed down to its refused records.
    pub async fn push_members(&self, members: &[Member]) -> Result<Vec<RecordResult>, HlError> {
        let records: Vec<wire::ContactInfo> = members.iter().map(wire::contact_info).collect();
        let outcomes = self.push(wire::CONTACT_INFO_PATH, &records).await?;
        Ok(members
            .iter()
            .zip(outcomes)
            .map(|(member, outcome)| RecordResult {
                key: member.contact_id.as_str().to_owned(),
                outcome,
            })
            .collect())
    }

    /// Pushes meetings to `POST /meeting`; push them before the members whose groups name them.
    ///
    /// Returns one result per meeting, in input order. Records go in requests of at most
    /// `batch_size`. A 2xx accepts a whole request. A 400 refuses it: the client then pushes
    /// each half on its own, and so on down to single records, so that only a record refused
    /// alone gets `Err(Higher Logic's message)` and its neighbours go through (one refused
    /// record among 200 costs at most 17 requests). Any other failure, after retries, ends the
    /// push with an [`HlError`]; requests already accepted stay accepted, which is harmless
    /// because a push is idempotent.
    pub async fn push_meetings(&self, meetings: &[Meeting]) -> Result<Vec<RecordResult>, HlError> {
        let records: Vec<wire::MeetingRecord> = meetings.iter().map(wire::meeting).collect();
        let outcomes = self.push(wire::MEETING_PATH, &records).await?;
        Ok(meetings
            .iter()
            .zip(outcomes)
            .map(|(meeting, outcome)| RecordResult {
                key: meeting.meeting_id.as_str().to_owned(),
                outcome,
            })
            .collect())
    }

    /// Pushes `records` to `POST {base}/{path}` and returns one outcome per record, in order.
    ///
    /// A stack of index ranges stands in for recursion: it starts with the batches (the first
    /// on top); a refused range of two or more records is replaced by its two halves (the
    /// first on top). The ranges on the stack are always contiguous and in order from the top,
    /// so the range popped always starts at the first record without an outcome, and outcomes
    /// are appended in input order.
    async fn push<R: Serialize>(
        &self,
        path: &'static str,
        records: &[R],
    ) -> Result<Vec<Result<(), String>>, HlError> {
        let url = self.endpoint(path)?;
        let mut outcomes: Vec<Result<(), String>> = Vec::with_capacity(records.len());
        let mut pending: Vec<Range<usize>> =
            batches(records.len(), self.batch_size).rev().collect();
        while let Some(range) = pending.pop() {
            debug_assert_eq!(range.start, outcomes.len());
            let body =
                serde_json::to_vec(&records[range.clone()]).map_err(|e| HlError::Encoding {
                    message: e.to_string(),
                })?;
            match self.send(Method::POST, &url, Some(body), PUSH).await? {
                Answer::Accepted(_) => {
                    outcomes.extend(range.map(|_| Ok(())));
                }
                Answer::Refused(message) if range.len() == 1 => {
                    tracing::warn!(endpoint = path, record = range.start, %message, "Higher Logic refused a record");
                    outcomes.push(Err(message));
                }
                Answer::Refused(message) => {
                    let (first, second) = halves(range);
                    tracing::info!(
                        endpoint = path,
                        records = first.len() + second.len(),
                        %message,
                        "Higher Logic refused a request; pushing each half on its own to find the refused records"
                    );
                    pending.push(second);
                    pending.push(first);
                }
            }
        }
        tracing::debug!(
            endpoint = path,
            records = records.len(),
            refused = outcomes.iter().filter(|o| o.is_err()).count(),
            "pushed to Higher Logic"
        );
        Ok(outcomes)
    }

    /// Email-preference changes members made in Higher Logic strictly after `since`, read from
    /// the tenant's feed: `GET {email_preferences_url}?since=…` with the same `ApiKey`.
    ///
    /// `Ok(vec![])` without any call when the tenant has no feed. An entry whose `ContactId` or
    /// `UpdatedOn` cannot be read is skipped with a warning, so that it does not hold back every
    /// other member's change.
    pub async fn email_preferences_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<EmailPreferenceChange>, HlError> {
        let Some(feed) = &self.email_preferences else {
            return Ok(Vec::new());
        };
        let mut url = feed.clone();
        url.query_pairs_mut()
            .append_pair(wire::SINCE_PARAM, &wire::format_date_time(since));
        let body = match self.send(Method::GET, &url, None, FEED).await? {
            Answer::Accepted(body) => body,
            Answer::Refused(message) => {
                return Err(HlError::UnexpectedStatus {
                    status: StatusCode::BAD_REQUEST.as_u16(),
                    url: url.to_string(),
                    setting: EMAIL_PREFERENCES_URL_KEY,
                    message,
                });
            }
        };
        let answer: wire::EmailPreferencesAnswer =
            serde_json::from_slice(&body).map_err(|e| HlError::BadResponse {
                url: url.to_string(),
                message: e.to_string(),
            })?;
        Ok(answer
            .changes
            .into_iter()
            .filter_map(|entry| {
                let key = match entry.contact_id.parse::<SfId>() {
                    Ok(key) => key,
                    Err(error) => {
                        tracing::warn!(%error, "skipping an email preference change with a bad ContactId");
                        return None;
                    }
                };
                let Some(updated_on) = wire::parse_date_time(&entry.updated_on) else {
                    tracing::warn!(contact = %key, updated_on = %entry.updated_on, "skipping an email preference change with a bad UpdatedOn");
                    return None;
                };
                Some(EmailPreferenceChange {
                    key,
                    do_not_email: entry.do_not_email,
                    updated_on,
                })
            })
            .collect())
    }

    fn endpoint(&self, name: &str) -> Result<Url, HlError> {
        self.base.join(name).map_err(|e| HlError::Config {
            key: BASE_URL_KEY,
            reason: format!("cannot append /{name} to it: {e}"),
        })
    }

    /// One request, paced and retried, until it is accepted, refused, or fails for good.
    async fn send(
        &self,
        method: Method,
        url: &Url,
        body: Option<Vec<u8>>,
        target: Target,
    ) -> Result<Answer, HlError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.limiter.acquire().await?;
            self.calls.fetch_add(1, Ordering::Relaxed);

            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header(wire::API_KEY_HEADER, self.api_key.clone())
                .header(ACCEPT, wire::JSON_CONTENT_TYPE);
            if let Some(body) = &body {
                request = request
                    .header(CONTENT_TYPE, wire::JSON_CONTENT_TYPE)
                    .body(body.clone());
            }
            if let Some(timeout) = self.timeout {
                request = request.timeout(timeout);
            }

            let (error, wait) = match self.send_once(request, url, target, attempt).await {
                Attempt::Done(answer) => return Ok(answer),
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
        target: Target,
        attempt: u32,
    ) -> Attempt {
        let setting = target.setting;
        let transport = |message: String| Attempt::Retry {
            error: HlError::Transport {
                url: url.to_string(),
                setting,
                attempts: attempt,
                message,
            },
            wait: None,
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return transport(error_chain(&e)),
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response.bytes().await;
        if status.is_success() {
            return match body {
                Ok(body) if target.reads_body => Attempt::Done(Answer::Accepted(body.to_vec())),
                // The body was still read (so the connection can be reused), never parsed.
                Ok(_) => Attempt::Done(Answer::Accepted(Vec::new())),
                // The status already says the request was accepted.
                Err(_) if !target.reads_body => Attempt::Done(Answer::Accepted(Vec::new())),
                Err(e) => transport(error_chain(&e)),
            };
        }
        let message = match &body {
            Ok(body) => server_message(body),
            Err(e) => format!("the answer's body could not be read: {}", error_chain(e)),
        };
        match status {
            StatusCode::BAD_REQUEST => Attempt::Done(Answer::Refused(message)),
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
            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => Attempt::Retry {
                error: HlError::Unavailable {
                    url: url.to_string(),
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
                setting,
                message,
            }),
        }
    }
}

/// Parses a URL the config check already accepts (https, or http when allowed), naming `key` in
/// any error.
fn parse_url(text: &str, allow_insecure_http: bool, key: &'static str) -> Result<Url, HlError> {
    check_url(text, allow_insecure_http, key)?;
    Url::parse(text).map_err(|e| HlError::Config {
        key,
        reason: e.to_string(),
    })
}

/// The requests of a push before any refusal: consecutive ranges of at most `size` records.
fn batches(len: usize, size: usize) -> impl DoubleEndedIterator<Item = Range<usize>> {
    let size = size.max(1);
    (0..len.div_ceil(size)).map(move |i| i * size..((i + 1) * size).min(len))
}

/// A refused range of two or more records, split in two (the first half the larger one).
fn halves(range: Range<usize>) -> (Range<usize>, Range<usize>) {
    let mid = range.start + range.len().div_ceil(2);
    (range.start..mid, mid..range.end)
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

/// The server's explanation, short enough for a log line and a dead-letter reason: the first of
/// [`wire::ERROR_MESSAGE_FIELDS`] that the body holds as text if it is a JSON object, else the
/// start of the body.
fn server_message(body: &[u8]) -> String {
    const MAX: usize = 500;
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| {
            wire::ERROR_MESSAGE_FIELDS
                .iter()
                .find_map(|field| value.get(*field)?.as_str().map(str::to_owned))
        })
        .filter(|m| !m.trim().is_empty());
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
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn batches_cover_the_records_in_order() {
        let all: Vec<Range<usize>> = batches(450, 200).collect();
        assert_eq!(all, [0..200, 200..400, 400..450]);
        assert_eq!(batches(0, 200).count(), 0);
        let whole: Vec<Range<usize>> = batches(200, 200).collect();
        assert_eq!((whole.len(), whole[0].clone()), (1, 0..200));
    }

    #[test]
    fn halves_split_evenly_with_the_larger_first() {
        assert_eq!(halves(0..200), (0..100, 100..200));
        assert_eq!(halves(100..125), (100..113, 113..125));
        assert_eq!(halves(7..9), (7..8, 8..9));
    }

    /// The promise of the docs: one refused record among 200 is found in at most 17 requests
    /// (the request, then two per halving: 100, 50, 25, 13, 7, 4, 2, 1).
    #[test]
    fn one_refused_record_costs_at_most_seventeen_requests() {
        for bad in 0..200 {
            let mut requests = 0;
            let mut pending: Vec<Range<usize>> = batches(200, 200).collect();
            while let Some(range) = pending.pop() {
                requests += 1;
                if range.contains(&bad) && range.len() > 1 {
                    let (a, b) = halves(range);
                    pending.push(b);
                    pending.push(a);
                }
            }
            assert!(requests <= 17, "record {bad}: {requests} requests");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_below_it() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            ..RetryPolicy::default()
        };
        // Without jitter (the deterministic schedule): half of 100, 200, 400, then the cap.
        let halves: Vec<Duration> = policy.schedule().build().take(5).collect();
        let full = [100, 200, 400, 500, 500].map(Duration::from_millis);
        // backon multiplies in f32 seconds: equal to the microsecond.
        let slack = Duration::from_micros(1);
        for (half, full) in halves.iter().zip(full) {
            assert!(half.abs_diff(full / 2) < slack, "{halves:?}");
        }
        for (attempt, full) in (1..).zip(full) {
            for _ in 0..20 {
                let wait = policy.jittered_backoff(attempt);
                assert!(wait + slack >= full / 2 && wait <= full + slack, "{wait:?}");
            }
        }
        assert!(policy.jittered_backoff(60) <= Duration::from_millis(500));
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
    fn server_messages_are_short_and_found_where_aspnet_puts_them() {
        assert_eq!(
            server_message(br#"{"Message":"The request is invalid."}"#),
            "The request is invalid."
        );
        assert_eq!(server_message(br#"{"message":"nope"}"#), "nope");
        assert_eq!(
            server_message(br#"{"Errors":["ContactId is required"]}"#),
            r#"{"Errors":["ContactId is required"]}"#
        );
        assert_eq!(server_message(b"plain text "), "plain text");
        assert_eq!(server_message(b""), "no message");
        let long = "x".repeat(1000);
        assert!(server_message(long.as_bytes()).chars().count() <= 501);
    }

    fn config() -> HigherLogicConfig {
        HigherLogicConfig::new("https://datapushapi.example.org/v2")
    }

    fn creds(key: &str) -> HigherLogicCredentials {
        HigherLogicCredentials {
            api_key: key.to_owned().into(),
        }
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let client = HigherLogicClient::new(&config(), creds("s3cret-key"), false).unwrap();
        let text = format!("{client:?}");
        assert!(!text.contains("s3cret-key"), "{text}");
        let text = format!("{:?}", creds("s3cret-key"));
        assert!(!text.contains("s3cret-key"), "{text}");
    }

    #[test]
    fn settings_are_checked_and_errors_name_them() {
        let error = |cfg: &HigherLogicConfig, key: &str, insecure: bool| {
            HigherLogicClient::new(cfg, creds(key), insecure)
                .unwrap_err()
                .to_string()
        };
        let mut cfg = config();
        cfg.email_preferences_url = Some("http://relay.example.org/prefs".into());
        assert!(error(&cfg, "k", false).contains("higher_logic.email_preferences_url"));
        let client = HigherLogicClient::new(&cfg, creds("k"), true).unwrap();
        assert!(client.has_email_preferences());

        cfg.email_preferences_url = Some(String::new());
        let client = HigherLogicClient::new(&cfg, creds("k"), false).unwrap();
        assert!(!client.has_email_preferences());

        let mut cfg = config();
        cfg.base_url = "http://datapushapi.example.org/v2".into();
        assert!(error(&cfg, "k", false).contains("higher_logic.base_url"));

        let mut cfg = config();
        cfg.batch_size = 0;
        assert!(error(&cfg, "k", false).contains("higher_logic.batch_size"));

        assert!(error(&config(), " ", false).contains("higher_logic.api_key"));
        assert!(error(&config(), "k\n", false).contains("stray newline"));
    }
}
