//! The credentials secret, and the rules that keep a bad credential from locking anyone out.
//!
//! - The secret is read through a cache and parsed once per version ([`Credentials::get`]).
//! - A rejection (Salesforce `invalid_grant`/`INVALID_LOGIN`, Higher Logic 401/403) is recorded in
//!   the state table with a fingerprint of that service's own credential fields, so that no
//!   function of any kind calls that service with them again ([`Credentials::usable_for`]);
//!   rotating one service's credentials does not retry the other's rejected ones.
//! - The first use of a credential that no function has seen work yet is serialized
//!   ([`Credentials::admit`]): in this process by a lock, across functions by a lease in the state
//!   table. Concurrent cold starts with a bad secret therefore spend one failed login between them,
//!   not one each; the others wait for its outcome.

use std::collections::HashSet;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use hlsync_aws::{DynamoState, SecretSource};
use hlsync_core::config::Config;
use hlsync_salesforce::SalesforceCredentials;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::error::{Service, SyncError};
use crate::records::{StateRecord, StateRecords as _};

/// How long the first use of a credential may hold its lease (a login or one request, retries
/// included) before another function may try in its place.
pub const FIRST_USE_LEASE: Duration = Duration::from_mins(1);
/// How long a function waits for another one's first use of a credential before giving up
/// for now (its work is retried).
pub const FIRST_USE_WAIT: Duration = Duration::from_secs(90);
const FIRST_USE_POLL: Duration = Duration::from_millis(250);
/// How long a credential seen to work is trusted without a new first use.
const VERIFIED_TTL: Duration = Duration::from_hours(24);

/// A service's rejection of its credentials, remembered so that no function calls it with them
/// again (repeated failed logins lock the integration user out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedLogin {
    /// Which credentials of the secret were rejected ([`ParsedSecret::fingerprint`]); absent in
    /// records written before fingerprints, which are matched by `secret_version`.
    #[serde(default)]
    pub fingerprint: Option<String>,
    #[serde(default)]
    pub secret_version: Option<String>,
    #[serde(default)]
    pub secret_id: Option<String>,
    #[serde(default = "credentials_rejected")]
    pub message: String,
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
}

fn credentials_rejected() -> String {
    "credentials rejected".into()
}

impl StateRecord for RejectedLogin {
    type Id = Service;
    fn key(service: &Service) -> String {
        format!("login#{}", service_key(*service))
    }
}

/// Some function has seen these credentials work (`Id`: the service and the credentials'
/// fingerprint): the others use them without a first use of their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifiedLogin {
    pub at: DateTime<Utc>,
}

impl StateRecord for VerifiedLogin {
    type Id = (Service, String);
    const TTL: Option<Duration> = Some(VERIFIED_TTL);
    fn key((service, fingerprint): &(Service, String)) -> String {
        format!("verified#{}#{fingerprint}", service_key(*service))
    }
}

/// The `higher_logic` part of the secret.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HigherLogicSecret {
    pub api_key: SecretString,
    /// Written by secrets made for the push API's first version; Push API v2 identifies the
    /// tenant by its key alone, so it is accepted and ignored.
    #[serde(default, rename = "tenant_code")]
    _tenant_code: Option<serde::de::IgnoredAny>,
}

/// The secret's JSON document (SPEC.md §4).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretDocument {
    salesforce: SalesforceCredentials,
    higher_logic: HigherLogicSecret,
}

/// One version of the secret, parsed.
pub struct ParsedSecret {
    pub version: String,
    pub salesforce: SalesforceCredentials,
    pub higher_logic: HigherLogicSecret,
}

impl ParsedSecret {
    /// A fingerprint of `service`'s credential fields (a hash: nothing of the secret can be read
    /// back from it). Equal fields give equal fingerprints whatever the secret's version.
    pub fn fingerprint(&self, service: Service) -> String {
        let mut hash = Sha256::new();
        let mut field = |value: &str| {
            hash.update(value.as_bytes());
            hash.update([0u8]);
        };
        match service {
            Service::Salesforce => {
                let sf = &self.salesforce;
                let secret = |s: &Option<SecretString>| {
                    s.as_ref()
                        .map(|s| s.expose_secret().to_owned())
                        .unwrap_or_default()
                };
                field("salesforce");
                field(&sf.login_url);
                field(sf.auth.as_str());
                field(sf.client_id.as_deref().unwrap_or_default());
                field(&secret(&sf.client_secret));
                field(sf.username.as_deref().unwrap_or_default());
                field(&secret(&sf.password));
                field(&secret(&sf.security_token));
                field(&secret(&sf.private_key_pem));
            }
            Service::HigherLogic => {
                field("higher_logic");
                field(self.higher_logic.api_key.expose_secret());
            }
            Service::Aws => field("aws"),
        }
        hex::encode(&hash.finalize()[..8])
    }
}

