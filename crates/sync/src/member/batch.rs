//! What a Member Refresh batch is made of: the messages, what they ask for per record, the
//! report, and the ways a message can end (done, failed for a retry, dead-lettered).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hlsync_core::config::Config;
use hlsync_core::id::SfId;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::error::SyncError;
use crate::message::{RecordKind, WorkMessage};
use crate::ports::{Community, Crm, EmailPreferenceChange, Keys, Pushed, StateStore, WorkQueue};

/// One queue message as the event source hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    pub message_id: String,
    pub body: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemberReport {
    pub received: u64,
    /// Distinct Contacts named by the batch.
    pub contacts: u64,
    /// Contacts whose stored push already covers the message's change: not re-read.
    pub already_current: u64,
    pub pushed: u64,
    /// Re-read, but the mapped record equals the last one pushed.
    pub skipped_unchanged: u64,
    /// Pushed as inactive (`IsMember: false`, no groups).
    pub deactivated: u64,
    /// Pushed as deleted.
    pub deleted: u64,
    /// Malformed or unmappable messages sent straight to the dead-letter queue, and records
    /// Higher Logic refused on their own.
    pub dead_lettered: u64,
    /// Message ids to report back as failed (retried by the queue, then dead-lettered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_message_ids: Vec<String>,
    pub salesforce_calls: u64,
    pub higher_logic_calls: u64,
    /// Meetings (Campaigns) pushed, deleted ones included.
    #[serde(default)]
    pub meetings_pushed: u64,
    /// Event registrations carried on the pushed members' records.
    #[serde(default)]
    pub registrations_pushed: u64,
    /// Messages handed back to the queue to wait out a stop (as new messages, with a delay):
    /// waiting does not count towards the receives that lead to the dead-letter queue.
    #[serde(default)]
    pub requeued: u64,
    /// The ids of the messages counted in `dead_lettered`: done with, whatever else happens.
    #[serde(skip)]
    pub dead_lettered_ids: Vec<String>,
    /// Set when a condition stopped more than one record (see [`Stop`]).
    #[serde(skip)]
    pub stop: Option<Stop>,
}

impl MemberReport {
    /// Notes that `error`, which failed some of the batch's work, may be a stop: then the
    /// waiting messages are handed back to wait it out rather than failed.
    pub(crate) fn note_stop(&mut self, error: &SyncError) {
        if self.stop.is_none() {
            self.stop = Stop::of(error);
        }
    }
}

/// A condition that stops work for a while, whatever the record: the allotment, rejected
/// credentials (until the secret changes), a service that is down or throttling. Failing the
/// messages for it would walk the whole backlog to the dead-letter queue in five receives; they
/// wait `delay` instead and come back.
#[derive(Debug, Clone, PartialEq)]
pub struct Stop {
    pub delay: std::time::Duration,
    pub reason: String,
}

/// How long work waits out a stop: the allotment and rejected credentials change slowly (and
/// SQS delays at most 15 minutes); an outage may pass sooner.
const LONG_STOP: std::time::Duration = std::time::Duration::from_mins(15);
const SHORT_STOP: std::time::Duration = std::time::Duration::from_mins(2);

impl Stop {
    pub fn of(error: &SyncError) -> Option<Stop> {
        let delay = match error {
            SyncError::Rejected { .. } | SyncError::Allotment(_) => LONG_STOP,
            SyncError::Transient { .. } => SHORT_STOP,
            SyncError::QueryTimeout(_) | SyncError::Conflict(_) | SyncError::Failed { .. } => {
                return None;
            }
        };
        Some(Stop {
            delay,
            reason: error.to_string(),
        })
    }
}

/// The whole batch could not be worked (credentials rejected, allotment exhausted). `report`
/// says what happened before it stopped; its `failed_message_ids` are every message still to be
/// retried, which leaves out the ones already sent to the dead-letter queue.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct BatchError {
    pub error: SyncError,
    pub report: MemberReport,
}

pub struct MemberDeps<'a> {
    pub cfg: &'a Config,
    pub crm: &'a dyn Crm,
    pub community: &'a dyn Community,
    pub state: &'a dyn StateStore,
    pub queue: &'a dyn WorkQueue,
}

