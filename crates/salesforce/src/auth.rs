//! The four login flows of SPEC.md §4. Each makes exactly one request; retrying and refusing to
//! retry are the client's business (see `client.rs`), because a retried rejected login counts
//! towards locking the integration user out.

use std::fmt;

use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::credentials::{AuthFlow, SalesforceCredentials};
use crate::error::SfError;

/// How long a JWT assertion is valid: Salesforce allows at most 3 minutes.
const JWT_LIFETIME_SECS: i64 = 180;

/// A logged-in session: the token for `Authorization: Bearer` and where the org lives.
pub(crate) struct Session {
    pub token: SecretString,
    pub instance_url: String,
    /// Counts logins, so that concurrent callers that saw the same expired session re-login once.
    pub generation: u64,
}

/// The outcome of one login request.
pub(crate) enum Attempt {
    Done {
        token: SecretString,
        instance_url: String,
    },
    /// Salesforce refused the credentials: never send them again.
    Rejected(String),
    /// A server-side problem that may pass.
    Transient(String),
    /// The request did not get an answer.
    Transport(reqwest::Error),
    /// An answer without the documented shape.
    Invalid(String),
}

/// The RS256 key of the JWT bearer flow, parsed (and tried) once when the client is built.
pub(crate) struct JwtKey(EncodingKey);

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtKey([REDACTED])")
    }
}

/// The claims Salesforce reads from a JWT bearer assertion.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
}

impl JwtKey {
    /// Accepts PKCS#8 (`BEGIN PRIVATE KEY`) and PKCS#1 (`BEGIN RSA PRIVATE KEY`) PEM. The error
    /// never quotes the key.
    pub fn parse(pem: &SecretString) -> Result<Self, SfError> {
        let refused = || SfError::Credentials {
            field: "private_key_pem",
            auth: AuthFlow::JwtBearer.as_str(),
            problem: "not an RSA private key in PEM form (PKCS#8 or PKCS#1)".to_string(),
        };
        let key = EncodingKey::from_rsa_pem(pem.expose_secret().trim().as_bytes())
            .map_err(|_| refused())?;
        let key = JwtKey(key);
        // jsonwebtoken checks the PEM's outline only and parses the RSA key when it signs: one
        // signature now, so that a bad key fails at start-up, not as a login.
        key.sign("hlsync", "hlsync", "hlsync")
            .map_err(|_| refused())?;
        Ok(key)
    }

    /// The signed assertion: iss = client_id, sub = username, aud = login URL, exp = now + 3 min.
    pub fn assertion(
        &self,
        client_id: &str,
        username: &str,
        audience: &str,
    ) -> Result<SecretString, jsonwebtoken::errors::Error> {
        self.sign(client_id, username, audience)
            .map(SecretString::from)
    }

