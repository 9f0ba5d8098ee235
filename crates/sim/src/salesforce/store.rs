//! The simulated org's records, its metadata and its clock.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, NaiveDate, TimeDelta, Utc};
use serde_json::{Map, Value, json};

use super::ids;
use super::schema::{FieldSpec, FieldType, ObjectSchema, standard_objects};
use super::soql::Row;

/// Ids the store makes carry this "instance" pair; the data generator uses another one, so
/// loaded and inserted records never collide.
pub const STORE_INSTANCE: &str = "Sm";
/// The Master record type every object has, whatever record types are added.
pub const MASTER_RECORD_TYPE_ID: &str = "012000000000000AAA";

/// Salesforce's JSON rendering of a date-time: milliseconds and a `+0000` offset.
pub fn format_datetime(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// Reads the date-time forms a test or the generator may hand in: Salesforce's `+0000` form or RFC 3339.
pub fn parse_datetime(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .or_else(|_| DateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[derive(Clone, Copy, Debug)]
enum Clock {
    /// Wall clock shifted by an offset (`advance` without `set_now`).
    Wall(TimeDelta),
    /// Frozen by `set_now`: moves only by `advance`, so tests can predict every timestamp.
    Fixed(DateTime<Utc>),
}

#[derive(Debug)]
pub struct ObjectData {
    pub schema: ObjectSchema,
    pub records: BTreeMap<String, Map<String, Value>>,
}

#[derive(Debug)]
pub struct Store {
    objects: BTreeMap<String, ObjectData>,
    clock: Clock,
    next_seq: u64,
}

/// Why a write was refused, as Salesforce's per-record `statusCode` and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteError {
    pub status_code: &'static str,
    pub message: String,
    pub fields: Vec<String>,
}

impl WriteError {
    fn new(status_code: &'static str, message: impl Into<String>, fields: Vec<String>) -> Self {
        Self {
            status_code,
            message: message.into(),
            fields,
        }
    }
}

impl Store {
    pub fn new(contact_custom: Vec<FieldSpec>) -> Self {
        let objects = standard_objects(contact_custom)
            .into_iter()
            .map(|schema| {
                (
                    schema.name.to_ascii_lowercase(),
                    ObjectData {
                        schema,
                        records: BTreeMap::new(),
                    },
                )
            })
            .collect();
        Self {
            objects,
            clock: Clock::Wall(TimeDelta::zero()),
            next_seq: 1,
        }
    }

    /// Salesforce stores date-times to the second; truncating makes shared timestamps as common
    /// as they are in a real org.
    pub fn now(&self) -> DateTime<Utc> {
        let raw = match self.clock {
            Clock::Wall(offset) => Utc::now() + offset,
            Clock::Fixed(at) => at,
        };
        raw.duration_trunc(TimeDelta::seconds(1)).unwrap_or(raw)
    }

    pub fn set_now(&mut self, at: DateTime<Utc>) {
        self.clock = Clock::Fixed(at);
    }

    pub fn advance(&mut self, by: TimeDelta) {
        self.clock = match self.clock {
            Clock::Wall(offset) => Clock::Wall(offset + by),
            Clock::Fixed(at) => Clock::Fixed(at + by),
        };
    }

    /// Object names are case-insensitive in URLs and SOQL.
    pub fn object(&self, name: &str) -> Option<&ObjectData> {
        self.objects.get(&name.to_ascii_lowercase())
    }

    fn object_mut(&mut self, name: &str) -> Option<&mut ObjectData> {
        self.objects.get_mut(&name.to_ascii_lowercase())
    }

    pub fn add_field(&mut self, object: &str, spec: FieldSpec) -> bool {
        let Some(data) = self.object_mut(object) else {
            return false;
        };
        data.schema
            .fields
            .retain(|f| !f.name.eq_ignore_ascii_case(&spec.name));
        let default = default_value(&spec);
        // A value a test stored before the field existed becomes visible now.
        for record in data.records.values_mut() {
            record
                .entry(spec.name.clone())
                .or_insert_with(|| default.clone());
        }
        data.schema.fields.push(spec);
        true
    }

    pub fn remove_field(&mut self, object: &str, name: &str) -> bool {
        let Some(data) = self.object_mut(object) else {
            return false;
        };
        let Some(pos) = data
            .schema
            .fields
            .iter()
            .position(|f| f.name.eq_ignore_ascii_case(name))
        else {
            return false;
        };
        let removed = data.schema.fields.remove(pos);
        for record in data.records.values_mut() {
            record.remove(&removed.name);
        }
        true
    }

    fn next_id(&mut self, prefix: &str) -> String {
        let id = ids::make_id(prefix, STORE_INSTANCE, self.next_seq);
        self.next_seq += 1;
        id
    }

    /// Inserts a record stamped with `at` (the clock's now unless back-dated). An `Id` in `fields`
    /// is kept when well formed and unused (loading a generated dataset); system fields given by
    /// the caller are kept only when `keep_system` (the generator's spread-out modstamps).
    pub fn insert_at(
        &mut self,
        object: &str,
        fields: Map<String, Value>,
        at: DateTime<Utc>,
        keep_system: bool,
    ) -> Result<String, WriteError> {
        let prefix = self
            .object(object)
            .map(|o| o.schema.key_prefix.clone())
            .ok_or_else(|| {
                WriteError::new(
                    "INVALID_TYPE",
                    format!("sObject type '{object}' is not supported."),
                    vec![],
                )
            })?;
        let given_id = fields
            .get("Id")
            .and_then(Value::as_str)
            .and_then(ids::to_18)
            .filter(|id| ids::key_prefix(id) == prefix);
        let id = match given_id {
            Some(id)
                if self
                    .object(object)
                    .is_some_and(|o| !o.records.contains_key(&id)) =>
            {
                id
            }
            Some(id) => {
                return Err(WriteError::new(
                    "DUPLICATE_VALUE",
                    format!("duplicate value found: Id duplicates value on record with id: {id}"),
                    vec!["Id".to_owned()],
                ));
            }
            None => self.next_id(&prefix),
        };
        let Some(data) = self.object_mut(object) else {
            return Err(WriteError::new("INVALID_TYPE", object.to_owned(), vec![]));
        };
        let mut record = Map::new();
        for spec in &data.schema.fields {
            record.insert(spec.name.clone(), default_value(spec));
        }
        let stamp = Value::from(format_datetime(at));
        for (name, value) in fields {
            let canonical = data
                .schema
                .field(&name)
                .map(|f| (f.name.clone(), f.field_type));
            match canonical {
                // Formula values may be given: the store holds what a formula evaluates to.
                Some((canonical, field_type)) if keep_system || !is_audit_field(&canonical) => {
                    record.insert(canonical, normalize(field_type, value));
                }
                Some(_) => {}
                // Unknown fields are kept: a test may add the field to describe later.
                None => {
                    record.insert(name, value);
                }
            }
        }
        record.insert("Id".to_owned(), Value::from(id.clone()));
        for system in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
            let missing = record.get(system).is_none_or(Value::is_null);
            if !keep_system || missing {
                record.insert(system.to_owned(), stamp.clone());
            }
        }
        if !keep_system {
            record.insert("IsDeleted".to_owned(), Value::Bool(false));
        }
        derive_fields(&data.schema.name, &mut record);
        data.records.insert(id.clone(), record);
        Ok(id)
    }

    /// Applies `fields` to a live record and bumps its modstamps, as an update through the API does.
    /// `from_api` refuses read-only fields; test hooks may write anything but system fields.
    pub fn update(
        &mut self,
        object: &str,
        id: &str,
        fields: Map<String, Value>,
        from_api: bool,
    ) -> Result<(), WriteError> {
        let now = self.now();
        let data = self.object_mut(object).ok_or_else(|| {
            WriteError::new(
                "INVALID_TYPE",
                format!("sObject type '{object}' is not supported."),
                vec![],
            )
        })?;
        let id18 = ids::to_18(id).ok_or_else(|| {
            WriteError::new(
                "MALFORMED_ID",
                format!("{}: id value of incorrect type: {id}", data.schema.label),
                vec!["Id".to_owned()],
            )
        })?;
        let mut changes = Vec::with_capacity(fields.len());
        for (name, value) in fields {
            if name.eq_ignore_ascii_case("Id") || name == "attributes" {
                continue;
            }
            let Some(spec) = data.schema.field(&name) else {
                return Err(WriteError::new(
                    "INVALID_FIELD",
                    format!(
                        "No such column '{name}' on sobject of type {}",
                        data.schema.name
                    ),
                    vec![name],
                ));
            };
            if is_audit_field(&spec.name) || (from_api && !spec.updateable) {
                return Err(WriteError::new(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    format!(
                        "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your role in Salesforce Setup.",
                        spec.name
                    ),
                    vec![spec.name.clone()],
                ));
            }
            check_type(spec, &value)?;
            changes.push((
                spec.name.clone(),
                spec.calculated,
                normalize(spec.field_type, value),
            ));
        }
        let object_name = data.schema.name.clone();
        let record = match data.records.get_mut(&id18) {
            Some(record) if record.get("IsDeleted") == Some(&Value::Bool(true)) => {
                return Err(WriteError::new(
                    "ENTITY_IS_DELETED",
                    "entity is deleted",
                    vec![],
                ));
            }
            Some(record) => record,
            None => {
                return Err(WriteError::new(
                    "INVALID_CROSS_REFERENCE_KEY",
                    format!("invalid cross reference id: {id}"),
                    vec![],
                ));
            }
        };
        // Only a test changes a formula's value; Salesforce recomputes formulas without a write,
        // so that alone must not move the modstamps.
        let written = changes.iter().any(|(_, calculated, _)| !calculated);
        for (name, _, value) in changes {
            record.insert(name, value);
        }
        if written {
            let stamp = Value::from(format_datetime(now));
            record.insert("LastModifiedDate".to_owned(), stamp.clone());
            record.insert("SystemModstamp".to_owned(), stamp);
        }
        derive_fields(&object_name, record);
        Ok(())
    }

    /// Moves a record in or out of the recycle bin; `SystemModstamp` moves either way.
    pub fn set_deleted(&mut self, object: &str, id: &str, deleted: bool) -> bool {
        let now = self.now();
        let Some(record) = ids::to_18(id).and_then(|id| {
            self.object_mut(object)
                .and_then(|data| data.records.get_mut(&id))
        }) else {
            return false;
        };
        record.insert("IsDeleted".to_owned(), Value::Bool(deleted));
        let stamp = Value::from(format_datetime(now));
        record.insert("LastModifiedDate".to_owned(), stamp.clone());
        record.insert("SystemModstamp".to_owned(), stamp);
        true
    }

    /// Back-dates (or forward-dates) `SystemModstamp`, as a late-committing transaction looks.
    pub fn set_modstamp(&mut self, object: &str, id: &str, at: DateTime<Utc>) -> bool {
        let Some(record) = ids::to_18(id).and_then(|id| {
            self.object_mut(object)
                .and_then(|data| data.records.get_mut(&id))
        }) else {
            return false;
        };
        record.insert(
            "SystemModstamp".to_owned(),
            Value::from(format_datetime(at)),
        );
        true
    }

    /// Puts a record back exactly as it was (rolling back an allOrNone request).
    pub fn put_raw(&mut self, object: &str, record: Map<String, Value>) {
        let id = record.get("Id").and_then(Value::as_str).map(str::to_owned);
        if let (Some(id), Some(data)) = (id, self.object_mut(object)) {
            data.records.insert(id, record);
        }
    }

    pub fn get(&self, object: &str, id: &str) -> Option<&Map<String, Value>> {
        let id = ids::to_18(id)?;
        self.object(object)?.records.get(&id)
    }

    /// Record types of `object` (excluding Master), as `RecordType` records.
    pub fn record_types(&self, object: &str) -> Vec<&Map<String, Value>> {
        let Some(data) = self.object("RecordType") else {
            return Vec::new();
        };
        data.records
            .values()
            .filter(|r| {
                r.get("SobjectType")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case(object))
            })
            .collect()
    }

    /// Rows of `object` for the SOQL engine; deleted rows only when `include_deleted` (queryAll).
    pub fn rows<'a>(&'a self, data: &'a ObjectData, include_deleted: bool) -> Vec<RecRow<'a>> {
        data.records
            .values()
            .filter(|r| include_deleted || r.get("IsDeleted") != Some(&Value::Bool(true)))
            .map(|record| RecRow {
                store: self,
                data,
                record,
            })
            .collect()
    }

    /// Follows `path` from `record`: all but the last element name relationships. A missing or
    /// deleted parent reads as null, as in SOQL.
    pub fn resolve<'a>(
        &'a self,
        data: &'a ObjectData,
        record: &'a Map<String, Value>,
        path: &[String],
    ) -> Option<(&'a ObjectData, &'a Map<String, Value>, Option<&'a Value>)> {
        let (first, rest) = path.split_first()?;
        if rest.is_empty() {
            let value = data
                .schema
                .field(first)
                .and_then(|spec| record.get(&spec.name))
                .or_else(|| record.get(first.as_str()));
            return Some((data, record, value));
        }
        let (parent_data, parent) = self.parent(data, record, first)?;
        self.resolve(parent_data, parent, rest)
    }

    fn parent<'a>(
        &'a self,
        data: &'a ObjectData,
        record: &'a Map<String, Value>,
        relationship: &str,
    ) -> Option<(&'a ObjectData, &'a Map<String, Value>)> {
        let spec = data.schema.relationship(relationship)?;
        let parent_id = record.get(&spec.name)?.as_str()?;
        let parent_data = self.object(spec.reference_to.as_deref()?)?;
        let parent = parent_data.records.get(parent_id)?;
        (parent.get("IsDeleted") != Some(&Value::Bool(true))).then_some((parent_data, parent))
    }

    /// The record reached by following the relationship names in `path` (empty: the record itself).
    pub fn follow<'a>(
        &'a self,
        data: &'a ObjectData,
        record: &'a Map<String, Value>,
        path: &[String],
    ) -> Option<(&'a ObjectData, &'a Map<String, Value>)> {
        match path.split_first() {
            None => Some((data, record)),
            Some((first, rest)) => {
                let (parent_data, parent) = self.parent(data, record, first)?;
                self.follow(parent_data, parent, rest)
            }
        }
    }

    /// The metadata of the field a SOQL path ends at.
    pub fn field_spec<'a>(
        &'a self,
        object: &'a ObjectData,
        path: &[String],
    ) -> Option<&'a FieldSpec> {
        let (first, rest) = path.split_first()?;
        if rest.is_empty() {
            return object.schema.field(first);
        }
        let spec = object.schema.relationship(first)?;
        self.field_spec(self.object(spec.reference_to.as_deref()?)?, rest)
    }

    /// The describe spelling of a SOQL field path (relationship names, then the field name).
    pub fn canonical_path(&self, object: &ObjectData, path: &[String]) -> Option<Vec<String>> {
        let (first, rest) = path.split_first()?;
        if rest.is_empty() {
            return object.schema.field(first).map(|f| vec![f.name.clone()]);
        }
        let spec = object.schema.relationship(first)?;
        let target = self.object(spec.reference_to.as_deref()?)?;
        let mut out = vec![spec.relationship_name.clone()?];
        out.extend(self.canonical_path(target, rest)?);
        Some(out)
    }

    /// Checks a SOQL field path against metadata: `Err` carries the offending name for INVALID_FIELD.
    pub fn check_path(&self, object: &ObjectData, path: &[String]) -> Result<(), String> {
        let Some((first, rest)) = path.split_first() else {
            return Err(String::new());
        };
        if rest.is_empty() {
            return object
                .schema
                .field(first)
                .map(|_| ())
                .ok_or_else(|| first.clone());
        }
        let target = object
            .schema
            .relationship(first)
            .and_then(|spec| spec.reference_to.as_deref())
            .and_then(|to| self.object(to))
            .ok_or_else(|| first.clone())?;
        self.check_path(target, rest)
    }
}

