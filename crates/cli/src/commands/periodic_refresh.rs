//! `hlsync periodic-refresh`: one Periodic Refresh, as the scheduled Lambda does it.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use hlsync_sync::Deadline;
use hlsync_sync::periodic::{PeriodicOptions, PeriodicReport};
use hlsync_sync::runtime::Runtime;
use serde::Serialize;

use crate::context;
use crate::output::Progress;

/// The sync crate's report, with its text.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct PeriodicRefreshReport(pub PeriodicReport);

pub async fn run(
    config: Option<&Path>,
    stack: &str,
    json: bool,
) -> anyhow::Result<PeriodicRefreshReport> {
    let rt = context::runtime(config, stack).await?;
    let progress = Progress::spinner(json, "periodic-refresh");
    Ok(PeriodicRefreshReport(
        periodic_refresh(&rt, &progress).await?,
    ))
}

/// One Periodic Refresh under a run id of its own.
pub async fn periodic_refresh(rt: &Runtime, progress: &Progress) -> anyhow::Result<PeriodicReport> {
    progress.set_message("periodic-refresh: reading changes from Salesforce…");
    let opts = PeriodicOptions {
        run_id: format!("cli-{}", run_stamp()),
        deadline: Deadline::none(),
        lease_ttl: Duration::from_mins(15),
    };
    Ok(rt.periodic_refresh(&opts).await?)
}

/// The time now, to the millisecond, as a part of a run id.
pub fn run_stamp() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%S%3f").to_string()
}

impl fmt::Display for PeriodicRefreshReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_periodic(f, &self.0)
    }
}

/// The text of a Periodic Refresh's report, one line per part of the run.
pub fn write_periodic(f: &mut fmt::Formatter<'_>, r: &PeriodicReport) -> fmt::Result {
    const UNFINISHED: &str = " (unfinished: the next run resumes)";
    if let Some(why) = &r.skipped {
        return writeln!(f, "periodic-refresh: skipped ({why})");
    }
    for feed in &r.feeds {
        writeln!(
            f,
            "periodic-refresh: {}: window {} .. {}: {} changed ({} deleted), {} queued{}",
            feed.feed,
            feed.from.map_or("-".into(), |t| t.to_rfc3339()),
            feed.to.map_or("-".into(), |t| t.to_rfc3339()),
            feed.changed,
            feed.deleted,
            feed.sent,
            if feed.completed { "" } else { UNFINISHED },
        )?;
    }
    if let Some(full) = &r.full_refresh {
        writeln!(
            f,
            "periodic-refresh: full refresh (formula fields {}): {} Contacts queued{}",
            full.formula_fields.join(", "),
            full.sent,
            if full.completed { "" } else { UNFINISHED },
        )?;
    }
    if let Some(optout) = &r.email_preferences {
        write!(
            f,
            "periodic-refresh: email opt-out changes in Higher Logic: {}, written to Salesforce: {}, failed: {}",
            optout.changes, optout.written, optout.failed
        )?;
        if let Some(e) = &optout.error {
            write!(f, " ({e})")?;
        }
        writeln!(f)?;
    }
    write!(
        f,
        "periodic-refresh: {} Salesforce API calls",
        r.salesforce_calls
    )?;
    if let Some(u) = r.usage {
        write!(f, ", org usage {}/{}", u.used, u.max)?;
    }
    writeln!(f)
}
