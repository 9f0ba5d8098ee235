//! The AWS side of hlsync: durable state in DynamoDB (`state`), the work queue and its
//! dead-letter queue in SQS (`queue`), and the credentials secret in Secrets Manager (`secrets`).
//! Each adapter is a thin, typed layer over the AWS SDK; the sync logic sees them through its
//! own traits.

mod backoff;
pub mod error;
pub mod queue;
pub mod secrets;
pub mod state;

pub use aws_config::SdkConfig;
pub use error::AwsError;
pub use queue::{
    DeleteFailure, QueueDepth, Received, RedriveMethod, RedriveReport, SendFailure, SqsQueue,
    create_queue_pair, queue_url, redrive,
};
pub use secrets::{Secret, SecretSource, put_secret};
pub use state::{DynamoState, create_table};

use aws_config::{BehaviorVersion, Region};

/// The configuration the SDK finds by itself: `AWS_REGION`, credentials of the Lambda role or
/// profile, and `AWS_ENDPOINT_URL` (an emulator) as the SDK defines them.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// A configuration for a local emulator (moto) at `endpoint_url`: region us-east-1 and dummy
/// credentials, whatever the process environment says.
pub async fn local_sdk_config(endpoint_url: &str) -> SdkConfig {
    let credentials = aws_sdk_dynamodb::config::Credentials::new(
        "testing",
        "testing",
        None,
        None,
        "hlsync-local",
    );
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint_url)
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials)
        .load()
        .await
}

/// One client per service, built once per cold start.
#[derive(Debug, Clone)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl Clients {
    pub fn new(config: &SdkConfig) -> Self {
        Clients {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            secrets: aws_sdk_secretsmanager::Client::new(config),
        }
    }
}
