//! The elements of Push API v2 request bodies: checked strictly and normalised, so that the
//! stored record has every key (see the rules in the parent module's docs).
//!
//! Problems are returned as text that starts with the JSON path of the offending key
//! (`Groups[1].GroupType is required`); the handler prefixes the element's index and id.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use serde_json::{Map, Value};

/// What a key of an object may hold, and what its absence means.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Required; a string with something other than blanks in it (ids and types).
    NonEmpty,
    /// Required; any string, empty included.
    Text,
    /// A string or null; absent means null.
    NullableText,
    /// true or false; absent means false.
    Flag,
    /// Null or two ASCII capitals (ISO 3166-1 alpha-2); absent means null.
    CountryCode,
    /// Null or a UTC date-time `yyyy-MM-ddTHH:mm:ss.fffZ`; absent means null.
    Date,
}

const CONTACT_DETAILS: &[(&str, Kind)] = &[
    ("ContactId", Kind::NonEmpty),
    ("FirstName", Kind::NullableText),
    ("LastName", Kind::NullableText),
    ("PrimaryEmailAddress", Kind::NullableText),
    ("OrganizationName", Kind::NullableText),
    ("Title", Kind::NullableText),
    ("IsMember", Kind::Flag),
    ("IsOrganization", Kind::Flag),
    ("DoNotEmail", Kind::Flag),
    ("IsDeleted", Kind::Flag),
];

const GROUP: &[(&str, Kind)] = &[
    ("GroupId", Kind::NonEmpty),
    ("GroupName", Kind::Text),
    ("GroupType", Kind::NonEmpty),
    ("Role", Kind::NullableText),
];

const ADDRESS: &[(&str, Kind)] = &[
    ("AddressLine1", Kind::NullableText),
    ("AddressLine2", Kind::NullableText),
    ("City", Kind::NullableText),
    ("StateProvince", Kind::NullableText),
    ("PostalCode", Kind::NullableText),
    ("CountryCode", Kind::CountryCode),
    ("AddressType", Kind::NonEmpty),
    ("IsPrimary", Kind::Flag),
];

const PHONE_NUMBER: &[(&str, Kind)] = &[
    ("FormattedNumber", Kind::NonEmpty),
    ("PhoneType", Kind::NonEmpty),
    ("IsPreferred", Kind::Flag),
];

const EMAIL_ADDRESS: &[(&str, Kind)] = &[
    ("EmailAddress", Kind::NonEmpty),
    ("EmailType", Kind::NonEmpty),
    ("IsPreferred", Kind::Flag),
];

/// The collections of a ContactInfo element beside `ContactDetails`, with their entries' keys.
const COLLECTIONS: &[(&str, &[(&str, Kind)])] = &[
    ("Groups", GROUP),
    ("Addresses", ADDRESS),
    ("PhoneNumbers", PHONE_NUMBER),
    ("EmailAddresses", EMAIL_ADDRESS),
];

const MEETING: &[(&str, Kind)] = &[
    ("MeetingId", Kind::NonEmpty),
    ("Title", Kind::NullableText),
    ("Description", Kind::NullableText),
    ("MeetingType", Kind::NullableText),
    ("BeginDate", Kind::Date),
    ("EndDate", Kind::Date),
    ("IsDeleted", Kind::Flag),
];

/// An accepted element of `POST /contactinfo`.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum ContactPush {
    /// The member's whole record, normalised: every key present.
    Live { contact_id: String, record: Value },
    /// `{"ContactDetails":{"ContactId":…,"IsDeleted":true}}`.
    Delete { contact_id: String },
}

impl ContactPush {
    pub(super) fn contact_id(&self) -> &str {
        match self {
            Self::Live { contact_id, .. } | Self::Delete { contact_id } => contact_id,
        }
    }
}

/// An accepted element of `POST /meeting`.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum MeetingPush {
    /// The meeting's whole record, normalised: every key present.
    Live { meeting_id: String, record: Value },
    /// `{"MeetingId":…,"IsDeleted":true}`.
    Delete { meeting_id: String },
}

/// The element's `ContactDetails.ContactId` when it is a usable id, to name the element in a
/// message even when something else in it is wrong.
pub(super) fn contact_id_of(element: &Value) -> Option<&str> {
    element
        .get("ContactDetails")
        .and_then(|details| details.get("ContactId"))
        .and_then(Value::as_str)
        .filter(|id| !id.trim().is_empty())
}

