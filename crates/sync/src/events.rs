//! The Member Refresh's part for events: Campaigns of `events.campaign_type` become events,
//! their CampaignMembers registrations (SPEC.md §1, §6).
//!
//! Like Contacts: the messages name records, the records are re-read in batches (one
//! `composite/sobjects` call per 2,000), mapped by `hlsync_core::event`, and pushed only when the
//! mapped record differs from the last one pushed (push records under their own key prefixes).
//! Events are pushed before registrations, and a registration whose event Higher Logic has not
//! been given yet brings that event along, because Higher Logic files a registration only under an
//! event it knows and the queue does not keep the order the Periodic Refresh sent them in.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use hlsync_core::event::{Event, Registration, map_campaign, map_campaign_member};
use hlsync_core::id::SfId;
use hlsync_core::time::parse_sf_datetime;
use serde_json::{Map, Value};
use tracing::warn;

use crate::error::SyncError;
use crate::member::{IncomingMessage, MemberDeps, MemberReport};
use crate::message::{RecordKind, WorkMessage};
use crate::ports::{PushResult, Pushed, Record};

/// State key prefixes of the push records of events (by Campaign Id) and registrations (by
/// CampaignMember Id).
pub const EVENT_PREFIX: &str = "event#";
pub const REGISTRATION_PREFIX: &str = "registration#";

const CAMPAIGN_FIELDS: &[&str] = &[
    "Id",
    "Name",
    "Type",
    "StartDate",
    "EndDate",
    "IsDeleted",
    "SystemModstamp",
];
const MEMBER_FIELDS: &[&str] = &[
    "Id",
    "CampaignId",
    "ContactId",
    "Status",
    "IsDeleted",
    "SystemModstamp",
];

/// Whether a body names a Campaign or a CampaignMember (malformed ones are left to the Contact
/// path, which dead-letters them).
pub fn is_event_message(body: &str) -> bool {
    WorkMessage::parse(body).is_ok_and(|m| m.kind != RecordKind::Contact)
}

#[derive(Default)]
struct Wanted {
    message_ids: Vec<String>,
    cursor: Option<DateTime<Utc>>,
    full: bool,
}

/// A registration's push record keeps its key (`EventKey:LegacyContactKey`) beside the hash: a
/// deleted CampaignMember can no longer be read, and this is how its removal is still sent without
/// another Salesforce call.
fn registration_state(hash: &str, r: &Registration) -> String {
    format!("{hash}@{}:{}", r.event_key, r.legacy_contact_key)
}

fn removed_registration(stored: &Pushed) -> Option<Registration> {
    let (_, key) = stored.hash.split_once('@')?;
    let (event, contact) = key.split_once(':')?;
    Some(Registration {
        event_key: event.parse().ok()?,
        legacy_contact_key: contact.parse().ok()?,
        status: None,
        is_deleted: true,
    })
}

fn modstamp(record: &Record) -> Option<DateTime<Utc>> {
    record
        .get("SystemModstamp")
        .and_then(Value::as_str)
        .and_then(parse_sf_datetime)
}

fn fields(names: &[&str]) -> Vec<String> {
    names.iter().map(|f| (*f).to_string()).collect()
}

/// Works the Campaign and CampaignMember messages of a batch.
pub async fn refresh_events(
    deps: &MemberDeps<'_>,
    messages: Vec<IncomingMessage>,
    report: &mut MemberReport,
) -> Result<(), SyncError> {
    let mut campaigns: BTreeMap<SfId, Wanted> = BTreeMap::new();
    let mut members: BTreeMap<SfId, Wanted> = BTreeMap::new();
    for m in &messages {
        let Ok(msg) = WorkMessage::parse(&m.body) else {
            continue;
        };
        let into = match msg.kind {
            RecordKind::Campaign => &mut campaigns,
            RecordKind::CampaignMember => &mut members,
            RecordKind::Contact => continue,
        };
        let w = into.entry(msg.id).or_default();
        w.message_ids.push(m.message_id.clone());
        w.cursor = w.cursor.max(msg.cursor);
        w.full |= msg.full;
    }
    let all_ids = |report: &mut MemberReport| {
        for w in campaigns.values().chain(members.values()) {
            report
                .failed_message_ids
                .extend(w.message_ids.iter().cloned());
        }
    };
    let mut dead = Vec::new();
    let result = work(deps, &campaigns, &members, report, &mut dead).await;
    for (message_id, reason) in dead {
        let Some(m) = messages.iter().find(|m| m.message_id == message_id) else {
            continue;
        };
        crate::member::dead_letter(deps, m, &reason, report).await;
    }
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.stops_run() => Err(e),
        Err(e) => {
            warn!(error = %e, "could not work the event messages; they will be retried");
            all_ids(report);
            Ok(())
        }
    }
}

fn covered(w: &Wanted, stored: Option<&Pushed>) -> bool {
    match (stored.and_then(|p| p.cursor), w.cursor) {
        (Some(done), Some(change)) => !w.full && change <= done,
        _ => false,
    }
}

