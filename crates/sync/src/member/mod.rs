//! The Member Refresh: for a batch of work messages, re-read the changed records in full, map
//! them and push the ones that changed to Higher Logic.
//!
//! - [`batch`]: the messages, the report, and how a message ends (done, retried, dead-lettered);
//! - [`contacts`]: Contacts → member records (with their registrations), the heart of it;
//! - [`meetings`]: Campaigns → meetings, pushed before the members that name them.

mod batch;
mod contacts;
mod meetings;

use chrono::{DateTime, Utc};
use hlsync_core::id::SfId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::warn;

pub use batch::{BatchError, IncomingMessage, MemberDeps, MemberReport};
pub use meetings::MEETING_PREFIX;

use std::collections::HashMap;

use crate::Deadline;
use crate::error::SyncError;
use crate::optout;
use crate::ports::EmailPreferenceChange;
use crate::records::{StateRecord, StateRecords as _};
use batch::{Batch, dead_letter, fail_all, fail_for};

/// The last batch's report as it is kept for `hlsync status`: the counts (not the failed
/// message ids, which only the queue needs), how many failed, and the error that stopped the
/// batch, if one did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberRun {
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub report: MemberReport,
    /// Messages reported back as failed.
    #[serde(default)]
    pub failed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StateRecord for MemberRun {
    type Id = ();
    fn key((): &()) -> String {
        "run#member-refresh".into()
    }
}

/// Handles one batch. Per-message problems become failed message ids; an `Err` means the whole
/// batch could not be worked (credentials rejected, allotment exhausted) and every message not
/// dead-lettered is to be retried later.
pub async fn member_refresh(
    deps: &MemberDeps<'_>,
    messages: Vec<IncomingMessage>,
    deadline: &Deadline,
) -> Result<MemberReport, BatchError> {
    let all_messages: Vec<(String, String)> = messages
        .iter()
        .map(|m| (m.message_id.clone(), m.body.clone()))
        .collect();
    let sf_before = deps.crm.calls_made();
    let hl_before = deps.community.calls_made();
    let mut report = MemberReport {
        received: messages.len() as u64,
        ..MemberReport::default()
    };
    let result = refresh(deps, messages, deadline, &mut report).await;
    if let Err(error) = &result {
        // The batch stopped as a whole: every message not dead-lettered is still to do.
        report.failed_message_ids = all_messages
            .iter()
            .map(|(id, _)| id.clone())
            .filter(|id| !report.dead_lettered_ids.contains(id))
            .collect();
        report.note_stop(error);
    }
    hand_back(deps, &all_messages, &mut report).await;
    report.salesforce_calls = deps.crm.calls_made().saturating_sub(sf_before);
    report.higher_logic_calls = deps.community.calls_made().saturating_sub(hl_before);
    let run = MemberRun {
        finished_at: Some(Utc::now()),
        report: MemberReport {
            failed_message_ids: Vec::new(),
            ..report.clone()
        },
        failed: report.failed_message_ids.len() as u64,
        error: result.as_ref().err().map(ToString::to_string),
    };
    if let Err(e) = deps.state.store(&(), &run).await {
        warn!(error = %e, "could not record the batch report");
    }
    match result {
        Ok(()) => Ok(report),
        Err(error) => Err(BatchError { error, report }),
    }
}

/// After a stop, the messages still to do go back to the queue as new messages that wait out the
/// stop's delay, and count as done here; only those the queue did not take stay failed (and are
/// retried the usual way).
async fn hand_back(
    deps: &MemberDeps<'_>,
    messages: &[(String, String)],
    report: &mut MemberReport,
) {
    let Some(stop) = report.stop.clone() else {
        return;
    };
    if report.failed_message_ids.is_empty() {
        return;
    }
    let waiting: Vec<&(String, String)> = messages
        .iter()
        .filter(|(id, _)| report.failed_message_ids.contains(id))
        .collect();
    let bodies: Vec<String> = waiting.iter().map(|(_, body)| body.clone()).collect();
    let refused: Vec<usize> = match deps.queue.send_later(bodies, stop.delay).await {
        Ok(refused) => refused,
        Err(e) => {
            warn!(error = %e, "could not hand the waiting messages back; they are retried instead");
            return;
        }
    };
    report.requeued = (waiting.len() - refused.len()) as u64;
    report.failed_message_ids = refused.iter().map(|i| waiting[*i].0.clone()).collect();
    warn!(
        requeued = report.requeued,
        delay_s = stop.delay.as_secs(),
        reason = %stop.reason,
        "stopped: the batch's waiting messages come back after the delay"
    );
}

async fn refresh(
    deps: &MemberDeps<'_>,
    messages: Vec<IncomingMessage>,
    deadline: &Deadline,
    report: &mut MemberReport,
) -> Result<(), SyncError> {
    let mut batch = Batch::parse(deps, messages, report).await;
    if deadline.near() {
        fail_all(
            report,
            batch
                .contacts
                .values()
                .chain(batch.campaigns.values())
                .chain(batch.campaign_members.values()),
        );
        report
            .failed_message_ids
            .extend(batch.opt_outs.iter().map(|(id, _)| id.clone()));
        hand_back_ranges(deps, &batch.ranges, report).await;
        return Ok(());
    }
    if !batch.campaigns.is_empty() {
        meetings::refresh_campaigns(deps, &batch, report).await?;
    }
    if !batch.campaign_members.is_empty() {
        resolve_campaign_members(deps, &mut batch, report).await?;
    }
    if !batch.opt_outs.is_empty() {
        write_back_opt_outs(deps, &batch, report).await?;
    }
    contacts::refresh_contacts(deps, &batch, deadline, report).await?;
    for (n, range) in batch.ranges.iter().enumerate() {
        if deadline.near() {
            hand_back_ranges(deps, &batch.ranges[n..], report).await;
            break;
        }
        contacts::refresh_range(deps, &batch, range, deadline, report).await?;
    }
    Ok(())
}

