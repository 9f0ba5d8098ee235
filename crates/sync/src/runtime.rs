//! Everything a function needs, built once per cold start (or once per CLI command): the config,
//! the AWS clients, the credentials from Secrets Manager, and the ports bound to them.

use std::sync::Arc;
use std::time::Duration;

use hlsync_aws::{Clients, SdkConfig, SecretSource, StateStore, WorkQueue as SqsQueue};
use hlsync_core::config::Config;
use hlsync_salesforce::{ClientOptions, SalesforceCredentials};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::Deadline;
use crate::adapters::aws::SqsQueues;
use crate::adapters::higher_logic::HigherLogicCommunity;
use crate::adapters::salesforce::SalesforceCrm;
use crate::error::{Service, SyncError};
use crate::member::{BatchError, IncomingMessage, MemberDeps, MemberReport, member_refresh};
use crate::periodic::{PeriodicDeps, PeriodicOptions, PeriodicReport};

/// How long a warm function trusts the secret it read before looking at its version again.
pub const SECRET_TTL: Duration = Duration::from_secs(5 * 60);

/// `HLSYNC_CONCURRENT_FUNCTIONS`: how many function instances share Higher Logic's rate limit
/// (unset, or not a positive number: this one alone, as for the CLI).
fn concurrent_functions() -> u32 {
    std::env::var(crate::adapters::higher_logic::ENV_CONCURRENT_FUNCTIONS)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

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

/// The `higher_logic` part of the secret.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HigherLogicSecret {
    pub api_key: SecretString,
    /// Written by secrets made for the push API's first version; Push API v2 identifies the
    /// tenant by its key alone, so it is accepted and ignored.
    #[serde(default, rename = "tenant_code")]
    _tenant_code: Option<serde::de::IgnoredAny>,
}

/// The secret's JSON document (SPEC.md §4).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretDocument {
    salesforce: SalesforceCredentials,
    higher_logic: HigherLogicSecret,
}

/// One version of the secret, parsed.
pub struct ParsedSecret {
    pub version: String,
    pub salesforce: SalesforceCredentials,
    pub higher_logic: HigherLogicSecret,
}

/// Parses the secret's text. The error names the problem without quoting any value.
pub fn parse_secret(secret_id: &str, version: &str, text: &str) -> Result<ParsedSecret, SyncError> {
    let doc: SecretDocument = serde_json::from_str(text).map_err(|e| {
        // serde's messages can quote a wrong value (a password, say); keep only the ones that
        // name a field, and the position otherwise.
        let text = e.to_string();
        let what = if text.starts_with("unknown field")
            || text.starts_with("missing field")
            || text.starts_with("unknown variant")
        {
            text
        } else {
            format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            )
        };
        SyncError::Failed {
            service: Some(Service::Aws),
            message: format!(
                "secret `{secret_id}` is not the JSON document hlsync expects ({what}): \
                 see SPEC.md §4 and README's \"Filling the secret\""
            ),
        }
    })?;
    Ok(ParsedSecret {
        version: version.to_string(),
        salesforce: doc.salesforce,
        higher_logic: doc.higher_logic,
    })
}

/// The credentials secret, read through a cache, with what is needed to act on a rejection.
pub struct Credentials {
    pub cfg: Arc<Config>,
    pub secret_id: String,
    pub state: StateStore,
    source: SecretSource,
    parsed: Mutex<Option<Arc<ParsedSecret>>>,
}

impl Credentials {
    pub fn new(cfg: Arc<Config>, source: SecretSource, state: StateStore) -> Self {
        Credentials {
            cfg,
            secret_id: source.secret_id().to_string(),
            state,
            source,
            parsed: Mutex::new(None),
        }
    }

    /// After a rejection: asks Secrets Manager for the secret's current version (one cheap
    /// DescribeSecret) and drops the cached value if it is older, so that corrected credentials
    /// are used at once rather than when the cache expires. True when it was older.
    pub async fn refresh_if_rotated(&self, cached_version: &str) -> Result<bool, SyncError> {
        let current = self.source.current_version().await?;
        if current == cached_version {
            return Ok(false);
        }
        self.source.invalidate().await;
        Ok(true)
    }

