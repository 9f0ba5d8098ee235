//! The commands, one module each, each a thin layer over the same code the Lambdas run. A
//! command's `run` does the work and answers a typed report: its `Display` is the text for a
//! person, its `Serialize` the `--json` output. `run` here picks the command and prints its
//! report.

pub mod check;
pub mod demo;
pub mod member_refresh;
pub mod periodic_refresh;
pub mod provision;
pub mod redrive;
pub mod resync;
pub mod status;
pub mod sync;

use anyhow::bail;

use crate::output::emit;
use crate::{Cli, Command};

pub use periodic_refresh::periodic_refresh;
pub use sync::{SyncReport, sync};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config.as_deref();
    let stack = cli.stack.as_str();
    let json = cli.json;
    match cli.command {
        Command::Provision { secret_file } => {
            emit(json, &provision::run(stack, secret_file.as_deref()).await?)
        }
        Command::PeriodicRefresh => emit(json, &periodic_refresh::run(config, stack, json).await?),
        Command::MemberRefresh { drain, batch_size } => emit(
            json,
            &member_refresh::run(config, stack, drain, batch_size, json).await?,
        ),
        Command::Sync { batch_size } => {
            emit(json, &sync::run(config, stack, batch_size, json).await?)
        }
        Command::Resync { drain, batch_size } => emit(
            json,
            &resync::run(config, stack, drain, batch_size, json).await?,
        ),
        Command::Status => emit(json, &status::run(config, stack).await?),
        Command::Check => {
            let report = check::run(config, stack).await?;
            emit(json, &report)?;
            // The report says what failed; the exit code says that it did.
            if let check::CheckReport::Failed(error) = &report {
                bail!("{error}");
            }
            Ok(())
        }
        Command::Redrive { max } => emit(json, &redrive::run(stack, max, json).await?),
        Command::Demo { contacts, seed } => emit(json, &demo::run(contacts, seed, json).await?),
    }
}
