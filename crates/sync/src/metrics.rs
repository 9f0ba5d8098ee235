//! CloudWatch Embedded Metric Format: one JSON line per run on stdout, which CloudWatch Logs
//! turns into metrics (namespace `hlsync`, dimension `Function`) without an API call.

use chrono::Utc;
use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "hlsync";

/// A metric's name and CloudWatch unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    ContactsChanged,
    MembersPushed,
    MembersSkipped,
    MembersDeactivated,
    MessagesFailed,
    SalesforceApiCalls,
    AllotmentShare,
    HigherLogicCalls,
    RunDurationMs,
    MeetingsPushed,
    RegistrationsPushed,
    FullRefreshQueued,
    OptOutChanges,
    OptOutWritten,
    OptOutFailed,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::ContactsChanged => "ContactsChanged",
            Metric::MembersPushed => "MembersPushed",
            Metric::MembersSkipped => "MembersSkipped",
            Metric::MembersDeactivated => "MembersDeactivated",
            Metric::MessagesFailed => "MessagesFailed",
            Metric::SalesforceApiCalls => "SalesforceApiCalls",
            Metric::AllotmentShare => "AllotmentShare",
            Metric::HigherLogicCalls => "HigherLogicCalls",
            Metric::RunDurationMs => "RunDurationMs",
            Metric::MeetingsPushed => "MeetingsPushed",
            Metric::RegistrationsPushed => "RegistrationsPushed",
            Metric::FullRefreshQueued => "FullRefreshQueued",
            Metric::OptOutChanges => "OptOutChanges",
            Metric::OptOutWritten => "OptOutWritten",
            Metric::OptOutFailed => "OptOutFailed",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Metric::AllotmentShare => "Percent",
            Metric::RunDurationMs => "Milliseconds",
            _ => "Count",
        }
    }
}

/// Builds the EMF document for one function run.
pub fn emf_line(function: &str, run_id: &str, values: &[(Metric, f64)]) -> String {
    let definitions: Vec<Value> = values
        .iter()
        .map(|(m, _)| json!({ "Name": m.name(), "Unit": m.unit() }))
        .collect();
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": definitions,
            }]
        }),
    );
    doc.insert("Function".into(), function.into());
    doc.insert("run_id".into(), run_id.into());
    for (m, v) in values {
        doc.insert(m.name().into(), json!(v));
    }
    Value::Object(doc).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_declares_every_value_it_carries() {
        let line = emf_line(
            "member-refresh",
            "r1",
            &[(Metric::MembersPushed, 3.0), (Metric::AllotmentShare, 12.5)],
        );
        let doc: Value = serde_json::from_str(&line).expect("valid JSON");
        let declared = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Namespace"], "hlsync");
        assert_eq!(declared["Dimensions"], json!([["Function"]]));
        assert_eq!(
            declared["Metrics"][1],
            json!({"Name": "AllotmentShare", "Unit": "Percent"})
        );
        assert_eq!(doc["MembersPushed"], 3.0);
        assert_eq!(doc["AllotmentShare"], 12.5);
        assert_eq!(doc["Function"], "member-refresh");
    }

    #[test]
    fn worksheet_feature_metrics_are_counts_named_as_the_dashboard_reads_them() {
        let all = [
            (Metric::MeetingsPushed, "MeetingsPushed"),
            (Metric::RegistrationsPushed, "RegistrationsPushed"),
            (Metric::FullRefreshQueued, "FullRefreshQueued"),
            (Metric::OptOutChanges, "OptOutChanges"),
            (Metric::OptOutWritten, "OptOutWritten"),
            (Metric::OptOutFailed, "OptOutFailed"),
        ];
        let values: Vec<(Metric, f64)> = all
            .iter()
            .enumerate()
            .map(|(i, (m, _))| (*m, i as f64))
            .collect();
        let doc: Value =
            serde_json::from_str(&emf_line("periodic-refresh", "r2", &values)).expect("valid JSON");
        let declared = &doc["_aws"]["CloudWatchMetrics"][0]["Metrics"];
        for (i, (_, name)) in all.iter().enumerate() {
            assert_eq!(declared[i], json!({"Name": name, "Unit": "Count"}));
            assert_eq!(doc[*name], i as f64);
        }
    }
}
