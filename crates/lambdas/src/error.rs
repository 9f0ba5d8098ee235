//! What a function reports when it cannot do its work.

use hlsync_core::config::{CONFIG_ENV, ConfigError};
use hlsync_sync::SyncError;
use lambda_runtime::Diagnostic;

#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    /// `HLSYNC_CONFIG` is missing or wrong; the message names the key.
    #[error("{}", config_message(.0))]
    Config(#[from] ConfigError),
    /// A `HLSYNC_*` variable is missing; the message names it.
    #[error("{0}")]
    Environment(SyncError),
    /// The run stopped (credentials rejected, allotment reached, an outage past the retries).
    /// The message is the pipeline's, which says what the operator should do.
    #[error("{0}")]
    Run(#[from] SyncError),
}

fn config_message(e: &ConfigError) -> String {
    match e {
        // Already names the variable.
        ConfigError::NotSet => e.to_string(),
        _ => format!("{e} (in the function's {CONFIG_ENV} variable)"),
    }
}

impl LambdaError {
    /// The `errorType` Lambda records: lets a log query or alarm tell the kinds apart.
    pub fn kind(&self) -> &'static str {
        match self {
            LambdaError::Config(_) => "hlsync.ConfigError",
            LambdaError::Environment(_) => "hlsync.EnvironmentError",
            LambdaError::Run(e) => match e {
                SyncError::Rejected { .. } => "hlsync.CredentialsRejected",
                SyncError::Allotment(_) => "hlsync.AllotmentReached",
                SyncError::QueryTimeout(_) => "hlsync.QueryTimeout",
                SyncError::Conflict(_) => "hlsync.WatermarkConflict",
                SyncError::Transient { .. } => "hlsync.Unavailable",
                SyncError::Failed { .. } => "hlsync.Failed",
            },
        }
    }
}

impl From<LambdaError> for Diagnostic {
    fn from(e: LambdaError) -> Self {
        Diagnostic {
            error_type: e.kind().to_string(),
            error_message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diagnostic_carries_the_operator_message() {
        let e = LambdaError::Run(SyncError::Allotment("usage is 60 of 100: wait".into()));
        let d = Diagnostic::from(e);
        assert_eq!(d.error_type, "hlsync.AllotmentReached");
        assert_eq!(d.error_message, "usage is 60 of 100: wait");
    }

    #[test]
    fn a_config_error_names_its_key() {
        let e = LambdaError::from(ConfigError::Key {
            key: "salesforce.lookback".into(),
            problem: "not a duration".into(),
        });
        assert!(e.to_string().contains("salesforce.lookback"), "{e}");
        assert!(e.to_string().contains("HLSYNC_CONFIG"), "{e}");
    }
}
