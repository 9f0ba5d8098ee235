//! The whole system on this machine: moto server (DynamoDB, SQS, Secrets Manager), the Salesforce
//! and Higher Logic simulators with seeded data, a provisioned stack and a config pointing at them.
//! The demo, the end-to-end tests and the benchmarks all stand on this.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context as _;
use hlsync_aws::{Clients, SdkConfig};
use hlsync_core::config::Config;
use hlsync_salesforce::ClientOptions;
use hlsync_sim::higher_logic::{HigherLogicSim, HlSimOptions};
use hlsync_sim::moto::MotoServer;
use hlsync_sim::salesforce::{self as sfsim, SalesforceSim, SimOptions};
use hlsync_sync::runtime::{
    ENV_DLQ_URL, ENV_QUEUE_URL, ENV_SECRET_ID, ENV_STATE_TABLE, Resources, Runtime,
};
use serde_json::json;

use crate::context::StackNames;
use crate::provision::provision;

/// How to set the local system up.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub contacts: usize,
    pub seed: u64,
    pub stack: String,
    pub salesforce: SimOptions,
    pub higher_logic: HlSimOptions,
    /// The `auth` flow the secret uses: client_credentials, password or soap.
    pub auth: String,
    /// Replaces the integration user's password in the secret (to test a rejected login).
    pub wrong_password: bool,
    /// Replaces the Higher Logic API key in the secret (to test rejected credentials).
    pub wrong_api_key: bool,
    /// Extra TOML appended to the generated config (e.g. `[events]` settings).
    pub extra_config: String,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            contacts: 200,
            seed: 7,
            stack: "hlsync".into(),
            salesforce: SimOptions::default(),
            higher_logic: HlSimOptions::default(),
            auth: "client_credentials".into(),
            wrong_password: false,
            wrong_api_key: false,
            extra_config: String::new(),
        }
    }
}

pub struct LocalSystem {
    pub moto: MotoServer,
    pub salesforce: SalesforceSim,
    pub higher_logic: HigherLogicSim,
    pub sdk: SdkConfig,
    pub clients: Clients,
    pub resources: Resources,
    pub config_toml: String,
    /// A folder with `config.toml` and `secret.json`, for running the `hlsync` binary.
    pub dir: PathBuf,
}

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

