//! The Higher Logic tenant behind the `Community` port.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hlsync_core::event::{Event, Registration};
use hlsync_core::member::Member;
use hlsync_higher_logic::{HigherLogicClient, HigherLogicCredentials, HlError, RecordResult};
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

/// The Higher Logic client of the current secret version, made on first use.
pub struct HigherLogicCommunity {
    credentials: Arc<Credentials>,
    current: Mutex<Option<(String, Arc<HigherLogicClient>)>>,
    retired_calls: AtomicU64,
    latest: std::sync::Mutex<Option<Arc<HigherLogicClient>>>,
}

impl HigherLogicCommunity {
    pub fn new(credentials: Arc<Credentials>) -> Self {
        HigherLogicCommunity {
            credentials,
            current: Mutex::new(None),
            retired_calls: AtomicU64::new(0),
            latest: std::sync::Mutex::new(None),
        }
    }

    pub async fn client(&self) -> Result<Arc<HigherLogicClient>, SyncError> {
        let secret = self.credentials.get().await?;
        let mut current = self.current.lock().await;
        if let Some((version, client)) = current.as_ref() {
            if *version == secret.version {
                return Ok(Arc::clone(client));
            }
            self.retired_calls
                .fetch_add(client.calls_made(), Ordering::SeqCst);
        }
        let creds = HigherLogicCredentials {
            tenant_code: secret.higher_logic.tenant_code.clone(),
            api_key: secret.higher_logic.api_key.clone(),
        };
        let client = Arc::new(HigherLogicClient::new(
            &self.credentials.cfg.higher_logic,
            creds,
            self.credentials.cfg.allow_insecure_http,
        )?);
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(client.clone());
        *current = Some((secret.version.clone(), client.clone()));
        Ok(client)
    }
}

#[async_trait]
impl Community for HigherLogicCommunity {
    async fn push_members(&self, members: &[Member]) -> Result<Vec<PushResult>, SyncError> {
        let client = self.client().await?;
        Ok(results(client.push_contacts(members).await?))
    }

    async fn push_events(&self, events: &[Event]) -> Result<Vec<PushResult>, SyncError> {
        let client = self.client().await?;
        Ok(results(client.push_events(events).await?))
    }

    async fn push_registrations(
        &self,
        registrations: &[Registration],
    ) -> Result<Vec<PushResult>, SyncError> {
        let client = self.client().await?;
        Ok(results(client.push_registrations(registrations).await?))
    }

    async fn email_preferences_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<EmailPreferenceChange>, SyncError> {
        let client = self.client().await?;
        Ok(client.email_preferences_since(since).await?)
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
