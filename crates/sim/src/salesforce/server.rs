//! HTTP routes: the front door (URI and header size limits, `Date`, `Sforce-Limit-Info`) and the
//! REST resources under `/services/data/vXX.X/`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use rand::Rng;
use serde_json::{Map, Value, json};

use super::store::{WriteError, attributes};
use super::{Cursor, Shared, State as SimState, auth, ids, soql};

mod composite;

/// Salesforce's limit on the request URI, and on URI plus headers together (bytes).
const MAX_URI_AND_HEADERS: usize = 16_384;
const DEFAULT_BATCH_SIZE: usize = 2_000;
const MIN_BATCH_SIZE: usize = 200;
/// A query locator is released after 15 minutes without use.
const CURSOR_IDLE_MINUTES: i64 = 15;
/// Open query cursors per user; opening another releases the user's oldest.
const MAX_CURSORS_PER_USER: usize = 10;
const MAX_RETRIEVE_IDS: usize = 2_000;
const MAX_UPDATE_RECORDS: usize = 200;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/services/oauth2/token", post(auth::token))
        .route("/services/Soap/u/{version}", post(auth::soap_login))
        .route("/services/data", get(versions))
        .route("/services/data/", get(versions))
        .route("/services/data/{*rest}", any(data))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            front_door,
        ))
        .with_state(shared)
}

/// `[{"message","errorCode"}]`, the REST API's error body.
pub fn sf_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!([{"message": message, "errorCode": code}])),
    )
        .into_response()
}

/// A request body that is not JSON, answered as the REST API does.
fn json_body(body: &[u8]) -> Result<Value, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(sf_error(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            &format!("The request body is not valid JSON: {e}"),
        ))
    })
}

/// A composite call with more records than it takes.
fn record_limit_reached(max: usize) -> Response {
    sf_error(
        StatusCode::BAD_REQUEST,
        "EXCEEDED_ID_LIMIT",
        &format!("record limit reached. cannot submit more than {max} records into this call"),
    )
}

fn resource_missing() -> Response {
    sf_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "The requested resource does not exist",
    )
}

async fn not_found() -> Response {
    resource_missing()
}

/// Runs before routing: refuses oversized requests as Salesforce's front end does, then stamps
/// every answer with the simulator's clock and every data answer with the API usage.
async fn front_door(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let uri_len = request.uri().to_string().len();
    let header_len: usize = request
        .headers()
        .iter()
        // "Name: value\r\n"
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    let is_data = request.uri().path().starts_with("/services/data");
    let mut response = if uri_len > MAX_URI_AND_HEADERS {
        (StatusCode::URI_TOO_LONG, "URI Too Long").into_response()
    } else if uri_len + header_len > MAX_URI_AND_HEADERS {
        (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request Header Fields Too Large",
        )
            .into_response()
    } else {
        next.run(request).await
    };
    let (now, usage, max) = {
        let state = shared.lock();
        (state.store.now(), state.usage, state.daily_api_max)
    };
    let headers = response.headers_mut();
    // RFC 7231 IMF-fixdate; hyper only adds its own Date when none is set.
    if let Ok(date) = HeaderValue::from_str(&now.format("%a, %d %b %Y %H:%M:%S GMT").to_string()) {
        headers.insert(header::DATE, date);
    }
    if is_data && let Ok(limit) = HeaderValue::from_str(&format!("api-usage={usage}/{max}")) {
        headers.insert("sforce-limit-info", limit);
    }
    response
}

fn release_label(version: &str) -> String {
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        .and_then(|m| m.checked_sub(58));
    match major {
        Some(n) => {
            let season = ["Summer", "Winter", "Spring"][(n % 3) as usize];
            format!("{season} '{}", 23 + n.div_ceil(3))
        }
        None => format!("Version {version}"),
    }
}

async fn versions(State(shared): State<Arc<Shared>>) -> Response {
    shared.lock().count("versions");
    let list: Vec<Value> = shared
        .api_versions
        .iter()
        .map(|v| json!({"label": release_label(v), "url": format!("/services/data/v{v}"), "version": v}))
        .collect();
    Json(list).into_response()
}

impl SimState {
    pub(super) fn count(&mut self, endpoint: &str) {
        *self
            .counters
            .calls_by_endpoint
            .entry(endpoint.to_owned())
            .or_default() += 1;
    }
}

