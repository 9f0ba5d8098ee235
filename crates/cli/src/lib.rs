//! The `hlsync` command line as a library: the commands (`commands/`, one file each), the
//! emulated SQS event source (`drain`), provisioning a stack (`provision`), and the local system
//! (moto + simulators) used by the demo, the end-to-end tests and the benchmarks (`local`).

pub mod commands;
pub mod context;
pub mod drain;
pub mod local;
pub mod output;
pub mod provision;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Keeps a Higher Logic community in step with Salesforce: operator commands and local runs.
///
/// Each command runs the same code as the Lambdas (the Salesforce technical worksheet's
/// integration), against the configured AWS endpoint (`AWS_ENDPOINT_URL` for a local emulator).
/// On a terminal, long work (sync, resync, redrive, demo, periodic-refresh, member-refresh
/// --drain) shows a progress bar on stderr; stdout carries only the answer.
#[derive(Debug, Parser)]
#[command(name = "hlsync", version)]
pub struct Cli {
    /// The TOML config file, for the commands that read Salesforce or the state (not provision,
    /// redrive or demo). Default: env HLSYNC_CONFIG (a path, or the TOML text itself).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The stack whose resources to use where HLSYNC_STATE_TABLE, HLSYNC_QUEUE_URL,
    /// HLSYNC_DLQ_URL or HLSYNC_SECRET_ID are unset: table NAME-state, queues
    /// NAME-member-refresh and NAME-member-refresh-dlq, secret NAME/credentials.
    #[arg(long, global = true, value_name = "NAME", default_value = "hlsync")]
    pub stack: String,

    /// Print machine-readable JSON instead of text (and no progress bar).
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the state table, the queue and its dead-letter queue (redrive after 5 receives)
    /// and, with --secret-file, the secret.
    Provision {
        /// A JSON file with the secret (SPEC.md §4) to store as NAME/credentials.
        #[arg(long, value_name = "FILE")]
        secret_file: Option<PathBuf>,
    },
    /// One Periodic Refresh, as the scheduled Lambda does it.
    PeriodicRefresh,
    /// Consume the work queue, as the SQS-triggered Lambda does (same batch handler).
    MemberRefresh {
        /// Keep consuming until the queue is empty (required: this command emulates the SQS
        /// event source mapping).
        #[arg(long)]
        drain: bool,
        /// Messages per batch handed to the handler (the event source's BatchSize).
        #[arg(long, default_value_t = 500)]
        batch_size: usize,
    },
    /// A Periodic Refresh and `member-refresh --drain`, side by side as the deployed functions
    /// run; it ends when the refresh is done and the queue is empty.
    Sync {
        /// Messages per batch handed to the handler (the event source's BatchSize).
        #[arg(long, default_value_t = 500)]
        batch_size: usize,
    },
    /// Queue every live Contact to be re-read and pushed again, even unchanged ones (after
    /// Higher Logic's data was lost or reset). Costs one Salesforce call per 2,000 Contacts to
    /// list them, then the Member Refresh's usual batch reads.
    Resync {
        /// Also consume the queue here (`member-refresh --drain`), instead of leaving it to the
        /// deployed member-refresh function.
        #[arg(long)]
        drain: bool,
        /// With --drain: messages per batch handed to the handler.
        #[arg(long, default_value_t = 500)]
        batch_size: usize,
    },
    /// Watermarks, queue and DLQ depth, last runs, API usage against the allotment, and whether
    /// Salesforce and Higher Logic accept the stored credentials.
    Status,
    /// Check the config against the live Salesforce org: fields exist, the cursor field is a
    /// date/time and the active field a checkbox, which prefixed fields were found and which are
    /// formulas. Exits non-zero when the config does not fit the org.
    Check,
    /// Move messages from the dead-letter queue back to the work queue.
    Redrive {
        /// Move at most this many messages.
        #[arg(long)]
        max: Option<usize>,
    },
    /// The whole system on this machine: moto server, the Salesforce and Higher Logic
    /// simulators, seeded data, a sync, changes, a second sync, a third with nothing changed,
    /// and a summary.
    Demo {
        /// Contacts to seed in the Salesforce simulator.
        #[arg(long, default_value_t = 2000)]
        contacts: usize,
        /// Seed of the generated data.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}
