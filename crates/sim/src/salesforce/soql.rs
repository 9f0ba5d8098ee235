//! SOQL subset: parse and evaluate, as Salesforce's `query` and `queryAll` resources do for
//! the statements hlsync sends.
//!
//! Semantics follow the SOQL reference where the subset reaches:
//! - keywords and field names are case-insensitive; field names keep the case written, so the
//!   server can rename them to their describe spelling ([`Query::canonicalize`]);
//! - `AND` and `OR` cannot be mixed without parentheses, and `NOT` only starts a condition
//!   (`a AND (NOT b)`, never `a AND NOT b`): Salesforce answers "unexpected token" otherwise;
//! - strings compare case-insensitively (`=`, `<`, `LIKE`, `IN`); Ids compare case-safely, a
//!   15-character Id equal to its 18-character form; datetimes compare as instants whatever the
//!   offset written; numbers numerically;
//! - SOQL has no three-valued logic: `= null` finds nulls, `!= 'x'` and `NOT IN` match nulls,
//!   any other comparison with a null value is false;
//! - a literal of another type than the stored value (a string against a datetime) matches
//!   nothing; [`Query::check_types`] turns that into Salesforce's INVALID_FIELD error when the
//!   server knows the field types.

mod eval;
mod lex;
mod parse;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value};

pub use eval::FieldType;

/// An error Salesforce would answer with `[{"errorCode": code, "message": message}]` (HTTP 400).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct SoqlError {
    /// "MALFORMED_QUERY" | "INVALID_FIELD" | "INVALID_TYPE" | "NUMBER_OUTSIDE_VALID_RANGE"
    /// (OFFSET above 2,000)
    pub code: &'static str,
    pub message: String,
}

impl SoqlError {
    pub fn malformed(message: impl Into<String>) -> Self {
        Self {
            code: "MALFORMED_QUERY",
            message: message.into(),
        }
    }

    pub fn invalid_field(message: impl Into<String>) -> Self {
        Self {
            code: "INVALID_FIELD",
            message: message.into(),
        }
    }

    pub fn invalid_type(message: impl Into<String>) -> Self {
        Self {
            code: "INVALID_TYPE",
            message: message.into(),
        }
    }
}

/// A parsed SOQL statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Empty for `SELECT COUNT()`.
    pub select: Vec<FieldRef>,
    /// The object name as written.
    pub from: String,
    pub filter: Option<Expr>,
    pub order_by: Vec<Order>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
    /// `SELECT COUNT() …`: the answer is `totalSize` alone, with no records.
    pub count_only: bool,
}

/// A field as written in the statement: `Account.Name` is `["Account", "Name"]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldRef {
    pub path: Vec<String>,
}

impl FieldRef {
    pub fn new<S: Into<String>>(path: impl IntoIterator<Item = S>) -> Self {
        Self {
            path: path.into_iter().map(Into::into).collect(),
        }
    }

    /// The dotted form, as written.
    pub fn dotted(&self) -> String {
        self.path.join(".")
    }

    /// Whether this is the same field as `other`, field names being case-insensitive.
    pub fn same_as(&self, other: &FieldRef) -> bool {
        self.path.len() == other.path.len()
            && self
                .path
                .iter()
                .zip(&other.path)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }
}

impl std::fmt::Display for FieldRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.dotted())
    }
}

/// One `ORDER BY` key, with Salesforce's default null placement already applied
/// (`NULLS FIRST` for ascending, `NULLS LAST` for descending).
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub field: FieldRef,
    pub descending: bool,
    pub nulls_first: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A condition of the `WHERE` clause.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Compare {
        field: FieldRef,
        op: CmpOp,
        value: Literal,
    },
    Like {
        field: FieldRef,
        pattern: LikePattern,
    },
    In {
        field: FieldRef,
        negated: bool,
        values: InList,
    },
}

/// A value written in the statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
    /// `TODAY`, `LAST_N_DAYS:n`, …: a range of days relative to the day the query runs.
    Relative(RelativeDate),
}

