//! Evaluation: the `WHERE` filter, `ORDER BY` keys, and the type check against describe.
//!
//! Filtering and sorting order values the same way (a datetime as an instant, an Id by its
//! 18-character form, text case-folded), so that a client paging with
//! `WHERE (SystemModstamp > :t OR (SystemModstamp = :t AND Id > :id)) ORDER BY SystemModstamp, Id`
//! neither skips nor repeats a record.

use std::cmp::Ordering;
use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde_json::Value;

use super::lex::{parse_date, parse_datetime};
use super::{
    CmpOp, Expr, FieldRef, InList, LikePattern, LikeTok, Literal, Order, Query, RelativeDate, Row,
    SoqlError,
};
use crate::salesforce::ids::to_18;

/// A field's type as describe reports it, coarsened to what decides which literals fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// `id` and `reference`: quoted 15- or 18-character Ids.
    Id,
    /// Text of any kind (string, picklist, email, phone, textarea, url, …): quoted strings.
    Text,
    Boolean,
    /// double, int, currency, percent: unquoted numbers.
    Number,
    Date,
    DateTime,
}

impl FieldType {
    /// From describe's `type` (`"datetime"`, `"reference"`, `"picklist"`, …); `None` for
    /// types the simulator does not check (`anyType`, `base64`, compound fields).
    pub fn from_describe(kind: &str) -> Option<FieldType> {
        Some(match kind.to_ascii_lowercase().as_str() {
            "id" | "reference" => FieldType::Id,
            "string" | "picklist" | "multipicklist" | "textarea" | "email" | "phone" | "url"
            | "combobox" | "encryptedstring" => FieldType::Text,
            "boolean" => FieldType::Boolean,
            "double" | "int" | "long" | "currency" | "percent" => FieldType::Number,
            "date" => FieldType::Date,
            "datetime" => FieldType::DateTime,
            _ => return None,
        })
    }

    fn describe_name(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::Text => "string",
            FieldType::Boolean => "boolean",
            FieldType::Number => "double",
            FieldType::Date => "date",
            FieldType::DateTime => "dateTime",
        }
    }
}

/// One value placed in SOQL's order. Values of different kinds (which a well-typed field never
/// holds) are ordered by kind, so that the order stays total.
#[derive(Debug, Clone, PartialEq)]
enum Key {
    Bool(bool),
    Num(f64),
    Date(NaiveDate),
    Instant(DateTime<Utc>),
    /// The 18-character form: its first 15 characters are case-sensitive, its suffix is not.
    Id(String),
    /// Lower-cased, as SOQL compares text case-insensitively.
    Text(String),
}

impl Key {
    fn rank(&self) -> u8 {
        match self {
            Key::Bool(_) => 0,
            Key::Num(_) => 1,
            Key::Date(_) => 2,
            Key::Instant(_) => 3,
            Key::Id(_) => 4,
            Key::Text(_) => 5,
        }
    }

