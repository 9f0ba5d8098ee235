//! The Salesforce REST client of hlsync (SPEC.md §4, §5).
//!
//! It treats the org's daily API allotment as the scarcest resource: every response's
//! `Sforce-Limit-Info` is read, every call first passes the allotment guard, reads and writes go
//! through sObject Collections in the largest batches Salesforce allows, several queries can share
//! one call through the Composite resource (`query_many`), and nothing retries a rejected login
//! (repeated failed logins lock the integration user out).
//!
//! ```no_run
//! # async fn run(cfg: &hlsync_core::config::SalesforceConfig,
//! #              creds: hlsync_salesforce::SalesforceCredentials) -> Result<(), hlsync_salesforce::SfError> {
//! use hlsync_salesforce::SalesforceClient;
//! let sf = SalesforceClient::new(cfg, creds, false)?;
//! let mut pages = sf.query("SELECT Id FROM Contact")?.batch_size(500);
//! while let Some(records) = pages.next_page().await? {
//!     println!("{} records; usage {:?}", records.len(), sf.usage());
//! }
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod auth;
mod client;
mod composite;
mod credentials;
mod describe;
mod error;
mod query;
mod records;

pub use client::{ClientOptions, LoginState, MAX_URL_BYTES, RetryPolicy, SalesforceClient};
pub use composite::{CompositeQuery, QUERIES_PER_COMPOSITE};
pub use credentials::{AuthFlow, SalesforceCredentials};
pub use error::SfError;
pub use hlsync_core::schema::Describe;
pub use query::{QueryPager, Record};
pub use records::{RETRIEVE_CHUNK, SaveError, SaveResult, UPDATE_CHUNK};
