//! What every command needs: the config, the AWS resources (from the environment, or named after
//! the stack as `provision` creates them), and the runtime built on them.

use std::path::Path;

use anyhow::Context as _;
use hlsync_aws::{Clients, SdkConfig};
use hlsync_core::config::Config;
use hlsync_sync::runtime::{
    ENV_DLQ_URL, ENV_QUEUE_URL, ENV_SECRET_ID, ENV_STATE_TABLE, Resources, Runtime,
};

/// The resource names that `provision` gives a stack.
#[derive(Debug, Clone)]
pub struct StackNames {
    pub table: String,
    pub queue: String,
    pub dlq: String,
    pub secret: String,
}

impl StackNames {
    pub fn new(stack: &str) -> Self {
        StackNames {
            table: format!("{stack}-state"),
            queue: format!("{stack}-member-refresh"),
            dlq: format!("{stack}-member-refresh-dlq"),
            secret: format!("{stack}/credentials"),
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

pub async fn sdk_config() -> SdkConfig {
    hlsync_aws::load_sdk_config().await
}

/// The resources: each from its environment variable, else by the stack's name.
pub async fn resources(clients: &Clients, stack: &str) -> anyhow::Result<Resources> {
    let names = StackNames::new(stack);
    let queue_url = match env(ENV_QUEUE_URL) {
        Some(url) => url,
        None => hlsync_aws::queue_url(&clients.sqs, &names.queue).await?,
    };
    let dlq_url = match env(ENV_DLQ_URL) {
        Some(url) => url,
        None => hlsync_aws::queue_url(&clients.sqs, &names.dlq).await?,
    };
    Ok(Resources {
        secret_id: env(ENV_SECRET_ID).unwrap_or(names.secret),
        table: env(ENV_STATE_TABLE).unwrap_or(names.table),
        queue_url,
        dlq_url,
    })
}

/// Config + resources + runtime, for the commands that run the pipeline.
pub async fn runtime(config: Option<&Path>, stack: &str) -> anyhow::Result<Runtime> {
    let cfg = load_config(config)?;
    let sdk = sdk_config().await;
    let clients = Clients::new(&sdk);
    let resources = resources(&clients, stack)
        .await
        .context("finding the stack's resources")?;
    Ok(Runtime::new(cfg, resources, &sdk))
}
