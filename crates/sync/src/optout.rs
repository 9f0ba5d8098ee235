//! The GDPR opt-out write-back: members' opt-out changes made in Higher Logic go back to
//! `Contact.HasOptedOutOfEmail` (SPEC.md §6).
//!
//! Where the tenant provides an email-preference feed (`higher_logic.email_preferences_url`), each
//! Periodic Refresh reads `GET {feed}?since=` from its own watermark (the newest
//! `UpdatedOn` seen: Higher Logic's clock, never ours), reads the Contacts named in one batch,
//! decides per Contact with [`resolve_opt_out`] and writes the ones Higher Logic wins with
//! `PATCH composite/sobjects`, 200 per call.
//!
//! It must not bounce. The write moves `SystemModstamp`, so the next sync re-reads the Contact and
//! pushes the same value to Higher Logic. That push is not a member's change (Higher Logic does not
//! list it), and were it listed, the Contact would already hold its value: a write happens only
//! when the decision differs from what Salesforce holds now, so an echo writes nothing.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use hlsync_core::id::SfId;
use hlsync_core::optout::resolve_opt_out;
use hlsync_core::time::parse_sf_datetime;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::{info, warn};

use crate::error::SyncError;
use crate::periodic::{Mark, PeriodicDeps};
use crate::ports::{Community, EmailPreferenceChange};

