//! The one EMF document each invocation prints (namespace `hlsync`, dimension `Function`), with
//! the metrics the dashboard and alarms of `infra/` read.
//!
//! The document is written by `metrics_cloudwatch_embedded`, the CloudWatch Embedded Metric
//! Format recorder for the `metrics` facade (why it is used this way: `docs/design.md`, "Metrics").
//! The handlers print it with `println!`, not as a log event: CloudWatch only extracts metrics
//! from a line that is the EMF document itself, not one nested in a log event's fields.

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use ::metrics::Unit;
use hlsync_sync::member::MemberReport;
use hlsync_sync::periodic::PeriodicReport;
use metrics_cloudwatch_embedded::{Builder, Collector};

pub const PERIODIC_FUNCTION: &str = "periodic-refresh";
pub const MEMBER_FUNCTION: &str = "member-refresh";

/// The CloudWatch namespace of every hlsync metric.
pub const NAMESPACE: &str = "hlsync";
/// The one dimension: which function sent the value.
pub const DIMENSION: &str = "Function";
/// The document's property naming the run, as the run's log lines do.
pub const RUN_ID_PROPERTY: &str = "run_id";

/// A metric the functions send. Its name and unit are what `infra/` (alarms, dashboard) reads.
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
    pub const ALL: [Metric; 15] = [
        Metric::ContactsChanged,
        Metric::MembersPushed,
        Metric::MembersSkipped,
        Metric::MembersDeactivated,
        Metric::MessagesFailed,
        Metric::SalesforceApiCalls,
        Metric::AllotmentShare,
        Metric::HigherLogicCalls,
        Metric::RunDurationMs,
        Metric::MeetingsPushed,
        Metric::RegistrationsPushed,
        Metric::FullRefreshQueued,
        Metric::OptOutChanges,
        Metric::OptOutWritten,
        Metric::OptOutFailed,
    ];

    pub fn name(self) -> &'static str {
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

    pub fn unit(self) -> Unit {
        match self {
            Metric::AllotmentShare => Unit::Percent,
            Metric::RunDurationMs => Unit::Milliseconds,
            _ => Unit::Count,
        }
    }
}

/// What an invocation measured besides its report: known even when the run failed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunMeasures {
    pub salesforce_calls: u64,
    pub higher_logic_calls: u64,
    /// Salesforce API usage as a share (0..=1) of the allotment hlsync measures against, from
    /// the last `Sforce-Limit-Info` seen; `None` before any Salesforce answer.
    pub allotment_share: Option<f64>,
    pub duration: Duration,
}

fn common(m: &RunMeasures) -> Vec<(Metric, f64)> {
    let mut values = vec![
        (Metric::SalesforceApiCalls, m.salesforce_calls as f64),
        (Metric::HigherLogicCalls, m.higher_logic_calls as f64),
        (Metric::RunDurationMs, m.duration.as_millis() as f64),
    ];
    if let Some(share) = m.allotment_share {
        // The alarm threshold is a percentage.
        values.push((Metric::AllotmentShare, share * 100.0));
    }
    values
}

/// The Periodic Refresh's metrics. Without a report (the run failed) only what is known is
/// sent, so a failed run does not chart as "0 contacts changed". Likewise `FullRefreshQueued`
/// (Contacts queued by the full refresh for formula fields) only from a run that scanned it, and
/// `OptOutChanges` / `OptOutWritten` / `OptOutFailed` (the GDPR opt-out write-back: changes read
/// from Higher Logic, `HasOptedOutOfEmail` written, writes Salesforce refused) only from a run
/// that read Higher Logic's email preferences, even if that step then stopped early.
pub fn periodic_metrics(report: Option<&PeriodicReport>, m: &RunMeasures) -> Vec<(Metric, f64)> {
    let mut values = Vec::new();
    if let Some(r) = report {
        values.push((Metric::ContactsChanged, r.changed() as f64));
        if let Some(full) = &r.full_refresh {
            values.push((Metric::FullRefreshQueued, full.sent as f64));
        }
        if let Some(optout) = &r.email_preferences {
            values.push((Metric::OptOutChanges, optout.changes as f64));
            values.push((Metric::OptOutWritten, optout.written as f64));
            values.push((Metric::OptOutFailed, optout.failed as f64));
        }
    }
    values.extend(common(m));
    values
}

