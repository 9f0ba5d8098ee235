//! `member-refresh --drain`: the SQS event source mapping, emulated. It receives batches, hands
//! them to the same handler as the Lambda (`Runtime::member_refresh`), deletes what succeeded and
//! returns the failed messages to the queue, where SQS's redrive policy moves a message to the
//! DLQ after its fifth receive.
//!
//! How long a batch is held (issue 10). Every received message is hidden for the visibility
//! timeout; one still held when it ends comes back, is received again, and after five receives
//! goes to the DLQ without ever having been worked. The drain used to gather a full batch (500
//! messages, ten a receive) however long that took, and on a slow queue it took longer than the
//! timeout: moto spends time in proportion to the messages it holds on each message it returns
//! (about 12 a second with 500 queued, under 2 with 5,000), so the first messages of a batch
//! kept coming back into it while it was gathered, and walked to the DLQ. Now, as the event
//! source does, a batch is handed over when it is full or when its batching window
//! ([`BATCHING_WINDOW`], the stack's default) has passed since its first receive; the window is a
//! bound on waiting, looked at between receives. The visibility timeout is a hard bound: a
//! batch is handed over before half of it has passed, and a receive is not started when, judged
//! by the slowest receive of the batch so far, it would end after that (one receive can take
//! seconds on moto). With the default two minutes the window always comes first; the bound
//! matters when the timeout is short (tests) or a single receive is very slow. A message received
//! twice while its batch is gathered (SQS may deliver a message more than once) is kept once,
//! with the receipt handle of its latest receive, the one SQS honours.
//!
//! While the handler works a batch, its messages are hidden again for the whole timeout each
//! time half of it has passed. The Lambda needs no such thing (its timeout is below the
//! visibility timeout), but a drain has no deadline: a batch slowed by Salesforce or by Higher
//! Logic's `Retry-After` would otherwise come back to another consumer (a second drain, or the
//! deployed function), be worked twice and count receives towards the DLQ.
//!
//! One difference on purpose: a failed message is made visible again at once (Lambda would wait
//! for the visibility timeout), so that a local drain finishes in seconds rather than minutes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hlsync_aws::{Received, SqsQueue};
use hlsync_sync::Deadline;
use hlsync_sync::member::{IncomingMessage, MemberReport};
use hlsync_sync::runtime::Runtime;
use serde::Serialize;
use tokio::time::Instant;
use tracing::warn;

use crate::output::Progress;

/// How long a received message stays invisible while its batch is gathered and worked.
pub const VISIBILITY: Duration = Duration::from_mins(2);
/// How long a batch may gather after its first receive before it is handed over, full or not
/// (the event source's `MaximumBatchingWindowInSeconds`; the stack's default).
pub const BATCHING_WINDOW: Duration = Duration::from_secs(5);
/// SQS's most messages per receive, and entries per batch call.
const SQS_BATCH_MAX: usize = 10;
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

/// How a drain gathers its batches.
#[derive(Debug, Clone)]
pub struct DrainOptions {
    /// Most messages per batch handed to the handler (the event source's BatchSize).
    pub batch_size: usize,
    /// [`BATCHING_WINDOW`]; tests change it.
    pub batching_window: Duration,
    /// The visibility timeout asked for on each receive ([`VISIBILITY`]; tests shrink it).
    pub visibility: Duration,
}

impl DrainOptions {
    pub fn new(batch_size: usize) -> Self {
        DrainOptions {
            batch_size,
            batching_window: BATCHING_WINDOW,
            visibility: VISIBILITY,
        }
    }

    /// Whether a batch whose first receive was sent `held` ago is due, when the slowest receive
    /// of it so far took `slowest` (see the module comment).
    fn due(&self, held: Duration, slowest: Duration) -> bool {
        held >= self.batching_window || held + slowest >= self.visibility / 2
    }
}

/// A batch as gathered: each message once, with the receipt handle of its latest receive.
struct Batch {
    messages: Vec<Received>,
    /// When the receive that brought its first messages was sent: their visibility timeout
    /// started no earlier.
    first_receive: Instant,
}

