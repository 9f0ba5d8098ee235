//! Contact → member: every rule of SPEC.md §2 lives in this file.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::config::{Config, ContactsConfig, EventsConfig};
use crate::id::{IdError, SfId};
use crate::member::{Address, Email, Group, GroupKey, Member, Phone};
use crate::schema::{ContactSchema, FieldInfo, FieldType};
use crate::time::parse_sf_datetime;

/// One Contact as the REST API returns it, the name of its Account (read separately by
/// `AccountId`, because batch reads cannot follow relationships), and its memberships of event
/// Campaigns.
#[derive(Debug, Clone, Copy)]
pub struct ContactInput<'a> {
    /// Field name → value; names are matched case-insensitively and `attributes` is ignored.
    pub fields: &'a Map<String, Value>,
    /// The `Name` of the Contact's Account; `None` when it has none.
    pub account_name: Option<&'a str>,
    /// Every CampaignMember of this Contact whose Campaign is of `events.campaign_type`,
    /// whatever its status (the mapping decides which statuses count). Empty when events are
    /// disabled. A caller that could not read them must not map the Contact at all: a push
    /// without them would remove the member's registrations.
    pub registrations: &'a [CampaignMembership],
}

/// A Contact's membership of an event Campaign, as the Member Refresh reads it
/// (`CampaignId`, `Campaign.Name`, `Status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignMembership {
    /// The Campaign's Id: `CampaignId`.
    pub campaign_id: SfId,
    /// `Campaign.Name`.
    pub campaign_name: Option<String>,
    /// The CampaignMember's `Status`, e.g. "Registered".
    pub status: Option<String>,
}

/// Why a record cannot be mapped. Each message names the record and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// A field the mapping needs is not in the record.
    #[error("the {object} record has no `{field}` field; the query must select it")]
    MissingField {
        /// The sObject, e.g. "Contact".
        object: &'static str,
        /// The field's API name.
        field: String,
    },
    /// An Id field does not hold a Salesforce Id.
    #[error("the {object} record's `{field}` is not a Salesforce Id: {source}")]
    BadId {
        /// The sObject, e.g. "Contact".
        object: &'static str,
        /// The field's API name.
        field: String,
        /// Why the value is not an Id.
        #[source]
        source: IdError,
    },
    #[error(
        "{object} {id}: `{field}` holds {value:?}, which is not a Salesforce datetime or date; check the field's type in Setup"
    )]
    /// A date or datetime field holds something else.
    BadDate {
        /// The sObject, e.g. "Contact".
        object: &'static str,
        /// The record's Id, as read.
        id: String,
        /// The field's API name.
        field: String,
        /// The value found.
        value: String,
    },
    #[error(
        "Contact {contact}: its Record Type {record_type} is not in Contact's describe; it was probably created after the describe was read, and the next run reads it again"
    )]
    /// The Contact's Record Type is newer than the describe in hand.
    UnknownRecordType {
        /// The Contact's Id.
        contact: SfId,
        /// Its `RecordTypeId`.
        record_type: SfId,
    },
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

/// A Contact's groups as they are found, by (GroupType, id): sorted, and each one once.
type GroupSet = BTreeMap<(String, GroupKey), Group>;

/// Adds `group` unless one of its GroupType and id is there already: the first found wins.
fn add_group(out: &mut GroupSet, group: Group) {
    out.entry((group.group_type.clone(), group.key.clone()))
        .or_insert(group);
}

/// The groups one field contributes, per its type, as groups of `group_type`.
fn field_groups(field: &FieldInfo, value: Option<&Value>, group_type: &str, out: &mut GroupSet) {
    let Some(value) = value else { return };
    let mut add = |key: GroupKey, name: String| add_group(out, Group::new(group_type, key, name));
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

/// `MailingStreet` split at its first line break: line 1, and the rest as line 2.
fn split_street(street: Option<String>) -> (Option<String>, Option<String>) {
    let Some(street) = street else {
        return (None, None);
    };
    let non_empty = |s: &str| {
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_owned())
    };
    match street.split_once('\n') {
        None => (non_empty(&street), None),
        Some((first, rest)) => (non_empty(first), non_empty(rest)),
    }
}

/// The ISO 3166-1 alpha-2 code of a country given as a name, an alpha-2 or an alpha-3 code, in
/// any case ("United States", "USA", "us" → "US"); `None` when the text names no country. The
/// table is the `celes` crate's, names and common aliases included.
pub fn country_code(text: &str) -> Option<String> {
    use std::str::FromStr;
    let text = text.trim();
    if text.is_empty() || text.chars().all(|c| c.is_ascii_digit()) {
        // Numeric codes ("840") are not a way people write a country in an address.
        return None;
    }
    let squeezed: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '.' | ',' | '\'' | '-' | '(' | ')'))
        .collect();
    celes::Country::from_str(text)
        .or_else(|_| celes::Country::from_str(&squeezed))
        .ok()
        .map(|country| country.alpha2.to_ascii_uppercase())
}

