//! Creating a stack's resources for local runs and dev accounts: the state table, the work queue
//! and its dead-letter queue, and the secret. `hlsync provision` and the local system both use
//! it; a deployed stack gets them from the SAM template instead.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use hlsync_aws::Clients;
use secrecy::SecretString;
use serde::Serialize;

use crate::context::StackNames;

/// Visibility timeout of the work queue (the template uses 6x the function timeout; locally, two
/// minutes).
pub const QUEUE_VISIBILITY: Duration = Duration::from_mins(2);
/// Receives of a message before SQS moves it to the dead-letter queue.
pub const MAX_RECEIVE_COUNT: u32 = 5;

/// What was created (or found already there).
#[derive(Debug, Clone, Serialize)]
pub struct Provisioned {
    pub table: String,
    pub queue_url: String,
    pub dlq_url: String,
    /// The secret's id, when a secret file was stored.
    pub secret: Option<String>,
}

/// Creates the stack's table and queues, and stores `secret_file` as its secret once it is known
/// to be a secret the functions can use.
pub async fn provision(
    clients: &Clients,
    stack: &str,
    secret_file: Option<&Path>,
) -> anyhow::Result<Provisioned> {
    let secret = secret_file
        .map(|path| {
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the secret file {}", path.display()))
        })
        .transpose()?;
    provision_with_secret(clients, stack, secret.as_deref()).await
}

/// [`provision`] given the secret's JSON text itself instead of a file.
pub async fn provision_with_secret(
    clients: &Clients,
    stack: &str,
    secret: Option<&str>,
) -> anyhow::Result<Provisioned> {
    let names = StackNames::new(stack);
    hlsync_aws::create_table(&clients.dynamodb, &names.table).await?;
    let (queue_url, dlq_url) = hlsync_aws::create_queue_pair(
        &clients.sqs,
        &names.queue,
        &names.dlq,
        MAX_RECEIVE_COUNT,
        QUEUE_VISIBILITY,
    )
    .await?;
    let secret = match secret {
        Some(text) => {
            // Refuse a document the functions could not use, before storing it.
            hlsync_sync::credentials::parse_secret(&names.secret, "new", text)?;
            hlsync_aws::put_secret(&clients.secrets, &names.secret, &SecretString::from(text))
                .await?;
            Some(names.secret.clone())
        }
        None => None,
    };
    Ok(Provisioned {
        table: names.table,
        queue_url,
        dlq_url,
        secret,
    })
}