/// Which resource a data path names, for counting and for the allowed methods.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Endpoint {
    Resources,
    Limits,
    Query,
    QueryAll,
    QueryMore,
    DescribeGlobal,
    Describe,
    SObject,
    CompositeRetrieve,
    CompositeUpdate,
    Composite,
    Unknown,
}

impl Endpoint {
    fn classify(rest: &[&str]) -> Self {
        match rest {
            [] => Self::Resources,
            ["limits"] => Self::Limits,
            ["query"] => Self::Query,
            ["queryAll"] => Self::QueryAll,
            ["query" | "queryAll", _] => Self::QueryMore,
            ["sobjects"] => Self::DescribeGlobal,
            ["sobjects", _, "describe"] => Self::Describe,
            ["sobjects", _, _] => Self::SObject,
            ["composite", "sobjects", _] => Self::CompositeRetrieve,
            ["composite", "sobjects"] => Self::CompositeUpdate,
            ["composite"] => Self::Composite,
            _ => Self::Unknown,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Resources => "resources",
            Self::Limits => "limits",
            Self::Query => "query",
            Self::QueryAll => "queryAll",
            Self::QueryMore => "query_more",
            Self::DescribeGlobal => "describe_global",
            Self::Describe => "describe",
            Self::SObject => "sobject",
            Self::CompositeRetrieve => "composite_retrieve",
            Self::CompositeUpdate => "composite_update",
            Self::Composite => "composite",
            Self::Unknown => "unknown",
        }
    }

    /// The methods the resource accepts, as the 405 answer lists them.
    fn allowed(self) -> &'static [Method] {
        match self {
            Self::CompositeRetrieve => &[Method::GET, Method::HEAD, Method::POST],
            Self::CompositeUpdate => &[Method::PATCH],
            Self::Composite => &[Method::GET, Method::HEAD, Method::POST],
            _ => &[Method::GET, Method::HEAD],
        }
    }

    fn allows(self, method: &Method) -> bool {
        self == Self::Unknown || self.allowed().contains(method)
    }
}

/// What the fault plan decided for one call.
enum Fault {
    None,
    Unavailable,
    Internal,
}

async fn data(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_start_matches("/services/data/");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some((version_segment, rest)) = segments.split_first() else {
        return versions(State(shared)).await;
    };
    let endpoint = Endpoint::classify(rest);
    let version = version_segment
        .strip_prefix('v')
        .filter(|v| shared.api_versions.iter().any(|known| known == v))
        .map(str::to_owned);

    let (user_id, delay) = {
        let mut state = shared.lock();
        state.count(endpoint.name());
        if version.is_none() {
            return resource_missing();
        }
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("OAuth "))
            })
            .map(str::trim);
        let Some(user_id) = token.and_then(|t| state.sessions.get(t)).cloned() else {
            return sf_error(
                StatusCode::UNAUTHORIZED,
                "INVALID_SESSION_ID",
                "Session expired or invalid",
            );
        };
        if state.usage >= state.daily_api_max {
            return sf_error(
                StatusCode::FORBIDDEN,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
            );
        }
        state.usage += 1;
        state.counters.api_calls += 1;
        let (fault, delay) = state.draw_fault();
        match fault {
            Fault::Unavailable => {
                state.counters.faults_served += 1;
                return sf_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SERVER_UNAVAILABLE",
                    "Server is unavailable, please try again later.",
                );
            }
            Fault::Internal => {
                state.counters.faults_served += 1;
                return sf_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "UNKNOWN_EXCEPTION",
                    "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567890-12345 (-1234567890)",
                );
            }
            Fault::None => {}
        }
        (user_id, delay)
    };
    if let Some(delay) = delay {
        // The simulated org is slow on this call; the client's timeouts are what is under test.
        tokio::time::sleep(delay).await;
    }
    if !endpoint.allows(&method) {
        return method_not_allowed(endpoint, &method);
    }
    let version = version.unwrap_or_default();
    let ctx = Ctx {
        version: &version,
        user_id: &user_id,
        query: uri.query().unwrap_or_default(),
        headers: &headers,
    };
    if endpoint == Endpoint::Composite && method == Method::POST {
        // Runs its subrequests under the lock, then releases it before reading their answers.
        return composite::execute(&shared, &ctx, &body).await;
    }
    let mut state = shared.lock();
    match (endpoint, rest) {
        (Endpoint::Resources, _) => resources(&version),
        (Endpoint::Limits, _) => limits(&state),
        (Endpoint::Query, _) => query(&ctx, &mut state, false),
        (Endpoint::QueryAll, _) => query(&ctx, &mut state, true),
        (Endpoint::QueryMore, [_, locator]) => query_more(&ctx, &mut state, locator),
        (Endpoint::DescribeGlobal, _) => describe_global(&ctx, &state),
        (Endpoint::Describe, [_, object, _]) => describe(&ctx, &state, object),
        (Endpoint::SObject, [_, object, id]) => get_record(&ctx, &state, object, id),
        (Endpoint::CompositeRetrieve, [_, _, object]) => {
            composite_retrieve(&ctx, &state, object, &method, &body)
        }
        (Endpoint::CompositeUpdate, _) => composite_update(&mut state, &body),
        (Endpoint::Composite, _) => composite::resources(&ctx),
        _ => resource_missing(),
    }
}

