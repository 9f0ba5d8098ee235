//! Shared test support: client builders and fixtures. The tests that answer fixed bodies do so
//! with `hlsync_sim::scripted`.
#![allow(dead_code)]

use std::time::Duration;

use hlsync_core::config::SalesforceConfig;
use hlsync_salesforce::{ClientOptions, RetryPolicy, SalesforceClient, SalesforceCredentials};

/// The `[salesforce]` config of SPEC.md §3 with its defaults.
pub fn sf_config() -> SalesforceConfig {
    sf_config_with(100_000, 0.5)
}

pub fn sf_config_with(daily_api_allotment: u64, max_allotment_share: f64) -> SalesforceConfig {
    SalesforceConfig {
        daily_api_allotment,
        max_allotment_share,
        ..SalesforceConfig::default()
    }
}

/// Retries that take milliseconds, not seconds.
pub fn fast_options() -> ClientOptions {
    ClientOptions {
        retry: RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
        request_timeout: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(5),
        query_batch_size: None,
        ..ClientOptions::default()
    }
}

pub fn creds(json: serde_json::Value) -> SalesforceCredentials {
    serde_json::from_value(json).unwrap()
}

pub fn client(creds: SalesforceCredentials) -> SalesforceClient {
    SalesforceClient::with_options(&sf_config(), creds, true, fast_options()).unwrap()
}

pub fn client_with(cfg: &SalesforceConfig, creds: SalesforceCredentials) -> SalesforceClient {
    SalesforceClient::with_options(cfg, creds, true, fast_options()).unwrap()
}

pub const TEST_KEY_PEM: &str = include_str!("../fixtures/jwt_test_key.pem");
pub const TEST_PUBLIC_KEY_PEM: &str = include_str!("../fixtures/jwt_test_key.pub.pem");
