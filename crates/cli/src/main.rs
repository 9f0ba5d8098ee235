//! `hlsync`: the operator's command line. Each command runs the same code as the Lambdas.

use std::process::ExitCode;

use clap::Parser;
use hlsync_cli::{Cli, commands, output};

fn main() -> ExitCode {
    let cli = Cli::parse();
    output::init_tracing(cli.json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hlsync: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the reason and what to do next.
            let text = format!("{e:#}").replace('\n', " ");
            eprintln!("hlsync: {text}");
            ExitCode::FAILURE
        }
    }
}
