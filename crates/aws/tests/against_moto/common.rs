//! One moto server per test binary (`hlsync_sim::moto::shared`); every test makes its own
//! uniquely named resources.

#![allow(dead_code)] // each test binary uses a different part of this

use hlsync_aws::{Clients, local_sdk_config};

pub async fn clients() -> Clients {
    Clients::new(&local_sdk_config(&hlsync_sim::moto::shared().endpoint_url()).await)
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}