/// The date literals the simulator knows; each is a range of whole days (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelativeDate {
    Today,
    Yesterday,
    Tomorrow,
    /// Today and the `n` days before it.
    LastNDays(u32),
    /// The `n` days after today.
    NextNDays(u32),
}

impl RelativeDate {
    /// The days covered, `[start, end)`, when today is `today`.
    pub fn range(self, today: NaiveDate) -> (NaiveDate, NaiveDate) {
        let day = |n: i64| today + chrono::Duration::days(n);
        match self {
            RelativeDate::Today => (today, day(1)),
            RelativeDate::Yesterday => (day(-1), today),
            RelativeDate::Tomorrow => (day(1), day(2)),
            RelativeDate::LastNDays(n) => (day(-i64::from(n)), day(1)),
            RelativeDate::NextNDays(n) => (day(1), day(1 + i64::from(n))),
        }
    }
}

/// A piece of a `LIKE` pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LikeTok {
    /// `%`: any run of characters, possibly empty.
    Any,
    /// `_`: exactly one character.
    One,
    Char(char),
}

/// A `LIKE` pattern, compiled once (lower-cased, as LIKE is case-insensitive).
#[derive(Debug, Clone, PartialEq)]
pub struct LikePattern {
    /// The pattern's text after unescaping, for messages.
    pub text: String,
    toks: Vec<LikeTok>,
}

/// The values of an `IN (…)` list, with the lookup set built once so that a list of 2,000 Ids
/// costs one hash probe per row.
#[derive(Debug, Clone, PartialEq)]
pub struct InList {
    pub values: Vec<Literal>,
    set: Box<eval::InSet>,
}

/// Parses one SOQL statement. Errors carry Salesforce's codes and point at the offending token.
pub fn parse(soql: &str) -> Result<Query, SoqlError> {
    parse::parse(soql)
}

/// One record as the evaluator sees it. `field(["Account","Name"])` follows the relationship;
/// a missing value is `Value::Null`.
pub trait Row {
    fn field(&self, path: &[String]) -> Value;
}

impl<T: Row + ?Sized> Row for &T {
    fn field(&self, path: &[String]) -> Value {
        (**self).field(path)
    }
}

/// A record held as Salesforce's JSON: fields looked up case-insensitively (an exact match
/// first), relationships as nested objects.
impl Row for Map<String, Value> {
    fn field(&self, path: &[String]) -> Value {
        let mut current = self;
        for (i, name) in path.iter().enumerate() {
            let found = current.get(name).or_else(|| {
                current
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            });
            match found {
                Some(v) if i + 1 == path.len() => return v.clone(),
                Some(Value::Object(next)) => current = next,
                _ => return Value::Null,
            }
        }
        Value::Null
    }
}

impl Row for Value {
    fn field(&self, path: &[String]) -> Value {
        match self {
            Value::Object(map) => map.field(path),
            _ => Value::Null,
        }
    }
}

impl Query {
    /// Every field the query mentions (select, where, order by), once each (compared
    /// case-insensitively, first spelling kept), for the server to check against its describe.
    pub fn referenced_fields(&self) -> Vec<FieldRef> {
        let mut all: Vec<&FieldRef> = self.select.iter().collect();
        if let Some(filter) = &self.filter {
            filter.visit_fields(&mut |f| all.push(f));
        }
        all.extend(self.order_by.iter().map(|o| &o.field));
        let mut seen = std::collections::HashSet::new();
        all.into_iter()
            .filter(|f| {
                seen.insert(
                    f.path
                        .iter()
                        .map(|s| s.to_ascii_lowercase())
                        .collect::<Vec<_>>(),
                )
            })
            .cloned()
            .collect()
    }

    /// Renames every field reference (select, where, order by) for which `canonical` answers,
    /// typically to the describe spelling so that records come back as `LastName`, not
    /// `lastname`. Paths for which it answers `None` are left as written.
    pub fn canonicalize(&mut self, canonical: &dyn Fn(&[String]) -> Option<Vec<String>>) {
        let mut rename = |f: &mut FieldRef| {
            if let Some(path) = canonical(&f.path) {
                f.path = path;
            }
        };
        self.select.iter_mut().for_each(&mut rename);
        if let Some(filter) = &mut self.filter {
            filter.visit_fields_mut(&mut rename);
        }
        self.order_by.iter_mut().for_each(|o| rename(&mut o.field));
    }

