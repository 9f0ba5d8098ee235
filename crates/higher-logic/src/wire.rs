//! The wire format of Higher Logic's data Push API v2 (SPEC.md §6), and nothing else.
//!
//! Everything that names a path, a header, a query parameter or a JSON field lives here, so that
//! this one file can be compared line by line with the tenant's API documentation at deployment.
//! Parts that no Higher Logic page confirms (see `shared/reference/higher-logic-push-api.md`)
//! are constants or single functions marked **unconfirmed**, so that matching them to the
//! tenant's documentation is a one-line change:
//!
//! - the header that carries the key ([`API_KEY_HEADER`]);
//! - the path of meetings ([`MEETING_PATH`]);
//! - whether dates must carry milliseconds ([`DATE_TIME_FORMAT`]);
//! - where an error answer puts its explanation ([`ERROR_MESSAGE_FIELDS`]);
//! - the email-preference feed as a whole (a tenant's relay, not a Higher Logic API:
//!   [`SINCE_PARAM`], [`EmailPreferencesAnswer`]).
//!
//! Higher Logic replaces the whole record it holds with each element it receives, so every
//! element of a live record carries every key this client knows (null when empty) and every
//! collection (empty when there is nothing): a key left out would clear the value anyway, and
//! sending it explicitly keeps what hlsync means visible in the request.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use hlsync_core::{Address, Email, Group, Meeting, Member, Phone};
use serde::{Deserialize, Serialize};

/// The header that carries the tenant's API key. Unconfirmed spelling: a production client sends
/// exactly `ApiKey`. HTTP header names are case-insensitive, and HTTP/1.1 clients here send it
/// lower-cased (`apikey`).
pub const API_KEY_HEADER: &str = "ApiKey";

/// The `Content-Type` (and `Accept`) of every request: the API takes JSON only.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// `POST {base_url}/contactinfo`: a JSON array of [`ContactInfo`].
pub const CONTACT_INFO_PATH: &str = "contactinfo";

/// `POST {base_url}/meeting`: a JSON array of [`MeetingRecord`]. Unconfirmed spelling (seen in a
/// production client; Higher Logic's page names the Meeting object but was not readable).
pub const MEETING_PATH: &str = "meeting";

/// The query parameter of `GET {email_preferences_url}?since=…`.
pub const SINCE_PARAM: &str = "since";

/// Dates as the API reads them: UTC, `yyyy-MM-ddTHH:mm:ss.fffZ` in .NET terms (chrono's
/// strftime syntax here). Higher Logic documents this form; whether it also takes a value
/// without the milliseconds is unconfirmed, so they are always sent.
pub const DATE_TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// The JSON fields of an error answer that hold its explanation, in order of preference.
/// Unconfirmed: Higher Logic publishes no error format; ASP.NET Web API (which the API's help
/// pages come from) writes `Message`. An answer with none of these is quoted as it is.
pub const ERROR_MESSAGE_FIELDS: &[&str] = &["Message", "message", "error"];

/// An instant as the API writes it: `2026-11-24T10:00:00.000Z` (sub-millisecond digits are cut,
/// not rounded, so the text never stands for a later instant).
pub fn format_date_time(at: DateTime<Utc>) -> String {
    at.format(DATE_TIME_FORMAT).to_string()
}

/// A Salesforce date (no time of day, no zone) as the API's date-time: midnight UTC,
/// `2026-12-01T00:00:00.000Z`.
pub fn format_date(date: NaiveDate) -> String {
    format_date_time(date.and_time(NaiveTime::MIN).and_utc())
}

/// Reads a date-time in either form .NET writes: `…Z` or with an offset (`…-05:00`), with or
/// without fractional seconds. `None` when the text is not one.
pub fn parse_date_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

// ---------------------------------------------------------------------------------------------
// POST /contactinfo
// ---------------------------------------------------------------------------------------------

/// One element of the `POST /contactinfo` array: a member's whole record, or its deletion.
/// Serialised without a tag: each variant is exactly the JSON object the API reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ContactInfo {
    /// `{"ContactDetails":{"ContactId":"…","IsDeleted":true}}`. Listed first so that reading a
    /// body back (tests, the simulator) tries the stricter shape first.
    Deleted(DeletedContact),
    /// A live member's whole record.
    Full(Box<FullContact>),
}

impl ContactInfo {
    /// The delete shape for the Contact with 18-character Id `contact_id`.
    pub fn deleted(contact_id: impl Into<String>) -> Self {
        ContactInfo::Deleted(DeletedContact {
            contact_details: DeletedContactDetails {
                contact_id: contact_id.into(),
                is_deleted: true,
            },
        })
    }

