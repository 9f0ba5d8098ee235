//! The work message that the Periodic Refresh puts on the queue and the Member Refresh consumes.
//!
//! One message names one changed record, or, for bulk work (the initial load, a full refresh,
//! `hlsync resync`), a range of Contact Ids: one message per page of 2,000 Contacts. It is small
//! on purpose: the Member Refresh re-reads the records in full, so a message that waited on the
//! queue never carries stale data.

use chrono::{DateTime, Utc};
use hlsync_core::id::SfId;
use serde::{Deserialize, Serialize};

/// Version of the message format; bump it when a field changes meaning.
pub const MESSAGE_VERSION: u32 = 1;

/// What kind of record a message names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Contact,
    /// A Campaign of `events.campaign_type`: an event.
    Campaign,
    /// A CampaignMember (messages of earlier versions): its Contact is re-read.
    CampaignMember,
    /// Every live Contact with an Id after `after` (from the first when absent) and at most
    /// `id`: bulk work, read as one query.
    ContactRange,
    /// A member's email opt-out from Higher Logic that Salesforce refused to take (dead-lettered
    /// with the reason; `hlsync redrive` brings it back to be written again): `id` is the
    /// Contact, `value` the opt-out, `cursor` when the member changed it in Higher Logic.
    OptOut,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkMessage {
    pub v: u32,
    pub kind: RecordKind,
    /// The record's 18-character Id (a 15-character one is converted on parse).
    pub id: SfId,
    /// The record's cursor value (e.g. SystemModstamp) when the Periodic Refresh saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<DateTime<Utc>>,
    /// Id of the Periodic Refresh run that sent it (for logs).
    pub run: String,
    /// The change was a delete (`IsDeleted = true` from queryAll).
    #[serde(default)]
    pub deleted: bool,
    /// Sent by a full refresh: re-read even if the stored cursor is newer (formula fields change
    /// without moving SystemModstamp).
    #[serde(default)]
    pub full: bool,
    /// Sent by `hlsync resync`: push even if the mapped record equals the last one pushed
    /// (Higher Logic's copy was lost or reset).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// The opt-out of a `kind: "opt_out"` message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<bool>,
    /// The Id a `kind: "contact_range"` message starts after (exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<SfId>,
}

/// Why a message body could not be understood. It will never succeed on a retry, so it goes
/// straight to the dead-letter queue.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("malformed message body: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("unsupported message version {0} (this build reads version {MESSAGE_VERSION})")]
    Version(u32),
    #[error("malformed message body: {0}")]
    Incomplete(&'static str),
}

impl WorkMessage {
    pub fn contact(id: SfId, cursor: Option<DateTime<Utc>>, run: &str, deleted: bool) -> Self {
        Self::of(RecordKind::Contact, id, cursor, run, deleted)
    }

    /// A message of any kind (`full: false`).
    pub fn of(
        kind: RecordKind,
        id: SfId,
        cursor: Option<DateTime<Utc>>,
        run: &str,
        deleted: bool,
    ) -> Self {
        WorkMessage {
            v: MESSAGE_VERSION,
            kind,
            id,
            cursor,
            run: run.to_string(),
            deleted,
            full: false,
            force: false,
            value: None,
            after: None,
        }
    }

    /// A range message: the live Contacts with an Id in `(after, through]`, re-read whatever
    /// their push records say (`full`), and with `force` pushed even when unchanged.
    pub fn contact_range(after: Option<SfId>, through: SfId, run: &str, force: bool) -> Self {
        WorkMessage {
            full: true,
            force,
            after,
            ..Self::of(RecordKind::ContactRange, through, None, run, false)
        }
    }

