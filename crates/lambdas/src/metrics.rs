//! The one EMF line each invocation prints (namespace `hlsync`, dimension `Function`), with the
//! metrics the dashboard and alarms of `infra/` read.
//!
//! The line is printed with `println!`, not logged: CloudWatch only extracts metrics from a line
//! that is the EMF document itself, not one nested in a log event's fields.

use std::time::Duration;

use hlsync_sync::member::MemberReport;
use hlsync_sync::metrics::{Metric, emf_line};
use hlsync_sync::periodic::PeriodicReport;

pub const PERIODIC_FUNCTION: &str = "periodic-refresh";
pub const MEMBER_FUNCTION: &str = "member-refresh";

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

pub fn periodic_emf(run_id: &str, report: Option<&PeriodicReport>, m: &RunMeasures) -> String {
    emf_line(PERIODIC_FUNCTION, run_id, &periodic_metrics(report, m))
}

pub fn member_emf(run_id: &str, report: &MemberReport, m: &RunMeasures) -> String {
    emf_line(MEMBER_FUNCTION, run_id, &member_metrics(report, m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hlsync_sync::full::FullRefreshReport;
    use hlsync_sync::optout::OptOutReport;

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

    #[test]
    fn emf_lines_carry_the_new_counts_under_their_function() {
        let report = PeriodicReport {
            email_preferences: Some(OptOutReport {
                failed: 1,
                ..OptOutReport::default()
            }),
            ..PeriodicReport::default()
        };
        let line = periodic_emf("r1", Some(&report), &RunMeasures::default());
        let doc: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(doc["Function"], PERIODIC_FUNCTION);
        assert_eq!(doc["OptOutFailed"], 1.0);
        assert!(doc.get("FullRefreshQueued").is_none());

        let line = member_emf(
            "r2",
            &MemberReport {
                registrations_pushed: 2,
                ..MemberReport::default()
            },
            &RunMeasures::default(),
        );
        let doc: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(doc["Function"], MEMBER_FUNCTION);
        assert_eq!(doc["RegistrationsPushed"], 2.0);
        assert!(doc.get("OptOutFailed").is_none());
    }
}
