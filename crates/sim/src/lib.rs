//! Simulators of the two HTTP APIs hlsync talks to, faithful to their documented behaviour:
//! Salesforce's REST API (and SOAP login) and Higher Logic's data push API.
//! Each starts in-process on a free port (tests, benchmarks) or as the `hlsync-sim` command (demo).
//! Beside them, [`scripted`]: a server that answers only what a test scripts, for the clients'
//! tests against the documented formats.

pub mod higher_logic;
pub mod moto;
pub mod salesforce;
pub mod scripted;
mod serve;
