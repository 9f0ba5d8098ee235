//! Logins: the OAuth 2.0 token endpoint (client credentials, username-password, JWT bearer) and
//! the SOAP `login()` call. Every failure counts; a user locks after `MAX_FAILED_LOGINS`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use rsa::RsaPublicKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{MAX_FAILED_LOGINS, ORG_ID, Shared, SimError, State as SimState};

pub fn parse_public_key(pem: &str) -> Result<RsaPublicKey, SimError> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;
    RsaPublicKey::from_public_key_pem(pem)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
        .map_err(|e| SimError::InvalidPublicKey(e.to_string()))
}

/// HMAC-SHA256 (RFC 2104), for the token response's `signature`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block_key = [0u8; BLOCK];
    if key.len() > BLOCK {
        block_key[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block_key.map(|k| k ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// A login failure for the OAuth endpoint: (HTTP status, `error`, `error_description`).
type Refusal = (StatusCode, &'static str, &'static str);

const AUTH_FAILURE: Refusal = (
    StatusCode::BAD_REQUEST,
    "invalid_grant",
    "authentication failure",
);
const BAD_CLIENT: Refusal = (
    StatusCode::BAD_REQUEST,
    "invalid_client",
    "invalid client credentials",
);

impl SimState {
    fn user_index(&self, username: &str) -> Option<usize> {
        // Salesforce usernames are case-insensitive.
        self.users
            .iter()
            .position(|u| u.spec.username.eq_ignore_ascii_case(username))
    }

    /// Counts a failed login, charging it to the user when one is named; locks at the threshold.
    fn fail_login(&mut self, user: Option<usize>) {
        self.counters.failed_logins += 1;
        if let Some(user) = user.and_then(|i| self.users.get_mut(i)) {
            user.failed_logins += 1;
            if user.failed_logins >= MAX_FAILED_LOGINS && !user.locked {
                user.locked = true;
                let name = user.spec.username.clone();
                self.counters.locked_users.insert(name);
            }
        }
    }

    /// Opens a session for the user: returns (access token, user Id).
    fn open_session(&mut self, user: usize) -> Option<(String, String)> {
        self.counters.successful_logins += 1;
        let token_seq = self.next_token;
        self.next_token += 1;
        let user = self.users.get_mut(user)?;
        user.failed_logins = 0;
        // Salesforce access tokens are the org Id, '!', and an opaque string.
        let token = format!(
            "{}!AQ{}{}",
            &ORG_ID[..15],
            token_seq,
            uuid::Uuid::new_v4().simple()
        );
        self.sessions.insert(token.clone(), user.id.clone());
        Some((token, user.id.clone()))
    }
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// client_id/client_secret from the form, or from HTTP Basic auth as RFC 6749 allows.
fn client_credentials(
    form: &[(String, String)],
    headers: &HeaderMap,
) -> (Option<String>, Option<String>) {
    let from_form = (
        field(form, "client_id").map(str::to_owned),
        field(form, "client_secret").map(str::to_owned),
    );
    if from_form.0.is_some() {
        return from_form;
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    match basic.as_deref().and_then(|s| s.split_once(':')) {
        Some((id, secret)) => (Some(id.to_owned()), Some(secret.to_owned())),
        None => from_form,
    }
}

pub async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = form(&body);
    let mut state = shared.lock();
    *state
        .counters
        .calls_by_endpoint
        .entry("oauth_token".to_owned())
        .or_default() += 1;
    let grant = field(&form, "grant_type").unwrap_or_default().to_owned();
    let outcome = match grant.as_str() {
        "client_credentials" => client_credentials_grant(&shared, &mut state, &form, &headers),
        "password" => password_grant(&shared, &mut state, &form, &headers),
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => jwt_grant(&shared, &mut state, &form),
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant type not supported",
            );
        }
    };
    let user = match outcome {
        Ok(user) => user,
        Err((user, (status, error, description))) => {
            state.fail_login(user);
            return oauth_error(status, error, description);
        }
    };
    let issued_at = state.store.now().timestamp_millis().to_string();
    let Some((token, user_id)) = state.open_session(user) else {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "no such user",
        );
    };
    let id_url = format!("{}/id/{ORG_ID}/{user_id}", shared.base_url);
    let signature = STANDARD.encode(hmac_sha256(
        shared.connected_app.client_secret.as_bytes(),
        format!("{id_url}{issued_at}").as_bytes(),
    ));
    Json(json!({
        "access_token": token,
        "instance_url": shared.base_url,
        "id": id_url,
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": signature,
        "scope": "api",
    }))
    .into_response()
}

type GrantResult = Result<usize, (Option<usize>, Refusal)>;

fn check_client(shared: &Shared, id: Option<&str>, secret: Option<&str>) -> bool {
    id == Some(shared.connected_app.client_id.as_str())
        && secret == Some(shared.connected_app.client_secret.as_str())
}

fn client_credentials_grant(
    shared: &Shared,
    state: &mut SimState,
    form: &[(String, String)],
    headers: &HeaderMap,
) -> GrantResult {
    let run_as = shared
        .connected_app
        .run_as
        .as_deref()
        .and_then(|name| state.user_index(name))
        .or(if state.users.is_empty() {
            None
        } else {
            Some(0)
        });
    let (id, secret) = client_credentials(form, headers);
    if !check_client(shared, id.as_deref(), secret.as_deref()) {
        return Err((run_as, BAD_CLIENT));
    }
    let user = run_as.ok_or((None, AUTH_FAILURE))?;
    if state.users.get(user).is_some_and(|u| u.locked) {
        return Err((Some(user), AUTH_FAILURE));
    }
    Ok(user)
}

fn password_grant(
    shared: &Shared,
    state: &mut SimState,
    form: &[(String, String)],
    headers: &HeaderMap,
) -> GrantResult {
    let user = field(form, "username").and_then(|name| state.user_index(name));
    let (id, secret) = client_credentials(form, headers);
    if !check_client(shared, id.as_deref(), secret.as_deref()) {
        return Err((user, BAD_CLIENT));
    }
    let user = user.ok_or((None, AUTH_FAILURE))?;
    let given = field(form, "password").unwrap_or_default();
    let Some(spec) = state.users.get(user) else {
        return Err((None, AUTH_FAILURE));
    };
    let expected = format!("{}{}", spec.spec.password, spec.spec.security_token);
    if spec.locked || given != expected {
        return Err((Some(user), AUTH_FAILURE));
    }
    Ok(user)
}

fn jwt_grant(shared: &Shared, state: &mut SimState, form: &[(String, String)]) -> GrantResult {
    const INVALID_ASSERTION: Refusal = (
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "invalid assertion",
    );
    let assertion = field(form, "assertion").ok_or((None, INVALID_ASSERTION))?;
    let parts: Vec<&str> = assertion.split('.').collect();
    let [head_b64, claims_b64, sig_b64] = parts[..] else {
        return Err((None, INVALID_ASSERTION));
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part.trim_end_matches('='));
    let header: Value = decode(head_b64)
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or((None, INVALID_ASSERTION))?;
    let claims: Value = decode(claims_b64)
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or((None, INVALID_ASSERTION))?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err((None, INVALID_ASSERTION));
    }
    let user = claims
        .get("sub")
        .and_then(Value::as_str)
        .and_then(|sub| state.user_index(sub));
    if claims.get("iss").and_then(Value::as_str) != Some(shared.connected_app.client_id.as_str()) {
        return Err((
            user,
            (
                StatusCode::BAD_REQUEST,
                "invalid_client_id",
                "client identifier invalid",
            ),
        ));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(aud)) => same_url(aud, &shared.base_url),
        Some(Value::Array(auds)) => auds
            .iter()
            .filter_map(Value::as_str)
            .any(|aud| same_url(aud, &shared.base_url)),
        _ => false,
    };
    if !aud_ok {
        return Err((
            user,
            (
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "audience is invalid",
            ),
        ));
    }
    let now: DateTime<Utc> = state.store.now();
    let exp = claims.get("exp").and_then(Value::as_i64);
    if exp.is_none_or(|exp| exp <= now.timestamp()) {
        return Err((
            user,
            (
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "expired authorization code",
            ),
        ));
    }
    if let Some(key) = &shared.jwt_key {
        let signature = decode(sig_b64).map_err(|_| (user, INVALID_ASSERTION))?;
        if !verify_rs256(
            key,
            format!("{head_b64}.{claims_b64}").as_bytes(),
            &signature,
        ) {
            return Err((user, INVALID_ASSERTION));
        }
    }
    let user = user.ok_or((
        None,
        (
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "user hasn't approved this consumer",
        ),
    ))?;
    if state.users.get(user).is_some_and(|u| u.locked) {
        return Err((Some(user), AUTH_FAILURE));
    }
    Ok(user)
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

