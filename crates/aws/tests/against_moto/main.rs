//! The AWS adapters against moto server: DynamoDB state, SQS queues, Secrets Manager, and the
//! faults they turn into errors. One test binary (one link on 2 cores), one module per adapter.

mod common;
mod faults;
mod queue;
mod secrets;
mod state;
