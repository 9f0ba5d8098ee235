//! The SQS work queue between Periodic Refresh and Member Refresh, its dead-letter queue, and
//! the redrive from one to the other.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::BuildError;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::backoff::backoff;
use crate::error::{AwsError, Service, aws, error_code};

/// SQS's limit of entries per batch call.
const BATCH_MAX: usize = 10;
/// SQS's limit on a batch's total payload (the sum of the bodies).
const BATCH_BYTES: usize = 256 * 1024;
/// Batches in flight at once.
const CONCURRENT_BATCHES: usize = 8;
/// Attempts at entries that SQS refused through no fault of ours.
const SEND_ATTEMPTS: u32 = 4;
/// 14 days, SQS's longest retention: the time an operator has to look at a dead letter.
pub const DLQ_RETENTION: Duration = Duration::from_hours(336);
/// Long enough to send and delete a batch; a message not moved by then reappears on the DLQ.
const REDRIVE_VISIBILITY: Duration = Duration::from_mins(1);
/// The message attribute that says why a message was dead-lettered directly.
pub const REASON_ATTRIBUTE: &str = "hlsync-reason";
/// SQS's longest message delay.
const MAX_DELAY_SECONDS: u64 = 900;

/// One message that was not accepted, by its index in what was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    pub index: usize,
    pub code: String,
    pub message: String,
}

/// One receipt handle whose message was not deleted (or whose visibility was not changed), by its
/// index in what was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteFailure {
    pub index: usize,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// 1 on the first delivery.
    pub receive_count: u32,
}