/// The messages that name one record, and what they ask for together.
#[derive(Debug, Default)]
pub(crate) struct Wanted {
    pub(crate) message_ids: Vec<String>,
    /// The newest change among them.
    pub(crate) cursor: Option<DateTime<Utc>>,
    /// Re-read even when the stored push is newer than the change.
    pub(crate) full: bool,
    /// Push even when the mapped record equals the last one pushed.
    pub(crate) force: bool,
}

impl Wanted {
    fn add(&mut self, message_id: &str, msg: &WorkMessage) {
        self.message_ids.push(message_id.to_owned());
        self.cursor = self.cursor.max(msg.cursor);
        self.full |= msg.full;
        self.force |= msg.force;
    }

    /// Whether the push `stored` records already carries this change: it was made from a read
    /// at or after it. A pending record (a push whose outcome is unknown) carries nothing.
    pub(crate) fn covered_by(&self, stored: Option<&Pushed>) -> bool {
        let pushed_cursor = stored.filter(|p| !p.is_pending()).and_then(|p| p.cursor);
        match (pushed_cursor, self.cursor) {
            (Some(done), Some(change)) => !self.full && change <= done,
            _ => false,
        }
    }
}

/// A range message of the batch: the live Contacts with an Id in `(after, through]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Range {
    pub(crate) message_id: String,
    pub(crate) after: Option<SfId>,
    pub(crate) through: SfId,
    pub(crate) force: bool,
    pub(crate) run: String,
}

impl Range {
    pub(crate) fn keys(&self) -> Keys {
        Keys::Range {
            after: self.after.clone(),
            through: self.through.clone(),
        }
    }

    /// What the range asks for each of its Contacts: a re-read whatever the push record says.
    pub(crate) fn wanted(&self) -> Wanted {
        Wanted {
            message_ids: vec![self.message_id.clone()],
            cursor: None,
            full: true,
            force: self.force,
        }
    }

    /// The same range from after `after` on (a new message, not yet sent).
    pub(crate) fn continued(&self, after: Option<SfId>) -> Range {
        Range {
            message_id: String::new(),
            after,
            ..self.clone()
        }
    }

    pub(crate) fn body(&self) -> String {
        WorkMessage::contact_range(
            self.after.clone(),
            self.through.clone(),
            &self.run,
            self.force,
        )
        .to_body()
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.after {
            Some(after) => write!(f, "({after}, {}]", self.through),
            None => write!(f, "(…, {}]", self.through),
        }
    }
}

/// A batch's messages sorted by what they name. Malformed ones are not here: [`Batch::parse`]
/// dead-letters them.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) contacts: BTreeMap<SfId, Wanted>,
    pub(crate) campaigns: BTreeMap<SfId, Wanted>,
    /// Messages written before registrations travelled on the Contact's record: they name a
    /// CampaignMember, whose Contact is to be re-read.
    pub(crate) campaign_members: BTreeMap<SfId, Wanted>,
    /// Opt-out changes Salesforce refused earlier, brought back from the dead-letter queue, with
    /// the id of the message of each.
    pub(crate) opt_outs: Vec<(String, EmailPreferenceChange)>,
    /// Range messages (bulk work), each worked as one unit.
    pub(crate) ranges: Vec<Range>,
    pub(crate) messages: Vec<IncomingMessage>,
}

impl Batch {
    /// Parses each message on its own: one bad body must not fail the batch.
    pub(crate) async fn parse(
        deps: &MemberDeps<'_>,
        messages: Vec<IncomingMessage>,
        report: &mut MemberReport,
    ) -> Batch {
        let mut batch = Batch::default();
        for m in &messages {
            match WorkMessage::parse(&m.body) {
                Ok(msg) => {
                    let into = match msg.kind {
                        RecordKind::Contact => &mut batch.contacts,
                        RecordKind::Campaign => &mut batch.campaigns,
                        RecordKind::CampaignMember => &mut batch.campaign_members,
                        RecordKind::ContactRange => {
                            batch.ranges.push(Range {
                                message_id: m.message_id.clone(),
                                after: msg.after.clone(),
                                through: msg.id.clone(),
                                force: msg.force,
                                run: msg.run.clone(),
                            });
                            continue;
                        }
                        RecordKind::OptOut => {
                            // `parse` checked that both are there.
                            if let (Some(value), Some(at)) = (msg.value, msg.cursor) {
                                let change = EmailPreferenceChange {
                                    key: msg.id.clone(),
                                    do_not_email: value,
                                    updated_on: at,
                                };
                                batch.opt_outs.push((m.message_id.clone(), change));
                            }
                            continue;
                        }
                    };
                    into.entry(msg.id.clone())
                        .or_default()
                        .add(&m.message_id, &msg);
                }
                Err(e) => dead_letter(deps, m, &e.to_string(), report).await,
            }
        }
        batch.messages = messages;
        batch
    }

