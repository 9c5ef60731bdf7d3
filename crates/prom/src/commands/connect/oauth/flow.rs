//! The browser sign-in itself, as a public native client (RFC 8252, OAuth 2.1): listen on a
//! loopback port, register that redirect (RFC 7591), send the person to the authorization
//! endpoint with a PKCE challenge (RFC 7636), wait for the browser to come back, and redeem the
//! code.

use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::callback::{Callback, Expected, Outcome};
use super::discovery::Endpoints;
use super::stored::{Stored, now_secs};
use super::token::{CodeExchange, redeem_code};
use super::{Failure, SCOPE};
use crate::commands::EXIT_USAGE;

/// How long the person has to finish in the browser.
const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Skips opening a browser: the URL is only printed (headless machines, tests).
const NO_BROWSER_VARIABLE: &str = "PROM_CONNECT_NO_BROWSER";

/// A PKCE pair: the verifier stays here, the challenge goes to the browser.
pub(super) struct Pkce {
    pub verifier: SecretString,
    pub challenge: String,
}

impl Pkce {
    /// 32 random bytes as the verifier (43 characters), its SHA-256 as the challenge (S256).
    pub(super) fn new() -> Self {
        let verifier = random_text(32);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Self { verifier: SecretString::from(verifier), challenge }
    }
}