/// A record seen by the SOQL engine, able to follow relationships through the store.
pub struct RecRow<'a> {
    pub store: &'a Store,
    pub data: &'a ObjectData,
    pub record: &'a Map<String, Value>,
}

impl Row for RecRow<'_> {
    fn field(&self, path: &[String]) -> Value {
        self.store
            .resolve(self.data, self.record, path)
            .and_then(|(_, _, value)| value.cloned())
            .unwrap_or(Value::Null)
    }
}

impl RecRow<'_> {
    /// `{"type","url"}` of the record reached through `path`, or `None` when that parent is absent.
    pub fn attributes(&self, version: &str, path: &[String]) -> Option<Value> {
        let (data, record) = self.store.follow(self.data, self.record, path)?;
        Some(attributes(version, &data.schema.name, record))
    }
}

pub fn attributes(version: &str, object: &str, record: &Map<String, Value>) -> Value {
    let id = record.get("Id").and_then(Value::as_str).unwrap_or_default();
    json!({
        "type": object,
        "url": format!("/services/data/v{version}/sobjects/{object}/{id}"),
    })
}

/// Fields only Salesforce itself writes, whoever asks.
fn is_audit_field(name: &str) -> bool {
    matches!(
        name,
        "Id" | "IsDeleted" | "CreatedDate" | "LastModifiedDate" | "SystemModstamp"
    )
}

