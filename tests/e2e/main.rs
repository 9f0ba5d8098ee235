//! End to end: the `hlsync` binary and the pipeline against a whole local system (moto, both
//! simulators). One test binary, one module per concern.

mod cli;
mod common;
mod drain;
mod pipeline;
mod worksheet;
