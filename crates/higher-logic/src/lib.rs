//! Client of Higher Logic's data push API (SPEC.md §6): member profiles, events and
//! registrations out; members' email opt-out changes in.
//!
//! - Pushes are split into calls of at most 200 records; each record gets its own
//!   [`RecordResult`], so one bad record is retried or dead-lettered on its own.
//! - Calls are paced by a [`RateLimiter`] (in-process by default, pluggable for a shared limit),
//!   429s wait for `Retry-After`, 5xx and connection errors back off with jitter, 401/403 stop.
//! - The wire format is in [`wire`], and only there.

mod client;
mod error;
pub mod rate;
pub mod wire;

use hlsync_core::{Event, Group, HigherLogicConfig, Member, Registration, check_url};

pub use client::{
    DEFAULT_REQUEST_TIMEOUT, EmailPreferenceChange, HigherLogicClient, HigherLogicCredentials,
    RecordResult, RetryPolicy,
};
pub use error::HlError;
pub use rate::{IntervalLimiter, RateLimitError, RateLimiter, Unlimited};

use wire::{AddressRecord, ContactRecord, EventRecord, GroupRecord, RegistrationRecord};

impl HigherLogicClient {
    /// A client for the tenant at `cfg.base_url`, paced at `cfg.max_calls_per_minute` in this
    /// process. The URL must be https unless `allow_insecure_http` (emulators and tests).
    pub fn new(
        cfg: &HigherLogicConfig,
        creds: HigherLogicCredentials,
        allow_insecure_http: bool,
    ) -> Result<Self, HlError> {
        const KEY: &str = "higher_logic.base_url";
        check_url(&cfg.base_url, allow_insecure_http, KEY)?;
        let url = url::Url::parse(&cfg.base_url).map_err(|e| HlError::Config {
            key: KEY,
            reason: e.to_string(),
        })?;
        Self::from_parts(&url, cfg.max_calls_per_minute, creds)
    }

    /// Pushes member profiles (full records: Higher Logic replaces what it holds).
    pub async fn push_contacts(&self, members: &[Member]) -> Result<Vec<RecordResult>, HlError> {
        let records: Vec<ContactRecord> = members.iter().map(contact_record).collect();
        self.push(&records).await
    }

    /// Pushes events (Campaigns).
    pub async fn push_events(&self, events: &[Event]) -> Result<Vec<RecordResult>, HlError> {
        let records: Vec<EventRecord> = events.iter().map(event_record).collect();
        self.push(&records).await
    }

    /// Pushes registrations (CampaignMembers); push their events first, Higher Logic files a
    /// registration under an event it knows. Results are keyed `EventKey:LegacyContactKey`.
    pub async fn push_registrations(
        &self,
        registrations: &[Registration],
    ) -> Result<Vec<RecordResult>, HlError> {
        let records: Vec<RegistrationRecord> =
            registrations.iter().map(registration_record).collect();
        self.push(&records).await
    }

    /// Pushes records already in wire form (for tools that build them directly).
    pub async fn push_contact_records(
        &self,
        records: &[ContactRecord],
    ) -> Result<Vec<RecordResult>, HlError> {
        self.push(records).await
    }

    pub async fn push_event_records(
        &self,
        records: &[EventRecord],
    ) -> Result<Vec<RecordResult>, HlError> {
        self.push(records).await
    }

    /// Results are keyed `EventKey:LegacyContactKey` (see [`wire::registration_key`]).
    pub async fn push_registration_records(
        &self,
        records: &[RegistrationRecord],
    ) -> Result<Vec<RecordResult>, HlError> {
        self.push(records).await
    }
}

/// A member as the push API receives it. Field by field, so that the wire names stay in
/// [`wire`] whatever serde attributes the domain type carries.
pub fn contact_record(member: &Member) -> ContactRecord {
    let address = &member.address;
    ContactRecord {
        legacy_contact_key: member.legacy_contact_key.as_str().to_owned(),
        first_name: member.first_name.clone(),
        last_name: member.last_name.clone(),
        email_address: member.email_address.clone(),
        company_name: member.company_name.clone(),
        title: member.title.clone(),
        phone: member.phone.clone(),
        mobile_phone: member.mobile_phone.clone(),
        address: AddressRecord {
            street: address.street.clone(),
            city: address.city.clone(),
            state_province: address.state_province.clone(),
            postal_code: address.postal_code.clone(),
            country: address.country.clone(),
        },
        is_active: member.is_active,
        is_deleted: member.is_deleted,
        email_opt_out: member.email_opt_out,
        security_groups: member.security_groups.iter().map(group_record).collect(),
        community_groups: member.community_groups.iter().map(group_record).collect(),
        updated_on: member.updated_on.map(wire::format_timestamp),
    }
}

fn group_record(group: &Group) -> GroupRecord {
    GroupRecord {
        group_key: group.key.as_str().to_owned(),
        group_name: group.name.clone(),
    }
}

pub fn event_record(event: &Event) -> EventRecord {
    EventRecord {
        event_key: event.event_key.as_str().to_owned(),
        name: event.name.clone(),
        start_date: event.start_date.map(wire::format_date),
        end_date: event.end_date.map(wire::format_date),
        is_deleted: event.is_deleted,
    }
}

pub fn registration_record(registration: &Registration) -> RegistrationRecord {
    RegistrationRecord {
        event_key: registration.event_key.as_str().to_owned(),
        legacy_contact_key: registration.legacy_contact_key.as_str().to_owned(),
        status: registration.status.clone(),
        is_deleted: registration.is_deleted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync>() {}

    /// The sync functions run these on a multi-threaded runtime and share one client.
    #[test]
    fn the_client_and_its_futures_can_cross_threads() {
        assert_send_sync::<HigherLogicClient>();
        let cfg = HigherLogicConfig::new("https://datapushapi.example.org/v2");
        let creds = HigherLogicCredentials {
            tenant_code: "t".into(),
            api_key: "k".to_owned().into(),
        };
        let client = HigherLogicClient::new(&cfg, creds, false).unwrap();
        assert_send(&client.push_contacts(&[]));
        assert_send(&client.push_events(&[]));
        assert_send(&client.push_registrations(&[]));
        assert_send(&client.email_preferences_since(chrono::Utc::now()));
        assert_eq!(
            client.base_url().as_str(),
            "https://datapushapi.example.org/v2/"
        );
    }
}
