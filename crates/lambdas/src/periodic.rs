//! The periodic-refresh function: invoked by EventBridge Scheduler, runs one Periodic Refresh.

use std::time::Instant;

use chrono::{DateTime, Utc};
use hlsync_core::allotment;
use hlsync_sync::periodic::{PeriodicOptions, PeriodicReport};
use hlsync_sync::ports::Crm;
use hlsync_sync::runtime::Runtime;
use lambda_runtime::LambdaEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{Instrument, error, info, warn};

use crate::budget::Budget;
use crate::error::LambdaError;
use crate::metrics::{PERIODIC_FUNCTION, RunMeasures, periodic_emf};
use crate::telemetry::run_span;

/// Which shape the invocation's input had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputShape {
    /// `{"scheduled_time": …, "execution_id": …}`: what the SAM template's schedule passes.
    Scheduler,
    /// An EventBridge rule's "Scheduled Event" (`detail-type`, `time`, `id`).
    ScheduledEvent,
    /// `{}` or `null`: a manual invoke.
    Empty,
    /// Anything else: run anyway (a schedule must not stop over its payload), but say so.
    Other,
}

/// What the periodic function reads from its input. Neither value changes what the run does
/// (windows are measured on Salesforce's clock): they tie its logs to the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleInput {
    pub shape: InputShape,
    pub execution_id: Option<String>,
    pub scheduled_time: Option<DateTime<Utc>>,
}

/// A text field of the input, unless empty or an unsubstituted `<aws.scheduler.…>` placeholder
/// (a target whose Input is not a template leaves them as they are).
fn text(obj: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    let v = obj.get(key)?.as_str()?.trim();
    (!v.is_empty() && !v.starts_with("<aws.")).then(|| v.to_string())
}

fn time(obj: &serde_json::Map<String, Value>, key: &str) -> Option<DateTime<Utc>> {
    let v = text(obj, key)?;
    match DateTime::parse_from_rfc3339(&v) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(e) => {
            warn!(key, value = %v, error = %e, "input time is not RFC 3339; ignoring it");
            None
        }
    }
}

/// Reads any of the accepted input shapes; never fails.
pub fn parse_schedule_input(payload: &Value) -> ScheduleInput {
    let empty = ScheduleInput {
        shape: InputShape::Empty,
        execution_id: None,
        scheduled_time: None,
    };
    let obj = match payload {
        Value::Null => return empty,
        Value::Object(obj) if obj.is_empty() => return empty,
        Value::Object(obj) => obj,
        _ => {
            return ScheduleInput {
                shape: InputShape::Other,
                ..empty
            };
        }
    };
    if obj.contains_key("execution_id") || obj.contains_key("scheduled_time") {
        return ScheduleInput {
            shape: InputShape::Scheduler,
            execution_id: text(obj, "execution_id"),
            scheduled_time: time(obj, "scheduled_time"),
        };
    }
    if obj.contains_key("detail-type") {
        // The event's `id` names the event, not a scheduler execution: the run id stays the
        // request id, as for every input without an execution id.
        return ScheduleInput {
            shape: InputShape::ScheduledEvent,
            execution_id: None,
            scheduled_time: time(obj, "time"),
        };
    }
    ScheduleInput {
        shape: InputShape::Other,
        ..empty
    }
}

/// What the function answers (visible in a manual invoke and in the scheduler's logs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeriodicSummary {
    pub run_id: String,
    pub scheduled_time: Option<DateTime<Utc>>,
    /// Why the run did nothing, when it did nothing on purpose.
    pub skipped: Option<String>,
    pub changed: u64,
    pub deleted: u64,
    /// Contacts queued.
    pub sent: u64,
    /// Messages queued: one per Contact from the feeds, one per range of Contacts from a full
    /// refresh.
    #[serde(default)]
    pub messages: u64,
    /// Every window scanned to its end (false: stopped at the deadline; the next run resumes).
    pub completed: bool,
    pub salesforce_calls: u64,
    pub allotment_share_percent: Option<f64>,
    pub duration_ms: u64,
}

impl PeriodicSummary {
    fn new(report: &PeriodicReport, input: &ScheduleInput, m: &RunMeasures) -> Self {
        PeriodicSummary {
            run_id: report.run_id.clone(),
            scheduled_time: input.scheduled_time,
            skipped: report.skipped.clone(),
            changed: report.changed(),
            deleted: report.feeds.iter().map(|f| f.deleted).sum(),
            sent: report.sent(),
            messages: report.messages(),
            completed: report.completed(),
            salesforce_calls: m.salesforce_calls,
            allotment_share_percent: m.allotment_share.map(|s| s * 100.0),
            duration_ms: m.duration.as_millis() as u64,
        }
    }
}

/// The run id: the scheduler's execution id when the input has one, else the request id.
pub fn run_id(input: &ScheduleInput, request_id: &str) -> String {
    input
        .execution_id
        .clone()
        .or_else(|| (!request_id.is_empty()).then(|| request_id.to_string()))
        .unwrap_or_else(crate::local_run_id)
}

