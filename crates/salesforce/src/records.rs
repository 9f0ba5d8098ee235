//! Batch reads and writes through sObject Collections: one API call serves up to 2,000 reads or
//! 200 updates, never one call per record.

use std::collections::HashMap;

use hlsync_core::id::SfId;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::client::{Call, SalesforceClient};
use crate::describe::check_api_name;
use crate::error::SfError;
use crate::query::Record;

/// Ids per `POST composite/sobjects/{object}` (Salesforce's maximum).
pub const RETRIEVE_CHUNK: usize = 2000;
/// Records per `PATCH composite/sobjects` (Salesforce's maximum).
pub const UPDATE_CHUNK: usize = 200;

/// The outcome of updating one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveResult {
    /// The record's Id as it was given (failed results may lack one in Salesforce's answer).
    pub id: SfId,
    /// Whether Salesforce saved the record.
    pub success: bool,
    /// Why it did not (empty on success).
    pub errors: Vec<SaveError>,
}

/// One reason Salesforce gave for not saving a record, as its `errors` entries read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaveError {
    /// Salesforce's code, e.g. `FIELD_CUSTOM_VALIDATION_EXCEPTION`.
    #[serde(default)]
    pub status_code: String,
    /// Salesforce's explanation.
    #[serde(default)]
    pub message: String,
    /// The fields the error is about, when it names any.
    #[serde(default)]
    pub fields: Vec<String>,
}

#[derive(Deserialize)]
struct SaveAnswer {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<SaveError>,
}

impl SalesforceClient {
    /// Reads records of one object by Id, 2,000 per call. The result is aligned with `ids`:
    /// `None` where the record is missing or deleted (a `null` entry, a per-record error, or a
    /// record with `IsDeleted = true`).
    pub async fn retrieve(
        &self,
        object: &str,
        ids: &[SfId],
        fields: &[String],
    ) -> Result<Vec<Option<Record>>, SfError> {
        check_api_name(object)?;
        for f in fields {
            check_api_name(f)?;
        }
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(RETRIEVE_CHUNK) {
            let what = format!("retrieve {} {object}", chunk.len());
            let answer = self
                .send(Call {
                    what: what.clone(),
                    method: Method::POST,
                    path: self.data_path(&format!("composite/sobjects/{object}")),
                    body: Some(json!({
                        "ids": chunk.iter().map(SfId::as_str).collect::<Vec<_>>(),
                        "fields": fields,
                    })),
                    query_batch_size: None,
                    guarded: true,
                })
                .await?;
            out.extend(align_retrieved(chunk, answer, &what)?);
        }
        Ok(out)
    }

    /// Updates records (each with its object name) 200 per call, `allOrNone: false`, so that one
    /// bad record does not fail the others. One result per input record, in order. A call that
    /// fails as a whole returns the error; earlier chunks stay applied (updates are idempotent,
    /// so the caller may send them all again).
    pub async fn update(
        &self,
        records: Vec<(String, SfId, Record)>,
    ) -> Result<Vec<SaveResult>, SfError> {
        for (object, _, fields) in &records {
            check_api_name(object)?;
            for name in fields.keys() {
                check_api_name(name)?;
            }
        }
        let mut out = Vec::with_capacity(records.len());
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let chunk: Vec<_> = records.by_ref().take(UPDATE_CHUNK).collect();
            let ids: Vec<SfId> = chunk.iter().map(|(_, id, _)| id.clone()).collect();
            let body_records: Vec<Value> = chunk
                .into_iter()
                .map(|(object, id, fields)| {
                    let mut r = Map::new();
                    r.insert("attributes".into(), json!({ "type": object }));
                    r.insert("id".into(), Value::String(id.as_str().to_string()));
                    for (k, v) in fields {
                        if !k.eq_ignore_ascii_case("id") {
                            r.insert(k, v);
                        }
                    }
                    Value::Object(r)
                })
                .collect();
            let what = format!("update {} records", ids.len());
            let answer = self
                .send(Call {
                    what: what.clone(),
                    method: Method::PATCH,
                    path: self.data_path("composite/sobjects"),
                    body: Some(json!({ "allOrNone": false, "records": body_records })),
                    query_batch_size: None,
                    guarded: true,
                })
                .await?;
            let answers: Vec<SaveAnswer> =
                serde_json::from_value(answer).map_err(|e| SfError::Decode {
                    what: what.clone(),
                    detail: e.to_string(),
                })?;
            if answers.len() != ids.len() {
                return Err(SfError::Decode {
                    what,
                    detail: format!("{} results for {} records", answers.len(), ids.len()),
                });
            }
            out.extend(ids.into_iter().zip(answers).map(|(id, a)| SaveResult {
                id,
                success: a.success,
                errors: a.errors,
            }));
        }
        Ok(out)
    }
}