    pub fn parse(body: &str) -> Result<Self, MessageError> {
        let message: WorkMessage = serde_json::from_str(body)?;
        if message.v != MESSAGE_VERSION {
            return Err(MessageError::Version(message.v));
        }
        if message.kind == RecordKind::OptOut
            && (message.value.is_none() || message.cursor.is_none())
        {
            return Err(MessageError::Incomplete(
                "an opt_out message needs `value` and `cursor`",
            ));
        }
        if message.after.is_some() && message.kind != RecordKind::ContactRange {
            return Err(MessageError::Incomplete(
                "only a contact_range message has `after`",
            ));
        }
        if message
            .after
            .as_ref()
            .is_some_and(|after| *after >= message.id)
        {
            return Err(MessageError::Incomplete(
                "a contact_range message's `after` must come before its `id`",
            ));
        }
        Ok(message)
    }

    pub fn to_body(&self) -> String {
        // A struct of plain fields always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> SfId {
        "003000000000001AAA".parse().expect("valid id")
    }

    #[test]
    fn round_trips() {
        let m = WorkMessage::contact(id(), Some(Utc::now()), "run-1", true);
        assert_eq!(WorkMessage::parse(&m.to_body()).expect("parses"), m);
    }

    #[test]
    fn new_kinds_keep_version_1_and_old_bodies_still_parse() {
        let m = WorkMessage::of(RecordKind::CampaignMember, id(), None, "r", false);
        let body = m.to_body();
        assert!(body.contains(r#""kind":"campaign_member""#), "{body}");
        assert!(body.contains(r#""v":1"#), "{body}");
        assert_eq!(WorkMessage::parse(&body).expect("parses"), m);
        let old = r#"{"v":1,"kind":"contact","id":"003000000000001AAA","run":"r"}"#;
        let m = WorkMessage::parse(old).expect("a body written before events existed");
        assert_eq!(
            (m.kind, m.full, m.deleted),
            (RecordKind::Contact, false, false)
        );
        let c = r#"{"v":1,"kind":"campaign","id":"701000000000001AAA","run":"r","full":false}"#;
        assert_eq!(
            WorkMessage::parse(c).expect("parses").kind,
            RecordKind::Campaign
        );
    }

    #[test]
    fn a_range_message_round_trips_and_an_empty_range_is_malformed() {
        let after: SfId = "003000000000001AAA".parse().expect("valid id");
        let through: SfId = "003000000000009AAA".parse().expect("valid id");
        let m = WorkMessage::contact_range(Some(after.clone()), through.clone(), "r", false);
        let body = m.to_body();
        assert!(body.contains(r#""kind":"contact_range""#), "{body}");
        assert_eq!(WorkMessage::parse(&body).expect("parses"), m);
        let from_start = WorkMessage::contact_range(None, through.clone(), "r", true);
        assert_eq!(
            WorkMessage::parse(&from_start.to_body()).expect("parses"),
            from_start
        );
        let backwards = WorkMessage::contact_range(Some(through), after, "r", false);
        assert!(WorkMessage::parse(&backwards.to_body()).is_err());
        let stray = r#"{"v":1,"kind":"contact","id":"003000000000001","after":"003000000000000","run":"r"}"#;
        assert!(WorkMessage::parse(stray).is_err());
    }

    #[test]
    fn a_15_character_id_is_widened() {
        let body = r#"{"v":1,"kind":"contact","id":"003000000000001","run":"r"}"#;
        let m = WorkMessage::parse(body).expect("parses");
        assert_eq!(m.id.as_str().len(), 18);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for body in [
            "",
            "not json",
            r#"{"v":1,"kind":"contact","id":"nope","run":"r"}"#,
            r#"{"v":1,"kind":"lead","id":"003000000000001","run":"r"}"#,
            r#"{"v":1,"kind":"contact","id":"003000000000001","run":"r","extra":1}"#,
        ] {
            assert!(
                WorkMessage::parse(body).is_err(),
                "{body:?} should not parse"
            );
        }
        assert!(matches!(
            WorkMessage::parse(r#"{"v":2,"kind":"contact","id":"003000000000001","run":"r"}"#),
            Err(MessageError::Version(2))
        ));
    }
}
