//! The `salesforce` object of the secret (SPEC.md §4).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::error::SfError;

/// How hlsync logs in to Salesforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthFlow {
    /// OAuth 2.0 client credentials (recommended).
    ClientCredentials,
    /// OAuth 2.0 JWT bearer: a JWT signed with the connected app's certificate key.
    JwtBearer,
    /// OAuth 2.0 username-password.
    Password,
    /// SOAP `login()` with username and password + security token.
    Soap,
}

impl AuthFlow {
    /// The flow's name as the secret's `auth` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFlow::ClientCredentials => "client_credentials",
            AuthFlow::JwtBearer => "jwt_bearer",
            AuthFlow::Password => "password",
            AuthFlow::Soap => "soap",
        }
    }
}

/// Credentials for one Salesforce org. Secrets are `SecretString`s: `Debug` prints them as redacted,
/// and nothing in this crate logs them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesforceCredentials {
    /// `https://login.salesforce.com`, `https://test.salesforce.com` or the org's My Domain URL
    /// (client credentials needs the My Domain URL).
    pub login_url: String,
    /// Which login flow the fields below serve.
    pub auth: AuthFlow,
    /// The connected app's consumer key (every flow but `soap`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// The connected app's consumer secret (`client_credentials` and `password`).
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    /// The integration user (`password`, `soap`, and the JWT's `sub` for `jwt_bearer`).
    #[serde(default)]
    pub username: Option<String>,
    /// The integration user's password (`password` and `soap`).
    #[serde(default)]
    pub password: Option<SecretString>,
    /// Appended to the password when the org asks for one (`password` and `soap`).
    #[serde(default)]
    pub security_token: Option<SecretString>,
    /// The PEM RSA private key of the connected app's certificate (`jwt_bearer`).
    #[serde(default)]
    pub private_key_pem: Option<SecretString>,
}

impl SalesforceCredentials {
    /// The user the login acts as, for messages ("the connected app" when the flow has none).
    pub fn principal(&self) -> String {
        match (&self.username, &self.client_id) {
            (Some(u), _) if !u.trim().is_empty() => u.trim().to_string(),
            (_, Some(c)) if !c.trim().is_empty() => format!("connected app {}", c.trim()),
            _ => "the integration user".to_string(),
        }
    }

    /// Checks that the fields the flow needs are present and not empty, so that a bad secret is
    /// reported at start-up rather than as a failed (and lockout-counting) login.
    pub(crate) fn validate(&self) -> Result<(), SfError> {
        let auth = self.auth.as_str();
        let missing = |field: &'static str| SfError::Credentials {
            field,
            auth,
            problem: "missing or empty".to_string(),
        };
        let plain_ok = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        let secret_ok =
            |v: &Option<SecretString>| v.as_ref().is_some_and(|s| !s.expose_secret().is_empty());
        let need_client_id = || {
            plain_ok(&self.client_id)
                .then_some(())
                .ok_or(missing("client_id"))
        };
        let need_secret = || {
            secret_ok(&self.client_secret)
                .then_some(())
                .ok_or(missing("client_secret"))
        };
        let need_username = || {
            plain_ok(&self.username)
                .then_some(())
                .ok_or(missing("username"))
        };
        let need_password = || {
            secret_ok(&self.password)
                .then_some(())
                .ok_or(missing("password"))
        };
        match self.auth {
            AuthFlow::ClientCredentials => {
                need_client_id()?;
                need_secret()?;
            }
            AuthFlow::JwtBearer => {
                need_client_id()?;
                need_username()?;
                if !secret_ok(&self.private_key_pem) {
                    return Err(missing("private_key_pem"));
                }
            }
            AuthFlow::Password => {
                need_client_id()?;
                need_secret()?;
                need_username()?;
                need_password()?;
            }
            AuthFlow::Soap => {
                need_username()?;
                need_password()?;
            }
        }
        Ok(())
    }

    /// Password followed by the security token, as Salesforce expects it for logins from
    /// untrusted IP ranges. The token may be absent when the org trusts the caller's IPs.
    pub(crate) fn password_with_token(&self) -> SecretString {
        let mut joined = String::new();
        if let Some(p) = &self.password {
            joined.push_str(p.expose_secret());
        }
        if let Some(t) = &self.security_token {
            joined.push_str(t.expose_secret());
        }
        SecretString::from(joined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> SalesforceCredentials {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn debug_never_prints_secrets() {
        let c = parse(
            r#"{"login_url":"https://login.salesforce.com","auth":"password","client_id":"cid",
                "client_secret":"CSECRET-1","username":"u@example.org","password":"PW-SECRET-2",
                "security_token":"TOK-SECRET-3","private_key_pem":"PEM-SECRET-4"}"#,
        );
        let dbg = format!("{c:?}");
        for secret in ["CSECRET-1", "PW-SECRET-2", "TOK-SECRET-3", "PEM-SECRET-4"] {
            assert!(!dbg.contains(secret), "{secret} leaked in {dbg}");
        }
        assert!(dbg.contains("u@example.org"));
    }

    #[test]
    fn each_flow_names_the_missing_field() {
        let c = parse(r#"{"login_url":"https://x","auth":"client_credentials","client_id":"a"}"#);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("salesforce.client_secret"), "{e}");
        assert!(e.contains("client_credentials"), "{e}");

        let c = parse(
            r#"{"login_url":"https://x","auth":"jwt_bearer","client_id":"a","username":"u"}"#,
        );
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("private_key_pem")
        );

        let c = parse(r#"{"login_url":"https://x","auth":"soap","username":"u","password":""}"#);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("salesforce.password")
        );

        let c = parse(r#"{"login_url":"https://x","auth":"soap","username":"u","password":"p"}"#);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn unknown_fields_and_flows_are_refused() {
        assert!(
            serde_json::from_str::<SalesforceCredentials>(
                r#"{"login_url":"https://x","auth":"soap","securty_token":"t"}"#
            )
            .is_err()
        );
        assert!(
            serde_json::from_str::<SalesforceCredentials>(
                r#"{"login_url":"https://x","auth":"magic"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn password_and_token_are_joined() {
        let c = parse(
            r#"{"login_url":"https://x","auth":"soap","username":"u","password":"pw","security_token":"TK"}"#,
        );
        assert_eq!(c.password_with_token().expose_secret(), "pwTK");
    }
}
