//! One moto server per test binary; every test makes its own uniquely named resources.

#![allow(dead_code)] // each test binary uses a different part of this

use std::sync::OnceLock;

use hlsync_aws::{Clients, local_sdk_config};
use hlsync_sim::moto::MotoServer;

static MOTO: OnceLock<MotoServer> = OnceLock::new();

/// Fails (never skips) with the install command when moto is missing.
pub fn moto() -> &'static MotoServer {
    MOTO.get_or_init(|| MotoServer::start().unwrap_or_else(|err| panic!("{err}")))
}

pub async fn clients() -> Clients {
    Clients::new(&local_sdk_config(&moto().endpoint_url()).await)
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}