fn default_value(spec: &FieldSpec) -> Value {
    if spec.field_type == FieldType::Boolean {
        Value::Bool(false)
    } else {
        Value::Null
    }
}

/// Stores values the way Salesforce returns them: date-times in its `+0000` form, Ids in 18
/// characters, empty strings as null (Salesforce does not keep empty text).
fn normalize(field_type: FieldType, value: Value) -> Value {
    match (field_type, value) {
        (_, Value::String(s)) if s.is_empty() => Value::Null,
        (FieldType::DateTime, Value::String(s)) => match parse_datetime(&s) {
            Some(at) => Value::from(format_datetime(at)),
            None => Value::String(s),
        },
        (FieldType::Reference | FieldType::Id, Value::String(s)) => {
            Value::String(ids::to_18(&s).unwrap_or(s))
        }
        (_, value) => value,
    }
}

fn check_type(spec: &FieldSpec, value: &Value) -> Result<(), WriteError> {
    let ok = match (spec.field_type, value) {
        (FieldType::Boolean, Value::Bool(_)) => true,
        // A checkbox cannot be null.
        (FieldType::Boolean, _) => false,
        (_, Value::Null) => spec.nillable,
        (FieldType::Double, Value::Number(_)) => true,
        (FieldType::Double, _) => false,
        (FieldType::Date, Value::String(s)) => NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        (FieldType::DateTime, Value::String(s)) => parse_datetime(s).is_some(),
        (FieldType::Reference, Value::String(s)) => ids::to_18(s).is_some(),
        (_, Value::String(_)) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else if value.is_null() {
        Err(WriteError::new(
            "REQUIRED_FIELD_MISSING",
            format!("Required fields are missing: [{}]", spec.name),
            vec![spec.name.clone()],
        ))
    } else {
        Err(WriteError::new(
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
            format!("{}: value not of required type: {value}", spec.label),
            vec![spec.name.clone()],
        ))
    }
}

/// Compound fields Salesforce computes (Contact.Name from the name parts).
fn derive_fields(object: &str, record: &mut Map<String, Value>) {
    if object == "Contact" {
        let part = |name: &str| record.get(name).and_then(Value::as_str).map(str::to_owned);
        let name = [part("FirstName"), part("LastName")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        record.insert(
            "Name".to_owned(),
            if name.is_empty() {
                Value::Null
            } else {
                Value::from(name)
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::schema::default_contact_custom_fields;

    fn store() -> Store {
        let mut store = Store::new(default_contact_custom_fields());
        store.set_now(
            DateTime::parse_from_rfc3339("2026-11-24T10:00:00.500Z")
                .unwrap()
                .into(),
        );
        store
    }

    fn fields(v: Value) -> Map<String, Value> {
        serde_json::from_value(v).expect("an object")
    }

    #[test]
    fn inserts_fill_defaults_and_stamp_with_the_clock() {
        let mut s = store();
        let now = s.now();
        let id = s
            .insert_at(
                "contact",
                fields(json!({"lastname": "Lovelace", "FirstName": "Ada"})),
                now,
                false,
            )
            .unwrap();
        assert!(id.starts_with("003"));
        let rec = s.get("Contact", &id).unwrap();
        assert_eq!(rec["LastName"], "Lovelace");
        assert_eq!(rec["Name"], "Ada Lovelace");
        assert_eq!(rec["HasOptedOutOfEmail"], false);
        assert_eq!(rec["Email"], Value::Null);
        // Truncated to the second, rendered as Salesforce does.
        assert_eq!(rec["SystemModstamp"], "2026-11-24T10:00:00.000+0000");
    }

    #[test]
    fn api_updates_refuse_formula_and_system_fields_and_deleted_records() {
        let mut s = store();
        let now = s.now();
        let id = s
            .insert_at("Contact", fields(json!({"LastName": "X"})), now, false)
            .unwrap();
        let err = s
            .update(
                "Contact",
                &id,
                fields(json!({"HL_Is_Board__c": true})),
                true,
            )
            .unwrap_err();
        assert_eq!(err.status_code, "INVALID_FIELD_FOR_INSERT_UPDATE");
        let err = s
            .update("Contact", &id, fields(json!({"Nope__c": 1})), true)
            .unwrap_err();
        assert_eq!(err.status_code, "INVALID_FIELD");
        let err = s
            .update(
                "Contact",
                &id,
                fields(json!({"HasOptedOutOfEmail": "yes"})),
                true,
            )
            .unwrap_err();
        assert_eq!(err.status_code, "INVALID_TYPE_ON_FIELD_IN_RECORD");

        s.advance(TimeDelta::seconds(5));
        s.update(
            "Contact",
            &id,
            fields(json!({"HasOptedOutOfEmail": true})),
            true,
        )
        .unwrap();
        assert_eq!(
            s.get("Contact", &id).unwrap()["SystemModstamp"],
            "2026-11-24T10:00:05.000+0000"
        );

        assert!(s.set_deleted("Contact", &id, true));
        let err = s
            .update("Contact", &id, fields(json!({"Title": "T"})), true)
            .unwrap_err();
        assert_eq!(err.status_code, "ENTITY_IS_DELETED");
    }

    #[test]
    fn formula_values_change_without_moving_the_modstamp() {
        let mut s = store();
        let now = s.now();
        let id = s
            .insert_at(
                "Contact",
                fields(json!({"LastName": "X", "HL_Is_Board__c": true, "SystemModstamp": "2020-01-01T00:00:00Z"})),
                now,
                false,
            )
            .unwrap();
        let rec = s.get("Contact", &id).unwrap().clone();
        assert_eq!(rec["HL_Is_Board__c"], true);
        assert_eq!(rec["SystemModstamp"], "2026-11-24T10:00:00.000+0000");
        s.advance(TimeDelta::minutes(1));
        s.update(
            "Contact",
            &id,
            fields(json!({"HL_Is_Board__c": false})),
            false,
        )
        .unwrap();
        let after = s.get("Contact", &id).unwrap();
        assert_eq!(after["HL_Is_Board__c"], false);
        assert_eq!(after["SystemModstamp"], rec["SystemModstamp"]);
    }

    #[test]
    fn relationships_resolve_through_the_store() {
        let mut s = store();
        let now = s.now();
        let acct = s
            .insert_at("Account", fields(json!({"Name": "Acme"})), now, false)
            .unwrap();
        let id = s
            .insert_at(
                "Contact",
                fields(json!({"LastName": "X", "AccountId": acct})),
                now,
                false,
            )
            .unwrap();
        let data = s.object("Contact").unwrap();
        let rows = s.rows(data, false);
        let row = rows.iter().find(|r| r.record["Id"] == id.as_str()).unwrap();
        let path = |p: &[&str]| {
            p.iter()
                .map(std::string::ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(row.field(&path(&["account", "name"])), "Acme");
        assert_eq!(row.field(&path(&["RecordType", "Name"])), Value::Null);
        assert!(s.check_path(data, &path(&["Account", "Name"])).is_ok());
        assert_eq!(
            s.check_path(data, &path(&["Acct", "Name"])),
            Err("Acct".to_owned())
        );
        assert_eq!(
            s.check_path(data, &path(&["Bogus__c"])),
            Err("Bogus__c".to_owned())
        );
    }
}
