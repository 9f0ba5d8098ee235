//! The full refresh: every live Contact re-read on a slower schedule, for formula fields.
//!
//! A formula field's value changes without moving `SystemModstamp`, so no window ever sees it.
//! When the describe shows prefixed formula fields, every `contacts.full_refresh_every` the
//! Periodic Refresh lists all live Contacts (keyset-paged by Id, checkpointed after each page, so
//! a run stopped by its deadline resumes where it stopped) and queues them with `full: true`: the
//! Member Refresh re-reads them even when its stored cursor is newer, and pushes only those whose
//! mapped record changed. It costs Salesforce reads (a query page and two batch reads per 2,000
//! Contacts), not Higher Logic pushes.
//!
//! Its watermark is when the last full refresh started on Salesforce's clock (a formula that
//! changes during the scan is caught by the next one), stored as the feed `contacts-full-refresh`.

use chrono::{DateTime, TimeDelta, Utc};
use hlsync_core::id::SfId;
use hlsync_core::schema::ContactSchema;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::error::{Service, SyncError};
use crate::message::{RecordKind, WorkMessage};
use crate::periodic::{Mark, PeriodicDeps, PeriodicOptions};
use crate::ports::{Change, Crm, IdScan, WorkQueue};

pub const FEED_FULL_REFRESH: &str = "contacts-full-refresh";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FullRefreshReport {
    /// When this full refresh started, on Salesforce's clock (its watermark once completed).
    pub started: Option<DateTime<Utc>>,
    /// This run continued a full refresh an earlier run left unfinished.
    pub resumed: bool,
    pub formula_fields: Vec<String>,
    /// Contacts queued (with `full: true`).
    pub sent: u64,
    pub completed: bool,
}

/// Where an unfinished full refresh stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FullCheckpoint {
    started: DateTime<Utc>,
    after: Option<SfId>,
}

/// Whether a full refresh is due now: never done (and the Contacts feed is not starting from
/// scratch in this very run), or done `every` or longer ago.
pub fn is_due(last: Option<DateTime<Utc>>, now: DateTime<Utc>, every: std::time::Duration) -> bool {
    let every = TimeDelta::from_std(every).unwrap_or(TimeDelta::MAX);
    last.is_none_or(|at| now - at >= every)
}

/// Runs (or resumes) the full refresh when it is due and formula fields exist. `first_run`: the
/// Contacts feed had no watermark when this run started, so its window reads every Contact anyway.
pub async fn run_if_due(
    deps: &PeriodicDeps<'_>,
    opts: &PeriodicOptions,
    sf_now: DateTime<Utc>,
    first_run: bool,
) -> Result<Option<FullRefreshReport>, SyncError> {
    let state = deps.state;
    let stored = state.watermark(FEED_FULL_REFRESH).await?;
    let mut mark = Mark {
        feed: FEED_FULL_REFRESH,
        at: stored.at,
        version: stored.version,
    };
    let resumed = stored.checkpoint.as_deref().and_then(|text| {
        match serde_json::from_str::<FullCheckpoint>(text) {
            Ok(cp) => Some(cp),
            Err(e) => {
                warn!(error = %e, "unreadable full refresh checkpoint; starting it again");
                None
            }
        }
    });
    let mut report = FullRefreshReport {
        resumed: resumed.is_some(),
        ..FullRefreshReport::default()
    };
    let mut cp = match resumed {
        Some(cp) => cp,
        None => {
            if stored.at.is_none() && first_run {
                // This run's Contacts window already re-reads everything.
                mark.save(state, Some(sf_now), None).await?;
                return Ok(None);
            }
            if !is_due(stored.at, sf_now, deps.cfg.contacts.full_refresh_every) {
                return Ok(None);
            }
            FullCheckpoint {
                started: sf_now,
                after: None,
            }
        }
    };
    // Only now, when one may be due: the describe costs a call.
    let describe = deps.crm.describe_contact(false).await?;
    let schema = ContactSchema::build(&describe.fields, &describe.record_types, deps.cfg)
        .map_err(|e| SyncError::failed(e.to_string()))?;
    report.formula_fields = schema
        .formula_fields()
        .iter()
        .map(|f| f.name.clone())
        .collect();
    report.started = Some(cp.started);
    if report.formula_fields.is_empty() {
        // Nothing changes behind SystemModstamp's back: look again after another period.
        mark.save(state, Some(cp.started), None).await?;
        return Ok(None);
    }
    info!(fields = ?report.formula_fields, after = ?cp.after, "full refresh of all Contacts (formula fields)");

    let mut pages = deps
        .crm
        .scan(IdScan {
            object: "Contact".into(),
            after: cp.after.clone(),
            filter: None,
        })
        .await?;
    while let Some(page) = pages.next_page().await? {
        let Some(last) = page.last().map(|c| c.id.clone()) else {
            continue;
        };
        let bodies = full_messages(&page, &opts.run_id, false);
        let count = bodies.len() as u64;
        let failed = deps.queue.send(bodies).await?;
        if !failed.is_empty() {
            return Err(SyncError::Transient {
                service: Service::Aws,
                message: format!(
                    "the queue did not accept {} of {count} full refresh messages; the full refresh resumes before them on the next run",
                    failed.len()
                ),
            });
        }
        report.sent += count;
        cp.after = Some(last);
        let text = serde_json::to_string(&cp).map_err(|e| SyncError::failed(e.to_string()))?;
        mark.save(state, mark.at, Some(text)).await?;
        if opts.deadline.near() {
            info!("near the deadline: the full refresh resumes from its checkpoint next run");
            return Ok(Some(report));
        }
    }
    mark.save(state, Some(cp.started), None).await?;
    report.completed = true;
    Ok(Some(report))
}

/// Messages that make the Member Refresh re-read these Contacts whatever their stored cursor
/// (`full`), and with `force` push them even when unchanged.
fn full_messages(page: &[Change], run_id: &str, force: bool) -> Vec<String> {
    page.iter()
        .map(|c| {
            let mut m = WorkMessage::of(
                RecordKind::Contact,
                c.id.clone(),
                Some(c.cursor),
                run_id,
                false,
            );
            m.full = true;
            m.force = force;
            m.to_body()
        })
        .collect()
}

/// `hlsync resync`: queues every live Contact for a re-read and a forced push (after Higher
/// Logic's copy was lost or reset). One Salesforce call lists 2,000 Contacts; the Member Refresh
/// then reads them in batches as usual. No watermark moves: run it again if it stops.
pub async fn queue_resync(
    crm: &dyn Crm,
    queue: &dyn WorkQueue,
    run_id: &str,
) -> Result<u64, SyncError> {
    let mut pages = crm
        .scan(IdScan {
            object: "Contact".into(),
            after: None,
            filter: None,
        })
        .await?;
    let mut sent = 0;
    while let Some(page) = pages.next_page().await? {
        let bodies = full_messages(&page, run_id, true);
        let count = bodies.len();
        let failed = queue.send(bodies).await?;
        if !failed.is_empty() {
            return Err(SyncError::Transient {
                service: Service::Aws,
                message: format!(
                    "the queue did not accept {} of {count} messages after {sent} were queued; run `hlsync resync` again",
                    failed.len()
                ),
            });
        }
        sent += count as u64;
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
        let day = Duration::from_secs(86_400);
        assert!(is_due(None, now, day));
        assert!(is_due(Some(now - TimeDelta::days(1)), now, day));
        assert!(!is_due(Some(now - TimeDelta::hours(23)), now, day));
        assert!(!is_due(Some(now), now, day));
    }
}
