//! Contacts → members, in named steps: skip the already current, read (Contacts with their
//! Account's name, and their registrations), map and diff, make sure the meetings exist, push and
//! record.
//!
//! Where a Contact becomes a member: `hlsync_core::mapping::map_contact`, called from
//! [`map_and_diff`]. Salesforce is read in batches, never one call per Contact: the Contacts
//! (with `Account.Name`) and their registrations are queries sent together, five per API call
//! (see [`Crm::find_many`](crate::ports::Crm::find_many)): 500 Contacts a query when messages name
//! them one by one, a whole Id range a query for a range message. A Contact is pushed only from a
//! complete read: Higher Logic replaces the whole record, so a push without the registrations
//! would remove them.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use hlsync_core::event::{CAMPAIGN_MEMBER_FIELDS, campaign_membership};
use hlsync_core::id::SfId;
use hlsync_core::mapping::{CampaignMembership, ContactInput, map_contact};
use hlsync_core::member::Member;
use hlsync_core::schema::ContactSchema;
use serde_json::Value;
use tracing::{info, warn};

use super::batch::{
    Batch, MemberDeps, MemberReport, Range, Wanted, dead_letter_record, fail_all, fail_for,
};
use super::meetings::{ensure_meetings, named_campaigns};
use crate::Deadline;
use crate::error::SyncError;
use crate::message::WorkMessage;
use crate::ports::{Filter, FindBy, Keys, PushResult, Pushed, Record};

