//! The GDPR opt-out write-back: members' opt-out changes made in Higher Logic go back to
//! `Contact.HasOptedOutOfEmail` (SPEC.md §6).
//!
//! Where the tenant provides an email-preference feed (`higher_logic.email_preferences_url`), each
//! Periodic Refresh, before it fans anything out, reads `GET {feed}?since=` from `lookback` before
//! its own watermark (the newest `UpdatedOn` seen: Higher Logic's clock, never ours; the overlap
//! catches a change the feed lists late, and a duplicate changes nothing), reads the Contacts
//! named in one batch, decides per Contact with [`decide`] and writes the ones Higher Logic wins
//! with `PATCH composite/sobjects`, 200 per call. Running before the fan-out means the Contacts
//! this run queues are read after the write, so no push of the same run undoes it.
//!
//! Which change is later is judged on the flag itself: the push record keeps the value last read
//! and the `SystemModstamp` of the first read that showed it, so an unrelated edit of the Contact
//! after the member opted out does not make Salesforce "later" (SPEC §6).
//!
//! A write Salesforce refuses for good (a validation rule, field-level security) is reported and
//! sent to the dead-letter queue as a `kind: "opt_out"` message carrying the change, so it does not
//! hold the feed's watermark forever; `hlsync redrive` brings it back once the cause is fixed, and
//! the Member Refresh writes it then. A refusal worth retrying (a locked row) holds the watermark
//! before it, and the next run tries again.
//!
//! It must not bounce. The write moves `SystemModstamp`, so the next sync re-reads the Contact and
//! pushes the same value to Higher Logic. That push is not a member's change (the feed does not
//! list it), and were it listed, the Contact would already hold its value: a write happens only
//! when the decision differs from what Salesforce holds now, so an echo writes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use hlsync_core::config::Config;
use hlsync_core::id::SfId;
use hlsync_core::optout::resolve_opt_out;
use hlsync_core::time::parse_sf_datetime;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::{info, warn};

use crate::error::SyncError;
use crate::message::{RecordKind, WorkMessage};
use crate::ports::{Community, Crm, EmailPreferenceChange, Record, StateStore, WorkQueue};
use crate::records::{StateRecord, StateRecords as _};
use crate::watermark::Mark;

pub const FEED_EMAIL_PREFERENCES: &str = "email-preferences";
const FIELD: &str = "HasOptedOutOfEmail";

/// Salesforce error codes of a write that may succeed if tried again; any other refusal needs a
/// person (a validation rule, a permission) and is dead-lettered.
const RETRYABLE_WRITE_ERRORS: &[&str] = &[
    "UNABLE_TO_LOCK_ROW",
    "SERVER_UNAVAILABLE",
    "REQUEST_RUNNING_TOO_LONG",
    "QUERY_TIMEOUT",
];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OptOutReport {
    pub since: Option<DateTime<Utc>>,
    /// Members whose opt-out changed in Higher Logic since the watermark (less the lookback).
    pub changes: u64,
    /// Contacts whose `HasOptedOutOfEmail` was written.
    pub written: u64,
    /// Changes that needed no write: Salesforce's change was later, or it already agrees.
    pub unchanged: u64,
    /// Writes Salesforce refused for now (a locked row); retried next run (the watermark stays
    /// before them).
    pub failed: u64,
    /// Writes Salesforce refused for good: sent to the dead-letter queue with the reason.
    #[serde(default)]
    pub dead_lettered: u64,
    /// Where the watermark now stands (Higher Logic's clock).
    pub watermark: Option<DateTime<Utc>>,
    /// Why the step did not finish (it is retried next run; the Contacts feeds are not held up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What hlsync knows of when `HasOptedOutOfEmail` last changed in Salesforce, besides the
/// Contact as read now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlagHistory {
    /// The value the push record keeps and the `SystemModstamp` of the first read that showed it.
    pub seen: Option<(bool, DateTime<Utc>)>,
    /// The value the write-back last wrote and the `SystemModstamp` the Contact had just before
    /// (the write itself came later). No read of the Member Refresh may have seen it yet.
    pub written: Option<(bool, DateTime<Utc>)>,
}

