//! `hlsync provision`: creates the stack's resources on the configured AWS endpoint.

use std::fmt;
use std::path::Path;

use hlsync_aws::Clients;
use serde::Serialize;

use crate::context;
use crate::provision::{self, Provisioned};

#[derive(Debug, Serialize)]
pub struct ProvisionReport {
    #[serde(skip)]
    pub stack: String,
    #[serde(flatten)]
    pub provisioned: Provisioned,
}

pub async fn run(stack: &str, secret_file: Option<&Path>) -> anyhow::Result<ProvisionReport> {
    let sdk = context::sdk_config().await;
    let clients = Clients::new(&sdk);
    let provisioned = provision::provision(&clients, stack, secret_file).await?;
    Ok(ProvisionReport {
        stack: stack.to_owned(),
        provisioned,
    })
}

impl fmt::Display for ProvisionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.provisioned;
        writeln!(f, "provisioned stack `{}`:", self.stack)?;
        writeln!(f, "  table  {}", p.table)?;
        writeln!(f, "  queue  {}", p.queue_url)?;
        writeln!(f, "  dlq    {}", p.dlq_url)?;
        writeln!(
            f,
            "  secret {}",
            p.secret
                .as_deref()
                .unwrap_or("(not changed: pass --secret-file to store one)")
        )
    }
}