fn random_text(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    prom_core::os_random(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// Signs in through the browser and returns the tokens to store.
pub(super) async fn authorize(http: &reqwest::Client, mcp_url: &Url, endpoints: &Endpoints) -> Result<Stored, Failure> {
    let state = random_text(16);
    let expected =
        Expected { state: state.clone(), issuer: endpoints.issuer.clone(), iss_required: endpoints.iss_parameter };
    let callback = Callback::bind(expected).await.map_err(|error| {
        Failure::sign_in(format!("cannot listen on a loopback port for the browser to come back to ({error})"))
    })?;
    let redirect_uri = callback.redirect_uri();
    let client_id = register(http, endpoints, &redirect_uri).await?;
    let pkce = Pkce::new();
    let url = authorization_url(endpoints, &client_id, &redirect_uri, &pkce, &state);
    // Standard output is the MCP channel: the person reads this line in the host's log, or in
    // the terminal that started us.
    eprintln!("Open this URL to connect: {url}");
    open_browser(&url);

    let code = match callback.wait(SIGN_IN_TIMEOUT).await {
        Some(Outcome::Code(code)) => code,
        Some(Outcome::Denied(description)) => {
            let said = if description.is_empty() { "access_denied".to_owned() } else { description };
            return Err(Failure {
                code: "ACCESS_DENIED",
                message: format!(
                    "the connection was not allowed in the browser ({said}); run the agent again to retry"
                ),
                exit: EXIT_USAGE,
            });
        }
        Some(Outcome::Error { error, description }) => {
            return Err(Failure::sign_in(format!(
                "the authorization server {} answered {error}{}; run the agent again to retry",
                endpoints.issuer,
                if description.is_empty() { String::new() } else { format!(": {description}") }
            )));
        }
        Some(Outcome::WrongIssuer(iss)) => {
            return Err(Failure::sign_in(format!(
                "the browser came back with an answer from {}, not from {}, so it was not used (RFC 9207); \
                 run the agent again, and sign in only on the page its link opens",
                iss.as_deref().unwrap_or("an unnamed server"),
                endpoints.issuer
            )));
        }
        None => {
            return Err(Failure {
                code: "SIGN_IN_TIMEOUT",
                message: format!(
                    "nobody finished signing in within {} minutes; run the agent again for a new link",
                    SIGN_IN_TIMEOUT.as_secs() / 60
                ),
                exit: 1,
            });
        }
    };

    let exchange = CodeExchange {
        code: &code,
        redirect_uri: &redirect_uri,
        client_id: &client_id,
        code_verifier: &pkce.verifier,
        resource: &endpoints.resource,
    };
    let issued = redeem_code(http, &endpoints.token, &exchange).await.map_err(|error| {
        Failure::sign_in(format!(
            "the sign-in worked, but its code could not be exchanged for a token ({error}); run the agent again"
        ))
    })?;
    Ok(Stored {
        mcp_url: mcp_url.to_string(),
        issuer: endpoints.issuer.clone(),
        resource: endpoints.resource.clone(),
        client_id,
        redirect_uri,
        token_endpoint: endpoints.token.to_string(),
        access_token: issued.access_token,
        refresh_token: issued.refresh_token,
        expires_at: now_secs().saturating_add(issued.expires_in),
    })
}

#[derive(Deserialize)]
struct Registered {
    client_id: String,
}

/// Dynamic client registration: a public client with this run's loopback redirect.
async fn register(http: &reqwest::Client, endpoints: &Endpoints, redirect_uri: &str) -> Result<String, Failure> {
    let metadata = json!({
        "client_name": "prom connect",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    });
    let endpoint = &endpoints.registration;
    let failed = |why: String| Failure::sign_in(format!("cannot register prom connect at {endpoint}: {why}"));
    let response = http
        .post(endpoint.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json")
        .body(metadata.to_string())
        .send()
        .await
        .map_err(|error| failed(super::with_causes(&error)))?;
    let status = response.status();
    let body = response.text().await.map_err(|error| failed(super::with_causes(&error)))?;
    if !status.is_success() {
        let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let field = |name: &str| value.get(name).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        return Err(failed(format!("HTTP {status} {} {}", field("error"), field("error_description"))));
    }
    let registered: Registered =
        serde_json::from_str(&body).map_err(|error| failed(format!("the answer has no client_id ({error})")))?;
    Ok(registered.client_id)
}

fn authorization_url(endpoints: &Endpoints, client_id: &str, redirect_uri: &str, pkce: &Pkce, state: &str) -> Url {
    let mut url = endpoints.authorization.clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", state)
        .append_pair("resource", &endpoints.resource)
        .append_pair("scope", SCOPE);
    url
}

/// Opens `url` in the person's browser: `$BROWSER`, else the desktop's opener. The URL is
/// already printed, so a failure here only adds a hint. The opener's output is discarded:
/// standard output is the MCP channel.
fn open_browser(url: &Url) {
    if std::env::var(NO_BROWSER_VARIABLE).is_ok_and(|value| !value.is_empty() && value != "0") {
        return;
    }
    let program = match std::env::var("BROWSER") {
        Ok(browser) if !browser.trim().is_empty() => browser,
        _ if cfg!(target_os = "macos") => "open".to_owned(),
        _ if cfg!(unix) => "xdg-open".to_owned(),
        _ => {
            eprintln!("(prom connect cannot open a browser here: open the URL above yourself)");
            return;
        }
    };
    let spawned = tokio::process::Command::new(&program)
        .arg(url.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(mut child) => {
            tokio::spawn(async move {
                match child.wait().await {
                    Ok(status) if status.success() => {}
                    _ => eprintln!("({program} could not open a browser: open the URL above yourself)"),
                }
            });
        }
        Err(error) => eprintln!("(cannot run {program} to open a browser ({error}): open the URL above yourself)"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn pkce_is_s256_of_a_43_character_verifier() {
        let pkce = Pkce::new();
        let verifier = pkce.verifier.expose_secret();
        assert_eq!(verifier.len(), 43);
        assert!(verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(pkce.challenge, URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())));
        assert_ne!(Pkce::new().challenge, pkce.challenge);
        // RFC 7636 appendix B.
        let known = URL_SAFE_NO_PAD.encode(Sha256::digest(b"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
        assert_eq!(known, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn the_authorization_url_carries_every_parameter() {
        let base = Url::parse("http://127.0.0.1:7070").unwrap();
        let endpoints = Endpoints {
            resource: "http://127.0.0.1:7070/mcp/demo".into(),
            issuer: "http://127.0.0.1:7070".into(),
            authorization: base.join("/oauth/authorize").unwrap(),
            token: base.join("/oauth/token").unwrap(),
            registration: base.join("/oauth/register").unwrap(),
            iss_parameter: true,
        };
        let pkce = Pkce::new();
        let url = authorization_url(&endpoints, "c1", "http://127.0.0.1:5/callback", &pkce, "st");
        let pairs: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(url.path(), "/oauth/authorize");
        assert_eq!(pairs["response_type"], "code");
        assert_eq!(pairs["client_id"], "c1");
        assert_eq!(pairs["redirect_uri"], "http://127.0.0.1:5/callback");
        assert_eq!(pairs["code_challenge"], pkce.challenge);
        assert_eq!(pairs["code_challenge_method"], "S256");
        assert_eq!(pairs["state"], "st");
        assert_eq!(pairs["resource"], "http://127.0.0.1:7070/mcp/demo");
        assert_eq!(pairs["scope"], "agent:connect");
        assert!(!url.as_str().contains(pkce.verifier.expose_secret()));
    }
}