    /// `ContactDetails.ContactId`.
    pub fn contact_id(&self) -> &str {
        match self {
            ContactInfo::Deleted(d) => &d.contact_details.contact_id,
            ContactInfo::Full(f) => &f.contact_details.contact_id,
        }
    }
}

/// A live member: every key present, every collection present (possibly empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FullContact {
    /// The member's own fields.
    #[serde(rename = "ContactDetails")]
    pub contact_details: ContactDetails,
    /// Security groups, community groups and event registrations.
    #[serde(rename = "Groups")]
    pub groups: Vec<GroupEntry>,
    /// Postal addresses.
    #[serde(rename = "Addresses")]
    pub addresses: Vec<AddressEntry>,
    /// Phone numbers.
    #[serde(rename = "PhoneNumbers")]
    pub phone_numbers: Vec<PhoneNumberEntry>,
    /// Email addresses.
    #[serde(rename = "EmailAddresses")]
    pub email_addresses: Vec<EmailAddressEntry>,
}

/// `ContactDetails` of a live member: every key, null when empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactDetails {
    /// The Contact's 18-character Id: the key Higher Logic files the record under.
    #[serde(rename = "ContactId")]
    pub contact_id: String,
    /// First name.
    #[serde(rename = "FirstName")]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(rename = "LastName")]
    pub last_name: Option<String>,
    /// The address Higher Logic writes to.
    #[serde(rename = "PrimaryEmailAddress")]
    pub primary_email_address: Option<String>,
    /// The Contact's Account name.
    #[serde(rename = "OrganizationName")]
    pub organization_name: Option<String>,
    /// The person's job title.
    #[serde(rename = "Title")]
    pub title: Option<String>,
    /// Active: a site user. An inactive member is sent with `false` and no groups.
    #[serde(rename = "IsMember")]
    pub is_member: bool,
    /// Always `false`: hlsync pushes people (Contacts), never organisation records.
    #[serde(rename = "IsOrganization")]
    pub is_organization: bool,
    /// The member asked for no email.
    #[serde(rename = "DoNotEmail")]
    pub do_not_email: bool,
    /// Always `false` here; a deletion is a [`DeletedContact`].
    #[serde(rename = "IsDeleted")]
    pub is_deleted: bool,
}

/// The delete shape: the key and `IsDeleted`, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletedContact {
    /// The member's own fields.
    #[serde(rename = "ContactDetails")]
    pub contact_details: DeletedContactDetails,
}

/// `ContactDetails` of a deletion: the key and `IsDeleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletedContactDetails {
    /// The Contact's 18-character Id: the key Higher Logic files the record under.
    #[serde(rename = "ContactId")]
    pub contact_id: String,
    /// Always `true` (see [`ContactInfo::deleted`]).
    #[serde(rename = "IsDeleted")]
    pub is_deleted: bool,
}

/// One `Groups` entry: a security group, a community group or an event registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupEntry {
    /// The group's key (a Campaign's Id for an event registration).
    #[serde(rename = "GroupId")]
    pub group_id: String,
    /// The group's name as shown in the community.
    #[serde(rename = "GroupName")]
    pub group_name: String,
    /// The group's type (`Event` for a registration).
    #[serde(rename = "GroupType")]
    pub group_type: String,
    /// The registration status for an event group; `""` for the others.
    #[serde(rename = "Role")]
    pub role: String,
}

/// One `Addresses` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressEntry {
    /// First street line.
    #[serde(rename = "AddressLine1")]
    pub address_line1: Option<String>,
    /// Second street line.
    #[serde(rename = "AddressLine2")]
    pub address_line2: Option<String>,
    /// City.
    #[serde(rename = "City")]
    pub city: Option<String>,
    /// State or province.
    #[serde(rename = "StateProvince")]
    pub state_province: Option<String>,
    /// Postal code.
    #[serde(rename = "PostalCode")]
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2.
    #[serde(rename = "CountryCode")]
    pub country_code: Option<String>,
    /// The address's type, as the member record names it.
    #[serde(rename = "AddressType")]
    pub address_type: String,
    /// The member's main address.
    #[serde(rename = "IsPrimary")]
    pub is_primary: bool,
}