fn method_not_allowed(endpoint: Endpoint, method: &Method) -> Response {
    sf_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        &format!(
            "HTTP Method '{method}' not allowed. Allowed are {}",
            endpoint
                .allowed()
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(",")
        ),
    )
}

impl SimState {
    /// Draws the same two numbers on every call, whatever the plan, so that changing one
    /// probability does not shift which later calls fail.
    fn draw_fault(&mut self) -> (Fault, Option<Duration>) {
        let roll: f64 = self.rng.random();
        let slow_roll: f64 = self.rng.random();
        let delay = (slow_roll < self.faults.p_slow).then_some(self.faults.slow);
        if self.faults.fail_next_503 > 0 {
            self.faults.fail_next_503 -= 1;
            return (Fault::Unavailable, delay);
        }
        let fault = if roll < self.faults.p_503 {
            Fault::Unavailable
        } else if roll < self.faults.p_503 + self.faults.p_500 {
            Fault::Internal
        } else {
            Fault::None
        };
        (fault, delay)
    }
}

struct Ctx<'a> {
    version: &'a str,
    user_id: &'a str,
    query: &'a str,
    headers: &'a HeaderMap,
}

impl Ctx<'_> {
    fn param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    fn url(&self, tail: &str) -> String {
        format!("/services/data/v{}/{tail}", self.version)
    }

    /// `Sforce-Query-Options: batchSize=N`, clamped to Salesforce's 200..=2000.
    fn batch_size(&self) -> usize {
        self.headers
            .get("sforce-query-options")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split(',')
                    .filter_map(|opt| opt.trim().split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("batchSize"))
                    .and_then(|(_, n)| n.trim().parse::<usize>().ok())
            })
            .map_or(DEFAULT_BATCH_SIZE, |n| {
                n.clamp(MIN_BATCH_SIZE, DEFAULT_BATCH_SIZE)
            })
    }
}

fn resources(version: &str) -> Response {
    let url = |tail: &str| format!("/services/data/v{version}/{tail}");
    Json(json!({
        "limits": url("limits"),
        "query": url("query"),
        "queryAll": url("queryAll"),
        "sobjects": url("sobjects"),
        "composite": url("composite"),
    }))
    .into_response()
}

fn limits(state: &SimState) -> Response {
    let max = state.daily_api_max;
    Json(json!({
        "DailyApiRequests": {"Max": max, "Remaining": max.saturating_sub(state.usage)},
        "DailyBulkApiBatches": {"Max": 15_000, "Remaining": 15_000},
        "DataStorageMB": {"Max": 1_024, "Remaining": 1_000},
    }))
    .into_response()
}

fn no_such_column(field: &str, object: &str) -> String {
    format!(
        "No such column '{field}' on entity '{object}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names."
    )
}