/// The element's `MeetingId` when it is a usable id.
pub(super) fn meeting_id_of(element: &Value) -> Option<&str> {
    element
        .get("MeetingId")
        .and_then(Value::as_str)
        .filter(|id| !id.trim().is_empty())
}

/// Checks one element of `POST /contactinfo`.
pub(super) fn contact(element: &Value) -> Result<ContactPush, String> {
    let element = element
        .as_object()
        .ok_or("the element must be a JSON object")?;
    let details = match element.get("ContactDetails") {
        Some(Value::Object(details)) => details,
        Some(_) => return Err("ContactDetails must be an object".to_owned()),
        None => return Err("ContactDetails is required".to_owned()),
    };
    if details.get("IsDeleted") == Some(&Value::Bool(true)) {
        return contact_delete(element, details);
    }
    if let Some(unknown) = element
        .keys()
        .find(|k| *k != "ContactDetails" && !COLLECTIONS.iter().any(|(name, _)| name == k))
    {
        return Err(format!("unknown key {unknown}"));
    }

    let details = object(details, CONTACT_DETAILS, "ContactDetails")?;
    let contact_id = string_at(&details, "ContactId");
    let mut record = Map::new();
    record.insert("ContactDetails".to_owned(), Value::Object(details));
    for (name, keys) in COLLECTIONS {
        let entries = collection(element, name, keys)?;
        record.insert((*name).to_owned(), Value::Array(entries));
    }
    unique_groups(&record)?;
    Ok(ContactPush::Live {
        contact_id,
        record: Value::Object(record),
    })
}

/// The delete shape admits nothing but the id: anything else suggests the client meant a live
/// record, and Higher Logic would delete the member anyway.
fn contact_delete(
    element: &Map<String, Value>,
    details: &Map<String, Value>,
) -> Result<ContactPush, String> {
    if let Some(extra) = element.keys().find(|k| *k != "ContactDetails") {
        return Err(format!(
            "a delete (ContactDetails.IsDeleted true) carries nothing beside ContactDetails: remove {extra}"
        ));
    }
    if let Some(extra) = details
        .keys()
        .find(|k| *k != "ContactId" && *k != "IsDeleted")
    {
        return Err(format!(
            "a delete (ContactDetails.IsDeleted true) carries only ContactDetails.ContactId: remove ContactDetails.{extra}"
        ));
    }
    let contact_id = required_id(details, "ContactId", "ContactDetails")?;
    Ok(ContactPush::Delete { contact_id })
}

/// Checks one element of `POST /meeting`.
pub(super) fn meeting(element: &Value) -> Result<MeetingPush, String> {
    let element = element
        .as_object()
        .ok_or("the element must be a JSON object")?;
    if element.get("IsDeleted") == Some(&Value::Bool(true)) {
        if let Some(extra) = element
            .keys()
            .find(|k| *k != "MeetingId" && *k != "IsDeleted")
        {
            return Err(format!(
                "a delete (IsDeleted true) carries only MeetingId: remove {extra}"
            ));
        }
        let meeting_id = required_id(element, "MeetingId", "")?;
        return Ok(MeetingPush::Delete { meeting_id });
    }
    let record = object(element, MEETING, "")?;
    Ok(MeetingPush::Live {
        meeting_id: string_at(&record, "MeetingId"),
        record: Value::Object(record),
    })
}

