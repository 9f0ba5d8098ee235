//! What hlsync knows about the Contact object, built from Salesforce's describe and the config.
//!
//! Group fields are discovered, never hard-coded: every field whose API name starts with the
//! configured prefix feeds groups, so an admin adds a group source by adding a field.

use serde::{Deserialize, Deserializer, Serialize};

use crate::config::{Config, starts_with_ignore_case};
use crate::id::SfId;

/// A field's `type` in describe, as far as the mapping cares.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum FieldType {
    /// `boolean`
    Boolean,
    /// `picklist`
    Picklist,
    /// `multipicklist`
    MultiPicklist,
    /// `string`
    String,
    /// `textarea`
    TextArea,
    /// `double`
    Double,
    /// `int`
    Int,
    /// `long`
    Long,
    /// `currency`
    Currency,
    /// `percent`
    Percent,
    /// `date`
    Date,
    /// `datetime`
    DateTime,
    /// `email`
    Email,
    /// `phone`
    Phone,
    /// `url`
    Url,
    /// `id`
    Id,
    /// `reference`
    Reference,
    /// Any other describe type (`combobox`, `encryptedstring`, `address`…), kept by name.
    Other(std::string::String),
}

impl FieldType {
    /// Map describe's `type` value (`"boolean"`, `"multipicklist"`…), case-insensitively.
    pub fn from_sf(value: &str) -> Self {
        match value.to_ascii_lowercase().as_str() {
            "boolean" => FieldType::Boolean,
            "picklist" => FieldType::Picklist,
            "multipicklist" => FieldType::MultiPicklist,
            "string" => FieldType::String,
            "textarea" => FieldType::TextArea,
            "double" => FieldType::Double,
            "int" => FieldType::Int,
            "long" => FieldType::Long,
            "currency" => FieldType::Currency,
            "percent" => FieldType::Percent,
            "date" => FieldType::Date,
            "datetime" => FieldType::DateTime,
            "email" => FieldType::Email,
            "phone" => FieldType::Phone,
            "url" => FieldType::Url,
            "id" => FieldType::Id,
            "reference" => FieldType::Reference,
            _ => FieldType::Other(value.to_owned()),
        }
    }

    /// The describe name of this type.
    pub fn as_sf(&self) -> &str {
        match self {
            FieldType::Boolean => "boolean",
            FieldType::Picklist => "picklist",
            FieldType::MultiPicklist => "multipicklist",
            FieldType::String => "string",
            FieldType::TextArea => "textarea",
            FieldType::Double => "double",
            FieldType::Int => "int",
            FieldType::Long => "long",
            FieldType::Currency => "currency",
            FieldType::Percent => "percent",
            FieldType::Date => "date",
            FieldType::DateTime => "datetime",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Url => "url",
            FieldType::Id => "id",
            FieldType::Reference => "reference",
            FieldType::Other(name) => name,
        }
    }
}

impl<'de> Deserialize<'de> for FieldType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(FieldType::from_sf(&text))
    }
}

/// One field of describe's `fields` array; deserialises straight from describe JSON (other
/// describe keys are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldInfo {
    /// The API name, e.g. `HL_Chapter__c`.
    pub name: String,
    /// The label an admin sees in Setup.
    pub label: String,
    /// describe's `type`.
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// True for formula fields, whose changes do not move `SystemModstamp`.
    #[serde(default)]
    pub calculated: bool,
}

/// One entry of describe's `recordTypeInfos`; deserialises straight from describe JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordTypeInfo {
    /// `recordTypeId`.
    #[serde(rename = "recordTypeId")]
    pub id: SfId,
    /// The label.
    pub name: String,
    /// The API name, used in the group id `RecordType:<DeveloperName>`.
    pub developer_name: String,
    /// Whether the Record Type can be given to new records.
    #[serde(default)]
    pub active: bool,
}

/// What hlsync needs of an object's describe (`sobjects/{Object}/describe`): its fields and
/// Record Types, read from describe's JSON as it is; every other describe key is ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Describe {
    /// The object's fields, in describe's order.
    pub fields: Vec<FieldInfo>,
    /// The object's record types (`recordTypeInfos`).
    #[serde(default, rename = "recordTypeInfos")]
    pub record_types: Vec<RecordTypeInfo>,
}