    fn cmp(&self, other: &Key) -> Ordering {
        match (self, other) {
            (Key::Bool(a), Key::Bool(b)) => a.cmp(b),
            (Key::Num(a), Key::Num(b)) => a.total_cmp(b),
            (Key::Date(a), Key::Date(b)) => a.cmp(b),
            (Key::Instant(a), Key::Instant(b)) => a.cmp(b),
            (Key::Id(a), Key::Id(b)) | (Key::Text(a), Key::Text(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// Whether a field's name says it holds Ids (`Id`, `AccountId`, `ReportsToId`). A stored
/// 18-character value with a valid case-safe suffix is treated as an Id whatever its field.
fn id_named(field: &FieldRef) -> bool {
    field.path.last().is_some_and(|name| {
        name.len() >= 2
            && name.is_char_boundary(name.len() - 2)
            && name[name.len() - 2..].eq_ignore_ascii_case("id")
    })
}

fn stored_id(s: &str, id_named: bool) -> Option<String> {
    match s.len() {
        18 => to_18(s),
        15 if id_named => to_18(s),
        _ => None,
    }
}

fn sort_key(value: &Value, id_named: bool) -> Option<Key> {
    match value {
        Value::Null => None,
        Value::Bool(b) => Some(Key::Bool(*b)),
        // `+ 0.0` folds -0 into 0, which `total_cmp` would otherwise order apart.
        Value::Number(n) => n.as_f64().map(|x| Key::Num(x + 0.0)),
        Value::String(s) => Some(if let Some(t) = parse_datetime(s) {
            Key::Instant(t)
        } else if let Some(d) = parse_date(s) {
            Key::Date(d)
        } else if let Some(id) = stored_id(s, id_named) {
            Key::Id(id)
        } else {
            Key::Text(fold(s))
        }),
        other => Some(Key::Text(other.to_string())),
    }
}

/// Case-folded text, char by char, the same way [`text_cmp`] compares.
fn fold(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

fn text_cmp(a: &str, b: &str) -> Ordering {
    a.chars()
        .flat_map(char::to_lowercase)
        .cmp(b.chars().flat_map(char::to_lowercase))
}

/// How a stored, non-null value compares with a literal; `None` when their types differ.
fn literal_cmp(stored: &Value, lit: &Literal, id_named: bool) -> Option<Ordering> {
    match (lit, stored) {
        (Literal::String(l), Value::String(s)) => match (stored_id(s, id_named), to_18(l)) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => Some(text_cmp(s, l)),
        },
        (Literal::Number(l), Value::Number(n)) => n.as_f64()?.partial_cmp(l),
        (Literal::Bool(l), Value::Bool(b)) => Some(b.cmp(l)),
        (Literal::Date(l), Value::String(s)) => Some(parse_date(s)?.cmp(l)),
        (Literal::DateTime(l), Value::String(s)) => Some(parse_datetime(s)?.cmp(l)),
        _ => None,
    }
}

/// Where a stored date or datetime falls against a date literal's range of days:
/// `Less` before it, `Equal` inside, `Greater` after.
fn range_position(stored: &Value, r: RelativeDate, today: NaiveDate) -> Option<Ordering> {
    let Value::String(s) = stored else {
        return None;
    };
    let (start, end) = r.range(today);
    let place = |x: Ordering, y: Ordering| match (x, y) {
        (Ordering::Less, _) => Ordering::Less,
        (_, Ordering::Less) => Ordering::Equal,
        _ => Ordering::Greater,
    };
    if let Some(t) = parse_datetime(s) {
        let midnight = |d: NaiveDate| d.and_time(NaiveTime::MIN).and_utc();
        Some(place(t.cmp(&midnight(start)), t.cmp(&midnight(end))))
    } else {
        let d = parse_date(s)?;
        Some(place(d.cmp(&start), d.cmp(&end)))
    }
}

fn op_holds(op: CmpOp, ord: Ordering) -> bool {
    match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    }
}

fn compare(stored: &Value, op: CmpOp, lit: &Literal, id_named: bool, today: NaiveDate) -> bool {
    match (lit, stored) {
        (Literal::Null, v) => match op {
            CmpOp::Eq => v.is_null(),
            CmpOp::Ne => !v.is_null(),
            _ => false,
        },
        // SOQL has two-valued logic: a null differs from every value, and is in no order.
        (_, Value::Null) => op == CmpOp::Ne,
        (Literal::Relative(r), v) => range_position(v, *r, today).is_some_and(|o| op_holds(op, o)),
        (lit, v) => literal_cmp(v, lit, id_named).is_some_and(|o| op_holds(op, o)),
    }
}

pub(crate) fn matches(expr: &Expr, row: &dyn Row, today: NaiveDate) -> bool {
    match expr {
        Expr::And(parts) => parts.iter().all(|p| matches(p, row, today)),
        Expr::Or(parts) => parts.iter().any(|p| matches(p, row, today)),
        Expr::Not(inner) => !matches(inner, row, today),
        Expr::Compare { field, op, value } => {
            compare(&row.field(&field.path), *op, value, id_named(field), today)
        }
        Expr::Like { field, pattern } => match row.field(&field.path) {
            Value::String(s) => pattern.matches(&s),
            _ => false,
        },
        Expr::In {
            field,
            negated,
            values,
        } => {
            values
                .set
                .contains(&row.field(&field.path), id_named(field), today)
                != *negated
        }
    }
}

pub(crate) fn execute<R: Row>(query: &Query, rows: Vec<R>, today: NaiveDate) -> Vec<R> {
    let kept: Vec<R> = match &query.filter {
        Some(filter) => rows
            .into_iter()
            .filter(|r| matches(filter, r, today))
            .collect(),
        None => rows,
    };
    let sorted = if query.order_by.is_empty() {
        kept
    } else {
        // Keys are computed once per row: parsing a datetime per comparison would cost
        // n log n parses.
        let mut keyed: Vec<(Vec<Option<Key>>, R)> = kept
            .into_iter()
            .map(|r| {
                let keys = query
                    .order_by
                    .iter()
                    .map(|o| sort_key(&r.field(&o.field.path), id_named(&o.field)))
                    .collect();
                (keys, r)
            })
            .collect();
        // `sort_by` is stable: rows equal on every key keep their stored order.
        keyed.sort_by(|a, b| compare_keys(&a.0, &b.0, &query.order_by));
        keyed.into_iter().map(|(_, r)| r).collect()
    };
    sorted
        .into_iter()
        .skip(query.offset.unwrap_or(0))
        .take(query.limit.unwrap_or(usize::MAX))
        .collect()
}

fn compare_keys(a: &[Option<Key>], b: &[Option<Key>], order: &[Order]) -> Ordering {
    for ((x, y), o) in a.iter().zip(b).zip(order) {
        let ord = match (x, y) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) if o.nulls_first => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) if o.nulls_first => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) if o.descending => y.cmp(x),
            (Some(x), Some(y)) => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

impl LikePattern {
    pub(crate) fn new(text: String, toks: &[LikeTok]) -> Self {
        let toks = toks
            .iter()
            .flat_map(|t| -> Vec<LikeTok> {
                match t {
                    LikeTok::Char(c) => c.to_lowercase().map(LikeTok::Char).collect(),
                    other => vec![*other],
                }
            })
            .collect();
        Self { text, toks }
    }

    /// Case-insensitive match of the whole value, as SOQL's LIKE does.
    pub fn matches(&self, value: &str) -> bool {
        let s: Vec<char> = value.chars().flat_map(char::to_lowercase).collect();
        let p = &self.toks;
        let (mut pi, mut si) = (0, 0);
        // The last `%` seen and the value position it was tried from: on a mismatch, let that
        // `%` swallow one more character. Linear-time for the patterns clients write.
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            match p.get(pi) {
                Some(LikeTok::Any) => {
                    star = Some((pi, si));
                    pi += 1;
                }
                Some(LikeTok::One) => {
                    pi += 1;
                    si += 1;
                }
                Some(LikeTok::Char(c)) if *c == s[si] => {
                    pi += 1;
                    si += 1;
                }
                _ => match star {
                    Some((sp, ss)) => {
                        pi = sp + 1;
                        si = ss + 1;
                        star = Some((sp, ss + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi.min(p.len())..].iter().all(|t| *t == LikeTok::Any)
    }
}

/// An `IN` list as hash sets, one per kind of literal.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct InSet {
    null: bool,
    bools: [bool; 2],
    numbers: HashSet<u64>,
    /// Lower-cased, for text fields.
    texts: HashSet<String>,
    /// 18-character forms, for Id fields.
    ids: HashSet<String>,
    dates: HashSet<NaiveDate>,
    instants: HashSet<DateTime<Utc>>,
    relatives: Vec<RelativeDate>,
}

/// Numbers by bit pattern, with -0 folded into 0 so that they stay equal.
fn number_bits(n: f64) -> u64 {
    (n + 0.0).to_bits()
}

impl InSet {
    fn contains(&self, stored: &Value, id_named: bool, today: NaiveDate) -> bool {
        match stored {
            Value::Null => self.null,
            Value::Bool(b) => self.bools[usize::from(*b)],
            Value::Number(n) => n
                .as_f64()
                .is_some_and(|n| self.numbers.contains(&number_bits(n))),
            Value::String(s) => {
                let as_text = match stored_id(s, id_named) {
                    Some(id) => self.ids.contains(&id),
                    None => !self.texts.is_empty() && self.texts.contains(&fold(s)),
                };
                as_text
                    || (!self.instants.is_empty()
                        && parse_datetime(s).is_some_and(|t| self.instants.contains(&t)))
                    || (!self.dates.is_empty()
                        && parse_date(s).is_some_and(|d| self.dates.contains(&d)))
                    || self
                        .relatives
                        .iter()
                        .any(|r| range_position(stored, *r, today) == Some(Ordering::Equal))
            }
            _ => false,
        }
    }
}

impl InList {
    pub(crate) fn new(values: Vec<Literal>) -> Self {
        let mut set = InSet::default();
        for v in &values {
            match v {
                Literal::Null => set.null = true,
                Literal::Bool(b) => set.bools[usize::from(*b)] = true,
                Literal::Number(n) => {
                    set.numbers.insert(number_bits(*n));
                }
                Literal::String(s) => {
                    if let Some(id) = to_18(s) {
                        set.ids.insert(id);
                    }
                    set.texts.insert(fold(s));
                }
                Literal::Date(d) => {
                    set.dates.insert(*d);
                }
                Literal::DateTime(t) => {
                    set.instants.insert(*t);
                }
                Literal::Relative(r) => set.relatives.push(*r),
            }
        }
        Self {
            values,
            set: Box::new(set),
        }
    }
}

fn literal_fits(lit: &Literal, ty: FieldType) -> bool {
    match lit {
        Literal::Null => true,
        Literal::String(_) => matches!(ty, FieldType::Id | FieldType::Text),
        Literal::Number(_) => ty == FieldType::Number,
        Literal::Bool(_) => ty == FieldType::Boolean,
        Literal::Date(_) => ty == FieldType::Date,
        Literal::DateTime(_) => ty == FieldType::DateTime,
        Literal::Relative(_) => matches!(ty, FieldType::Date | FieldType::DateTime),
    }
}

fn type_error(field: &FieldRef, ty: FieldType) -> SoqlError {
    let quoting = match ty {
        FieldType::Id | FieldType::Text => "should be enclosed in quotes",
        _ => "should not be enclosed in quotes",
    };
    SoqlError::invalid_field(format!(
        "value of filter criterion for field '{field}' must be of type {} and {quoting}",
        ty.describe_name()
    ))
}

pub(crate) fn check_types(
    expr: &Expr,
    field_type: &dyn Fn(&[String]) -> Option<FieldType>,
) -> Result<(), SoqlError> {
    match expr {
        Expr::And(parts) | Expr::Or(parts) => {
            parts.iter().try_for_each(|p| check_types(p, field_type))
        }
        Expr::Not(inner) => check_types(inner, field_type),
        Expr::Compare { field, value, .. } => match field_type(&field.path) {
            Some(ty) if !literal_fits(value, ty) => Err(type_error(field, ty)),
            _ => Ok(()),
        },
        Expr::In { field, values, .. } => match field_type(&field.path) {
            Some(ty) if values.values.iter().any(|v| !literal_fits(v, ty)) => {
                Err(type_error(field, ty))
            }
            _ => Ok(()),
        },
        Expr::Like { field, .. } => match field_type(&field.path) {
            Some(ty) if !matches!(ty, FieldType::Id | FieldType::Text) => {
                Err(SoqlError::invalid_field(format!(
                    "invalid operator on field '{field}': LIKE applies to text fields only, \
                     and '{field}' is of type {}",
                    ty.describe_name()
                )))
            }
            _ => Ok(()),
        },
    }
}