fn verify_rs256(key: &RsaPublicKey, message: &[u8], signature: &[u8]) -> bool {
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::signature::Verifier;
    let verifier = VerifyingKey::<Sha256>::new(key.clone());
    Signature::try_from(signature).is_ok_and(|sig| verifier.verify(message, &sig).is_ok())
}

// ---- SOAP login ----

/// The text of the first element named `name` (any namespace prefix), XML entities decoded.
fn xml_element(xml: &str, name: &str) -> Option<String> {
    let mut rest = xml;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        let end = rest.find('>')?;
        let tag = &rest[..end];
        let local = tag
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .rsplit(':')
            .next()
            .unwrap_or_default();
        if local == name && !tag.starts_with('/') && !tag.ends_with('/') {
            let body = &rest[end + 1..];
            let close = body.find("</")?;
            return Some(xml_unescape(&body[..close]));
        }
        rest = &rest[end + 1..];
    }
    None
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";

fn soap_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml;charset=UTF-8")],
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"{SOAP_ENV}\" xmlns=\"urn:partner.soap.sforce.com\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
        ),
    )
        .into_response()
}

/// Salesforce answers SOAP faults with HTTP 500.
fn soap_fault(code: &str, message: &str) -> Response {
    let message = xml_escape(message);
    soap_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!(
            "<soapenv:Fault><faultcode xmlns:sf=\"urn:fault.partner.soap.sforce.com\">sf:{code}</faultcode><faultstring>{code}: {message}</faultstring><detail><sf:LoginFault xmlns:sf=\"urn:fault.partner.soap.sforce.com\" xsi:type=\"sf:LoginFault\"><sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>{message}</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault>"
        ),
    )
}