/// Receives up to `batch_size` messages, the way the event source batches them (see the module
/// comment). `None` when the queue had nothing visible.
async fn gather(queue: &SqsQueue, opts: &DrainOptions) -> anyhow::Result<Option<Batch>> {
    let mut messages: Vec<Received> = Vec::new();
    let mut position: HashMap<String, usize> = HashMap::new();
    let mut first_receive: Option<Instant> = None;
    let mut slowest = Duration::ZERO;
    while messages.len() < opts.batch_size {
        if first_receive.is_some_and(|first| opts.due(first.elapsed(), slowest)) {
            break;
        }
        let want = (opts.batch_size - messages.len()).min(SQS_BATCH_MAX);
        let sent = Instant::now();
        let got = queue
            .receive(want, Some(opts.visibility), Duration::ZERO)
            .await?;
        slowest = slowest.max(sent.elapsed());
        if got.is_empty() {
            break;
        }
        first_receive.get_or_insert(sent);
        add_received(&mut messages, &mut position, got);
    }
    Ok(first_receive.map(|first_receive| Batch {
        messages,
        first_receive,
    }))
}

/// Adds what a receive returned to a batch (`position`: where each message id is in it). A
/// message already there keeps its place and takes the new receipt handle.
fn add_received(
    messages: &mut Vec<Received>,
    position: &mut HashMap<String, usize>,
    got: Vec<Received>,
) {
    for m in got {
        if let Some(&at) = position.get(&m.message_id) {
            messages[at] = m;
        } else {
            position.insert(m.message_id.clone(), messages.len());
            messages.push(m);
        }
    }
}

/// Runs `work` while keeping the batch's messages hidden (see the module comment).
async fn keeping_hidden<T>(
    queue: &SqsQueue,
    batch: &Batch,
    visibility: Duration,
    work: impl Future<Output = T>,
) -> T {
    tokio::select! {
        out = work => out,
        never = hide_again(queue, batch, visibility) => match never {},
    }
}

/// Every time half the visibility timeout has passed since it was last set, sets it again for
/// the batch's messages. Never ends: it is dropped when the work is done.
async fn hide_again(queue: &SqsQueue, batch: &Batch, visibility: Duration) -> Infallible {
    let handles: Vec<String> = batch
        .messages
        .iter()
        .map(|m| m.receipt_handle.clone())
        .collect();
    let mut set_at = batch.first_receive;
    loop {
        tokio::time::sleep_until(set_at + visibility / 2).await;
        set_at = Instant::now();
        match queue.change_visibility_batch(&handles, visibility).await {
            Ok(failed) if failed.is_empty() => {}
            Ok(failed) => warn!(
                count = failed.len(),
                code = %failed[0].code,
                "messages of the batch could not be kept hidden; they may be worked twice"
            ),
            Err(e) => warn!(
                error = %e,
                "could not keep the batch's messages hidden; they may be worked twice"
            ),
        }
    }
}

/// What the event source does with a batch's answer: deletes the messages that succeeded and
/// makes the failed ones visible again (at once: see the module comment). Returns how many
/// could not be deleted.
async fn settle(
    rt: &Runtime,
    received: &[Received],
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
    // One DeleteMessageBatch at a time: moto rebuilds its list of messages on each delete without
    // a lock, so concurrent deletes undo one another and deleted messages come back, to be worked
    // again. (SQS has no such trouble; the deletes are a small part of a batch's time.)
    let mut not_deleted = 0;
    for handles in done.chunks(SQS_BATCH_MAX) {
        not_deleted += rt.queues.queue.delete_batch(handles).await?.len();
    }
    for m in received
        .iter()
        .filter(|m| failed.contains(m.message_id.as_str()))
    {
        rt.queues
            .queue
            .change_visibility(&m.receipt_handle, Duration::ZERO)
            .await?;
    }
    Ok(not_deleted)
}

pub async fn drain(
    rt: &Runtime,
    batch_size: usize,
    progress: &Progress,
) -> anyhow::Result<DrainReport> {
    drain_until(rt, batch_size, progress, &AtomicBool::new(true)).await
}