/// Ranges the deadline leaves unworked go back to the queue as new messages, so that waiting for
/// the next function never counts towards the receives that lead to the dead-letter queue (a
/// batch of ranges may take longer than one function may run). If the queue does not take them,
/// their messages are retried instead.
async fn hand_back_ranges(
    deps: &MemberDeps<'_>,
    ranges: &[batch::Range],
    report: &mut MemberReport,
) {
    if ranges.is_empty() {
        return;
    }
    warn!(
        ranges = ranges.len(),
        "near the deadline: ranges not started are handed back"
    );
    let bodies = ranges.iter().map(batch::Range::body).collect();
    let refused: Vec<usize> = match deps.queue.send(bodies).await {
        Ok(refused) => refused,
        Err(e) => {
            warn!(error = %e, "could not hand the ranges back; they are retried");
            (0..ranges.len()).collect()
        }
    };
    report.requeued += (ranges.len() - refused.len()) as u64;
    report
        .failed_message_ids
        .extend(refused.into_iter().map(|i| ranges[i].message_id.clone()));
}

/// Opt-out changes Salesforce refused before, brought back by `hlsync redrive`: written back now
/// as the Periodic Refresh would (the later change still wins). Refused for good again: back to
/// the dead-letter queue with the new reason.
async fn write_back_opt_outs(
    deps: &MemberDeps<'_>,
    batch: &Batch,
    report: &mut MemberReport,
) -> Result<(), SyncError> {
    let changes: Vec<EmailPreferenceChange> =
        batch.opt_outs.iter().map(|(_, c)| c.clone()).collect();
    let outcomes = match optout::apply(deps.crm, deps.state, &changes).await {
        Ok(outcomes) => outcomes,
        Err(e) if e.stops_run() => return Err(e),
        Err(e) => {
            warn!(error = %e, "could not write the opt-outs back; their messages will be retried");
            report.note_stop(&e);
            report
                .failed_message_ids
                .extend(batch.opt_outs.iter().map(|(id, _)| id.clone()));
            return Ok(());
        }
    };
    let outcome_of: HashMap<&SfId, &optout::Outcome> =
        outcomes.iter().map(|o| (&o.change.key, o)).collect();
    let repush: Vec<&SfId> = outcomes
        .iter()
        .filter(|o| o.repush)
        .map(|o| &o.change.key)
        .collect();
    let mut not_queued: Vec<&SfId> = Vec::new();
    if !repush.is_empty() {
        let bodies = optout::forced_bodies(repush.iter().copied(), "opt-out");
        match deps.queue.send(bodies).await {
            Ok(refused) => not_queued.extend(refused.into_iter().map(|i| repush[i])),
            Err(_) => not_queued.extend(repush.iter().copied()),
        }
    }
    for (message_id, change) in &batch.opt_outs {
        let Some(message) = batch.messages.iter().find(|m| &m.message_id == message_id) else {
            continue;
        };
        match outcome_of.get(&change.key).map(|o| &o.applied) {
            // Its re-push is not queued: the message is retried, and decides again.
            Some(_) if not_queued.contains(&&change.key) => {
                report.failed_message_ids.push(message_id.clone());
            }
            Some(
                optout::Applied::Written
                | optout::Applied::Unchanged
                | optout::Applied::KeepSalesforce,
            ) => {}
            Some(optout::Applied::Refused(error)) => {
                let reason = format!(
                    "Salesforce refused to write HasOptedOutOfEmail = {} on Contact {}: {error}",
                    change.do_not_email, change.key
                );
                dead_letter(deps, message, &reason, report).await;
            }
            Some(optout::Applied::Retry(_)) | None => {
                report.failed_message_ids.push(message_id.clone());
            }
        }
    }
    Ok(())
}

/// Messages written before registrations travelled on the Contact's record name a
/// CampaignMember: their Contact is re-read instead (one read per 2,000).
async fn resolve_campaign_members(
    deps: &MemberDeps<'_>,
    batch: &mut Batch,
    report: &mut MemberReport,
) -> Result<(), SyncError> {
    let ids: Vec<SfId> = batch.campaign_members.keys().cloned().collect();
    let fields = ["Id".to_string(), "ContactId".to_string()];
    let records = match deps.crm.read("CampaignMember", &ids, &fields).await {
        Ok(records) => records,
        Err(e) if e.stops_run() => return Err(e),
        Err(e) => {
            warn!(error = %e, "could not read the CampaignMembers; their messages will be retried");
            fail_for(report, &e, batch.campaign_members.values());
            batch.campaign_members.clear();
            return Ok(());
        }
    };
    let members = std::mem::take(&mut batch.campaign_members);
    for ((_, mut wanted), record) in members.into_iter().zip(records) {
        let contact = record
            .as_ref()
            .and_then(|r| r.get("ContactId"))
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<SfId>().ok());
        // A Lead's membership, or one deleted since: nothing a member record could carry that
        // the Contact's own next read would not.
        let Some(contact) = contact else { continue };
        let entry = batch.contacts.entry(contact).or_default();
        entry.message_ids.append(&mut wanted.message_ids);
        entry.cursor = entry.cursor.max(wanted.cursor);
        entry.full = true;
        entry.force |= wanted.force;
    }
    Ok(())
}
