//! How a command talks to a person (text, and a progress bar while it works) or to a program
//! (`--json`).

use std::fmt::Display;
use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressFinish, ProgressStyle};
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

/// Prints a command's report on stdout: its JSON with `--json`, else its text (`Display`).
pub fn emit<R: Serialize + Display>(json: bool, report: &R) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

/// A progress bar on stderr for a command's long work. It is drawn only for a person at a
/// terminal: never with `--json`, and not when stderr is a file or a pipe (scripts and tests get
/// the answer and the exit code only). Clones draw the same bar; it is cleared when the last
/// clone is dropped, so that only the answer stays on the screen.
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// Draws nothing: for tests, benchmarks and other callers of the library.
    pub fn hidden() -> Self {
        Progress {
            bar: ProgressBar::hidden(),
        }
    }

    /// A spinner for work of unknown length, named after the command.
    pub fn spinner(json: bool, command: &str) -> Self {
        Self::drawn(json, command, None)
    }

    /// A bar of `steps` steps, named after the command.
    pub fn steps(json: bool, command: &str, steps: u64) -> Self {
        Self::drawn(json, command, Some(steps))
    }

    fn drawn(json: bool, command: &str, steps: Option<u64>) -> Self {
        if json || !std::io::stderr().is_terminal() {
            return Self::hidden();
        }
        let (bar, template) = match steps {
            None => (
                ProgressBar::new_spinner(),
                "{spinner} {prefix} {elapsed:>4} {wide_msg}",
            ),
            Some(n) => (
                ProgressBar::new(n),
                "{spinner} {prefix} {elapsed:>4} [{bar:20}] {pos}/{len} {wide_msg}",
            ),
        };
        // The templates are constants; the default style is only a fallback.
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .progress_chars("=> ");
        let bar = bar
            .with_style(style)
            .with_prefix(command.to_owned())
            .with_finish(ProgressFinish::AndClear);
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress { bar }
    }

    /// What the work is doing now, beside the bar.
    pub fn set_message(&self, message: impl Into<String>) {
        self.bar.set_message(message.into());
    }

    /// One step of a [`Progress::steps`] bar is done.
    pub fn step(&self) {
        self.bar.inc(1);
    }

    /// A line that stays on the screen, above the bar (a note or a warning for the person).
    pub fn note(&self, line: impl AsRef<str>) {
        self.bar.println(line.as_ref());
    }
}