    fn sign(&self, iss: &str, sub: &str, aud: &str) -> Result<String, jsonwebtoken::errors::Error> {
        // Salesforce documents the header as `{"alg":"RS256"}`: no `typ`.
        let header = Header {
            typ: None,
            ..Header::new(Algorithm::RS256)
        };
        let claims = Claims {
            iss,
            sub,
            aud,
            exp: Utc::now().timestamp() + JWT_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&header, &claims, &self.0)
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    instance_url: String,
}

#[derive(Deserialize)]
struct TokenError {
    error: Option<String>,
    error_description: Option<String>,
}

/// One login request by the configured flow.
pub(crate) async fn login(
    http: &reqwest::Client,
    creds: &SalesforceCredentials,
    login_url: &str,
    api_version: &str,
    jwt_key: Option<&JwtKey>,
) -> Attempt {
    let client_id = creds.client_id.as_deref().unwrap_or_default().trim();
    let username = creds.username.as_deref().unwrap_or_default().trim();
    if creds.auth == AuthFlow::Soap {
        return soap_login(http, creds, login_url, api_version).await;
    }
    // The form serializer is not Send: it lives in this block only, never across an await.
    let body = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        match creds.auth {
            AuthFlow::Soap => {}
            AuthFlow::ClientCredentials => {
                form.append_pair("grant_type", "client_credentials");
                form.append_pair("client_id", client_id);
                form.append_pair("client_secret", secret_str(creds.client_secret.as_ref()));
            }
            AuthFlow::Password => {
                form.append_pair("grant_type", "password");
                form.append_pair("client_id", client_id);
                form.append_pair("client_secret", secret_str(creds.client_secret.as_ref()));
                form.append_pair("username", username);
                form.append_pair("password", creds.password_with_token().expose_secret());
            }
            AuthFlow::JwtBearer => {
                let Some(key) = jwt_key else {
                    return Attempt::Invalid("no private key for the JWT bearer flow".to_string());
                };
                let assertion = match key.assertion(client_id, username, login_url) {
                    Ok(assertion) => assertion,
                    // The key signed once when the client was built; this is not expected.
                    Err(e) => {
                        return Attempt::Invalid(format!(
                            "the JWT assertion could not be signed ({e}); check salesforce.private_key_pem in the secret"
                        ));
                    }
                };
                form.append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer");
                form.append_pair("assertion", assertion.expose_secret());
            }
        }
        SecretString::from(form.finish())
    };
    let url = format!("{login_url}/services/oauth2/token");
    let (status, text) =
        match post(http, &url, "application/x-www-form-urlencoded", &[], &body).await {
            Ok(answer) => answer,
            Err(e) => return Attempt::Transport(e),
        };
    if status.is_success() {
        return match serde_json::from_str::<TokenAnswer>(&text) {
            Ok(t) => Attempt::Done {
                token: SecretString::from(t.access_token),
                instance_url: t.instance_url.trim_end_matches('/').to_string(),
            },
            Err(e) => Attempt::Invalid(format!(
                "the token answer lacks access_token or instance_url ({e})"
            )),
        };
    }
    let reason = match serde_json::from_str::<TokenError>(&text) {
        Ok(TokenError {
            error: Some(error),
            error_description,
        }) => match error_description {
            Some(d) if !d.is_empty() => format!("{error}: {d}"),
            _ => error,
        },
        _ => format!("HTTP {}", status.as_u16()),
    };
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Attempt::Transient(reason)
    } else {
        Attempt::Rejected(reason)
    }
}

