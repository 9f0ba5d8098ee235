//! The hlsync domain, with no I/O: the configuration, Salesforce Ids, the Contact to member
//! mapping of SPEC.md §2, the API allotment arithmetic and the watermark windows.
//!
//! Everything here is a pure function of its inputs, so the sync, the Lambdas and the CLI share
//! one definition of each rule and it is tested without a network.

#![deny(missing_docs)]

pub mod allotment;
pub mod config;
pub mod event;
pub mod id;
pub mod mapping;
pub mod member;
pub mod optout;
pub mod schema;
pub mod state;
pub mod time;
pub mod watermark;

pub use allotment::{ApiUsage, parse_limit_info};
pub use config::{
    CONFIG_ENV, CommunityField, Config, ConfigError, ContactsConfig, EXAMPLE_TOML, EventsConfig,
    HigherLogicConfig, SalesforceConfig, check_url,
};
pub use event::{Meeting, campaign_membership, map_campaign};
pub use id::{IdError, SfId};
pub use mapping::{CampaignMembership, ContactInput, MappingError, country_code, map_contact};
pub use member::{Address, ContentHash, Email, Group, GroupKey, Member, Phone};
pub use optout::resolve_opt_out;
pub use schema::{ContactSchema, Describe, FieldInfo, FieldType, RecordTypeInfo, SchemaError};
pub use time::{format_soql_datetime, parse_sf_datetime};
pub use watermark::{Cursor, Window};

/// Any error of this crate, for callers that pass them on whole.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A text is not a Salesforce Id.
    #[error(transparent)]
    Id(#[from] IdError),
    /// The org's Contact object does not fit the configuration.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A record cannot be mapped.
    #[error(transparent)]
    Mapping(#[from] MappingError),
}

impl Error {
    /// Whether trying again later can succeed. Only a mapping error caused by a stale describe
    /// can; bad config, bad Ids and a schema that does not fit the config need a person.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Mapping(e) => e.is_retryable(),
            Error::Config(_) | Error::Id(_) | Error::Schema(_) => false,
        }
    }
}
