//! The HTTP client under rmcp's Streamable HTTP transport when the credential is an access token
//! that changes while the session lives.
//!
//! rmcp sends the `auth_header` of its config, fixed when the transport is built, with every
//! request. This client is reqwest's own implementation of rmcp's client trait, with that value
//! swapped for the current access token on each call: the session (its id, its GET stream, its
//! resumption) stays rmcp's, only the token under it is renewed. rmcp's default client follows
//! same-origin redirects; this one follows none, like the rest of `prom connect`, since the
//! token would go along.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::stream::BoxStream;
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use secrecy::ExposeSecret;
use sse_stream::Sse;

use super::live::LiveToken;

/// reqwest with the current access token as the bearer of every request.
#[derive(Clone, Debug)]
pub(in crate::commands::connect) struct BearerClient {
    http: reqwest::Client,
    token: LiveToken,
}

impl BearerClient {
    pub(in crate::commands::connect) fn new(token: LiveToken) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            // As rmcp's default client: a pooled connection whose last body was not read to the
            // end stalls the next request on delayed ACKs.
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("prom-connect/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, token })
    }

    /// The token rmcp passes to reqwest's `bearer_auth`, in place of the config's.
    fn bearer(&self) -> Option<String> {
        Some(self.token.current().expose_secret().to_owned())
    }
}

type Stream = BoxStream<'static, Result<Sse, SseError>>;
type Failure = StreamableHttpError<reqwest::Error>;

impl StreamableHttpClient for BearerClient {
    type Error = reqwest::Error;

    fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = Result<StreamableHttpPostResponse, Failure>> + Send + '_ {
        self.http.post_message(uri, message, session_id, self.bearer(), custom_headers)
    }

    fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> impl Future<Output = Result<StreamableHttpPostResponse, Failure>> + Send + '_ {
        self.http.post_message_with_max_sse_event_size(
            uri,
            message,
            session_id,
            self.bearer(),
            custom_headers,
            max_sse_event_size,
        )
    }

    fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> impl Future<Output = Result<StreamableHttpPostResponse, Failure>> + Send + '_ {
        self.http.post_message_with_response_limits(uri, message, session_id, self.bearer(), custom_headers, limits)
    }

    fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = Result<(), Failure>> + Send + '_ {
        self.http.delete_session(uri, session_id, self.bearer(), custom_headers)
    }

    fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = Result<Stream, Failure>> + Send + '_ {
        self.http.get_stream(uri, session_id, last_event_id, self.bearer(), custom_headers)
    }

    fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> impl Future<Output = Result<Stream, Failure>> + Send + '_ {
        self.http.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            self.bearer(),
            custom_headers,
            max_sse_event_size,
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::Mutex;

    use axum::http::{HeaderMap, StatusCode};
    use secrecy::SecretString;

    use super::*;

    /// Every request carries the token current at that moment, whatever rmcp's config said.
    #[tokio::test]
    async fn sends_the_current_token_not_the_configured_one() {
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let record = seen.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let record = record.clone();
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                record.lock().unwrap().push(auth);
                StatusCode::ACCEPTED
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: Arc<str> = format!("http://{}/mcp/demo", listener.local_addr().unwrap()).into();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let (sender, token) = LiveToken::channel("prom_at_first");
        let client = BearerClient::new(token).unwrap();
        let message = || -> ClientJsonRpcMessage {
            serde_json::from_value(serde_json::json!({"jsonrpc":"2.0","method":"notifications/initialized"})).unwrap()
        };
        let stale = || Some("stale".to_owned());
        let limits = StreamableHttpResponseLimits::default();
        client
            .post_message_with_response_limits(uri.clone(), message(), None, stale(), HashMap::new(), limits)
            .await
            .unwrap();
        sender.send(SecretString::from("prom_at_second")).unwrap();
        client.post_message(uri.clone(), message(), None, stale(), HashMap::new()).await.unwrap();
        client.delete_session(uri.clone(), "s".into(), stale(), HashMap::new()).await.unwrap();
        assert_eq!(*seen.lock().unwrap(), ["Bearer prom_at_first", "Bearer prom_at_second", "Bearer prom_at_second"]);
    }
}
