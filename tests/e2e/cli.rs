//! The `hlsync` binary end to end: exit codes and one-line errors, the dead-letter queue and
//! `redrive`, a rejected login that is never retried with the same secret.

use std::process::Output;

use hlsync_cli::local::{LocalOptions, LocalSystem};

use crate::common::{hlsync, hlsync_async as run, is_live, live_contacts, start, system};
use serde_json::{Value, json};

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "hlsync failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Runs `hlsync sync`, which must fail with one line naming the secret; answers that line.
async fn sync_refused(sys: &LocalSystem) -> String {
    let out = run(sys, &["sync"]).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("hlsync/credentials"),
        "names the secret: {err}"
    );
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn help_lists_every_command() {
    let sys = system(0).await;
    let out = hlsync(&sys, &["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for command in [
        "provision",
        "periodic-refresh",
        "member-refresh",
        "sync",
        "resync",
        "status",
        "check",
        "redrive",
        "demo",
    ] {
        assert!(text.contains(command), "--help lacks {command}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_then_status_through_the_binary() {
    let sys = system(60).await;
    let report = json_of(&run(&sys, &["--json", "sync"]).await);
    // The first run is the initial load: every live Contact, by an Id scan.
    let live = live_contacts(&sys);
    assert_eq!(report["periodic"]["full_refresh"]["initial"], json!(true));
    assert_eq!(report["periodic"]["full_refresh"]["sent"], json!(live));
    let status = json_of(&run(&sys, &["--json", "status"]).await);
    assert!(
        status["watermarks"]["contacts"]["at"].is_string(),
        "{status}"
    );
    assert_eq!(status["queue"]["visible"], json!(0));
    assert_eq!(status["dlq"]["visible"], json!(0));
    assert_eq!(status["salesforce_login"]["state"], json!("ok"));
    assert!(
        status["api_usage"]["used"].as_u64().is_some_and(|u| u > 0),
        "{status}"
    );
    let text = run(&sys, &["status"]).await;
    assert!(String::from_utf8_lossy(&text.stdout).contains("API usage:"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_message_is_dead_lettered_and_a_fixed_one_comes_back_with_redrive() {
    let sys = system(20).await;
    let queue = hlsync_aws::SqsQueue::new(sys.clients.sqs.clone(), sys.resources.queue_url.clone());
    let dlq = hlsync_aws::SqsQueue::new(sys.clients.sqs.clone(), sys.resources.dlq_url.clone());

    // One Contact that Higher Logic refuses for now, and one body that can never be read.
    let contacts = sys.salesforce.all("Contact");
    let refused = contacts
        .iter()
        .find(|c| is_live(c))
        .and_then(|c| c["Id"].as_str())
        .expect("a live Contact")
        .to_string();
    sys.higher_logic.refuse_contacts([refused.clone()]);
    queue
        .send_one("{this is not a work message", None)
        .await
        .expect("sent");

    let report = json_of(&run(&sys, &["--json", "sync"]).await);
    assert_eq!(
        report["member_refresh"]["dead_lettered"],
        json!(2),
        "the malformed body, and the record Higher Logic refused alone: {report}"
    );
    assert_eq!(
        report["member_refresh"]["failed_deliveries"],
        json!(0),
        "a record refused with a 400 is not retried five times: {report}"
    );
    assert!(sys.higher_logic.member(&refused).is_none());
    // Both on the DLQ now, each sent there directly.
    let depth = dlq.depth().await.expect("depth");
    assert_eq!(depth.visible, 2, "{depth:?}");
    // Every other Contact went through: the bad ones did not fail their batches.
    assert!(sys.higher_logic.members().len() >= 15);

    // Fix the cause, then bring the messages back.
    sys.higher_logic.clear_refusals();
    let moved = json_of(&run(&sys, &["--json", "redrive"]).await);
    assert_eq!(moved["moved"], json!(2));
    let report = json_of(&run(&sys, &["--json", "member-refresh", "--drain"]).await);
    assert_eq!(report["pushed"], json!(1), "{report}");
    assert!(
        sys.higher_logic.member(&refused).is_some(),
        "the fixed one arrived"
    );
    assert_eq!(
        report["dead_lettered"],
        json!(1),
        "the malformed one is still malformed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_login_stops_with_one_line_and_is_never_retried_with_the_same_secret() {
    let sys = start(LocalOptions {
        contacts: 10,
        auth: "password".into(),
        wrong_password: true,
        ..LocalOptions::default()
    })
    .await;
    for _ in 0..3 {
        let err = sync_refused(&sys).await;
        assert!(err.contains("rejected"), "{err}");
    }
    assert_eq!(
        sys.salesforce.counters().failed_logins,
        1,
        "one failed login across three runs"
    );
    let status = json_of(&run(&sys, &["--json", "status"]).await);
    assert!(
        status["salesforce_login"]["state"]
            .as_str()
            .unwrap_or_default()
            .starts_with("rejected"),
        "{status}"
    );

    // A new secret version: hlsync logs in again by itself.
    sys.replace_in_secret("not-the-password", hlsync_sim::salesforce::DEFAULT_PASSWORD)
        .await
        .expect("rotated");
    let out = run(&sys, &["sync"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!sys.higher_logic.members().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_config_names_the_key() {
    let sys = system(0).await;
    let bad = sys
        .config_toml
        .replace("max_allotment_share = 0.5", "max_allotment_share = 1.5");
    let path = sys.dir.join("bad.toml");
    std::fs::write(&path, bad).expect("written");
    let out = run(&sys, &["--config", path.to_str().expect("utf-8"), "status"]).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("salesforce.max_allotment_share"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn resync_pushes_every_member_again_even_unchanged_ones() {
    let sys = system(40).await;
    json_of(&run(&sys, &["--json", "sync"]).await);
    let live = live_contacts(&sys);
    // Higher Logic holds the active ones; an inactive Contact it never had is not sent.
    let members = sys.higher_logic.members().len() as u64;
    assert!(members > 0 && members < live);
    let before = sys.higher_logic.counters();
    let sf_before = sys.salesforce.counters().api_calls;

    let out = json_of(&run(&sys, &["--json", "resync", "--drain"]).await);
    assert_eq!(out["queued"], json!(live), "{out}");
    assert_eq!(out["member_refresh"]["pushed"], json!(members), "{out}");
    let after = sys.higher_logic.counters();
    assert_eq!(after.records_received - before.records_received, members);
    // Listing and reading in batches: a handful of calls for 40 Contacts, not one per Contact.
    let sf = sys.salesforce.counters().api_calls - sf_before;
    assert!(sf <= 5, "{sf} Salesforce calls");
    // A plain sync afterwards pushes nothing: the forced pushes stored their hashes.
    sys.salesforce.advance(std::time::Duration::from_mins(2));
    let report = json_of(&run(&sys, &["--json", "sync"]).await);
    assert_eq!(report["member_refresh"]["pushed"], json!(0), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_higher_logic_credentials_stop_until_the_secret_changes() {
    let sys = start(LocalOptions {
        contacts: 10,
        wrong_api_key: true,
        ..LocalOptions::default()
    })
    .await;
    for _ in 0..3 {
        sync_refused(&sys).await;
    }
    assert_eq!(
        sys.higher_logic.counters().auth_rejected,
        1,
        "the rejected key is used once, not on every run"
    );
    sys.replace_in_secret("not-the-api-key", sys.higher_logic.api_key())
        .await
        .expect("rotated");
    let out = run(&sys, &["sync"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!sys.higher_logic.members().is_empty());
}