fn keys(ids: impl Iterator<Item = SfId>) -> Vec<String> {
    ids.map(|id| id.to_string()).collect()
}

async fn work(
    deps: &MemberDeps<'_>,
    campaigns: &BTreeMap<SfId, Wanted>,
    members: &BTreeMap<SfId, Wanted>,
    report: &mut MemberReport,
    dead: &mut Vec<(String, String)>,
) -> Result<(), SyncError> {
    let events_cfg = &deps.cfg.events;
    let pushed_members = deps
        .state
        .pushed_keys(REGISTRATION_PREFIX, &keys(members.keys().cloned()))
        .await?;
    let member_ids: Vec<SfId> = members
        .iter()
        .filter(|(id, w)| !covered(w, pushed_members.get(&id.to_string())))
        .map(|(id, _)| id.clone())
        .collect();
    report.already_current += (members.len() - member_ids.len()) as u64;

    // Registrations first: they may name events that must go along.
    let mut registrations: Vec<(SfId, Registration, String, Option<DateTime<Utc>>)> = Vec::new();
    let mut unchanged: Vec<(String, Pushed)> = Vec::new();
    if !member_ids.is_empty() {
        let records = deps
            .crm
            .read("CampaignMember", &member_ids, &fields(MEMBER_FIELDS))
            .await?;
        for (id, record) in member_ids.iter().zip(records) {
            let stored = pushed_members.get(&id.to_string());
            let cursor = record.as_ref().and_then(modstamp).or(members[id].cursor);
            let registration = match &record {
                Some(r) => match map_campaign_member(r, &events_cfg.registered_statuses) {
                    Ok(Some(reg)) => reg,
                    // A Lead's membership: not a site member.
                    Ok(None) => {
                        report.skipped_unchanged += 1;
                        continue;
                    }
                    Err(e) => {
                        // Retrying will not make it mappable.
                        warn!(campaign_member = %id, error = %e, "CampaignMember cannot be mapped");
                        dead.extend(
                            members[id]
                                .message_ids
                                .iter()
                                .map(|m| (m.clone(), e.to_string())),
                        );
                        continue;
                    }
                },
                None => match stored.and_then(removed_registration) {
                    Some(reg) => reg,
                    None => {
                        report.skipped_unchanged += 1;
                        continue;
                    }
                },
            };
            // A registration Higher Logic never had need not be removed.
            if registration.is_deleted && stored.is_none() {
                report.skipped_unchanged += 1;
                continue;
            }
            let hash = registration_state(registration.content_hash().as_str(), &registration);
            if skip_unchanged(report, id, stored, &hash, cursor, &mut unchanged) {
                continue;
            }
            registrations.push((id.clone(), registration, hash, cursor));
        }
    }

    // Events: those named by messages, and those the registrations need that were never pushed.
    let mut wanted_events: BTreeMap<SfId, Option<&Wanted>> = campaigns
        .iter()
        .map(|(id, w)| (id.clone(), Some(w)))
        .collect();
    for (_, r, _, _) in &registrations {
        if !r.is_deleted {
            wanted_events.entry(r.event_key.clone()).or_insert(None);
        }
    }
    let pushed_events = deps
        .state
        .pushed_keys(EVENT_PREFIX, &keys(wanted_events.keys().cloned()))
        .await?;
    let event_ids: Vec<SfId> = wanted_events
        .iter()
        .filter(|(id, w)| {
            let stored = pushed_events.get(&id.to_string());
            match w {
                Some(w) => !covered(w, stored),
                None => stored.is_none(),
            }
        })
        .map(|(id, _)| id.clone())
        .collect();
    report.already_current += campaigns
        .keys()
        .filter(|id| !event_ids.contains(id))
        .count() as u64;
    let mut events: Vec<(SfId, Event, String, Option<DateTime<Utc>>)> = Vec::new();
    let mut unchanged_events: Vec<(String, Pushed)> = Vec::new();
    if !event_ids.is_empty() {
        let records = deps
            .crm
            .read("Campaign", &event_ids, &fields(CAMPAIGN_FIELDS))
            .await?;
        for (id, record) in event_ids.iter().zip(records) {
            let stored = pushed_events.get(&id.to_string());
            let message_cursor = wanted_events[id].and_then(|w| w.cursor);
            let cursor = record.as_ref().and_then(modstamp).or(message_cursor);
            // A Campaign whose Type is no longer the events' type stops being an event.
            let is_event = |r: &Map<String, Value>| {
                r.get("Type").and_then(Value::as_str).is_some_and(|t| {
                    t.trim()
                        .eq_ignore_ascii_case(events_cfg.campaign_type.trim())
                })
            };
            let event = match record.as_ref().filter(|r| is_event(r)) {
                Some(r) => match map_campaign(r) {
                    Ok(e) => e,
                    Err(e) => {
                        warn!(campaign = %id, error = %e, "Campaign cannot be mapped");
                        if let Some(w) = wanted_events[id] {
                            dead.extend(w.message_ids.iter().map(|m| (m.clone(), e.to_string())));
                        }
                        continue;
                    }
                },
                None if stored.is_some() => Event {
                    event_key: id.clone(),
                    name: None,
                    start_date: None,
                    end_date: None,
                    is_deleted: true,
                },
                None => {
                    report.skipped_unchanged += 1;
                    continue;
                }
            };
            let hash = event.content_hash().to_string();
            if skip_unchanged(report, id, stored, &hash, cursor, &mut unchanged_events) {
                continue;
            }
            events.push((id.clone(), event, hash, cursor));
        }
    }
    if !unchanged_events.is_empty() {
        deps.state
            .record_pushed_keys(EVENT_PREFIX, &unchanged_events)
            .await?;
    }
    if !unchanged.is_empty() {
        deps.state
            .record_pushed_keys(REGISTRATION_PREFIX, &unchanged)
            .await?;
    }

    let now = Utc::now();
    if !events.is_empty() {
        let list: Vec<Event> = events.iter().map(|(_, e, _, _)| e.clone()).collect();
        let results = deps.community.push_events(&list).await?;
        let results = by_key(&results);
        let mut done = Vec::new();
        for (id, event, hash, cursor) in &events {
            match results.get(event.event_key.as_str()) {
                Some(None) => {
                    report.events_pushed += 1;
                    done.push(push_record(id, hash, *cursor, now));
                }
                outcome => {
                    warn!(campaign = %id, error = ?outcome, "Higher Logic did not take the event; its messages will be retried");
                    if let Some(w) = wanted_events[id] {
                        report
                            .failed_message_ids
                            .extend(w.message_ids.iter().cloned());
                    }
                }
            }
        }
        deps.state.record_pushed_keys(EVENT_PREFIX, &done).await?;
    }

    if !registrations.is_empty() {
        let list: Vec<Registration> = registrations.iter().map(|(_, r, _, _)| r.clone()).collect();
        let results = deps.community.push_registrations(&list).await?;
        let results = by_key(&results);
        let mut done = Vec::new();
        for (id, r, hash, cursor) in &registrations {
            let key = format!("{}:{}", r.event_key, r.legacy_contact_key);
            match results.get(key.as_str()) {
                Some(None) => {
                    report.registrations_pushed += 1;
                    done.push(push_record(id, hash, *cursor, now));
                }
                outcome => {
                    warn!(campaign_member = %id, error = ?outcome, "Higher Logic did not take the registration; its messages will be retried");
                    report
                        .failed_message_ids
                        .extend(members[id].message_ids.iter().cloned());
                }
            }
        }
        deps.state
            .record_pushed_keys(REGISTRATION_PREFIX, &done)
            .await?;
    }
    Ok(())
}

