//! The Member Refresh: for a batch of work messages, re-read the changed Contacts in full, map
//! them to member records and push the ones that changed to Higher Logic.
//!
//! Where a Contact becomes a member: `hlsync_core::mapping::map_contact`, called from here.
//! Salesforce is read in batches (one API call for up to 2,000 Contacts, one more for their
//! Accounts), never one call per Contact.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use hlsync_core::config::Config;
use hlsync_core::id::SfId;
use hlsync_core::mapping::{ContactInput, map_contact};
use hlsync_core::member::Member;
use hlsync_core::schema::ContactSchema;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::Deadline;
use crate::error::SyncError;
use crate::message::WorkMessage;
use crate::ports::{Community, Crm, Pushed, StateStore, WorkQueue};

/// Where the last batch's report is kept (for `hlsync status`).
pub const LAST_RUN_DOC: &str = "run#member-refresh";

/// One queue message as the event source hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    pub message_id: String,
    pub body: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberReport {
    pub received: u64,
    /// Distinct Contacts named by the batch.
    pub contacts: u64,
    /// Contacts whose stored push already covers the message's change: not re-read.
    pub already_current: u64,
    pub pushed: u64,
    /// Re-read, but the mapped record equals the last one pushed.
    pub skipped_unchanged: u64,
    /// Pushed as inactive (not deleted).
    pub deactivated: u64,
    /// Pushed as deleted.
    pub deleted: u64,
    /// Malformed or unmappable messages sent straight to the dead-letter queue.
    pub dead_lettered: u64,
    /// Message ids to report back as failed (retried by the queue, then dead-lettered).
    pub failed_message_ids: Vec<String>,
    pub salesforce_calls: u64,
    pub higher_logic_calls: u64,
    /// Events (Campaigns) pushed, deleted ones included.
    #[serde(default)]
    pub events_pushed: u64,
    /// Registrations (CampaignMembers) pushed, removals included.
    #[serde(default)]
    pub registrations_pushed: u64,
    /// The ids of the messages counted in `dead_lettered`: done with, whatever else happens.
    #[serde(skip)]
    pub dead_lettered_ids: Vec<String>,
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

/// Handles one batch. Per-message problems become failed message ids; an `Err` means the whole
/// batch could not be worked (credentials rejected, allotment exhausted) and every message not
/// dead-lettered is to be retried later.
pub async fn member_refresh(
    deps: &MemberDeps<'_>,
    messages: Vec<IncomingMessage>,
    deadline: &Deadline,
) -> Result<MemberReport, BatchError> {
    let all_ids: Vec<String> = messages.iter().map(|m| m.message_id.clone()).collect();
    let sf_before = deps.crm.calls_made();
    let hl_before = deps.community.calls_made();
    let mut report = MemberReport {
        received: messages.len() as u64,
        ..MemberReport::default()
    };
    let result = refresh(deps, messages, deadline, &mut report).await;
    report.salesforce_calls = deps.crm.calls_made().saturating_sub(sf_before);
    report.higher_logic_calls = deps.community.calls_made().saturating_sub(hl_before);
    let mut summary = serde_json::to_value(&report).unwrap_or_default();
    if let Some(obj) = summary.as_object_mut() {
        obj.insert("finished_at".into(), serde_json::json!(Utc::now()));
        obj.remove("failed_message_ids");
        obj.insert("failed".into(), report.failed_message_ids.len().into());
        if let Err(e) = &result {
            obj.insert("error".into(), e.to_string().into());
        }
    }
    if let Err(e) = deps.state.put_doc(LAST_RUN_DOC, summary, None).await {
        warn!(error = %e, "could not record the batch report");
    }
    match result {
        Ok(()) => Ok(report),
        Err(error) => {
            report.failed_message_ids = all_ids
                .into_iter()
                .filter(|id| !report.dead_lettered_ids.contains(id))
                .collect();
            Err(BatchError { error, report })
        }
    }
}

/// The messages that name one Contact, and the newest change among them.
struct Wanted {
    message_ids: Vec<String>,
    cursor: Option<DateTime<Utc>>,
    full: bool,
    force: bool,
}

async fn refresh(
    deps: &MemberDeps<'_>,
    messages: Vec<IncomingMessage>,
    deadline: &Deadline,
    report: &mut MemberReport,
) -> Result<(), SyncError> {
    // Campaigns and CampaignMembers have their own path (crate::events).
    let (event_messages, messages): (Vec<_>, Vec<_>) = messages
        .into_iter()
        .partition(|m| crate::events::is_event_message(&m.body));
    if !event_messages.is_empty() {
        if deadline.near() {
            report
                .failed_message_ids
                .extend(event_messages.iter().map(|m| m.message_id.clone()));
        } else {
            crate::events::refresh_events(deps, event_messages, report).await?;
        }
    }
    // Parse each message on its own: one bad body must not fail the batch.
    let mut wanted: BTreeMap<SfId, Wanted> = BTreeMap::new();
    for m in &messages {
        match WorkMessage::parse(&m.body) {
            Ok(msg) => {
                let w = wanted.entry(msg.id.clone()).or_insert(Wanted {
                    message_ids: Vec::new(),
                    cursor: None,
                    full: false,
                    force: false,
                });
                w.message_ids.push(m.message_id.clone());
                w.cursor = w.cursor.max(msg.cursor);
                w.full |= msg.full;
                w.force |= msg.force;
            }
            Err(e) => dead_letter(deps, m, &e.to_string(), report).await,
        }
    }
    report.contacts = wanted.len() as u64;
    if wanted.is_empty() {
        return Ok(());
    }
    if deadline.near() {
        fail_all(report, wanted.values());
        return Ok(());
    }

    let ids: Vec<SfId> = wanted.keys().cloned().collect();
    let pushed = deps.state.pushed(&ids).await?;

    // A Contact whose last push was read at or after this change already carries it.
    let to_read: Vec<SfId> = ids
        .iter()
        .filter(|id| {
            let w = &wanted[*id];
            let covered = match (pushed.get(*id).and_then(|p| p.cursor), w.cursor) {
                (Some(done), Some(change)) => !w.full && change <= done,
                _ => false,
            };
            !covered
        })
        .cloned()
        .collect();
    report.already_current = (ids.len() - to_read.len()) as u64;
    if to_read.is_empty() {
        return Ok(());
    }

    let describe = deps.crm.describe_contact(false).await?;
    let schema = ContactSchema::build(&describe.fields, &describe.record_types, &deps.cfg.contacts)
        .map_err(|e| SyncError::failed(e.to_string()))?;
    let fields = schema.contact_fields();
    let records = match deps.crm.read("Contact", &to_read, &fields).await {
        Ok(records) => records,
        Err(e) if e.stops_run() => return Err(e),
        Err(e) => {
            warn!(error = %e, "could not read the Contacts; the batch will be retried");
            fail_all(report, to_read.iter().map(|id| &wanted[id]));
            return Ok(());
        }
    };
    let account_names = read_account_names(deps, &records).await;
    let account_names = match account_names {
        Ok(names) => names,
        Err(e) if e.stops_run() => return Err(e),
        Err(e) => {
            warn!(error = %e, "could not read the Accounts; the batch will be retried");
            fail_all(report, to_read.iter().map(|id| &wanted[id]));
            return Ok(());
        }
    };

    // Map, then keep only what differs from the last push.
    let mut to_push: Vec<(Member, String)> = Vec::new();
    // Unchanged records whose newer cursor is worth remembering, so duplicates are not re-read.
    let mut unchanged: Vec<(SfId, Pushed)> = Vec::new();
    for (id, record) in to_read.iter().zip(records.iter()) {
        let member = match record {
            Some(fields) => {
                let account_name = account_id(fields)
                    .and_then(|a| account_names.get(&a))
                    .map(String::as_str);
                match map_contact(
                    &ContactInput {
                        fields,
                        account_name,
                    },
                    &schema,
                    &deps.cfg.contacts,
                ) {
                    Ok(member) => member,
                    Err(e) => {
                        // Retrying will not make the record mappable: dead-letter its messages.
                        warn!(contact = %id, error = %e, "Contact cannot be mapped");
                        for m in messages
                            .iter()
                            .filter(|m| wanted[id].message_ids.contains(&m.message_id))
                        {
                            dead_letter(deps, m, &e.to_string(), report).await;
                        }
                        continue;
                    }
                }
            }
            None => {
                // Absent when fetched: deleted. One that was never pushed need not be.
                if !pushed.contains_key(id) {
                    report.skipped_unchanged += 1;
                    continue;
                }
                Member::deleted(id.clone(), wanted[id].cursor)
            }
        };
        let hash = member.content_hash().to_string();
        if let Some(previous) = pushed
            .get(id)
            .filter(|p| p.hash == hash && !wanted[id].force)
        {
            report.skipped_unchanged += 1;
            let cursor = member.updated_on.or(wanted[id].cursor);
            if cursor > previous.cursor {
                unchanged.push((
                    id.clone(),
                    Pushed {
                        cursor,
                        ..previous.clone()
                    },
                ));
            }
            continue;
        }
        to_push.push((member, hash));
    }
    if !unchanged.is_empty()
        && let Err(e) = deps.state.record_pushed(&unchanged).await
    {
        warn!(error = %e, "could not record the newer cursors of unchanged Contacts");
    }
    if to_push.is_empty() {
        return Ok(());
    }

    let members: Vec<Member> = to_push.iter().map(|(m, _)| m.clone()).collect();
    let results = match deps.community.push_members(&members).await {
        Ok(results) => results,
        Err(e) if e.stops_run() => return Err(e),
        Err(e) => {
            warn!(error = %e, "the push to Higher Logic failed; the batch will be retried");
            fail_all(
                report,
                to_push.iter().map(|(m, _)| &wanted[&m.legacy_contact_key]),
            );
            return Ok(());
        }
    };
    let results: HashMap<&str, &Option<String>> =
        results.iter().map(|r| (r.key.as_str(), &r.error)).collect();
    let now = Utc::now();
    let mut done = Vec::new();
    for (member, hash) in &to_push {
        let id = &member.legacy_contact_key;
        match results.get(id.as_str()) {
            Some(None) => {
                report.pushed += 1;
                if member.is_deleted {
                    report.deleted += 1;
                } else if !member.is_active {
                    report.deactivated += 1;
                }
                done.push((
                    id.clone(),
                    Pushed {
                        hash: hash.clone(),
                        cursor: member.updated_on.or(wanted[id].cursor),
                        pushed_at: now,
                    },
                ));
            }
            Some(Some(error)) => {
                warn!(contact = %id, error = %error, "Higher Logic refused the record; its messages will be retried");
                report
                    .failed_message_ids
                    .extend(wanted[id].message_ids.iter().cloned());
            }
            None => {
                warn!(contact = %id, "Higher Logic gave no result for the record; its messages will be retried");
                report
                    .failed_message_ids
                    .extend(wanted[id].message_ids.iter().cloned());
            }
        }
    }
    if let Err(e) = deps.state.record_pushed(&done).await {
        // Higher Logic has the records; pushing them again is harmless (the push is idempotent).
        warn!(error = %e, "could not record what was pushed; those Contacts will be pushed again");
        report.failed_message_ids.extend(
            done.iter()
                .flat_map(|(id, _)| wanted[id].message_ids.iter().cloned()),
        );
    }
    info!(
        contacts = report.contacts,
        pushed = report.pushed,
        skipped = report.skipped_unchanged,
        failed = report.failed_message_ids.len(),
        "member refresh batch done"
    );
    Ok(())
}

fn account_id(fields: &serde_json::Map<String, serde_json::Value>) -> Option<SfId> {
    fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("AccountId"))
        .and_then(|(_, v)| v.as_str())
        .and_then(|s| s.parse().ok())
}

async fn read_account_names(
    deps: &MemberDeps<'_>,
    records: &[Option<serde_json::Map<String, serde_json::Value>>],
) -> Result<HashMap<SfId, String>, SyncError> {
    let ids: BTreeSet<SfId> = records.iter().flatten().filter_map(account_id).collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<SfId> = ids.into_iter().collect();
    let accounts = deps
        .crm
        .read("Account", &ids, &["Id".to_string(), "Name".to_string()])
        .await?;
    Ok(ids
        .into_iter()
        .zip(accounts)
        .filter_map(|(id, rec)| {
            let name = rec?.get("Name")?.as_str()?.to_string();
            Some((id, name))
        })
        .collect())
}

fn fail_all<'a>(report: &mut MemberReport, wanted: impl Iterator<Item = &'a Wanted>) {
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