/// Lines the answer up with the requested ids. Salesforce answers in request order; should a
/// record carry an Id that is not the one at its position, the chunk is matched by Id instead.
fn align_retrieved(
    ids: &[SfId],
    answer: Value,
    what: &str,
) -> Result<Vec<Option<Record>>, SfError> {
    let Value::Array(entries) = answer else {
        return Err(SfError::Decode {
            what: what.to_string(),
            detail: "expected an array".to_string(),
        });
    };
    if entries.len() != ids.len() {
        return Err(SfError::Decode {
            what: what.to_string(),
            detail: format!("{} entries for {} ids", entries.len(), ids.len()),
        });
    }
    let records: Vec<Option<Record>> = entries.into_iter().map(present_record).collect();
    let positional = records
        .iter()
        .zip(ids)
        .all(|(r, id)| match r.as_ref().and_then(record_id) {
            Some(got) => &got == id,
            None => true,
        });
    if positional {
        return Ok(records);
    }
    let mut by_id: HashMap<SfId, Record> = records
        .into_iter()
        .flatten()
        .filter_map(|r| record_id(&r).map(|id| (id, r)))
        .collect();
    Ok(ids.iter().map(|id| by_id.remove(id)).collect())
}

/// A live record, or `None` for `null`, an error entry, or a deleted record.
fn present_record(entry: Value) -> Option<Record> {
    let Value::Object(map) = entry else {
        return None;
    };
    let is_error = map.contains_key("errors") && !map.contains_key("attributes");
    let deleted = map
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("IsDeleted") && v == &Value::Bool(true));
    (!is_error && !deleted).then_some(map)
}

/// The record's Id: its `Id` field, or the last segment of `attributes.url`.
fn record_id(r: &Record) -> Option<SfId> {
    let from_field = r
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Id"))
        .and_then(|(_, v)| v.as_str());
    let from_url = || {
        r.get("attributes")
            .and_then(|a| a.get("url"))
            .and_then(Value::as_str)
            .and_then(|u| u.rsplit('/').next())
    };
    from_field.or_else(from_url).and_then(|s| s.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SfId {
        s.parse().unwrap()
    }

    #[test]
    fn nulls_errors_and_deleted_become_none() {
        let ids = [
            id("003000000000001AAA"),
            id("003000000000002AAA"),
            id("003000000000003AAA"),
            id("003000000000004AAA"),
        ];
        let answer = json!([
            {"attributes":{"type":"Contact","url":"/services/data/v62.0/sobjects/Contact/003000000000001AAA"},
             "Id":"003000000000001AAA","LastName":"A"},
            null,
            {"success":false,"errors":[{"statusCode":"ENTITY_IS_DELETED","message":"entity is deleted","fields":[]}]},
            {"attributes":{"type":"Contact"},"Id":"003000000000004AAA","IsDeleted":true}
        ]);
        let out = align_retrieved(&ids, answer, "retrieve").unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].as_ref().unwrap()["LastName"], "A");
        assert!(out[1].is_none() && out[2].is_none() && out[3].is_none());
    }

    #[test]
    fn out_of_order_answers_are_matched_by_id() {
        let ids = [id("003000000000001AAA"), id("003000000000002AAA")];
        let answer = json!([
            {"attributes":{"type":"Contact","url":"/services/data/v62.0/sobjects/Contact/003000000000002AAA"}, "LastName":"B"},
            {"Id":"003000000000001AAA","LastName":"A"}
        ]);
        let out = align_retrieved(&ids, answer, "retrieve").unwrap();
        assert_eq!(out[0].as_ref().unwrap()["LastName"], "A");
        assert_eq!(out[1].as_ref().unwrap()["LastName"], "B");
    }

    #[test]
    fn a_short_answer_is_an_error() {
        let ids = [id("003000000000001AAA"), id("003000000000002AAA")];
        assert!(align_retrieved(&ids, json!([null]), "retrieve").is_err());
    }
}
