//! The two Lambda functions, as handlers that run without the Lambda runtime (so tests call them
//! directly): [`periodic`] (EventBridge Scheduler -> Periodic Refresh) and [`member`] (SQS ->
//! Member Refresh). The `main`s in `src/bin` only wire them to `lambda_runtime::run`.
//!
//! Each invocation logs inside a span carrying its run id, prints one EMF line ([`metrics`]) and
//! answers a small JSON document.

pub mod budget;
pub mod error;
pub mod member;
pub mod metrics;
pub mod periodic;
pub mod telemetry;

use hlsync_core::config::Config;
use hlsync_sync::runtime::{Resources, Runtime};

pub use error::LambdaError;

/// Everything a function builds once per cold start: the config (`HLSYNC_CONFIG`), the resource
/// names (`HLSYNC_*`), and the AWS clients from the SDK's own environment.
pub async fn cold_start() -> Result<Runtime, LambdaError> {
    let cfg = Config::load(None)?;
    let resources = Resources::from_env().map_err(LambdaError::Environment)?;
    let sdk = hlsync_aws::load_sdk_config().await;
    Ok(Runtime::new(cfg, resources, &sdk))
}

/// [`cold_start`], or one log line naming what is wrong and a non-zero exit: Lambda reports an
/// init error, and no invocation runs with a half-built function.
pub async fn cold_start_or_exit(function: &str) -> Runtime {
    match cold_start().await {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(function, error = %e, "cannot start: fix the function's configuration and redeploy");
            std::process::exit(1);
        }
    }
}

/// A run id for an invocation that has none (a context built by hand: local tools, tests).
pub fn local_run_id() -> String {
    format!("local-{}", uuid::Uuid::new_v4().simple())
}