/// One login POST; the body holds secrets, so it stays a `SecretString` until reqwest takes it.
async fn post(
    http: &reqwest::Client,
    url: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &SecretString,
) -> Result<(reqwest::StatusCode, String), reqwest::Error> {
    let mut request = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .header(reqwest::header::ACCEPT, "application/json, text/xml")
        .body(body.expose_secret().to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    let status = response.status();
    Ok((status, response.text().await?))
}

fn secret_str(s: Option<&SecretString>) -> &str {
    s.map(secrecy::ExposeSecret::expose_secret)
        .unwrap_or_default()
}

/// SOAP fault codes that are about the server, not the credentials: the only faults worth
/// another login attempt.
const TRANSIENT_SOAP_FAULTS: &[&str] = &["SERVER_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"];

async fn soap_login(
    http: &reqwest::Client,
    creds: &SalesforceCredentials,
    login_url: &str,
    api_version: &str,
) -> Attempt {
    let username = creds.username.as_deref().unwrap_or_default().trim();
    let envelope = SecretString::from(format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" "#,
            r#"xmlns:urn="urn:partner.soap.sforce.com">"#,
            "<soapenv:Body><urn:login><urn:username>{}</urn:username>",
            "<urn:password>{}</urn:password></urn:login></soapenv:Body></soapenv:Envelope>"
        ),
        xml_escape(username),
        xml_escape(creds.password_with_token().expose_secret()),
    ));
    let url = format!("{login_url}/services/Soap/u/{api_version}");
    let soap_action = [("SOAPAction", "login")];
    let (status, text) = match post(
        http,
        &url,
        "text/xml; charset=UTF-8",
        &soap_action,
        &envelope,
    )
    .await
    {
        Ok(answer) => answer,
        Err(e) => return Attempt::Transport(e),
    };
    // Salesforce answers every fault with HTTP 500, so the fault code decides, not the status.
    if let Some(code) = xml_text(&text, "faultcode") {
        let code = code.rsplit(':').next().unwrap_or_default().to_string();
        let message = xml_text(&text, "faultstring").unwrap_or_default();
        let reason = if message.is_empty() {
            code.clone()
        } else {
            format!("{code}: {message}")
        };
        return if TRANSIENT_SOAP_FAULTS.contains(&code.as_str()) {
            Attempt::Transient(reason)
        } else {
            Attempt::Rejected(reason)
        };
    }
    if !status.is_success() {
        let reason = format!("HTTP {}", status.as_u16());
        return if status.is_server_error() {
            Attempt::Transient(reason)
        } else {
            Attempt::Rejected(reason)
        };
    }
    let (Some(session), Some(server_url)) =
        (xml_text(&text, "sessionId"), xml_text(&text, "serverUrl"))
    else {
        return Attempt::Invalid("the SOAP loginResponse lacks sessionId or serverUrl".to_string());
    };
    match url::Url::parse(&server_url) {
        Ok(u) if u.has_host() => Attempt::Done {
            token: SecretString::from(session),
            instance_url: u.origin().ascii_serialization(),
        },
        _ => Attempt::Invalid(format!("the SOAP serverUrl `{server_url}` is not a URL")),
    }
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The text of the first element whose local name (namespace prefix ignored) is `local`. The
/// login answer is small and flat, so a scan is enough: no XML dependency for one call.
pub(crate) fn xml_text(doc: &str, local: &str) -> Option<String> {
    let mut rest = doc;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let end = rest.find('>')?;
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if tag.starts_with('/')
            || tag.starts_with('?')
            || tag.starts_with('!')
            || tag.ends_with('/')
        {
            continue;
        }
        let name = tag.split_whitespace().next().unwrap_or_default();
        let name = name.rsplit(':').next().unwrap_or_default();
        if name == local {
            let close = rest.find("</")?;
            return Some(xml_unescape(rest[..close].trim()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_ignores_prefixes_and_attributes() {
        let doc = r#"<?xml version="1.0"?><soapenv:Envelope><soapenv:Body><loginResponse><result>
            <serverUrl>https://na1.salesforce.com/services/Soap/u/62.0/00D</serverUrl>
            <sessionId xsi:type="xsd:string">00D!abc&amp;def</sessionId><roleId xsi:nil="true"/>
            </result></loginResponse></soapenv:Body></soapenv:Envelope>"#;
        assert_eq!(xml_text(doc, "sessionId").as_deref(), Some("00D!abc&def"));
        assert_eq!(
            xml_text(doc, "serverUrl").as_deref(),
            Some("https://na1.salesforce.com/services/Soap/u/62.0/00D")
        );
        assert_eq!(xml_text(doc, "roleId"), None);
        assert_eq!(xml_text(doc, "missing"), None);
    }

    const TEST_KEY_PEM: &str = include_str!("../tests/fixtures/jwt_test_key.pem");

    #[test]
    fn jwt_keys_are_read_from_pkcs8_and_pkcs1_pem() {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        assert!(JwtKey::parse(&SecretString::from(TEST_KEY_PEM)).is_ok());
        let pkcs1 = rsa::RsaPrivateKey::from_pkcs8_pem(TEST_KEY_PEM)
            .unwrap()
            .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap();
        assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let key = JwtKey::parse(&SecretString::from(pkcs1.to_string())).unwrap();
        let assertion = key
            .assertion("c", "u", "https://login.salesforce.com")
            .unwrap();
        assert_eq!(assertion.expose_secret().split('.').count(), 3);
    }

    #[test]
    fn a_pem_that_holds_no_rsa_private_key_is_refused_when_parsed() {
        // Well-formed PEM around a DER that is no RSA key: refused now, not at the first login.
        let not_rsa = "-----BEGIN RSA PRIVATE KEY-----\nMAMCAQA=\n-----END RSA PRIVATE KEY-----\n";
        let err = JwtKey::parse(&SecretString::from(not_rsa)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("private_key_pem"), "{msg}");
        assert!(!msg.contains("MAMCAQA"), "{msg}");
    }

    #[test]
    fn xml_escape_round_trips() {
        let s = r#"p&w<d>"'"#;
        assert_eq!(xml_unescape(&xml_escape(s)), s);
    }
}
