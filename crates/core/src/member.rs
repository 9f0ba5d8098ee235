//! The member record hlsync pushes to Higher Logic (SPEC.md §6), in its exact wire form.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::id::SfId;

/// A group's stable key: `HL_Member_Type__c:Gold`, `HL_Staff__c` or `RecordType:Partner`.
/// Higher Logic matches groups by key; the name only follows the current value or label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupKey(String);

impl GroupKey {
    /// The key of value `value` of picklist, text, number or date field `field`.
    pub fn field_value(field: &str, value: &str) -> Self {
        GroupKey(format!("{field}:{value}"))
    }

    /// The key of checkbox field `field` (the group exists while the box is ticked).
    pub fn checkbox(field: &str) -> Self {
        GroupKey(field.to_owned())
    }

    /// The key of the Record Type with developer name `developer_name`.
    pub fn record_type(developer_name: &str) -> Self {
        GroupKey(format!("RecordType:{developer_name}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A security or community group as Higher Logic receives it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Group {
    #[serde(rename = "GroupKey")]
    pub key: GroupKey,
    #[serde(rename = "GroupName")]
    pub name: String,
}

/// The member's mailing address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Address {
    pub street: Option<String>,
    pub city: Option<String>,
    pub state_province: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
}

/// One contact record of `POST {base_url}/contactinfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Member {
    pub legacy_contact_key: SfId,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email_address: Option<String>,
    pub company_name: Option<String>,
    pub title: Option<String>,
    pub phone: Option<String>,
    pub mobile_phone: Option<String>,
    pub address: Address,
    pub is_active: bool,
    pub is_deleted: bool,
    pub email_opt_out: bool,
    pub security_groups: Vec<Group>,
    pub community_groups: Vec<Group>,
    #[serde(with = "crate::time::millis_opt")]
    pub updated_on: Option<DateTime<Utc>>,
}

impl Member {
    /// The record that tells Higher Logic a Contact is gone: deleted, inactive, in no group,
    /// every other field null. (Sending the Contact's last values would re-create a profile.)
    pub fn deleted(id: SfId, updated_on: Option<DateTime<Utc>>) -> Self {
        Member {
            legacy_contact_key: id,
            first_name: None,
            last_name: None,
            email_address: None,
            company_name: None,
            title: None,
            phone: None,
            mobile_phone: None,
            address: Address::default(),
            is_active: false,
            is_deleted: true,
            email_opt_out: false,
            security_groups: Vec::new(),
            community_groups: Vec::new(),
            updated_on,
        }
    }

    /// Fingerprint of everything Higher Logic would store, so an unchanged Contact is not pushed
    /// again. `UpdatedOn` is left out: a `SystemModstamp` bump that changes nothing mapped
    /// (a formula recalculated to the same value, an unmapped field edited) must not cause a push.
    /// Groups are hashed in key order whatever order the record holds them in.
    pub fn content_hash(&self) -> ContentHash {
        let mut canonical = self.clone();
        canonical.updated_on = None;
        canonical.security_groups.sort();
        canonical.community_groups.sort();
        ContentHash::of_json(&canonical)
    }
}

/// A hex SHA-256 of a record's canonical JSON encoding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContentHash(String);

impl ContentHash {
    /// Hash the JSON encoding of `value`. Struct fields encode in declaration order and strings
    /// with a fixed escaping, so equal records always give equal text.
    pub(crate) fn of_json<T: Serialize>(value: &T) -> Self {
        // Serialising these plain structs (no maps with non-string keys) cannot fail; the empty
        // fallback exists only so that this can never panic.
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        ContentHash(hex::encode(Sha256::digest(&bytes)))
    }

    /// A hash read back from storage.
    pub fn from_hex(hex: impl Into<String>) -> Self {
        ContentHash(hex.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn id() -> SfId {
        "003000000000001".parse().unwrap()
    }

    fn sample() -> Member {
        Member {
            legacy_contact_key: id(),
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            email_address: Some("ada@example.org".into()),
            company_name: Some("Analytical".into()),
            title: None,
            phone: None,
            mobile_phone: None,
            address: Address {
                city: Some("London".into()),
                ..Address::default()
            },
            is_active: true,
            is_deleted: false,
            email_opt_out: false,
            security_groups: vec![
                Group {
                    key: GroupKey::field_value("HL_Member_Type__c", "Gold"),
                    name: "Gold".into(),
                },
                Group {
                    key: GroupKey::checkbox("HL_Staff__c"),
                    name: "Staff".into(),
                },
            ],
            community_groups: vec![Group {
                key: GroupKey::field_value("HL_Chapter__c", "Ohio"),
                name: "Ohio".into(),
            }],
            updated_on: Some(Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap()),
        }
    }

    #[test]
    fn wire_names_are_exact() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(
            v,
            json!({
                "LegacyContactKey": "003000000000001AAA",
                "FirstName": "Ada", "LastName": "Lovelace", "EmailAddress": "ada@example.org",
                "CompanyName": "Analytical", "Title": null, "Phone": null, "MobilePhone": null,
                "Address": {"Street": null, "City": "London", "StateProvince": null,
                            "PostalCode": null, "Country": null},
                "IsActive": true, "IsDeleted": false, "EmailOptOut": false,
                "SecurityGroups": [
                    {"GroupKey": "HL_Member_Type__c:Gold", "GroupName": "Gold"},
                    {"GroupKey": "HL_Staff__c", "GroupName": "Staff"}
                ],
                "CommunityGroups": [{"GroupKey": "HL_Chapter__c:Ohio", "GroupName": "Ohio"}],
                "UpdatedOn": "2026-11-24T10:00:00.000Z"
            })
        );
        let back: Member = serde_json::from_value(v).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn deleted_record_has_no_groups_and_is_inactive() {
        let m = Member::deleted(id(), None);
        assert!(m.is_deleted && !m.is_active);
        assert!(m.security_groups.is_empty() && m.community_groups.is_empty());
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["UpdatedOn"], serde_json::Value::Null);
        assert_eq!(v["FirstName"], serde_json::Value::Null);
    }

    #[test]
    fn hash_ignores_updated_on() {
        let a = sample();
        let mut b = sample();
        b.updated_on = Some(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
        assert_eq!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn hash_ignores_group_order() {
        let a = sample();
        let mut b = sample();
        b.security_groups.reverse();
        assert_eq!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn hash_sees_every_mapped_change() {
        let base = sample().content_hash();
        assert_eq!(base.as_str().len(), 64);
        let mut m = sample();
        m.email_opt_out = true;
        assert_ne!(m.content_hash(), base);
        let mut m = sample();
        m.security_groups[0].name = "Platinum".into();
        assert_ne!(m.content_hash(), base);
        let mut m = sample();
        m.address.city = None;
        assert_ne!(m.content_hash(), base);
        // A group moved from security to community is a change.
        let mut m = sample();
        let g = m.security_groups.remove(0);
        m.community_groups.push(g);
        assert_ne!(m.content_hash(), base);
    }
}