fn query(ctx: &Ctx<'_>, state: &mut SimState, include_deleted: bool) -> Response {
    let Some(q) = ctx.param("q") else {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            "A query string has to be specified",
        );
    };
    let mut parsed = match soql::parse(&q) {
        Ok(parsed) => parsed,
        Err(e) => return sf_error(StatusCode::BAD_REQUEST, e.code, &e.message),
    };
    let timeout_over = state.faults.query_timeout_over_rows;
    let outcome = {
        let store = &state.store;
        let Some(data) = store.object(&parsed.from) else {
            return sf_error(
                StatusCode::BAD_REQUEST,
                "INVALID_TYPE",
                &format!(
                    "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.",
                    parsed.from
                ),
            );
        };
        for field in parsed.referenced_fields() {
            if let Err(bad) = store.check_path(data, &field.path) {
                let message = if field.path.len() > 1 && field.path.last() != Some(&bad) {
                    format!(
                        "Didn't understand relationship '{bad}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."
                    )
                } else {
                    no_such_column(&field.path.join("."), &data.schema.name)
                };
                return sf_error(StatusCode::BAD_REQUEST, "INVALID_FIELD", &message);
            }
        }
        // Records come back under describe's spelling (`LastName`), whatever the query wrote.
        parsed.canonicalize(&|path: &[String]| store.canonical_path(data, path));
        let field_type = |path: &[String]| {
            store
                .field_spec(data, path)
                .and_then(|spec| soql::FieldType::from_describe(spec.field_type.as_str()))
        };
        if let Err(e) = parsed.check_types(&field_type) {
            return sf_error(StatusCode::BAD_REQUEST, e.code, &e.message);
        }
        let now = store.now();
        let rows = store.rows(data, include_deleted);
        // Salesforce times out on the rows a query has to scan, whatever its LIMIT.
        let scanned = timeout_over.map(|_| rows.iter().filter(|r| parsed.matches(*r, now)).count());
        match parsed.execute_at(rows, now) {
            _ if timeout_over.zip(scanned).is_some_and(|(max, n)| n > max) => Err((
                sf_error(
                    StatusCode::BAD_REQUEST,
                    "QUERY_TIMEOUT",
                    "Your query request was running for too long.",
                ),
                true,
            )),
            Err(e) => Err((sf_error(StatusCode::BAD_REQUEST, e.code, &e.message), false)),
            Ok(matched) if parsed.count_only => Ok((Vec::new(), matched.len())),
            Ok(matched) => {
                let records: Vec<Value> = matched
                    .iter()
                    .map(|row| {
                        let mut record = Map::new();
                        record.insert(
                            "attributes".to_owned(),
                            attributes(ctx.version, &data.schema.name, row.record),
                        );
                        record
                            .extend(parsed.project(row, &|path: &[String]| {
                                row.attributes(ctx.version, path)
                            }));
                        Value::Object(record)
                    })
                    .collect();
                let total = records.len();
                Ok((records, total))
            }
        }
    };
    let (records, total) = match outcome {
        Ok(found) => found,
        Err((response, timed_out)) => {
            if timed_out {
                state.counters.faults_served += 1;
            }
            return response;
        }
    };
    if parsed.count_only {
        return Json(json!({"totalSize": total, "done": true, "records": []})).into_response();
    }
    let batch_size = ctx.batch_size();
    let records = Arc::new(records);
    let first = page(ctx, state, &records, 0, batch_size, None);
    first.into_response()
}

/// One page of a result set; opens a cursor for the rest when there is more.
fn page(
    ctx: &Ctx<'_>,
    state: &mut SimState,
    records: &Arc<Vec<Value>>,
    offset: usize,
    batch_size: usize,
    locator: Option<&str>,
) -> Json<Value> {
    let total = records.len();
    let end = offset.saturating_add(batch_size).min(total);
    let slice = records.get(offset..end).unwrap_or_default().to_vec();
    let mut body = json!({"totalSize": total, "done": end >= total, "records": slice});
    if end < total {
        let locator = match locator {
            Some(locator) => locator.to_owned(),
            None => state.open_cursor(ctx.user_id, Arc::clone(records), batch_size),
        };
        body["nextRecordsUrl"] = Value::from(ctx.url(&format!("query/{locator}-{end}")));
    }
    Json(body)
}

impl SimState {
    fn open_cursor(&mut self, owner: &str, records: Arc<Vec<Value>>, batch_size: usize) -> String {
        let now = self.store.now();
        self.cursors
            .retain(|_, c| (now - c.last_used).num_minutes() < CURSOR_IDLE_MINUTES);
        let cursors = &self.cursors;
        self.cursor_order.retain(|l| cursors.contains_key(l));
        let owned: Vec<String> = self
            .cursor_order
            .iter()
            .filter(|l| self.cursors.get(*l).is_some_and(|c| c.owner == owner))
            .cloned()
            .collect();
        if owned.len() >= MAX_CURSORS_PER_USER
            && let Some(oldest) = owned.first()
        {
            self.cursors.remove(oldest);
            self.cursor_order.retain(|l| l != oldest);
        }
        let locator = ids::make_id("01g", super::store::STORE_INSTANCE, self.next_cursor);
        self.next_cursor += 1;
        self.cursors.insert(
            locator.clone(),
            Cursor {
                owner: owner.to_owned(),
                records,
                batch_size,
                last_used: now,
            },
        );
        self.cursor_order.push_back(locator.clone());
        locator
    }
}

