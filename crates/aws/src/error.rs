//! The one error type of the AWS adapters. Every message names the table, queue or secret and
//! says what the operator can do about it.

use std::fmt::Debug;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error(
        "DynamoDB table `{table}` does not exist: run `hlsync provision` (or set HLSYNC_STATE_TABLE to the right table)"
    )]
    TableMissing { table: String },

    #[error(
        "SQS queue `{queue}` does not exist: run `hlsync provision` (or set HLSYNC_QUEUE_URL / HLSYNC_DLQ_URL to the right queue)"
    )]
    QueueMissing { queue: String },

    #[error(
        "secret `{secret_id}` was not found in Secrets Manager: create it with `hlsync provision --secret-file F` (or set HLSYNC_SECRET_ID to the right name or ARN)"
    )]
    SecretMissing { secret_id: String },

    #[error(
        "secret `{secret_id}` has no text value (SecretString): store the JSON credentials document as text, e.g. `hlsync provision --secret-file F`"
    )]
    SecretNotText { secret_id: String },

    /// Another run advanced the watermark first: this run's work is not lost (the queue has it),
    /// but it must not move the watermark.
    #[error(
        "watermark `{name}` was advanced by another run (or would move backwards): this run stops without saving it; the next run continues from the stored one"
    )]
    Conflict { name: String },

    #[error(
        "{service} denied `{operation}` on `{resource}`: grant the function's role that permission ({message})"
    )]
    AccessDenied {
        service: &'static str,
        operation: &'static str,
        resource: String,
        message: String,
    },

    #[error(
        "{service} throttled `{operation}` on `{resource}` ({message}): retried with backoff; if it persists, lower concurrency or raise the limit"
    )]
    Throttled {
        service: &'static str,
        operation: &'static str,
        resource: String,
        message: String,
    },

    #[error(
        "DynamoDB left {count} item(s) of table `{table}` unprocessed after {attempts} attempts (capacity exhausted): retry later"
    )]
    Unprocessed {
        table: String,
        count: usize,
        attempts: u32,
    },

    #[error(
        "stored item `{key}` in `{resource}` is not in the format hlsync writes ({message}): delete the item or restore it from a backup"
    )]
    Corrupt {
        resource: String,
        key: String,
        message: String,
    },

    #[error(
        "DynamoDB table `{table}` did not become ACTIVE after {tries} checks: look at it in the console, then re-run `hlsync provision`"
    )]
    TableNotActive { table: String, tries: u32 },

    #[error("invalid request for `{resource}`: {message}")]
    Invalid { resource: String, message: String },

    #[error(
        "{service} `{operation}` on `{resource}` failed: {message}{hint}",
        hint = if *retryable { " (transient: will be retried)" } else { "" }
    )]
    Service {
        service: &'static str,
        operation: &'static str,
        resource: String,
        message: String,
        retryable: bool,
    },
}

impl AwsError {
    /// Whether trying the same call again later can succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            AwsError::Throttled { .. } | AwsError::Unprocessed { .. } => true,
            AwsError::Service { retryable, .. } => *retryable,
            AwsError::TableMissing { .. }
            | AwsError::QueueMissing { .. }
            | AwsError::SecretMissing { .. }
            | AwsError::SecretNotText { .. }
            | AwsError::Conflict { .. }
            | AwsError::AccessDenied { .. }
            | AwsError::Corrupt { .. }
            | AwsError::TableNotActive { .. }
            | AwsError::Invalid { .. } => false,
        }
    }
}

/// Which service a call went to, so that a "not found" names the right kind of resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    DynamoDb,
    Sqs,
    SecretsManager,
}

impl Service {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Service::DynamoDb => "DynamoDB",
            Service::Sqs => "SQS",
            Service::SecretsManager => "Secrets Manager",
        }
    }
}

/// The error code of a service error, if the call got that far.
pub(crate) fn error_code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

/// Turns an SDK error into an operator-facing one.
pub(crate) fn classify<E, R>(
    service: Service,
    operation: &'static str,
    resource: &str,
    err: SdkError<E, R>,
) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: Debug,
{
    let code = error_code(&err).unwrap_or_default().to_owned();
    let message = DisplayErrorContext(&err).to_string();
    let resource = resource.to_owned();
    let transport = matches!(
        err,
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_)
    );
    if transport {
        return AwsError::Service {
            service: service.name(),
            operation,
            resource,
            message,
            retryable: true,
        };
    }
    let not_found = matches!(
        code.as_str(),
        "ResourceNotFoundException"
            | "AWS.SimpleQueueService.NonExistentQueue"
            | "QueueDoesNotExist"
            | "NonExistentQueue"
    );
    if not_found {
        return match service {
            Service::DynamoDb => AwsError::TableMissing { table: resource },
            Service::Sqs => AwsError::QueueMissing { queue: resource },
            Service::SecretsManager => AwsError::SecretMissing {
                secret_id: resource,
            },
        };
    }
    if is_throttling(&code) {
        return AwsError::Throttled {
            service: service.name(),
            operation,
            resource,
            message,
        };
    }
    if is_access_denied(&code) {
        return AwsError::AccessDenied {
            service: service.name(),
            operation,
            resource,
            message,
        };
    }
    let retryable = is_server_fault(&code);
    AwsError::Service {
        service: service.name(),
        operation,
        resource,
        message,
        retryable,
    }
}

fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException"
            | "Throttling"
            | "ProvisionedThroughputExceededException"
            | "RequestLimitExceeded"
            | "TooManyRequestsException"
            | "RequestThrottled"
            | "AWS.SimpleQueueService.RequestThrottled"
    )
}

fn is_access_denied(code: &str) -> bool {
    matches!(
        code,
        "AccessDeniedException"
            | "AccessDenied"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "ExpiredTokenException"
            | "KMS.AccessDeniedException"
    )
}

fn is_server_fault(code: &str) -> bool {
    matches!(
        code,
        "InternalServerError"
            | "InternalFailure"
            | "InternalError"
            | "InternalServiceError"
            | "ServiceUnavailable"
            | "TransactionConflictException"
    )
}

/// Lets call sites read `.map_err(aws(Service::Sqs, "SendMessageBatch", url))`.
pub(crate) fn aws<'a, E, R>(
    service: Service,
    operation: &'static str,
    resource: &'a str,
) -> impl FnOnce(SdkError<E, R>) -> AwsError + 'a
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: Debug,
{
    move |err| classify(service, operation, resource, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_resource_and_the_fix() {
        let err = AwsError::TableMissing {
            table: "hlsync-state".into(),
        };
        assert!(err.to_string().contains("`hlsync-state`"));
        assert!(err.to_string().contains("hlsync provision"));
        let err = AwsError::SecretMissing {
            secret_id: "hlsync/credentials".into(),
        };
        assert!(err.to_string().contains("hlsync provision --secret-file F"));
        assert!(!err.is_retryable());
    }

    #[test]
    fn retryable_kinds() {
        let throttled = AwsError::Throttled {
            service: "SQS",
            operation: "SendMessageBatch",
            resource: "q".into(),
            message: "slow down".into(),
        };
        assert!(throttled.is_retryable());
        let conflict = AwsError::Conflict {
            name: "contacts".into(),
        };
        assert!(!conflict.is_retryable());
        assert!(is_throttling("ProvisionedThroughputExceededException"));
        assert!(is_access_denied("AccessDeniedException"));
        assert!(is_server_fault("InternalServerError"));
    }
}
