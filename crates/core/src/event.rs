//! Campaigns → events, CampaignMembers → registrations (SPEC.md §6 wire records).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::id::SfId;
use crate::mapping::{Fields, MappingError};
use crate::member::ContentHash;

/// One record of `POST {base_url}/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Event {
    /// The Campaign's 18-character Id.
    pub event_key: SfId,
    pub name: Option<String>,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    pub is_deleted: bool,
}

/// One record of `POST {base_url}/registrations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Registration {
    /// The Campaign's 18-character Id.
    pub event_key: SfId,
    /// The Contact's 18-character Id.
    pub legacy_contact_key: SfId,
    pub status: Option<String>,
    pub is_deleted: bool,
}

impl Event {
    /// Fingerprint so an unchanged Campaign is not pushed again.
    pub fn content_hash(&self) -> ContentHash {
        ContentHash::of_json(self)
    }
}

impl Registration {
    /// Fingerprint so an unchanged CampaignMember is not pushed again.
    pub fn content_hash(&self) -> ContentHash {
        ContentHash::of_json(self)
    }
}

fn date(fields: &Fields<'_>, id: &SfId, name: &str) -> Result<Option<NaiveDate>, MappingError> {
    match fields.text(name) {
        None => Ok(None),
        Some(text) => NaiveDate::parse_from_str(&text, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| MappingError::BadDate {
                object: "Campaign",
                id: id.to_string(),
                field: name.to_owned(),
                value: text,
            }),
    }
}

/// Map a Campaign (`Id, Name, StartDate, EndDate, IsDeleted`) to an event.
pub fn map_campaign(fields: &Map<String, Value>) -> Result<Event, MappingError> {
    let fields = Fields::new(fields);
    let id = fields.id("Campaign", "Id")?;
    Ok(Event {
        name: fields.text("Name"),
        start_date: date(&fields, &id, "StartDate")?,
        end_date: date(&fields, &id, "EndDate")?,
        is_deleted: fields.flag("IsDeleted"),
        event_key: id,
    })
}

/// Map a CampaignMember (`CampaignId, ContactId, Status, IsDeleted`) to a registration.
///
/// `Ok(None)` for a member that is a Lead (no `ContactId`): only Contacts are site members.
/// A status outside `registered_statuses` (compared case-insensitively) or a deleted member
/// gives `IsDeleted: true`, which removes the registration in Higher Logic.
pub fn map_campaign_member(
    fields: &Map<String, Value>,
    registered_statuses: &[String],
) -> Result<Option<Registration>, MappingError> {
    let fields = Fields::new(fields);
    let Some(contact) = fields.optional_id("CampaignMember", "ContactId")? else {
        return Ok(None);
    };
    let event = fields.id("CampaignMember", "CampaignId")?;
    let status = fields.text("Status");
    let registered = status.as_deref().is_some_and(|s| {
        registered_statuses
            .iter()
            .any(|r| r.trim().eq_ignore_ascii_case(s))
    });
    Ok(Some(Registration {
        event_key: event,
        legacy_contact_key: contact,
        is_deleted: fields.flag("IsDeleted") || !registered,
        status,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn statuses() -> Vec<String> {
        vec!["Registered".into(), "Attended".into()]
    }

    #[test]
    fn campaign_to_event_wire_form() {
        let e = map_campaign(&obj(json!({
            "attributes": {"type": "Campaign"},
            "Id": "701000000000001", "Name": " Annual Meeting ",
            "StartDate": "2026-12-01", "EndDate": null, "IsDeleted": false
        })))
        .unwrap();
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"EventKey": "701000000000001AAA", "Name": "Annual Meeting",
                   "StartDate": "2026-12-01", "EndDate": null, "IsDeleted": false})
        );
    }

    #[test]
    fn bad_campaign_date_names_field() {
        let err =
            map_campaign(&obj(json!({"Id": "701000000000001", "StartDate": "soon"}))).unwrap_err();
        assert!(
            err.to_string().contains("StartDate") && err.to_string().contains("soon"),
            "{err}"
        );
    }

    #[test]
    fn registered_status_is_a_registration() {
        let r = map_campaign_member(
            &obj(
                json!({"CampaignId": "701000000000001", "ContactId": "003000000000001",
                        "Status": "attended", "IsDeleted": false}),
            ),
            &statuses(),
        )
        .unwrap()
        .unwrap();
        assert!(!r.is_deleted);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"EventKey": "701000000000001AAA", "LegacyContactKey": "003000000000001AAA",
                   "Status": "attended", "IsDeleted": false})
        );
    }

    #[test]
    fn other_status_or_deleted_removes_registration() {
        let member = |status: &str, deleted: bool| {
            map_campaign_member(
                &obj(
                    json!({"CampaignId": "701000000000001", "ContactId": "003000000000001",
                            "Status": status, "IsDeleted": deleted}),
                ),
                &statuses(),
            )
            .unwrap()
            .unwrap()
        };
        assert!(member("Sent", false).is_deleted);
        assert!(member("Registered", true).is_deleted);
        assert!(!member("Registered", false).is_deleted);
    }

    #[test]
    fn lead_member_is_skipped() {
        let r = map_campaign_member(
            &obj(json!({"CampaignId": "701000000000001", "ContactId": null, "LeadId": "00Q000000000001"})),
            &statuses(),
        )
        .unwrap();
        assert_eq!(r, None);
    }

    #[test]
    fn hashes_follow_content() {
        let a = map_campaign(&obj(json!({"Id": "701000000000001", "Name": "A"}))).unwrap();
        let b = map_campaign(&obj(json!({"Name": "A", "Id": "701000000000001AAA"}))).unwrap();
        let c = map_campaign(&obj(json!({"Id": "701000000000001", "Name": "B"}))).unwrap();
        assert_eq!(a.content_hash(), b.content_hash());
        assert_ne!(a.content_hash(), c.content_hash());
    }
}