impl LocalSystem {
    pub async fn start(opts: LocalOptions) -> anyhow::Result<Self> {
        let moto = MotoServer::start()?;
        let salesforce = SalesforceSim::start(opts.salesforce.clone())
            .await
            .context("starting the Salesforce simulator")?;
        if opts.contacts > 0 {
            salesforce.load(&sfsim::seed::generate(opts.contacts, opts.seed));
        }
        let higher_logic = HigherLogicSim::start(opts.higher_logic.clone())
            .await
            .context("starting the Higher Logic simulator")?;
        let sdk = hlsync_aws::local_sdk_config(&moto.endpoint_url()).await;
        let clients = Clients::new(&sdk);

        let dir = std::env::temp_dir().join(format!(
            "hlsync-local-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let password = if opts.wrong_password {
            "not-the-password"
        } else {
            sfsim::DEFAULT_PASSWORD
        };
        let secret = json!({
            "salesforce": {
                "login_url": salesforce.base_url(),
                "auth": opts.auth,
                "client_id": sfsim::DEFAULT_CLIENT_ID,
                "client_secret": sfsim::DEFAULT_CLIENT_SECRET,
                "username": sfsim::DEFAULT_USERNAME,
                "password": password,
                "security_token": sfsim::DEFAULT_SECURITY_TOKEN,
            },
            "higher_logic": {
                "api_key": if opts.wrong_api_key { "not-the-api-key" } else { higher_logic.api_key() },
            }
        });
        let secret_path = dir.join("secret.json");
        std::fs::write(&secret_path, serde_json::to_string_pretty(&secret)?)?;
        let provisioned = provision(&clients, &opts.stack, Some(&secret_path)).await?;

        let config_toml = format!(
            r#"# Written by hlsync's local system: the simulators, on this machine.
allow_insecure_http = true

[salesforce]
api_version = "62.0"
daily_api_allotment = 100000
max_allotment_share = 0.5
lookback = "10m"
settle = "60s"

[contacts]
active_field = "Active__c"
group_field_prefix = "HL_"
record_type_groups = true
security_group_type = "Membership"
community_fields = {{ HL_Chapter__c = "Chapter" }}

[higher_logic]
base_url = "{hl}"
max_calls_per_minute = 6000
batch_size = 200
email_preferences_url = "{prefs}"
{extra}"#,
            hl = higher_logic.base_url(),
            prefs = higher_logic.email_preferences_url(),
            extra = opts.extra_config,
        );
        Config::from_toml_str(&config_toml).context("the generated local config")?;
        std::fs::write(dir.join("config.toml"), &config_toml)?;

        let names = StackNames::new(&opts.stack);
        Ok(LocalSystem {
            resources: Resources {
                secret_id: names.secret,
                table: provisioned.table,
                queue_url: provisioned.queue_url,
                dlq_url: provisioned.dlq_url,
            },
            moto,
            salesforce,
            higher_logic,
            sdk,
            clients,
            config_toml,
            dir,
        })
    }

    pub fn config(&self) -> Config {
        // Validated when the system started.
        Config::from_toml_str(&self.config_toml).unwrap_or_else(|_| Config::example())
    }

    /// Appends `mark` to the first name of up to `limit` live Contacts, in Id order, then moves
    /// Salesforce's clock past the settle time so a Periodic Refresh sees the edits. Returns the
    /// Contacts edited, as they were before.
    pub fn edit_first_names(
        &self,
        limit: usize,
        mark: &str,
    ) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let live: Vec<_> = self
            .salesforce
            .all("Contact")
            .into_iter()
            .filter(|c| c.get("IsDeleted") != Some(&json!(true)))
            .take(limit)
            .collect();
        for contact in &live {
            let id = contact["Id"].as_str().unwrap_or_default();
            let first = contact["FirstName"].as_str().unwrap_or_default();
            let mut edit = serde_json::Map::new();
            edit.insert("FirstName".into(), json!(format!("{first}{mark}")));
            assert!(
                self.salesforce.update("Contact", id, edit),
                "live Contact {id} could not be edited"
            );
        }
        self.salesforce.advance(std::time::Duration::from_mins(2));
        live
    }

    /// A fresh runtime, as a Lambda cold start builds it.
    pub fn runtime(&self) -> Runtime {
        Runtime::new(self.config(), self.resources.clone(), &self.sdk)
    }

    /// A fresh runtime with Salesforce client tuning (small query pages, short retries).
    pub fn runtime_with(&self, salesforce: ClientOptions) -> Runtime {
        Runtime::with_options(self.config(), self.resources.clone(), &self.sdk, salesforce)
    }

    /// Stores a new version of the secret with `from` replaced by `to` in its JSON (a rotation:
    /// e.g. a corrected password), as an operator would with `put-secret-value`.
    pub async fn replace_in_secret(&self, from: &str, to: &str) -> anyhow::Result<()> {
        let path = self.dir.join("secret.json");
        let text = std::fs::read_to_string(&path)?.replace(from, to);
        std::fs::write(&path, &text)?;
        hlsync_aws::put_secret(
            &self.clients.secrets,
            &self.resources.secret_id,
            &secrecy::SecretString::from(text),
        )
        .await?;
        Ok(())
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// The environment under which the `hlsync` binary talks to this system.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.moto.endpoint_url()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            (
                "HLSYNC_CONFIG".into(),
                self.config_path().display().to_string(),
            ),
        ]
    }

    /// The environment a deployed function gets (the SAM template's variables, the config as a
    /// file path), plus the SDK's endpoint and credentials for moto: what runs the Lambda
    /// binaries against this system.
    pub fn function_env(&self) -> Vec<(String, String)> {
        let mut env = self.env();
        env.extend([
            (ENV_SECRET_ID.into(), self.resources.secret_id.clone()),
            (ENV_STATE_TABLE.into(), self.resources.table.clone()),
            (ENV_QUEUE_URL.into(), self.resources.queue_url.clone()),
            (ENV_DLQ_URL.into(), self.resources.dlq_url.clone()),
        ]);
        env
    }
}

impl Drop for LocalSystem {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