/// The member's one address entry, or none when every part is empty.
fn mailing_address(fields: &Fields<'_>) -> Option<Address> {
    let (line1, line2) = split_street(fields.text("MailingStreet"));
    let country_code = fields
        .text("MailingCountryCode")
        .and_then(|code| country_code(&code))
        .or_else(|| fields.text("MailingCountry").and_then(|c| country_code(&c)));
    let address = Address {
        line1,
        line2,
        city: fields.text("MailingCity"),
        state_province: fields.text("MailingState"),
        postal_code: fields.text("MailingPostalCode"),
        country_code,
        address_type: ADDRESS_TYPE_MAIN.to_owned(),
        is_primary: true,
    };
    (!address.is_empty()).then_some(address)
}

/// `AddressType` of the mailing address.
pub const ADDRESS_TYPE_MAIN: &str = "Main";
/// `EmailType` of the Contact's `Email`.
pub const EMAIL_TYPE_PRIMARY: &str = "Primary Email";
/// Contact phone fields and their `PhoneType`, in order of preference.
pub const PHONE_FIELDS: &[(&str, &str)] = &[
    ("Phone", "Work"),
    ("MobilePhone", "Mobile"),
    ("HomePhone", "Home"),
];

/// One entry per phone present; the first present in [`PHONE_FIELDS`] order is preferred.
fn phones(fields: &Fields<'_>) -> Vec<Phone> {
    let mut out: Vec<Phone> = PHONE_FIELDS
        .iter()
        .filter_map(|(field, phone_type)| {
            fields.text(field).map(|number| Phone {
                number,
                phone_type: (*phone_type).to_owned(),
                is_preferred: false,
            })
        })
        .collect();
    if let Some(first) = out.first_mut() {
        first.is_preferred = true;
    }
    out
}

/// Map one Contact to the member record Higher Logic receives (SPEC.md §2).
pub fn map_contact(
    input: &ContactInput<'_>,
    schema: &ContactSchema,
    cfg: &Config,
) -> Result<Member, MappingError> {
    let fields = Fields::new(input.fields);
    let id = fields.id("Contact", "Id")?;
    let modstamp = modstamp(&fields, &id)?;
    if fields.flag("IsDeleted") {
        return Ok(Member::deleted(id, modstamp));
    }
    let groups = groups(input, &fields, &id, schema, cfg)?;
    // Not deleted: that case returned above.
    let is_member = is_active(&fields, schema) && passes_filter(&groups, &cfg.contacts);

    let primary_email = fields.text("Email");
    Ok(Member {
        contact_id: id,
        first_name: fields.text("FirstName"),
        last_name: fields.text("LastName"),
        emails: primary_email
            .iter()
            .map(|address| Email {
                address: address.clone(),
                email_type: EMAIL_TYPE_PRIMARY.to_owned(),
                is_preferred: true,
            })
            .collect(),
        primary_email,
        organization_name: input
            .account_name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        title: fields.text("Title"),
        is_member,
        do_not_email: fields.flag("HasOptedOutOfEmail"),
        // An inactive member holds no group: that is what removes its access, since Higher
        // Logic replaces the whole record.
        groups: if is_member { groups } else { Vec::new() },
        addresses: mailing_address(&fields).into_iter().collect(),
        phones: phones(&fields),
        is_deleted: false,
        modstamp,
    })
}

/// The Contact's `SystemModstamp`: `None` when absent, an error naming the Contact when it is
/// not a Salesforce datetime.
fn modstamp(fields: &Fields<'_>, id: &SfId) -> Result<Option<DateTime<Utc>>, MappingError> {
    let Some(text) = fields.text("SystemModstamp") else {
        return Ok(None);
    };
    match parse_sf_datetime(&text) {
        Some(at) => Ok(Some(at)),
        None => Err(MappingError::BadDate {
            object: "Contact",
            id: id.to_string(),
            field: "SystemModstamp".into(),
            value: text,
        }),
    }
}

/// Every group the Contact holds, sorted by GroupType then id, each (type, id) once (the first
/// found wins): the security groups of its prefixed fields and Record Type, the community
/// groups, then its event registrations.
fn groups(
    input: &ContactInput<'_>,
    fields: &Fields<'_>,
    id: &SfId,
    schema: &ContactSchema,
    cfg: &Config,
) -> Result<Vec<Group>, MappingError> {
    let contacts = &cfg.contacts;
    let mut groups = GroupSet::new();
    for field in schema.security_group_fields() {
        field_groups(
            field,
            fields.get(&field.name),
            &contacts.security_group_type,
            &mut groups,
        );
    }
    record_type_group(
        fields,
        id,
        schema,
        &contacts.security_group_type,
        &mut groups,
    )?;
    for field in schema.community_group_fields() {
        let group_type = contacts
            .community_group_type(&field.name)
            .unwrap_or(crate::config::DEFAULT_COMMUNITY_GROUP_TYPE);
        field_groups(field, fields.get(&field.name), group_type, &mut groups);
    }
    if cfg.events.enabled {
        event_groups(input.registrations, &cfg.events, &mut groups);
    }
    Ok(groups.into_values().collect())
}