/// When Higher Logic already has `hash` for `id`, counts the record as unchanged and answers
/// true; a newer cursor is still noted in `unchanged`, so later messages about the same change
/// are known to be covered.
fn skip_unchanged(
    report: &mut MemberReport,
    id: &SfId,
    stored: Option<&Pushed>,
    hash: &str,
    cursor: Option<DateTime<Utc>>,
    unchanged: &mut Vec<(String, Pushed)>,
) -> bool {
    let Some(previous) = stored.filter(|p| p.hash == hash) else {
        return false;
    };
    report.skipped_unchanged += 1;
    if cursor > previous.cursor {
        unchanged.push((
            id.to_string(),
            Pushed {
                cursor,
                ..previous.clone()
            },
        ));
    }
    true
}

/// The push record of a record Higher Logic took.
fn push_record(
    id: &SfId,
    hash: &str,
    cursor: Option<DateTime<Utc>>,
    pushed_at: DateTime<Utc>,
) -> (String, Pushed) {
    (
        id.to_string(),
        Pushed {
            hash: hash.to_owned(),
            cursor,
            pushed_at,
        },
    )
}

fn by_key(results: &[PushResult]) -> HashMap<&str, Option<&str>> {
    results
        .iter()
        .map(|r| (r.key.as_str(), r.error.as_deref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_registration_is_rebuilt_from_its_push_record() {
        let r = Registration {
            event_key: "701000000000001".parse().expect("id"),
            legacy_contact_key: "003000000000002".parse().expect("id"),
            status: Some("Registered".into()),
            is_deleted: false,
        };
        let stored = Pushed {
            hash: registration_state(r.content_hash().as_str(), &r),
            cursor: None,
            pushed_at: Utc::now(),
        };
        let removed = removed_registration(&stored).expect("the key rides along");
        assert_eq!(removed.event_key, r.event_key);
        assert_eq!(removed.legacy_contact_key, r.legacy_contact_key);
        assert!(removed.is_deleted && removed.status.is_none());
        let legacy = Pushed {
            hash: "abc".into(),
            ..stored
        };
        assert_eq!(removed_registration(&legacy), None);
    }
}