fn query_more(ctx: &Ctx<'_>, state: &mut SimState, locator_and_offset: &str) -> Response {
    let invalid = || {
        sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        )
    };
    let Some((locator, offset)) = locator_and_offset.rsplit_once('-') else {
        return invalid();
    };
    let Ok(offset) = offset.parse::<usize>() else {
        return invalid();
    };
    let now = state.store.now();
    let Some(cursor) = state.cursors.get_mut(locator) else {
        return invalid();
    };
    if (now - cursor.last_used).num_minutes() >= CURSOR_IDLE_MINUTES
        || offset > cursor.records.len()
    {
        return invalid();
    }
    cursor.last_used = now;
    let records = Arc::clone(&cursor.records);
    let batch_size = cursor.batch_size;
    page(ctx, state, &records, offset, batch_size, Some(locator)).into_response()
}

fn describe_global(ctx: &Ctx<'_>, state: &SimState) -> Response {
    let sobjects: Vec<Value> = [
        "Account",
        "Campaign",
        "CampaignMember",
        "Contact",
        "RecordType",
    ]
    .iter()
    .filter_map(|name| state.store.object(name))
    .map(|o| {
        json!({
            "name": o.schema.name, "label": o.schema.label, "keyPrefix": o.schema.key_prefix,
            "custom": false, "queryable": true, "retrieveable": true, "updateable": true,
            "urls": {
                "sobject": ctx.url(&format!("sobjects/{}", o.schema.name)),
                "describe": ctx.url(&format!("sobjects/{}/describe", o.schema.name)),
            },
        })
    })
    .collect();
    Json(json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects})).into_response()
}

fn describe(ctx: &Ctx<'_>, state: &SimState, object: &str) -> Response {
    let Some(data) = state.store.object(object) else {
        return resource_missing();
    };
    let name = &data.schema.name;
    let fields: Vec<Value> = data
        .schema
        .fields
        .iter()
        .map(super::schema::FieldSpec::describe)
        .collect();
    let custom_types: Vec<&Map<String, Value>> = state.store.record_types(name);
    let text = |r: &Map<String, Value>, f: &str| {
        r.get(f)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut record_types: Vec<Value> = custom_types
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let id = text(r, "Id");
            json!({
                "active": r.get("IsActive").and_then(Value::as_bool).unwrap_or(true),
                "available": true,
                "defaultRecordTypeMapping": i == 0,
                "developerName": text(r, "DeveloperName"),
                "master": false,
                "name": text(r, "Name"),
                "recordTypeId": id,
                "urls": {"layout": ctx.url(&format!("sobjects/{name}/describe/layouts/{id}"))},
            })
        })
        .collect();
    // The Master record type is always listed; it is the default only when no other exists.
    record_types.push(json!({
        "active": true,
        "available": custom_types.is_empty(),
        "defaultRecordTypeMapping": custom_types.is_empty(),
        "developerName": "Master",
        "master": true,
        "name": "Master",
        "recordTypeId": super::MASTER_RECORD_TYPE_ID,
        "urls": {"layout": ctx.url(&format!("sobjects/{name}/describe/layouts/{}", super::MASTER_RECORD_TYPE_ID))},
    }));
    Json(json!({
        "name": name,
        "label": data.schema.label,
        "labelPlural": format!("{}s", data.schema.label),
        "keyPrefix": data.schema.key_prefix,
        "custom": false,
        "queryable": true,
        "retrieveable": true,
        "createable": true,
        "updateable": true,
        "deletable": true,
        "undeletable": true,
        "fields": fields,
        "recordTypeInfos": record_types,
        "childRelationships": [],
        "urls": {
            "sobject": ctx.url(&format!("sobjects/{name}")),
            "describe": ctx.url(&format!("sobjects/{name}/describe")),
            "rowTemplate": ctx.url(&format!("sobjects/{name}/{{ID}}")),
        },
    }))
    .into_response()
}

