//! Finding the authorization server from the MCP URL alone, as the MCP authorization spec has
//! clients do: a request without a credential is answered `401` with a `WWW-Authenticate`
//! challenge naming the protected resource metadata (RFC 9728), which names the authorization
//! server, whose metadata (RFC 8414) names the endpoints.
//!
//! Every document is checked against the one before it (the resource against the URL we were
//! given, the issuer against the one the resource named), so that a document served from one
//! place cannot send the person's sign-in somewhere else.

use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE, WWW_AUTHENTICATE};
use serde::Deserialize;
use serde_json::json;

/// What discovery found: the resource to ask for and the endpoints to ask at.
#[derive(Debug, Clone)]
pub(super) struct Endpoints {
    /// The protected resource, as its metadata names it (sent as `resource`, RFC 8707).
    pub resource: String,
    pub issuer: String,
    pub authorization: Url,
    pub token: Url,
    pub registration: Url,
    /// The server sends `iss` with every authorization response (RFC 9207), so one without it
    /// is not to be trusted.
    pub iss_parameter: bool,
}

#[derive(Deserialize)]
struct ResourceMetadata {
    resource: String,
    #[serde(default)]
    authorization_servers: Vec<String>,
}

#[derive(Deserialize)]
struct ServerMetadata {
    issuer: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    registration_endpoint: Option<String>,
    #[serde(default)]
    code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

/// Runs discovery for `mcp_url`. The error says, in a sentence, which step failed and why.
pub(super) async fn discover(http: &reqwest::Client, mcp_url: &Url) -> Result<Endpoints, String> {
    let metadata_url = challenge(http, mcp_url).await?;
    let resource: ResourceMetadata = fetch_json(http, &metadata_url, "its protected resource metadata").await?;
    if !same_resource(&resource.resource, mcp_url) {
        return Err(format!(
            "its protected resource metadata ({metadata_url}) is for {}, not for {mcp_url}: use that URL, or ask the \
             operator to set the server's public URL",
            resource.resource
        ));
    }
    let issuer = resource
        .authorization_servers
        .first()
        .ok_or_else(|| format!("its protected resource metadata ({metadata_url}) names no authorization server"))?
        .clone();
    let metadata_url = server_metadata_url(&issuer)?;
    let server: ServerMetadata = fetch_json(http, &metadata_url, "the authorization server's metadata").await?;
    if server.issuer != issuer {
        return Err(format!(
            "the authorization server's metadata ({metadata_url}) names the issuer {:?}, not {issuer:?}",
            server.issuer
        ));
    }
    if !server.code_challenge_methods_supported.iter().any(|method| method == "S256") {
        return Err(format!("the authorization server {issuer} does not say it supports PKCE with S256"));
    }
    let endpoint = |value: Option<String>, name: &str| -> Result<Url, String> {
        let value = value.ok_or_else(|| format!("the authorization server {issuer} has no {name}"))?;
        match Url::parse(&value) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(url),
            _ => Err(format!("the {name} of {issuer} is not an HTTP URL: {value:?}")),
        }
    };
    Ok(Endpoints {
        resource: resource.resource,
        authorization: endpoint(server.authorization_endpoint, "authorization endpoint")?,
        token: endpoint(server.token_endpoint, "token endpoint")?,
        registration: endpoint(
            server.registration_endpoint,
            "registration endpoint (prom connect registers itself there)",
        )?,
        iss_parameter: server.authorization_response_iss_parameter_supported,
        issuer,
    })
}

/// Sends the MCP `initialize` a client starts with, without a credential, and reads the
/// `resource_metadata` of the challenge that refuses it.
async fn challenge(http: &reqwest::Client, mcp_url: &Url) -> Result<Url, String> {
    let initialize = json!({
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "prom connect", "version": env!("CARGO_PKG_VERSION")},
        },
    });
    let response = http
        .post(mcp_url.clone())
        .header(ACCEPT, "application/json, text/event-stream")
        .header(CONTENT_TYPE, "application/json")
        .body(initialize.to_string())
        .send()
        .await
        .map_err(|error| format!("cannot reach {mcp_url}: {}", super::with_causes(&error)))?;
    let status = response.status();
    if status != reqwest::StatusCode::UNAUTHORIZED {
        return Err(format!(
            "{mcp_url} answered HTTP {status} to a request without a credential, where an MCP server that \
             offers sign-in answers 401 with a challenge"
        ));
    }
    let metadata = response
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| bearer_param(value, "resource_metadata"))
        .ok_or_else(|| format!("{mcp_url} refused the request without naming its resource metadata (RFC 9728)"))?;
    Url::parse(&metadata).map_err(|error| format!("{mcp_url} named resource metadata that is not a URL ({error})"))
}

async fn fetch_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &Url,
    what: &str,
) -> Result<T, String> {
    let response = http
        .get(url.clone())
        .header(ACCEPT, "application/json")
        .send()
        .await
        .map_err(|error| format!("cannot fetch {what} at {url}: {}", super::with_causes(&error)))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let said = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|body| body.pointer("/error/message").and_then(|m| m.as_str()).map(str::to_owned))
            .map(|message| format!(": {message}"))
            .unwrap_or_default();
        return Err(format!("{what} at {url} answered HTTP {status}{said}"));
    }
    response.json::<T>().await.map_err(|error| format!("{what} at {url} is not what RFC 9728/8414 describe ({error})"))
}