impl FlagHistory {
    /// When the flag took the value `sf_value` that the Contact, last modified at
    /// `sf_modstamp`, holds now (as near as can be told; never after `sf_modstamp`).
    pub fn changed_at(&self, sf_value: bool, sf_modstamp: DateTime<Utc>) -> DateTime<Utc> {
        let from_seen = match self.seen {
            Some((value, since)) if value == sf_value => since,
            // Changed since the last read: at or before the modstamp.
            _ => sf_modstamp,
        };
        let at = match self.written {
            // hlsync wrote this value after `before`: the flag took it then, or later.
            Some((value, before)) if value == sf_value => from_seen.max(before),
            // hlsync wrote the other value after the read that saw this one: changed back since.
            Some((_, before)) if from_seen <= before => sf_modstamp,
            _ => from_seen,
        };
        at.min(sf_modstamp)
    }
}

/// The value to write to Salesforce, if any: the later change wins (Salesforce's, as told by
/// [`FlagHistory::changed_at`], or the member's `UpdatedOn`); on a tie, opted out.
pub fn decide(
    sf_value: bool,
    sf_modstamp: DateTime<Utc>,
    history: FlagHistory,
    hl_value: bool,
    hl_updated_on: DateTime<Utc>,
) -> Option<bool> {
    let sf_time = history.changed_at(sf_value, sf_modstamp);
    let keep = resolve_opt_out((sf_value, sf_time), (hl_value, hl_updated_on));
    (keep != sf_value).then_some(keep)
}

/// The last write-back of `HasOptedOutOfEmail` to a Contact (`Id`: the Contact's).
#[derive(Debug, Serialize, Deserialize)]
struct Written {
    value: bool,
    /// The Contact's `SystemModstamp` just before the write.
    before: DateTime<Utc>,
}

impl StateRecord for Written {
    type Id = SfId;
    /// Long after the Member Refresh has read the Contact again (the write-back queues that
    /// read).
    const TTL: Option<std::time::Duration> = Some(std::time::Duration::from_hours(720));
    fn key(id: &SfId) -> String {
        format!("opt-out-written#{id}")
    }
}

async fn load_written(
    state: &dyn StateStore,
    ids: &[SfId],
) -> Result<HashMap<SfId, (bool, DateTime<Utc>)>, SyncError> {
    let written = futures::future::try_join_all(
        ids.iter()
            .map(|id| async move { Ok::<_, SyncError>((id, state.load::<Written>(id).await?)) }),
    )
    .await?;
    Ok(written
        .into_iter()
        .filter_map(|(id, w)| w.map(|w| (id.clone(), (w.value, w.before))))
        .collect())
}

/// What became of one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Written,
    /// Salesforce already agrees, or the Contact is gone.
    Unchanged,
    /// Salesforce's change is later and differs: Higher Logic, which the member changed, must be
    /// given Salesforce's value again.
    KeepSalesforce,
    /// Refused for now; worth trying again.
    Retry(String),
    /// Refused for good, with Salesforce's reason.
    Refused(String),
}

/// One change and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub change: EmailPreferenceChange,
    pub applied: Applied,
    /// The Contact must be re-read and pushed whatever its push record says (the caller queues
    /// it, forced): Higher Logic holds a value that record does not describe, because the member
    /// changed it there. Salesforce's value must go back (`KeepSalesforce`); or Salesforce now
    /// agrees with Higher Logic, and the record's hash, still that of the value pushed before,
    /// would make a later change back to that value in Salesforce look unchanged.
    pub repush: bool,
}

/// Writes back the changes Higher Logic wins (one per member: the latest), reading the Contacts
/// in one batch. A failure that stops the run (credentials, allotment) is returned.
pub async fn apply(
    crm: &dyn Crm,
    state: &dyn StateStore,
    changes: &[EmailPreferenceChange],
) -> Result<Vec<Outcome>, SyncError> {
    let (latest, ambiguous) = latest_changes(changes);
    let ids: Vec<SfId> = latest.keys().cloned().collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let pushed = state.pushed(&ids).await?;
    let written = load_written(state, &ids).await?;
    let fields = vec![
        "Id".to_string(),
        FIELD.to_string(),
        "SystemModstamp".to_string(),
    ];
    let records = crm.read("Contact", &ids, &fields).await?;
    let mut plan = Plan::default();
    for (id, record) in ids.iter().zip(&records) {
        let seen = pushed.get(id).and_then(|p| p.opt_out);
        let change = latest[id];
        if seen.map(|(value, _)| value) != Some(change.do_not_email) || ambiguous.contains(id) {
            plan.stale.insert(id.clone());
        }
        let history = FlagHistory {
            seen,
            written: written.get(id).copied(),
        };
        plan.decide(id, record.as_ref(), change, history)?;
    }
    let mut outcomes = write(crm, state, plan.writes).await?;
    outcomes.extend(plan.outcomes);
    Ok(latest
        .into_iter()
        .map(|(id, change)| {
            let applied = outcomes
                .remove(&id)
                .unwrap_or_else(|| Applied::Retry("Salesforce gave no result".into()));
            // A refused write leaves Higher Logic with the member's choice until it is redriven.
            let repush = match applied {
                Applied::KeepSalesforce => true,
                Applied::Written | Applied::Unchanged => plan.stale.contains(&id),
                Applied::Retry(_) | Applied::Refused(_) => false,
            };
            Outcome {
                change: change.clone(),
                applied,
                repush,
            }
        })
        .collect())
}

