//! The member record hlsync pushes to Higher Logic: the domain form of one `/contactinfo`
//! element (SPEC.md §2 and §6). The wire names live in the Higher Logic client's `wire` module;
//! this type holds what they carry.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::id::SfId;

/// A group's stable id: `HL_Member_Type__c:Gold`, `HL_Staff__c`, `RecordType:Partner`, or an
/// event's Campaign Id. Higher Logic matches groups by id; the name only follows the current
/// value or label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupKey(String);

impl GroupKey {
    /// The id of value `value` of picklist, text, number or date field `field`.
    pub fn field_value(field: &str, value: &str) -> Self {
        GroupKey(format!("{field}:{value}"))
    }

    /// The id of checkbox field `field` (the group exists while the box is ticked).
    pub fn checkbox(field: &str) -> Self {
        GroupKey(field.to_owned())
    }

    /// The id of the Record Type with developer name `developer_name`.
    pub fn record_type(developer_name: &str) -> Self {
        GroupKey(format!("RecordType:{developer_name}"))
    }

    /// The id of an event's group: the Campaign's 18-character Id, which is also its `MeetingId`.
    pub fn event(campaign: &SfId) -> Self {
        GroupKey(campaign.as_str().to_owned())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One entry of a member's `Groups`: a security group, a community group or an event
/// registration, told apart by `group_type`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Group {
    /// Groups sort by type first, then id: the order a record's groups are kept in.
    pub group_type: String,
    /// The group's stable id (`GroupId`).
    pub key: GroupKey,
    /// What Higher Logic shows: the field value, the field's label or the Campaign's name.
    pub name: String,
    /// The registration's CampaignMember status for an event group; empty for the others.
    pub role: String,
}

impl Group {
    /// A group with no role (security and community groups).
    pub fn new(group_type: &str, key: GroupKey, name: impl Into<String>) -> Self {
        Group {
            group_type: group_type.to_owned(),
            key,
            name: name.into(),
            role: String::new(),
        }
    }
}

/// One `Addresses` entry: the Contact's mailing address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Address {
    /// The first line of `MailingStreet`.
    pub line1: Option<String>,
    /// The rest of `MailingStreet`.
    pub line2: Option<String>,
    /// `MailingCity`.
    pub city: Option<String>,
    /// `MailingState`.
    pub state_province: Option<String>,
    /// `MailingPostalCode`.
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2, upper case.
    pub country_code: Option<String>,
    /// Always `Main` for the mailing address.
    pub address_type: String,
    /// Always true: the mailing address is the member's main one.
    pub is_primary: bool,
}

impl Address {
    /// Whether every part is empty: such an address gives no entry.
    pub fn is_empty(&self) -> bool {
        [
            &self.line1,
            &self.line2,
            &self.city,
            &self.state_province,
            &self.postal_code,
            &self.country_code,
        ]
        .iter()
        .all(|part| part.is_none())
    }
}

/// One `PhoneNumbers` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Phone {
    /// The number as Salesforce holds it.
    pub number: String,
    /// `Work`, `Mobile` or `Home`.
    pub phone_type: String,
    /// Whether this is the number to call first.
    pub is_preferred: bool,
}

/// One `EmailAddresses` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Email {
    /// The address.
    pub address: String,
    /// `Primary Email`.
    pub email_type: String,
    /// Whether this is the address to write to first.
    pub is_preferred: bool,
}

/// What one push says of a Contact: its whole record (Higher Logic replaces what it holds with
/// it, SPEC.md §6), or that it is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The Contact's 18-character Id: `ContactDetails.ContactId`.
    pub contact_id: SfId,
    /// `FirstName`.
    pub first_name: Option<String>,
    /// `LastName`.
    pub last_name: Option<String>,
    /// `Email`.
    pub primary_email: Option<String>,
    /// The Contact's Account `Name`.
    pub organization_name: Option<String>,
    /// `Title`.
    pub title: Option<String>,
    /// Active: a site user, with all their groups. Inactive members hold no group.
    pub is_member: bool,
    /// `HasOptedOutOfEmail`.
    pub do_not_email: bool,
    /// Sorted by (type, id), without duplicates.
    pub groups: Vec<Group>,
    /// The mailing address, when it has any part.
    pub addresses: Vec<Address>,
    /// The Contact's phone numbers that are set.
    pub phones: Vec<Phone>,
    /// The primary email, when set.
    pub emails: Vec<Email>,
    /// Pushed as the delete shape `{"ContactDetails":{"ContactId","IsDeleted":true}}`; every
    /// other field is then empty.
    pub is_deleted: bool,
    /// The Contact's `SystemModstamp` when it was read: not sent, and not part of the hash; the
    /// push record keeps it, so that an older change is known to be covered.
    pub modstamp: Option<DateTime<Utc>>,
}