/// One `PhoneNumbers` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneNumberEntry {
    /// The number, as written on the Contact.
    #[serde(rename = "FormattedNumber")]
    pub formatted_number: String,
    /// The phone's type, as the member record names it.
    #[serde(rename = "PhoneType")]
    pub phone_type: String,
    /// The one to use first.
    #[serde(rename = "IsPreferred")]
    pub is_preferred: bool,
}

/// One `EmailAddresses` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailAddressEntry {
    /// The address.
    #[serde(rename = "EmailAddress")]
    pub email_address: String,
    /// The address's type, as the member record names it.
    #[serde(rename = "EmailType")]
    pub email_type: String,
    /// The one to use first.
    #[serde(rename = "IsPreferred")]
    pub is_preferred: bool,
}

/// The `/contactinfo` element for `member`: the delete shape for a deleted one, else its whole
/// record. The mapping rules (SPEC.md §2: which groups an inactive member keeps, which phone is
/// preferred) were applied when the `Member` was built; this only renames.
pub fn contact_info(member: &Member) -> ContactInfo {
    if member.is_deleted {
        return ContactInfo::deleted(member.contact_id.as_str());
    }
    ContactInfo::Full(Box::new(FullContact {
        contact_details: ContactDetails {
            contact_id: member.contact_id.as_str().to_owned(),
            first_name: member.first_name.clone(),
            last_name: member.last_name.clone(),
            primary_email_address: member.primary_email.clone(),
            organization_name: member.organization_name.clone(),
            title: member.title.clone(),
            is_member: member.is_member,
            is_organization: false,
            do_not_email: member.do_not_email,
            is_deleted: false,
        },
        groups: member.groups.iter().map(group_entry).collect(),
        addresses: member.addresses.iter().map(address_entry).collect(),
        phone_numbers: member.phones.iter().map(phone_number_entry).collect(),
        email_addresses: member.emails.iter().map(email_address_entry).collect(),
    }))
}

fn group_entry(group: &Group) -> GroupEntry {
    GroupEntry {
        group_id: group.key.as_str().to_owned(),
        group_name: group.name.clone(),
        group_type: group.group_type.clone(),
        role: group.role.clone(),
    }
}

fn address_entry(address: &Address) -> AddressEntry {
    AddressEntry {
        address_line1: address.line1.clone(),
        address_line2: address.line2.clone(),
        city: address.city.clone(),
        state_province: address.state_province.clone(),
        postal_code: address.postal_code.clone(),
        country_code: address.country_code.clone(),
        address_type: address.address_type.clone(),
        is_primary: address.is_primary,
    }
}

fn phone_number_entry(phone: &Phone) -> PhoneNumberEntry {
    PhoneNumberEntry {
        formatted_number: phone.number.clone(),
        phone_type: phone.phone_type.clone(),
        is_preferred: phone.is_preferred,
    }
}

fn email_address_entry(email: &Email) -> EmailAddressEntry {
    EmailAddressEntry {
        email_address: email.address.clone(),
        email_type: email.email_type.clone(),
        is_preferred: email.is_preferred,
    }
}

// ---------------------------------------------------------------------------------------------
// POST /meeting
// ---------------------------------------------------------------------------------------------

/// One element of the `POST /meeting` array: an event's whole record, or its deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MeetingRecord {
    /// `{"MeetingId":"…","IsDeleted":true}`.
    Deleted(DeletedMeeting),
    /// A live event's whole record.
    Full(FullMeeting),
}

impl MeetingRecord {
    /// The delete shape for the Campaign with 18-character Id `meeting_id`.
    pub fn deleted(meeting_id: impl Into<String>) -> Self {
        MeetingRecord::Deleted(DeletedMeeting {
            meeting_id: meeting_id.into(),
            is_deleted: true,
        })
    }

    /// `MeetingId`.
    pub fn meeting_id(&self) -> &str {
        match self {
            MeetingRecord::Deleted(d) => &d.meeting_id,
            MeetingRecord::Full(f) => &f.meeting_id,
        }
    }
}

/// A live event: every key present, null when empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FullMeeting {
    /// The Campaign's 18-character Id; also the `GroupId` of its registrations.
    #[serde(rename = "MeetingId")]
    pub meeting_id: String,
    /// The event's name.
    #[serde(rename = "Title")]
    pub title: Option<String>,
    /// The event's description.
    #[serde(rename = "Description")]
    pub description: Option<String>,
    /// The event's type.
    #[serde(rename = "MeetingType")]
    pub meeting_type: Option<String>,
    /// [`format_date`] of the Campaign's `StartDate`.
    #[serde(rename = "BeginDate")]
    pub begin_date: Option<String>,
    /// [`format_date`] of the Campaign's `EndDate`.
    #[serde(rename = "EndDate")]
    pub end_date: Option<String>,
    /// Always `false` here; a deletion is a [`DeletedMeeting`].
    #[serde(rename = "IsDeleted")]
    pub is_deleted: bool,
}

