//! The member-refresh function: invoked by SQS with a batch of work messages, runs the Member
//! Refresh on them and answers which messages failed (`ReportBatchItemFailures`), so only those
//! come back.

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Instant;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use hlsync_core::allotment;
use hlsync_sync::member::{IncomingMessage, MemberReport};
use hlsync_sync::ports::{Community, Crm};
use hlsync_sync::runtime::Runtime;
use lambda_runtime::LambdaEvent;
use tracing::{Instrument, error, info, warn};

use crate::budget::Budget;
use crate::error::LambdaError;
use crate::metrics::{MEMBER_FUNCTION, RunMeasures, member_emf};
use crate::telemetry::run_span;

/// A batch as the pipeline takes it, and the records it cannot take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub messages: Vec<IncomingMessage>,
    /// Ids of records without a body: reported failed (SQS retries, then dead-letters them).
    pub unreadable: Vec<String>,
    /// Records without a message id. They cannot be named in the answer, so the answer carries
    /// an empty identifier for them, which makes Lambda retry the whole batch: nothing is lost,
    /// and the retried messages that did work are absorbed by the idempotent push.
    pub without_id: usize,
}

/// Splits an SQS event into work messages; never fails, whatever the records hold.
pub fn batch_from_event(event: SqsEvent) -> Batch {
    let mut batch = Batch::default();
    for SqsMessage {
        message_id, body, ..
    } in event.records
    {
        match (message_id.filter(|id| !id.is_empty()), body) {
            (Some(message_id), Some(body)) => {
                batch.messages.push(IncomingMessage { message_id, body });
            }
            (Some(message_id), None) => {
                warn!(message_id = %message_id, "SQS record has no body; reporting it as failed");
                batch.unreadable.push(message_id);
            }
            (None, _) => {
                warn!("SQS record has no message id; the whole batch will be retried");
                batch.without_id += 1;
            }
        }
    }
    batch
}

/// The answer: each id once, in the order first seen.
pub fn batch_response<I: IntoIterator<Item = String>>(failed: I) -> SqsBatchResponse {
    let mut seen = HashSet::new();
    let mut response = SqsBatchResponse::default();
    for id in failed {
        if seen.insert(id.clone()) {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// The Lambda handler. It never fails as a whole: a batch that cannot be worked is answered
/// with every message failed, which retries them just as an error would, but keeps saying which.
pub async fn handle(
    rt: &Runtime,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Infallible> {
    let (payload, ctx) = event.into_parts();
    let run_id = if ctx.request_id.is_empty() {
        crate::local_run_id()
    } else {
        ctx.request_id.clone()
    };
    let budget = Budget::from_context(&ctx);
    let span = run_span(MEMBER_FUNCTION, &run_id);
    let outcome = refresh(rt, payload, &run_id, budget).instrument(span).await;
    if let Some(emf) = &outcome.emf {
        println!("{emf}");
    }
    Ok(outcome.response)
}

/// One batch's answer, the pipeline's report and the EMF document that measures it (`None` only
/// if the metrics recorder could not be installed, which the log says).
#[derive(Debug)]
pub struct MemberOutcome {
    pub response: SqsBatchResponse,
    pub report: MemberReport,
    pub emf: Option<String>,
}

/// The handler's work, with the EMF document returned instead of printed.
pub async fn refresh(rt: &Runtime, event: SqsEvent, run_id: &str, budget: Budget) -> MemberOutcome {
    let started = Instant::now();
    let sf_before = rt.crm.calls_made();
    let hl_before = rt.community.calls_made();
    let batch = batch_from_event(event);
    info!(
        messages = batch.messages.len(),
        unreadable = batch.unreadable.len() + batch.without_id,
        time_left_ms = budget.time_left.map(|d| d.as_millis() as u64),
        "member refresh starting"
    );
    let received = (batch.messages.len() + batch.unreadable.len() + batch.without_id) as u64;
    let mut report = match rt.member_refresh(batch.messages, &budget.deadline).await {
        Ok(report) => report,
        Err(failure) => {
            let e = LambdaError::Run(failure.error);
            error!(kind = e.kind(), error = %e, "the batch could not be worked; every message not dead-lettered is reported failed and will be retried");
            // Its failed ids are every message but those already on the dead-letter queue.
            failure.report
        }
    };
    report.received = received;
    report
        .failed_message_ids
        .extend(batch.unreadable.iter().cloned());
    report
        .failed_message_ids
        .extend(std::iter::repeat_n(String::new(), batch.without_id));

    let measures = RunMeasures {
        salesforce_calls: rt.crm.calls_made().saturating_sub(sf_before),
        higher_logic_calls: rt.community.calls_made().saturating_sub(hl_before),
        allotment_share: rt
            .crm
            .usage()
            .map(|u| allotment::share(u, &rt.cfg.salesforce)),
        duration: started.elapsed(),
    };
    let emf = member_emf(run_id, &report, &measures);
    let response = batch_response(report.failed_message_ids.iter().cloned());
    info!(
        pushed = report.pushed,
        dead_lettered = report.dead_lettered,
        failed = response.batch_item_failures.len(),
        "member refresh done"
    );
    MemberOutcome {
        response,
        report,
        emf,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(records: serde_json::Value) -> SqsEvent {
        serde_json::from_value(json!({ "Records": records })).expect("an SQS event")
    }

    #[test]
    fn records_are_split_without_failing() {
        let batch = batch_from_event(event(json!([
            {"messageId": "m1", "body": "{}"},
            {"messageId": "m2"},
            {"body": "orphan"},
            {"messageId": "", "body": "blank id"},
        ])));
        assert_eq!(
            batch.messages,
            vec![IncomingMessage {
                message_id: "m1".into(),
                body: "{}".into()
            }]
        );
        assert_eq!(batch.unreadable, vec!["m2".to_string()]);
        assert_eq!(batch.without_id, 2);
    }

    #[test]
    fn the_answer_names_each_failure_once() {
        let response = batch_response(["a", "b", "a", ""].map(String::from));
        let ids: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(ids, vec!["a", "b", ""]);
        let wire = serde_json::to_value(&response).expect("serialises");
        assert_eq!(wire["batchItemFailures"][0]["itemIdentifier"], "a");
    }

    #[test]
    fn an_empty_event_is_an_empty_batch() {
        assert_eq!(batch_from_event(event(json!([]))), Batch::default());
        assert!(batch_response(Vec::new()).batch_item_failures.is_empty());
    }
}
