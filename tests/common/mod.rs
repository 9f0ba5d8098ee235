//! What the end-to-end suites share: running the `hlsync` binary against a local system.
// Each suite compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::process::{Command, Output};

use hlsync_cli::local::LocalSystem;

/// Runs `hlsync ARGS` with the local system's environment (its moto endpoint and config); the
/// queue URLs come from the stack's names, as an operator's would.
pub fn hlsync(sys: &LocalSystem, args: &[&str]) -> Output {
    command(
        sys.env(),
        args.iter().map(std::string::ToString::to_string).collect(),
    )
}

/// [`hlsync`] off the async runtime's threads (the binary may take seconds).
pub async fn hlsync_async(sys: &LocalSystem, args: &[&str]) -> Output {
    let (env, args) = (
        sys.env(),
        args.iter().map(std::string::ToString::to_string).collect(),
    );
    tokio::task::spawn_blocking(move || command(env, args))
        .await
        .expect("joins")
}

fn command(env: Vec<(String, String)>, args: Vec<String>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hlsync"))
        .args(args)
        .env_remove("HLSYNC_QUEUE_URL")
        .env_remove("HLSYNC_DLQ_URL")
        .envs(env)
        .output()
        .expect("the hlsync binary runs")
}
