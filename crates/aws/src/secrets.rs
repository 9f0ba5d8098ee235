//! The credentials secret in AWS Secrets Manager, cached per warm Lambda.

use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use crate::error::{AwsError, Service, aws, error_code};

/// The label Secrets Manager gives the version in use.
const CURRENT_STAGE: &str = "AWSCURRENT";

/// A secret's value and the version it came from. `Debug` shows the version only.
#[derive(Debug, Clone)]
pub struct Secret {
    pub version_id: String,
    pub value: SecretString,
}

#[derive(Debug)]
struct Cached {
    fetched: Instant,
    secret: Secret,
}

/// Reads one secret, and keeps it for `ttl` so that warm invocations do not pay for the call.
#[derive(Debug)]
pub struct SecretSource {
    client: Client,
    secret_id: String,
    ttl: Duration,
    // An async lock: concurrent callers on a cold cache wait for one fetch instead of each
    // making their own.
    cache: Mutex<Option<Cached>>,
}

impl SecretSource {
    pub fn new(client: Client, secret_id: impl Into<String>, ttl: Duration) -> Self {
        SecretSource {
            client,
            secret_id: secret_id.into(),
            ttl,
            cache: Mutex::new(None),
        }
    }

    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The current value, from the cache while it is younger than `ttl`.
    pub async fn get(&self) -> Result<Secret, AwsError> {
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref()
            && cached.fetched.elapsed() < self.ttl
        {
            return Ok(cached.secret.clone());
        }
        let secret = self.fetch().await?;
        *cache = Some(Cached {
            fetched: Instant::now(),
            secret: secret.clone(),
        });
        Ok(secret)
    }

    /// Forgets the cached value: the next `get` reads Secrets Manager (after a rejected login,
    /// or when `current_version` shows a rotation).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    /// The id of the version labelled AWSCURRENT, without reading the value: a cheap way to see
    /// whether the secret was rotated since a login failed.
    pub async fn current_version(&self) -> Result<String, AwsError> {
        let out = self
            .client
            .describe_secret()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(aws(
                Service::SecretsManager,
                "DescribeSecret",
                &self.secret_id,
            ))?;
        out.version_ids_to_stages
            .unwrap_or_default()
            .into_iter()
            .find(|(_, stages)| stages.iter().any(|s| s == CURRENT_STAGE))
            .map(|(version, _)| version)
            .ok_or_else(|| AwsError::SecretMissing {
                secret_id: self.secret_id.clone(),
            })
    }

    async fn fetch(&self) -> Result<Secret, AwsError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(aws(
                Service::SecretsManager,
                "GetSecretValue",
                &self.secret_id,
            ))?;
        let value = out.secret_string.ok_or_else(|| AwsError::SecretNotText {
            secret_id: self.secret_id.clone(),
        })?;
        Ok(Secret {
            version_id: out.version_id.unwrap_or_default(),
            value: SecretString::from(value),
        })
    }
}

/// Creates the secret `name`, or stores `value` as its new current version; returns the version
/// id. For provisioning.
pub async fn put_secret(
    client: &Client,
    name: &str,
    value: &SecretString,
) -> Result<String, AwsError> {
    let created = client
        .create_secret()
        .name(name)
        .secret_string(value.expose_secret())
        .send()
        .await;
    match created {
        Ok(out) => Ok(out.version_id.unwrap_or_default()),
        Err(err) if error_code(&err) == Some("ResourceExistsException") => {
            let out = client
                .put_secret_value()
                .secret_id(name)
                .secret_string(value.expose_secret())
                .send()
                .await
                .map_err(aws(Service::SecretsManager, "PutSecretValue", name))?;
            Ok(out.version_id.unwrap_or_default())
        }
        Err(err) => Err(aws(Service::SecretsManager, "CreateSecret", name)(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret {
            version_id: "v1".into(),
            value: SecretString::from("hunter2".to_owned()),
        };
        let shown = format!("{secret:?}");
        assert!(shown.contains("v1"));
        assert!(!shown.contains("hunter2"));
    }
}
