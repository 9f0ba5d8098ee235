//! The member-refresh Lambda (SQS event source with ReportBatchItemFailures).

use hlsync_lambdas::{cold_start_or_exit, member, metrics::MEMBER_FUNCTION, telemetry};
use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init_tracing();
    let runtime = cold_start_or_exit(MEMBER_FUNCTION).await;
    let runtime = &runtime;
    lambda_runtime::run(service_fn(move |event| member::handle(runtime, event))).await
}