/// One decision per member: their latest change (a tie opts out); and the members with both
/// values at their latest `UpdatedOn`, for whom which one Higher Logic holds is unknown, so it
/// is given the decided value.
fn latest_changes(
    changes: &[EmailPreferenceChange],
) -> (BTreeMap<SfId, &EmailPreferenceChange>, BTreeSet<SfId>) {
    let mut latest: BTreeMap<SfId, &EmailPreferenceChange> = BTreeMap::new();
    for c in changes {
        let slot = latest.entry(c.key.clone()).or_insert(c);
        if (c.updated_on, c.do_not_email) > (slot.updated_on, slot.do_not_email) {
            *slot = c;
        }
    }
    let ambiguous = changes
        .iter()
        .filter(|c| {
            let l = latest[&c.key];
            c.updated_on == l.updated_on && c.do_not_email != l.do_not_email
        })
        .map(|c| c.key.clone())
        .collect();
    (latest, ambiguous)
}

/// What the write-back will do, Contact by Contact.
#[derive(Default)]
struct Plan {
    /// Decided without a write.
    outcomes: HashMap<SfId, Applied>,
    /// Live Contacts whose push record says another value than Higher Logic holds.
    stale: BTreeSet<SfId>,
    /// The value to write, and the Contact's `SystemModstamp` before the write.
    writes: Vec<(SfId, bool, DateTime<Utc>)>,
}

impl Plan {
    /// Decides one Contact (`record`: as read now, `None` when deleted).
    fn decide(
        &mut self,
        id: &SfId,
        record: Option<&Record>,
        change: &EmailPreferenceChange,
        history: FlagHistory,
    ) -> Result<(), SyncError> {
        let Some(record) = record else {
            // A deleted Contact has no preference to keep; Higher Logic hears of the delete.
            self.outcomes.insert(id.clone(), Applied::Unchanged);
            return Ok(());
        };
        let sf_value = bool_field(record, FIELD);
        let Some(modstamp) = record
            .get("SystemModstamp")
            .and_then(Value::as_str)
            .and_then(parse_sf_datetime)
        else {
            return Err(SyncError::failed(format!(
                "Contact {id} came back without a SystemModstamp: cannot tell which opt-out change is later"
            )));
        };
        let decided = decide(
            sf_value,
            modstamp,
            history,
            change.do_not_email,
            change.updated_on,
        );
        match decided {
            Some(value) => self.writes.push((id.clone(), value, modstamp)),
            None if sf_value != change.do_not_email => {
                self.outcomes.insert(id.clone(), Applied::KeepSalesforce);
            }
            None => {
                self.outcomes.insert(id.clone(), Applied::Unchanged);
            }
        }
        Ok(())
    }
}

/// Writes the planned values to Salesforce, each recorded first: a write whose answer is lost
/// is known all the same.
async fn write(
    crm: &dyn Crm,
    state: &dyn StateStore,
    writes: Vec<(SfId, bool, DateTime<Utc>)>,
) -> Result<HashMap<SfId, Applied>, SyncError> {
    let mut outcomes = HashMap::new();
    if writes.is_empty() {
        return Ok(outcomes);
    }
    futures::future::try_join_all(writes.iter().map(|(id, value, before)| async move {
        let written = Written {
            value: *value,
            before: *before,
        };
        state.store(id, &written).await
    }))
    .await?;
    let updates = writes
        .into_iter()
        .map(|(id, value, _)| {
            let mut fields = Map::new();
            fields.insert(FIELD.into(), Value::Bool(value));
            ("Contact".to_string(), id, fields)
        })
        .collect();
    for r in crm.update(updates).await? {
        let outcome = match r.error {
            None => Applied::Written,
            Some(error) if is_retryable_write_error(&error) => Applied::Retry(error),
            Some(error) => Applied::Refused(error),
        };
        outcomes.insert(r.id, outcome);
    }
    Ok(outcomes)
}

fn is_retryable_write_error(error: &str) -> bool {
    RETRYABLE_WRITE_ERRORS
        .iter()
        .any(|code| error.contains(code))
}

