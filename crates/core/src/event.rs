//! Campaigns → Higher Logic meetings, CampaignMembers → the registrations a member's record
//! carries as groups (SPEC.md §2, §6).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::id::SfId;
use crate::mapping::{CampaignMembership, Fields, MappingError};
use crate::member::ContentHash;

/// One element of `POST {base_url}/meeting`: a Campaign of `events.campaign_type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meeting {
    /// The Campaign's 18-character Id; also the `GroupId` of its registrations.
    pub meeting_id: SfId,
    /// The Campaign's `Name`.
    pub title: Option<String>,
    /// The Campaign's `Description`.
    pub description: Option<String>,
    /// The Campaign's `Type`.
    pub meeting_type: Option<String>,
    /// The Campaign's `StartDate`.
    pub begin_date: Option<NaiveDate>,
    /// The Campaign's `EndDate`.
    pub end_date: Option<NaiveDate>,
    /// Pushed as the delete shape `{"MeetingId","IsDeleted":true}`: the Campaign was deleted or
    /// is no longer of the events' type.
    pub is_deleted: bool,
}

impl Meeting {
    /// The meeting of a deleted Campaign, or of one whose `Type` no longer matches.
    pub fn deleted(id: SfId) -> Self {
        Meeting {
            meeting_id: id,
            title: None,
            description: None,
            meeting_type: None,
            begin_date: None,
            end_date: None,
            is_deleted: true,
        }
    }

    /// Fingerprint so an unchanged Campaign is not pushed again.
    pub fn content_hash(&self) -> ContentHash {
        ContentHash::of_json(self)
    }
}

/// The Campaign fields a meeting is read from (`LastModifiedDate`: when a user last edited it,
/// which the sync compares with when it last handled the Campaign).
pub const CAMPAIGN_FIELDS: &[&str] = &[
    "Id",
    "Name",
    "Description",
    "Type",
    "StartDate",
    "EndDate",
    "IsDeleted",
    "LastModifiedDate",
    "SystemModstamp",
];

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

/// Map a Campaign ([`CAMPAIGN_FIELDS`]) to a meeting. A deleted Campaign, or one whose `Type`
/// is not `campaign_type` (compared without case), gives the delete shape.
pub fn map_campaign(
    fields: &Map<String, Value>,
    campaign_type: &str,
) -> Result<Meeting, MappingError> {
    let fields = Fields::new(fields);
    let id = fields.id("Campaign", "Id")?;
    let meeting_type = fields.text("Type");
    let is_event = meeting_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case(campaign_type.trim()));
    if fields.flag("IsDeleted") || !is_event {
        return Ok(Meeting::deleted(id));
    }
    Ok(Meeting {
        title: fields.text("Name"),
        description: fields.text("Description"),
        meeting_type,
        begin_date: date(&fields, &id, "StartDate")?,
        end_date: date(&fields, &id, "EndDate")?,
        is_deleted: false,
        meeting_id: id,
    })
}

/// The CampaignMember fields a registration is read from (`Campaign.Name` through the
/// relationship, so that no second read is needed for the group's name).
pub const CAMPAIGN_MEMBER_FIELDS: &[&str] =
    &["Id", "ContactId", "CampaignId", "Campaign.Name", "Status"];

/// Reads one CampaignMember row ([`CAMPAIGN_MEMBER_FIELDS`]) as the Contact it belongs to and
/// its membership. `Ok(None)` for a Lead's membership (no `ContactId`): only Contacts are members.
pub fn campaign_membership(
    fields: &Map<String, Value>,
) -> Result<Option<(SfId, CampaignMembership)>, MappingError> {
    let campaign_name = fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Campaign"))
        .and_then(|(_, v)| v.as_object())
        .and_then(|campaign| Fields::new(campaign).text("Name"));
    let fields = Fields::new(fields);
    let Some(contact) = fields.optional_id("CampaignMember", "ContactId")? else {
        return Ok(None);
    };
    Ok(Some((
        contact,
        CampaignMembership {
            campaign_id: fields.id("CampaignMember", "CampaignId")?,
            campaign_name,
            status: fields.text("Status"),
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        serde_json::from_value(v).expect("an object")
    }

    #[test]
    fn campaign_to_meeting() {
        let m = map_campaign(
            &obj(json!({
                "attributes": {"type": "Campaign"},
                "Id": "701000000000001", "Name": " Annual Meeting ", "Description": "All day",
                "Type": "Event", "StartDate": "2026-12-01", "EndDate": null, "IsDeleted": false
            })),
            "event",
        )
        .unwrap();
        assert_eq!(
            m,
            Meeting {
                meeting_id: "701000000000001AAA".parse().unwrap(),
                title: Some("Annual Meeting".into()),
                description: Some("All day".into()),
                meeting_type: Some("Event".into()),
                begin_date: NaiveDate::from_ymd_opt(2026, 12, 1),
                end_date: None,
                is_deleted: false,
            }
        );
    }

    #[test]
    fn deleted_or_other_type_is_the_delete_shape() {
        let deleted = map_campaign(
            &obj(json!({"Id": "701000000000001", "Type": "Event", "IsDeleted": true, "Name": "x"})),
            "Event",
        )
        .unwrap();
        assert_eq!(
            deleted,
            Meeting::deleted("701000000000001".parse().unwrap())
        );
        let other = map_campaign(
            &obj(json!({"Id": "701000000000001", "Type": "Webinar", "Name": "x"})),
            "Event",
        )
        .unwrap();
        assert!(other.is_deleted);
    }

    #[test]
    fn bad_campaign_date_names_field() {
        let err = map_campaign(
            &obj(json!({"Id": "701000000000001", "Type": "Event", "StartDate": "soon"})),
            "Event",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("StartDate") && err.to_string().contains("soon"),
            "{err}"
        );
    }

    #[test]
    fn campaign_member_row_gives_contact_and_membership() {
        let (contact, m) = campaign_membership(&obj(json!({
            "attributes": {"type": "CampaignMember"},
            "Id": "00v000000000001", "ContactId": "003000000000001",
            "CampaignId": "701000000000001", "Status": "Attended",
            "Campaign": {"attributes": {"type": "Campaign"}, "Name": " Gala "}
        })))
        .unwrap()
        .unwrap();
        assert_eq!(contact.as_str(), "003000000000001AAA");
        assert_eq!(m.campaign_id.as_str(), "701000000000001AAA");
        assert_eq!(m.campaign_name.as_deref(), Some("Gala"));
        assert_eq!(m.status.as_deref(), Some("Attended"));
        let lead = campaign_membership(&obj(json!({
            "ContactId": null, "CampaignId": "701000000000001", "Status": "Sent",
            "Campaign": null
        })))
        .unwrap();
        assert_eq!(lead, None);
    }

    #[test]
    fn hashes_follow_content() {
        let m = |v: Value| map_campaign(&obj(v), "Event").unwrap();
        let a = m(json!({"Id": "701000000000001", "Name": "A", "Type": "Event"}));
        let b = m(json!({"Name": "A", "Type": "Event", "Id": "701000000000001AAA"}));
        let c = m(json!({"Id": "701000000000001", "Name": "B", "Type": "Event"}));
        assert_eq!(a.content_hash(), b.content_hash());
        assert_ne!(a.content_hash(), c.content_hash());
    }
}