    /// The messages behind `wanted`.
    pub(crate) fn messages_of<'a>(
        &'a self,
        wanted: &'a Wanted,
    ) -> impl Iterator<Item = &'a IncomingMessage> {
        self.messages
            .iter()
            .filter(|m| wanted.message_ids.contains(&m.message_id))
    }
}

/// Reports every message of `wanted` as failed because of `error`: they wait out a stop, or the
/// queue retries them.
pub(crate) fn fail_for<'a>(
    report: &mut MemberReport,
    error: &SyncError,
    wanted: impl Iterator<Item = &'a Wanted>,
) {
    report.note_stop(error);
    fail_all(report, wanted);
}

/// Reports every message of `wanted` as failed: the queue retries them later.
pub(crate) fn fail_all<'a>(report: &mut MemberReport, wanted: impl Iterator<Item = &'a Wanted>) {
    for w in wanted {
        report
            .failed_message_ids
            .extend(w.message_ids.iter().cloned());
    }
}

/// Sends a message that can never succeed to the dead-letter queue, or, if that fails, reports
/// it as failed (the queue's redrive policy then moves it there after its retries).
pub(crate) async fn dead_letter(
    deps: &MemberDeps<'_>,
    m: &IncomingMessage,
    reason: &str,
    report: &mut MemberReport,
) {
    match deps.queue.dead_letter(&m.body, reason).await {
        Ok(()) => {
            warn!(message_id = %m.message_id, reason, "message sent to the dead-letter queue");
            report.dead_lettered += 1;
            report.dead_lettered_ids.push(m.message_id.clone());
        }
        Err(e) => {
            // The queue's own redrive policy moves it to the DLQ after its retries.
            warn!(message_id = %m.message_id, error = %e, "could not dead-letter the message; reporting it as failed");
            report.failed_message_ids.push(m.message_id.clone());
        }
    }
}

/// Dead-letters what asked for Contact `id`, which can never succeed, with `reason`: its own
/// messages, and for a range that named it a message of its own (the range goes on without it).
pub(crate) async fn dead_letter_record(
    deps: &MemberDeps<'_>,
    batch: &Batch,
    id: &SfId,
    wanted: &Wanted,
    reason: &str,
    report: &mut MemberReport,
) {
    for m in batch.messages_of(wanted) {
        if !batch.ranges.iter().any(|r| r.message_id == m.message_id) {
            dead_letter(deps, m, reason, report).await;
            continue;
        }
        let body = WorkMessage {
            full: true,
            force: wanted.force,
            ..WorkMessage::contact(id.clone(), None, "range", false)
        }
        .to_body();
        match deps.queue.dead_letter(&body, reason).await {
            Ok(()) => {
                warn!(contact = %id, range = %m.message_id, reason, "a Contact of a range sent to the dead-letter queue on its own");
                report.dead_lettered += 1;
            }
            Err(e) => {
                warn!(contact = %id, error = %e, "could not dead-letter a Contact of a range; the range is retried");
                report.failed_message_ids.push(m.message_id.clone());
            }
        }
    }
}

/// Dead-letters every message of `wanted` with `reason`.
pub(crate) async fn dead_letter_all(
    deps: &MemberDeps<'_>,
    batch: &Batch,
    wanted: &Wanted,
    reason: &str,
    report: &mut MemberReport,
) {
    for m in batch.messages_of(wanted) {
        dead_letter(deps, m, reason, report).await;
    }
}