impl Describe {
    /// The field of that API name (API names are case-insensitive).
    pub fn field(&self, name: &str) -> Option<&FieldInfo> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

/// Why the org's Contact object does not fit the config. Each message names the config key and
/// the field, and tells what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "config key `contacts.active_field`: the Contact field {field:?} does not exist (or the integration user cannot see it); create it, grant field-level security, or remove the key"
    )]
    /// `contacts.active_field` names a field the org does not show.
    ActiveFieldMissing {
        /// The field named in the config.
        field: String,
    },
    #[error(
        "config key `contacts.active_field`: the Contact field {field:?} is of type {found}, it must be a checkbox (boolean)"
    )]
    /// `contacts.active_field` names a field that is not a checkbox.
    ActiveFieldNotCheckbox {
        /// The field named in the config.
        field: String,
        /// Its describe type.
        found: String,
    },
    #[error(
        "config key `contacts.community_fields`: the Contact field {field:?} does not exist (or the integration user cannot see it); create it, grant field-level security, or remove it from the list"
    )]
    /// `contacts.community_fields` names a field the org does not show.
    CommunityFieldMissing {
        /// The field named in the config.
        field: String,
    },
}

/// The Contact fields hlsync reads, in describe's spelling, sorted by API name.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactSchema {
    active_field: Option<FieldInfo>,
    security_fields: Vec<FieldInfo>,
    community_fields: Vec<FieldInfo>,
    record_types: Vec<RecordTypeInfo>,
    record_type_groups: bool,
    /// The org has State and Country Picklists: `MailingCountryCode` exists and is read.
    has_country_code: bool,
}

/// The standard Contact fields every Member Refresh reads.
const BASE_FIELDS: &[&str] = &[
    "Id",
    "FirstName",
    "LastName",
    "Email",
    "Title",
    "Phone",
    "MobilePhone",
    "HomePhone",
    "MailingStreet",
    "MailingCity",
    "MailingState",
    "MailingPostalCode",
    "MailingCountry",
    "HasOptedOutOfEmail",
    "IsDeleted",
    "SystemModstamp",
    "AccountId",
];

/// Exists only in orgs with State and Country Picklists; read when describe lists it.
const COUNTRY_CODE_FIELD: &str = "MailingCountryCode";

impl ContactSchema {
    /// Build the schema from Contact's describe (`fields`, `recordTypeInfos`) and the config.
    pub fn build(
        fields: &[FieldInfo],
        record_types: &[RecordTypeInfo],
        config: &Config,
    ) -> Result<Self, SchemaError> {
        let cfg = &config.contacts;
        let find = |name: &str| fields.iter().find(|f| f.name.eq_ignore_ascii_case(name));

        let active_field = match &cfg.active_field {
            None => None,
            Some(name) => {
                let field = find(name).ok_or_else(|| SchemaError::ActiveFieldMissing {
                    field: name.clone(),
                })?;
                if field.field_type != FieldType::Boolean {
                    return Err(SchemaError::ActiveFieldNotCheckbox {
                        field: field.name.clone(),
                        found: field.field_type.as_sf().to_owned(),
                    });
                }
                Some(field.clone())
            }
        };

        let mut community_fields = Vec::new();
        for name in cfg.community_fields.iter().map(|c| &c.field) {
            let field = find(name).ok_or_else(|| SchemaError::CommunityFieldMissing {
                field: name.clone(),
            })?;
            if !community_fields.contains(field) {
                community_fields.push(field.clone());
            }
        }

        // SPEC §2: every prefixed field feeds security groups but the community fields (their
        // own groups) and the fields named by `cursor_field` and `active_field`, which never
        // become groups, prefix or not.
        let never_a_group = |f: &FieldInfo| {
            f.name.eq_ignore_ascii_case(&config.salesforce.cursor_field)
                || cfg
                    .active_field
                    .as_deref()
                    .is_some_and(|a| f.name.eq_ignore_ascii_case(a))
        };
        community_fields.retain(|f| !never_a_group(f));
        let is_community = |f: &FieldInfo| {
            community_fields
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(&f.name))
        };
        let mut security_fields: Vec<FieldInfo> = fields
            .iter()
            .filter(|f| starts_with_ignore_case(&f.name, &cfg.group_field_prefix))
            .filter(|f| !is_community(f) && !never_a_group(f))
            .cloned()
            .collect();
        security_fields.sort_by(|a, b| a.name.cmp(&b.name));
        security_fields.dedup_by(|a, b| a.name.eq_ignore_ascii_case(&b.name));
        community_fields.sort_by(|a, b| a.name.cmp(&b.name));

