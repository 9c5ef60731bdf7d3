//! Who a client is: registered dynamically (RFC 7591), described by a client ID metadata document
//! at the `https` URL that is its id, or configured by the operator. And where it may be sent
//! back to: a registered redirect URI exactly, except that a loopback one may use any port
//! (RFC 8252 §7.3: native apps listen on whatever port is free).
//!
//! A metadata document is untrusted input fetched from wherever its URL points, so it is fetched
//! with the gateway's egress-checked client (no loopback or private addresses unless allowed, no
//! redirects), within 5 seconds and 64 KiB, and cached for 10 minutes.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use futures_util::StreamExt;
use prom_core::oauth::{ClientSource, OAuthClient};
use prom_core::time::Timestamp;
use reqwest::Url;
use serde::Deserialize;
use serde_json::json;

use super::{OAuthError, no_store};
use crate::auth::ClientMeta;
use crate::state::AppState;

const DOCUMENT_TIMEOUT: Duration = Duration::from_secs(5);
const DOCUMENT_MAX_BYTES: usize = 64 * 1024;
const DOCUMENT_CACHE: Duration = Duration::from_secs(600);
const MAX_REDIRECT_URIS: usize = 10;
const MAX_NAME_CHARS: usize = 100;
const MAX_URI_CHARS: usize = 2000;

/// Metadata documents fetched recently, by URL.
#[derive(Debug, Default)]
pub struct ClientCache(DashMap<String, (Instant, OAuthClient)>);

/// What a client says about itself: a registration request, or a metadata document.
#[derive(Debug, Deserialize)]
struct ClientMetadata {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    client_uri: Option<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    response_types: Option<Vec<String>>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
}

fn invalid_metadata(description: impl Into<String>) -> OAuthError {
    OAuthError::new("invalid_client_metadata", description)
}

impl ClientMetadata {
    /// Checks what a public client may be, and returns its name and redirect URIs.
    fn check(&self) -> Result<(String, Vec<String>, Option<String>), OAuthError> {
        if let Some(method) = self.token_endpoint_auth_method.as_deref()
            && method != "none"
        {
            return Err(invalid_metadata(format!(
                "token_endpoint_auth_method {method:?} is not supported: clients here are public (\"none\") and \
                 use PKCE"
            )));
        }
        if let Some(grants) = &self.grant_types
            && let Some(other) = grants.iter().find(|g| !matches!(g.as_str(), "authorization_code" | "refresh_token"))
        {
            return Err(invalid_metadata(format!(
                "grant type {other:?} is not supported; use authorization_code and refresh_token"
            )));
        }
        if let Some(types) = &self.response_types
            && types.iter().any(|t| t != "code")
        {
            return Err(invalid_metadata("only the response type \"code\" is supported"));
        }
        if self.redirect_uris.is_empty() || self.redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(OAuthError::new(
                "invalid_redirect_uri",
                format!("give between 1 and {MAX_REDIRECT_URIS} redirect_uris"),
            ));
        }
        for uri in &self.redirect_uris {
            check_redirect_uri(uri)
                .map_err(|why| OAuthError::new("invalid_redirect_uri", format!("{uri:?}: {why}")))?;
        }
        let name = self.client_name.as_deref().map(str::trim).filter(|n| !n.is_empty()).unwrap_or("Unnamed client");
        if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
            return Err(invalid_metadata(format!("client_name must be at most {MAX_NAME_CHARS} printable characters")));
        }
        let client_uri = match self.client_uri.as_deref() {
            Some(uri) if uri.len() <= MAX_URI_CHARS && Url::parse(uri).is_ok_and(|u| u.scheme() == "https") => {
                Some(uri.to_owned())
            }
            Some(_) => return Err(invalid_metadata("client_uri must be an https URL")),
            None => None,
        };
        Ok((name.to_owned(), self.redirect_uris.clone(), client_uri))
    }
}

/// Whether a redirect URI may be registered: `https`, `http` on a loopback address, or a
/// private-use scheme (`com.example.app:/callback`); never with a fragment.
pub fn check_redirect_uri(raw: &str) -> Result<(), &'static str> {
    if raw.len() > MAX_URI_CHARS {
        return Err("too long");
    }
    let url = Url::parse(raw).map_err(|_| "not an absolute URI")?;
    if url.fragment().is_some() {
        return Err("a redirect URI must not have a fragment");
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err("plain http is allowed only on a loopback address (127.0.0.1, [::1], localhost)"),
        "javascript" | "data" | "file" | "vbscript" | "blob" | "about" => Err("this scheme is not allowed"),
        scheme if scheme.contains('.') => Ok(()),
        _ => Err("use https, http on loopback, or a private-use scheme in reverse-domain form"),
    }
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Whether `presented` matches a redirect URI of `client`: exactly, or a loopback one with
/// another port.
pub fn redirect_allowed(client: &OAuthClient, presented: &str) -> bool {
    if client.redirect_uris.iter().any(|uri| uri == presented) {
        return true;
    }
    let Ok(presented) = Url::parse(presented) else { return false };
    if presented.scheme() != "http" || !is_loopback(&presented) {
        return false;
    }
    client.redirect_uris.iter().filter_map(|uri| Url::parse(uri).ok()).any(|mut registered| {
        if registered.scheme() != "http" || !is_loopback(&registered) || registered.host_str() != presented.host_str() {
            return false;
        }
        let _ = registered.set_port(presented.port());
        registered == presented
    })
}

