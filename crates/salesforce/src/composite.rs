//! Several SOQL queries read through the Composite resource (`POST composite`): one request runs
//! up to 25 subrequests and counts as one API call, but at most 5 of them may be query
//! operations (Query, QueryAll and the next-page requests of `nextRecordsUrl`). So hlsync sends
//! five query steps per call: the first pages, then the next pages, until every query is done.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use crate::client::{Call, SalesforceClient, error_of};
use crate::error::SfError;
use crate::query::{CheckedPage, Record, default_batch_size, first_page_path, resource};

/// Query operations Salesforce runs in one composite request.
pub const QUERIES_PER_COMPOSITE: usize = 5;

/// SOQL longer than this is cut in error messages.
const SOQL_IN_MESSAGES: usize = 120;

/// One query of a batched read ([`SalesforceClient::query_many`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompositeQuery {
    /// The SOQL text.
    pub soql: String,
    /// `queryAll`: deleted (recycle bin) and archived rows too.
    pub all: bool,
}

impl CompositeQuery {
    /// A `query`: rows not in the recycle bin.
    pub fn query(soql: impl Into<String>) -> Self {
        CompositeQuery {
            soql: soql.into(),
            all: false,
        }
    }

    /// A `queryAll`: deleted and archived rows too.
    pub fn query_all(soql: impl Into<String>) -> Self {
        CompositeQuery {
            soql: soql.into(),
            all: true,
        }
    }

    /// How errors name the query: its resource and its SOQL, shortened.
    fn name(&self) -> String {
        let soql = self.soql.split_whitespace().collect::<Vec<_>>().join(" ");
        let shown: String = soql.chars().take(SOQL_IN_MESSAGES).collect();
        let cut = if shown.len() < soql.len() { "…" } else { "" };
        format!(
            "{} `{shown}{cut}` (a composite subrequest)",
            resource(self.all)
        )
    }
}

/// A query under way: the path of the page it reads next.
struct Step {
    /// Its position in the caller's list, also its referenceId (`q{index}`).
    index: usize,
    path: String,
    /// Transient failures of this page so far.
    failures: u32,
}

impl Step {
    fn reference(&self) -> String {
        format!("q{}", self.index)
    }
}

