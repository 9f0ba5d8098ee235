//! The credentials secret against moto.

use std::time::Duration;

use crate::common::{clients, unique};
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
async fn the_value_is_cached_until_refreshed_and_a_rotation_is_visible() {
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
    // The caching client's own `Debug` would print the value it holds.
    let shown = format!("{source:?}");
    assert!(
        shown.contains(&id) && !shown.contains(r#"{"n":1}"#),
        "{shown}"
    );

    let v2 = put_secret(&clients.secrets, &id, &text(r#"{"n":2}"#))
        .await
        .expect("update");
    assert_ne!(v1, v2);
    // Cached: no call, the old value.
    assert_eq!(source.get().await.expect("cached").version_id, v1);
    // The rotation shows without reading the value.
    assert_eq!(source.current_version().await.expect("version"), v2);
    // A refresh reads the new version at once, well inside the TTL, and caches it.
    let fresh = source.refresh().await.expect("fresh");
    assert_eq!(
        (fresh.version_id.as_str(), fresh.value.expose_secret()),
        (v2.as_str(), r#"{"n":2}"#)
    );
    assert_eq!(source.get().await.expect("cached").version_id, v2);
}

#[tokio::test]
async fn an_expired_value_is_kept_while_its_version_is_current_and_replaced_after_a_rotation() {
    let clients = clients().await;
    let id = unique("hlsync/credentials");
    let v1 = put_secret(&clients.secrets, &id, &text("a"))
        .await
        .expect("create");
    let source = SecretSource::new(clients.secrets.clone(), &id, Duration::ZERO);
    assert_eq!(source.get().await.expect("get").value.expose_secret(), "a");
    // Expired, unchanged: DescribeSecret confirms the version, and the value is served again.
    let again = source.get().await.expect("get");
    assert_eq!(
        (again.version_id.as_str(), again.value.expose_secret()),
        (v1.as_str(), "a")
    );
    let v2 = put_secret(&clients.secrets, &id, &text("b"))
        .await
        .expect("update");
    let rotated = source.get().await.expect("get");
    assert_eq!(
        (rotated.version_id.as_str(), rotated.value.expose_secret()),
        (v2.as_str(), "b")
    );
}

#[tokio::test]
async fn a_secret_deleted_under_an_expired_value_names_it() {
    let clients = clients().await;
    let id = unique("hlsync/credentials");
    put_secret(&clients.secrets, &id, &text("a"))
        .await
        .expect("create");
    let source = SecretSource::new(clients.secrets.clone(), &id, Duration::ZERO);
    source.get().await.expect("get");
    clients
        .secrets
        .delete_secret()
        .secret_id(&id)
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("delete");
    // The caching client's DescribeSecret fails, and gets the same message as a GetSecretValue.
    let err = source.get().await.expect_err("deleted");
    assert!(matches!(err, AwsError::SecretMissing { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("`{id}`")), "{err}");
}