/// The record with `attributes` and the named fields (all of the object's fields when `None`).
fn render(
    version: &str,
    object: &str,
    schema_fields: &[String],
    record: &Map<String, Value>,
) -> Value {
    let mut out = Map::new();
    out.insert("attributes".to_owned(), attributes(version, object, record));
    for name in schema_fields {
        out.insert(
            name.clone(),
            record.get(name).cloned().unwrap_or(Value::Null),
        );
    }
    Value::Object(out)
}

/// Resolves a list of field names to canonical ones; relationship paths are not fields here.
fn own_fields(
    data: &super::store::ObjectData,
    names: &[String],
) -> Result<Vec<String>, Box<Response>> {
    names
        .iter()
        .map(|name| {
            data.schema
                .field(name.trim())
                .filter(|_| !name.contains('.'))
                .map(|f| f.name.clone())
                .ok_or_else(|| {
                    Box::new(sf_error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_FIELD",
                        &no_such_column(name.trim(), &data.schema.name),
                    ))
                })
        })
        .collect()
}

fn get_record(ctx: &Ctx<'_>, state: &SimState, object: &str, id: &str) -> Response {
    let Some(data) = state.store.object(object) else {
        return resource_missing();
    };
    let fields = match ctx.param("fields") {
        Some(list) => {
            let names: Vec<String> = list.split(',').map(str::to_owned).collect();
            match own_fields(data, &names) {
                Ok(mut fields) => {
                    if !fields.iter().any(|f| f == "Id") {
                        fields.insert(0, "Id".to_owned());
                    }
                    fields
                }
                Err(response) => return *response,
            }
        }
        None => data.schema.fields.iter().map(|f| f.name.clone()).collect(),
    };
    let record = ids::to_18(id).and_then(|id| data.records.get(&id));
    match record {
        None => resource_missing(),
        Some(r) if r.get("IsDeleted") == Some(&Value::Bool(true)) => sf_error(
            StatusCode::NOT_FOUND,
            "ENTITY_IS_DELETED",
            "entity is deleted",
        ),
        Some(r) => Json(render(ctx.version, &data.schema.name, &fields, r)).into_response(),
    }
}

fn string_list(value: Option<&Value>) -> Option<Vec<String>> {
    value?
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn composite_retrieve(
    ctx: &Ctx<'_>,
    state: &SimState,
    object: &str,
    method: &Method,
    body: &[u8],
) -> Response {
    let Some(data) = state.store.object(object) else {
        return resource_missing();
    };
    let (ids_list, names) = if method == Method::GET {
        let split = |v: Option<String>| {
            v.map(|s| {
                s.split(',')
                    .map(|p| p.trim().to_owned())
                    .collect::<Vec<_>>()
            })
        };
        (split(ctx.param("ids")), split(ctx.param("fields")))
    } else {
        let parsed = match json_body(body) {
            Ok(v) => v,
            Err(response) => return *response,
        };
        (
            string_list(parsed.get("ids")),
            string_list(parsed.get("fields")),
        )
    };
    let (Some(ids_list), Some(names)) = (ids_list, names) else {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
            "Both ids and fields must be given as lists of strings",
        );
    };
    if ids_list.len() > MAX_RETRIEVE_IDS {
        return record_limit_reached(MAX_RETRIEVE_IDS);
    }
    let mut fields = match own_fields(data, &names) {
        Ok(fields) => fields,
        Err(response) => return *response,
    };
    if !fields.iter().any(|f| f == "Id") {
        fields.insert(0, "Id".to_owned());
    }
    let mut out = Vec::with_capacity(ids_list.len());
    for raw in &ids_list {
        let Some(id) = ids::to_18(raw) else {
            return sf_error(
                StatusCode::BAD_REQUEST,
                "MALFORMED_ID",
                &format!("invalid ID field: {raw}"),
            );
        };
        let record = data
            .records
            .get(&id)
            .filter(|r| r.get("IsDeleted") != Some(&Value::Bool(true)));
        out.push(record.map_or(Value::Null, |r| {
            render(ctx.version, &data.schema.name, &fields, r)
        }));
    }
    Json(out).into_response()
}

fn save_error(e: &WriteError) -> Value {
    json!({"success": false, "errors": [{"statusCode": e.status_code, "message": e.message, "fields": e.fields}]})
}

