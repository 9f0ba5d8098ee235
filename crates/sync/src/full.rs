//! The full refresh: every live Contact queued to be re-read, by an Id scan that no time window
//! can express. It runs:
//! - as the **initial load**, when no full refresh has ever completed: it reads every Contact,
//!   those whose Flow-kept cursor field is null included; the Contact feeds start their windows
//!   at the same time, so nothing that changes meanwhile is missed;
//! - every `contacts.full_refresh_every` (default daily) when something can change without the
//!   cursor moving: a prefixed formula field (formulas do not move `SystemModstamp`), or a
//!   Flow-kept `cursor_field` (a Contact it is null on, or an edit the Flow missed);
//! - at the next run after the Contact describe changed in a way that renames groups (a
//!   checkbox label, a Record Type name): see [`note_describe`].
//!
//! The scan is keyset-paged by Id and checkpointed after each page is on the queue, so a run
//! stopped by its deadline resumes where it stopped. Each page of 2,000 Contacts becomes one
//! range message (`kind: "contact_range"`, the Ids after the previous page's last up to this
//! page's last), which the Member Refresh reads back as one query, whatever the Contacts' push
//! records say, and pushes only those whose mapped record changed. So a million Contacts cost 500
//! scan pages, 500 messages and 500 range reads: Salesforce reads, not Higher Logic pushes.
//!
//! Its watermark is when the last full refresh started on Salesforce's clock (a change during
//! the scan is caught by the next one), stored as the feed `contacts-full-refresh`.

use chrono::{DateTime, TimeDelta, Utc};
use hlsync_core::config::Config;
use hlsync_core::schema::ContactSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::Deadline;
use crate::error::{Service, SyncError};
use crate::message::WorkMessage;
use crate::ports::{Crm, Describe, IdScan, StateStore, WorkQueue};
use crate::records::{StateRecord, StateRecords as _};
use crate::watermark::{Mark, ScanCheckpoint};

pub const FEED_FULL_REFRESH: &str = "contacts-full-refresh";

/// A full refresh asked for (by a change of the Contact describe), and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FullRefreshRequest {
    pub at: DateTime<Utc>,
    pub reason: String,
}

impl StateRecord for FullRefreshRequest {
    type Id = ();
    fn key((): &()) -> String {
        "full-refresh#requested".into()
    }
}

/// The fingerprint of the Contact describe's group-naming parts, as last seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DescribeSeen {
    pub fingerprint: String,
    pub at: DateTime<Utc>,
}

impl StateRecord for DescribeSeen {
    type Id = ();
    fn key((): &()) -> String {
        "describe#contact".into()
    }
}

/// When the last full refresh that scanned every Contact to the end started. Not the
/// watermark: that also moves, without a scan, when no refresh is needed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanEnded {
    pub started: DateTime<Utc>,
}

