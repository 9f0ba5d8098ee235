//! The Higher Logic tenant behind the `Community` port.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hlsync_core::event::Meeting;
use hlsync_core::member::Member;
use hlsync_higher_logic::{
    HigherLogicClient, HigherLogicCredentials, HlError, IntervalLimiter, RateLimiter, RecordResult,
};
use tokio::sync::Mutex;

use crate::error::{Service, SyncError};
use crate::ports::{Community, EmailPreferenceChange, PushResult};
use crate::runtime::Credentials;

impl From<HlError> for SyncError {
    fn from(e: HlError) -> Self {
        let message = e.to_string();
        if e.is_credentials_rejected() {
            SyncError::Rejected {
                service: Service::HigherLogic,
                message,
            }
        } else if e.is_retryable() {
            SyncError::Transient {
                service: Service::HigherLogic,
                message,
            }
        } else {
            SyncError::Failed {
                service: Some(Service::HigherLogic),
                message,
            }
        }
    }
}

fn results(results: Vec<RecordResult>) -> Vec<PushResult> {
    results
        .into_iter()
        .map(|r| PushResult {
            key: r.key,
            error: r.outcome.err(),
        })
        .collect()
}

/// How many function instances may call Higher Logic at once (the deployed stack sets it: the
/// member-refresh's maximum concurrency plus the periodic-refresh).
pub const ENV_CONCURRENT_FUNCTIONS: &str = "HLSYNC_CONCURRENT_FUNCTIONS";

/// This instance's share of `max_calls_per_minute`, so that all concurrent instances together
/// stay under it: the limit divided by the number of instances (at least one call a minute).
pub fn share_of_rate(max_calls_per_minute: u32, concurrent_functions: u32) -> std::num::NonZeroU32 {
    let share = max_calls_per_minute / concurrent_functions.max(1);
    std::num::NonZeroU32::new(share).unwrap_or(std::num::NonZeroU32::MIN)
}

/// Where a rejected Higher Logic API key is remembered (with the secret version it came from).
pub const CREDENTIALS_REJECTED_DOC: &str = "login#higher-logic";

/// The Higher Logic client of the current secret version, made on first use.
pub struct HigherLogicCommunity {
    credentials: Arc<Credentials>,
    /// Outlives clients: a secret rotation does not reset the pacing.
    limiter: Arc<dyn RateLimiter>,
    current: Mutex<Option<(String, Arc<HigherLogicClient>)>>,
    retired_calls: AtomicU64,
    latest: std::sync::Mutex<Option<Arc<HigherLogicClient>>>,
}

impl HigherLogicCommunity {
    /// Paced at this instance's share of `higher_logic.max_calls_per_minute` among
    /// `concurrent_functions` instances.
    pub fn new(credentials: Arc<Credentials>, concurrent_functions: u32) -> Self {
        let per_minute = share_of_rate(
            credentials.cfg.higher_logic.max_calls_per_minute,
            concurrent_functions,
        );
        HigherLogicCommunity {
            limiter: Arc::new(IntervalLimiter::per_minute(per_minute)),
            credentials,
            current: Mutex::new(None),
            retired_calls: AtomicU64::new(0),
            latest: std::sync::Mutex::new(None),
        }
    }

    /// The client for the secret's current version, and that version; refuses when Higher
    /// Logic rejected that version's API key before.
    pub async fn client(&self) -> Result<(String, Arc<HigherLogicClient>), SyncError> {
        let secret = self.credentials.get().await?;
        let mut current = self.current.lock().await;
        if let Some((version, client)) = current.as_ref()
            && *version == secret.version
        {
            return Ok((version.clone(), Arc::clone(client)));
        }
        let secret = self
            .credentials
            .usable_for(Service::HigherLogic, CREDENTIALS_REJECTED_DOC)
            .await?;
        let creds = HigherLogicCredentials {
            api_key: secret.higher_logic.api_key.clone(),
        };
        let client = Arc::new(
            HigherLogicClient::new(
                &self.credentials.cfg.higher_logic,
                creds,
                self.credentials.cfg.allow_insecure_http,
            )?
            .with_rate_limiter(Arc::clone(&self.limiter)),
        );
        if let Some((_, old)) = current.as_ref() {
            self.retired_calls
                .fetch_add(old.calls_made(), Ordering::SeqCst);
        }
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(client.clone());
        *current = Some((secret.version.clone(), client.clone()));
        Ok((secret.version.clone(), client))
    }

    /// A call's outcome; a rejection of the credentials is recorded against the secret version
    /// and the client dropped, so no call uses that API key again (SPEC §6: stop, as for
    /// Salesforce) until the secret changes.
    async fn outcome<T>(&self, version: &str, result: Result<T, HlError>) -> Result<T, SyncError> {
        match result {
            Ok(value) => Ok(value),
            Err(e) if e.is_credentials_rejected() => {
                self.credentials
                    .record_rejection(
                        Service::HigherLogic,
                        CREDENTIALS_REJECTED_DOC,
                        version,
                        &e.to_string(),
                    )
                    .await;
                let mut current = self.current.lock().await;
                if let Some((_, old)) = current.take() {
                    self.retired_calls
                        .fetch_add(old.calls_made(), Ordering::SeqCst);
                }
                *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Err(SyncError::Rejected {
                    service: Service::HigherLogic,
                    message: format!("{e} (secret {})", self.credentials.secret_id),
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait]
impl Community for HigherLogicCommunity {
    async fn push_members(&self, members: &[Member]) -> Result<Vec<PushResult>, SyncError> {
        let (version, client) = self.client().await?;
        let answer = client.push_members(members).await;
        Ok(results(self.outcome(&version, answer).await?))
    }

    async fn push_meetings(&self, meetings: &[Meeting]) -> Result<Vec<PushResult>, SyncError> {
        let (version, client) = self.client().await?;
        let answer = client.push_meetings(meetings).await;
        Ok(results(self.outcome(&version, answer).await?))
    }

    async fn email_preferences_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<EmailPreferenceChange>, SyncError> {
        let (version, client) = self.client().await?;
        let answer = client.email_preferences_since(since).await;
        Ok(self
            .outcome(&version, answer)
            .await?
            .into_iter()
            .map(|c| EmailPreferenceChange {
                key: c.key,
                do_not_email: c.do_not_email,
                updated_on: c.updated_on,
            })
            .collect())
    }

    fn calls_made(&self) -> u64 {
        let current = self
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |c| c.calls_made());
        self.retired_calls.load(Ordering::SeqCst) + current
    }
}

#[cfg(test)]
mod tests {
    use super::share_of_rate;

    #[test]
    fn concurrent_functions_share_the_rate_limit() {
        assert_eq!(share_of_rate(180, 1).get(), 180);
        assert_eq!(share_of_rate(180, 3).get(), 60);
        assert_eq!(
            share_of_rate(180, 0).get(),
            180,
            "0 means unset: one instance"
        );
        assert_eq!(
            share_of_rate(2, 5).get(),
            1,
            "never below one call a minute"
        );
    }
}