/// SQS's approximate counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub visible: u64,
    /// Received and not yet deleted or returned.
    pub in_flight: u64,
    pub delayed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedriveMethod {
    /// SQS moves the messages itself, in the background; `moved` is the count when it started.
    MoveTask { task_handle: String },
    /// Received from the DLQ, sent to the queue, then deleted from the DLQ (emulators, or `max`).
    Copy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedriveReport {
    pub moved: usize,
    /// Messages received but not sent; they stay on the DLQ.
    pub failed: usize,
    pub method: RedriveMethod,
}

/// Works receipt handles in batches of 10, a few batches at a time: what `one` reports not done,
/// by index in `receipt_handles`, in order.
async fn in_batches<'a, F, Fut>(
    receipt_handles: &'a [String],
    one: F,
) -> Result<Vec<DeleteFailure>, AwsError>
where
    F: Fn(Vec<(usize, &'a String)>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<DeleteFailure>, AwsError>>,
{
    let batches: Vec<Vec<(usize, &String)>> = receipt_handles
        .iter()
        .enumerate()
        .collect::<Vec<_>>()
        .chunks(BATCH_MAX)
        .map(<[_]>::to_vec)
        .collect();
    let failures: Vec<Vec<DeleteFailure>> = stream::iter(batches)
        .map(one)
        .buffer_unordered(CONCURRENT_BATCHES)
        .try_collect()
        .await?;
    let mut failures: Vec<DeleteFailure> = failures.into_iter().flatten().collect();
    failures.sort_by_key(|f| f.index);
    Ok(failures)
}

/// A batch call's failed entries, by the index each entry's id carries.
fn by_index(failed: Vec<aws_sdk_sqs::types::BatchResultErrorEntry>) -> Vec<DeleteFailure> {
    failed
        .into_iter()
        .filter_map(|f| {
            Some(DeleteFailure {
                index: f.id.parse().ok()?,
                code: f.code,
                message: f.message.unwrap_or_default(),
            })
        })
        .collect()
}

/// One SQS queue, by URL. The sync crate's `WorkQueue` port is `SqsQueues`: the work queue and
/// its dead-letter queue, each one of these.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            url: url.into(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends the bodies in batches of 10, several batches at once. Entries SQS refuses through
    /// no fault of ours are retried a few times; what still fails is returned, by index, sorted.
    pub async fn send_batch(&self, bodies: Vec<String>) -> Result<Vec<SendFailure>, AwsError> {
        self.send_batch_delayed(bodies, Duration::ZERO).await
    }

    /// As [`SqsQueue::send_batch`], the messages becoming visible only after `delay` (SQS
    /// allows up to 15 minutes; longer is cut to that).
    pub async fn send_batch_delayed(
        &self,
        bodies: Vec<String>,
        delay: Duration,
    ) -> Result<Vec<SendFailure>, AwsError> {
        let delay_seconds = i32::try_from(delay.as_secs().min(MAX_DELAY_SECONDS)).unwrap_or(0);
        let batches = split_batches(bodies.into_iter().enumerate().collect());
        let failures: Vec<Vec<SendFailure>> = stream::iter(batches)
            .map(|batch| self.send_one_batch(batch, delay_seconds))
            .buffer_unordered(CONCURRENT_BATCHES)
            .try_collect()
            .await?;
        let mut failures: Vec<SendFailure> = failures.into_iter().flatten().collect();
        failures.sort_by_key(|f| f.index);
        Ok(failures)
    }

    async fn send_one_batch(
        &self,
        mut batch: Vec<(usize, String)>,
        delay_seconds: i32,
    ) -> Result<Vec<SendFailure>, AwsError> {
        let mut failures = Vec::new();
        for attempt in 0..SEND_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let entries = batch
                .iter()
                .map(|(index, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .message_body(body)
                        .delay_seconds(delay_seconds)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(self.invalid())?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(aws(Service::Sqs, "SendMessageBatch", &self.url))?;
            let mut retry = HashSet::new();
            for failed in out.failed {
                let Ok(index) = failed.id.parse::<usize>() else {
                    continue;
                };
                let last_attempt = attempt + 1 == SEND_ATTEMPTS;
                if failed.sender_fault || last_attempt {
                    failures.push(SendFailure {
                        index,
                        code: failed.code,
                        message: failed.message.unwrap_or_default(),
                    });
                } else {
                    retry.insert(index);
                }
            }
            batch.retain(|(index, _)| retry.contains(index));
            if batch.is_empty() {
                break;
            }
        }
        Ok(failures)
    }

    /// Sends one message, with the reason it is sent (dead letters put there on purpose).
    pub async fn send_one(&self, body: &str, reason: Option<&str>) -> Result<String, AwsError> {
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body);
        if let Some(reason) = reason {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(reason)
                .build()
                .map_err(self.invalid())?;
            request = request.message_attributes(REASON_ATTRIBUTE, value);
        }
        let out = request
            .send()
            .await
            .map_err(aws(Service::Sqs, "SendMessage", &self.url))?;
        Ok(out.message_id.unwrap_or_default())
    }

    /// Up to `max` (at most 10) messages; `visibility_timeout` overrides the queue's; waits up to
    /// `wait_time` (at most 20 s) for the first one.
    pub async fn receive(
        &self,
        max: usize,
        visibility_timeout: Option<Duration>,
        wait_time: Duration,
    ) -> Result<Vec<Received>, AwsError> {
        let max = max.clamp(1, BATCH_MAX);
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(i32::try_from(max).unwrap_or(10))
            .set_visibility_timeout(visibility_timeout.map(seconds))
            .wait_time_seconds(seconds(wait_time).min(20))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(aws(Service::Sqs, "ReceiveMessage", &self.url))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Some(Received {
                    message_id: m.message_id?,
                    receipt_handle: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    receive_count,
                })
            })
            .collect())
    }

    /// Deletes received messages in batches of 10; what was not deleted is returned by index.
    pub async fn delete_batch(
        &self,
        receipt_handles: &[String],
    ) -> Result<Vec<DeleteFailure>, AwsError> {
        in_batches(receipt_handles, |batch| self.delete_one_batch(batch)).await
    }

    async fn delete_one_batch(
        &self,
        batch: Vec<(usize, &String)>,
    ) -> Result<Vec<DeleteFailure>, AwsError> {
        let entries = batch
            .iter()
            .map(|(index, handle)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(*handle)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.invalid())?;
        let out = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(aws(Service::Sqs, "DeleteMessageBatch", &self.url))?;
        Ok(by_index(out.failed))
    }

    /// Hides a received message for `timeout` more (0: makes it visible again now).
    pub async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), AwsError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds(timeout))
            .send()
            .await
            .map_err(aws(Service::Sqs, "ChangeMessageVisibility", &self.url))?;
        Ok(())
    }

    /// Hides received messages for `timeout` more, in batches of 10 (a consumer whose work
    /// outlasts the visibility timeout keeps its messages this way). What was not changed (the
    /// message was deleted, or received again by someone else) is returned by index.
    pub async fn change_visibility_batch(
        &self,
        receipt_handles: &[String],
        timeout: Duration,
    ) -> Result<Vec<DeleteFailure>, AwsError> {
        in_batches(receipt_handles, |batch| {
            self.change_visibility_one_batch(batch, timeout)
        })
        .await
    }

    async fn change_visibility_one_batch(
        &self,
        batch: Vec<(usize, &String)>,
        timeout: Duration,
    ) -> Result<Vec<DeleteFailure>, AwsError> {
        let entries = batch
            .iter()
            .map(|(index, handle)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(*handle)
                    .visibility_timeout(seconds(timeout))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.invalid())?;
        let out = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(aws(Service::Sqs, "ChangeMessageVisibilityBatch", &self.url))?;
        Ok(by_index(out.failed))
    }

    /// SQS's approximate counts. (The age of the oldest message is a CloudWatch metric, not a
    /// queue attribute, so it is not read here.)
    pub async fn depth(&self) -> Result<QueueDepth, AwsError> {
        let attributes = self
            .attributes(&[
                QueueAttributeName::ApproximateNumberOfMessages,
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                QueueAttributeName::ApproximateNumberOfMessagesDelayed,
            ])
            .await?;
        let count = |name: &QueueAttributeName| {
            attributes
                .get(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(QueueDepth {
            visible: count(&QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: count(&QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        })
    }

    pub async fn arn(&self) -> Result<String, AwsError> {
        self.attributes(&[QueueAttributeName::QueueArn])
            .await?
            .remove(&QueueAttributeName::QueueArn)
            .ok_or_else(|| AwsError::Invalid {
                resource: self.url.clone(),
                message: "SQS returned no QueueArn".into(),
            })
    }

    async fn attributes(
        &self,
        names: &[QueueAttributeName],
    ) -> Result<HashMap<QueueAttributeName, String>, AwsError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .set_attribute_names(Some(names.to_vec()))
            .send()
            .await
            .map_err(aws(Service::Sqs, "GetQueueAttributes", &self.url))?;
        Ok(out.attributes.unwrap_or_default())
    }

    fn invalid(&self) -> impl FnOnce(BuildError) -> AwsError + '_ {
        |err| AwsError::Invalid {
            resource: self.url.clone(),
            message: err.to_string(),
        }
    }
}

/// Moves messages from the dead-letter queue back to `target_url`. Without `max`, SQS's own move
/// task does it when the endpoint offers one; otherwise (emulators, or a bounded move) messages
/// are received, sent and deleted ten at a time, and a message is deleted only once it was sent.
pub async fn redrive(
    client: &Client,
    dlq_url: &str,
    target_url: &str,
    max: Option<usize>,
) -> Result<RedriveReport, AwsError> {
    let source = SqsQueue::new(client.clone(), dlq_url);
    let target = SqsQueue::new(client.clone(), target_url);
    if max.is_none() {
        let waiting = source.depth().await?.visible;
        let (source_arn, target_arn) = (source.arn().await?, target.arn().await?);
        // No retries: an endpoint without the operation answers 500, and retrying that only
        // delays the copy that follows.
        let started = client
            .start_message_move_task()
            .source_arn(&source_arn)
            .destination_arn(&target_arn)
            .customize()
            .config_override(
                aws_sdk_sqs::config::Builder::default()
                    .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled()),
            )
            .send()
            .await;
        match started {
            Ok(out) => {
                return Ok(RedriveReport {
                    moved: usize::try_from(waiting).unwrap_or(usize::MAX),
                    failed: 0,
                    method: RedriveMethod::MoveTask {
                        task_handle: out.task_handle.unwrap_or_default(),
                    },
                });
            }
            // Any answer from the service (not supported, not allowed, a move already
            // running...) leaves the copy, which needs only receive/send/delete rights.
            Err(err @ aws_sdk_sqs::error::SdkError::ServiceError(_)) => {
                tracing::info!(
                    dlq = dlq_url,
                    code = error_code(&err).unwrap_or_default(),
                    "StartMessageMoveTask unavailable; copying messages instead"
                );
            }
            Err(err) => return Err(aws(Service::Sqs, "StartMessageMoveTask", dlq_url)(err)),
        }
    }
    copy_messages(&source, &target, max).await
}

