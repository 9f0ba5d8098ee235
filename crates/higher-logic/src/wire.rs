//! The wire format of Higher Logic's data push API (SPEC.md §6), and nothing else.
//!
//! Everything that names a path, a header or a JSON field lives here, so that this one file can
//! be compared line by line with the tenant's API documentation at deployment.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

pub const API_KEY_HEADER: &str = "x-api-key";
pub const TENANT_CODE_HEADER: &str = "x-tenant-code";

pub const CONTACTS_PATH: &str = "contactinfo";
pub const EVENTS_PATH: &str = "events";
pub const REGISTRATIONS_PATH: &str = "registrations";
pub const EMAIL_PREFERENCES_PATH: &str = "emailpreferences";
pub const SINCE_PARAM: &str = "since";

/// The most records one push call may carry.
pub const MAX_RECORDS_PER_CALL: usize = 200;

/// `status` of a record that Higher Logic accepted.
pub const STATUS_OK: &str = "ok";

/// Timestamps as the API writes them: `2026-11-24T10:00:00.000Z`.
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Dates as the API writes them: `2026-12-01`.
pub fn format_date(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// One member profile: the body of `POST /contactinfo` is an array of these. Every field is
/// always sent (null when empty) because the API replaces the whole record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ContactRecord {
    pub legacy_contact_key: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email_address: Option<String>,
    pub company_name: Option<String>,
    pub title: Option<String>,
    pub phone: Option<String>,
    pub mobile_phone: Option<String>,
    pub address: AddressRecord,
    pub is_active: bool,
    pub is_deleted: bool,
    pub email_opt_out: bool,
    pub security_groups: Vec<GroupRecord>,
    pub community_groups: Vec<GroupRecord>,
    /// The Contact's last modification (`SystemModstamp`); null when unknown (a Contact found
    /// missing has none).
    pub updated_on: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AddressRecord {
    pub street: Option<String>,
    pub city: Option<String>,
    pub state_province: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct GroupRecord {
    pub group_key: String,
    pub group_name: String,
}

/// An event (a Salesforce Campaign): the body of `POST /events` is an array of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct EventRecord {
    pub event_key: String,
    pub name: Option<String>,
    /// `YYYY-MM-DD`.
    pub start_date: Option<String>,
    /// `YYYY-MM-DD`.
    pub end_date: Option<String>,
    pub is_deleted: bool,
}

/// A registration (a CampaignMember): the body of `POST /registrations` is an array of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RegistrationRecord {
    pub event_key: String,
    pub legacy_contact_key: String,
    /// The CampaignMember's status; may be null on a deletion.
    pub status: Option<String>,
    pub is_deleted: bool,
}

/// The answer to every push: one result per record received.
#[derive(Debug, Clone, Deserialize)]
pub struct PushResponse {
    pub results: Vec<PushResult>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PushResult {
    #[serde(rename = "LegacyContactKey", default)]
    pub legacy_contact_key: Option<String>,
    #[serde(rename = "EventKey", default)]
    pub event_key: Option<String>,
    pub status: String,
    #[serde(default)]
    pub message: Option<String>,
}

impl PushResult {
    pub fn is_ok(&self) -> bool {
        self.status.eq_ignore_ascii_case(STATUS_OK)
    }
}

/// The answer to `GET /emailpreferences?since=…`.
#[derive(Debug, Clone, Deserialize)]
pub struct EmailPreferencesResponse {
    pub changes: Vec<EmailPreferenceRecord>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EmailPreferenceRecord {
    pub legacy_contact_key: String,
    pub email_opt_out: bool,
    pub updated_on: DateTime<Utc>,
}

/// How the records of one push endpoint are named in requests and matched in answers.
pub(crate) trait PushRecord: Serialize {
    const PATH: &'static str;

    /// The key this record's result carries: [`crate::RecordResult::key`].
    fn key(&self) -> String;

    /// The same key read from a result; `None` when the result does not name its record.
    fn result_key(result: &PushResult) -> Option<String>;
}

impl PushRecord for ContactRecord {
    const PATH: &'static str = CONTACTS_PATH;

    fn key(&self) -> String {
        self.legacy_contact_key.clone()
    }

    fn result_key(result: &PushResult) -> Option<String> {
        result.legacy_contact_key.clone()
    }
}

impl PushRecord for EventRecord {
    const PATH: &'static str = EVENTS_PATH;

    fn key(&self) -> String {
        self.event_key.clone()
    }

    fn result_key(result: &PushResult) -> Option<String> {
        result.event_key.clone()
    }
}

/// A registration is named by its event and its member: `EventKey:LegacyContactKey`.
pub fn registration_key(event_key: &str, legacy_contact_key: &str) -> String {
    format!("{event_key}:{legacy_contact_key}")
}

impl PushRecord for RegistrationRecord {
    const PATH: &'static str = REGISTRATIONS_PATH;