/// Parses the secret's text. The error names the problem without quoting any value.
pub fn parse_secret(secret_id: &str, version: &str, text: &str) -> Result<ParsedSecret, SyncError> {
    let doc: SecretDocument = serde_json::from_str(text).map_err(|e| {
        // serde's messages can quote a wrong value (a password, say); keep only the ones that
        // name a field, and the position otherwise.
        let text = e.to_string();
        let what = if text.starts_with("unknown field")
            || text.starts_with("missing field")
            || text.starts_with("unknown variant")
        {
            text
        } else {
            format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            )
        };
        SyncError::Failed {
            service: Some(Service::Aws),
            message: format!(
                "secret `{secret_id}` is not the JSON document hlsync expects ({what}): \
                 see SPEC.md §4 and README's \"Filling the secret\""
            ),
        }
    })?;
    Ok(ParsedSecret {
        version: version.to_string(),
        salesforce: doc.salesforce,
        higher_logic: doc.higher_logic,
    })
}

/// A recorded rejection, as `hlsync status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub message: String,
    pub at: Option<DateTime<Utc>>,
    /// The credentials in the secret now are the rejected ones: the service is not called.
    pub blocks: bool,
}

/// Per service: which credential fingerprints this process has seen work, and the lock that
/// serializes first uses within it.
#[derive(Default)]
struct Gate {
    verified: StdMutex<HashSet<String>>,
    first_use: Arc<Mutex<()>>,
}

impl Gate {
    fn is_verified(&self, fingerprint: &str) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(fingerprint)
    }

    fn mark_verified(&self, fingerprint: &str) {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(fingerprint.to_owned());
    }
}

/// What [`Credentials::admit`] allows.
pub enum Admission {
    /// The credential is known to work: use it freely.
    Open,
    /// This caller makes the credential's first use, alone; it must report the outcome.
    FirstUse(FirstUse),
}

/// The right to make a credential's first use. Report how it went with [`FirstUse::finish`]; if
/// it is dropped instead, the lease expires by itself and the next caller tries.
pub struct FirstUse {
    service: Service,
    fingerprint: String,
    owner: String,
    _local: OwnedMutexGuard<()>,
}

/// How a first use ended.
pub enum Outcome {
    /// The service took the credential.
    Accepted,
    /// The service refused it (already recorded with [`Credentials::record_rejection`]).
    Rejected,
    /// No answer about the credential (a network error, an outage): the next use tries again,
    /// still one at a time.
    Unknown,
}

/// The credentials secret, read through a cache, with what is needed to act on a rejection.
pub struct Credentials {
    pub cfg: Arc<Config>,
    pub secret_id: String,
    pub state: DynamoState,
    source: SecretSource,
    parsed: Mutex<Option<Arc<ParsedSecret>>>,
    salesforce: Gate,
    higher_logic: Gate,
}

impl Credentials {
    pub fn new(cfg: Arc<Config>, source: SecretSource, state: DynamoState) -> Self {
        Credentials {
            cfg,
            secret_id: source.secret_id().to_string(),
            state,
            source,
            parsed: Mutex::new(None),
            salesforce: Gate::default(),
            higher_logic: Gate::default(),
        }
    }

    fn gate(&self, service: Service) -> &Gate {
        match service {
            Service::HigherLogic => &self.higher_logic,
            Service::Salesforce | Service::Aws => &self.salesforce,
        }
    }

    pub async fn get(&self) -> Result<Arc<ParsedSecret>, SyncError> {
        let secret = self.source.get().await?;
        let mut parsed = self.parsed.lock().await;
        if let Some(p) = parsed.as_ref().filter(|p| p.version == secret.version_id) {
            return Ok(Arc::clone(p));
        }
        let p = Arc::new(parse_secret(
            &self.secret_id,
            &secret.version_id,
            secret.value.expose_secret(),
        )?);
        *parsed = Some(Arc::clone(&p));
        Ok(p)
    }

    /// After a rejection: asks Secrets Manager for the secret's current version (one cheap
    /// DescribeSecret) and, if the cached value is older, reads the new one into the cache, so
    /// that corrected credentials are used at once rather than when the cache expires. True when
    /// it was older.
    pub async fn refresh_if_rotated(&self, cached_version: &str) -> Result<bool, SyncError> {
        let current = self.source.current_version().await?;
        if current == cached_version {
            return Ok(false);
        }
        self.source.refresh().await?;
        Ok(true)
    }