pub async fn soap_login(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    body: Bytes,
) -> Response {
    let mut state = shared.lock();
    *state
        .counters
        .calls_by_endpoint
        .entry("soap_login".to_owned())
        .or_default() += 1;
    if !shared.api_versions.contains(&version) {
        return soap_fault(
            "UNSUPPORTED_API_VERSION",
            &format!("Invalid Api version specified on URL: {version}"),
        );
    }
    let xml = String::from_utf8_lossy(&body);
    if xml_element(&xml, "login").is_none() && !xml.contains("login") {
        return soap_fault("INVALID_OPERATION", "only login() is simulated");
    }
    let username = xml_element(&xml, "username").unwrap_or_default();
    let password = xml_element(&xml, "password").unwrap_or_default();
    let user = state.user_index(&username);
    let ok = user.and_then(|i| state.users.get(i)).is_some_and(|u| {
        !u.locked && password == format!("{}{}", u.spec.password, u.spec.security_token)
    });
    let Some(user) = user.filter(|_| ok) else {
        state.fail_login(user);
        return soap_fault(
            "INVALID_LOGIN",
            "Invalid username, password, security token; or user locked out.",
        );
    };
    let Some((session, user_id)) = state.open_session(user) else {
        return soap_fault(
            "INVALID_LOGIN",
            "Invalid username, password, security token; or user locked out.",
        );
    };
    let base = &shared.base_url;
    let username = xml_escape(&username);
    soap_response(
        StatusCode::OK,
        format!(
            "<loginResponse><result><metadataServerUrl>{base}/services/Soap/m/{version}/{ORG_ID}</metadataServerUrl><passwordExpired>false</passwordExpired><sandbox>false</sandbox><serverUrl>{base}/services/Soap/u/{version}/{ORG_ID}</serverUrl><sessionId>{session}</sessionId><userId>{user_id}</userId><userInfo><organizationId>{ORG_ID}</organizationId><sessionSecondsValid>7200</sessionSecondsValid><userId>{user_id}</userId><userName>{username}</userName></userInfo></result></loginResponse>"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().fold(String::new(), |mut out, b| {
            out.push_str(&format!("{b:02x}"));
            out
        })
    }

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hmac_hashes_long_keys_first() {
        let key = [0xaau8; 131];
        let mac = hmac_sha256(
            &key,
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex(&mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn xml_elements_are_found_whatever_their_prefix() {
        let xml = r#"<?xml version="1.0"?><env:Envelope xmlns:env="x"><env:Body><n1:login xmlns:n1="urn:partner.soap.sforce.com"><n1:username>a@b.org</n1:username><n1:password>p&amp;wTOKEN</n1:password></n1:login></env:Body></env:Envelope>"#;
        assert_eq!(xml_element(xml, "username").as_deref(), Some("a@b.org"));
        assert_eq!(xml_element(xml, "password").as_deref(), Some("p&wTOKEN"));
        assert_eq!(xml_element(xml, "missing"), None);
    }
}