/// `path.key`, or `key` at the top of an element.
fn at(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn required_id(obj: &Map<String, Value>, key: &str, path: &str) -> Result<String, String> {
    value(obj.get(key), Kind::NonEmpty, &at(path, key))?;
    Ok(string_at(obj, key))
}

/// A key that `object` has checked to be a string.
fn string_at(obj: &Map<String, Value>, key: &str) -> String {
    obj.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Checks `obj` against `keys` and returns it with every key present (absent ones filled in).
fn object(
    obj: &Map<String, Value>,
    keys: &[(&str, Kind)],
    path: &str,
) -> Result<Map<String, Value>, String> {
    // A misspelt key usually explains a "missing" one, so name it first.
    if let Some(unknown) = obj.keys().find(|k| !keys.iter().any(|(name, _)| name == k)) {
        return Err(format!("unknown key {}", at(path, unknown)));
    }
    let mut normalised = Map::new();
    for &(key, kind) in keys {
        let checked = value(obj.get(key), kind, &at(path, key))?;
        normalised.insert(key.to_owned(), checked);
    }
    Ok(normalised)
}

/// Checks one value; `None` is an absent key. Returns the value to store.
fn value(value: Option<&Value>, kind: Kind, path: &str) -> Result<Value, String> {
    let Some(value) = value else {
        return match kind {
            Kind::NonEmpty | Kind::Text => Err(format!("{path} is required")),
            Kind::Flag => Ok(Value::Bool(false)),
            Kind::NullableText | Kind::CountryCode | Kind::Date => Ok(Value::Null),
        };
    };
    let fits = match (kind, value) {
        (Kind::NonEmpty, Value::String(s)) => !s.trim().is_empty(),
        (Kind::Text, Value::String(_)) => true,
        (Kind::NullableText | Kind::CountryCode | Kind::Date, Value::Null) => true,
        (Kind::NullableText, Value::String(_)) => true,
        (Kind::Flag, Value::Bool(_)) => true,
        (Kind::CountryCode, Value::String(s)) => {
            s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())
        }
        (Kind::Date, Value::String(s)) => is_push_date(s),
        _ => false,
    };
    if fits {
        return Ok(value.clone());
    }
    let expected = match kind {
        Kind::NonEmpty => "a non-empty string",
        Kind::Text => "a string",
        Kind::NullableText => "a string or null",
        Kind::Flag => "true or false",
        Kind::CountryCode => "null or an ISO 3166-1 alpha-2 code in capitals, such as \"US\"",
        Kind::Date => {
            "null or a UTC date-time yyyy-MM-ddTHH:mm:ss.fffZ, such as \"2026-09-14T13:00:00.000Z\""
        }
    };
    Err(format!("{path} must be {expected}, got {value}"))
}

/// An optional array of objects of one shape; absent means empty.
fn collection(
    element: &Map<String, Value>,
    name: &str,
    keys: &[(&str, Kind)],
) -> Result<Vec<Value>, String> {
    let entries = match element.get(name) {
        None => return Ok(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(other) => return Err(format!("{name} must be an array, got {other}")),
    };
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let path = format!("{name}[{i}]");
            let entry = entry
                .as_object()
                .ok_or_else(|| format!("{path} must be an object, got {entry}"))?;
            object(entry, keys, &path).map(Value::Object)
        })
        .collect()
}

/// A member is in a group once: GroupId + GroupType identify the membership.
fn unique_groups(record: &Map<String, Value>) -> Result<(), String> {
    let Some(Value::Array(groups)) = record.get("Groups") else {
        return Ok(());
    };
    let mut seen: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (i, group) in groups.iter().enumerate() {
        let id = group["GroupId"].as_str().unwrap_or_default();
        let kind = group["GroupType"].as_str().unwrap_or_default();
        if let Some(first) = seen.insert((id, kind), i) {
            return Err(format!(
                "Groups[{i}] repeats Groups[{first}]: GroupId {id:?} with GroupType {kind:?} may appear once per contact"
            ));
        }
    }
    Ok(())
}

/// Exactly `yyyy-MM-ddTHH:mm:ss.fffZ` (the UTC pattern of the push API, three millisecond
/// digits), and a real calendar date and time.
pub(super) fn is_push_date(text: &str) -> bool {
    const PATTERN: &[u8; 24] = b"0000-00-00T00:00:00.000Z";
    let bytes = text.as_bytes();
    bytes.len() == PATTERN.len()
        && bytes.iter().zip(PATTERN).all(|(&b, &p)| {
            if p == b'0' {
                b.is_ascii_digit()
            } else {
                b == p
            }
        })
        && NaiveDateTime::parse_from_str(&text[..19], "%Y-%m-%dT%H:%M:%S").is_ok()
}

