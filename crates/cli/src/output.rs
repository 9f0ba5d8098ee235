//! How the command talks to a person (text) or a program (`--json`).

use serde::Serialize;

/// Logs go to stderr, so that stdout carries only the command's answer. Quiet by default
/// (warnings and errors); `RUST_LOG=info` shows the pipeline's own log lines.
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
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
pub fn emit<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", text());
    }
    Ok(())
}

/// One progress line on stderr (not in JSON mode: stdout stays machine-readable either way).
pub fn progress(json: bool, line: impl AsRef<str>) {
    if !json {
        eprintln!("{}", line.as_ref());
    }
}
