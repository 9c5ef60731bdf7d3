//! `prom connect URL`: the stdio MCP server that MCP hosts (Claude Desktop, Cursor, …) start as a
//! command, forwarding everything to a gateway endpoint over MCP Streamable HTTP with the agent's
//! credential: an API key from the environment, or else an access token from a sign-in in the
//! browser ([`oauth`]).
//!
//! Here: the key (from `PROMETHEUS_API_KEY` or `AGENT_TOKEN`), what the user reads when a credential
//! is missing or refused, and how the process ends; the forwarding itself is in [`bridge`].

mod bridge;
mod oauth;

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderName, HeaderValue};
use rmcp::RoleServer;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tracing_subscriber::EnvFilter;

use self::bridge::{Bridge, Ending, HostTransport};
use self::oauth::{BearerClient, LiveToken};
use super::EXIT_USAGE;
use crate::cli::{ConnectArgs, KeyHeader};

/// Where the agent key is read from, in this order; an empty value counts as unset.
const KEY_VARIABLES: [&str; 2] = ["PROMETHEUS_API_KEY", "AGENT_TOKEN"];

/// Upper bound on the request that asks the gateway why a message was refused.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(args: ConnectArgs) -> anyhow::Result<()> {
    let url = args.url;
    let Some(key) = AgentKey::from_env() else {
        return run_signed_in(url).await;
    };
    // Before anything else, standard input included: a host shows this line to the user.
    let Some(credential) = key.header(args.key_header) else {
        eprintln!(
            "TOKEN_INVALID: the value of {} cannot be sent in an HTTP header (it has spaces or control \
             characters). Paste the key exactly as `prom keys create` printed it.",
            key.variable
        );
        exit_now(EXIT_USAGE);
    };
    init_logging();
    tracing::info!(%url, variable = key.variable, "forwarding stdio to the gateway");

    let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
    config = match args.key_header {
        KeyHeader::Bearer => config.auth_header(key.secret.expose_secret()),
        KeyHeader::XApiKey => config.custom_headers(HashMap::from([credential.clone()])),
    };
    let gateway = StreamableHttpClientTransport::from_config(config);
    let probe = Probe::new(url.clone(), Credential::Key(credential))?;
    let ending = Bridge::new(host_transport(), gateway, probe).run().await;
    finish(ending, &url, |refusal| {
        eprintln!(
            "The gateway at {url} refused the key in {} (HTTP {}). Check that it is a current key: \
             `prom keys list` shows revoked and expired ones; mint a new one with `prom keys create`, \
             put it in {} in your MCP host's configuration, and restart the host.",
            key.variable, refusal.status, key.variable
        );
    })
}

/// No key in the environment: sign in through the browser (or use the tokens of an earlier
/// sign-in) and forward with the access token, which is renewed while the bridge runs. The
/// token always goes as `Authorization: Bearer` (`--key-header` is about keys).
async fn run_signed_in(url: Url) -> anyhow::Result<()> {
    init_logging();
    let signed_in = match oauth::sign_in(&url).await {
        Ok(signed_in) => signed_in,
        Err(failure) => {
            eprintln!("{failure}");
            exit_now(failure.exit);
        }
    };
    tracing::info!(%url, "forwarding stdio to the gateway with the access token of a browser sign-in");
    let client = BearerClient::new(signed_in.token.clone())?;
    let config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
    let gateway = StreamableHttpClientTransport::with_client(client, config);
    let probe = Probe::new(url.clone(), Credential::Token(signed_in.token.clone()))?;
    let ending = Bridge::new(host_transport(), gateway, probe).run().await;
    finish(ending, &url, |refusal| {
        let forgotten =
            signed_in.forget().map(|path| format!(" The stored sign-in ({path}) was removed.")).unwrap_or_default();
        eprintln!(
            "The gateway at {url} refused the access token of the browser sign-in (HTTP {}): the permission \
             may have been revoked on the dashboard's Connected apps page, or it expired.{forgotten} Restart \
             the agent (or its MCP host) to sign in again.",
            refusal.status
        );
    })
}

/// The host's side: our standard input and output.
fn host_transport() -> HostTransport {
    let (stdin, stdout) = rmcp::transport::stdio_pipes();
    AsyncRwTransport::<RoleServer, _, _>::new_server(stdin, stdout)
}

/// Ends the process as `ending` says; `explain_refusal` adds what to do about a refused credential.
fn finish(ending: Ending, url: &Url, explain_refusal: impl FnOnce(&Refusal)) -> anyhow::Result<()> {
    match ending {
        Ending::HostClosed => Ok(()),
        Ending::Terminated => exit_now(0),
        Ending::KeyRefused(refusal) => {
            eprintln!("{}: {}", refusal.code, refusal.message);
            explain_refusal(&refusal);
            exit_now(EXIT_USAGE)
        }
        Ending::GatewayClosed(cause) => {
            let cause = cause.unwrap_or_else(|| "set PROM_LOG=rmcp=debug to see why".to_owned());
            eprintln!(
                "error: the connection to the gateway at {url} ended ({cause}). Is the server running, \
                 and is this the MCP endpoint of a service?"
            );
            exit_now(1)
        }
    }
}