/// Drains while a producer may still be sending (as the event source polls while the Periodic
/// Refresh fans out): an empty queue ends the drain only once `producer_done` is set.
pub async fn drain_until(
    rt: &Runtime,
    batch_size: usize,
    progress: &Progress,
    producer_done: &AtomicBool,
) -> anyhow::Result<DrainReport> {
    drain_with(rt, &DrainOptions::new(batch_size), progress, producer_done).await
}

/// [`drain_until`] with every option.
pub async fn drain_with(
    rt: &Runtime,
    opts: &DrainOptions,
    progress: &Progress,
    producer_done: &AtomicBool,
) -> anyhow::Result<DrainReport> {
    let opts = DrainOptions {
        batch_size: opts.batch_size.clamp(1, 10_000),
        // SQS counts it in whole seconds; below one, nothing would stay hidden.
        visibility: opts.visibility.max(Duration::from_secs(1)),
        ..opts.clone()
    };
    let mut total = DrainReport::default();
    let mut idle_rounds = 0;
    loop {
        let Some(batch) = gather(&rt.queues.queue, &opts).await? else {
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
                progress.note(format!(
                    "member-refresh: {} messages still in flight elsewhere; stopping",
                    depth.in_flight
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let received = &batch.messages;
        let messages: Vec<IncomingMessage> = received
            .iter()
            .map(|m| IncomingMessage {
                message_id: m.message_id.clone(),
                body: m.body.clone(),
            })
            .collect();
        let deadline = Deadline::none();
        let work = rt.member_refresh(messages, &deadline);
        let report = match keeping_hidden(&rt.queues.queue, &batch, opts.visibility, work).await {
            Ok(report) => report,
            Err(failure) => {
                // The whole batch could not be worked: what was dead-lettered is done with, the
                // rest goes back on the queue, and the drain stops.
                settle(rt, received, &failure.report).await?;
                return Err(failure.error.into());
            }
        };
        total.add(&report);
        let not_deleted = settle(rt, received, &report).await?;
        if not_deleted > 0 {
            progress.note(format!(
                "member-refresh: {not_deleted} messages could not be deleted and will be seen again"
            ));
        }
        idle_rounds = 0;
        progress.set_message(format!(
            "member-refresh: batch {}: {} messages, {} pushed, {} unchanged, {} failed (total {} messages)",
            total.batches,
            report.received,
            report.pushed,
            report.skipped_unchanged + report.already_current,
            report.failed_message_ids.len(),
            total.messages
        ));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(id: &str, handle: &str, receive_count: u32) -> Received {
        Received {
            message_id: id.into(),
            receipt_handle: handle.into(),
            body: format!("body of {id}"),
            receive_count,
        }
    }

    #[test]
    fn a_message_received_again_is_kept_once_with_its_latest_handle() {
        let (mut messages, mut position) = (Vec::new(), HashMap::new());
        add_received(
            &mut messages,
            &mut position,
            vec![received("a", "a1", 1), received("b", "b1", 1)],
        );
        add_received(
            &mut messages,
            &mut position,
            vec![received("a", "a2", 2), received("c", "c1", 1)],
        );
        let kept: Vec<(&str, &str, u32)> = messages
            .iter()
            .map(|m| {
                (
                    m.message_id.as_str(),
                    m.receipt_handle.as_str(),
                    m.receive_count,
                )
            })
            .collect();
        assert_eq!(kept, vec![("a", "a2", 2), ("b", "b1", 1), ("c", "c1", 1)]);
    }

    #[test]
    fn a_batch_is_due_when_its_window_ends() {
        let opts = DrainOptions::new(500);
        let fast = Duration::from_millis(50);
        assert!(!opts.due(Duration::from_secs(4), fast));
        assert!(opts.due(BATCHING_WINDOW, fast));
    }

    #[test]
    fn a_batch_is_due_before_another_receive_would_end_past_half_the_visibility() {
        let opts = DrainOptions {
            batching_window: Duration::from_mins(5),
            visibility: Duration::from_mins(1),
            ..DrainOptions::new(500)
        };
        let slow = Duration::from_secs(10);
        assert!(!opts.due(Duration::from_secs(19), slow));
        assert!(opts.due(Duration::from_secs(20), slow));
        // However long the window, never past half the timeout.
        assert!(opts.due(Duration::from_secs(30), Duration::ZERO));
    }
}