/// The Member Refresh's metrics. `MembersSkipped` counts Contacts left alone because Higher
/// Logic already has their current record (covered by an earlier push, or re-read unchanged);
/// `MembersDeactivated` counts inactive and deleted ones pushed; `MessagesFailed` counts
/// messages reported back for retry plus those dead-lettered at once. `MeetingsPushed` counts
/// the meetings (Campaigns) pushed, deletions included, and `RegistrationsPushed` the event
/// registrations carried on the member records pushed.
pub fn member_metrics(report: &MemberReport, m: &RunMeasures) -> Vec<(Metric, f64)> {
    let mut values = vec![
        (Metric::MembersPushed, report.pushed as f64),
        (
            Metric::MembersSkipped,
            (report.skipped_unchanged + report.already_current) as f64,
        ),
        (
            Metric::MembersDeactivated,
            (report.deactivated + report.deleted) as f64,
        ),
        (
            Metric::MessagesFailed,
            (report.failed_message_ids.len() as u64 + report.dead_lettered) as f64,
        ),
        (Metric::MeetingsPushed, report.meetings_pushed as f64),
        (
            Metric::RegistrationsPushed,
            report.registrations_pushed as f64,
        ),
    ];
    values.extend(common(m));
    values
}

/// The recorder of this process, installed as the `metrics` global recorder by the first call
/// (the crate offers no other kind); `None`, said once in the log, if another recorder was
/// installed first.
fn collector() -> Option<&'static Collector> {
    static COLLECTOR: OnceLock<Option<&'static Collector>> = OnceLock::new();
    *COLLECTOR.get_or_init(|| match Builder::new().cloudwatch_namespace(NAMESPACE).init() {
        Ok(collector) => {
            for metric in Metric::ALL {
                ::metrics::describe_histogram!(metric.name(), metric.unit(), "");
            }
            Some(collector)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot install the CloudWatch metrics recorder; no EMF document will be printed");
            None
        }
    })
}

/// Held from the first value recorded to the flush: the recorder is one per process, so two
/// documents built at once (tests in parallel) would otherwise take each other's values.
static EMITTING: Mutex<()> = Mutex::new(());

/// The EMF document of one invocation: `values` under `function`, and its run id.
///
/// Each value is recorded as a histogram sample: the recorder drains those at every flush and
/// leaves out a metric with none, so a document carries exactly the values given here, known
/// zeros included, and nothing from an earlier invocation of a warm function. (Its counters
/// would leave out a known zero, and its gauges repeat the last value in every later flush.)
pub fn emf_document(
    function: &'static str,
    run_id: &str,
    values: &[(Metric, f64)],
) -> Option<String> {
    let collector = collector()?;
    let _one_at_a_time = EMITTING.lock().unwrap_or_else(PoisonError::into_inner);
    for (metric, value) in values {
        ::metrics::histogram!(metric.name(), DIMENSION => function).record(*value);
    }
    let mut out = Vec::new();
    if let Err(e) = collector
        .set_property(RUN_ID_PROPERTY, run_id)
        .flush(&mut out)
    {
        tracing::error!(error = %e, "cannot write the EMF document");
        return None;
    }
    let doc = String::from_utf8_lossy(&out).trim_end().to_string();
    (!doc.is_empty()).then_some(doc)
}

pub fn periodic_emf(
    run_id: &str,
    report: Option<&PeriodicReport>,
    m: &RunMeasures,
) -> Option<String> {
    emf_document(PERIODIC_FUNCTION, run_id, &periodic_metrics(report, m))
}