impl Member {
    /// The record that tells Higher Logic a Contact is gone.
    pub fn deleted(id: SfId, modstamp: Option<DateTime<Utc>>) -> Self {
        Member {
            contact_id: id,
            first_name: None,
            last_name: None,
            primary_email: None,
            organization_name: None,
            title: None,
            is_member: false,
            do_not_email: false,
            groups: Vec::new(),
            addresses: Vec::new(),
            phones: Vec::new(),
            emails: Vec::new(),
            is_deleted: true,
            modstamp,
        }
    }

    /// Fingerprint of everything Higher Logic would store, so an unchanged Contact is not pushed
    /// again. `modstamp` is left out: a `SystemModstamp` bump that changes nothing mapped
    /// (a formula recalculated to the same value, an unmapped field edited) must not cause a push.
    /// Groups are hashed in (type, id) order whatever order the record holds them in.
    pub fn content_hash(&self) -> ContentHash {
        let mut canonical = self.clone();
        canonical.modstamp = None;
        canonical.groups.sort();
        ContentHash::of_json(&canonical)
    }

    /// The event registrations among the groups (those of `event_group_type`).
    pub fn event_groups<'a>(
        &'a self,
        event_group_type: &'a str,
    ) -> impl Iterator<Item = &'a Group> {
        self.groups
            .iter()
            .filter(move |g| g.group_type == event_group_type)
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

    /// The hash as hex text.
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

    fn id() -> SfId {
        "003000000000001".parse().unwrap()
    }

    fn sample() -> Member {
        Member {
            contact_id: id(),
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            primary_email: Some("ada@example.org".into()),
            organization_name: Some("Analytical".into()),
            title: None,
            is_member: true,
            do_not_email: false,
            groups: vec![
                Group::new(
                    "Membership",
                    GroupKey::field_value("HL_Member_Type__c", "Gold"),
                    "Gold",
                ),
                Group::new("Membership", GroupKey::checkbox("HL_Staff__c"), "Staff"),
                Group::new(
                    "Chapter",
                    GroupKey::field_value("HL_Chapter__c", "Ohio"),
                    "Ohio",
                ),
            ],
            addresses: vec![Address {
                city: Some("London".into()),
                address_type: "Main".into(),
                is_primary: true,
                ..Address::default()
            }],
            phones: vec![],
            emails: vec![Email {
                address: "ada@example.org".into(),
                email_type: "Primary Email".into(),
                is_preferred: true,
            }],
            is_deleted: false,
            modstamp: Some(Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap()),
        }
    }

    #[test]
    fn deleted_record_has_nothing_but_its_id() {
        let m = Member::deleted(id(), None);
        assert!(m.is_deleted && !m.is_member);
        assert!(m.groups.is_empty() && m.addresses.is_empty() && m.emails.is_empty());
        assert_eq!(m.first_name, None);
    }

    #[test]
    fn hash_ignores_modstamp() {
        let a = sample();
        let mut b = sample();
        b.modstamp = Some(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
        assert_eq!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn hash_ignores_group_order() {
        let a = sample();
        let mut b = sample();
        b.groups.reverse();
        assert_eq!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn hash_sees_every_mapped_change() {
        let base = sample().content_hash();
        assert_eq!(base.as_str().len(), 64);
        let mut m = sample();
        m.do_not_email = true;
        assert_ne!(m.content_hash(), base);
        let mut m = sample();
        m.groups[0].name = "Platinum".into();
        assert_ne!(m.content_hash(), base);
        let mut m = sample();
        m.addresses[0].city = None;
        assert_ne!(m.content_hash(), base);
        let mut m = sample();
        m.groups[2].role = "Registered".into();
        assert_ne!(m.content_hash(), base);
        // The same id under another GroupType is another group.
        let mut m = sample();
        m.groups[2].group_type = "Committee".into();
        assert_ne!(m.content_hash(), base);
    }

    #[test]
    fn groups_sort_by_type_then_id() {
        let mut groups = sample().groups;
        groups.sort();
        let order: Vec<(&str, &str)> = groups
            .iter()
            .map(|g| (g.group_type.as_str(), g.key.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                ("Chapter", "HL_Chapter__c:Ohio"),
                ("Membership", "HL_Member_Type__c:Gold"),
                ("Membership", "HL_Staff__c"),
            ]
        );
    }
}
