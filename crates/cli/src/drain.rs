//! `member-refresh --drain`: the SQS event source mapping, emulated. It receives batches, hands
//! them to the same handler as the Lambda (`Runtime::member_refresh`), deletes what succeeded and
//! returns the failed messages to the queue, where SQS's redrive policy moves a message to the
//! DLQ after its fifth receive.
//!
//! One difference on purpose: a failed message is made visible again at once (Lambda would wait
//! for the visibility timeout), so that a local drain finishes in seconds rather than minutes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hlsync_sync::Deadline;
use hlsync_sync::member::{IncomingMessage, MemberReport};
use hlsync_sync::runtime::Runtime;
use serde::Serialize;

use crate::output::progress;

/// How long a received message stays invisible while its batch is worked.
pub const VISIBILITY: Duration = Duration::from_secs(120);
/// Empty receives in a row, while messages are in flight elsewhere, before a drain gives up.
const MAX_IDLE_ROUNDS: u32 = 20;

#[derive(Debug, Default, Clone, Serialize)]
pub struct DrainReport {
    pub batches: u64,
    /// Messages in the largest batch handed to the handler.
    pub largest_batch: u64,
    pub messages: u64,
    pub contacts: u64,
    pub pushed: u64,
    pub meetings_pushed: u64,
    pub registrations_pushed: u64,
    pub skipped_unchanged: u64,
    pub already_current: u64,
    pub deactivated: u64,
    pub deleted: u64,
    pub dead_lettered: u64,
    /// Message deliveries that failed (a message failing 5 times counts 5).
    pub failed_deliveries: u64,
    pub salesforce_calls: u64,
    pub higher_logic_calls: u64,
}

impl DrainReport {
    fn add(&mut self, r: &MemberReport) {
        self.batches += 1;
        self.largest_batch = self.largest_batch.max(r.received);
        self.messages += r.received;
        self.contacts += r.contacts;
        self.pushed += r.pushed;
        self.meetings_pushed += r.meetings_pushed;
        self.registrations_pushed += r.registrations_pushed;
        self.skipped_unchanged += r.skipped_unchanged;
        self.already_current += r.already_current;
        self.deactivated += r.deactivated;
        self.deleted += r.deleted;
        self.dead_lettered += r.dead_lettered;
        self.failed_deliveries += r.failed_message_ids.len() as u64;
        self.salesforce_calls += r.salesforce_calls;
        self.higher_logic_calls += r.higher_logic_calls;
    }
}

/// How a drain receives its batches.
#[derive(Debug, Clone)]
pub struct DrainOptions {
    /// Messages per batch handed to the handler (the event source's BatchSize).
    pub batch_size: usize,
    /// The visibility timeout asked for on each receive ([`VISIBILITY`]; tests shrink it).
    pub visibility: Duration,
}

impl DrainOptions {
    pub fn new(batch_size: usize) -> Self {
        DrainOptions {
            batch_size,
            visibility: VISIBILITY,
        }
    }
}

/// Receives up to `batch_size` messages, the way the event source batches them.
async fn receive_batch(
    rt: &Runtime,
    opts: &DrainOptions,
) -> anyhow::Result<Vec<hlsync_aws::Received>> {
    let batch_size = opts.batch_size;
    let mut batch = Vec::new();
    while batch.len() < batch_size {
        let want = (batch_size - batch.len()).min(10);
        let got = rt
            .queues
            .queue
            .receive(want, Some(opts.visibility), Duration::ZERO)
            .await?;
        if got.is_empty() {
            break;
        }
        batch.extend(got);
    }
    Ok(batch)
}

/// What the event source does with a batch's answer: deletes the messages that succeeded and
/// makes the failed ones visible again (at once: see the module comment). Returns how many
/// could not be deleted.
async fn settle(
    rt: &Runtime,
    received: &[hlsync_aws::Received],
    report: &MemberReport,
) -> anyhow::Result<usize> {
    let failed: std::collections::HashSet<&str> = report
        .failed_message_ids
        .iter()
        .map(String::as_str)
        .collect();
    let done: Vec<String> = received
        .iter()
        .filter(|m| !failed.contains(m.message_id.as_str()))
        .map(|m| m.receipt_handle.clone())
        .collect();
    let not_deleted = rt.queues.queue.delete_batch(&done).await?;
    for m in received
        .iter()
        .filter(|m| failed.contains(m.message_id.as_str()))
    {
        rt.queues
            .queue
            .change_visibility(&m.receipt_handle, Duration::ZERO)
            .await?;
    }
    Ok(not_deleted.len())
}

pub async fn drain(rt: &Runtime, batch_size: usize, json: bool) -> anyhow::Result<DrainReport> {
    drain_until(rt, batch_size, json, &AtomicBool::new(true)).await
}

/// Drains while a producer may still be sending (as the event source polls while the Periodic
/// Refresh fans out): an empty queue ends the drain only once `producer_done` is set.
pub async fn drain_until(
    rt: &Runtime,
    batch_size: usize,
    json: bool,
    producer_done: &AtomicBool,
) -> anyhow::Result<DrainReport> {
    drain_with(rt, &DrainOptions::new(batch_size), json, producer_done).await
}

/// [`drain_until`] with every option.
pub async fn drain_with(
    rt: &Runtime,
    opts: &DrainOptions,
    json: bool,
    producer_done: &AtomicBool,
) -> anyhow::Result<DrainReport> {
    let opts = DrainOptions {
        batch_size: opts.batch_size.clamp(1, 10_000),
        ..opts.clone()
    };
    let mut total = DrainReport::default();
    let mut idle_rounds = 0;
    loop {
        let received = receive_batch(rt, &opts).await?;
        if received.is_empty() {
            if !producer_done.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let depth = rt.queues.queue.depth().await?;
            if depth.visible == 0 && depth.in_flight == 0 && depth.delayed == 0 {
                break;
            }
            // Messages still in flight elsewhere (another consumer); wait for them briefly.
            idle_rounds += 1;
            if idle_rounds > MAX_IDLE_ROUNDS {
                progress(
                    json,
                    format!(
                        "member-refresh: {} messages still in flight elsewhere; stopping",
                        depth.in_flight
                    ),
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let messages: Vec<IncomingMessage> = received
            .iter()
            .map(|m| IncomingMessage {
                message_id: m.message_id.clone(),
                body: m.body.clone(),
            })
            .collect();
        let report = match rt.member_refresh(messages, &Deadline::none()).await {
            Ok(report) => report,
            Err(failure) => {
                // The whole batch could not be worked: what was dead-lettered is done with, the
                // rest goes back on the queue, and the drain stops.
                settle(rt, &received, &failure.report).await?;
                return Err(failure.error.into());
            }
        };
        total.add(&report);
        let not_deleted = settle(rt, &received, &report).await?;
        if not_deleted > 0 {
            progress(
                json,
                format!(
                    "member-refresh: {not_deleted} messages could not be deleted and will be seen again"
                ),
            );
        }
        idle_rounds = 0;
        progress(
            json,
            format!(
                "member-refresh: batch {}: {} messages, {} pushed, {} unchanged, {} failed (total {} messages)",
                total.batches,
                report.received,
                report.pushed,
                report.skipped_unchanged + report.already_current,
                report.failed_message_ids.len(),
                total.messages
            ),
        );
    }
    Ok(total)
}
