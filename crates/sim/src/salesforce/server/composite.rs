//! `POST /services/data/vXX.X/composite`: up to 25 subrequests in one request that counts as one
//! API call, at most 5 of them query operations (Query, QueryAll, query-more) or sObject
//! Collections. Each subrequest runs through the same handler as the top-level resource, so a
//! page read inside a composite request is the page the plain endpoint would give, and its
//! `nextRecordsUrl` works either way.
//!
//! The simulator runs GET subrequests of query, queryAll, query-more, describe, describe global
//! and single-record reads. Other resources that Salesforce accepts in a composite request
//! (writes, sObject Collections) answer 400 in that subrequest's result; `@{reference}`
//! expressions are not resolved and answer 400 too.

use axum::Json;
use axum::http::header::{HeaderName, HeaderValue};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{
    Ctx, Endpoint, SimState, describe, describe_global, get_record, json_body, method_not_allowed,
    query, query_more, resource_missing, sf_error,
};
use crate::salesforce::Shared;

/// Subrequests in one composite request.
const MAX_SUBREQUESTS: usize = 25;
/// Query operations (Query, QueryAll, query-more) and sObject Collections in one request.
const MAX_QUERY_OPERATIONS: usize = 5;

/// `GET composite`: the composite resources the simulator serves.
pub(super) fn resources(ctx: &Ctx<'_>) -> Response {
    Json(json!({"sobjects": ctx.url("composite/sobjects")})).into_response()
}

/// One subrequest as the request body gave it.
struct Subrequest {
    reference: String,
    method: Method,
    url: String,
    headers: HeaderMap,
}

/// Where a subrequest's url points, once it is known to name a served API version.
struct Target {
    version: String,
    rest: Vec<String>,
    query: String,
    endpoint: Endpoint,
}

impl Subrequest {
    /// The resource of the url; `None` outside `/services/data/vXX.X/` of a served version.
    fn target(&self, versions: &[String]) -> Option<Target> {
        let (path, query) = self.url.split_once('?').unwrap_or((&self.url, ""));
        let tail = path.strip_prefix("/services/data/")?;
        let mut segments = tail.split('/').filter(|s| !s.is_empty());
        let version = segments
            .next()
            .and_then(|v| v.strip_prefix('v'))
            .filter(|v| versions.iter().any(|known| known == v))
            .map(str::to_owned)?;
        let rest: Vec<String> = segments.map(str::to_owned).collect();
        let endpoint = Endpoint::classify(&rest.iter().map(String::as_str).collect::<Vec<_>>());
        Some(Target {
            version,
            rest,
            query: query.to_owned(),
            endpoint,
        })
    }

    /// Query, QueryAll and query-more count toward the five, and so do sObject Collections.
    fn is_query_operation(&self, versions: &[String]) -> bool {
        self.target(versions).is_some_and(|t| {
            matches!(
                t.endpoint,
                Endpoint::Query
                    | Endpoint::QueryAll
                    | Endpoint::QueryMore
                    | Endpoint::CompositeRetrieve
                    | Endpoint::CompositeUpdate
            )
        })
    }
}

/// A request body that does not describe subrequests: the whole request fails.
fn malformed(message: &str) -> Response {
    sf_error(StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR", message)
}

/// Salesforce refuses a composite request over its limits with a 200 whose only result is the
/// error, without a referenceId, and runs none of the subrequests.
fn limit_exceeded(message: &str) -> Response {
    Json(json!({"compositeResponse": [{
        "body": [{"errorCode": "LIMIT_EXCEEDED", "message": message}],
        "httpHeaders": {},
        "httpStatusCode": 400,
        "referenceId": null,
    }]}))
    .into_response()
}

fn parse_subrequest(index: usize, entry: &Value) -> Result<Subrequest, String> {
    let Some(entry) = entry.as_object() else {
        return Err(format!("compositeRequest[{index}] is not an object"));
    };
    let text = |key: &str| entry.get(key).and_then(Value::as_str);
    let reference = text("referenceId")
        .ok_or_else(|| format!("compositeRequest[{index}].referenceId is required"))?;
    if reference.is_empty()
        || !reference
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(format!(
            "referenceId '{reference}' may hold only letters, digits and underscores"
        ));
    }
    let method = match text("method") {
        Some(m @ ("GET" | "POST" | "PATCH" | "PUT" | "DELETE")) => {
            Method::from_bytes(m.as_bytes()).map_err(|e| e.to_string())?
        }
        other => {
            return Err(format!(
                "compositeRequest[{index}].method must be one of GET, POST, PATCH, PUT, DELETE, got {other:?}"
            ));
        }
    };
    let url = text("url").ok_or_else(|| format!("compositeRequest[{index}].url is required"))?;
    let mut headers = HeaderMap::new();
    if let Some(given) = entry.get("httpHeaders") {
        let Some(given) = given.as_object() else {
            return Err(format!(
                "compositeRequest[{index}].httpHeaders must map names to strings"
            ));
        };
        for (name, value) in given {
            let name = HeaderName::from_bytes(name.as_bytes());
            let value = value.as_str().map(HeaderValue::from_str);
            let (Ok(name), Some(Ok(value))) = (name, value) else {
                return Err(format!(
                    "compositeRequest[{index}].httpHeaders holds an invalid header"
                ));
            };
            headers.insert(name, value);
        }
    }
    Ok(Subrequest {
        reference: reference.to_owned(),
        method,
        url: url.to_owned(),
        headers,
    })
}