    /// The recorded rejection of `service`'s credentials, if any, and whether it concerns the
    /// credentials of `secret`.
    async fn rejection_of(
        &self,
        service: Service,
        secret: &ParsedSecret,
    ) -> Result<Option<(RejectedLogin, bool)>, SyncError> {
        let Some(rejected) = self.state.load::<RejectedLogin>(&service).await? else {
            return Ok(None);
        };
        let blocks = match &rejected.fingerprint {
            Some(fingerprint) => *fingerprint == secret.fingerprint(service),
            // Recorded before fingerprints: by the whole secret's version.
            None => rejected.secret_version.as_deref() == Some(secret.version.as_str()),
        };
        Ok(Some((rejected, blocks)))
    }

    /// The rejection `hlsync status` shows for `service`, judged against the secret as it is now.
    pub async fn rejection(&self, service: Service) -> Result<Option<Rejection>, SyncError> {
        let secret = self.get().await?;
        Ok(self
            .rejection_of(service, &secret)
            .await?
            .map(|(rejected, blocks)| Rejection {
                message: rejected.message,
                at: rejected.at,
                blocks,
            }))
    }

    /// The secret to call `service` with, unless that service rejected these very credentials
    /// before: then only new ones help, so Secrets Manager is asked for the current version.
    pub async fn usable_for(&self, service: Service) -> Result<Arc<ParsedSecret>, SyncError> {
        let mut secret = self.get().await?;
        let mut rejection = self.rejection_of(service, &secret).await?;
        if rejection.as_ref().is_some_and(|(_, blocks)| *blocks)
            && self.refresh_if_rotated(&secret.version).await?
        {
            secret = self.get().await?;
            rejection = self.rejection_of(service, &secret).await?;
        }
        match rejection {
            Some((rejected, true)) => Err(self.refusal(service, &rejected, &secret)),
            _ => Ok(secret),
        }
    }

    fn refusal(
        &self,
        service: Service,
        rejected: &RejectedLogin,
        secret: &ParsedSecret,
    ) -> SyncError {
        let at = rejected.at.map_or_else(
            || "earlier".to_owned(),
            |at| at.to_rfc3339_opts(SecondsFormat::Secs, true),
        );
        SyncError::Rejected {
            service,
            message: format!(
                "not calling {service}: {} (at {at}; the same {service} credentials are in version {} of secret {}). \
                 Put corrected credentials in the secret; hlsync resumes by itself when they change",
                rejected.message, secret.version, self.secret_id
            ),
        }
    }

    /// Remembers that `service` rejected its credentials in `secret`, so that no run of any
    /// function calls it again with them (repeated failed logins lock the integration user out).
    pub async fn record_rejection(&self, service: Service, secret: &ParsedSecret, message: &str) {
        let rejected = RejectedLogin {
            fingerprint: Some(secret.fingerprint(service)),
            secret_version: Some(secret.version.clone()),
            secret_id: Some(self.secret_id.clone()),
            message: message.to_owned(),
            at: Some(Utc::now()),
        };
        if let Err(e) = self.state.store(&service, &rejected).await {
            tracing::warn!(error = %e, "could not record the rejected credentials");
        }
        tracing::warn!(secret_id = %self.secret_id, %service, "credentials rejected: hlsync stops calling it until they change");
    }

    /// Lets a caller use `service`'s credentials in `secret`: at once when some function has
    /// seen them work, else only one caller at a time, across functions, until one has. Waits
    /// for another function's first use to end; refuses when it ended in a rejection.
    pub async fn admit(
        &self,
        service: Service,
        secret: &ParsedSecret,
    ) -> Result<Admission, SyncError> {
        let fingerprint = secret.fingerprint(service);
        let gate = self.gate(service);
        if gate.is_verified(&fingerprint) {
            return Ok(Admission::Open);
        }
        let local = Arc::clone(&gate.first_use).lock_owned().await;
        if gate.is_verified(&fingerprint) {
            return Ok(Admission::Open);
        }
        let key = service_key(service);
        let lease = format!("first-use#{key}#{fingerprint}");
        let verified = (service, fingerprint.clone());
        let owner = uuid::Uuid::new_v4().to_string();
        let started = Instant::now();
        loop {
            if let Some((rejected, true)) = self.rejection_of(service, secret).await? {
                return Err(self.refusal(service, &rejected, secret));
            }
            if self.state.load::<VerifiedLogin>(&verified).await?.is_some() {
                gate.mark_verified(&fingerprint);
                return Ok(Admission::Open);
            }
            if self
                .state
                .try_acquire_lease(&lease, &owner, FIRST_USE_LEASE)
                .await?
            {
                return Ok(Admission::FirstUse(FirstUse {
                    service,
                    fingerprint,
                    owner,
                    _local: local,
                }));
            }
            if started.elapsed() >= FIRST_USE_WAIT {
                return Err(SyncError::Transient {
                    service,
                    message: format!(
                        "another function is using new {service} credentials for the first time and has not finished; \
                         this work is retried later"
                    ),
                });
            }
            tokio::time::sleep(FIRST_USE_POLL).await;
        }
    }

