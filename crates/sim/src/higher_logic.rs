//! The Higher Logic push API simulator.
