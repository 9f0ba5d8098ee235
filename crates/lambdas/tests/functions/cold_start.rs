//! A function whose configuration or environment is wrong stops at init with one log line that
//! names what to fix (Lambda then reports an init error), before any invocation runs.

use std::process::{Command, Output};

const CONFIG: &str = "[higher_logic]\nbase_url = \"https://push.example.org/v2\"\n";

fn run(binary: &str, env: &[(&str, &str)]) -> Output {
    Command::new(binary)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("the function binary runs")
}

fn single_error_line(out: &Output) -> serde_json::Value {
    assert!(!out.status.success(), "exit status {:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "stdout: {text}");
    let doc: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON log line");
    assert_eq!(doc["level"], "ERROR", "{doc}");
    doc
}

#[test]
fn a_missing_config_names_the_variable() {
    let out = run(env!("CARGO_BIN_EXE_periodic-refresh"), &[]);
    let doc = single_error_line(&out);
    assert!(
        doc["error"]
            .as_str()
            .is_some_and(|e| e.contains("HLSYNC_CONFIG")),
        "{doc}"
    );
}

#[test]
fn a_bad_key_is_named() {
    let config = format!("{CONFIG}[salesforce]\nlookback = \"forever\"\n");
    let out = run(
        env!("CARGO_BIN_EXE_member-refresh"),
        &[("HLSYNC_CONFIG", &config)],
    );
    let doc = single_error_line(&out);
    let error = doc["error"].as_str().unwrap_or_default();
    assert!(error.contains("salesforce.lookback"), "{doc}");
    assert!(error.contains("HLSYNC_CONFIG"), "{doc}");
}

#[test]
fn a_missing_resource_variable_is_named() {
    let out = run(
        env!("CARGO_BIN_EXE_member-refresh"),
        &[
            ("HLSYNC_CONFIG", CONFIG),
            ("HLSYNC_SECRET_ID", "hlsync/credentials"),
        ],
    );
    let doc = single_error_line(&out);
    assert!(
        doc["error"]
            .as_str()
            .is_some_and(|e| e.contains("HLSYNC_STATE_TABLE")),
        "{doc}"
    );
}