/// Messages that re-read these Contacts and push them whatever their push record says (see
/// [`Outcome::repush`]).
pub fn forced_bodies<'a>(ids: impl Iterator<Item = &'a SfId>, run_id: &str) -> Vec<String> {
    ids.map(|id| {
        WorkMessage {
            full: true,
            force: true,
            ..WorkMessage::contact(id.clone(), None, run_id, false)
        }
        .to_body()
    })
    .collect()
}

/// The message that carries a change Salesforce refused to the dead-letter queue.
pub fn dead_letter_body(change: &EmailPreferenceChange, run_id: &str) -> String {
    WorkMessage {
        value: Some(change.do_not_email),
        ..WorkMessage::of(
            RecordKind::OptOut,
            change.key.clone(),
            Some(change.updated_on),
            run_id,
            false,
        )
    }
    .to_body()
}

/// What the write-back works with.
pub struct WriteBack<'a> {
    pub cfg: &'a Config,
    pub crm: &'a dyn Crm,
    pub community: &'a dyn Community,
    pub state: &'a dyn StateStore,
    pub queue: &'a dyn WorkQueue,
    pub run_id: &'a str,
}

/// Reads Higher Logic's changes and writes back the ones it wins. A failure that stops the run
/// (credentials, allotment) is returned; any other is reported and retried by the next run.
pub async fn write_back(wb: &WriteBack<'_>) -> Result<OptOutReport, SyncError> {
    let mut report = OptOutReport::default();
    match run(wb, &mut report).await {
        Ok(()) => Ok(report),
        Err(e) if e.stops_run() => Err(e),
        Err(e) => {
            warn!(error = %e, "the email opt-out write-back did not finish; the next run tries again");
            report.error = Some(e.to_string());
            Ok(report)
        }
    }
}

async fn run(wb: &WriteBack<'_>, report: &mut OptOutReport) -> Result<(), SyncError> {
    let mut mark = Mark::load(wb.state, FEED_EMAIL_PREFERENCES).await?;
    report.watermark = mark.at();
    let lookback = TimeDelta::from_std(wb.cfg.salesforce.lookback).unwrap_or(TimeDelta::zero());
    let since = mark
        .at()
        .map_or(DateTime::UNIX_EPOCH, |at| at - lookback)
        .max(DateTime::UNIX_EPOCH);
    report.since = Some(since);
    let changes = wb.community.email_preferences_since(since).await?;
    if changes.is_empty() {
        return Ok(());
    }
    let outcomes = apply(wb.crm, wb.state, &changes).await?;
    report.changes = outcomes.len() as u64;
    let mut hold_before: Option<DateTime<Utc>> = None;
    let repush: Vec<&EmailPreferenceChange> = outcomes
        .iter()
        .filter(|o| o.repush)
        .map(|o| &o.change)
        .collect();
    if !repush.is_empty() {
        let bodies = forced_bodies(repush.iter().map(|c| &c.key), wb.run_id);
        let refused = wb.queue.send(bodies).await?;
        for i in refused {
            // Not queued: hold the watermark so the next run decides again (and, finding the
            // push record still stale, queues it again).
            let at = repush[i].updated_on;
            hold_before = Some(hold_before.map_or(at, |h| h.min(at)));
        }
    }
    for Outcome {
        change, applied, ..
    } in &outcomes
    {
        match applied {
            Applied::Written => report.written += 1,
            Applied::Unchanged | Applied::KeepSalesforce => report.unchanged += 1,
            Applied::Retry(error) => {
                warn!(contact = %change.key, %error, "Salesforce refused the opt-out write-back for now; it is retried next run");
                report.failed += 1;
                hold_before =
                    Some(hold_before.map_or(change.updated_on, |h| h.min(change.updated_on)));
            }
            Applied::Refused(error) => {
                let reason = format!(
                    "Salesforce refused to write HasOptedOutOfEmail = {} on Contact {} (the member's choice in Higher Logic at {}): {error}; \
                     fix the cause (field-level security for the integration user, a validation rule), then run `hlsync redrive`",
                    change.do_not_email, change.key, change.updated_on
                );
                warn!(contact = %change.key, %error, "Salesforce refused the opt-out write-back for good; dead-lettered");
                match wb
                    .queue
                    .dead_letter(&dead_letter_body(change, wb.run_id), &reason)
                    .await
                {
                    Ok(()) => report.dead_lettered += 1,
                    Err(e) => {
                        // Not on the DLQ: hold the watermark so the next run tries again.
                        warn!(error = %e, "could not dead-letter the refused opt-out; it is retried next run");
                        report.failed += 1;
                        hold_before = Some(
                            hold_before.map_or(change.updated_on, |h| h.min(change.updated_on)),
                        );
                    }
                }
            }
        }
    }
    let next = changes
        .iter()
        .map(|c| c.updated_on)
        .filter(|at| hold_before.is_none_or(|hold| *at < hold))
        .max();
    if let Some(at) = next.filter(|at| Some(*at) > mark.at()) {
        mark.advance(wb.state, at).await?;
        report.watermark = Some(at);
    }
    info!(
        changes = report.changes,
        written = report.written,
        failed = report.failed,
        dead_lettered = report.dead_lettered,
        "email opt-out write-back done"
    );
    Ok(())
}

