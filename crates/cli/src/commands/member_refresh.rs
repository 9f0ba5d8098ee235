//! `hlsync member-refresh --drain`: consumes the work queue as the SQS-triggered Lambda does
//! (the emulated event source is `crate::drain`).

use std::fmt;
use std::path::Path;

use anyhow::bail;

use crate::context;
use crate::drain::{self, DrainReport};
use crate::output::Progress;

pub async fn run(
    config: Option<&Path>,
    stack: &str,
    drain: bool,
    batch_size: usize,
    json: bool,
) -> anyhow::Result<DrainReport> {
    if !drain {
        bail!(
            "member-refresh runs as the SQS-triggered Lambda; locally use `hlsync member-refresh --drain`"
        );
    }
    let rt = context::runtime(config, stack).await?;
    let progress = Progress::spinner(json, "member-refresh");
    drain::drain(&rt, batch_size, &progress).await
}

impl fmt::Display for DrainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "member-refresh: {} messages in {} batches: {} Contacts, {} pushed ({} deactivated, {} deleted), \
             {} meetings pushed, {} registrations carried, \
             {} unchanged, {} dead-lettered, {} failed deliveries; {} Salesforce calls, {} Higher Logic calls",
            self.messages,
            self.batches,
            self.contacts,
            self.pushed,
            self.deactivated,
            self.deleted,
            self.meetings_pushed,
            self.registrations_pushed,
            self.skipped_unchanged + self.already_current,
            self.dead_lettered,
            self.failed_deliveries,
            self.salesforce_calls,
            self.higher_logic_calls
        )
    }
}