/// Works the batch's Contact messages (one Contact each).
pub(crate) async fn refresh_contacts(
    deps: &MemberDeps<'_>,
    batch: &Batch,
    deadline: &Deadline,
    report: &mut MemberReport,
) -> Result<(), SyncError> {
    let wanted = &batch.contacts;
    report.contacts += wanted.len() as u64;
    if wanted.is_empty() {
        return Ok(());
    }
    let ids: Vec<SfId> = wanted.keys().cloned().collect();
    let pushed = deps.state.pushed(&ids).await?;

    // Step 1: a Contact whose last push was read at or after this change already carries it.
    let to_read: Vec<SfId> = ids
        .into_iter()
        .filter(|id| !wanted[id].covered_by(pushed.get(id)))
        .collect();
    report.already_current += (wanted.len() - to_read.len()) as u64;
    if to_read.is_empty() {
        return Ok(());
    }

    // Step 2: read everything the records are made of, or nothing.
    let read = match read(deps, Keys::In(to_read.clone())).await {
        Ok(read) => read,
        Err(e) if e.stops_run() => return Err(e),
        Err(e) => {
            warn!(error = %e, "could not read the Contacts; the batch will be retried");
            fail_for(report, &e, to_read.iter().map(|id| &wanted[id]));
            return Ok(());
        }
    };
    let unit = Unit { batch, wanted };
    if let Some(stopped) =
        map_push_record(deps, &unit, &to_read, &read, &pushed, deadline, report).await?
    {
        warn!(
            left = stopped.len(),
            "near the deadline: the members not pushed yet are retried later"
        );
        fail_all(report, stopped.iter().map(|id| &wanted[id]));
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

/// Works one range message: every live Contact with an Id in the range, read with one query
/// (and one for their registrations), re-read whatever their push records say (`full`).
///
/// The range's message ends well when every Contact in it did; one that fails fails the range,
/// which is retried as a range (the Contacts already pushed are then found unchanged). A Contact
/// that can never succeed (unmappable, refused by Higher Logic) goes to the dead-letter queue
/// alone, as a message of its own, and the range goes on. Near the deadline, what is left of the
/// range is handed back as a narrower range message.
pub(crate) async fn refresh_range(
    deps: &MemberDeps<'_>,
    batch: &Batch,
    range: &Range,
    deadline: &Deadline,
    report: &mut MemberReport,
) -> Result<(), SyncError> {
    let read = match read(deps, range.keys()).await {
        Ok(read) => read,
        Err(e) if e.stops_run() => return Err(e),
        Err(e) => {
            warn!(error = %e, range = %range, "could not read the range; it will be retried");
            report.note_stop(&e);
            report.failed_message_ids.push(range.message_id.clone());
            return Ok(());
        }
    };
    let ids: Vec<SfId> = read.contacts.keys().cloned().collect();
    report.contacts += ids.len() as u64;
    let wanted: BTreeMap<SfId, Wanted> =
        ids.iter().map(|id| (id.clone(), range.wanted())).collect();
    let pushed = match deps.state.pushed(&ids).await {
        Ok(pushed) => pushed,
        Err(e) if e.stops_run() => return Err(e),
        Err(e) => {
            warn!(error = %e, range = %range, "could not read the push records of the range; it will be retried");
            report.note_stop(&e);
            report.failed_message_ids.push(range.message_id.clone());
            return Ok(());
        }
    };
    let unit = Unit {
        batch,
        wanted: &wanted,
    };
    if let Some(stopped) =
        map_push_record(deps, &unit, &ids, &read, &pushed, deadline, report).await?
    {
        hand_back_rest(deps, range, &ids, &stopped, report).await;
    }
    info!(range = %range, contacts = ids.len(), "range done");
    Ok(())
}

/// Near the deadline, inside a range: the Contacts from the first one not pushed on are handed
/// back as a range message of their own (the one worked counts as done). If the queue does not
/// take it, the range's message is retried whole.
async fn hand_back_rest(
    deps: &MemberDeps<'_>,
    range: &Range,
    ids: &[SfId],
    stopped: &[SfId],
    report: &mut MemberReport,
) {
    let Some(first) = stopped.iter().min() else {
        return;
    };
    // Everything before `first` in the range's order is done.
    let after = ids
        .iter()
        .filter(|id| *id < first)
        .max()
        .cloned()
        .or(range.after.clone());
    let rest = range.continued(after);
    warn!(range = %range, rest = %rest, "near the deadline: the rest of the range is handed back");
    match deps.queue.send(vec![rest.body()]).await {
        Ok(refused) if refused.is_empty() => report.requeued += 1,
        Ok(_) | Err(_) => {
            warn!(range = %range, "could not hand the rest of the range back; the range is retried");
            report.failed_message_ids.push(range.message_id.clone());
        }
    }
}

/// The Contacts of one unit of work (the batch's single-Contact messages, or one range), with
/// what their messages ask for.
pub(crate) struct Unit<'a> {
    pub(crate) batch: &'a Batch,
    pub(crate) wanted: &'a BTreeMap<SfId, Wanted>,
}

/// Steps 3 to 5: map and diff, make sure the meetings exist, push and record. Answers the
/// Contacts the deadline left unpushed, if it stopped the pushes.
async fn map_push_record(
    deps: &MemberDeps<'_>,
    unit: &Unit<'_>,
    ids: &[SfId],
    read: &Read,
    pushed: &HashMap<SfId, Pushed>,
    deadline: &Deadline,
    report: &mut MemberReport,
) -> Result<Option<Vec<SfId>>, SyncError> {
    let wanted = unit.wanted;
    // Step 3: map, and keep only what differs from the last push.
    let diff = map_and_diff(deps, unit, ids, read, pushed, report).await;
    if !diff.unchanged.is_empty()
        && let Err(e) = deps.state.record_pushed(&diff.unchanged).await
    {
        warn!(error = %e, "could not record the newer cursors of unchanged Contacts");
    }
    let mut outgoing = diff.outgoing;
    if outgoing.is_empty() {
        return Ok(None);
    }

    // Step 4: the meetings their event groups name go first.
    let event_type = &deps.cfg.events.group_type;
    let named = named_campaigns(
        outgoing
            .iter()
            .flat_map(|o| o.member.event_groups(event_type)),
    );
    let lacking = match ensure_meetings(deps, named, report).await {
        Ok(lacking) => lacking,
        Err(e) if e.stops_run() => return Err(e),
        Err(e) => {
            warn!(error = %e, "could not push the meetings the members name; they will be retried");
            fail_for(
                report,
                &e,
                outgoing.iter().map(|o| &wanted[&o.member.contact_id]),
            );
            return Ok(None);
        }
    };
    if !lacking.is_empty() {
        outgoing.retain(|o| {
            let waits = o
                .member
                .event_groups(event_type)
                .any(|g| lacking.iter().any(|c| c.as_str() == g.key.as_str()));
            if waits {
                warn!(contact = %o.member.contact_id, "a meeting this member is registered for is not in Higher Logic yet; retried later");
                fail_all(report, std::iter::once(&wanted[&o.member.contact_id]));
            }
            !waits
        });
    }

    // Step 5: push, a request at a time, and record what Higher Logic took.
    push_and_record(deps, unit, &outgoing, deadline, report).await
}

/// What the Member Refresh read for some Contacts.
pub(crate) struct Read {
    schema: ContactSchema,
    /// The live Contacts found (by Id); one asked for by Id and not here is deleted.
    contacts: BTreeMap<SfId, Record>,
    account_names: HashMap<SfId, String>,
    registrations: HashMap<SfId, Vec<CampaignMembership>>,
}

/// Reads the Contacts `keys` selects, with their Account's name and (with events) their
/// registrations: two queries per 500 Ids, or two for a range, sent together.
async fn read(deps: &MemberDeps<'_>, keys: Keys) -> Result<Read, SyncError> {
    let describe = deps.crm.describe_contact(false).await?;
    crate::full::note_describe(deps.state, &describe, deps.cfg).await;
    let schema = ContactSchema::build(&describe.fields, &describe.record_types, deps.cfg)
        .map_err(|e| SyncError::failed(e.to_string()))?;
    let mut fields = schema.contact_fields();
    fields.push(ACCOUNT_NAME.to_owned());
    let mut queries = vec![FindBy {
        object: "Contact".into(),
        fields,
        field: "Id".into(),
        keys: keys.clone(),
        filter: None,
        with_deleted: false,
    }];
    let events = &deps.cfg.events;
    if events.enabled {
        queries.push(FindBy {
            object: "CampaignMember".into(),
            fields: CAMPAIGN_MEMBER_FIELDS
                .iter()
                .map(|f| (*f).to_string())
                .collect(),
            field: "ContactId".into(),
            keys,
            filter: Some(Filter::Equals {
                path: "Campaign.Type".into(),
                value: events.campaign_type.trim().to_owned(),
            }),
            with_deleted: false,
        });
    }
    let mut found = deps.crm.find_many(queries).await?.into_iter();
    let mut contacts = BTreeMap::new();
    let mut account_names = HashMap::new();
    for mut record in found.next().unwrap_or_default() {
        let Some(id) = record
            .get("Id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<SfId>().ok())
        else {
            return Err(SyncError::failed(
                "Salesforce returned a Contact without an Id",
            ));
        };
        // `Account.Name` comes back as a nested record (null without an Account).
        let account = record.remove("Account");
        if let (Some(account_id), Some(name)) = (
            account_id(&record),
            account
                .as_ref()
                .and_then(|a| a.get("Name"))
                .and_then(Value::as_str),
        ) {
            account_names.insert(account_id, name.to_owned());
        }
        contacts.insert(id, record);
    }
    let mut registrations: HashMap<SfId, Vec<CampaignMembership>> = HashMap::new();
    for row in found.next().unwrap_or_default() {
        match campaign_membership(&row) {
            Ok(Some((contact, membership))) => {
                registrations.entry(contact).or_default().push(membership);
            }
            Ok(None) => {}
            // A row Salesforce wrote cannot be mended by a retry, but leaving it out would
            // remove a registration: stop the batch loudly instead.
            Err(e) => {
                return Err(SyncError::failed(format!(
                    "a CampaignMember row could not be read: {e}"
                )));
            }
        }
    }
    Ok(Read {
        schema,
        contacts,
        account_names,
        registrations,
    })
}

/// The relationship path that brings a Contact's Account name along with it.
const ACCOUNT_NAME: &str = "Account.Name";

fn account_id(fields: &Record) -> Option<SfId> {
    fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("AccountId"))
        .and_then(|(_, v)| v.as_str())
        .and_then(|s| s.parse().ok())
}

/// A member to push and what its push record will keep.
pub(crate) struct Outgoing {
    pub(crate) member: Member,
    pub(crate) hash: String,
    pub(crate) cursor: Option<DateTime<Utc>>,
    /// `HasOptedOutOfEmail` and since when it holds that value (see [`opt_out_seen`]).
    pub(crate) opt_out: Option<(bool, DateTime<Utc>)>,
}

/// The opt-out a push record keeps: the value read now, and the `SystemModstamp` of the first
/// read that showed it, so that the write-back can tell when the flag itself last changed in
/// Salesforce (an unrelated edit moves `SystemModstamp`, not this).
pub(crate) fn opt_out_seen(
    member: &Member,
    previous: Option<&Pushed>,
    read_at: Option<DateTime<Utc>>,
) -> Option<(bool, DateTime<Utc>)> {
    if member.is_deleted {
        return None;
    }
    let value = member.do_not_email;
    match previous.and_then(|p| p.opt_out) {
        Some((seen, since)) if seen == value => Some((value, since)),
        _ => read_at.map(|at| (value, at)),
    }
}

struct Diff {
    outgoing: Vec<Outgoing>,
    /// Unchanged records whose newer cursor is worth remembering, so duplicates are not re-read.
    unchanged: Vec<(SfId, Pushed)>,
}

async fn map_and_diff(
    deps: &MemberDeps<'_>,
    unit: &Unit<'_>,
    ids: &[SfId],
    read: &Read,
    pushed: &HashMap<SfId, Pushed>,
    report: &mut MemberReport,
) -> Diff {
    let mut diff = Diff {
        outgoing: Vec::new(),
        unchanged: Vec::new(),
    };
    for id in ids {
        let record = read.contacts.get(id);
        let wanted: &Wanted = &unit.wanted[id];
        let stored = pushed.get(id);
        let member = match record {
            Some(fields) => {
                let input = ContactInput {
                    fields,
                    account_name: account_id(fields)
                        .and_then(|a| read.account_names.get(&a))
                        .map(String::as_str),
                    registrations: read.registrations.get(id).map_or(&[], Vec::as_slice),
                };
                match map_contact(&input, &read.schema, deps.cfg) {
                    Ok(member) => member,
                    Err(e) => {
                        // Retrying will not make the record mappable: dead-letter its messages.
                        warn!(contact = %id, error = %e, "Contact cannot be mapped");
                        dead_letter_record(deps, unit.batch, id, wanted, &e.to_string(), report)
                            .await;
                        continue;
                    }
                }
            }
            // Absent when read: deleted.
            None => Member::deleted(id.clone(), wanted.cursor),
        };
        // Higher Logic never had it: a deleted or inactive Contact need not be sent at all.
        if stored.is_none() && (member.is_deleted || !member.is_member) {
            report.skipped_unchanged += 1;
            continue;
        }
        let hash = member.content_hash().to_string();
        let cursor = member.modstamp.or(wanted.cursor);
        let opt_out = opt_out_seen(&member, stored, cursor);
        if let Some(previous) = stored.filter(|p| p.hash == hash && !wanted.force) {
            report.skipped_unchanged += 1;
            if cursor > previous.cursor {
                diff.unchanged.push((
                    id.clone(),
                    Pushed {
                        cursor,
                        ..previous.clone()
                    },
                ));
            }
            continue;
        }
        diff.outgoing.push(Outgoing {
            member,
            hash,
            cursor,
            opt_out,
        });
    }
    diff
}

/// Pushes the members in requests of `higher_logic.batch_size` and records each request's
/// results before the next. A record Higher Logic refused on its own goes to the dead-letter
/// queue with Higher Logic's message; a request that failed as a whole is retried later.
///
/// Two functions may work the same Contact at once, from reads of different ages. So right
/// before each request the push records are read again and a member older than the one recorded
/// is not sent; and the records are written conditionally: where a newer one landed meanwhile,
/// Higher Logic may hold this older push, so the Contact is queued again to be re-read.
///
/// The deadline is checked before each request: what was pushed is recorded, and the Contacts
/// not reached are answered, for the caller to hand back.
async fn push_and_record(
    deps: &MemberDeps<'_>,
    unit: &Unit<'_>,
    outgoing: &[Outgoing],
    deadline: &Deadline,
    report: &mut MemberReport,
) -> Result<Option<Vec<SfId>>, SyncError> {
    let size = deps.cfg.higher_logic.batch_size.max(1);
    for (n, chunk) in outgoing.chunks(size).enumerate() {
        // This request's members and all after them: what waits if it cannot go.
        let rest = &outgoing[n * size..];
        let waiting = || rest.iter().map(|o| &unit.wanted[&o.member.contact_id]);
        if deadline.near() {
            return Ok(Some(
                rest.iter().map(|o| o.member.contact_id.clone()).collect(),
            ));
        }
        let current = match write_ahead(deps, chunk, report).await {
            Ok(current) => current,
            Err(e) => {
                warn!(error = %e, "could not record the pending pushes; the members not pushed yet will be retried");
                fail_for(report, &e, waiting());
                return Ok(None);
            }
        };
        if current.is_empty() {
            continue;
        }
        let members: Vec<Member> = current.iter().map(|o| o.member.clone()).collect();
        let results = match deps.community.push_members(&members).await {
            Ok(results) => results,
            Err(e) if e.stops_run() => return Err(e),
            Err(e) => {
                // Whatever failed this request (an outage, throttling) fails the next ones too:
                // all that is left waits.
                warn!(error = %e, "the push to Higher Logic failed; the members not pushed yet will be retried");
                fail_for(report, &e, waiting());
                return Ok(None);
            }
        };
        let done = take_results(deps, unit, &current, &results, report).await;
        record_done(deps, unit, &done, report).await;
    }
    Ok(None)
}

/// Write-ahead: each push is recorded as pending (no hash) before it is sent, on the same
/// conditional write as the final record. So a push whose own record is then lost is never
/// mistaken for "Higher Logic has the old version" (its next read pushes again), and a member
/// Higher Logic may hold always has a record (a later deactivation or delete is sent). Where a
/// newer read is recorded already, this older one is not sent: answers the members to send.
async fn write_ahead<'o>(
    deps: &MemberDeps<'_>,
    chunk: &'o [Outgoing],
    report: &mut MemberReport,
) -> Result<Vec<&'o Outgoing>, SyncError> {
    let pending: Vec<(SfId, Pushed)> = chunk
        .iter()
        .map(|o| {
            let record = Pushed {
                cursor: o.cursor,
                opt_out: o.opt_out,
                ..Pushed::pending()
            };
            (o.member.contact_id.clone(), record)
        })
        .collect();
    let stale = deps.state.record_pushed(&pending).await?;
    // Another function pushed a newer read of these: theirs stands.
    report.already_current += stale.len() as u64;
    Ok(chunk
        .iter()
        .filter(|o| !stale.contains(&o.member.contact_id))
        .collect())
}