fn composite_update(state: &mut SimState, body: &[u8]) -> Response {
    let parsed = match json_body(body) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    let all_or_none = parsed
        .get("allOrNone")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let Some(records) = parsed.get("records").and_then(Value::as_array) else {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
            "records is required: a list of sObjects",
        );
    };
    if records.len() > MAX_UPDATE_RECORDS {
        return record_limit_reached(MAX_UPDATE_RECORDS);
    }
    // Kept so an allOrNone request that fails anywhere can be rolled back.
    let mut before: Vec<(String, Map<String, Value>)> = Vec::new();
    let mut outcomes: Vec<Result<String, WriteError>> = Vec::with_capacity(records.len());
    for record in records {
        let outcome = update_one(state, record, &mut before);
        outcomes.push(outcome);
    }
    let failed = outcomes.iter().any(Result::is_err);
    if all_or_none && failed {
        for (object, record) in before.into_iter().rev() {
            state.store.put_raw(&object, record);
        }
        let rolled_back = WriteError {
            status_code: "ALL_OR_NONE_OPERATION_ROLLED_BACK",
            message: "Record rolled back because not all records were valid and the request was using AllOrNone header".to_owned(),
            fields: vec![],
        };
        let results: Vec<Value> = outcomes
            .iter()
            .map(|o| match o {
                Ok(_) => save_error(&rolled_back),
                Err(e) => save_error(e),
            })
            .collect();
        return Json(results).into_response();
    }
    let results: Vec<Value> = outcomes
        .iter()
        .map(|o| match o {
            Ok(id) => json!({"id": id, "success": true, "errors": []}),
            Err(e) => save_error(e),
        })
        .collect();
    Json(results).into_response()
}

fn update_one(
    state: &mut SimState,
    record: &Value,
    before: &mut Vec<(String, Map<String, Value>)>,
) -> Result<String, WriteError> {
    let error = |code: &'static str, message: &str, fields: &[&str]| WriteError {
        status_code: code,
        message: message.to_owned(),
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
    };
    let Some(obj) = record.as_object() else {
        return Err(error(
            "JSON_PARSER_ERROR",
            "each record must be a JSON object",
            &[],
        ));
    };
    let Some(object) = obj
        .get("attributes")
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str)
    else {
        return Err(error(
            "INVALID_TYPE",
            "Each record must carry attributes.type",
            &[],
        ));
    };
    let Some(data) = state.store.object(object) else {
        return Err(error(
            "INVALID_TYPE",
            &format!("sObject type '{object}' is not supported."),
            &[],
        ));
    };
    let label = data.schema.label.clone();
    let prefix = data.schema.key_prefix.clone();
    let object = data.schema.name.clone();
    let raw_id = obj
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Id"))
        .and_then(|(_, v)| v.as_str());
    let Some(raw_id) = raw_id else {
        return Err(error(
            "MISSING_ARGUMENT",
            "Id not specified in an update call",
            &["Id"],
        ));
    };
    let Some(id) = ids::to_18(raw_id).filter(|id| ids::key_prefix(id) == prefix) else {
        return Err(error(
            "MALFORMED_ID",
            &format!("{label} ID: id value of incorrect type: {raw_id}"),
            &["Id"],
        ));
    };
    let fields: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| *k != "attributes" && !k.eq_ignore_ascii_case("Id"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let snapshot = state.store.get(&object, &id).cloned();
    state.store.update(&object, &id, fields, true)?;
    if let Some(snapshot) = snapshot {
        before.push((object, snapshot));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_labels_follow_the_three_releases_a_year() {
        assert_eq!(release_label("62.0"), "Winter '25");
        assert_eq!(release_label("60.0"), "Spring '24");
        assert_eq!(release_label("58.0"), "Summer '23");
        assert_eq!(release_label("40.0"), "Version 40.0");
    }

    #[test]
    fn paths_map_to_endpoints() {
        assert_eq!(Endpoint::classify(&["query"]), Endpoint::Query);
        assert_eq!(
            Endpoint::classify(&["query", "01gX-2000"]),
            Endpoint::QueryMore
        );
        assert_eq!(
            Endpoint::classify(&["sobjects", "Contact", "describe"]),
            Endpoint::Describe
        );
        assert_eq!(
            Endpoint::classify(&["composite", "sobjects"]),
            Endpoint::CompositeUpdate
        );
        assert_eq!(
            Endpoint::classify(&["composite", "sobjects", "Contact"]),
            Endpoint::CompositeRetrieve
        );
        assert_eq!(Endpoint::classify(&["composite"]), Endpoint::Composite);
        assert_eq!(Endpoint::classify(&["tooling", "query"]), Endpoint::Unknown);
    }
}