async fn copy_messages(
    source: &SqsQueue,
    target: &SqsQueue,
    max: Option<usize>,
) -> Result<RedriveReport, AwsError> {
    // A short poll can miss messages that are there (it samples SQS's servers): a few empty
    // long polls in a row, with the depth saying nothing is visible, mean it is done.
    const EMPTY_POLLS: u32 = 3;
    let mut moved = 0;
    let mut failed = 0;
    let mut empty = 0;
    loop {
        let want = max.map_or(BATCH_MAX, |m| m.saturating_sub(moved).min(BATCH_MAX));
        if want == 0 {
            break;
        }
        let wait = if empty == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs(1)
        };
        let received = source.receive(want, Some(REDRIVE_VISIBILITY), wait).await?;
        if received.is_empty() {
            empty += 1;
            if empty >= EMPTY_POLLS || source.depth().await?.visible == 0 {
                break;
            }
            continue;
        }
        empty = 0;
        let bodies = received.iter().map(|m| m.body.clone()).collect();
        let not_sent: HashSet<usize> = target
            .send_batch(bodies)
            .await?
            .into_iter()
            .map(|f| f.index)
            .collect();
        let sent: Vec<String> = received
            .iter()
            .enumerate()
            .filter(|(i, _)| !not_sent.contains(i))
            .map(|(_, m)| m.receipt_handle.clone())
            .collect();
        let undeleted = source.delete_batch(&sent).await?;
        if !undeleted.is_empty() {
            // They reappear on the DLQ and would be moved twice: harmless, the push is idempotent.
            tracing::warn!(
                count = undeleted.len(),
                dlq = source.url(),
                "moved messages not deleted from the DLQ"
            );
        }
        moved += sent.len();
        failed += not_sent.len();
    }
    Ok(RedriveReport {
        moved,
        failed,
        method: RedriveMethod::Copy,
    })
}