/// Reads Higher Logic's answer record by record: pushed (counted, and answered as the push
/// record to write), refused on its own (dead-lettered with Higher Logic's message), or left
/// without a result (its messages are retried).
async fn take_results(
    deps: &MemberDeps<'_>,
    unit: &Unit<'_>,
    sent: &[&Outgoing],
    results: &[PushResult],
    report: &mut MemberReport,
) -> Vec<(SfId, Pushed)> {
    let event_type = &deps.cfg.events.group_type;
    let results: HashMap<&str, Option<&str>> = results
        .iter()
        .map(|r| (r.key.as_str(), r.error.as_deref()))
        .collect();
    let now = Utc::now();
    let mut done = Vec::new();
    for o in sent {
        let m = &o.member;
        let wanted = &unit.wanted[&m.contact_id];
        match results.get(m.contact_id.as_str()) {
            Some(None) => {
                report.pushed += 1;
                report.registrations_pushed += m.event_groups(event_type).count() as u64;
                if m.is_deleted {
                    report.deleted += 1;
                } else if !m.is_member {
                    report.deactivated += 1;
                }
                let record = Pushed {
                    hash: o.hash.clone(),
                    cursor: o.cursor,
                    pushed_at: now,
                    opt_out: o.opt_out,
                };
                done.push((m.contact_id.clone(), record));
            }
            Some(Some(message)) => {
                let reason = format!(
                    "Higher Logic refused the record of Contact {}: {message}",
                    m.contact_id
                );
                warn!(contact = %m.contact_id, error = message, "Higher Logic refused the record");
                dead_letter_record(deps, unit.batch, &m.contact_id, wanted, &reason, report).await;
            }
            None => {
                warn!(contact = %m.contact_id, "Higher Logic gave no result for the record; its messages will be retried");
                fail_all(report, std::iter::once(wanted));
            }
        }
    }
    done
}

