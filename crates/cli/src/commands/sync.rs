//! `hlsync sync`: a Periodic Refresh and `member-refresh --drain`, side by side.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use hlsync_sync::periodic::PeriodicReport;
use hlsync_sync::runtime::Runtime;
use serde::Serialize;

use super::periodic_refresh::{periodic_refresh, write_periodic};
use crate::context;
use crate::drain::{self, DrainReport};
use crate::output::Progress;

#[derive(Debug, Serialize)]
pub struct SyncReport {
    pub periodic: PeriodicReport,
    pub member_refresh: DrainReport,
}

pub async fn run(
    config: Option<&Path>,
    stack: &str,
    batch_size: usize,
    json: bool,
) -> anyhow::Result<SyncReport> {
    let rt = context::runtime(config, stack).await?;
    let progress = Progress::spinner(json, "sync");
    sync(&rt, batch_size, &progress).await
}

/// A Periodic Refresh and the Member Refresh of what it queues, running side by side as the
/// deployed functions do (the queue stays short, which also keeps an emulated SQS fast).
pub async fn sync(
    rt: &Runtime,
    batch_size: usize,
    progress: &Progress,
) -> anyhow::Result<SyncReport> {
    let producer_done = AtomicBool::new(false);
    let producer = async {
        let result = periodic_refresh(rt, progress).await;
        producer_done.store(true, Ordering::SeqCst);
        result
    };
    let consumer = drain::drain_until(rt, batch_size, progress, &producer_done);
    let (periodic, member_refresh) = tokio::join!(producer, consumer);
    Ok(SyncReport {
        periodic: periodic?,
        member_refresh: member_refresh?,
    })
}

impl fmt::Display for SyncReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_periodic(f, &self.periodic)?;
        write!(f, "{}", self.member_refresh)
    }
}