pub const FEED_EMAIL_PREFERENCES: &str = "email-preferences";
const FIELD: &str = "HasOptedOutOfEmail";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OptOutReport {
    pub since: Option<DateTime<Utc>>,
    /// Members whose opt-out changed in Higher Logic since the watermark.
    pub changes: u64,
    /// Contacts whose `HasOptedOutOfEmail` was written.
    pub written: u64,
    /// Changes that needed no write: Salesforce's change was later, or it already agrees.
    pub unchanged: u64,
    /// Writes Salesforce refused; retried next run (the watermark stays before them).
    pub failed: u64,
    /// Where the watermark now stands (Higher Logic's clock).
    pub watermark: Option<DateTime<Utc>>,
    /// Why the step did not finish (it is retried next run; the Contacts feeds are not held up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The value to write to Salesforce, if any.
///
/// `sf_value`/`sf_modstamp`: the Contact as read now; `pushed_cursor`: its `SystemModstamp` when
/// it was last read for a push (what Higher Logic was last given). The member changed their
/// preference after seeing that state, so the push cursor is the Salesforce time to compare
/// with, and an unrelated later edit of the Contact cannot undo a member's opt-out. One exception
/// errs towards opted out: a Contact opted out in Salesforce after that push may have been opted
/// out by that very change, so its newer `SystemModstamp` counts.
pub fn decide(
    sf_value: bool,
    sf_modstamp: DateTime<Utc>,
    pushed_cursor: Option<DateTime<Utc>>,
    hl_value: bool,
    hl_updated_on: DateTime<Utc>,
) -> Option<bool> {
    let sf_time = match pushed_cursor {
        Some(cursor) if !(sf_value && sf_modstamp > cursor) => cursor,
        _ => sf_modstamp,
    };
    let keep = resolve_opt_out((sf_value, sf_time), (hl_value, hl_updated_on));
    (keep != sf_value).then_some(keep)
}

/// The newest `UpdatedOn` the watermark may move to: every change at or before it is done.
pub fn next_watermark(
    changes: &[EmailPreferenceChange],
    failed: &HashSet<SfId>,
) -> Option<DateTime<Utc>> {
    let first_failure = changes
        .iter()
        .filter(|c| failed.contains(&c.key))
        .map(|c| c.updated_on)
        .min();
    changes
        .iter()
        .map(|c| c.updated_on)
        .filter(|at| first_failure.is_none_or(|f| *at < f))
        .max()
}

/// Reads Higher Logic's changes and writes back the ones it wins. A failure that stops the run
/// (credentials, allotment) is returned; any other is reported and retried by the next run.
pub async fn write_back(
    deps: &PeriodicDeps<'_>,
    community: &dyn Community,
) -> Result<OptOutReport, SyncError> {
    let mut report = OptOutReport::default();
    match run(deps, community, &mut report).await {
        Ok(()) => Ok(report),
        Err(e) if e.stops_run() => Err(e),
        Err(e) => {
            warn!(error = %e, "the email opt-out write-back did not finish; the next run tries again");
            report.error = Some(e.to_string());
            Ok(report)
        }
    }
}

async fn run(
    deps: &PeriodicDeps<'_>,
    community: &dyn Community,
    report: &mut OptOutReport,
) -> Result<(), SyncError> {
    let stored = deps.state.watermark(FEED_EMAIL_PREFERENCES).await?;
    let mut mark = Mark {
        feed: FEED_EMAIL_PREFERENCES,
        at: stored.at,
        version: stored.version,
    };
    report.since = stored.at;
    report.watermark = stored.at;
    let since = stored.at.unwrap_or(DateTime::UNIX_EPOCH);
    let mut changes = community.email_preferences_since(since).await?;
    if changes.is_empty() {
        return Ok(());
    }
    changes.sort_by(|a, b| (a.updated_on, &a.key).cmp(&(b.updated_on, &b.key)));
    // One decision per member: their latest change (a tie opts out).
    let mut latest: BTreeMap<SfId, &EmailPreferenceChange> = BTreeMap::new();
    for c in &changes {
        let slot = latest.entry(c.key.clone()).or_insert(c);
        if (c.updated_on, c.do_not_email) > (slot.updated_on, slot.do_not_email) {
            *slot = c;
        }
    }
    report.changes = latest.len() as u64;
    let ids: Vec<SfId> = latest.keys().cloned().collect();
    let pushed = deps.state.pushed(&ids).await?;
    let fields = vec![
        "Id".to_string(),
        FIELD.to_string(),
        "SystemModstamp".to_string(),
    ];
    let records = deps.crm.read("Contact", &ids, &fields).await?;

    let mut writes = Vec::new();
    for (id, record) in ids.iter().zip(&records) {
        let change = latest[id];
        let Some(record) = record else {
            // A deleted Contact has no preference to keep; Higher Logic hears of the delete.
            report.unchanged += 1;
            continue;
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
        let cursor = pushed.get(id).and_then(|p| p.cursor);
        match decide(
            sf_value,
            modstamp,
            cursor,
            change.do_not_email,
            change.updated_on,
        ) {
            Some(value) => {
                let mut fields = Map::new();
                fields.insert(FIELD.into(), Value::Bool(value));
                writes.push(("Contact".to_string(), id.clone(), fields));
            }
            None => report.unchanged += 1,
        }
    }
    let mut failed = HashSet::new();
    if !writes.is_empty() {
        let results = deps.crm.update(writes).await?;
        for r in results {
            match r.error {
                None => report.written += 1,
                Some(error) => {
                    warn!(contact = %r.id, %error, "Salesforce refused the opt-out write-back; it is retried next run");
                    report.failed += 1;
                    failed.insert(r.id);
                }
            }
        }
    }
    if let Some(at) = next_watermark(&changes, &failed).filter(|at| Some(*at) > mark.at) {
        mark.save(deps.state, Some(at), None).await?;
        report.watermark = Some(at);
    }
    info!(
        changes = report.changes,
        written = report.written,
        failed = report.failed,
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

    fn id(n: u32) -> SfId {
        format!("003{n:012}").parse().expect("valid id")
    }

    #[test]
    fn the_later_change_wins_and_a_tie_opts_out() {
        // The member opted out after the last push: written.
        assert_eq!(decide(false, at(1), Some(at(1)), true, at(5)), Some(true));
        // Salesforce changed after the member did, and that was pushed: nothing to write.
        assert_eq!(decide(false, at(9), Some(at(9)), true, at(5)), None);
        // A tie opts out.
        assert_eq!(decide(false, at(5), Some(at(5)), true, at(5)), Some(true));
        // Already equal: never written, whoever is later (the echo of our own write).
        assert_eq!(decide(true, at(9), Some(at(9)), true, at(10)), None);
        // Never pushed: the Contact's SystemModstamp as read.
        assert_eq!(decide(false, at(1), None, true, at(5)), Some(true));
        assert_eq!(decide(true, at(9), None, false, at(5)), None);
    }

    #[test]
    fn an_unrelated_later_edit_does_not_undo_a_members_opt_out() {
        // Pushed at :01, member opted out at :05, someone edited the title at :07.
        assert_eq!(decide(false, at(7), Some(at(1)), true, at(5)), Some(true));
        // But an opt-out made in Salesforce after the push is not undone by an older opt-in.
        assert_eq!(decide(true, at(7), Some(at(1)), false, at(5)), None);
    }

    #[test]
    fn the_watermark_stops_before_the_first_failure() {
        let c = |n: u32, minute: u32| EmailPreferenceChange {
            key: id(n),
            do_not_email: true,
            updated_on: at(minute),
        };
        let changes = vec![c(1, 1), c(2, 2), c(3, 2), c(4, 3)];
        assert_eq!(next_watermark(&changes, &HashSet::new()), Some(at(3)));
        assert_eq!(
            next_watermark(&changes, &HashSet::from([id(3)])),
            Some(at(1))
        );
        assert_eq!(next_watermark(&changes, &HashSet::from([id(1)])), None);
    }
}
