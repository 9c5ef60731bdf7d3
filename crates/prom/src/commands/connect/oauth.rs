//! `prom connect URL` without an agent key: the browser sign-in of the MCP authorization spec,
//! as a public native client (docs/OAUTH.md describes the server's side).
//!
//! In order: tokens stored by an earlier run for this URL (refreshed if they are about to
//! expire); else discovery from the URL ([`discovery`]), a loopback callback, registration, the
//! browser and the code exchange ([`flow`]); then the tokens are stored ([`stored`], 0600) and
//! kept fresh while the bridge runs ([`live`], [`bearer_client`]).
//!
//! Every failure is a [`Failure`]: a code word first, then what happened and what to do. No
//! token or code is ever printed or logged.

mod bearer_client;
mod callback;
mod discovery;
mod flow;
mod live;
mod stored;
mod token;

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::ACCEPT;
use secrecy::ExposeSecret;

pub(super) use self::bearer_client::BearerClient;
pub(super) use self::live::LiveToken;
use self::live::RefreshError;
use self::stored::{StateFile, Stored};
use super::PROBE_TIMEOUT;
use super::bridge::with_causes;
use crate::commands::EXIT_USAGE;

/// The scope `prom connect` asks for: calling one service's tools.
const SCOPE: &str = "agent:connect";

/// Stored tokens with less than this left are refreshed before the bridge starts.
const FRESH_ENOUGH: Duration = Duration::from_secs(60);

/// Upper bound on each request of the sign-in (discovery, registration, tokens).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why `prom connect` could not get a token: printed as `CODE: message`, then it exits with `exit`.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) code: &'static str,
    pub(super) message: String,
    pub(super) exit: u8,
}

impl Failure {
    /// The sign-in started but did not finish.
    fn sign_in(message: String) -> Self {
        Self { code: "SIGN_IN_FAILED", message, exit: 1 }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// A token for `mcp_url`, and the file that keeps it.
#[derive(Debug)]
pub(super) struct SignedIn {
    pub(super) token: LiveToken,
    file: Option<StateFile>,
}

impl SignedIn {
    /// Forgets the stored sign-in after the gateway refused its token (the person revoked it on
    /// the Connected apps page, or it expired): the next run signs in again.
    pub(super) fn forget(&self) -> Option<String> {
        let file = self.file.as_ref()?;
        file.remove();
        Some(file.path().display().to_string())
    }
}

/// Gets an access token for `mcp_url`: stored, refreshed, or from a sign-in in the browser.
pub(super) async fn sign_in(mcp_url: &Url) -> Result<SignedIn, Failure> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("prom-connect/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| Failure::sign_in(format!("cannot start an HTTP client ({error})")))?;
    let file = StateFile::for_url(mcp_url.as_str());
    if file.is_none() {
        eprintln!(
            "prom connect finds no config directory to keep the sign-in in, so the next run will ask again; \
             set PROM_CONNECT_STATE_DIR to a directory to keep it."
        );
    }

    let stored = stored_sign_in(&http, file.as_ref(), mcp_url).await?;
    let stored = match stored {
        Some(stored) => stored,
        None => {
            let endpoints = discovery::discover(&http, mcp_url).await.map_err(|why| Failure {
                code: "TOKEN_MISSING",
                message: format!(
                    "no agent key in PROMETHEUS_API_KEY or AGENT_TOKEN, and signing in through the browser cannot \
                     start: {why}. Check the URL and that the server is running, or set PROMETHEUS_API_KEY (or \
                     AGENT_TOKEN) to a Prometheus API key in the environment that starts `prom connect` (mint \
                     one with `prom keys create --label my-agent`)."
                ),
                exit: EXIT_USAGE,
            })?;
            let stored = flow::authorize(&http, mcp_url, &endpoints).await?;
            let kept = match &file {
                Some(file) => match file.save(&stored) {
                    Ok(()) => format!("; the sign-in is kept in {}", file.path().display()),
                    Err(error) => format!(
                        "; the sign-in could not be kept in {} ({error}), so the next run will ask again",
                        file.path().display()
                    ),
                },
                None => String::new(),
            };
            eprintln!("Connected to {mcp_url}{kept}.");
            stored
        }
    };
    let token = live::keep_fresh(http, file.clone(), stored);
    Ok(SignedIn { token, file })
}

/// The stored sign-in for `mcp_url`, refreshed when its access token is about to expire or the
/// gateway no longer takes it; `None` when there is none, or it no longer works.
async fn stored_sign_in(
    http: &reqwest::Client,
    file: Option<&StateFile>,
    mcp_url: &Url,
) -> Result<Option<Stored>, Failure> {
    let Some(current) = file.and_then(|file| file.load(mcp_url.as_str())) else {
        return Ok(None);
    };
    if current.remaining() > FRESH_ENOUGH && !refused_by_gateway(http, mcp_url, &current).await {
        return Ok(Some(current));
    }
    match live::refresh(http, file, &current).await {
        Ok(next) => Ok(Some(next)),
        Err(RefreshError::Refused(why)) => {
            eprintln!("The stored sign-in for {mcp_url} no longer works ({why}); signing in again.");
            Ok(None)
        }
        Err(RefreshError::Unavailable(why)) => Err(Failure {
            code: "SIGN_IN_FAILED",
            message: format!(
                "the stored sign-in for {mcp_url} needs refreshing, and that failed ({why}). Is the server \
                 running? Run the agent again once it is."
            ),
            exit: 1,
        }),
    }
}

/// Whether the gateway refuses a stored access token that has not expired: the person revoked
/// the permission on the Connected apps page, say. One `GET /v1/whoami` on the issuer (which
/// authenticates the token exactly as the gateway does, without reaching the upstream); any
/// answer but `401` counts as accepted (the bridge reports other trouble in its own words).
/// Without it, a revoked sign-in would fail the first run after it and ask only on the next.
async fn refused_by_gateway(http: &reqwest::Client, mcp_url: &Url, stored: &Stored) -> bool {
    let whoami = format!("{}/v1/whoami", stored.issuer.trim_end_matches('/'));
    let target = Url::parse(&whoami).unwrap_or_else(|_| mcp_url.clone());
    let request = http.get(target).header(ACCEPT, "application/json").bearer_auth(stored.access_token.expose_secret());
    match tokio::time::timeout(PROBE_TIMEOUT, request.send()).await {
        Ok(Ok(response)) => response.status() == reqwest::StatusCode::UNAUTHORIZED,
        _ => false,
    }
}
