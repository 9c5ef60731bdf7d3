//! The token endpoint (RFC 6749 §3.2, as OAuth 2.1 has it for a public client): a code and its
//! PKCE verifier for the first tokens, a refresh token for each next pair.

use std::fmt;

use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Assumed lifetime of an access token whose answer does not say (the server's default).
const DEFAULT_EXPIRES_IN: u64 = 3600;

/// What the token endpoint issued.
#[derive(Debug)]
pub(super) struct Issued {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub expires_in: u64,
}

/// Why the token endpoint issued nothing.
#[derive(Debug)]
pub(super) enum TokenError {
    /// The server answered with an RFC 6749 error: what was presented will not work again.
    Refused { error: String, description: String },
    /// No usable answer (the network, a server error): trying again later may work.
    Unavailable(String),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused { error, description } if description.is_empty() => write!(f, "{error}"),
            Self::Refused { error, description } => write!(f, "{error}: {description}"),
            Self::Unavailable(why) => write!(f, "{why}"),
        }
    }
}

/// The parameters of an authorization code exchange.
pub(super) struct CodeExchange<'a> {
    pub code: &'a SecretString,
    pub redirect_uri: &'a str,
    pub client_id: &'a str,
    pub code_verifier: &'a SecretString,
    pub resource: &'a str,
}

/// `grant_type=authorization_code`.
pub(super) async fn redeem_code(
    http: &reqwest::Client,
    endpoint: &Url,
    exchange: &CodeExchange<'_>,
) -> Result<Issued, TokenError> {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", exchange.code.expose_secret()),
        ("redirect_uri", exchange.redirect_uri),
        ("client_id", exchange.client_id),
        ("code_verifier", exchange.code_verifier.expose_secret()),
        ("resource", exchange.resource),
    ];
    post(http, endpoint, &form).await
}

/// `grant_type=refresh_token`: the answer carries the next refresh token (they rotate).
pub(super) async fn refresh(
    http: &reqwest::Client,
    endpoint: &Url,
    refresh_token: &SecretString,
    client_id: &str,
    resource: &str,
) -> Result<Issued, TokenError> {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose_secret()),
        ("client_id", client_id),
        ("resource", resource),
    ];
    post(http, endpoint, &form).await
}

#[derive(Deserialize)]
struct Answer {
    access_token: SecretString,
    token_type: String,
    expires_in: Option<u64>,
    refresh_token: Option<SecretString>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    #[serde(default)]
    error_description: String,
}

async fn post(http: &reqwest::Client, endpoint: &Url, form: &[(&str, &str)]) -> Result<Issued, TokenError> {
    let body = serde_urlencoded::to_string(form).map_err(|error| TokenError::Unavailable(error.to_string()))?;
    let response = http
        .post(endpoint.clone())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|error| {
            TokenError::Unavailable(format!(
                "cannot reach the token endpoint {endpoint}: {}",
                super::with_causes(&error)
            ))
        })?;
    let status = response.status();
    let text = response.text().await.map_err(|error| {
        TokenError::Unavailable(format!("the token endpoint's answer broke off: {}", super::with_causes(&error)))
    })?;
    read_answer(status, &text, endpoint)
}

fn read_answer(status: reqwest::StatusCode, text: &str, endpoint: &Url) -> Result<Issued, TokenError> {
    if status.is_success() {
        let answer: Answer = serde_json::from_str(text).map_err(|error| {
            TokenError::Unavailable(format!("the token endpoint {endpoint} answered with no usable tokens ({error})"))
        })?;
        if !answer.token_type.eq_ignore_ascii_case("Bearer") {
            return Err(TokenError::Unavailable(format!(
                "the token endpoint {endpoint} issued a {:?} token; prom connect sends Bearer tokens only",
                answer.token_type
            )));
        }
        return Ok(Issued {
            access_token: answer.access_token,
            refresh_token: answer.refresh_token,
            expires_in: answer.expires_in.unwrap_or(DEFAULT_EXPIRES_IN),
        });
    }
    match serde_json::from_str::<ErrorAnswer>(text) {
        Ok(answer) if status.is_client_error() => {
            Err(TokenError::Refused { error: answer.error, description: answer.error_description })
        }
        _ => Err(TokenError::Unavailable(format!("the token endpoint {endpoint} answered HTTP {status}"))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use reqwest::StatusCode;

    use super::*;

    fn endpoint() -> Url {
        Url::parse("http://127.0.0.1:1/oauth/token").unwrap()
    }

    #[test]
    fn reads_tokens_and_rfc6749_errors() {
        let ok = r#"{"access_token":"prom_at_a","token_type":"Bearer","expires_in":60,"refresh_token":"prom_rt_b","scope":"agent:connect"}"#;
        let issued = read_answer(StatusCode::OK, ok, &endpoint()).unwrap();
        assert_eq!(issued.access_token.expose_secret(), "prom_at_a");
        assert_eq!(issued.refresh_token.unwrap().expose_secret(), "prom_rt_b");
        assert_eq!(issued.expires_in, 60);

        let no_expiry = r#"{"access_token":"a","token_type":"bearer"}"#;
        assert_eq!(read_answer(StatusCode::OK, no_expiry, &endpoint()).unwrap().expires_in, DEFAULT_EXPIRES_IN);

        let mac = r#"{"access_token":"a","token_type":"mac"}"#;
        assert!(matches!(read_answer(StatusCode::OK, mac, &endpoint()), Err(TokenError::Unavailable(_))));

        let refused = r#"{"error":"invalid_grant","error_description":"this permission was revoked"}"#;
        let error = read_answer(StatusCode::BAD_REQUEST, refused, &endpoint()).unwrap_err();
        assert!(matches!(&error, TokenError::Refused { error, .. } if error == "invalid_grant"));
        assert_eq!(error.to_string(), "invalid_grant: this permission was revoked");

        let outage = read_answer(StatusCode::BAD_GATEWAY, "<html>", &endpoint()).unwrap_err();
        assert!(matches!(outage, TokenError::Unavailable(_)), "{outage}");
    }

    #[test]
    fn tokens_never_show_in_debug_output() {
        let ok = r#"{"access_token":"prom_at_a","token_type":"Bearer","refresh_token":"prom_rt_b"}"#;
        let shown = format!("{:?}", read_answer(StatusCode::OK, ok, &endpoint()).unwrap());
        assert!(!shown.contains("prom_at_a") && !shown.contains("prom_rt_b"), "{shown}");
    }
}