/// The record as far as "did this push change anything" is concerned: the order of entries
/// inside a collection does not count.
pub(super) fn comparable(record: &Value) -> Value {
    let mut record = record.clone();
    if let Some(obj) = record.as_object_mut() {
        for value in obj.values_mut() {
            if let Value::Array(entries) = value {
                entries.sort_by_cached_key(Value::to_string);
            }
        }
    }
    record
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ID: &str = "0030000000000AbAAA";

    fn live(element: Value) -> Value {
        match contact(&element) {
            Ok(ContactPush::Live { record, .. }) => record,
            other => panic!("expected a live record, got {other:?}"),
        }
    }

    #[test]
    fn absent_keys_are_filled_in() {
        let record = live(json!({"ContactDetails": {"ContactId": ID}}));
        assert_eq!(
            record,
            json!({
                "ContactDetails": {"ContactId": ID, "FirstName": null, "LastName": null,
                    "PrimaryEmailAddress": null, "OrganizationName": null, "Title": null,
                    "IsMember": false, "IsOrganization": false, "DoNotEmail": false,
                    "IsDeleted": false},
                "Groups": [], "Addresses": [], "PhoneNumbers": [], "EmailAddresses": []
            })
        );
        let record = live(json!({"ContactDetails": {"ContactId": ID},
            "Groups": [{"GroupId": "g", "GroupName": "", "GroupType": "Membership"}],
            "Addresses": [{"AddressType": "Main"}]}));
        assert_eq!(
            record["Groups"][0],
            json!({"GroupId": "g", "GroupName": "", "GroupType": "Membership", "Role": null})
        );
        assert_eq!(record["Addresses"][0]["CountryCode"], Value::Null);
        assert_eq!(record["Addresses"][0]["IsPrimary"], false);
    }

    #[test]
    fn problems_name_the_path() {
        let problem = |element: Value| contact(&element).unwrap_err();
        assert_eq!(
            problem(json!({"ContactDetails": {"ContactId": ID},
                "Groups": [{"GroupId": "a", "GroupName": "A", "GroupType": "T"},
                           {"GroupId": "b", "GroupName": "B"}]})),
            "Groups[1].GroupType is required"
        );
        assert_eq!(
            problem(json!({"ContactDetails": {"ContactId": ID, "Nickname": "x"}})),
            "unknown key ContactDetails.Nickname"
        );
        assert_eq!(
            problem(json!({"ContactDetails": {"ContactId": ID}, "JobHistory": []})),
            "unknown key JobHistory"
        );
        assert!(
            problem(json!({"ContactDetails": {"ContactId": " "}}))
                .starts_with("ContactDetails.ContactId must be a non-empty string")
        );
        assert!(
            problem(json!({"ContactDetails": {"ContactId": ID, "IsMember": null}}))
                .starts_with("ContactDetails.IsMember must be true or false")
        );
        assert!(
            problem(json!({"ContactDetails": {"ContactId": ID}, "Groups": null}))
                .starts_with("Groups must be an array")
        );
        assert!(
            problem(json!({"ContactDetails": {"ContactId": ID}, "PhoneNumbers": ["555"]}))
                .starts_with("PhoneNumbers[0] must be an object")
        );
        assert_eq!(problem(json!([])), "the element must be a JSON object");
        assert_eq!(problem(json!({})), "ContactDetails is required");
    }

    #[test]
    fn country_codes_are_two_capitals() {
        for good in [json!("US"), json!(null)] {
            let element = json!({"ContactDetails": {"ContactId": ID},
                "Addresses": [{"AddressType": "Main", "CountryCode": good}]});
            assert!(contact(&element).is_ok());
        }
        for bad in ["us", "USA", "U", "", "É1"] {
            let element = json!({"ContactDetails": {"ContactId": ID},
                "Addresses": [{"AddressType": "Main", "CountryCode": bad}]});
            assert!(
                contact(&element)
                    .unwrap_err()
                    .starts_with("Addresses[0].CountryCode must be")
            );
        }
    }

    #[test]
    fn the_delete_shape_is_exact() {
        let delete = json!({"ContactDetails": {"ContactId": ID, "IsDeleted": true}});
        assert_eq!(
            contact(&delete),
            Ok(ContactPush::Delete {
                contact_id: ID.to_owned()
            })
        );
        let with_name =
            json!({"ContactDetails": {"ContactId": ID, "IsDeleted": true, "FirstName": null}});
        assert!(
            contact(&with_name)
                .unwrap_err()
                .contains("ContactDetails.FirstName")
        );
        let with_groups =
            json!({"ContactDetails": {"ContactId": ID, "IsDeleted": true}, "Groups": []});
        assert!(contact(&with_groups).unwrap_err().contains("remove Groups"));
        let without_id = json!({"ContactDetails": {"IsDeleted": true}});
        assert_eq!(
            contact(&without_id).unwrap_err(),
            "ContactDetails.ContactId is required"
        );
    }

    #[test]
    fn a_group_appears_once_per_type() {
        let group = json!({"GroupId": "g", "GroupName": "G", "GroupType": "Membership"});
        let mut other_type = group.clone();
        other_type["GroupType"] = json!("Chapter");
        assert!(
            contact(&json!({"ContactDetails": {"ContactId": ID}, "Groups": [group, other_type]}))
                .is_ok()
        );
        let problem =
            contact(&json!({"ContactDetails": {"ContactId": ID}, "Groups": [group, group]}))
                .unwrap_err();
        assert!(
            problem.starts_with("Groups[1] repeats Groups[0]"),
            "{problem}"
        );
    }

    #[test]
    fn push_dates_have_three_millisecond_digits_and_z() {
        assert!(is_push_date("2026-09-14T13:00:00.000Z"));
        assert!(is_push_date("2024-02-29T23:59:59.999Z"));
        for bad in [
            "2026-09-14T13:00:00Z",
            "2026-09-14T13:00:00.0Z",
            "2026-09-14T13:00:00.0000Z",
            "2026-09-14T13:00:00.000+00:00",
            "2026-09-14T13:00:00.000z",
            "2026-09-14 13:00:00.000Z",
            "2026-09-14",
            "2026-13-14T13:00:00.000Z",
            "2025-02-29T13:00:00.000Z",
            "２026-09-14T13:00:00.000Z",
        ] {
            assert!(!is_push_date(bad), "{bad}");
        }
    }

    #[test]
    fn meetings_are_checked_and_normalised() {
        let pushed = meeting(&json!({"MeetingId": "m1", "BeginDate": "2026-09-14T00:00:00.000Z"}));
        assert_eq!(
            pushed,
            Ok(MeetingPush::Live {
                meeting_id: "m1".to_owned(),
                record: json!({"MeetingId": "m1", "Title": null, "Description": null,
                    "MeetingType": null, "BeginDate": "2026-09-14T00:00:00.000Z",
                    "EndDate": null, "IsDeleted": false})
            })
        );
        assert!(
            meeting(&json!({"MeetingId": "m1", "EndDate": "2026-09-14"}))
                .unwrap_err()
                .starts_with("EndDate must be null or a UTC date-time")
        );
        assert_eq!(
            meeting(&json!({"MeetingId": "m1", "IsDeleted": true})),
            Ok(MeetingPush::Delete {
                meeting_id: "m1".to_owned()
            })
        );
        assert!(
            meeting(&json!({"MeetingId": "m1", "IsDeleted": true, "Title": "x"}))
                .unwrap_err()
                .contains("remove Title")
        );
        assert_eq!(
            meeting(&json!({"Title": "x"})).unwrap_err(),
            "MeetingId is required"
        );
    }

    #[test]
    fn collection_order_is_not_a_change() {
        let a = live(json!({"ContactDetails": {"ContactId": ID}, "Groups": [
            {"GroupId": "a", "GroupName": "A", "GroupType": "T"},
            {"GroupId": "b", "GroupName": "B", "GroupType": "T"}]}));
        let b = live(json!({"ContactDetails": {"ContactId": ID}, "Groups": [
            {"GroupId": "b", "GroupName": "B", "GroupType": "T", "Role": null},
            {"GroupId": "a", "GroupName": "A", "GroupType": "T"}]}));
        assert_ne!(a, b);
        assert_eq!(comparable(&a), comparable(&b));
        let c = live(
            json!({"ContactDetails": {"ContactId": ID, "Title": "Dr"}, "Groups": [
            {"GroupId": "a", "GroupName": "A", "GroupType": "T"},
            {"GroupId": "b", "GroupName": "B", "GroupType": "T"}]}),
        );
        assert_ne!(comparable(&a), comparable(&c));
    }
}
