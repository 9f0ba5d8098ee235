//! The Salesforce simulator.

pub mod soql;