/// Whether the resource metadata describes the URL we were given (RFC 9728 §3.3), ignoring a
/// trailing slash.
fn same_resource(resource: &str, mcp_url: &Url) -> bool {
    resource.trim_end_matches('/') == mcp_url.as_str().trim_end_matches('/')
}

/// Where an issuer's metadata is (RFC 8414 §3.1): the well-known path, with the issuer's own
/// path, if it has one, after it.
fn server_metadata_url(issuer: &str) -> Result<Url, String> {
    let mut url = Url::parse(issuer).map_err(|_| format!("the authorization server {issuer:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.query().is_some() || url.fragment().is_some() {
        return Err(format!("the authorization server {issuer:?} is not an issuer URL (RFC 8414)"));
    }
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    Ok(url)
}

/// The value of `name` in a `Bearer` challenge: `Bearer a="x", b=y` (RFC 9110 §11.2, with the
/// quoted-string escapes). Challenges of other schemes in the same header are skipped.
fn bearer_param(header: &str, name: &str) -> Option<String> {
    let mut rest = header.trim_start();
    let mut in_bearer = false;
    while !rest.is_empty() {
        let token_end = rest.find(|c: char| c == '=' || c == ',' || c.is_whitespace()).unwrap_or(rest.len());
        let (token, after) = rest.split_at(token_end);
        let after = after.trim_start();
        if let Some(value_part) = after.strip_prefix('=') {
            // An auth-param: token = token / quoted-string.
            let value_part = value_part.trim_start();
            let (value, remainder) = match value_part.strip_prefix('"') {
                Some(quoted) => read_quoted(quoted)?,
                None => {
                    let end = value_part.find(|c: char| c == ',' || c.is_whitespace()).unwrap_or(value_part.len());
                    (value_part[..end].to_owned(), &value_part[end..])
                }
            };
            if in_bearer && token.eq_ignore_ascii_case(name) {
                return Some(value);
            }
            rest = remainder.trim_start().trim_start_matches(',').trim_start();
        } else if token.is_empty() {
            rest = after.trim_start_matches(',').trim_start();
        } else {
            // A scheme name starts a new challenge.
            in_bearer = token.eq_ignore_ascii_case("Bearer");
            rest = after.trim_start_matches(',').trim_start();
        }
    }
    None
}

/// A quoted-string's value (after its opening quote) and what follows its closing quote.
fn read_quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '\\' => value.push(chars.next()?.1),
            '"' => return Some((value, &text[index + 1..])),
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn reads_resource_metadata_from_the_bearer_challenge() {
        let header = r#"Bearer resource_metadata="http://h:1/.well-known/oauth-protected-resource/mcp/demo", scope="agent:connect""#;
        assert_eq!(
            bearer_param(header, "resource_metadata").as_deref(),
            Some("http://h:1/.well-known/oauth-protected-resource/mcp/demo")
        );
        assert_eq!(bearer_param(header, "scope").as_deref(), Some("agent:connect"));
        assert_eq!(bearer_param(r#"Bearer realm=x,scope="a \"b\"""#, "scope").as_deref(), Some(r#"a "b""#));
        assert_eq!(
            bearer_param(r#"bearer RESOURCE_METADATA=http://x/m"#, "resource_metadata").as_deref(),
            Some("http://x/m")
        );
        // Another scheme's parameter of the same name is not the Bearer one.
        let mixed = r#"Basic resource_metadata="http://evil/m", Bearer scope="s", resource_metadata="http://x/m""#;
        assert_eq!(bearer_param(mixed, "resource_metadata").as_deref(), Some("http://x/m"));
        assert_eq!(bearer_param(r#"Basic resource_metadata="http://evil/m""#, "resource_metadata"), None);
        assert_eq!(bearer_param("Bearer", "resource_metadata"), None);
        assert_eq!(bearer_param(r#"Bearer resource_metadata="unterminated"#, "resource_metadata"), None);
    }

    #[test]
    fn the_server_metadata_address_inserts_the_issuer_path() {
        assert_eq!(
            server_metadata_url("http://127.0.0.1:7070").unwrap().as_str(),
            "http://127.0.0.1:7070/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            server_metadata_url("https://h.example/tenant1/").unwrap().as_str(),
            "https://h.example/.well-known/oauth-authorization-server/tenant1"
        );
        assert!(server_metadata_url("ftp://h").is_err());
        assert!(server_metadata_url("https://h/?q=1").is_err());
    }

    #[test]
    fn the_resource_must_be_the_url_we_were_given() {
        let url = Url::parse("http://127.0.0.1:7070/mcp/demo").unwrap();
        assert!(same_resource("http://127.0.0.1:7070/mcp/demo", &url));
        assert!(same_resource("http://127.0.0.1:7070/mcp/demo/", &url));
        assert!(!same_resource("http://127.0.0.1:7070/mcp/other", &url));
        assert!(!same_resource("http://evil.example/mcp/demo", &url));
    }
}
