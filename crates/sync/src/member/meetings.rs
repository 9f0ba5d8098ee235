//! Meetings: Campaigns of `events.campaign_type` pushed to Higher Logic's `/meeting`
//! (SPEC.md §6), before any member record whose event group names them.
//!
//! Like Contacts, a Campaign message names a record that is re-read in batches (one
//! `composite/sobjects` call per 2,000), mapped by `hlsync_core::event`, and pushed only when the
//! mapped meeting differs from the last one pushed. A Campaign deleted, or whose `Type` no longer
//! matches, is pushed as the delete shape if Higher Logic has it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use hlsync_core::event::{CAMPAIGN_FIELDS, Meeting, map_campaign};
use hlsync_core::id::SfId;
use hlsync_core::time::parse_sf_datetime;
use serde_json::Value;
use tracing::warn;

use super::batch::{Batch, MemberDeps, MemberReport, dead_letter_all, fail_all, fail_for};
use crate::error::SyncError;
use crate::message::WorkMessage;
use crate::ports::{FindBy, Keys, Pushed, Record};

/// State key prefix of the push records of meetings (by Campaign Id).
pub const MEETING_PREFIX: &str = "event#";

fn stamp(record: &Record, field: &str) -> Option<DateTime<Utc>> {
    record
        .get(field)
        .and_then(Value::as_str)
        .and_then(parse_sf_datetime)
}

fn modstamp(record: &Record) -> Option<DateTime<Utc>> {
    stamp(record, "SystemModstamp")
}

/// Whether a user edited the Campaign after `handled` (the `SystemModstamp` it had when its
/// message was last worked). Its meeting may map the same as then and still have changed in
/// between: a `Type` or a delete that came and went while registrants were re-read, who then
/// left its event group out. A system-only touch (`SystemModstamp` alone) does not count; a
/// record without `LastModifiedDate` counts any touch.
fn edited_since(record: &Record, handled: Option<DateTime<Utc>>) -> bool {
    let edited = stamp(record, "LastModifiedDate").or_else(|| modstamp(record));
    match (edited, handled) {
        (Some(edited), Some(handled)) => edited > handled,
        // Never handled by its own message (brought along by a registrant), or no stamp.
        _ => true,
    }
}

fn fields() -> Vec<String> {
    CAMPAIGN_FIELDS.iter().map(|f| (*f).to_string()).collect()
}

fn keys<'a>(ids: impl Iterator<Item = &'a SfId>) -> Vec<String> {
    ids.map(SfId::to_string).collect()
}

/// A meeting to push, with what its push record will hold.
struct Outgoing {
    id: SfId,
    meeting: Meeting,
    hash: String,
    cursor: Option<DateTime<Utc>>,
}

/// Works the batch's Campaign messages.
pub(crate) async fn refresh_campaigns(
    deps: &MemberDeps<'_>,
    batch: &Batch,
    report: &mut MemberReport,
) -> Result<(), SyncError> {
    match work(deps, batch, report).await {
        Ok(()) => Ok(()),
        Err(e) if e.stops_run() => Err(e),
        Err(e) => {
            warn!(error = %e, "could not work the Campaign messages; they will be retried");
            fail_for(report, &e, batch.campaigns.values());
            Ok(())
        }
    }
}

