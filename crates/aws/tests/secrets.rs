//! The credentials secret against moto.

mod common;

use std::time::Duration;

use common::{clients, unique};
use hlsync_aws::{AwsError, SecretSource, put_secret};
use secrecy::{ExposeSecret, SecretString};

fn text(value: &str) -> SecretString {
    SecretString::from(value.to_owned())
}

#[tokio::test]
async fn a_missing_secret_names_it_and_says_how_to_create_it() {
    let clients = clients().await;
    let id = unique("hlsync/credentials");
    let source = SecretSource::new(clients.secrets, &id, Duration::from_mins(5));
    let err = source.get().await.expect_err("missing");
    assert!(matches!(err, AwsError::SecretMissing { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&format!("`{id}`")), "{message}");
    assert!(
        message.contains("hlsync provision --secret-file F"),
        "{message}"
    );
    assert!(!err.is_retryable());
    let err = source.current_version().await.expect_err("missing");
    assert!(matches!(err, AwsError::SecretMissing { .. }), "{err:?}");
}

#[tokio::test]
async fn the_value_is_cached_until_invalidated_and_a_rotation_is_visible() {
    let clients = clients().await;
    let id = unique("hlsync/credentials");
    let v1 = put_secret(&clients.secrets, &id, &text(r#"{"n":1}"#))
        .await
        .expect("create");
    let source = SecretSource::new(clients.secrets.clone(), &id, Duration::from_hours(1));
    let first = source.get().await.expect("get");
    assert_eq!(first.version_id, v1);
    assert_eq!(first.value.expose_secret(), r#"{"n":1}"#);
    assert_eq!(source.current_version().await.expect("version"), v1);

    let v2 = put_secret(&clients.secrets, &id, &text(r#"{"n":2}"#))
        .await
        .expect("update");
    assert_ne!(v1, v2);
    // Cached: no call, the old value.
    assert_eq!(source.get().await.expect("cached").version_id, v1);
    // The rotation shows without reading the value.
    assert_eq!(source.current_version().await.expect("version"), v2);
    source.invalidate().await;
    let fresh = source.get().await.expect("fresh");
    assert_eq!(
        (fresh.version_id.as_str(), fresh.value.expose_secret()),
        (v2.as_str(), r#"{"n":2}"#)
    );
}

#[tokio::test]
async fn a_zero_ttl_reads_every_time() {
    let clients = clients().await;
    let id = unique("hlsync/credentials");
    put_secret(&clients.secrets, &id, &text("a"))
        .await
        .expect("create");
    let source = SecretSource::new(clients.secrets.clone(), &id, Duration::ZERO);
    assert_eq!(source.get().await.expect("get").value.expose_secret(), "a");
    put_secret(&clients.secrets, &id, &text("b"))
        .await
        .expect("update");
    assert_eq!(source.get().await.expect("get").value.expose_secret(), "b");
}
