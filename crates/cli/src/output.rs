//! How the command talks to a person (text) or a program (`--json`).

use serde::Serialize;

/// Logs go to stderr, so that stdout carries only the command's answer. Quiet by default (a
/// failing command prints its one-line reason and nothing else); `RUST_LOG=warn` or `info` shows
/// the pipeline's own log lines.
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.compact().without_time().init();
    }
}

/// Prints `value` as JSON, or `text` for a person.
pub fn emit<T: Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", text());
    }
    Ok(())
}

/// One progress line on stderr, for a person watching a terminal (not in JSON mode, not when
/// stderr is a file or a pipe: scripts get the answer and the exit code only).
pub fn progress(json: bool, line: impl AsRef<str>) {
    use std::io::IsTerminal as _;
    if !json && std::io::stderr().is_terminal() {
        eprintln!("{}", line.as_ref());
    }
}
