//! Everything a function needs, built once per cold start (or once per CLI command): the config,
//! the AWS clients, the credentials from Secrets Manager, and the ports bound to them.

use std::sync::Arc;
use std::time::Duration;

use hlsync_aws::{Clients, DynamoState, SdkConfig, SecretSource, SqsQueue};
use hlsync_core::config::Config;
use hlsync_salesforce::ClientOptions;

use crate::Deadline;
use crate::adapters::aws::SqsQueues;
use crate::adapters::higher_logic::{HigherLogicCommunity, SharedPace};
use crate::adapters::salesforce::SalesforceCrm;
use crate::credentials::Credentials;
use crate::error::SyncError;
use crate::member::{BatchError, IncomingMessage, MemberDeps, MemberReport, member_refresh};
use crate::periodic::{PeriodicDeps, PeriodicOptions, PeriodicReport};

/// How long a warm function trusts the secret it read before looking at its version again.
pub const SECRET_TTL: Duration = Duration::from_mins(5);

/// The names of the deployed resources, from the functions' environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub secret_id: String,
    pub table: String,
    pub queue_url: String,
    pub dlq_url: String,
}

pub const ENV_SECRET_ID: &str = "HLSYNC_SECRET_ID";
pub const ENV_STATE_TABLE: &str = "HLSYNC_STATE_TABLE";
pub const ENV_QUEUE_URL: &str = "HLSYNC_QUEUE_URL";
pub const ENV_DLQ_URL: &str = "HLSYNC_DLQ_URL";

impl Resources {
    /// All four variables, as the deployed functions have them.
    pub fn from_env() -> Result<Self, SyncError> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| {
                    SyncError::failed(format!(
                        "environment variable {name} is not set: the function's template sets it (see infra/template.yaml)"
                    ))
                })
        };
        Ok(Resources {
            secret_id: var(ENV_SECRET_ID)?,
            table: var(ENV_STATE_TABLE)?,
            queue_url: var(ENV_QUEUE_URL)?,
            dlq_url: var(ENV_DLQ_URL)?,
        })
    }
}

/// The two functions with their real adapters.
pub struct Runtime {
    pub cfg: Arc<Config>,
    pub credentials: Arc<Credentials>,
    pub resources: Resources,
    pub aws: Clients,
    pub state: DynamoState,
    pub queues: SqsQueues,
    pub crm: SalesforceCrm,
    pub community: HigherLogicCommunity,
}

impl Runtime {
    pub fn new(cfg: Config, resources: Resources, sdk: &SdkConfig) -> Self {
        Self::with_options(cfg, resources, sdk, ClientOptions::default())
    }

    /// As `new`, with Salesforce client tuning (tests use small query pages and short retries).
    pub fn with_options(
        cfg: Config,
        resources: Resources,
        sdk: &SdkConfig,
        salesforce: ClientOptions,
    ) -> Self {
        let cfg = Arc::new(cfg);
        let aws = Clients::new(sdk);
        let state = DynamoState::new(aws.dynamodb.clone(), resources.table.clone());
        let source =
            SecretSource::new(aws.secrets.clone(), resources.secret_id.clone(), SECRET_TTL);
        let credentials = Arc::new(Credentials::new(Arc::clone(&cfg), source, state.clone()));
        Runtime {
            queues: SqsQueues {
                queue: SqsQueue::new(aws.sqs.clone(), resources.queue_url.clone()),
                dlq: SqsQueue::new(aws.sqs.clone(), resources.dlq_url.clone()),
            },
            crm: SalesforceCrm::new(Arc::clone(&credentials), salesforce),
            community: HigherLogicCommunity::new(
                Arc::clone(&credentials),
                Arc::new(SharedPace::new(
                    Arc::new(state.clone()),
                    std::num::NonZeroU32::new(cfg.higher_logic.max_calls_per_minute)
                        .unwrap_or(std::num::NonZeroU32::MIN),
                )),
            ),
            credentials,
            cfg,
            resources,
            aws,
            state,
        }
    }

    pub async fn periodic_refresh(
        &self,
        opts: &PeriodicOptions,
    ) -> Result<PeriodicReport, SyncError> {
        let deps = PeriodicDeps {
            cfg: &self.cfg,
            crm: &self.crm,
            community: Some(&self.community),
            state: &self.state,
            queue: &self.queues,
        };
        crate::periodic::run(&deps, opts).await
    }

    pub async fn member_refresh(
        &self,
        messages: Vec<IncomingMessage>,
        deadline: &Deadline,
    ) -> Result<MemberReport, BatchError> {
        let deps = MemberDeps {
            cfg: &self.cfg,
            crm: &self.crm,
            community: &self.community,
            state: &self.state,
            queue: &self.queues,
        };
        member_refresh(&deps, messages, deadline).await
    }
}
