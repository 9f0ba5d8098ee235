//! The simulators: Higher Logic's Push API, Salesforce's REST API, and the `hlsync-sim` command.
//! One test binary, one module each.

mod higher_logic_sim;
mod hlsync_sim_command;
mod salesforce_sim;