/// Ends the process without waiting for the runtime. A read of standard input may still be pending
/// on a blocking thread (Node-based hosts hand us a socket, not a pipe, and only pipes can be read
/// without one), and the runtime's shutdown would wait for it, while the host waits for us to exit.
fn exit_now(code: u8) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(i32::from(code))
}

/// Standard output carries MCP, so every log line goes to standard error.
fn init_logging() {
    // rmcp's transport worker logs why it stopped as an error; the user gets that reason from us,
    // in the words of the failure (TOKEN_INVALID: …, connection refused, …), not twice.
    let filter =
        EnvFilter::try_from_env("PROM_LOG").unwrap_or_else(|_| EnvFilter::new("warn,rmcp::transport::worker=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// The agent key and the variable it came from (named in messages; the key never is).
struct AgentKey {
    variable: &'static str,
    secret: SecretString,
}

impl AgentKey {
    fn from_env() -> Option<Self> {
        KEY_VARIABLES.into_iter().find_map(|variable| {
            let value = std::env::var(variable).ok()?;
            let value = value.trim();
            (!value.is_empty()).then(|| Self { variable, secret: SecretString::from(value) })
        })
    }

    /// The header that carries the key, marked sensitive so that it is never logged.
    fn header(&self, kind: KeyHeader) -> Option<(HeaderName, HeaderValue)> {
        let (name, value) = match kind {
            KeyHeader::Bearer => (AUTHORIZATION, format!("Bearer {}", self.secret.expose_secret())),
            KeyHeader::XApiKey => (HeaderName::from_static("x-api-key"), self.secret.expose_secret().to_owned()),
        };
        let mut value = HeaderValue::from_str(&value).ok()?;
        value.set_sensitive(true);
        Some((name, value))
    }
}

/// The gateway's refusal of the key, as its `{"error":{"code","message"}}` body says.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) status: u16,
    pub(super) code: String,
    pub(super) message: String,
}

/// The credential the probe sends: the key's header, or the current access token.
enum Credential {
    Key((HeaderName, HeaderValue)),
    Token(LiveToken),
}

impl Credential {
    fn header(&self) -> Option<(HeaderName, HeaderValue)> {
        match self {
            Self::Key(header) => Some(header.clone()),
            Self::Token(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.current().expose_secret())).ok()?;
                value.set_sensitive(true);
                Some((AUTHORIZATION, value))
            }
        }
    }
}

/// Asks the gateway why a message could not be delivered. rmcp reports an HTTP 401 either with the
/// `WWW-Authenticate` challenge alone or with the body inside an error string, so rather than parse
/// its error text, one GET with the same credential reads the gateway's own JSON error.
pub(super) struct Probe {
    http: reqwest::Client,
    url: reqwest::Url,
    credential: Credential,
}

impl Probe {
    fn new(url: Url, credential: Credential) -> reqwest::Result<Self> {
        // Like rmcp's own client, it follows no redirect: the credential would go along to wherever it points.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("prom-connect/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, url, credential })
    }

    pub(super) async fn refusal(&self) -> Option<Refusal> {
        let (name, value) = self.credential.header()?;
        let request = self.http.get(self.url.clone()).header(ACCEPT, "text/event-stream").header(name, value);
        let response = match tokio::time::timeout(PROBE_TIMEOUT, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                tracing::debug!(error = %error, "the gateway did not answer the probe");
                return None;
            }
            Err(_) => return None,
        };
        // Only a 401 is about the key itself; anything else the request's own error reports.
        let status = response.status();
        if status != reqwest::StatusCode::UNAUTHORIZED {
            return None;
        }
        let body = tokio::time::timeout(PROBE_TIMEOUT, response.json::<Value>()).await.ok()?.unwrap_or_default();
        let field = |name: &str| body.pointer(&format!("/error/{name}")).and_then(Value::as_str).map(str::to_owned);
        Some(Refusal {
            status: status.as_u16(),
            code: field("code").unwrap_or_else(|| "TOKEN_INVALID".to_owned()),
            message: field("message").unwrap_or_else(|| format!("the gateway answered {status}")),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_key_header_is_sensitive_and_names_the_variable_only() {
        let key = AgentKey { variable: "AGENT_TOKEN", secret: SecretString::from("prom_test_abc") };
        let (name, value) = key.header(KeyHeader::Bearer).unwrap();
        assert_eq!((name.as_str(), value.to_str().unwrap()), ("authorization", "Bearer prom_test_abc"));
        assert!(value.is_sensitive());
        let (name, value) = key.header(KeyHeader::XApiKey).unwrap();
        assert_eq!((name.as_str(), value.to_str().unwrap()), ("x-api-key", "prom_test_abc"));
        let broken = AgentKey { variable: "PROMETHEUS_API_KEY", secret: SecretString::from("prom_test_\nabc") };
        assert!(broken.header(KeyHeader::XApiKey).is_none());
    }
}
