//! The `hlsync-sim` command starts both simulators and says where they are.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use hlsync_sim::higher_logic::DEFAULT_API_KEY;
use serde_json::Value;

/// Kills the child however the test ends, so no simulator outlives it.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn prints_endpoints_and_credentials_then_serves() {
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_hlsync-sim"))
            .args(["--contacts", "10", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("hlsync-sim runs"),
    );
    // The summary is printed once both listen: reading it is the readiness signal.
    let stdout = child.0.stdout.take().expect("piped stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .unwrap()
    .expect("a summary line");
    let summary: Value = serde_json::from_str(&line).expect("JSON summary");

    assert_eq!(
        summary["secret"]["higher_logic"]["api_key"],
        DEFAULT_API_KEY
    );
    assert_eq!(
        summary["secret"]["higher_logic"],
        serde_json::json!({ "api_key": DEFAULT_API_KEY }),
        "the Higher Logic part of the secret is the ApiKey alone"
    );
    assert_eq!(summary["contacts"], 10);
    let hl = summary["higher_logic_url"].as_str().unwrap();
    assert!(hl.ends_with("/v2"), "{hl}");
    let prefs = summary["higher_logic_email_preferences_url"]
        .as_str()
        .unwrap();
    assert_eq!(prefs, format!("{hl}/emailpreferences"));
    let answer = reqwest::Client::new()
        .get(format!("{prefs}?since=2020-01-01T00:00:00.000Z"))
        .header("ApiKey", DEFAULT_API_KEY)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());

    let sf = summary["salesforce_url"].as_str().unwrap();
    assert_eq!(summary["secret"]["salesforce"]["login_url"], sf);
    // Any HTTP answer shows the Salesforce simulator listens there.
    reqwest::Client::new()
        .get(format!("{sf}/services/data"))
        .send()
        .await
        .expect("the Salesforce simulator answers");
}