#[derive(Deserialize)]
struct CompositeAnswer {
    #[serde(rename = "compositeResponse")]
    results: Vec<SubrequestResult>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubrequestResult {
    #[serde(default)]
    body: Value,
    http_status_code: u16,
    reference_id: Option<String>,
}

/// What became of one step in one composite request.
enum Outcome {
    /// A page was read; the query goes on at `next`, or is done.
    Page(CheckedPage),
    /// A passing failure (5xx): the page is asked again in a later request.
    Again { pause: Duration },
    /// The session was refused inside the request: log in again, then ask the page again.
    Session,
}

impl SalesforceClient {
    /// Every record of every query, in the order of `queries`, reading up to five query steps per
    /// API call through the Composite resource: the first pages of five queries in one call,
    /// then their next pages (`nextRecordsUrl`) five per call, a finished query's place taken by
    /// the next query not yet started. Each query pages as [`QueryPager`](crate::QueryPager)
    /// does (the client's `query_batch_size`, sent as the subrequest's `Sforce-Query-Options`).
    ///
    /// Every SOQL's URL is checked against `MAX_URL_BYTES` before anything is sent. No query, no
    /// call; one query also goes through the Composite resource (one call per page, as the plain
    /// endpoint costs), so that its errors name it like the others'.
    ///
    /// Errors: a whole request that fails goes through the client's usual handling (allotment
    /// guard, one re-login on 401, retries of 5xx and transport errors). A failed subrequest fails
    /// the whole read with the error the plain endpoint gives for that answer, naming the query:
    /// `QueryTimeout` for QUERY_TIMEOUT, `LimitExceeded` for REQUEST_LIMIT_EXCEEDED, `Api`
    /// otherwise; a 5xx in a subrequest asks that page again in a later call, up to the retry
    /// policy's tries, then gives `Unavailable`; a 401 in a subrequest logs in once more, as for a
    /// plain call. At most five queries are under way at once, so at most five query cursors are
    /// held open (Salesforce keeps ten per user and releases the oldest past that).
    pub async fn query_many(
        &self,
        queries: &[CompositeQuery],
    ) -> Result<Vec<Vec<Record>>, SfError> {
        let mut waiting = Vec::with_capacity(queries.len());
        for (index, q) in queries.iter().enumerate() {
            waiting.push(Step {
                index,
                path: first_page_path(self, &q.soql, q.all)?,
                failures: 0,
            });
        }
        let mut waiting = waiting.into_iter();
        let mut records: Vec<Vec<Record>> = vec![Vec::new(); queries.len()];
        let mut under_way: Vec<Step> = Vec::with_capacity(QUERIES_PER_COMPOSITE);
        let mut relogged = false;
        loop {
            while under_way.len() < QUERIES_PER_COMPOSITE
                && let Some(step) = waiting.next()
            {
                under_way.push(step);
            }
            if under_way.is_empty() {
                return Ok(records);
            }
            let (answer, session) = self
                .send_in_session(self.composite_call(&under_way))
                .await?;
            let mut results = read_answer(answer, under_way.len())?;
            let mut pause = Duration::ZERO;
            let mut renew = false;
            let mut next_round = Vec::with_capacity(under_way.len());
            for mut step in under_way {
                let query = &queries[step.index];
                let Some((status, body)) = results.remove(&step.reference()) else {
                    return Err(SfError::Decode {
                        what: "composite".to_string(),
                        detail: format!("no result for referenceId {}", step.reference()),
                    });
                };
                match self.outcome(query, &mut step, status, body, relogged)? {
                    Outcome::Page(page) => {
                        records[step.index].extend(page.records);
                        if let Some(next) = page.next {
                            step.path = next;
                            step.failures = 0;
                            next_round.push(step);
                        }
                    }
                    Outcome::Again { pause: p } => {
                        pause = pause.max(p);
                        next_round.push(step);
                    }
                    Outcome::Session => {
                        renew = true;
                        next_round.push(step);
                    }
                }
            }
            if renew {
                info!(
                    "Salesforce refused the session inside a composite request; logging in again"
                );
                relogged = true;
                self.renew_session(&session).await?;
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            under_way = next_round;
        }
    }

    /// One composite request holding the next page of each step.
    fn composite_call(&self, steps: &[Step]) -> Call {
        let batch_size = default_batch_size(self);
        let subrequests: Vec<Value> = steps
            .iter()
            .map(|step| {
                let mut sub = json!({
                    "method": "GET",
                    "url": step.path,
                    "referenceId": step.reference(),
                });
                if let Some(n) = batch_size {
                    sub["httpHeaders"] = json!({"Sforce-Query-Options": format!("batchSize={n}")});
                }
                sub
            })
            .collect();
        debug!(
            queries = steps.len(),
            "reading query pages through composite"
        );
        Call {
            what: format!("composite ({} query pages)", steps.len()),
            method: Method::POST,
            path: self.data_path("composite"),
            // Reads change nothing: one failed subrequest must not turn the others into errors.
            body: Some(json!({"allOrNone": false, "compositeRequest": subrequests})),
            query_batch_size: None,
            guarded: true,
        }
    }

    /// Judges one subrequest's answer as `send` judges a whole call's.
    fn outcome(
        &self,
        query: &CompositeQuery,
        step: &mut Step,
        status: u16,
        body: Value,
        relogged: bool,
    ) -> Result<Outcome, SfError> {
        if (200..300).contains(&status) {
            return CheckedPage::read(body, &query.name()).map(Outcome::Page);
        }
        let (code, message) = error_of(&body.to_string());
        let what = query.name();
        match status {
            401 if !relogged => Ok(Outcome::Session),
            401 => Err(SfError::SessionRejected { code, message }),
            403 if code == "REQUEST_LIMIT_EXCEEDED" => {
                warn!(%what, %message, "Salesforce: API request limit exceeded; stopping");
                Err(SfError::LimitExceeded { message })
            }
            400 if code == "QUERY_TIMEOUT" => Err(SfError::QueryTimeout {
                message: format!("{message} — {what}"),
            }),
            500..=599 => {
                step.failures += 1;
                let policy = self.inner.options.retry;
                if step.failures >= policy.attempts.max(1) {
                    return Err(SfError::Unavailable {
                        what,
                        status,
                        code,
                        message,
                        attempts: step.failures,
                    });
                }
                warn!(%what, status, %code, attempt = step.failures, "Salesforce server error in a subrequest; asking again");
                Ok(Outcome::Again {
                    pause: policy.delay(step.failures + 1),
                })
            }
            _ => Err(SfError::Api {
                what,
                status,
                code,
                message,
            }),
        }
    }
}

/// The subrequest results by referenceId. A result without a referenceId is Salesforce refusing
/// the request as a whole (e.g. LIMIT_EXCEEDED past 25 subrequests or 5 query operations).
fn read_answer(answer: Value, expected: usize) -> Result<HashMap<String, (u16, Value)>, SfError> {
    let decode = |detail: String| SfError::Decode {
        what: "composite".to_string(),
        detail,
    };
    let answer: CompositeAnswer =
        serde_json::from_value(answer).map_err(|e| decode(e.to_string()))?;
    let mut by_reference = HashMap::with_capacity(answer.results.len());
    for result in answer.results {
        if let Some(reference) = result.reference_id {
            by_reference.insert(reference, (result.http_status_code, result.body));
        } else {
            let (code, message) = error_of(&result.body.to_string());
            return Err(SfError::Api {
                what: format!("a composite request of {expected} query pages"),
                status: result.http_status_code,
                code,
                message,
            });
        }
    }
    Ok(by_reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_query_shortened_on_one_line() {
        let q = CompositeQuery::query_all(format!(
            "SELECT Id\n  FROM Contact WHERE LastName IN ({})",
            "'x',".repeat(100)
        ));
        let name = q.name();
        assert!(
            name.starts_with("queryAll `SELECT Id FROM Contact WHERE"),
            "{name}"
        );
        assert!(name.ends_with("…` (a composite subrequest)"), "{name}");
        assert_eq!(
            CompositeQuery::query("SELECT Id FROM Contact").name(),
            "query `SELECT Id FROM Contact` (a composite subrequest)"
        );
    }

    #[test]
    fn a_result_without_reference_refuses_the_whole_request() {
        let answer = json!({"compositeResponse": [{
            "body": [{"errorCode": "LIMIT_EXCEEDED", "message": "too many"}],
            "httpHeaders": {}, "httpStatusCode": 400, "referenceId": null}]});
        let err = read_answer(answer, 6).unwrap_err();
        assert!(
            matches!(&err, SfError::Api { status: 400, code, .. } if code == "LIMIT_EXCEEDED"),
            "{err:?}"
        );
    }
}
