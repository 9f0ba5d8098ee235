//! Contact → member: every rule of SPEC.md §2 lives in this file.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use crate::config::ContactsConfig;
use crate::id::{IdError, SfId};
use crate::member::{Address, Group, GroupKey, Member};
use crate::schema::{ContactSchema, FieldInfo, FieldType};
use crate::time::parse_sf_datetime;

/// One Contact as the REST API returns it, and the name of its Account (read separately by
/// `AccountId`, because batch reads cannot follow relationships).
#[derive(Debug, Clone, Copy)]
pub struct ContactInput<'a> {
    /// Field name → value; names are matched case-insensitively and `attributes` is ignored.
    pub fields: &'a Map<String, Value>,
    pub account_name: Option<&'a str>,
}

/// Why a record cannot be mapped. Each message names the record and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("the {object} record has no `{field}` field; the query must select it")]
    MissingField { object: &'static str, field: String },
    #[error("the {object} record's `{field}` is not a Salesforce Id: {source}")]
    BadId {
        object: &'static str,
        field: String,
        #[source]
        source: IdError,
    },
    #[error(
        "{object} {id}: `{field}` holds {value:?}, which is not a Salesforce datetime or date; check the field's type in Setup"
    )]
    BadDate {
        object: &'static str,
        id: String,
        field: String,
        value: String,
    },
    #[error(
        "Contact {contact}: its Record Type {record_type} is not in Contact's describe; it was probably created after the describe was read, and the next run reads it again"
    )]
    UnknownRecordType { contact: SfId, record_type: SfId },
}

impl MappingError {
    /// Whether retrying later (with a fresh describe) can succeed. The rest are data problems
    /// that a retry cannot fix: the record belongs on the dead-letter queue.
    pub fn is_retryable(&self) -> bool {
        matches!(self, MappingError::UnknownRecordType { .. })
    }
}

/// Case-insensitive view of a record's fields.
pub(crate) struct Fields<'a> {
    by_lower: HashMap<String, &'a Value>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(map: &'a Map<String, Value>) -> Self {
        let by_lower = map
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("attributes"))
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        Fields { by_lower }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&'a Value> {
        self.by_lower.get(&name.to_ascii_lowercase()).copied()
    }

    /// The value as text: null, missing and blank are `None`; text is trimmed.
    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.get(name).and_then(value_text)
    }

    /// A checkbox: only a JSON `true` (or the text "true") is true; null and missing are false.
    pub(crate) fn flag(&self, name: &str) -> bool {
        self.get(name).is_some_and(is_true)
    }

    pub(crate) fn id(&self, object: &'static str, name: &str) -> Result<SfId, MappingError> {
        let text = self.text(name).ok_or_else(|| MappingError::MissingField {
            object,
            field: name.to_owned(),
        })?;
        text.parse().map_err(|source| MappingError::BadId {
            object,
            field: name.to_owned(),
            source,
        })
    }

    pub(crate) fn optional_id(
        &self,
        object: &'static str,
        name: &str,
    ) -> Result<Option<SfId>, MappingError> {
        match self.text(name) {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|source| MappingError::BadId {
                    object,
                    field: name.to_owned(),
                    source,
                }),
        }
    }
}

fn is_true(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => s.trim().eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// Text of a JSON value per the rules: null/blank → `None`, text trimmed, numbers without a
/// trailing `.0`.
pub(crate) fn value_text(v: &Value) -> Option<String> {
    let text = match v {
        Value::Null => return None,
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => format_number(n),
        Value::Bool(b) => b.to_string(),
        // Compound fields are never selected; if one arrives, its JSON is at least stable text.
        other => other.to_string(),
    };
    (!text.is_empty()).then_some(text)
}

/// A number as group text: `3.0` → `3`, `2.5` → `2.5`. Whole numbers must not depend on whether
/// Salesforce wrote them with a decimal point, or the group key would change between runs.
pub fn format_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f.fract() == 0.0 => format!("{f:.0}"),
        // Rust prints the shortest text that reads back as the same f64: 2.5, 0.1.
        Some(f) => f.to_string(),
        None => n.to_string(),
    }
}