/// Records what Higher Logic took. Where a newer push was recorded meanwhile, the Contact is
/// queued again; if the records cannot be written, the Contacts are pushed again later
/// (harmless: the push is idempotent).
async fn record_done(
    deps: &MemberDeps<'_>,
    unit: &Unit<'_>,
    done: &[(SfId, Pushed)],
    report: &mut MemberReport,
) {
    match deps.state.record_pushed(done).await {
        Ok(overtaken) if overtaken.is_empty() => {}
        Ok(overtaken) => requeue(deps, unit, &overtaken, report).await,
        Err(e) => {
            warn!(error = %e, "could not record what was pushed; those Contacts will be pushed again");
            fail_for(report, &e, done.iter().map(|(id, _)| &unit.wanted[id]));
        }
    }
}

/// Contacts whose push was overtaken by a newer one while this one was in flight: Higher Logic
/// may hold the older record now, so each is queued again to be re-read and pushed. If the queue
/// does not take them, their messages are retried instead.
async fn requeue(deps: &MemberDeps<'_>, unit: &Unit<'_>, ids: &[SfId], report: &mut MemberReport) {
    warn!(
        contacts = ids.len(),
        "a newer push of these Contacts landed during this one; queuing them again"
    );
    let bodies: Vec<String> = ids
        .iter()
        .map(|id| {
            // Forced: the stored hash is the newer push's, while Higher Logic may hold ours.
            WorkMessage {
                full: true,
                force: true,
                ..WorkMessage::contact(id.clone(), None, "requeue", false)
            }
            .to_body()
        })
        .collect();
    let refused: Vec<usize> = match deps.queue.send(bodies).await {
        Ok(refused) => refused,
        Err(e) => {
            warn!(error = %e, "could not queue the overtaken Contacts; their messages are retried");
            (0..ids.len()).collect()
        }
    };
    for i in refused {
        fail_all(report, std::iter::once(&unit.wanted[&ids[i]]));
    }
}
