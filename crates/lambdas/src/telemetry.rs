//! Logs: one JSON object per line on stdout, level from `RUST_LOG` (default `info`), and the run
//! id on every line of a run (each line lists the spans it is in, and every run is a span).

use tracing::Span;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The level when `RUST_LOG` is unset or unreadable.
pub const DEFAULT_FILTER: &str = "info";

/// The filter from `RUST_LOG`; a bad value falls back to the default instead of silencing logs.
pub fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

/// The JSON subscriber, writing to `writer` (stdout in Lambda; a buffer in tests).
pub fn json_subscriber<W>(filter: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .flatten_event(true)
        // The whole span list, not only the innermost span: a line logged inside a pipeline
        // span still shows the run span and its run id.
        .with_span_list(true)
        .with_current_span(false)
        .finish()
}

/// Installs the JSON subscriber for the process (once; a second call changes nothing).
pub fn init_tracing() {
    // Fails only when a subscriber is already set, which is the state we want anyway.
    let _ = tracing::subscriber::set_global_default(json_subscriber(env_filter(), std::io::stdout));
}

/// The span one invocation runs in.
pub fn run_span(function: &'static str, run_id: &str) -> Span {
    tracing::info_span!("run", function, run_id = %run_id)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn every_line_of_a_run_is_json_with_the_run_id() {
        let capture = Capture::default();
        let subscriber = json_subscriber(EnvFilter::new("info"), capture.clone());
        tracing::subscriber::with_default(subscriber, || {
            let run = run_span("periodic-refresh", "exec-42");
            let _run = run.enter();
            tracing::info!(feed = "contacts", "scanning window");
            let inner = tracing::info_span!("scan", feed = "contacts");
            let _inner = inner.enter();
            tracing::warn!("near the deadline");
            tracing::debug!("filtered out at info");
        });
        let bytes = capture.0.lock().map(|b| b.clone()).unwrap_or_default();
        let text = String::from_utf8(bytes).expect("utf-8 logs");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        for line in lines {
            let doc: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let spans = doc["spans"].as_array().expect("a span list");
            assert!(
                spans.iter().any(|s| s["run_id"] == "exec-42"),
                "no run id in {line}"
            );
            assert!(doc["message"].is_string(), "{line}");
        }
    }
}
