//! The two Lambda functions, as handlers that run without the Lambda runtime (so tests call them
//! directly): [`periodic`] (EventBridge Scheduler -> Periodic Refresh) and [`member`] (SQS ->
//! Member Refresh). The `main`s in `src/bin` only wire them to `lambda_runtime::run`; the test
//! `runtime_emulator` runs those binaries under cargo-lambda's Lambda runtime emulator.
//!
//! Each invocation logs inside a span carrying its run id, prints one EMF document ([`metrics`])
//! as a line of its own and answers a small JSON document.

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

/// [`cold_start`], or one log line naming what is wrong, the same message reported to the
/// Runtime API as an init error, and a non-zero exit: no invocation runs with a half-built
/// function, and the invocation that started it answers with the message.
pub async fn cold_start_or_exit(function: &str) -> Runtime {
    match cold_start().await {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(function, error = %e, "cannot start: fix the function's configuration and redeploy");
            report_init_error(&e).await;
            std::process::exit(1);
        }
    }
}

/// Set by Lambda (and by emulators) to the Runtime API's `host:port`.
pub const RUNTIME_API_ENV: &str = "AWS_LAMBDA_RUNTIME_API";

/// How long the init error report may take: the process exits after it either way.
const INIT_ERROR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `POST /2018-06-01/runtime/init/error` with the error's [`Diagnostic`](lambda_runtime::Diagnostic):
/// Lambda then answers the pending invocation with our `errorType` and message instead of a
/// bare "Runtime.ExitError". `lambda_runtime` only does this for its own SnapStart hooks, so we
/// make the call with its client. Without a Runtime API (a binary run by hand) there is no one
/// to tell: the log line is the report.
async fn report_init_error(e: &LambdaError) {
    if std::env::var_os(RUNTIME_API_ENV).is_none_or(|v| v.is_empty()) {
        return;
    }
    let diagnostic = lambda_runtime::Diagnostic {
        error_type: e.kind().to_string(),
        error_message: e.to_string(),
    };
    let request = serde_json::to_vec(&diagnostic)
        .map_err(|err| err.to_string())
        .and_then(|body| {
            lambda_runtime_api_client::build_request()
                .method("POST")
                .uri("/2018-06-01/runtime/init/error")
                .header("Lambda-Runtime-Function-Error-Type", e.kind())
                .header("Content-Type", "application/json")
                .body(lambda_runtime_api_client::body::Body::from(body))
                .map_err(|err| err.to_string())
        });
    let outcome = match request {
        Ok(request) => {
            let client = lambda_runtime_api_client::PooledClient::builder().build();
            match tokio::time::timeout(INIT_ERROR_TIMEOUT, client.call(request)).await {
                Ok(Ok(response)) if response.status().is_success() => Ok(()),
                Ok(Ok(response)) => Err(format!("the Runtime API answered {}", response.status())),
                Ok(Err(err)) => Err(err.to_string()),
                Err(_) => Err(format!("no answer within {INIT_ERROR_TIMEOUT:?}")),
            }
        }
        Err(err) => Err(err),
    };
    if let Err(problem) = outcome {
        tracing::warn!(%problem, "could not report the init error to the Runtime API; the log line above is the report");
    }
}

/// A run id for an invocation that has none (a context built by hand: local tools, tests).
pub fn local_run_id() -> String {
    format!("local-{}", uuid::Uuid::new_v4().simple())
}
