//! The pipeline against the in-memory ports, in one test binary (each binary is a slow link):
//! - `pipeline`: the watermark rules, fan-out, batching, skipping and every failure path;
//! - `worksheet`: meetings and registrations, the full refresh, the email opt-out write-back.
//!
//! Their worlds are built with `hlsync_sync::testing`.

mod pipeline;
mod worksheet;
