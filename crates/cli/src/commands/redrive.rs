//! `hlsync redrive`: moves messages from the dead-letter queue back to the work queue.

use std::fmt;

use hlsync_aws::Clients;
use serde::Serialize;

use crate::context;
use crate::output::Progress;

#[derive(Debug, Serialize)]
pub struct RedriveReport {
    pub moved: usize,
    /// Messages received from the DLQ but not sent; they stay there.
    pub failed: usize,
    /// How they were moved: by SQS's own move task, or copied here.
    pub method: String,
}

pub async fn run(stack: &str, max: Option<usize>, json: bool) -> anyhow::Result<RedriveReport> {
    let sdk = context::sdk_config().await;
    let clients = Clients::new(&sdk);
    let resources = context::resources(&clients, stack).await?;
    let progress = Progress::spinner(json, "redrive");
    progress.set_message("moving messages from the DLQ back to the queue…");
    let report =
        hlsync_aws::redrive(&clients.sqs, &resources.dlq_url, &resources.queue_url, max).await?;
    Ok(RedriveReport {
        moved: report.moved,
        failed: report.failed,
        method: format!("{:?}", report.method),
    })
}

impl fmt::Display for RedriveReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "redrive: {} messages moved from the DLQ back to the queue",
            self.moved
        )?;
        if self.failed > 0 {
            write!(f, ", {} left on the DLQ (could not be sent)", self.failed)?;
        }
        writeln!(f)
    }
}
