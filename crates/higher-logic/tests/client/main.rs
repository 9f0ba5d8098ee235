//! The Higher Logic client: against the simulator, and against fixed answers in SPEC §6's shapes.
//! One test binary, one module each.

mod against_simulator;
mod fixed_answers;