/// `POST composite`. The call was already counted, authenticated and passed the fault plan.
pub(super) async fn execute(shared: &Shared, ctx: &Ctx<'_>, body: &[u8]) -> Response {
    let request = match json_body(body) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    let all_or_none = request
        .get("allOrNone")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let Some(entries) = request.get("compositeRequest").and_then(Value::as_array) else {
        return malformed("compositeRequest is required: a list of subrequests");
    };
    if entries.len() > MAX_SUBREQUESTS {
        return limit_exceeded(&format!(
            "The request can\u{2019}t contain more than {MAX_SUBREQUESTS} operations."
        ));
    }
    let mut subrequests: Vec<Subrequest> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        match parse_subrequest(index, entry) {
            Ok(sub) if subrequests.iter().any(|s| s.reference == sub.reference) => {
                return malformed(&format!("duplicate referenceId '{}'", sub.reference));
            }
            Ok(sub) => subrequests.push(sub),
            Err(message) => return malformed(&message),
        }
    }
    let versions = &shared.api_versions;
    let query_operations = subrequests
        .iter()
        .filter(|s| s.is_query_operation(versions))
        .count();
    if query_operations > MAX_QUERY_OPERATIONS {
        return limit_exceeded(&format!(
            "The request can\u{2019}t contain more than {MAX_QUERY_OPERATIONS} query or sObject Collections operations; it has {query_operations}."
        ));
    }

    // The handlers answer `Response`s; their bodies are read once the state lock is released.
    let answers: Vec<(String, Response)> = {
        let mut state = shared.lock();
        subrequests
            .iter()
            .map(|sub| (sub.reference.clone(), run(ctx, &mut state, sub, versions)))
            .collect()
    };
    let mut results = Vec::with_capacity(answers.len());
    for (reference, response) in answers {
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        let body = serde_json::from_slice::<Value>(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        results.push((reference, status, body));
    }
    let failed = results.iter().any(|(_, status, _)| !status.is_success());
    let results: Vec<Value> = results
        .into_iter()
        .map(|(reference, status, body)| {
            let (status, body) = if all_or_none && failed && status.is_success() {
                (
                    StatusCode::BAD_REQUEST,
                    json!([{
                        "errorCode": "PROCESSING_HALTED",
                        "message": "Not completed: another subrequest of this allOrNone request failed.",
                    }]),
                )
            } else {
                (status, body)
            };
            json!({
                "body": body,
                "httpHeaders": Value::Object(Map::new()),
                "httpStatusCode": status.as_u16(),
                "referenceId": reference,
            })
        })
        .collect();
    Json(json!({"compositeResponse": results})).into_response()
}

/// One subrequest, through the handler of its resource.
fn run(ctx: &Ctx<'_>, state: &mut SimState, sub: &Subrequest, versions: &[String]) -> Response {
    let Some(target) = sub.target(versions) else {
        state.count_subrequest(Endpoint::Unknown.name());
        return resource_missing();
    };
    state.count_subrequest(target.endpoint.name());
    if sub.url.contains("@{") {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            "The Salesforce simulator does not resolve @{reference} expressions: give each subrequest's url in full",
        );
    }
    let sub_ctx = Ctx {
        version: &target.version,
        user_id: ctx.user_id,
        query: &target.query,
        headers: &sub.headers,
    };
    let rest: Vec<&str> = target.rest.iter().map(String::as_str).collect();
    let endpoint = target.endpoint;
    match endpoint {
        // Not resources a composite request runs.
        Endpoint::Resources | Endpoint::Limits | Endpoint::Composite | Endpoint::Unknown => {
            return resource_missing();
        }
        _ if !endpoint.allows(&sub.method) => return method_not_allowed(endpoint, &sub.method),
        _ => {}
    }
    match (endpoint, &sub.method, rest.as_slice()) {
        (Endpoint::Query, &Method::GET, _) => query(&sub_ctx, state, false),
        (Endpoint::QueryAll, &Method::GET, _) => query(&sub_ctx, state, true),
        (Endpoint::QueryMore, &Method::GET, [_, locator]) => query_more(&sub_ctx, state, locator),
        (Endpoint::DescribeGlobal, &Method::GET, _) => describe_global(&sub_ctx, state),
        (Endpoint::Describe, &Method::GET, [_, object, _]) => describe(&sub_ctx, state, object),
        (Endpoint::SObject, &Method::GET, [_, object, id]) => {
            get_record(&sub_ctx, state, object, id)
        }
        _ => sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            &format!(
                "The Salesforce simulator does not run {} {} inside a composite request: only GET query, queryAll, query-more, describe and record reads",
                sub.method,
                endpoint.name()
            ),
        ),
    }
}

impl SimState {
    fn count_subrequest(&mut self, endpoint: &str) {
        *self
            .counters
            .subrequests_by_endpoint
            .entry(endpoint.to_owned())
            .or_default() += 1;
    }
}
