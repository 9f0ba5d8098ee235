//! What the end-to-end suites share: running the `hlsync` binary against a local system.
// Each suite compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::process::{Command, Output};

use hlsync_cli::commands::{self, SyncReport};
use hlsync_cli::local::{LocalOptions, LocalSystem};
use hlsync_cli::output::Progress;
use hlsync_sync::runtime::Runtime;
use serde_json::{Map, Value, json};

/// Starts a local system (moto, the simulators, a provisioned stack) with `opts`.
pub async fn start(opts: LocalOptions) -> LocalSystem {
    LocalSystem::start(opts)
        .await
        .expect("the local system starts (moto_server missing? run `make venv`)")
}

/// A local system of `contacts` seeded Contacts, otherwise as by default.
pub async fn system(contacts: usize) -> LocalSystem {
    start(LocalOptions {
        contacts,
        ..LocalOptions::default()
    })
    .await
}

/// One sync (a Periodic Refresh, then the queue drained) in this process; it must succeed.
pub async fn sync(rt: &Runtime) -> SyncReport {
    commands::sync(rt, 500, &Progress::hidden())
        .await
        .expect("sync succeeds")
}

/// Whether a Salesforce record is not in the recycle bin.
pub fn is_live(record: &Map<String, Value>) -> bool {
    record.get("IsDeleted") != Some(&json!(true))
}

/// How many of the simulator's Contacts are not deleted.
pub fn live_contacts(sys: &LocalSystem) -> u64 {
    sys.salesforce
        .all("Contact")
        .iter()
        .filter(|c| is_live(c))
        .count() as u64
}

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