    /// Ends a first use: on acceptance every function may use the credential freely.
    pub async fn finish(&self, first_use: FirstUse, outcome: Outcome) {
        let key = service_key(first_use.service);
        if let Outcome::Accepted = outcome {
            self.gate(first_use.service)
                .mark_verified(&first_use.fingerprint);
            let verified = (first_use.service, first_use.fingerprint.clone());
            if let Err(e) = self
                .state
                .store(&verified, &VerifiedLogin { at: Utc::now() })
                .await
            {
                tracing::warn!(error = %e, "could not record that the credentials work");
            }
        }
        let lease = format!("first-use#{key}#{}", first_use.fingerprint);
        if let Err(e) = self.state.release_lease(&lease, &first_use.owner).await {
            tracing::warn!(error = %e, "could not release the first-use lease; it expires by itself");
        }
    }
}

fn service_key(service: Service) -> &'static str {
    match service {
        Service::Salesforce => "salesforce",
        Service::HigherLogic => "higher-logic",
        Service::Aws => "aws",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = r#"{"salesforce":{"login_url":"https://login.example.org","auth":"client_credentials","client_id":"c","client_secret":"s"},"higher_logic":{"api_key":"k"}}"#;

    #[test]
    fn a_secret_error_never_quotes_a_value() {
        let text = r#"{"salesforce":{"login_url":"https://x","auth":"password","password":12345678},"higher_logic":{"api_key":"k"}}"#;
        let Err(e) = parse_secret("hlsync/credentials", "v1", text) else {
            panic!("a number is not a password");
        };
        let message = e.to_string();
        assert!(!message.contains("12345678"), "{message}");
        assert!(message.contains("hlsync/credentials"));
    }

    #[test]
    fn an_old_tenant_code_is_accepted_and_ignored() {
        let base = r#"{"salesforce":{"login_url":"https://login.example.org","auth":"client_credentials","client_id":"c","client_secret":"s"},"higher_logic":"#;
        for hl in [
            r#"{"api_key":"k"}"#,
            r#"{"tenant_code":"ACME","api_key":"k"}"#,
        ] {
            let parsed = parse_secret("s", "v1", &format!("{base}{hl}}}")).expect(hl);
            assert_eq!(parsed.higher_logic.api_key.expose_secret(), "k");
        }
        // Anything else unknown is still refused, by name.
        let Err(e) = parse_secret(
            "s",
            "v1",
            &format!(r#"{base}{{"api_key":"k","apikey":"k"}}}}"#),
        ) else {
            panic!("a typo passed");
        };
        assert!(e.to_string().contains("apikey"), "{e}");
    }

    #[test]
    fn a_missing_part_is_named() {
        let Err(e) = parse_secret(
            "s",
            "v1",
            r#"{"salesforce":{"login_url":"https://x","auth":"password"}}"#,
        ) else {
            panic!("no higher_logic part");
        };
        assert!(
            e.to_string().contains("missing field `higher_logic`"),
            "{e}"
        );
    }

    #[test]
    fn fingerprints_follow_each_service_own_fields_only() {
        let a = parse_secret("s", "v1", SECRET).expect("parses");
        let same = parse_secret("s", "v2", SECRET).expect("parses");
        let new_key = parse_secret(
            "s",
            "v3",
            &SECRET.replace(r#""api_key":"k""#, r#""api_key":"k2""#),
        )
        .expect("parses");
        let new_sf = parse_secret(
            "s",
            "v4",
            &SECRET.replace(r#""client_secret":"s""#, r#""client_secret":"s2""#),
        )
        .expect("parses");
        for service in [Service::Salesforce, Service::HigherLogic] {
            assert_eq!(
                a.fingerprint(service),
                same.fingerprint(service),
                "versions do not matter"
            );
        }
        assert_ne!(
            a.fingerprint(Service::HigherLogic),
            new_key.fingerprint(Service::HigherLogic)
        );
        assert_eq!(
            a.fingerprint(Service::Salesforce),
            new_key.fingerprint(Service::Salesforce)
        );
        assert_ne!(
            a.fingerprint(Service::Salesforce),
            new_sf.fingerprint(Service::Salesforce)
        );
        assert_eq!(
            a.fingerprint(Service::HigherLogic),
            new_sf.fingerprint(Service::HigherLogic)
        );
        assert_eq!(a.fingerprint(Service::Salesforce).len(), 16);
    }
}
