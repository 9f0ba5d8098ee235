//! The Higher Logic tenant behind the `Community` port.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hlsync_core::event::Meeting;
use hlsync_core::member::Member;
use hlsync_higher_logic::rate::Acquire;
use hlsync_higher_logic::{
    HigherLogicClient, HigherLogicCredentials, HlError, RateLimitError, RateLimiter, RecordResult,
};
use tokio::sync::Mutex;

use super::calls::CallCount;
use crate::credentials::{Admission, Credentials, Outcome, ParsedSecret};
use crate::error::{Service, SyncError};
use crate::ports::{Community, EmailPreferenceChange, PushResult, StateStore};

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

/// The name of the pace every Higher Logic call takes a slot of.
pub const PACE: &str = "higher-logic";

/// Paces the Higher Logic calls of every function and every CLI run by one sequence of slots in
/// the state table (`max_calls_per_minute` apart): however many run at once, together they stay
/// under the limit, and one of them alone may use all of it (a backfill keeps the budget busy).
/// Each call costs one or two small DynamoDB writes.
pub struct SharedPace {
    state: Arc<dyn StateStore>,
    interval: std::time::Duration,
}

impl SharedPace {
    pub fn new(state: Arc<dyn StateStore>, calls_per_minute: std::num::NonZeroU32) -> Self {
        SharedPace {
            state,
            interval: std::time::Duration::from_mins(1) / calls_per_minute.get(),
        }
    }
}

impl RateLimiter for SharedPace {
    fn acquire(&self) -> Acquire<'_> {
        Box::pin(async move {
            let slot = self
                .state
                .reserve_slot(PACE, self.interval)
                .await
                .map_err(|e| RateLimitError(e.to_string()))?;
            if let Ok(wait) = (slot - Utc::now()).to_std() {
                tokio::time::sleep(wait).await;
            }
            Ok(())
        })
    }
}

/// The Higher Logic client of the current secret version, made on first use.
pub struct HigherLogicCommunity {
    credentials: Arc<Credentials>,
    /// Outlives clients: a secret rotation does not reset the pacing.
    limiter: Arc<dyn RateLimiter>,
    current: Mutex<Option<(Arc<ParsedSecret>, Arc<HigherLogicClient>)>>,
    calls: CallCount<Arc<HigherLogicClient>>,
}

impl HigherLogicCommunity {
    /// Paced by `limiter` (in the functions and the CLI: a [`SharedPace`]).
    pub fn new(credentials: Arc<Credentials>, limiter: Arc<dyn RateLimiter>) -> Self {
        HigherLogicCommunity {
            limiter,
            credentials,
            current: Mutex::new(None),
            calls: CallCount::new(|client| client.calls_made()),
        }
    }

    /// The client for the secret's current version, and that secret; refuses when Higher
    /// Logic rejected its API key before.
    pub async fn client(&self) -> Result<(Arc<ParsedSecret>, Arc<HigherLogicClient>), SyncError> {
        let secret = self.credentials.get().await?;
        let mut current = self.current.lock().await;
        if let Some((held, client)) = current.as_ref()
            && held.version == secret.version
        {
            return Ok((Arc::clone(held), Arc::clone(client)));
        }
        let secret = self.credentials.usable_for(Service::HigherLogic).await?;
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
        self.calls
            .switch(current.as_ref().map(|(_, old)| old), Some(client.clone()));
        *current = Some((Arc::clone(&secret), client.clone()));
        Ok((secret, client))
    }

    /// Runs one call with the current credentials. Until some function has seen the API key
    /// work, calls are made one at a time across functions ([`Credentials::admit`]), so a bad key
    /// is refused once, not once per concurrent caller. A rejection is recorded, so no call uses
    /// that key again (SPEC §6: stop, as for Salesforce) until the secret changes.
    async fn call<T, F, Fut>(&self, call: F) -> Result<T, SyncError>
    where
        F: FnOnce(Arc<HigherLogicClient>) -> Fut,
        Fut: std::future::Future<Output = Result<T, HlError>>,
    {
        let (secret, client) = self.client().await?;
        let admission = self
            .credentials
            .admit(Service::HigherLogic, &secret)
            .await?;
        let result = call(client).await;
        let outcome = match &result {
            Ok(_) => Outcome::Accepted,
            Err(e) if e.is_credentials_rejected() => {
                self.credentials
                    .record_rejection(Service::HigherLogic, &secret, &e.to_string())
                    .await;
                let mut current = self.current.lock().await;
                let replaced = current.take();
                self.calls
                    .switch(replaced.as_ref().map(|(_, old)| old), None);
                Outcome::Rejected
            }
            // No answer about the key (an outage, the network): the next call tries again.
            Err(e) if e.is_retryable() => Outcome::Unknown,
            // Higher Logic answered, so it took the key.
            Err(_) => Outcome::Accepted,
        };
        if let Admission::FirstUse(first_use) = admission {
            self.credentials.finish(first_use, outcome).await;
        }
        result.map_err(|e| match e {
            e if e.is_credentials_rejected() => SyncError::Rejected {
                service: Service::HigherLogic,
                message: format!("{e} (secret {})", self.credentials.secret_id),
            },
            e => e.into(),
        })
    }
}

#[async_trait]
impl Community for HigherLogicCommunity {
    async fn push_members(&self, members: &[Member]) -> Result<Vec<PushResult>, SyncError> {
        let answer = self
            .call(|client| async move { client.push_members(members).await })
            .await?;
        Ok(results(answer))
    }

    async fn push_meetings(&self, meetings: &[Meeting]) -> Result<Vec<PushResult>, SyncError> {
        let answer = self
            .call(|client| async move { client.push_meetings(meetings).await })
            .await?;
        Ok(results(answer))
    }

    async fn email_preferences_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<EmailPreferenceChange>, SyncError> {
        let answer = self
            .call(|client| async move { client.email_preferences_since(since).await })
            .await?;
        Ok(answer
            .into_iter()
            .map(|c| EmailPreferenceChange {
                key: c.key,
                do_not_email: c.do_not_email,
                updated_on: c.updated_on,
            })
            .collect())
    }

    fn calls_made(&self) -> u64 {
        self.calls.total()
    }
}