/// One run's result and the EMF document that measures it (`None` only if the metrics
/// recorder could not be installed, which the log says).
#[derive(Debug)]
pub struct PeriodicOutcome {
    pub result: Result<PeriodicSummary, LambdaError>,
    pub emf: Option<String>,
}

/// The Lambda handler.
pub async fn handle(
    rt: &Runtime,
    event: LambdaEvent<Value>,
) -> Result<PeriodicSummary, LambdaError> {
    let (payload, ctx) = event.into_parts();
    let input = parse_schedule_input(&payload);
    let run_id = run_id(&input, &ctx.request_id);
    let budget = Budget::from_context(&ctx);
    let span = run_span(PERIODIC_FUNCTION, &run_id);
    let outcome = refresh(rt, input, run_id, budget).instrument(span).await;
    if let Some(emf) = &outcome.emf {
        println!("{emf}");
    }
    outcome.result
}

/// The handler's work, with the EMF document returned instead of printed.
pub async fn refresh(
    rt: &Runtime,
    input: ScheduleInput,
    run_id: String,
    budget: Budget,
) -> PeriodicOutcome {
    let started = Instant::now();
    let calls_before = rt.crm.calls_made();
    info!(
        input = ?input.shape,
        scheduled_time = ?input.scheduled_time,
        time_left_ms = budget.time_left.map(|d| d.as_millis() as u64),
        "periodic refresh starting"
    );
    let opts = PeriodicOptions {
        run_id: run_id.clone(),
        deadline: budget.deadline,
        lease_ttl: budget.lease_ttl,
    };
    let result = rt.periodic_refresh(&opts).await;
    let measures = RunMeasures {
        salesforce_calls: rt.crm.calls_made().saturating_sub(calls_before),
        higher_logic_calls: 0,
        allotment_share: rt
            .crm
            .usage()
            .map(|u| allotment::share(u, &rt.cfg.salesforce)),
        duration: started.elapsed(),
    };
    let emf = periodic_emf(&run_id, result.as_ref().ok(), &measures);
    let result = match result {
        Ok(report) => {
            let summary = PeriodicSummary::new(&report, &input, &measures);
            info!(
                changed = summary.changed,
                sent = summary.sent,
                completed = summary.completed,
                skipped = summary.skipped.as_deref(),
                "periodic refresh done"
            );
            Ok(summary)
        }
        Err(e) => {
            let e = LambdaError::Run(e);
            // Returned as the function's error too, so the Errors alarm fires.
            error!(kind = e.kind(), error = %e, "periodic refresh stopped; the watermark stays where the last completed work left it");
            Err(e)
        }
    };
    PeriodicOutcome { result, emf }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_scheduler_payload_gives_the_execution_id() {
        let input = parse_schedule_input(&json!({
            "scheduled_time": "2026-11-24T10:00:00Z",
            "execution_id": "a1b2-c3"
        }));
        assert_eq!(input.shape, InputShape::Scheduler);
        assert_eq!(input.execution_id.as_deref(), Some("a1b2-c3"));
        assert_eq!(
            input.scheduled_time.map(|t| t.to_rfc3339()),
            Some("2026-11-24T10:00:00+00:00".to_string())
        );
        assert_eq!(run_id(&input, "req-1"), "a1b2-c3");
    }

    #[test]
    fn placeholders_and_blanks_are_absent() {
        let input = parse_schedule_input(&json!({
            "scheduled_time": "<aws.scheduler.scheduled-time>",
            "execution_id": " "
        }));
        assert_eq!(input.shape, InputShape::Scheduler);
        assert_eq!(input.execution_id, None);
        assert_eq!(input.scheduled_time, None);
        assert_eq!(run_id(&input, "req-1"), "req-1");
    }

    #[test]
    fn a_bad_time_is_ignored() {
        let input =
            parse_schedule_input(&json!({"scheduled_time": "yesterday", "execution_id": "e"}));
        assert_eq!(input.scheduled_time, None);
        assert_eq!(input.execution_id.as_deref(), Some("e"));
    }

    #[test]
    fn a_scheduled_event_runs_under_the_request_id() {
        let input = parse_schedule_input(&json!({
            "version": "0",
            "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": "2026-11-24T10:05:00Z",
            "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/hlsync"],
            "detail": {}
        }));
        assert_eq!(input.shape, InputShape::ScheduledEvent);
        assert!(input.scheduled_time.is_some());
        assert_eq!(run_id(&input, "req-2"), "req-2");
    }

    #[test]
    fn empty_and_other_inputs_still_run() {
        for payload in [json!({}), Value::Null] {
            let input = parse_schedule_input(&payload);
            assert_eq!(input.shape, InputShape::Empty);
            assert_eq!(run_id(&input, "req-3"), "req-3");
        }
        for payload in [json!({"hello": 1}), json!("text"), json!([1])] {
            assert_eq!(parse_schedule_input(&payload).shape, InputShape::Other);
        }
    }

    #[test]
    fn without_any_id_a_local_one_is_made() {
        let input = parse_schedule_input(&json!({}));
        let id = run_id(&input, "");
        assert!(id.starts_with("local-"), "{id}");
    }
}
