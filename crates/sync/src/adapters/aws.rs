//! DynamoDB state and the SQS work queue behind the pipeline's ports.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hlsync_aws::AwsError;
use hlsync_core::id::SfId;
use serde_json::Value;

use crate::error::{Service, SyncError};
use crate::ports::{Pushed, StateStore, StoredWatermark, WorkQueue};

impl From<AwsError> for SyncError {
    fn from(e: AwsError) -> Self {
        match e {
            AwsError::Conflict { name } => SyncError::Conflict(name),
            e if e.is_retryable() => SyncError::Transient {
                service: Service::Aws,
                message: e.to_string(),
            },
            e => SyncError::Failed {
                service: Some(Service::Aws),
                message: e.to_string(),
            },
        }
    }
}

#[async_trait]
impl StateStore for hlsync_aws::DynamoState {
    async fn watermark(&self, feed: &str) -> Result<StoredWatermark, SyncError> {
        Ok(self.get_watermark(feed).await?)
    }

    async fn save_watermark(
        &self,
        feed: &str,
        at: Option<DateTime<Utc>>,
        checkpoint: Option<String>,
        expected_version: u64,
    ) -> Result<(), SyncError> {
        hlsync_aws::DynamoState::save_watermark(self, feed, at, checkpoint, expected_version)
            .await?;
        Ok(())
    }

    async fn try_lease(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, SyncError> {
        Ok(self.try_acquire_lease(name, owner, ttl).await?)
    }

    async fn reserve_slot(
        &self,
        name: &str,
        interval: Duration,
    ) -> Result<DateTime<Utc>, SyncError> {
        Ok(hlsync_aws::DynamoState::reserve_slot(self, name, interval).await?)
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), SyncError> {
        hlsync_aws::DynamoState::release_lease(self, name, owner).await?;
        Ok(())
    }

    async fn pushed(&self, ids: &[SfId]) -> Result<HashMap<SfId, Pushed>, SyncError> {
        Ok(self.get_pushed(ids).await?)
    }

    async fn record_pushed(&self, items: &[(SfId, Pushed)]) -> Result<Vec<SfId>, SyncError> {
        let keyed: Vec<(String, Pushed)> = items
            .iter()
            .map(|(id, p)| (id.to_string(), p.clone()))
            .collect();
        let refused = self
            .put_pushed_if_newer(hlsync_aws::state::CONTACT_PREFIX, &keyed)
            .await?;
        Ok(refused.iter().filter_map(|k| k.parse().ok()).collect())
    }

    async fn pushed_keys(
        &self,
        prefix: &str,
        keys: &[String],
    ) -> Result<HashMap<String, Pushed>, SyncError> {
        Ok(self.get_pushed_keys(prefix, keys).await?)
    }

    async fn record_pushed_keys(
        &self,
        prefix: &str,
        items: &[(String, Pushed)],
    ) -> Result<(), SyncError> {
        Ok(self.put_pushed_keys(prefix, items).await?)
    }

    async fn get_record(&self, key: &str) -> Result<Option<Value>, SyncError> {
        Ok(hlsync_aws::DynamoState::get_record(self, key).await?)
    }

    async fn put_record(
        &self,
        key: &str,
        value: Value,
        ttl: Option<Duration>,
    ) -> Result<(), SyncError> {
        hlsync_aws::DynamoState::put_record(self, key, &value, ttl).await?;
        Ok(())
    }
}

/// The work queue and its dead-letter queue.
pub struct SqsQueues {
    pub queue: hlsync_aws::SqsQueue,
    pub dlq: hlsync_aws::SqsQueue,
}

#[async_trait]
impl WorkQueue for SqsQueues {
    async fn send(&self, bodies: Vec<String>) -> Result<Vec<usize>, SyncError> {
        let failures = self.queue.send_batch(bodies).await?;
        Ok(failures.into_iter().map(|f| f.index).collect())
    }

    async fn send_later(
        &self,
        bodies: Vec<String>,
        delay: Duration,
    ) -> Result<Vec<usize>, SyncError> {
        let failures = self.queue.send_batch_delayed(bodies, delay).await?;
        Ok(failures.into_iter().map(|f| f.index).collect())
    }

    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), SyncError> {
        self.dlq.send_one(body, Some(reason)).await?;
        Ok(())
    }
}