/// With `record_type_groups` on, the Contact's Record Type as a group of `group_type`, keyed by
/// its DeveloperName and named by its Name. A Record Type missing from the describe in hand is
/// an error (retryable: the next run reads the describe again).
fn record_type_group(
    fields: &Fields<'_>,
    id: &SfId,
    schema: &ContactSchema,
    group_type: &str,
    out: &mut GroupSet,
) -> Result<(), MappingError> {
    if !schema.record_type_groups() {
        return Ok(());
    }
    let Some(rt_id) = fields.optional_id("Contact", "RecordTypeId")? else {
        return Ok(());
    };
    let rt = schema
        .record_type(&rt_id)
        .ok_or_else(|| MappingError::UnknownRecordType {
            contact: id.clone(),
            record_type: rt_id.clone(),
        })?;
    let key = GroupKey::record_type(&rt.developer_name);
    add_group(out, Group::new(group_type, key, rt.name.clone()));
    Ok(())
}

/// One `events.group_type` group per registration whose status is one of
/// `events.registered_statuses` (any case): keyed by the Campaign's Id, named by its Name (its
/// Id when it has none), its role the status.
fn event_groups(registrations: &[CampaignMembership], events: &EventsConfig, out: &mut GroupSet) {
    for r in registrations {
        let Some(status) = r.status.as_deref().map(str::trim).filter(|s| {
            events
                .registered_statuses
                .iter()
                .any(|registered| registered.trim().eq_ignore_ascii_case(s))
        }) else {
            continue;
        };
        let name = r
            .campaign_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(r.campaign_id.as_str());
        let group = Group {
            role: status.to_owned(),
            ..Group::new(&events.group_type, GroupKey::event(&r.campaign_id), name)
        };
        add_group(out, group);
    }
}

/// Whether the Contact's active field (when the config names one) is true; without one,
/// every Contact is active.
fn is_active(fields: &Fields<'_>, schema: &ContactSchema) -> bool {
    match schema.active_field() {
        None => true,
        Some(field) => fields.flag(&field.name),
    }
}