pub fn member_emf(run_id: &str, report: &MemberReport, m: &RunMeasures) -> Option<String> {
    emf_document(MEMBER_FUNCTION, run_id, &member_metrics(report, m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hlsync_sync::full::FullRefreshReport;
    use hlsync_sync::optout::OptOutReport;
    use serde_json::{Value, json};
    use std::collections::BTreeMap;

    /// The metrics only the Periodic Refresh sends, and only when its report has them.
    const PERIODIC_ONLY: [Metric; 4] = [
        Metric::FullRefreshQueued,
        Metric::OptOutChanges,
        Metric::OptOutWritten,
        Metric::OptOutFailed,
    ];
    const MEMBER_ONLY: [Metric; 2] = [Metric::MeetingsPushed, Metric::RegistrationsPushed];

    fn value(values: &[(Metric, f64)], metric: Metric) -> Option<f64> {
        values.iter().find(|(m, _)| *m == metric).map(|(_, v)| *v)
    }

    #[test]
    fn a_failed_periodic_run_reports_no_contact_count() {
        let m = RunMeasures {
            salesforce_calls: 1,
            allotment_share: Some(0.6),
            ..RunMeasures::default()
        };
        let values = periodic_metrics(None, &m);
        assert_eq!(value(&values, Metric::ContactsChanged), None);
        assert_eq!(value(&values, Metric::AllotmentShare), Some(60.0));
        assert_eq!(value(&values, Metric::SalesforceApiCalls), Some(1.0));
    }

    #[test]
    fn no_usage_seen_means_no_allotment_value() {
        let values = member_metrics(&MemberReport::default(), &RunMeasures::default());
        assert_eq!(value(&values, Metric::AllotmentShare), None);
        assert_eq!(value(&values, Metric::MessagesFailed), Some(0.0));
    }

    #[test]
    fn member_counts_are_summed_as_documented() {
        let report = MemberReport {
            pushed: 5,
            skipped_unchanged: 2,
            already_current: 1,
            deactivated: 1,
            deleted: 2,
            dead_lettered: 1,
            failed_message_ids: vec!["a".into(), "b".into()],
            ..MemberReport::default()
        };
        let values = member_metrics(&report, &RunMeasures::default());
        assert_eq!(value(&values, Metric::MembersPushed), Some(5.0));
        assert_eq!(value(&values, Metric::MembersSkipped), Some(3.0));
        assert_eq!(value(&values, Metric::MembersDeactivated), Some(3.0));
        assert_eq!(value(&values, Metric::MessagesFailed), Some(3.0));
    }

    #[test]
    fn a_failed_periodic_run_reports_no_full_refresh_or_opt_out_counts() {
        let values = periodic_metrics(None, &RunMeasures::default());
        for metric in PERIODIC_ONLY {
            assert_eq!(value(&values, metric), None, "{metric:?}");
        }
    }

    #[test]
    fn periodic_steps_that_did_not_run_send_no_counts() {
        // No full refresh due and no email preferences read: unknown, not zero.
        let report = PeriodicReport::default();
        let values = periodic_metrics(Some(&report), &RunMeasures::default());
        assert_eq!(value(&values, Metric::ContactsChanged), Some(0.0));
        for metric in PERIODIC_ONLY {
            assert_eq!(value(&values, metric), None, "{metric:?}");
        }
    }

    #[test]
    fn periodic_full_refresh_and_opt_out_counts_are_sent_when_known() {
        let report = PeriodicReport {
            full_refresh: Some(FullRefreshReport {
                sent: 1200,
                ..FullRefreshReport::default()
            }),
            email_preferences: Some(OptOutReport {
                changes: 7,
                written: 4,
                unchanged: 1,
                failed: 2,
                error: Some("stopped early".into()),
                ..OptOutReport::default()
            }),
            ..PeriodicReport::default()
        };
        let values = periodic_metrics(Some(&report), &RunMeasures::default());
        assert_eq!(value(&values, Metric::FullRefreshQueued), Some(1200.0));
        assert_eq!(value(&values, Metric::OptOutChanges), Some(7.0));
        assert_eq!(value(&values, Metric::OptOutWritten), Some(4.0));
        assert_eq!(value(&values, Metric::OptOutFailed), Some(2.0));
        for metric in MEMBER_ONLY {
            assert_eq!(value(&values, metric), None, "{metric:?}");
        }

        // Only the step that ran is reported.
        let only_full = PeriodicReport {
            email_preferences: None,
            ..report
        };
        let values = periodic_metrics(Some(&only_full), &RunMeasures::default());
        assert_eq!(value(&values, Metric::FullRefreshQueued), Some(1200.0));
        assert_eq!(value(&values, Metric::OptOutFailed), None);
    }

    #[test]
    fn member_refresh_sends_events_and_registrations_and_no_periodic_counts() {
        let report = MemberReport {
            meetings_pushed: 3,
            registrations_pushed: 41,
            ..MemberReport::default()
        };
        let values = member_metrics(&report, &RunMeasures::default());
        assert_eq!(value(&values, Metric::MeetingsPushed), Some(3.0));
        assert_eq!(value(&values, Metric::RegistrationsPushed), Some(41.0));
        for metric in PERIODIC_ONLY {
            assert_eq!(value(&values, metric), None, "{metric:?}");
        }
        // A batch without Campaign messages pushed none: a known zero.
        let values = member_metrics(&MemberReport::default(), &RunMeasures::default());
        assert_eq!(value(&values, Metric::MeetingsPushed), Some(0.0));
        assert_eq!(value(&values, Metric::RegistrationsPushed), Some(0.0));
    }

    /// A document as CloudWatch reads it: its declared metrics (name to unit) and their values,
    /// after checking the parts every document must have.
    struct Document {
        doc: Value,
        units: BTreeMap<String, String>,
        values: BTreeMap<String, f64>,
    }

    fn read(emitted: Option<String>) -> Document {
        let line = emitted.expect("an EMF document");
        assert!(!line.contains('\n'), "one line, one document: {line}");
        let doc: Value = serde_json::from_str(&line).expect("the document is JSON");
        let declared = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Namespace"], NAMESPACE, "{line}");
        assert_eq!(declared["Dimensions"], json!([[DIMENSION]]), "{line}");
        assert!(doc["_aws"]["Timestamp"].is_u64(), "{line}");
        let mut units = BTreeMap::new();
        let mut values = BTreeMap::new();
        for m in declared["Metrics"].as_array().expect("declared metrics") {
            let name = m["Name"].as_str().expect("a name").to_string();
            // One sample per invocation, as a histogram of one value.
            let samples = doc[&name].as_array().expect("the metric's values");
            assert_eq!(samples.len(), 1, "{name}: {line}");
            values.insert(name.clone(), samples[0].as_f64().expect("a number"));
            units.insert(name, m["Unit"].as_str().expect("a unit").to_string());
        }
        Document { doc, units, values }
    }

    #[test]
    fn every_metric_keeps_the_name_and_unit_that_infra_reads() {
        let expected = [
            (Metric::ContactsChanged, "ContactsChanged", "Count"),
            (Metric::MembersPushed, "MembersPushed", "Count"),
            (Metric::MembersSkipped, "MembersSkipped", "Count"),
            (Metric::MembersDeactivated, "MembersDeactivated", "Count"),
            (Metric::MessagesFailed, "MessagesFailed", "Count"),
            (Metric::SalesforceApiCalls, "SalesforceApiCalls", "Count"),
            (Metric::AllotmentShare, "AllotmentShare", "Percent"),
            (Metric::HigherLogicCalls, "HigherLogicCalls", "Count"),
            (Metric::RunDurationMs, "RunDurationMs", "Milliseconds"),
            (Metric::MeetingsPushed, "MeetingsPushed", "Count"),
            (Metric::RegistrationsPushed, "RegistrationsPushed", "Count"),
            (Metric::FullRefreshQueued, "FullRefreshQueued", "Count"),
            (Metric::OptOutChanges, "OptOutChanges", "Count"),
            (Metric::OptOutWritten, "OptOutWritten", "Count"),
            (Metric::OptOutFailed, "OptOutFailed", "Count"),
        ];
        assert_eq!(expected.map(|(m, _, _)| m), Metric::ALL);
        let values: Vec<(Metric, f64)> = Metric::ALL
            .iter()
            .enumerate()
            .map(|(i, m)| (*m, i as f64 + 0.5))
            .collect();
        let d = read(emf_document(PERIODIC_FUNCTION, "r-all", &values));
        assert_eq!(d.values.len(), expected.len());
        for (i, (_, name, unit)) in expected.iter().enumerate() {
            assert_eq!(d.units[*name], *unit, "{name}");
            assert_eq!(d.values[*name], i as f64 + 0.5, "{name}");
        }
        assert_eq!(d.doc[DIMENSION], PERIODIC_FUNCTION);
        assert_eq!(d.doc[RUN_ID_PROPERTY], "r-all");
    }

    #[test]
    fn emf_documents_carry_the_new_counts_under_their_function() {
        let report = PeriodicReport {
            email_preferences: Some(OptOutReport {
                failed: 1,
                ..OptOutReport::default()
            }),
            ..PeriodicReport::default()
        };
        let d = read(periodic_emf("r1", Some(&report), &RunMeasures::default()));
        assert_eq!(d.doc[DIMENSION], PERIODIC_FUNCTION);
        assert_eq!(d.doc[RUN_ID_PROPERTY], "r1");
        assert_eq!(d.values["OptOutFailed"], 1.0);
        assert_eq!(d.values["ContactsChanged"], 0.0);
        assert!(
            !d.values.contains_key("FullRefreshQueued"),
            "{:?}",
            d.values
        );

        let d = read(member_emf(
            "r2",
            &MemberReport {
                registrations_pushed: 2,
                ..MemberReport::default()
            },
            &RunMeasures::default(),
        ));
        assert_eq!(d.doc[DIMENSION], MEMBER_FUNCTION);
        assert_eq!(d.doc[RUN_ID_PROPERTY], "r2");
        assert_eq!(d.values["RegistrationsPushed"], 2.0);
        assert_eq!(d.values["MessagesFailed"], 0.0);
        assert!(!d.values.contains_key("OptOutFailed"), "{:?}", d.values);
        assert!(!d.values.contains_key("AllotmentShare"), "{:?}", d.values);
    }

    #[test]
    fn a_warm_function_sends_each_invocation_only_its_own_values() {
        // A successful run that saw the allotment, then a failed one that saw nothing: the
        // second document repeats none of the first's values and adds none to its own.
        let full = PeriodicReport {
            full_refresh: Some(FullRefreshReport {
                sent: 900,
                ..FullRefreshReport::default()
            }),
            ..PeriodicReport::default()
        };
        let first = RunMeasures {
            salesforce_calls: 7,
            allotment_share: Some(0.25),
            duration: Duration::from_millis(1500),
            ..RunMeasures::default()
        };
        let d = read(periodic_emf("warm-1", Some(&full), &first));
        assert_eq!(d.values["FullRefreshQueued"], 900.0);
        assert_eq!(d.values["AllotmentShare"], 25.0);
        assert_eq!(d.values["SalesforceApiCalls"], 7.0);
        assert_eq!(d.values["RunDurationMs"], 1500.0);

        let second = RunMeasures {
            salesforce_calls: 2,
            duration: Duration::from_millis(30),
            ..RunMeasures::default()
        };
        let d = read(periodic_emf("warm-2", None, &second));
        assert_eq!(d.doc[RUN_ID_PROPERTY], "warm-2");
        assert_eq!(d.values["SalesforceApiCalls"], 2.0);
        assert_eq!(d.values["HigherLogicCalls"], 0.0);
        assert_eq!(d.values["RunDurationMs"], 30.0);
        assert_eq!(
            d.values.keys().collect::<Vec<_>>(),
            ["HigherLogicCalls", "RunDurationMs", "SalesforceApiCalls"]
        );

        // And the other function's next document carries nothing of the periodic runs.
        let d = read(member_emf("warm-3", &MemberReport::default(), &second));
        assert_eq!(d.doc[DIMENSION], MEMBER_FUNCTION);
        assert_eq!(d.values["SalesforceApiCalls"], 2.0);
        assert!(
            !d.values.contains_key("FullRefreshQueued"),
            "{:?}",
            d.values
        );
    }

    #[test]
    fn documents_built_at_once_do_not_take_each_others_values() {
        let threads: Vec<_> = (0..8u64)
            .map(|i| {
                std::thread::spawn(move || {
                    let m = RunMeasures {
                        salesforce_calls: i,
                        higher_logic_calls: 100 + i,
                        ..RunMeasures::default()
                    };
                    let run_id = format!("par-{i}");
                    (0..20)
                        .map(|_| (i, read(member_emf(&run_id, &MemberReport::default(), &m))))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for thread in threads {
            for (i, d) in thread.join().expect("the thread ran") {
                assert_eq!(d.doc[RUN_ID_PROPERTY], format!("par-{i}"));
                assert_eq!(d.values["SalesforceApiCalls"], i as f64);
                assert_eq!(d.values["HigherLogicCalls"], 100.0 + i as f64);
                assert_eq!(d.values.len(), 9, "{:?}", d.values);
            }
        }
    }
}