/// The delete shape of an event: the key and `IsDeleted`, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletedMeeting {
    /// The Campaign's 18-character Id.
    #[serde(rename = "MeetingId")]
    pub meeting_id: String,
    /// Always `true` (see [`MeetingRecord::deleted`]).
    #[serde(rename = "IsDeleted")]
    pub is_deleted: bool,
}

/// The `/meeting` element for `meeting`: the delete shape for a deleted (or no longer matching)
/// Campaign, else its whole record.
pub fn meeting(meeting: &Meeting) -> MeetingRecord {
    if meeting.is_deleted {
        return MeetingRecord::deleted(meeting.meeting_id.as_str());
    }
    MeetingRecord::Full(FullMeeting {
        meeting_id: meeting.meeting_id.as_str().to_owned(),
        title: meeting.title.clone(),
        description: meeting.description.clone(),
        meeting_type: meeting.meeting_type.clone(),
        begin_date: meeting.begin_date.map(format_date),
        end_date: meeting.end_date.map(format_date),
        is_deleted: false,
    })
}

// ---------------------------------------------------------------------------------------------
// GET {email_preferences_url}?since=…
// ---------------------------------------------------------------------------------------------

/// The answer of the tenant's email-preference feed: `{"changes":[…]}`, the changes strictly
/// after `since`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailPreferencesAnswer {
    /// The changes.
    #[serde(rename = "changes")]
    pub changes: Vec<EmailPreferenceEntry>,
}