    /// The secret to call `service` with, unless that service rejected this very version
    /// before (recorded under `doc_key` by [`Credentials::record_rejection`]): then only a new
    /// version helps, so Secrets Manager is asked for the current one at once.
    pub async fn usable_for(
        &self,
        service: Service,
        doc_key: &str,
    ) -> Result<Arc<ParsedSecret>, SyncError> {
        let mut secret = self.get().await?;
        let Some(failure) = self.state.get_doc(doc_key).await? else {
            return Ok(secret);
        };
        let rejected = |secret: &ParsedSecret| {
            failure
                .get("secret_version")
                .and_then(serde_json::Value::as_str)
                == Some(secret.version.as_str())
        };
        if rejected(&secret) && self.refresh_if_rotated(&secret.version).await? {
            secret = self.get().await?;
        }
        if !rejected(&secret) {
            return Ok(secret);
        }
        let text = |key: &str, default: &'static str| {
            failure
                .get(key)
                .and_then(serde_json::Value::as_str)
                .unwrap_or(default)
                .to_string()
        };
        Err(SyncError::Rejected {
            service,
            message: format!(
                "not calling {service}: {} (at {}, with version {} of secret {}). \
                 Put corrected credentials in the secret; hlsync resumes by itself when its version changes",
                text("message", "credentials rejected"),
                text("at", "earlier"),
                secret.version,
                self.secret_id
            ),
        })
    }

    /// Remembers that `service` rejected version `version` of the secret, so that no run of any
    /// function calls it again with the same credentials (repeated failed logins lock the
    /// integration user out).
    pub async fn record_rejection(
        &self,
        service: Service,
        doc_key: &str,
        version: &str,
        message: &str,
    ) {
        let doc = serde_json::json!({
            "secret_version": version,
            "secret_id": self.secret_id,
            "message": message,
            "at": chrono::Utc::now(),
        });
        if let Err(e) = self.state.put_doc(doc_key, &doc, None).await {
            tracing::warn!(error = %e, "could not record the rejected credentials");
        }
        tracing::warn!(secret_id = %self.secret_id, %service, "credentials rejected: hlsync stops calling it until the secret changes");
    }

    pub async fn get(&self) -> Result<Arc<ParsedSecret>, SyncError> {
        let secret = self.source.get().await?;
        let mut parsed = self.parsed.lock().await;
        if let Some(p) = parsed.as_ref().filter(|p| p.version == secret.version_id) {
            return Ok(Arc::clone(p));
        }
        let p = Arc::new(parse_secret(
            &self.secret_id,
            &secret.version_id,
            secret.value.expose_secret(),
        )?);
        *parsed = Some(Arc::clone(&p));
        Ok(p)
    }
}

/// The two functions with their real adapters.
pub struct Runtime {
    pub cfg: Arc<Config>,
    pub resources: Resources,
    pub aws: Clients,
    pub state: StateStore,
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
        let state = StateStore::new(aws.dynamodb.clone(), resources.table.clone());
        let source =
            SecretSource::new(aws.secrets.clone(), resources.secret_id.clone(), SECRET_TTL);
        let credentials = Arc::new(Credentials::new(Arc::clone(&cfg), source, state.clone()));
        Runtime {
            queues: SqsQueues {
                queue: SqsQueue::new(aws.sqs.clone(), resources.queue_url.clone()),
                dlq: SqsQueue::new(aws.sqs.clone(), resources.dlq_url.clone()),
            },
            crm: SalesforceCrm::new(Arc::clone(&credentials), salesforce),
            community: HigherLogicCommunity::new(credentials, concurrent_functions()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_error_never_quotes_a_value() {
        let text = r#"{"salesforce":{"login_url":"https://x","auth":"password","password":12345678},"higher_logic":{"tenant_code":"t","api_key":"k"}}"#;
        let Err(e) = parse_secret("hlsync/credentials", "v1", text) else {
            panic!("a number is not a password");
        };
        let message = e.to_string();
        assert!(!message.contains("12345678"), "{message}");
        assert!(message.contains("hlsync/credentials"));
    }

    #[test]
    fn a_missing_part_is_named() {
        let Err(e) = parse_secret(
            "s",
            "v1",
            r#"{"salesforce":{"login_url":"https://x","auth":"password"}}"#,
        ) else {
            panic!("no higher_logic part");
        };
        assert!(
            e.to_string().contains("missing field `higher_logic`"),
            "{e}"
        );
    }
}
