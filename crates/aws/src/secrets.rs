//! The credentials secret in AWS Secrets Manager, cached per warm Lambda by AWS's caching client
//! (`aws_secretsmanager_caching`).

use std::error::Error;
use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::SdkError;
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretError;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_secretsmanager_caching::SecretsManagerCachingClient;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use crate::error::{AwsError, Service, aws, classify, error_code};

/// The label Secrets Manager gives the version in use.
const CURRENT_STAGE: &str = "AWSCURRENT";

/// A secret's value and the version it came from. `Debug` shows the version only.
#[derive(Debug, Clone)]
pub struct Secret {
    pub version_id: String,
    pub value: SecretString,
}

/// Reads one secret, and keeps it for `ttl` so that warm invocations do not pay for the call.
///
/// The caching client keeps the value for `ttl`; after that it asks DescribeSecret whether the
/// version labelled AWSCURRENT is still the one it holds, and reads the value again only if not.
pub struct SecretSource {
    client: Client,
    cache: SecretsManagerCachingClient,
    secret_id: String,
    // The caching client lets every caller that finds the entry empty or expired make its own
    // call; taken in turn, the ones that waited find it filled, so a cold start reads once.
    reading: Mutex<()>,
}

impl fmt::Debug for SecretSource {
    // Not derived: the caching client's own `Debug` prints the value it holds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSource")
            .field("secret_id", &self.secret_id)
            .finish_non_exhaustive()
    }
}

impl SecretSource {
    pub fn new(client: Client, secret_id: impl Into<String>, ttl: Duration) -> Self {
        // One entry: only this secret, read by its AWSCURRENT label, is ever asked for.
        let cache = SecretsManagerCachingClient::new(client.clone(), NonZeroUsize::MIN, ttl, false)
            // Its in-memory store cannot fail to build; the `Result` is there for other stores.
            .expect("the caching client's in-memory store always builds");
        SecretSource {
            client,
            cache,
            secret_id: secret_id.into(),
            reading: Mutex::new(()),
        }
    }

    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The current value, from the cache while it is younger than `ttl`.
    pub async fn get(&self) -> Result<Secret, AwsError> {
        self.read(false).await
    }

    /// The current value read from Secrets Manager now, whatever the cache holds, and kept for
    /// `ttl` from now: after a rejected login, once `current_version` shows a rotation.
    pub async fn refresh(&self) -> Result<Secret, AwsError> {
        self.read(true).await
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

    async fn read(&self, refresh_now: bool) -> Result<Secret, AwsError> {
        let _in_turn = self.reading.lock().await;
        let out = self
            .cache
            .get_secret_value(&self.secret_id, None, None, refresh_now)
            .await
            .map_err(|err| caching_error(&self.secret_id, err))?;
        let value = out.secret_string.ok_or_else(|| AwsError::SecretNotText {
            secret_id: self.secret_id.clone(),
        })?;
        Ok(Secret {
            version_id: out.version_id.unwrap_or_default(),
            value: SecretString::from(value),
        })
    }
}

/// The caching client answers a boxed error: the SDK error of the call that failed, found again
/// by its type so that it gets the same operator-facing message as any other call's.
fn caching_error(secret_id: &str, err: Box<dyn Error>) -> AwsError {
    let err = match err.downcast::<SdkError<GetSecretValueError>>() {
        Ok(err) => return classify(Service::SecretsManager, "GetSecretValue", secret_id, *err),
        Err(err) => err,
    };
    // On an expired entry it first asks DescribeSecret whether the version changed.
    let err = match err.downcast::<SdkError<DescribeSecretError>>() {
        Ok(err) => return classify(Service::SecretsManager, "DescribeSecret", secret_id, *err),
        Err(err) => err,
    };
    AwsError::Service {
        service: Service::SecretsManager.name(),
        operation: "GetSecretValue",
        resource: secret_id.to_owned(),
        message: err.to_string(),
        retryable: false,
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