        Ok(ContactSchema {
            active_field,
            security_fields,
            community_fields,
            record_types: record_types.to_vec(),
            record_type_groups: cfg.record_type_groups,
            has_country_code: find(COUNTRY_CODE_FIELD).is_some(),
        })
    }

    /// The active checkbox, when configured.
    pub fn active_field(&self) -> Option<&FieldInfo> {
        self.active_field.as_ref()
    }

    /// Prefixed fields that feed security groups.
    pub fn security_group_fields(&self) -> &[FieldInfo] {
        &self.security_fields
    }

    /// Fields named in `community_fields`; they feed community groups only.
    pub fn community_group_fields(&self) -> &[FieldInfo] {
        &self.community_fields
    }

    /// Group fields that are formulas: their changes do not move `SystemModstamp`, so when any
    /// exist the sync re-reads every Contact every `full_refresh_every`.
    pub fn formula_fields(&self) -> Vec<&FieldInfo> {
        self.security_fields
            .iter()
            .chain(&self.community_fields)
            .chain(self.active_field.as_ref())
            .filter(|f| f.calculated)
            .collect()
    }

    /// Whether Record Types become groups.
    pub fn record_type_groups(&self) -> bool {
        self.record_type_groups
    }

    /// Every Record Type of Contact in describe.
    pub fn record_types(&self) -> &[RecordTypeInfo] {
        &self.record_types
    }

    /// The Record Type with Id `id`, if describe listed it.
    pub fn record_type(&self, id: &SfId) -> Option<&RecordTypeInfo> {
        self.record_types.iter().find(|rt| &rt.id == id)
    }

    /// The Contact fields a Member Refresh must read, in describe's spelling, without
    /// duplicates. Relationship fields are left out on purpose: batch reads go through
    /// `composite/sobjects`, which cannot follow them, so the Account name is read by `AccountId`
    /// and the Record Type is resolved through [`ContactSchema::record_type`].
    pub fn contact_fields(&self) -> Vec<String> {
        let mut out: Vec<String> = BASE_FIELDS.iter().map(|f| (*f).to_owned()).collect();
        if self.record_type_groups {
            out.push("RecordTypeId".to_owned());
        }
        if self.has_country_code {
            out.push(COUNTRY_CODE_FIELD.to_owned());
        }
        let extra = self
            .active_field
            .iter()
            .chain(&self.security_fields)
            .chain(&self.community_fields);
        for field in extra {
            if !out.iter().any(|f| f.eq_ignore_ascii_case(&field.name)) {
                out.push(field.name.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CommunityField, ContactsConfig};

    pub(crate) fn field(name: &str, label: &str, ty: &str) -> FieldInfo {
        FieldInfo {
            name: name.into(),
            label: label.into(),
            field_type: FieldType::from_sf(ty),
            calculated: false,
        }
    }

    fn describe() -> Vec<FieldInfo> {
        vec![
            field("Id", "Contact ID", "id"),
            field("FirstName", "First Name", "string"),
            field("Active__c", "Active", "boolean"),
            field("HL_Member_Type__c", "Member Type", "picklist"),
            field("HL_Staff__c", "Staff", "boolean"),
            field("hl_chapter__c", "Chapter", "picklist"),
            FieldInfo {
                calculated: true,
                ..field("HL_Tier__c", "Tier", "string")
            },
            field("Other__c", "Other", "string"),
        ]
    }

    fn cfg() -> ContactsConfig {
        ContactsConfig {
            active_field: Some("active__c".into()),
            community_fields: vec![CommunityField::new("HL_Chapter__c", "Chapter")],
            ..ContactsConfig::default()
        }
    }

    fn build(
        fields: &[FieldInfo],
        record_types: &[RecordTypeInfo],
        contacts: &ContactsConfig,
    ) -> Result<ContactSchema, SchemaError> {
        let mut config = Config::with_base_url("https://hl.example.org/v2");
        config.contacts = contacts.clone();
        ContactSchema::build(fields, record_types, &config)
    }

    fn names(fields: &[FieldInfo]) -> Vec<&str> {
        fields.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn discovers_prefixed_fields_and_splits_communities() {
        let s = build(&describe(), &[], &cfg()).unwrap();
        assert_eq!(
            names(s.security_group_fields()),
            ["HL_Member_Type__c", "HL_Staff__c", "HL_Tier__c"]
        );
        assert_eq!(names(s.community_group_fields()), ["hl_chapter__c"]);
        assert_eq!(s.active_field().unwrap().name, "Active__c");
        let formulas: Vec<&str> = s.formula_fields().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(formulas, ["HL_Tier__c"]);
    }

    #[test]
    fn prefix_is_case_insensitive() {
        let cfg = ContactsConfig {
            group_field_prefix: "hl_".into(),
            ..ContactsConfig::default()
        };
        let s = build(&describe(), &[], &cfg).unwrap();
        assert_eq!(s.security_group_fields().len(), 4);
    }

    #[test]
    fn prefixed_active_and_cursor_fields_are_never_groups() {
        let mut fields = describe();
        fields.push(field("HL_Active__c", "HL Active", "boolean"));
        fields.push(field("HL_Mod_Date__c", "HL Mod Date", "datetime"));
        let cfg = ContactsConfig {
            active_field: Some("HL_Active__c".into()),
            ..ContactsConfig::default()
        };
        let mut config = Config::with_base_url("https://hl.example.org/v2");
        config.contacts = cfg;
        config.salesforce.cursor_field = "hl_mod_date__c".into();
        let s = ContactSchema::build(&fields, &[], &config).unwrap();
        assert!(!names(s.security_group_fields()).contains(&"HL_Active__c"));
        assert!(!names(s.security_group_fields()).contains(&"HL_Mod_Date__c"));
        assert_eq!(
            s.active_field().map(|f| f.name.as_str()),
            Some("HL_Active__c")
        );
    }

    #[test]
    fn country_code_is_read_only_where_the_org_has_it() {
        let s = build(&describe(), &[], &cfg()).unwrap();
        assert!(!s.contact_fields().iter().any(|f| f == "MailingCountryCode"));
        let mut fields = describe();
        fields.push(field(
            "MailingCountryCode",
            "Mailing Country Code",
            "picklist",
        ));
        let s = build(&fields, &[], &cfg()).unwrap();
        assert!(s.contact_fields().iter().any(|f| f == "MailingCountryCode"));
    }

    #[test]
    fn missing_active_field_names_key_and_field() {
        let cfg = ContactsConfig {
            active_field: Some("Gone__c".into()),
            ..ContactsConfig::default()
        };
        let err = build(&describe(), &[], &cfg).unwrap_err();
        assert_eq!(
            err,
            SchemaError::ActiveFieldMissing {
                field: "Gone__c".into()
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("contacts.active_field") && text.contains("Gone__c"),
            "{text}"
        );
    }

    #[test]
    fn active_field_must_be_checkbox() {
        let cfg = ContactsConfig {
            active_field: Some("Other__c".into()),
            ..ContactsConfig::default()
        };
        let err = build(&describe(), &[], &cfg).unwrap_err();
        assert!(
            matches!(err, SchemaError::ActiveFieldNotCheckbox { ref found, .. } if found == "string")
        );
        assert!(err.to_string().contains("contacts.active_field"));
    }

    #[test]
    fn missing_community_field_names_key_and_field() {
        let cfg = ContactsConfig {
            community_fields: vec![CommunityField::new("HL_Region__c", "Region")],
            ..ContactsConfig::default()
        };
        let err = build(&describe(), &[], &cfg).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("contacts.community_fields") && text.contains("HL_Region__c"),
            "{text}"
        );
    }

    #[test]
    fn contact_fields_lists_what_refresh_reads() {
        let mut c = cfg();
        c.record_type_groups = true;
        let s = build(&describe(), &[], &c).unwrap();
        let f = s.contact_fields();
        for must in BASE_FIELDS {
            assert!(f.iter().any(|x| x == must), "{must}");
        }
        for must in [
            "RecordTypeId",
            "Active__c",
            "HL_Member_Type__c",
            "HL_Staff__c",
            "HL_Tier__c",
            "hl_chapter__c",
        ] {
            assert!(f.iter().any(|x| x == must), "{must}");
        }
        assert!(!f.iter().any(|x| x.contains('.')), "no relationship fields");
        assert!(!f.iter().any(|x| x == "Other__c"));

        let plain = build(&describe(), &[], &ContactsConfig::default()).unwrap();
        assert!(!plain.contact_fields().iter().any(|x| x == "RecordTypeId"));
    }

    #[test]
    fn deserialises_from_describe_json() {
        let f: FieldInfo = serde_json::from_value(serde_json::json!({
            "name": "HL_Interests__c", "label": "Interests", "type": "multipicklist",
            "calculated": false, "length": 4099, "nillable": true
        }))
        .unwrap();
        assert_eq!(f.field_type, FieldType::MultiPicklist);
        let rt: RecordTypeInfo = serde_json::from_value(serde_json::json!({
            "recordTypeId": "012000000000000AAA", "name": "Master", "developerName": "Master",
            "active": true, "available": true, "master": true
        }))
        .unwrap();
        assert_eq!(rt.developer_name, "Master");
        assert_eq!(
            FieldType::from_sf("encryptedstring"),
            FieldType::Other("encryptedstring".into())
        );
        assert_eq!(FieldType::from_sf("DateTime"), FieldType::DateTime);
    }
}