    /// Salesforce's INVALID_FIELD answer to a literal of the wrong type (`SystemModstamp > 'x'`,
    /// `CreatedDate = 2026-11-24`), given the type of each field; fields for which `field_type`
    /// answers `None` are not checked.
    pub fn check_types(
        &self,
        field_type: &dyn Fn(&[String]) -> Option<FieldType>,
    ) -> Result<(), SoqlError> {
        match &self.filter {
            Some(filter) => eval::check_types(filter, field_type),
            None => Ok(()),
        }
    }

    /// Filter, sort (ORDER BY, stable; nulls placed as each key says), then OFFSET/LIMIT.
    /// Date literals such as `TODAY` are taken relative to the current UTC day.
    pub fn execute<R: Row>(&self, rows: Vec<R>) -> Result<Vec<R>, SoqlError> {
        self.execute_at(rows, Utc::now())
    }

    /// [`Query::execute`] with the clock given, so that `TODAY` is testable.
    pub fn execute_at<R: Row>(
        &self,
        rows: Vec<R>,
        now: DateTime<Utc>,
    ) -> Result<Vec<R>, SoqlError> {
        Ok(eval::execute(self, rows, now.date_naive()))
    }

    /// Whether one row passes the `WHERE` clause (true when there is none).
    pub fn matches(&self, row: &dyn Row, now: DateTime<Utc>) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| eval::matches(f, row, now.date_naive()))
    }

    /// The JSON shape Salesforce returns for one row, without the row's own `attributes`: the
    /// selected plain fields by the names in `select`, relationship fields nested as
    /// `{"Account": {"attributes": <attrs>, "Name": …}}`, or `"Account": null` when the parent
    /// is absent. `attributes(relationship_path)` gives the `{"type","url"}` object of that
    /// related record, or `None` when there is none.
    pub fn project(
        &self,
        row: &dyn Row,
        attributes: &dyn Fn(&[String]) -> Option<Value>,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        for field in &self.select {
            insert_projected(&mut out, &field.path, 0, row, attributes);
        }
        out
    }
}

fn insert_projected(
    out: &mut Map<String, Value>,
    path: &[String],
    depth: usize,
    row: &dyn Row,
    attributes: &dyn Fn(&[String]) -> Option<Value>,
) {
    let Some(name) = path.get(depth) else {
        return;
    };
    if depth + 1 == path.len() {
        out.insert(name.clone(), row.field(path));
        return;
    }
    let entry = out
        .entry(name.clone())
        .or_insert_with(|| match attributes(&path[..=depth]) {
            Some(attrs) => {
                let mut parent = Map::new();
                parent.insert("attributes".to_string(), attrs);
                Value::Object(parent)
            }
            None => Value::Null,
        });
    // A null parent stays null however many of its fields are selected.
    if let Value::Object(parent) = entry {
        insert_projected(parent, path, depth + 1, row, attributes);
    }
}

impl Expr {
    fn visit_fields<'a>(&'a self, f: &mut dyn FnMut(&'a FieldRef)) {
        match self {
            Expr::And(parts) | Expr::Or(parts) => parts.iter().for_each(|p| p.visit_fields(f)),
            Expr::Not(inner) => inner.visit_fields(f),
            Expr::Compare { field, .. } | Expr::Like { field, .. } | Expr::In { field, .. } => {
                f(field);
            }
        }
    }

    fn visit_fields_mut(&mut self, f: &mut dyn FnMut(&mut FieldRef)) {
        match self {
            Expr::And(parts) | Expr::Or(parts) => {
                for p in parts {
                    p.visit_fields_mut(f);
                }
            }
            Expr::Not(inner) => inner.visit_fields_mut(f),
            Expr::Compare { field, .. } | Expr::Like { field, .. } | Expr::In { field, .. } => {
                f(field);
            }
        }
    }
}

#[cfg(test)]
mod tests;