async fn work(
    deps: &MemberDeps<'_>,
    batch: &Batch,
    report: &mut MemberReport,
) -> Result<(), SyncError> {
    let campaigns = &batch.campaigns;
    let pushed = deps
        .state
        .pushed_keys(MEETING_PREFIX, &keys(campaigns.keys()))
        .await?;
    let to_read: Vec<SfId> = campaigns
        .iter()
        .filter(|(id, w)| !w.covered_by(pushed.get(&id.to_string())))
        .map(|(id, _)| id.clone())
        .collect();
    report.already_current += (campaigns.len() - to_read.len()) as u64;
    if to_read.is_empty() {
        return Ok(());
    }
    let records = deps.crm.read("Campaign", &to_read, &fields()).await?;
    let mut outgoing = Vec::new();
    let mut unchanged = Vec::new();
    let mut requeue = Vec::new();
    let mut edited = BTreeMap::new();
    for (id, record) in to_read.iter().zip(records) {
        edited.insert(
            id.clone(),
            record
                .as_ref()
                .and_then(|r| stamp(r, "LastModifiedDate").or_else(|| modstamp(r))),
        );
        let wanted = &campaigns[id];
        let stored = pushed.get(&id.to_string());
        let cursor = record.as_ref().and_then(modstamp).or(wanted.cursor);
        let meeting = match &record {
            Some(r) => match map_campaign(r, &deps.cfg.events.campaign_type) {
                Ok(m) => m,
                Err(e) => {
                    // Retrying will not make it mappable.
                    warn!(campaign = %id, error = %e, "Campaign cannot be mapped");
                    dead_letter_all(deps, batch, wanted, &e.to_string(), report).await;
                    continue;
                }
            },
            // Absent when read: deleted.
            None => Meeting::deleted(id.clone()),
        };
        // A meeting Higher Logic never had need not be deleted.
        if meeting.is_deleted && stored.is_none() {
            report.skipped_unchanged += 1;
            continue;
        }
        let hash = meeting.content_hash().to_string();
        if let Some(previous) = stored.filter(|p| p.hash == hash && !wanted.force) {
            report.skipped_unchanged += 1;
            // Pushed already, but brought along by a registrant (its record has no cursor): its
            // other registrants have not been queued yet. Or edited since its message was last
            // worked: registrants read in between may have seen it otherwise.
            if record
                .as_ref()
                .is_some_and(|r| edited_since(r, previous.cursor))
            {
                requeue.push(id.clone());
            }
            if cursor > previous.cursor {
                unchanged.push((
                    id.to_string(),
                    Pushed {
                        cursor,
                        ..previous.clone()
                    },
                ));
            }
            continue;
        }
        outgoing.push(Outgoing {
            id: id.clone(),
            meeting,
            hash,
            cursor,
        });
    }
    // A meeting that appears, changes or goes away changes its registrants' records (their
    // Event group comes, is renamed or goes): each is queued to be re-read; so are those of the
    // unchanged ones above. Before anything is recorded, so that a failure here leaves the
    // Campaign's message to be retried whole.
    let changed: Vec<SfId> = outgoing
        .iter()
        .map(|o| o.id.clone())
        .chain(requeue)
        .collect();
    let changed = not_read_since(deps, changed, &edited).await?;
    queue_registrants(deps, &changed).await?;
    if !unchanged.is_empty() {
        deps.state
            .record_pushed_keys(MEETING_PREFIX, &unchanged)
            .await?;
    }
    let refused = push(deps, &outgoing, report).await?;
    for (id, error) in refused {
        let wanted = &campaigns[&id];
        match error {
            // Refused on its own (Higher Logic's 400 for this record alone): a retry cannot help.
            Refusal::Record(message) => {
                let reason = format!("Higher Logic refused meeting {id}: {message}");
                dead_letter_all(deps, batch, wanted, &reason, report).await;
            }
            Refusal::Request => fail_all(report, std::iter::once(wanted)),
        }
    }
    Ok(())
}

/// The Campaigns whose registrants may hold an older meeting: all but those edited before a full
/// refresh began reading every Contact (the initial load above all), which reads each registrant
/// after the edit. Without this, a first load would queue every registrant of every event once
/// more, one message each. A deleted Campaign (no record, no edit time) is always kept.
async fn not_read_since(
    deps: &MemberDeps<'_>,
    changed: Vec<SfId>,
    edited: &BTreeMap<SfId, Option<DateTime<Utc>>>,
) -> Result<Vec<SfId>, SyncError> {
    if changed.is_empty() {
        return Ok(changed);
    }
    let Some(since) = crate::full::read_whole_since(deps.state).await? else {
        return Ok(changed);
    };
    let settle = chrono::TimeDelta::from_std(deps.cfg.salesforce.settle).unwrap_or_default();
    Ok(changed
        .into_iter()
        .filter(|id| {
            edited
                .get(id)
                .copied()
                .flatten()
                .is_none_or(|at| at >= since - settle)
        })
        .collect())
}

/// Queues the Contacts registered with these Campaigns (any status: one whose status counted
/// before may not any more; deleted registrations too), to be re-read whole.
async fn queue_registrants(deps: &MemberDeps<'_>, campaigns: &[SfId]) -> Result<(), SyncError> {
    if campaigns.is_empty() {
        return Ok(());
    }
    let rows = deps
        .crm
        .find_by(FindBy {
            object: "CampaignMember".into(),
            fields: vec!["Id".into(), "ContactId".into()],
            field: "CampaignId".into(),
            keys: Keys::In(campaigns.to_vec()),
            filter: None,
            // A registration deleted as the meeting changed may not have reached its member yet
            // (the registrations feed lists only those of events).
            with_deleted: true,
        })
        .await?;
    let contacts: BTreeSet<SfId> = rows
        .iter()
        .filter_map(|r| r.get("ContactId")?.as_str()?.parse().ok())
        .collect();
    if contacts.is_empty() {
        return Ok(());
    }
    let bodies: Vec<String> = contacts
        .into_iter()
        .map(|id| {
            WorkMessage {
                full: true,
                ..WorkMessage::contact(id, None, "meeting-changed", false)
            }
            .to_body()
        })
        .collect();
    let count = bodies.len();
    let refused = deps.queue.send(bodies).await?;
    if !refused.is_empty() {
        return Err(SyncError::Transient {
            service: crate::error::Service::Aws,
            message: format!(
                "the queue did not take {} of the {count} registrants of a changed meeting; the Campaign's message is retried",
                refused.len()
            ),
        });
    }
    Ok(())
}

