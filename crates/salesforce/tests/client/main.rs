//! The Salesforce client: against the simulator, and against fixed bodies in the documented shapes.
//! One test binary, one module each (`no_secret_in_logs` is a binary of its own: it installs a
//! global log subscriber).

mod against_sim;
#[path = "../common/mod.rs"]
mod common;
mod fixed_bodies;
