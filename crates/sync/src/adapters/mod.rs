//! The ports bound to the real clients: Salesforce, Higher Logic, DynamoDB and SQS.

pub mod aws;
mod calls;
pub mod higher_logic;
pub mod salesforce;
