//! The two Lambda functions: cold starts, each handler against moto and the simulators, and the
//! bootstrap binaries under cargo-lambda's runtime emulator. One test binary, one module each.

mod cold_start;
mod common;
mod member_refresh;
mod periodic_refresh;
mod runtime_emulator;