/// The groups one field contributes, per its type.
fn field_groups(field: &FieldInfo, value: Option<&Value>, out: &mut BTreeMap<GroupKey, Group>) {
    let Some(value) = value else { return };
    let mut add = |key: GroupKey, name: String| {
        out.entry(key.clone()).or_insert(Group { key, name });
    };
    match field.field_type {
        FieldType::Boolean => {
            if is_true(value) {
                add(
                    GroupKey::checkbox(&field.name),
                    field.label.trim().to_owned(),
                );
            }
        }
        FieldType::MultiPicklist => {
            if let Some(text) = value_text(value) {
                for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                    add(GroupKey::field_value(&field.name, part), part.to_owned());
                }
            }
        }
        _ => {
            if let Some(text) = value_text(value) {
                add(GroupKey::field_value(&field.name, &text), text);
            }
        }
    }
}

/// Map one Contact to the member record Higher Logic receives (SPEC.md §2).
pub fn map_contact(
    input: &ContactInput<'_>,
    schema: &ContactSchema,
    cfg: &ContactsConfig,
) -> Result<Member, MappingError> {
    let fields = Fields::new(input.fields);
    let id = fields.id("Contact", "Id")?;
    let updated_on = match fields.text("SystemModstamp") {
        None => None,
        Some(text) => Some(
            parse_sf_datetime(&text).ok_or_else(|| MappingError::BadDate {
                object: "Contact",
                id: id.to_string(),
                field: "SystemModstamp".into(),
                value: text.clone(),
            })?,
        ),
    };

    if fields.flag("IsDeleted") {
        return Ok(Member::deleted(id, updated_on));
    }

    let mut security = BTreeMap::new();
    for field in schema.security_group_fields() {
        field_groups(field, fields.get(&field.name), &mut security);
    }
    let record_type_id = if schema.record_type_groups() {
        fields.optional_id("Contact", "RecordTypeId")?
    } else {
        None
    };
    if let Some(rt_id) = record_type_id {
        let rt = schema
            .record_type(&rt_id)
            .ok_or_else(|| MappingError::UnknownRecordType {
                contact: id.clone(),
                record_type: rt_id.clone(),
            })?;
        let key = GroupKey::record_type(&rt.developer_name);
        security.entry(key.clone()).or_insert(Group {
            key,
            name: rt.name.clone(),
        });
    }
    let mut community = BTreeMap::new();
    for field in schema.community_group_fields() {
        field_groups(field, fields.get(&field.name), &mut community);
    }
    let security_groups: Vec<Group> = security.into_values().collect();
    let community_groups: Vec<Group> = community.into_values().collect();

    let active_flag = match schema.active_field() {
        None => true,
        Some(field) => fields.flag(&field.name),
    };
    let passes_filter = cfg.security_group_filter.is_empty()
        || security_groups.iter().chain(&community_groups).any(|g| {
            cfg.security_group_filter
                .iter()
                .any(|f| f == &g.name || f == g.key.as_str())
        });

    Ok(Member {
        legacy_contact_key: id,
        first_name: fields.text("FirstName"),
        last_name: fields.text("LastName"),
        email_address: fields.text("Email"),
        company_name: input
            .account_name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        title: fields.text("Title"),
        phone: fields.text("Phone"),
        mobile_phone: fields.text("MobilePhone"),
        address: Address {
            street: fields.text("MailingStreet"),
            city: fields.text("MailingCity"),
            state_province: fields.text("MailingState"),
            postal_code: fields.text("MailingPostalCode"),
            country: fields.text("MailingCountry"),
        },
        // Not deleted: that case returned above.
        is_active: active_flag && passes_filter,
        is_deleted: false,
        email_opt_out: fields.flag("HasOptedOutOfEmail"),
        security_groups,
        community_groups,
        updated_on,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::RecordTypeInfo;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use serde_json::json;

    fn field(name: &str, label: &str, ty: &str, calculated: bool) -> FieldInfo {
        FieldInfo {
            name: name.into(),
            label: label.into(),
            field_type: FieldType::from_sf(ty),
            calculated,
        }
    }

    fn describe() -> Vec<FieldInfo> {
        vec![
            field("Active__c", "Active", "boolean", false),
            field("HL_Member_Type__c", "Member Type", "picklist", false),
            field("HL_Interests__c", "Interests", "multipicklist", false),
            field("HL_Staff__c", "Staff Member", "boolean", false),
            field("HL_Years__c", "Years", "double", false),
            field("HL_Joined__c", "Joined", "date", false),
            field("HL_Region__c", "Region", "string", false),
            field("HL_Chapter__c", "Chapter", "picklist", false),
        ]
    }

    fn record_types() -> Vec<RecordTypeInfo> {
        vec![RecordTypeInfo {
            id: "0125g000000AbCd".parse().unwrap(),
            name: "Partner Contact".into(),
            developer_name: "Partner".into(),
            active: true,
        }]
    }

    fn cfg() -> ContactsConfig {
        ContactsConfig {
            active_field: Some("Active__c".into()),
            community_fields: vec!["HL_Chapter__c".into()],
            record_type_groups: true,
            ..ContactsConfig::default()
        }
    }

    fn contact(extra: Value) -> Map<String, Value> {
        let mut base = json!({
            "attributes": {"type": "Contact", "url": "/services/data/v62.0/sobjects/Contact/003000000000001AAA"},
            "Id": "003000000000001",
            "FirstName": "  Ada ",
            "LastName": "Lovelace",
            "Email": "ada@example.org",
            "Title": "",
            "Phone": null,
            "MobilePhone": "+44 1",
            "MailingStreet": "1 Main St",
            "MailingCity": "London",
            "MailingState": null,
            "MailingPostalCode": "N1",
            "MailingCountry": "UK",
            "HasOptedOutOfEmail": false,
            "IsDeleted": false,
            "SystemModstamp": "2026-11-24T10:00:00.000+0000",
            "AccountId": "001000000000001",
            "Active__c": true
        });
        let obj = base.as_object_mut().unwrap();
        if let Value::Object(extra) = extra {
            obj.extend(extra);
        }
        obj.clone()
    }

    fn map_with(fields: &Map<String, Value>, cfg: &ContactsConfig) -> Member {
        let schema = ContactSchema::build(&describe(), &record_types(), cfg).unwrap();
        map_contact(
            &ContactInput {
                fields,
                account_name: Some(" Analytical Engines "),
            },
            &schema,
            cfg,
        )
        .unwrap()
    }

    fn map(extra: Value) -> Member {
        map_with(&contact(extra), &cfg())
    }

    fn keys(groups: &[Group]) -> Vec<&str> {
        groups.iter().map(|g| g.key.as_str()).collect()
    }

    #[test]
    fn rule_member_key_is_18_char_id() {
        let m = map(json!({}));
        assert_eq!(m.legacy_contact_key.as_str(), "003000000000001AAA");
        let m = map(json!({"Id": "003000000000001AAA"}));
        assert_eq!(m.legacy_contact_key.as_str(), "003000000000001AAA");
    }

    #[test]
    fn rule_null_or_empty_is_null_and_text_is_trimmed() {
        let m = map(json!({"LastName": "  ", "FirstName": " Ada\u{e9} "}));
        assert_eq!(m.first_name.as_deref(), Some("Ada\u{e9}"));
        assert_eq!(m.last_name, None);
        assert_eq!(m.title, None);
        assert_eq!(m.phone, None);
        assert_eq!(m.address.state_province, None);
        assert_eq!(m.email_address.as_deref(), Some("ada@example.org"));
    }

    #[test]
    fn rule_field_names_match_case_insensitively() {
        let mut rec = contact(json!({"hl_member_type__c": "Gold", "MAILINGCITY": "Leeds"}));
        rec.remove("MailingCity");
        let m = map_with(&rec, &cfg());
        assert_eq!(m.address.city.as_deref(), Some("Leeds"));
        // The key takes describe's spelling, not the record's, so it is stable.
        assert_eq!(keys(&m.security_groups), ["HL_Member_Type__c:Gold"]);
    }

    #[test]
    fn rule_demographics_company_and_mailing_address() {
        let m = map(json!({}));
        assert_eq!(m.company_name.as_deref(), Some("Analytical Engines"));
        assert_eq!(m.mobile_phone.as_deref(), Some("+44 1"));
        assert_eq!(
            m.address,
            Address {
                street: Some("1 Main St".into()),
                city: Some("London".into()),
                state_province: None,
                postal_code: Some("N1".into()),
                country: Some("UK".into()),
            }
        );
        let schema = ContactSchema::build(&describe(), &[], &ContactsConfig::default()).unwrap();
        let fields = contact(json!({}));
        let no_account = map_contact(
            &ContactInput {
                fields: &fields,
                account_name: None,
            },
            &schema,
            &ContactsConfig::default(),
        )
        .unwrap();
        assert_eq!(no_account.company_name, None);
    }

    #[test]
    fn rule_picklist_value_becomes_group_named_by_value() {
        let m = map(json!({"HL_Member_Type__c": " Gold "}));
        assert_eq!(
            m.security_groups,
            vec![Group {
                key: GroupKey::field_value("HL_Member_Type__c", "Gold"),
                name: "Gold".into()
            }]
        );
    }

    #[test]
    fn rule_text_value_becomes_group() {
        let m = map(json!({"HL_Region__c": "North East"}));
        assert_eq!(keys(&m.security_groups), ["HL_Region__c:North East"]);
    }

    #[test]
    fn rule_multi_select_gives_one_group_per_value() {
        let m = map(json!({"HL_Interests__c": "Art;Music ; Science;;"}));
        assert_eq!(
            keys(&m.security_groups),
            [
                "HL_Interests__c:Art",
                "HL_Interests__c:Music",
                "HL_Interests__c:Science"
            ]
        );
        assert_eq!(m.security_groups[1].name, "Music");
    }

    #[test]
    fn rule_checkbox_true_is_group_named_after_label() {
        let m = map(json!({"HL_Staff__c": true}));
        assert_eq!(
            m.security_groups,
            vec![Group {
                key: GroupKey::checkbox("HL_Staff__c"),
                name: "Staff Member".into()
            }]
        );
    }

    #[test]
    fn rule_checkbox_false_is_no_group() {
        assert!(
            map(json!({"HL_Staff__c": false}))
                .security_groups
                .is_empty()
        );
        assert!(map(json!({"HL_Staff__c": null})).security_groups.is_empty());
    }

    #[test]
    fn rule_whole_number_has_no_trailing_zero() {
        assert_eq!(
            keys(&map(json!({"HL_Years__c": 3.0})).security_groups),
            ["HL_Years__c:3"]
        );
        assert_eq!(
            keys(&map(json!({"HL_Years__c": 3})).security_groups),
            ["HL_Years__c:3"]
        );
        assert_eq!(
            keys(&map(json!({"HL_Years__c": 2.5})).security_groups),
            ["HL_Years__c:2.5"]
        );
        assert_eq!(
            keys(&map(json!({"HL_Years__c": -4.0})).security_groups),
            ["HL_Years__c:-4"]
        );
    }

    #[test]
    fn rule_date_becomes_its_text() {
        let m = map(json!({"HL_Joined__c": "2020-02-29"}));
        assert_eq!(keys(&m.security_groups), ["HL_Joined__c:2020-02-29"]);
        assert_eq!(m.security_groups[0].name, "2020-02-29");
    }

    #[test]
    fn rule_group_keys_are_stable_and_name_follows_label() {
        let mut fields = describe();
        fields[3].label = "Staff (renamed)".into();
        let c = cfg();
        let schema = ContactSchema::build(&fields, &record_types(), &c).unwrap();
        let rec = contact(json!({"HL_Staff__c": true}));
        let m = map_contact(
            &ContactInput {
                fields: &rec,
                account_name: None,
            },
            &schema,
            &c,
        )
        .unwrap();
        assert_eq!(m.security_groups[0].key.as_str(), "HL_Staff__c");
        assert_eq!(m.security_groups[0].name, "Staff (renamed)");
    }

    #[test]
    fn rule_record_type_group_named_by_name_keyed_by_developer_name() {
        let m = map(json!({"RecordTypeId": "0125g000000AbCd"}));
        assert_eq!(
            m.security_groups,
            vec![Group {
                key: GroupKey::record_type("Partner"),
                name: "Partner Contact".into()
            }]
        );
    }

    #[test]
    fn rule_record_type_groups_off_by_default() {
        let c = ContactsConfig {
            record_type_groups: false,
            ..cfg()
        };
        let m = map_with(&contact(json!({"RecordTypeId": "0125g000000AbCd"})), &c);
        assert!(m.security_groups.is_empty());
    }

    #[test]
    fn rule_unknown_record_type_is_a_retryable_error() {
        let c = cfg();
        let schema = ContactSchema::build(&describe(), &record_types(), &c).unwrap();
        let rec = contact(json!({"RecordTypeId": "012000000000009"}));
        let err = map_contact(
            &ContactInput {
                fields: &rec,
                account_name: None,
            },
            &schema,
            &c,
        )
        .unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }

    #[test]
    fn rule_community_fields_feed_community_groups_only() {
        let m = map(json!({"HL_Chapter__c": "Ohio", "HL_Member_Type__c": "Gold"}));
        assert_eq!(keys(&m.community_groups), ["HL_Chapter__c:Ohio"]);
        assert_eq!(keys(&m.security_groups), ["HL_Member_Type__c:Gold"]);
    }

    #[test]
    fn rule_active_field_false_or_null_is_inactive() {
        assert!(map(json!({})).is_active);
        assert!(!map(json!({"Active__c": false})).is_active);
        assert!(!map(json!({"Active__c": null})).is_active);
    }

    #[test]
    fn rule_no_active_field_means_active() {
        let c = ContactsConfig {
            active_field: None,
            ..cfg()
        };
        assert!(map_with(&contact(json!({"Active__c": false})), &c).is_active);
    }

    #[test]
    fn rule_filter_list_requires_a_listed_group_by_name_or_key() {
        let by_name = ContactsConfig {
            security_group_filter: vec!["Gold".into()],
            ..cfg()
        };
        assert!(map_with(&contact(json!({"HL_Member_Type__c": "Gold"})), &by_name).is_active);
        assert!(!map_with(&contact(json!({"HL_Member_Type__c": "Silver"})), &by_name).is_active);

        let by_key = ContactsConfig {
            security_group_filter: vec!["HL_Staff__c".into()],
            ..cfg()
        };
        assert!(map_with(&contact(json!({"HL_Staff__c": true})), &by_key).is_active);
    }

    #[test]
    fn rule_filter_list_counts_groups_of_any_kind() {
        let c = ContactsConfig {
            security_group_filter: vec!["Ohio".into(), "RecordType:Partner".into()],
            ..cfg()
        };
        assert!(map_with(&contact(json!({"HL_Chapter__c": "Ohio"})), &c).is_active);
        assert!(map_with(&contact(json!({"RecordTypeId": "0125g000000AbCdAAK"})), &c).is_active);
        assert!(!map_with(&contact(json!({})), &c).is_active);
    }

    #[test]
    fn rule_inactive_member_keeps_its_groups() {
        let m =
            map(json!({"Active__c": false, "HL_Member_Type__c": "Gold", "HL_Chapter__c": "Ohio"}));
        assert!(!m.is_active && !m.is_deleted);
        assert_eq!(keys(&m.security_groups), ["HL_Member_Type__c:Gold"]);
        assert_eq!(keys(&m.community_groups), ["HL_Chapter__c:Ohio"]);
    }

    #[test]
    fn rule_deleted_contact_is_deleted_inactive_without_groups() {
        let m =
            map(json!({"IsDeleted": true, "HL_Member_Type__c": "Gold", "HL_Chapter__c": "Ohio"}));
        assert!(m.is_deleted && !m.is_active);
        assert!(m.security_groups.is_empty() && m.community_groups.is_empty());
        assert_eq!(m.first_name, None);
        assert_eq!(
            m.updated_on,
            Some(
                chrono::Utc
                    .with_ymd_and_hms(2026, 11, 24, 10, 0, 0)
                    .unwrap()
            )
        );
    }

    #[test]
    fn rule_email_opt_out_follows_has_opted_out_of_email() {
        assert!(map(json!({"HasOptedOutOfEmail": true})).email_opt_out);
        assert!(!map(json!({"HasOptedOutOfEmail": false})).email_opt_out);
    }

    #[test]
    fn rule_updated_on_is_system_modstamp() {
        let m = map(json!({"SystemModstamp": "2026-11-24T11:30:00.000+0000"}));
        assert_eq!(
            m.updated_on,
            Some(
                chrono::Utc
                    .with_ymd_and_hms(2026, 11, 24, 11, 30, 0)
                    .unwrap()
            )
        );
        let schema = ContactSchema::build(&describe(), &record_types(), &cfg()).unwrap();
        let rec = contact(json!({"SystemModstamp": "last tuesday"}));
        let err = map_contact(
            &ContactInput {
                fields: &rec,
                account_name: None,
            },
            &schema,
            &cfg(),
        )
        .unwrap_err();
        assert!(matches!(err, MappingError::BadDate { .. }));
        assert!(!err.is_retryable());
    }

    #[test]
    fn rule_groups_are_deduplicated_and_sorted_by_key() {
        let m = map(
            json!({"HL_Interests__c": "Zen;Art;Zen", "HL_Member_Type__c": "Gold", "HL_Staff__c": true}),
        );
        assert_eq!(
            keys(&m.security_groups),
            [
                "HL_Interests__c:Art",
                "HL_Interests__c:Zen",
                "HL_Member_Type__c:Gold",
                "HL_Staff__c"
            ]
        );
    }

    #[test]
    fn rule_missing_or_bad_id_is_an_error() {
        let schema = ContactSchema::build(&describe(), &record_types(), &cfg()).unwrap();
        let mut rec = contact(json!({}));
        rec.remove("Id");
        let err = map_contact(
            &ContactInput {
                fields: &rec,
                account_name: None,
            },
            &schema,
            &cfg(),
        )
        .unwrap_err();
        assert!(matches!(err, MappingError::MissingField { .. }), "{err}");
        let rec = contact(json!({"Id": "003xyz"}));
        let err = map_contact(
            &ContactInput {
                fields: &rec,
                account_name: None,
            },
            &schema,
            &cfg(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("003xyz"), "{err}");
    }

    #[test]
    fn unchanged_mapping_with_new_modstamp_hashes_the_same() {
        let a = map(json!({"HL_Member_Type__c": "Gold"}));
        let b = map(
            json!({"HL_Member_Type__c": "Gold", "SystemModstamp": "2026-12-01T00:00:00.000+0000"}),
        );
        assert_eq!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn number_format() {
        let n = |v: Value| format_number(v.as_number().unwrap());
        assert_eq!(n(json!(3.0)), "3");
        assert_eq!(n(json!(2.5)), "2.5");
        assert_eq!(n(json!(0.1)), "0.1");
        assert_eq!(n(json!(-7)), "-7");
        assert_eq!(n(json!(1e20)), "100000000000000000000");
        assert_eq!(n(json!(u64::MAX)), u64::MAX.to_string());
    }

    // Property tests over generated Contacts.

    const VALUES: &[&str] = &["Gold", "Silver", "Art", "Music", "Ohio", "Texas"];

    #[derive(Debug, Clone)]
    struct Generated {
        member_type: Option<&'static str>,
        interests: Vec<&'static str>,
        staff: Option<bool>,
        years: Option<f64>,
        chapter: Option<&'static str>,
        active: Option<bool>,
        deleted: bool,
        record_type: bool,
        filter: Vec<&'static str>,
    }

    fn generated() -> impl Strategy<Value = Generated> {
        let value = proptest::sample::select(VALUES);
        (
            proptest::option::of(value.clone()),
            proptest::collection::vec(value.clone(), 0..5),
            proptest::option::of(any::<bool>()),
            proptest::option::of(prop_oneof![(0i32..50).prop_map(f64::from), (0.0f64..50.0)]),
            proptest::option::of(value.clone()),
            proptest::option::of(any::<bool>()),
            any::<bool>(),
            any::<bool>(),
            proptest::collection::vec(
                prop_oneof![value, Just("HL_Staff__c"), Just("RecordType:Partner")],
                0..3,
            ),
        )
            .prop_map(
                |(
                    member_type,
                    interests,
                    staff,
                    years,
                    chapter,
                    active,
                    deleted,
                    record_type,
                    filter,
                )| {
                    Generated {
                        member_type,
                        interests,
                        staff,
                        years,
                        chapter,
                        active,
                        deleted,
                        record_type,
                        filter,
                    }
                },
            )
    }

    fn record(g: &Generated, interests: &[&str]) -> Map<String, Value> {
        contact(json!({
            "HL_Member_Type__c": g.member_type,
            "HL_Interests__c": if interests.is_empty() { Value::Null } else { json!(interests.join(";")) },
            "HL_Staff__c": g.staff,
            "HL_Years__c": g.years,
            "HL_Chapter__c": g.chapter,
            "Active__c": g.active,
            "IsDeleted": g.deleted,
            "RecordTypeId": if g.record_type { json!("0125g000000AbCd") } else { Value::Null },
        }))
    }

    fn cfg_for(g: &Generated) -> ContactsConfig {
        ContactsConfig {
            security_group_filter: g.filter.iter().map(|s| (*s).to_owned()).collect(),
            ..cfg()
        }
    }

    proptest! {
        #[test]
        fn prop_mapping_is_deterministic(g in generated()) {
            let rec = record(&g, &g.interests);
            let c = cfg_for(&g);
            let a = map_with(&rec, &c);
            let b = map_with(&rec.clone(), &c);
            prop_assert_eq!(a.content_hash(), b.content_hash());
            prop_assert_eq!(a, b);
        }

        #[test]
        fn prop_hash_ignores_multi_select_and_field_order(g in generated(), seed in any::<u64>()) {
            let c = cfg_for(&g);
            let a = map_with(&record(&g, &g.interests), &c);
            let mut shuffled = g.interests.clone();
            shuffled.reverse();
            if !shuffled.is_empty() {
                let by = (seed as usize) % shuffled.len();
                shuffled.rotate_left(by);
            }
            // Field order: rebuild the map with keys inserted in reverse.
            let forward = record(&g, &shuffled);
            let reversed: Map<String, Value> = forward.into_iter().rev().collect();
            let b = map_with(&reversed, &c);
            prop_assert_eq!(a.content_hash(), b.content_hash());
            prop_assert_eq!(keys(&a.security_groups), keys(&b.security_groups));
        }

        #[test]
        fn prop_member_outside_filter_or_unticked_is_never_active(g in generated()) {
            let c = cfg_for(&g);
            let m = map_with(&record(&g, &g.interests), &c);
            let in_filter = c.security_group_filter.is_empty()
                || m.security_groups.iter().chain(&m.community_groups)
                    .any(|grp| c.security_group_filter.iter().any(|f| f == &grp.name || f == grp.key.as_str()));
            if g.active != Some(true) || g.deleted || !in_filter {
                prop_assert!(!m.is_active);
            } else {
                prop_assert!(m.is_active);
            }
        }

        #[test]
        fn prop_deleted_member_never_has_groups(g in generated()) {
            let m = map_with(&record(&g, &g.interests), &cfg_for(&g));
            if g.deleted {
                prop_assert!(m.is_deleted && !m.is_active);
                prop_assert!(m.security_groups.is_empty() && m.community_groups.is_empty());
            } else {
                prop_assert!(!m.is_deleted);
            }
        }

        #[test]
        fn prop_groups_sorted_and_unique(g in generated()) {
            let m = map_with(&record(&g, &g.interests), &cfg_for(&g));
            for groups in [&m.security_groups, &m.community_groups] {
                prop_assert!(groups.windows(2).all(|w| w[0].key < w[1].key));
            }
        }
    }
}