/// Whether the Contact holds a group of `security_group_filter`, by name or id; an empty list
/// lets every Contact through.
fn passes_filter(groups: &[Group], contacts: &ContactsConfig) -> bool {
    contacts.security_group_filter.is_empty()
        || groups.iter().any(|g| {
            contacts
                .security_group_filter
                .iter()
                .any(|f| f == &g.name || f == g.key.as_str())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CommunityField, ContactsConfig, EventsConfig};
    use crate::schema::RecordTypeInfo;
    use chrono::{TimeZone, Utc};
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
            field("HL_Committee__c", "Committee", "multipicklist", false),
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

    fn cfg() -> Config {
        let mut c = Config::with_base_url("https://hl.example.org/v2");
        c.contacts = ContactsConfig {
            active_field: Some("Active__c".into()),
            community_fields: vec![
                CommunityField::new("HL_Chapter__c", "Chapter"),
                CommunityField::new("HL_Committee__c", "Committee"),
            ],
            record_type_groups: true,
            ..ContactsConfig::default()
        };
        c.events = EventsConfig {
            enabled: true,
            ..EventsConfig::default()
        };
        c
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
            "HomePhone": null,
            "MailingStreet": "1 Main St",
            "MailingCity": "London",
            "MailingState": null,
            "MailingPostalCode": "N1",
            "MailingCountry": "United Kingdom",
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

    fn map_full(
        fields: &Map<String, Value>,
        cfg: &Config,
        registrations: &[CampaignMembership],
        account_name: Option<&str>,
    ) -> Result<Member, MappingError> {
        let schema = ContactSchema::build(&describe(), &record_types(), cfg).unwrap();
        map_contact(
            &ContactInput {
                fields,
                account_name,
                registrations,
            },
            &schema,
            cfg,
        )
    }

    fn map_with(fields: &Map<String, Value>, cfg: &Config) -> Member {
        map_full(fields, cfg, &[], Some(" Analytical Engines ")).unwrap()
    }

    fn map(extra: Value) -> Member {
        map_with(&contact(extra), &cfg())
    }

    fn ids(m: &Member, group_type: &str) -> Vec<String> {
        m.groups
            .iter()
            .filter(|g| g.group_type == group_type)
            .map(|g| g.key.to_string())
            .collect()
    }

    fn security(m: &Member) -> Vec<String> {
        ids(m, "Membership")
    }

    fn registration(campaign: &str, name: &str, status: &str) -> CampaignMembership {
        CampaignMembership {
            campaign_id: campaign.parse().unwrap(),
            campaign_name: Some(name.into()),
            status: Some(status.into()),
        }
    }

    #[test]
    fn rule_member_key_is_18_char_id() {
        let m = map(json!({}));
        assert_eq!(m.contact_id.as_str(), "003000000000001AAA");
        let m = map(json!({"Id": "003000000000001AAA"}));
        assert_eq!(m.contact_id.as_str(), "003000000000001AAA");
    }

    #[test]
    fn rule_null_or_empty_is_left_out_and_text_is_trimmed_unicode_untouched() {
        let m = map(json!({"LastName": "  ", "FirstName": " Ad\u{e9}\u{0301}l\u{e4} "}));
        assert_eq!(m.first_name.as_deref(), Some("Ad\u{e9}\u{0301}l\u{e4}"));
        assert_eq!(m.last_name, None);
        assert_eq!(m.title, None);
        assert_eq!(m.addresses[0].state_province, None);
        assert_eq!(m.primary_email.as_deref(), Some("ada@example.org"));
    }

    #[test]
    fn rule_field_names_match_case_insensitively() {
        let mut rec = contact(json!({"hl_member_type__c": "Gold", "MAILINGCITY": "Leeds"}));
        rec.remove("MailingCity");
        let m = map_with(&rec, &cfg());
        assert_eq!(m.addresses[0].city.as_deref(), Some("Leeds"));
        // The id takes describe's spelling, not the record's, so it is stable.
        assert_eq!(security(&m), ["HL_Member_Type__c:Gold"]);
    }

    #[test]
    fn rule_cursor_and_active_fields_never_become_groups() {
        let mut fields = describe();
        fields.push(field("HL_Active__c", "Active", "boolean", false));
        fields.push(field("HL_Mod_Date__c", "HL Mod Date", "datetime", false));
        let mut c = cfg();
        c.contacts.active_field = Some("HL_Active__c".into());
        c.salesforce.cursor_field = "HL_Mod_Date__c".into();
        let schema = ContactSchema::build(&fields, &record_types(), &c).unwrap();
        let rec = contact(json!({
            "HL_Active__c": true, "HL_Mod_Date__c": "2026-11-24T10:00:00.000+0000",
            "HL_Member_Type__c": "Gold"
        }));
        let m = map_contact(
            &ContactInput {
                fields: &rec,
                account_name: None,
                registrations: &[],
            },
            &schema,
            &c,
        )
        .unwrap();
        assert!(m.is_member, "the active field still decides who is active");
        assert_eq!(security(&m), ["HL_Member_Type__c:Gold"]);
    }

    #[test]
    fn rule_picklist_value_becomes_group_of_the_security_type() {
        let m = map(json!({"HL_Member_Type__c": " Gold "}));
        assert_eq!(
            m.groups,
            vec![Group {
                group_type: "Membership".into(),
                key: GroupKey::field_value("HL_Member_Type__c", "Gold"),
                name: "Gold".into(),
                role: String::new(),
            }]
        );
        let mut c = cfg();
        c.contacts.security_group_type = "Security".into();
        let m = map_with(&contact(json!({"HL_Member_Type__c": "Gold"})), &c);
        assert_eq!(ids(&m, "Security"), ["HL_Member_Type__c:Gold"]);
    }

    #[test]
    fn rule_text_value_becomes_group() {
        let m = map(json!({"HL_Region__c": "North East"}));
        assert_eq!(security(&m), ["HL_Region__c:North East"]);
    }

    #[test]
    fn rule_multi_select_gives_one_group_per_value() {
        let m = map(json!({"HL_Interests__c": "Art;Music ; Science;;"}));
        assert_eq!(
            security(&m),
            [
                "HL_Interests__c:Art",
                "HL_Interests__c:Music",
                "HL_Interests__c:Science"
            ]
        );
        assert_eq!(m.groups[1].name, "Music");
    }

    #[test]
    fn rule_checkbox_true_is_group_named_after_label() {
        let m = map(json!({"HL_Staff__c": true}));
        assert_eq!(
            m.groups,
            vec![Group::new(
                "Membership",
                GroupKey::checkbox("HL_Staff__c"),
                "Staff Member"
            )]
        );
    }

    #[test]
    fn rule_checkbox_false_is_no_group() {
        assert!(map(json!({"HL_Staff__c": false})).groups.is_empty());
        assert!(map(json!({"HL_Staff__c": null})).groups.is_empty());
    }

    #[test]
    fn rule_whole_number_has_no_trailing_zero() {
        assert_eq!(
            security(&map(json!({"HL_Years__c": 3.0}))),
            ["HL_Years__c:3"]
        );
        assert_eq!(security(&map(json!({"HL_Years__c": 3}))), ["HL_Years__c:3"]);
        assert_eq!(
            security(&map(json!({"HL_Years__c": 2.5}))),
            ["HL_Years__c:2.5"]
        );
        assert_eq!(
            security(&map(json!({"HL_Years__c": -4.0}))),
            ["HL_Years__c:-4"]
        );
    }

    #[test]
    fn rule_date_becomes_its_text() {
        let m = map(json!({"HL_Joined__c": "2020-02-29"}));
        assert_eq!(security(&m), ["HL_Joined__c:2020-02-29"]);
        assert_eq!(m.groups[0].name, "2020-02-29");
    }

    #[test]
    fn rule_group_ids_are_stable_and_name_follows_label() {
        let mut fields = describe();
        fields[3].label = "Staff (renamed)".into();
        let c = cfg();
        let schema = ContactSchema::build(&fields, &record_types(), &c).unwrap();
        let rec = contact(json!({"HL_Staff__c": true}));
        let m = map_contact(
            &ContactInput {
                fields: &rec,
                account_name: None,
                registrations: &[],
            },
            &schema,
            &c,
        )
        .unwrap();
        assert_eq!(m.groups[0].key.as_str(), "HL_Staff__c");
        assert_eq!(m.groups[0].name, "Staff (renamed)");
    }

    #[test]
    fn rule_record_type_group_named_by_name_keyed_by_developer_name() {
        let m = map(json!({"RecordTypeId": "0125g000000AbCd"}));
        assert_eq!(
            m.groups,
            vec![Group::new(
                "Membership",
                GroupKey::record_type("Partner"),
                "Partner Contact"
            )]
        );
    }

    #[test]
    fn rule_record_type_groups_off_by_default() {
        let mut c = cfg();
        c.contacts.record_type_groups = false;
        let m = map_with(&contact(json!({"RecordTypeId": "0125g000000AbCd"})), &c);
        assert!(m.groups.is_empty());
    }

    #[test]
    fn rule_unknown_record_type_is_a_retryable_error() {
        let err = map_full(
            &contact(json!({"RecordTypeId": "012000000000009"})),
            &cfg(),
            &[],
            None,
        )
        .unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }

    #[test]
    fn rule_community_fields_feed_groups_of_their_own_type_only() {
        let m = map(json!({
            "HL_Chapter__c": "Ohio", "HL_Committee__c": "Finance;Awards",
            "HL_Member_Type__c": "Gold"
        }));
        assert_eq!(ids(&m, "Chapter"), ["HL_Chapter__c:Ohio"]);
        assert_eq!(
            ids(&m, "Committee"),
            ["HL_Committee__c:Awards", "HL_Committee__c:Finance"]
        );
        assert_eq!(security(&m), ["HL_Member_Type__c:Gold"]);
    }

    #[test]
    fn rule_community_fields_as_a_list_are_of_type_community() {
        let mut c = cfg();
        c.contacts.community_fields = vec![CommunityField::new(
            "HL_Chapter__c",
            crate::config::DEFAULT_COMMUNITY_GROUP_TYPE,
        )];
        let m = map_with(&contact(json!({"HL_Chapter__c": "Ohio"})), &c);
        assert_eq!(ids(&m, "Community"), ["HL_Chapter__c:Ohio"]);
        assert!(security(&m).is_empty());
    }

    #[test]
    fn rule_registered_status_is_an_event_group_with_its_role() {
        let regs = [
            registration("701000000000001", " Annual Conference ", "Registered"),
            registration("701000000000002", "Gala", "attended"),
            registration("701000000000003", "Webinar", "Sent"),
            CampaignMembership {
                status: None,
                ..registration("701000000000004", "Dinner", "")
            },
        ];
        let m = map_full(&contact(json!({})), &cfg(), &regs, None).unwrap();
        let events: Vec<&Group> = m.event_groups("Event").collect();
        assert_eq!(
            events,
            [
                &Group {
                    group_type: "Event".into(),
                    key: GroupKey::event(&"701000000000001".parse().unwrap()),
                    name: "Annual Conference".into(),
                    role: "Registered".into(),
                },
                &Group {
                    group_type: "Event".into(),
                    key: GroupKey::event(&"701000000000002".parse().unwrap()),
                    name: "Gala".into(),
                    role: "attended".into(),
                },
            ]
        );
        assert_eq!(
            events[0].key.as_str(),
            "701000000000001AAA",
            "the 18-char Id"
        );
        let mut c = cfg();
        c.events.group_type = "Meeting".into();
        let m = map_full(&contact(json!({})), &c, &regs, None).unwrap();
        assert_eq!(m.event_groups("Meeting").count(), 2);
        c.events.enabled = false;
        let m = map_full(&contact(json!({})), &c, &regs, None).unwrap();
        assert!(m.groups.is_empty(), "no events: no registration groups");
    }

    #[test]
    fn rule_organization_title_and_email() {
        let m = map(json!({"Title": " Countess "}));
        assert_eq!(m.organization_name.as_deref(), Some("Analytical Engines"));
        assert_eq!(m.title.as_deref(), Some("Countess"));
        assert_eq!(m.primary_email.as_deref(), Some("ada@example.org"));
        assert_eq!(
            m.emails,
            vec![Email {
                address: "ada@example.org".into(),
                email_type: "Primary Email".into(),
                is_preferred: true,
            }]
        );
        let none = map_full(&contact(json!({"Email": " "})), &cfg(), &[], None).unwrap();
        assert_eq!(none.organization_name, None);
        assert_eq!(none.primary_email, None);
        assert!(none.emails.is_empty(), "an empty email gives no entry");
    }

    #[test]
    fn rule_phones_in_order_work_mobile_home_first_present_preferred() {
        let kinds = |m: &Member| -> Vec<(String, String, bool)> {
            m.phones
                .iter()
                .map(|p| (p.number.clone(), p.phone_type.clone(), p.is_preferred))
                .collect()
        };
        let all = map(json!({"Phone": "1", "MobilePhone": "2", "HomePhone": "3"}));
        assert_eq!(
            kinds(&all),
            [
                ("1".into(), "Work".into(), true),
                ("2".into(), "Mobile".into(), false),
                ("3".into(), "Home".into(), false)
            ]
        );
        let no_work = map(json!({"Phone": "", "MobilePhone": null, "HomePhone": " 3 "}));
        assert_eq!(kinds(&no_work), [("3".into(), "Home".into(), true)]);
        let none = map(json!({"MobilePhone": null}));
        assert!(none.phones.is_empty());
    }

    #[test]
    fn rule_mailing_address_street_split_at_first_line_break() {
        let m = map(json!({"MailingStreet": "Flat 2\r\n1 Main St\nBack door"}));
        let a = &m.addresses[0];
        assert_eq!(a.line1.as_deref(), Some("Flat 2"));
        assert_eq!(a.line2.as_deref(), Some("1 Main St\nBack door"));
        assert_eq!(a.city.as_deref(), Some("London"));
        assert_eq!(a.postal_code.as_deref(), Some("N1"));
        assert_eq!(a.address_type, "Main");
        assert!(a.is_primary);
        let one = map(json!({}));
        assert_eq!(one.addresses[0].line1.as_deref(), Some("1 Main St"));
        assert_eq!(one.addresses[0].line2, None);
        let empty = map(json!({
            "MailingStreet": null, "MailingCity": " ", "MailingPostalCode": null,
            "MailingCountry": null
        }));
        assert!(
            empty.addresses.is_empty(),
            "an empty address gives no entry"
        );
    }

    #[test]
    fn rule_country_code_from_the_code_field_else_the_country_name_or_code() {
        let code = |extra: Value| map(extra).addresses[0].country_code.clone();
        assert_eq!(
            code(json!({"MailingCountry": "United States"})).as_deref(),
            Some("US")
        );
        assert_eq!(
            code(json!({"MailingCountry": "USA"})).as_deref(),
            Some("US")
        );
        assert_eq!(code(json!({"MailingCountry": "us"})).as_deref(), Some("US"));
        assert_eq!(
            code(json!({"MailingCountry": "germany"})).as_deref(),
            Some("DE")
        );
        assert_eq!(
            code(json!({"MailingCountry": "FRA"})).as_deref(),
            Some("FR")
        );
        assert_eq!(code(json!({})).as_deref(), Some("GB"), "United Kingdom");
        assert_eq!(code(json!({"MailingCountry": "Atlantis"})), None);
        assert_eq!(
            code(json!({"MailingCountryCode": "CA", "MailingCountry": "Mexico"})).as_deref(),
            Some("CA"),
            "the org's country code wins"
        );
        assert_eq!(
            code(json!({"MailingCountryCode": null, "MailingCountry": "Mexico"})).as_deref(),
            Some("MX")
        );
    }

    #[test]
    fn country_codes() {
        for (text, want) in [
            ("United States of America", Some("US")),
            ("  canada ", Some("CA")),
            ("CAN", Some("CA")),
            ("gb", Some("GB")),
            ("Great Britain", Some("GB")),
            ("840", None),
            ("", None),
            ("Narnia", None),
        ] {
            assert_eq!(country_code(text).as_deref(), want, "{text:?}");
        }
    }

    #[test]
    fn rule_active_field_false_or_null_is_inactive() {
        assert!(map(json!({})).is_member);
        assert!(!map(json!({"Active__c": false})).is_member);
        assert!(!map(json!({"Active__c": null})).is_member);
    }

    #[test]
    fn rule_no_active_field_means_active() {
        let mut c = cfg();
        c.contacts.active_field = None;
        assert!(map_with(&contact(json!({"Active__c": false})), &c).is_member);
    }

    #[test]
    fn rule_filter_list_requires_a_listed_group_by_name_or_id() {
        let mut by_name = cfg();
        by_name.contacts.security_group_filter = vec!["Gold".into()];
        assert!(map_with(&contact(json!({"HL_Member_Type__c": "Gold"})), &by_name).is_member);
        assert!(!map_with(&contact(json!({"HL_Member_Type__c": "Silver"})), &by_name).is_member);

        let mut by_id = cfg();
        by_id.contacts.security_group_filter = vec!["HL_Staff__c".into()];
        assert!(map_with(&contact(json!({"HL_Staff__c": true})), &by_id).is_member);
    }

    #[test]
    fn rule_filter_list_counts_groups_of_any_kind() {
        let mut c = cfg();
        c.contacts.security_group_filter = vec![
            "Ohio".into(),
            "RecordType:Partner".into(),
            "701000000000001AAA".into(),
        ];
        assert!(map_with(&contact(json!({"HL_Chapter__c": "Ohio"})), &c).is_member);
        assert!(map_with(&contact(json!({"RecordTypeId": "0125g000000AbCdAAK"})), &c).is_member);
        let regs = [registration("701000000000001", "Gala", "Registered")];
        assert!(
            map_full(&contact(json!({})), &c, &regs, None)
                .unwrap()
                .is_member
        );
        assert!(!map_with(&contact(json!({})), &c).is_member);
    }

    #[test]
    fn rule_inactive_member_is_not_a_member_and_holds_no_group() {
        let regs = [registration("701000000000001", "Gala", "Registered")];
        let m = map_full(
            &contact(
                json!({"Active__c": false, "HL_Member_Type__c": "Gold", "HL_Chapter__c": "Ohio"}),
            ),
            &cfg(),
            &regs,
            None,
        )
        .unwrap();
        assert!(!m.is_member && !m.is_deleted);
        assert!(m.groups.is_empty(), "{:?}", m.groups);
        // The profile itself is still sent.
        assert_eq!(m.last_name.as_deref(), Some("Lovelace"));
    }

    #[test]
    fn rule_deleted_contact_is_the_delete_shape() {
        let m =
            map(json!({"IsDeleted": true, "HL_Member_Type__c": "Gold", "HL_Chapter__c": "Ohio"}));
        assert!(m.is_deleted && !m.is_member);
        assert_eq!(m, Member::deleted(m.contact_id.clone(), m.modstamp));
        assert_eq!(
            m.modstamp,
            Some(Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap())
        );
    }

    #[test]
    fn rule_do_not_email_follows_has_opted_out_of_email() {
        assert!(map(json!({"HasOptedOutOfEmail": true})).do_not_email);
        assert!(!map(json!({"HasOptedOutOfEmail": false})).do_not_email);
        // Inactive members carry it too.
        assert!(map(json!({"HasOptedOutOfEmail": true, "Active__c": false})).do_not_email);
    }

    #[test]
    fn modstamp_is_system_modstamp_and_must_parse() {
        let m = map(json!({"SystemModstamp": "2026-11-24T11:30:00.000+0000"}));
        assert_eq!(
            m.modstamp,
            Some(Utc.with_ymd_and_hms(2026, 11, 24, 11, 30, 0).unwrap())
        );
        let err = map_full(
            &contact(json!({"SystemModstamp": "last tuesday"})),
            &cfg(),
            &[],
            None,
        )
        .unwrap_err();
        assert!(matches!(err, MappingError::BadDate { .. }));
        assert!(!err.is_retryable());
    }

    #[test]
    fn rule_groups_are_deduplicated_and_sorted_by_type_then_id() {
        let m = map(json!({
            "HL_Interests__c": "Zen;Art;Zen", "HL_Member_Type__c": "Gold", "HL_Staff__c": true,
            "HL_Chapter__c": "Ohio"
        }));
        let order: Vec<(&str, &str)> = m
            .groups
            .iter()
            .map(|g| (g.group_type.as_str(), g.key.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                ("Chapter", "HL_Chapter__c:Ohio"),
                ("Membership", "HL_Interests__c:Art"),
                ("Membership", "HL_Interests__c:Zen"),
                ("Membership", "HL_Member_Type__c:Gold"),
                ("Membership", "HL_Staff__c"),
            ]
        );
    }

    #[test]
    fn rule_missing_or_bad_id_is_an_error() {
        let mut rec = contact(json!({}));
        rec.remove("Id");
        let err = map_full(&rec, &cfg(), &[], None).unwrap_err();
        assert!(matches!(err, MappingError::MissingField { .. }), "{err}");
        let err = map_full(&contact(json!({"Id": "003xyz"})), &cfg(), &[], None).unwrap_err();
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
        registered: Option<&'static str>,
        filter: Vec<&'static str>,
    }

    fn generated() -> impl Strategy<Value = Generated> {
        let value = proptest::sample::select(VALUES);
        (
            (
                proptest::option::of(value.clone()),
                proptest::collection::vec(value.clone(), 0..5),
                proptest::option::of(any::<bool>()),
                proptest::option::of(prop_oneof![(0i32..50).prop_map(f64::from), (0.0f64..50.0)]),
                proptest::option::of(value.clone()),
            ),
            (
                proptest::option::of(any::<bool>()),
                any::<bool>(),
                any::<bool>(),
                proptest::option::of(proptest::sample::select(&["Registered", "Sent"][..])),
                proptest::collection::vec(
                    prop_oneof![value, Just("HL_Staff__c"), Just("RecordType:Partner")],
                    0..3,
                ),
            ),
        )
            .prop_map(
                |(
                    (member_type, interests, staff, years, chapter),
                    (active, deleted, record_type, registered, filter),
                )| Generated {
                    member_type,
                    interests,
                    staff,
                    years,
                    chapter,
                    active,
                    deleted,
                    record_type,
                    registered,
                    filter,
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

    fn regs_for(g: &Generated) -> Vec<CampaignMembership> {
        g.registered
            .map(|status| registration("701000000000001", "Gala", status))
            .into_iter()
            .collect()
    }

    fn cfg_for(g: &Generated) -> Config {
        let mut c = cfg();
        c.contacts.security_group_filter = g.filter.iter().map(|s| (*s).to_owned()).collect();
        c
    }

    fn map_generated(g: &Generated, interests: &[&str]) -> Member {
        map_full(&record(g, interests), &cfg_for(g), &regs_for(g), None).unwrap()
    }

    proptest! {
        #[test]
        fn prop_mapping_is_deterministic(g in generated()) {
            let a = map_generated(&g, &g.interests);
            let b = map_generated(&g, &g.interests);
            prop_assert_eq!(a.content_hash(), b.content_hash());
            prop_assert_eq!(a, b);
        }

        #[test]
        fn prop_hash_ignores_multi_select_and_field_order(g in generated(), seed in any::<u64>()) {
            let c = cfg_for(&g);
            let a = map_generated(&g, &g.interests);
            let mut shuffled = g.interests.clone();
            shuffled.reverse();
            if !shuffled.is_empty() {
                let by = (seed as usize) % shuffled.len();
                shuffled.rotate_left(by);
            }
            // Field order: rebuild the map with keys inserted in reverse.
            let forward = record(&g, &shuffled);
            let reversed: Map<String, Value> = forward.into_iter().rev().collect();
            let b = map_full(&reversed, &c, &regs_for(&g), None).unwrap();
            prop_assert_eq!(a.content_hash(), b.content_hash());
            prop_assert_eq!(a.groups, b.groups);
        }

        #[test]
        fn prop_only_active_members_hold_groups(g in generated()) {
            let c = cfg_for(&g);
            let m = map_generated(&g, &g.interests);
            // Map again with no filter to see every group the Contact holds.
            let mut open = c.clone();
            open.contacts.security_group_filter.clear();
            let all = map_full(&record(&g, &g.interests), &open, &regs_for(&g), None).unwrap();
            let in_filter = c.contacts.security_group_filter.is_empty()
                || all.groups.iter().any(|grp| {
                    c.contacts.security_group_filter.iter().any(|f| f == &grp.name || f == grp.key.as_str())
                });
            let active = g.active == Some(true) && !g.deleted && in_filter;
            prop_assert_eq!(m.is_member, active);
            if active {
                prop_assert_eq!(&m.groups, &all.groups);
            } else {
                prop_assert!(m.groups.is_empty());
            }
        }

        #[test]
        fn prop_deleted_member_is_only_its_id(g in generated()) {
            let m = map_generated(&g, &g.interests);
            if g.deleted {
                prop_assert_eq!(&m, &Member::deleted(m.contact_id.clone(), m.modstamp));
            } else {
                prop_assert!(!m.is_deleted);
            }
        }

        #[test]
        fn prop_groups_sorted_and_unique(g in generated()) {
            let m = map_generated(&g, &g.interests);
            prop_assert!(m.groups.windows(2).all(|w| (&w[0].group_type, &w[0].key) < (&w[1].group_type, &w[1].key)));
        }
    }
}
