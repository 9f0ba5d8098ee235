//! `hlsync resync`: queues every live Contact to be read and pushed again.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::periodic_refresh::run_stamp;
use crate::context;
use crate::drain::{self, DrainReport};
use crate::output::Progress;

#[derive(Debug, Serialize)]
pub struct ResyncReport {
    /// Contacts queued.
    pub queued: u64,
    /// The drain's report, with `--drain`.
    pub member_refresh: Option<DrainReport>,
}

pub async fn run(
    config: Option<&Path>,
    stack: &str,
    drain: bool,
    batch_size: usize,
    json: bool,
) -> anyhow::Result<ResyncReport> {
    let rt = context::runtime(config, stack).await?;
    let progress = Progress::spinner(json, "resync");
    progress.set_message("listing every Contact in Salesforce…");
    let run_id = format!("resync-{}", run_stamp());
    let queued = hlsync_sync::full::queue_resync(&rt.crm, &rt.queues, &run_id).await?;
    let member_refresh = if drain {
        progress.note(format!("resync: {queued} Contacts queued"));
        Some(drain::drain(&rt, batch_size, &progress).await?)
    } else {
        None
    };
    Ok(ResyncReport {
        queued,
        member_refresh,
    })
}

impl fmt::Display for ResyncReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "resync: {} Contacts queued to be read and pushed again",
            self.queued
        )?;
        match &self.member_refresh {
            Some(drained) => write!(f, "{drained}"),
            None => writeln!(
                f,
                "resync: the member-refresh function works them off (locally: hlsync member-refresh --drain)"
            ),
        }
    }
}