impl StateRecord for ScanEnded {
    type Id = ();
    fn key((): &()) -> String {
        "full-refresh#scanned".into()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FullRefreshReport {
    /// When this full refresh started, on Salesforce's clock (its watermark once completed).
    pub started: Option<DateTime<Utc>>,
    /// This run continued a full refresh an earlier run left unfinished.
    pub resumed: bool,
    /// It is the initial load (no full refresh ever completed).
    #[serde(default)]
    pub initial: bool,
    /// Why it ran.
    #[serde(default)]
    pub reason: String,
    pub formula_fields: Vec<String>,
    /// Contacts queued (in range messages).
    pub sent: u64,
    /// Range messages queued (one per page of the scan).
    #[serde(default)]
    pub messages: u64,
    pub completed: bool,
}

/// Since when every live Contact is, or is being, read whole by a full refresh: the start of the
/// scan under way (it resumes until it ends), else of the last scan that ended (the initial load is
/// the first). A change made before it (less `settle`, for late commits) reaches every member
/// through that read.
pub async fn read_whole_since(state: &dyn StateStore) -> Result<Option<DateTime<Utc>>, SyncError> {
    let mark = Mark::load(state, FEED_FULL_REFRESH).await?;
    if let Some(cp) = mark.checkpoint::<ScanCheckpoint>() {
        return Ok(Some(cp.started));
    }
    Ok(state.load::<ScanEnded>(&()).await?.map(|s| s.started))
}

/// Whether a periodic full refresh is due now: never done, or done `every` or longer ago.
pub fn is_due(last: Option<DateTime<Utc>>, now: DateTime<Utc>, every: std::time::Duration) -> bool {
    let every = TimeDelta::from_std(every).unwrap_or(TimeDelta::MAX);
    last.is_none_or(|at| now - at >= every)
}

/// What the full refresh works with.
pub struct FullDeps<'a> {
    pub cfg: &'a Config,
    pub crm: &'a dyn Crm,
    pub state: &'a dyn StateStore,
    pub queue: &'a dyn WorkQueue,
    pub run_id: &'a str,
    pub deadline: &'a Deadline,
}

/// Runs (or resumes) the full refresh when it is due.
pub async fn run_if_due(
    deps: &FullDeps<'_>,
    sf_now: DateTime<Utc>,
) -> Result<Option<FullRefreshReport>, SyncError> {
    let state = deps.state;
    let mut mark = Mark::load(state, FEED_FULL_REFRESH).await?;
    let initial = mark.at().is_none();
    let resumed = mark.checkpoint::<ScanCheckpoint>();
    let mut report = FullRefreshReport {
        resumed: resumed.is_some(),
        initial,
        ..FullRefreshReport::default()
    };
    let custom_cursor = !deps
        .cfg
        .salesforce
        .cursor_field
        .eq_ignore_ascii_case("SystemModstamp");
    let requested = requested_since(state, mark.at()).await?;
    let mut cp = if let Some(cp) = resumed {
        cp
    } else {
        let due = is_due(mark.at(), sf_now, deps.cfg.contacts.full_refresh_every);
        if !(initial || requested.is_some() || due) {
            return Ok(None);
        }
        ScanCheckpoint {
            started: sf_now,
            after: None,
        }
    };
    // The describe costs a call: read only when a periodic refresh may be due.
    let describe = deps.crm.describe_contact(false).await?;
    note_describe(state, &describe, deps.cfg).await;
    let schema = ContactSchema::build(&describe.fields, &describe.record_types, deps.cfg)
        .map_err(|e| SyncError::failed(e.to_string()))?;
    report.formula_fields = schema
        .formula_fields()
        .iter()
        .map(|f| f.name.clone())
        .collect();
    report.started = Some(cp.started);
    report.reason = if initial {
        "initial load".to_owned()
    } else if let Some(reason) = &requested {
        reason.clone()
    } else if !report.formula_fields.is_empty() {
        "formula fields feed groups".to_owned()
    } else if custom_cursor {
        format!(
            "salesforce.cursor_field {} is kept by a Flow",
            deps.cfg.salesforce.cursor_field
        )
    } else {
        // Nothing changes behind SystemModstamp's back: look again after another period.
        mark.advance(state, cp.started).await?;
        return Ok(None);
    };
    info!(reason = %report.reason, after = ?cp.after, "full refresh of all Contacts");

    let mut pages = deps
        .crm
        .scan(IdScan {
            object: "Contact".into(),
            after: cp.after.clone(),
        })
        .await?;
    while let Some(page) = pages.next_page().await? {
        let Some(last) = page.last().map(|c| c.id.clone()) else {
            continue;
        };
        let body = WorkMessage::contact_range(cp.after.clone(), last.clone(), deps.run_id, false)
            .to_body();
        let failed = deps.queue.send(vec![body]).await?;
        if !failed.is_empty() {
            return Err(SyncError::Transient {
                service: Service::Aws,
                message: format!(
                    "the queue did not accept the full refresh's range message after {:?}; the full refresh resumes there on the next run",
                    cp.after
                ),
            });
        }
        report.sent += page.len() as u64;
        report.messages += 1;
        cp.after = Some(last);
        mark.save_checkpoint(state, &cp).await?;
        if deps.deadline.near() {
            info!("near the deadline: the full refresh resumes from its checkpoint next run");
            return Ok(Some(report));
        }
    }
    // Recorded before the watermark moves: should this write fail, the next run resumes the scan
    // at its end and records it then.
    state
        .store(
            &(),
            &ScanEnded {
                started: cp.started,
            },
        )
        .await?;
    mark.advance(state, cp.started).await?;
    report.completed = true;
    Ok(Some(report))
}

/// The reason of a full refresh asked for after `last` (when the last one started), if any.
async fn requested_since(
    state: &dyn StateStore,
    last: Option<DateTime<Utc>>,
) -> Result<Option<String>, SyncError> {
    let Some(request) = state.load::<FullRefreshRequest>(&()).await? else {
        return Ok(None);
    };
    if last.is_some_and(|last| request.at <= last) {
        return Ok(None);
    }
    Ok(Some(request.reason))
}

/// A fingerprint of what names groups in the Contact describe: the prefixed fields' names,
/// labels and types, and the Record Types' names.
fn describe_fingerprint(describe: &Describe, cfg: &Config) -> String {
    let prefix = cfg.contacts.group_field_prefix.to_ascii_lowercase();
    let mut parts: Vec<String> = describe
        .fields
        .iter()
        .filter(|f| f.name.to_ascii_lowercase().starts_with(&prefix))
        .map(|f| format!("f\0{}\0{}\0{}", f.name, f.label, f.field_type.as_sf()))
        .collect();
    if cfg.contacts.record_type_groups {
        parts.extend(
            describe
                .record_types
                .iter()
                .map(|r| format!("r\0{}\0{}\0{}", r.id, r.developer_name, r.name)),
        );
    }
    parts.sort();
    hex::encode(&Sha256::digest(parts.join("\n").as_bytes())[..8])
}

/// Remembers the describe's group-naming parts, and when they changed since last seen (a
/// checkbox label or a Record Type renamed, a prefixed field added), asks for a full refresh:
/// group names follow labels, and no Contact's `SystemModstamp` moves for it. Called wherever
/// the describe is read (the Member Refresh reads it for every batch, cached per warm function).
/// Best effort: a failure is logged, the next read tries again.
pub async fn note_describe(state: &dyn StateStore, describe: &Describe, cfg: &Config) {
    let fingerprint = describe_fingerprint(describe, cfg);
    let seen = match state.load::<DescribeSeen>(&()).await {
        Ok(seen) => seen,
        Err(e) => {
            warn!(error = %e, "could not read the last describe fingerprint");
            return;
        }
    };
    if seen.as_ref().is_some_and(|s| s.fingerprint == fingerprint) {
        return;
    }
    if seen.is_some() {
        info!("the Contact describe changed (group labels or Record Types): a full refresh is due");
        let request = FullRefreshRequest {
            at: Utc::now(),
            reason: "the Contact describe changed (a group label or Record Type)".into(),
        };
        if let Err(e) = state.store(&(), &request).await {
            warn!(error = %e, "could not ask for a full refresh");
            return;
        }
    }
    let seen = DescribeSeen {
        fingerprint,
        at: Utc::now(),
    };
    if let Err(e) = state.store(&(), &seen).await {
        warn!(error = %e, "could not record the describe fingerprint");
    }
}

/// `hlsync resync`: queues every live Contact for a re-read and a forced push (after Higher
/// Logic's copy was lost or reset), as range messages: one Salesforce call lists 2,000 Contacts
/// and becomes one message, which the Member Refresh reads back as one query. No watermark
/// moves: run it again if it stops. Answers how many Contacts were queued.
pub async fn queue_resync(
    crm: &dyn Crm,
    queue: &dyn WorkQueue,
    run_id: &str,
) -> Result<u64, SyncError> {
    let mut pages = crm
        .scan(IdScan {
            object: "Contact".into(),
            after: None,
        })
        .await?;
    let mut sent = 0;
    let mut after = None;
    while let Some(page) = pages.next_page().await? {
        let Some(last) = page.last().map(|c| c.id.clone()) else {
            continue;
        };
        let body = WorkMessage::contact_range(after.clone(), last.clone(), run_id, true).to_body();
        let failed = queue.send(vec![body]).await?;
        if !failed.is_empty() {
            return Err(SyncError::Transient {
                service: Service::Aws,
                message: format!(
                    "the queue did not accept a range message after {sent} Contacts were queued; run `hlsync resync` again"
                ),
            });
        }
        sent += page.len() as u64;
        after = Some(last);
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_when_never_done_or_a_period_has_passed() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        let day = Duration::from_hours(24);
        assert!(is_due(None, now, day));
        assert!(is_due(Some(now - TimeDelta::days(1)), now, day));
        assert!(!is_due(Some(now - TimeDelta::hours(23)), now, day));
        assert!(!is_due(Some(now), now, day));
    }
}