/// `POST /oauth/register`: dynamic client registration for public clients.
pub async fn register(State(state): State<AppState>, meta: ClientMeta, body: axum::body::Bytes) -> Response {
    match register_client(&state, &meta, &body).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn register_client(state: &AppState, meta: &ClientMeta, body: &[u8]) -> Result<Response, OAuthError> {
    if let Err(retry_after) = state.oauth_clients_throttle.take(meta.ip) {
        return Err(OAuthError {
            status: StatusCode::TOO_MANY_REQUESTS,
            error: "temporarily_unavailable",
            description: format!("too many registrations from this address; retry in {retry_after} s"),
        });
    }
    let metadata: ClientMetadata = serde_json::from_slice(body)
        .map_err(|err| invalid_metadata(format!("the registration must be a JSON object of client metadata: {err}")))?;
    let (name, redirect_uris, client_uri) = metadata.check()?;
    let mut id = [0u8; 16];
    crate::fill_random(&mut id);
    let client = OAuthClient {
        id: format!("prc_{}", hex::encode(id)),
        name,
        redirect_uris,
        client_uri,
        source: ClientSource::Registered,
        created_at: Timestamp::now(),
        last_used_at: None,
    };
    state.store.save_client(&client).await?;
    let mut body = json!({
        "client_id": client.id,
        "client_id_issued_at": client.created_at.as_millis() / 1000,
        "client_name": client.name,
        "redirect_uris": client.redirect_uris,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    });
    // An absent field is left out, not null (RFC 7591 §3.2.1): clients validate each one given.
    if let Some(uri) = &client.client_uri {
        body["client_uri"] = json!(uri);
    }
    Ok(no_store((StatusCode::CREATED, axum::Json(body)).into_response()))
}

/// Finds the client `id` names: fetched (or cached) for an `https` URL, stored otherwise.
/// `Err` carries what to show the person: the client cannot be trusted with a redirect.
pub async fn resolve(state: &AppState, id: &str) -> Result<OAuthClient, String> {
    if id.starts_with("https://") {
        return fetch_document(state, id).await;
    }
    if let Some(configured) = state.config.oauth.clients.iter().find(|c| c.client_id == id) {
        return Ok(OAuthClient {
            id: configured.client_id.clone(),
            name: configured.client_name.clone(),
            redirect_uris: configured.redirect_uris.clone(),
            client_uri: None,
            source: ClientSource::Configured,
            created_at: Timestamp::from_millis(0),
            last_used_at: None,
        });
    }
    match state.store.get_client(id).await {
        Ok(Some(client)) => Ok(client),
        Ok(None) => Err(format!(
            "the app asking for access is not known here (client_id {id:?}): it may have been registered too long ago; \
             start the connection again from the app"
        )),
        Err(err) => {
            tracing::error!(error = %err, "cannot read an OAuth client");
            Err("the server could not look up the app; try again".into())
        }
    }
}

async fn fetch_document(state: &AppState, id: &str) -> Result<OAuthClient, String> {
    if let Some(entry) = state.oauth_documents.0.get(id)
        && entry.0.elapsed() < DOCUMENT_CACHE
    {
        return Ok(entry.1.clone());
    }
    let refused = |why: String| format!("the app's metadata document at {id} cannot be used: {why}");
    let url = Url::parse(id).map_err(|_| refused("its client_id is not a URL".into()))?;
    if url.fragment().is_some() || url.path() == "/" || !url.username().is_empty() {
        return Err(refused("a client_id URL needs a path and no fragment or user name".into()));
    }
    state.gateway.egress.check_url(&url).map_err(|why| refused(why.to_string()))?;
    let fetch = async {
        let response = state
            .gateway
            .http()
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|err| format!("it could not be fetched ({})", crate::redact::upstream_error(err)))?;
        if !response.status().is_success() {
            return Err(format!("fetching it answered {}", response.status()));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| "it could not be read".to_owned())?;
            if body.len() + chunk.len() > DOCUMENT_MAX_BYTES {
                return Err(format!("it is larger than {} KiB", DOCUMENT_MAX_BYTES / 1024));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    let body = tokio::time::timeout(DOCUMENT_TIMEOUT, fetch)
        .await
        .map_err(|_| refused(format!("it did not arrive within {} s", DOCUMENT_TIMEOUT.as_secs())))?
        .map_err(refused)?;
    let metadata: ClientMetadata =
        serde_json::from_slice(&body).map_err(|err| refused(format!("it is not client metadata JSON: {err}")))?;
    if metadata.client_id.as_deref() != Some(id) {
        return Err(refused("its client_id is not the URL it was fetched from".into()));
    }
    let (name, redirect_uris, client_uri) = metadata.check().map_err(|err| refused(err.description))?;
    let client = OAuthClient {
        id: id.to_owned(),
        name,
        redirect_uris,
        client_uri,
        source: ClientSource::MetadataDocument,
        created_at: Timestamp::now(),
        last_used_at: None,
    };
    if let Err(err) = state.store.save_client(&client).await {
        tracing::warn!(error = %err, "cannot store a client metadata document");
    }
    if state.oauth_documents.0.len() > 10_000 {
        state.oauth_documents.0.clear();
    }
    state.oauth_documents.0.insert(id.to_owned(), (Instant::now(), client.clone()));
    Ok(client)
}