/// The URL of the queue `name`.
pub async fn queue_url(client: &Client, name: &str) -> Result<String, AwsError> {
    let out = client
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(aws(Service::Sqs, "GetQueueUrl", name))?;
    out.queue_url.ok_or_else(|| AwsError::QueueMissing {
        queue: name.to_owned(),
    })
}

/// Creates (or brings up to date) the work queue and its dead-letter queue: the DLQ keeps
/// messages 14 days; the queue sends a message there after `max_receive_count` receives.
/// Returns `(queue_url, dlq_url)`.
pub async fn create_queue_pair(
    client: &Client,
    name: &str,
    dlq_name: &str,
    max_receive_count: u32,
    visibility_timeout: Duration,
) -> Result<(String, String), AwsError> {
    let dlq_url = ensure_queue(
        client,
        dlq_name,
        HashMap::from([(
            QueueAttributeName::MessageRetentionPeriod,
            DLQ_RETENTION.as_secs().to_string(),
        )]),
    )
    .await?;
    let dlq_arn = SqsQueue::new(client.clone(), &dlq_url).arn().await?;
    let redrive_policy = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receive_count.to_string(),
    });
    let url = ensure_queue(
        client,
        name,
        HashMap::from([
            (
                QueueAttributeName::VisibilityTimeout,
                seconds(visibility_timeout).to_string(),
            ),
            (
                QueueAttributeName::RedrivePolicy,
                redrive_policy.to_string(),
            ),
        ]),
    )
    .await?;
    Ok((url, dlq_url))
}

async fn ensure_queue(
    client: &Client,
    name: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> Result<String, AwsError> {
    let created = client
        .create_queue()
        .queue_name(name)
        .set_attributes(Some(attributes.clone()))
        .send()
        .await;
    let url = match created {
        Ok(out) => match out.queue_url {
            Some(url) => url,
            None => queue_url(client, name).await?,
        },
        // It exists with other attributes: find it, and the attributes are set below.
        Err(err)
            if matches!(
                error_code(&err),
                Some(
                    "QueueAlreadyExists"
                        | "QueueNameExists"
                        | "AWS.SimpleQueueService.QueueNameExists"
                )
            ) =>
        {
            queue_url(client, name).await?
        }
        Err(err) => return Err(aws(Service::Sqs, "CreateQueue", name)(err)),
    };
    // Set them every time, so that re-provisioning brings an older queue up to date.
    client
        .set_queue_attributes()
        .queue_url(&url)
        .set_attributes(Some(attributes))
        .send()
        .await
        .map_err(aws(Service::Sqs, "SetQueueAttributes", name))?;
    Ok(url)
}

/// Splits indexed bodies into batches of at most 10 entries and 256 KiB.
fn split_batches(bodies: Vec<(usize, String)>) -> Vec<Vec<(usize, String)>> {
    let mut batches = Vec::new();
    let mut current: Vec<(usize, String)> = Vec::new();
    let mut bytes = 0;
    for (index, body) in bodies {
        let full = current.len() == BATCH_MAX || bytes + body.len() > BATCH_BYTES;
        if full && !current.is_empty() {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += body.len();
        current.push((index, body));
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_ten_entries_and_keep_indexes() {
        let bodies = (0..35).map(|i| (i, format!("m{i}"))).collect();
        let batches = split_batches(bodies);
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![10, 10, 10, 5]);
        let indexes: Vec<usize> = batches.iter().flatten().map(|(i, _)| *i).collect();
        assert_eq!(indexes, (0..35).collect::<Vec<_>>());
    }

    #[test]
    fn batches_respect_the_payload_limit() {
        let big = "x".repeat(100 * 1024);
        let bodies = (0..5).map(|i| (i, big.clone())).collect();
        let sizes: Vec<usize> = split_batches(bodies).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 2, 1]);
    }

    #[test]
    fn empty_input_makes_no_batch() {
        assert!(split_batches(Vec::new()).is_empty());
    }
}