fn bool_field(record: &Map<String, Value>, name: &str) -> bool {
    record
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_bool())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 10, minute, 0)
            .single()
            .expect("valid")
    }

    fn seen(value: bool, since: DateTime<Utc>) -> FlagHistory {
        FlagHistory {
            seen: Some((value, since)),
            written: None,
        }
    }

    #[test]
    fn the_later_change_wins_and_a_tie_opts_out() {
        // The member opted out after Salesforce's flag last changed: written.
        assert_eq!(
            decide(false, at(1), seen(false, at(1)), true, at(5)),
            Some(true)
        );
        // The flag changed in Salesforce after the member did: nothing to write.
        assert_eq!(decide(false, at(9), seen(false, at(9)), true, at(5)), None);
        // A tie opts out.
        assert_eq!(
            decide(false, at(5), seen(false, at(5)), true, at(5)),
            Some(true)
        );
        // Already equal: never written, whoever is later (the echo of our own write).
        assert_eq!(decide(true, at(9), seen(true, at(9)), true, at(10)), None);
        // Never read before: the Contact's SystemModstamp as read.
        assert_eq!(
            decide(false, at(1), FlagHistory::default(), true, at(5)),
            Some(true)
        );
        assert_eq!(
            decide(true, at(9), FlagHistory::default(), false, at(5)),
            None
        );
    }

    #[test]
    fn an_unrelated_later_edit_does_not_undo_a_members_opt_out() {
        // Flag false since :01, member opted out at :05, someone edited the title at :06: the
        // SystemModstamp is :06, but the flag itself last changed at :01.
        assert_eq!(
            decide(false, at(6), seen(false, at(1)), true, at(5)),
            Some(true)
        );
        // But an opt-out made in Salesforce since the last read (the stored value differs) is
        // judged by its SystemModstamp, and an older opt-in does not undo it.
        assert_eq!(decide(true, at(7), seen(false, at(1)), false, at(5)), None);
    }

    #[test]
    fn a_write_back_counts_as_a_change_of_the_flag() {
        // Read false since :01; hlsync wrote true after the Contact's :10 modstamp; someone set
        // it back to false at :30. The flag changed at :30, not :01: a member's opt-out of :20
        // loses to it.
        let history = FlagHistory {
            seen: Some((false, at(1))),
            written: Some((true, at(10))),
        };
        assert_eq!(history.changed_at(false, at(30)), at(30));
        assert_eq!(decide(false, at(30), history, true, at(20)), None);
        // Still true, never read since the write: it changed after :10 (at its modstamp, :11).
        assert_eq!(history.changed_at(true, at(11)), at(11));
        // Read false again after the change back (at :30): that read's stamp stands.
        let later = FlagHistory {
            seen: Some((false, at(30))),
            written: Some((true, at(10))),
        };
        assert_eq!(later.changed_at(false, at(40)), at(30));
    }

    #[test]
    fn write_errors_worth_retrying_are_told_apart() {
        assert!(is_retryable_write_error(
            "UNABLE_TO_LOCK_ROW: unable to obtain exclusive access"
        ));
        assert!(!is_retryable_write_error(
            "FIELD_CUSTOM_VALIDATION_EXCEPTION: no"
        ));
        assert!(!is_retryable_write_error(
            "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY: no"
        ));
    }

    #[test]
    fn the_dead_letter_carries_the_change() {
        let change = EmailPreferenceChange {
            key: "003000000000001".parse().expect("id"),
            do_not_email: true,
            updated_on: at(5),
        };
        let m = WorkMessage::parse(&dead_letter_body(&change, "r")).expect("parses");
        assert_eq!(
            (m.kind, m.id, m.value, m.cursor),
            (RecordKind::OptOut, change.key, Some(true), Some(at(5)))
        );
    }
}