/// Why a meeting did not reach Higher Logic.
pub(crate) enum Refusal {
    /// Higher Logic refused this record alone, with this message.
    Record(String),
    /// The request it was in failed as a whole (worth retrying).
    Request,
}

/// Pushes meetings in requests of `batch_size` and records the ones taken. Answers the ones that
/// were not, and why.
async fn push(
    deps: &MemberDeps<'_>,
    outgoing: &[Outgoing],
    report: &mut MemberReport,
) -> Result<Vec<(SfId, Refusal)>, SyncError> {
    let mut refused = Vec::new();
    for chunk in outgoing.chunks(deps.cfg.higher_logic.batch_size.max(1)) {
        // Write-ahead, as for members: each push is recorded as pending first, so a push whose
        // own record is lost is sent again, and a later delete is sent even then.
        let pending: Vec<(String, Pushed)> = chunk
            .iter()
            .map(|o| (o.id.to_string(), Pushed::pending()))
            .collect();
        deps.state
            .record_pushed_keys(MEETING_PREFIX, &pending)
            .await?;
        let meetings: Vec<Meeting> = chunk.iter().map(|o| o.meeting.clone()).collect();
        let results = match deps.community.push_meetings(&meetings).await {
            Ok(results) => results,
            Err(e) if e.stops_run() => return Err(e),
            Err(e) => {
                warn!(error = %e, "the meeting push failed; its Campaigns will be retried");
                refused.extend(chunk.iter().map(|o| (o.id.clone(), Refusal::Request)));
                continue;
            }
        };
        let results: HashMap<&str, Option<&str>> = results
            .iter()
            .map(|r| (r.key.as_str(), r.error.as_deref()))
            .collect();
        let now = Utc::now();
        let mut done = Vec::new();
        for o in chunk {
            match results.get(o.id.as_str()) {
                Some(None) => {
                    report.meetings_pushed += 1;
                    done.push((
                        o.id.to_string(),
                        Pushed {
                            hash: o.hash.clone(),
                            cursor: o.cursor,
                            pushed_at: now,
                            opt_out: None,
                        },
                    ));
                }
                Some(Some(message)) => {
                    warn!(campaign = %o.id, error = message, "Higher Logic refused the meeting");
                    refused.push((o.id.clone(), Refusal::Record((*message).to_owned())));
                }
                None => refused.push((o.id.clone(), Refusal::Request)),
            }
        }
        deps.state.record_pushed_keys(MEETING_PREFIX, &done).await?;
    }
    Ok(refused)
}

/// Makes sure Higher Logic has every meeting in `campaigns` before a member record names it:
/// the ones never pushed are read and pushed now (the queue does not keep the order in which the
/// Periodic Refresh sent a Campaign and its registrations). Answers the Campaigns Higher Logic
/// still lacks: the members that name them must wait.
pub(crate) async fn ensure_meetings(
    deps: &MemberDeps<'_>,
    campaigns: BTreeSet<SfId>,
    report: &mut MemberReport,
) -> Result<BTreeSet<SfId>, SyncError> {
    if campaigns.is_empty() {
        return Ok(BTreeSet::new());
    }
    let pushed = deps
        .state
        .pushed_keys(MEETING_PREFIX, &keys(campaigns.iter()))
        .await?;
    // A pending record (a push whose outcome is unknown) is not a meeting Higher Logic has.
    let missing: Vec<SfId> = campaigns
        .into_iter()
        .filter(|id| pushed.get(&id.to_string()).is_none_or(Pushed::is_pending))
        .collect();
    if missing.is_empty() {
        return Ok(BTreeSet::new());
    }
    let records = deps.crm.read("Campaign", &missing, &fields()).await?;
    let mut outgoing = Vec::new();
    let mut lacking = BTreeSet::new();
    for (id, record) in missing.iter().zip(records) {
        let meeting = record
            .as_ref()
            .map(|r| map_campaign(r, &deps.cfg.events.campaign_type));
        match meeting {
            // Recorded without a cursor: brought along, its other registrants not queued yet (the
            // Campaign's own message does that).
            Some(Ok(meeting)) if !meeting.is_deleted => outgoing.push(Outgoing {
                hash: meeting.content_hash().to_string(),
                cursor: None,
                id: id.clone(),
                meeting,
            }),
            other => {
                // Gone, or no longer an event, since the registrations were read: the next read
                // of the member leaves it out.
                warn!(campaign = %id, outcome = ?other.map(|m| m.map(|m| m.is_deleted)), "an event group names a Campaign that is not an event now");
                lacking.insert(id.clone());
            }
        }
    }
    for (id, _) in push(deps, &outgoing, report).await? {
        lacking.insert(id);
    }
    Ok(lacking)
}

/// The Campaign Ids the event groups of these members name.
pub(crate) fn named_campaigns<'a>(
    event_groups: impl Iterator<Item = &'a hlsync_core::member::Group>,
) -> BTreeSet<SfId> {
    event_groups
        .filter_map(|g| g.key.as_str().parse::<SfId>().ok())
        .collect()
}
