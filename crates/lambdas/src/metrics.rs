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
/// sent, so a failed run does not chart as "0 contacts changed".
pub fn periodic_metrics(report: Option<&PeriodicReport>, m: &RunMeasures) -> Vec<(Metric, f64)> {
    let mut values = Vec::new();
    if let Some(r) = report {
        values.push((Metric::ContactsChanged, r.changed() as f64));
    }
    values.extend(common(m));
    values
}

/// The Member Refresh's metrics. `MembersSkipped` counts Contacts left alone because Higher
/// Logic already has their current record (covered by an earlier push, or re-read unchanged);
/// `MembersDeactivated` counts inactive and deleted ones pushed; `MessagesFailed` counts
/// messages reported back for retry plus those dead-lettered at once.
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
}
