//! Simulators of the two HTTP APIs hlsync talks to, faithful to their documented behaviour:
//! Salesforce's REST API (and SOAP login) and Higher Logic's data push API.
//! Each starts in-process on a free port (tests, benchmarks) or as the `hlsync-sim` command (demo).

pub mod higher_logic;
pub mod moto;
pub mod salesforce;
mod serve;