/// One change as the feed writes it. `ContactId` and `UpdatedOn` stay text here so that one
/// unreadable entry is skipped on its own instead of failing the whole answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailPreferenceEntry {
    /// The Contact's 18-character Id: the key Higher Logic files the record under.
    #[serde(rename = "ContactId")]
    pub contact_id: String,
    /// The member asked for no email.
    #[serde(rename = "DoNotEmail")]
    pub do_not_email: bool,
    /// A date-time in either .NET form (see [`parse_date_time`]).
    #[serde(rename = "UpdatedOn")]
    pub updated_on: String,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use hlsync_core::{GroupKey, SfId};
    use serde_json::{Value, json};

    use super::*;

    fn id(text: &str) -> SfId {
        text.parse().unwrap()
    }

    /// A member as the mapping of SPEC.md §2 builds it: every kind of group, an address without a
    /// second line, two phones, the primary email.
    fn full_member() -> Member {
        let campaign = id("701000000000001AAA");
        Member {
            contact_id: id("003000000000001AAA"),
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            primary_email: Some("ada@example.org".into()),
            organization_name: Some("Analytical Engines".into()),
            title: Some("Countess".into()),
            is_member: true,
            do_not_email: false,
            groups: vec![
                Group::new(
                    "Membership",
                    GroupKey::field_value("HL_Member_Type__c", "Gold"),
                    "Gold",
                ),
                Group::new(
                    "Chapter",
                    GroupKey::field_value("HL_Chapter__c", "Ohio"),
                    "Ohio",
                ),
                Group {
                    group_type: "Event".into(),
                    key: GroupKey::event(&campaign),
                    name: "Annual Conference".into(),
                    role: "Registered".into(),
                },
            ],
            addresses: vec![Address {
                line1: Some("1 Main St".into()),
                line2: None,
                city: Some("Columbus".into()),
                state_province: Some("OH".into()),
                postal_code: Some("43004".into()),
                country_code: Some("US".into()),
                address_type: "Main".into(),
                is_primary: true,
            }],
            phones: vec![
                Phone {
                    number: "614-555-0100".into(),
                    phone_type: "Work".into(),
                    is_preferred: true,
                },
                Phone {
                    number: "614-555-0199".into(),
                    phone_type: "Mobile".into(),
                    is_preferred: false,
                },
            ],
            emails: vec![Email {
                address: "ada@example.org".into(),
                email_type: "Primary Email".into(),
                is_preferred: true,
            }],
            is_deleted: false,
            modstamp: Some(Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap()),
        }
    }

    /// The `/contactinfo` example of SPEC.md §6, typed out by hand with its "…" filled in.
    #[test]
    fn a_member_becomes_the_spec_example() {
        let expected: Value = serde_json::from_str(
            r#"{"ContactDetails": {"ContactId": "003000000000001AAA", "FirstName": "Ada",
                                   "LastName": "Lovelace", "PrimaryEmailAddress": "ada@example.org",
                                   "OrganizationName": "Analytical Engines", "Title": "Countess",
                                   "IsMember": true, "IsOrganization": false, "DoNotEmail": false,
                                   "IsDeleted": false},
                "Groups": [{"GroupId": "HL_Member_Type__c:Gold", "GroupName": "Gold",
                            "GroupType": "Membership", "Role": ""},
                           {"GroupId": "HL_Chapter__c:Ohio", "GroupName": "Ohio",
                            "GroupType": "Chapter", "Role": ""},
                           {"GroupId": "701000000000001AAA", "GroupName": "Annual Conference",
                            "GroupType": "Event", "Role": "Registered"}],
                "Addresses": [{"AddressLine1": "1 Main St", "AddressLine2": null, "City": "Columbus",
                               "StateProvince": "OH", "PostalCode": "43004", "CountryCode": "US",
                               "AddressType": "Main", "IsPrimary": true}],
                "PhoneNumbers": [{"FormattedNumber": "614-555-0100", "PhoneType": "Work",
                                  "IsPreferred": true},
                                 {"FormattedNumber": "614-555-0199", "PhoneType": "Mobile",
                                  "IsPreferred": false}],
                "EmailAddresses": [{"EmailAddress": "ada@example.org", "EmailType": "Primary Email",
                                    "IsPreferred": true}]}"#,
        )
        .unwrap();
        let element = contact_info(&full_member());
        assert_eq!(element.contact_id(), "003000000000001AAA");
        assert_eq!(serde_json::to_value(&element).unwrap(), expected);
    }

    /// Higher Logic replaces the whole record: an inactive member with nothing filled in still
    /// sends every key (null) and every collection (empty), so that each is cleared.
    #[test]
    fn an_empty_inactive_member_sends_every_key() {
        let member = Member {
            is_deleted: false,
            ..Member::deleted(id("003000000000002AAA"), None)
        };
        assert_eq!(
            serde_json::to_value(contact_info(&member)).unwrap(),
            json!({"ContactDetails": {"ContactId": "003000000000002AAA", "FirstName": null,
                                      "LastName": null, "PrimaryEmailAddress": null,
                                      "OrganizationName": null, "Title": null, "IsMember": false,
                                      "IsOrganization": false, "DoNotEmail": false,
                                      "IsDeleted": false},
                   "Groups": [], "Addresses": [], "PhoneNumbers": [], "EmailAddresses": []})
        );
    }

    #[test]
    fn a_deleted_member_is_its_id_and_nothing_else() {
        // Fields a deleted record should not hold are not sent even if it does.
        let mut member = full_member();
        member.is_deleted = true;
        let text = serde_json::to_string(&contact_info(&member)).unwrap();
        assert_eq!(
            text,
            r#"{"ContactDetails":{"ContactId":"003000000000001AAA","IsDeleted":true}}"#
        );
    }

    #[test]
    fn a_meeting_with_dates_and_its_delete_shape() {
        let campaign = Meeting {
            meeting_id: id("701000000000001"),
            title: Some("Annual Conference".into()),
            description: Some("Two days in Columbus".into()),
            meeting_type: Some("Event".into()),
            begin_date: NaiveDate::from_ymd_opt(2026, 12, 1),
            end_date: None,
            is_deleted: false,
        };
        let element = meeting(&campaign);
        assert_eq!(element.meeting_id(), "701000000000001AAA");
        assert_eq!(
            serde_json::to_value(&element).unwrap(),
            json!({"MeetingId": "701000000000001AAA", "Title": "Annual Conference",
                   "Description": "Two days in Columbus", "MeetingType": "Event",
                   "BeginDate": "2026-12-01T00:00:00.000Z", "EndDate": null, "IsDeleted": false})
        );
        let gone = meeting(&Meeting {
            is_deleted: true,
            ..campaign
        });
        assert_eq!(
            serde_json::to_string(&gone).unwrap(),
            r#"{"MeetingId":"701000000000001AAA","IsDeleted":true}"#
        );
    }

    #[test]
    fn dates_are_utc_with_milliseconds() {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 14, 5, 9).unwrap()
            + chrono::Duration::microseconds(120_999);
        assert_eq!(format_date_time(at), "2026-03-01T14:05:09.120Z");
        assert_eq!(
            format_date_time(Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap()),
            "2026-11-24T10:00:00.000Z"
        );
        assert_eq!(
            format_date(NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()),
            "2026-12-01T00:00:00.000Z"
        );
        // Both .NET forms read back to the same instant.
        let expected = Utc.with_ymd_and_hms(2026, 3, 1, 14, 5, 9).unwrap()
            + chrono::Duration::milliseconds(120);
        assert_eq!(parse_date_time("2026-03-01T14:05:09.120Z"), Some(expected));
        assert_eq!(
            parse_date_time("2026-03-01T09:05:09.120-05:00"),
            Some(expected)
        );
        assert_eq!(parse_date_time("yesterday"), None);
    }

    #[test]
    fn the_email_preference_feed_answer_parses() {
        let answer: EmailPreferencesAnswer = serde_json::from_str(
            r#"{"changes":[
                {"ContactId":"003000000000001AAA","DoNotEmail":true,"UpdatedOn":"2026-11-24T10:00:00.000Z"},
                {"ContactId":"003000000000002","DoNotEmail":false,"UpdatedOn":"2026-11-24T06:30:00.000-05:00"}]}"#,
        )
        .unwrap();
        assert_eq!(answer.changes.len(), 2);
        assert_eq!(answer.changes[0].contact_id, "003000000000001AAA");
        assert!(answer.changes[0].do_not_email);
        assert!(!answer.changes[1].do_not_email);
        assert_eq!(
            parse_date_time(&answer.changes[1].updated_on),
            Some(Utc.with_ymd_and_hms(2026, 11, 24, 11, 30, 0).unwrap())
        );
    }

    /// Bodies read back (by tests and tools) land on the shape they were written from.
    #[test]
    fn elements_read_back_as_their_own_shape() {
        let full = contact_info(&full_member());
        let deleted = ContactInfo::deleted("003000000000001AAA");
        for element in [full, deleted] {
            let text = serde_json::to_string(&element).unwrap();
            assert_eq!(serde_json::from_str::<ContactInfo>(&text).unwrap(), element);
        }
        let gone = MeetingRecord::deleted("701000000000001AAA");
        let text = serde_json::to_string(&gone).unwrap();
        assert_eq!(serde_json::from_str::<MeetingRecord>(&text).unwrap(), gone);
    }

    proptest::proptest! {
        /// Whatever a live member holds, its element carries every ContactDetails key and every
        /// collection; whatever a deleted one holds, its element carries only the two keys.
        #[test]
        fn every_key_is_always_sent(
            first in proptest::option::of("[a-z]{1,8}"),
            email in proptest::option::of("[a-z]{1,8}@example.org"),
            title in proptest::option::of("[A-Za-z ]{1,12}"),
            is_member in proptest::bool::ANY,
            do_not_email in proptest::bool::ANY,
            is_deleted in proptest::bool::ANY,
        ) {
            let member = Member {
                first_name: first,
                primary_email: email,
                title,
                is_member,
                do_not_email,
                is_deleted,
                ..full_member()
            };
            let value = serde_json::to_value(contact_info(&member)).unwrap();
            let object = value.as_object().unwrap();
            let details = object["ContactDetails"].as_object().unwrap();
            let mut detail_keys: Vec<&str> = details.keys().map(String::as_str).collect();
            detail_keys.sort_unstable();
            let mut top_keys: Vec<&str> = object.keys().map(String::as_str).collect();
            top_keys.sort_unstable();
            if is_deleted {
                proptest::prop_assert_eq!(top_keys, ["ContactDetails"]);
                proptest::prop_assert_eq!(detail_keys, ["ContactId", "IsDeleted"]);
                proptest::prop_assert_eq!(&details["IsDeleted"], &json!(true));
            } else {
                proptest::prop_assert_eq!(
                    top_keys,
                    ["Addresses", "ContactDetails", "EmailAddresses", "Groups", "PhoneNumbers"]
                );
                proptest::prop_assert_eq!(
                    detail_keys,
                    ["ContactId", "DoNotEmail", "FirstName", "IsDeleted", "IsMember",
                     "IsOrganization", "LastName", "OrganizationName", "PrimaryEmailAddress",
                     "Title"]
                );
                proptest::prop_assert_eq!(&details["IsMember"], &json!(is_member));
                proptest::prop_assert_eq!(&details["DoNotEmail"], &json!(do_not_email));
                proptest::prop_assert_eq!(&details["IsOrganization"], &json!(false));
            }
        }
    }
}
