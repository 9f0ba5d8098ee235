//! The periodic-refresh Lambda (EventBridge Scheduler).

use hlsync_lambdas::{cold_start_or_exit, metrics::PERIODIC_FUNCTION, periodic, telemetry};
use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init_tracing();
    let runtime = cold_start_or_exit(PERIODIC_FUNCTION).await;
    let runtime = &runtime;
    lambda_runtime::run(service_fn(move |event| periodic::handle(runtime, event))).await
}