    fn key(&self) -> String {
        registration_key(&self.event_key, &self.legacy_contact_key)
    }

    fn result_key(result: &PushResult) -> Option<String> {
        Some(registration_key(
            result.event_key.as_deref()?,
            result.legacy_contact_key.as_deref()?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// The example record of SPEC.md §6, typed out by hand: the serialised record must be it.
    #[test]
    fn contact_record_matches_the_spec_example() {
        let record = ContactRecord {
            legacy_contact_key: "003000000000001AAA".into(),
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            email_address: Some("ada@example.org".into()),
            company_name: Some("Analytical Engines".into()),
            title: Some("Countess".into()),
            phone: None,
            mobile_phone: Some("+1 555 0100".into()),
            address: AddressRecord {
                street: Some("1 Main St".into()),
                city: Some("Columbus".into()),
                state_province: Some("OH".into()),
                postal_code: Some("43004".into()),
                country: Some("US".into()),
            },
            is_active: true,
            is_deleted: false,
            email_opt_out: false,
            security_groups: vec![GroupRecord {
                group_key: "HL_Member_Type__c:Gold".into(),
                group_name: "Gold".into(),
            }],
            community_groups: vec![GroupRecord {
                group_key: "HL_Chapter__c:Ohio".into(),
                group_name: "Ohio".into(),
            }],
            updated_on: Some("2026-11-24T10:00:00.000Z".into()),
        };
        let expected: Value = serde_json::from_str(
            r#"{"LegacyContactKey":"003000000000001AAA","FirstName":"Ada","LastName":"Lovelace",
                "EmailAddress":"ada@example.org","CompanyName":"Analytical Engines",
                "Title":"Countess","Phone":null,"MobilePhone":"+1 555 0100",
                "Address":{"Street":"1 Main St","City":"Columbus","StateProvince":"OH",
                           "PostalCode":"43004","Country":"US"},
                "IsActive":true,"IsDeleted":false,"EmailOptOut":false,
                "SecurityGroups":[{"GroupKey":"HL_Member_Type__c:Gold","GroupName":"Gold"}],
                "CommunityGroups":[{"GroupKey":"HL_Chapter__c:Ohio","GroupName":"Ohio"}],
                "UpdatedOn":"2026-11-24T10:00:00.000Z"}"#,
        )
        .unwrap();
        assert_eq!(serde_json::to_value(&record).unwrap(), expected);
    }

    #[test]
    fn event_and_registration_records_match_the_spec() {
        let event = EventRecord {
            event_key: "701000000000001AAA".into(),
            name: Some("Gala".into()),
            start_date: Some("2026-12-01".into()),
            end_date: None,
            is_deleted: false,
        };
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            json!({"EventKey":"701000000000001AAA","Name":"Gala","StartDate":"2026-12-01",
                   "EndDate":null,"IsDeleted":false})
        );
        let registration = RegistrationRecord {
            event_key: "701000000000001AAA".into(),
            legacy_contact_key: "003000000000001AAA".into(),
            status: Some("Registered".into()),
            is_deleted: false,
        };
        assert_eq!(
            serde_json::to_value(&registration).unwrap(),
            json!({"EventKey":"701000000000001AAA","LegacyContactKey":"003000000000001AAA",
                   "Status":"Registered","IsDeleted":false})
        );
        assert_eq!(registration.key(), "701000000000001AAA:003000000000001AAA");
    }

    /// An answer written from SPEC.md §6 by hand.
    #[test]
    fn push_and_preference_answers_parse() {
        let answer: PushResponse = serde_json::from_str(
            r#"{"results":[
                {"LegacyContactKey":"003000000000001AAA","status":"ok","message":""},
                {"LegacyContactKey":"003000000000002AAA","status":"error","message":"EmailAddress is invalid"}]}"#,
        )
        .unwrap();
        assert!(answer.results[0].is_ok());
        assert!(!answer.results[1].is_ok());
        assert_eq!(
            ContactRecord::result_key(&answer.results[1]).as_deref(),
            Some("003000000000002AAA")
        );
        let prefs: EmailPreferencesResponse = serde_json::from_str(
            r#"{"changes":[{"LegacyContactKey":"003000000000001AAA","EmailOptOut":true,
                            "UpdatedOn":"2026-11-24T10:00:00.000Z"}]}"#,
        )
        .unwrap();
        assert!(prefs.changes[0].email_opt_out);
        assert_eq!(
            format_timestamp(prefs.changes[0].updated_on),
            "2026-11-24T10:00:00.000Z"
        );
    }
}
