//! Shared test support: client builders and fixtures. The tests that answer fixed bodies do so
//! with `hlsync_sim::scripted`.
#![allow(dead_code)]

use std::time::Duration;

use hlsync_core::config::SalesforceConfig;
use hlsync_salesforce::{
    ClientOptions, QueryPager, RetryPolicy, SalesforceClient, SalesforceCredentials, SfError,
};

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

/// The error that reading every page of `pager` ends with; the test expects the query to start
/// and the paging to fail.
pub async fn paging_error(pager: Result<QueryPager, SfError>) -> SfError {
    pager
        .expect("the query starts")
        .collect_all()
        .await
        .expect_err("the paging fails")
}

/// `SELECT Id FROM Contact WHERE Id IN (…)` with 1,200 Ids: too long for a URL.
pub fn soql_too_long_for_a_url() -> String {
    let ids: Vec<String> = (0..1200)
        .map(|i| format!("'003000000000{i:03}AAA'"))
        .collect();
    format!("SELECT Id FROM Contact WHERE Id IN ({})", ids.join(","))
}

pub const TEST_KEY_PEM: &str = include_str!("../fixtures/jwt_test_key.pem");
pub const TEST_PUBLIC_KEY_PEM: &str = include_str!("../fixtures/jwt_test_key.pub.pem");
