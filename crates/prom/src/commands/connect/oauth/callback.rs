//! The loopback redirect of a native app (RFC 8252 §7.3): a small HTTP server on `127.0.0.1`, on
//! a port the system picks, where the browser lands after the person allowed or denied.
//!
//! A landing whose `state` is not ours (an earlier attempt's tab, another page poking at the
//! port) is turned away and waiting goes on; one with our `state` ends the wait, whatever it
//! says. The `iss` parameter (RFC 9207) must name the server we sent the person to: a response
//! from another one means someone mixed two servers' responses up, and the attempt is abandoned.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use secrecy::SecretString;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

/// What the callback expects, fixed before the person is sent to the browser.
#[derive(Debug)]
pub(super) struct Expected {
    pub state: String,
    pub issuer: String,
    /// The server promised `iss` in every response (its metadata says so).
    pub iss_required: bool,
}

/// How the attempt ended in the browser.
#[derive(Debug)]
pub(super) enum Outcome {
    Code(SecretString),
    /// The person chose Deny; the server's description, if any.
    Denied(String),
    /// The server sent another error (`error`, `error_description`).
    Error {
        error: String,
        description: String,
    },
    /// The response claims to come from another server (the `iss` it carried, if any).
    WrongIssuer(Option<String>),
}

#[derive(Debug, Default, Deserialize)]
struct Landing {
    code: Option<SecretString>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

struct Shared {
    expected: Expected,
    outcomes: mpsc::Sender<Outcome>,
}

/// How long the page that ended the wait may take to reach the browser before we move on.
const LAST_PAGE_GRACE: Duration = Duration::from_secs(2);

/// The running callback server.
#[derive(Debug)]
pub(super) struct Callback {
    address: SocketAddr,
    outcomes: mpsc::Receiver<Outcome>,
    /// Sending (or dropping) it stops the server, after the pages in flight are sent.
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl Callback {
    pub(super) async fn bind(expected: Expected) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let address = listener.local_addr()?;
        let (sender, outcomes) = mpsc::channel(1);
        let (stop, stopped) = oneshot::channel::<()>();
        let shared = Arc::new(Shared { expected, outcomes: sender });
        let app = Router::new().route("/callback", get(land)).with_state(shared);
        let server = tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(error) = served.await {
                tracing::debug!(%error, "the sign-in callback server stopped");
            }
        });
        Ok(Self { address, outcomes, stop, server })
    }

    /// `http://127.0.0.1:PORT/callback`: a literal loopback address, not `localhost`, which
    /// a resolver might send elsewhere (RFC 8252 §8.3).
    pub(super) fn redirect_uri(&self) -> String {
        format!("http://{}/callback", self.address)
    }

    /// The outcome, or `None` when nobody came back within `timeout`. The server is stopped
    /// once the page that ended the wait has gone out: the process may exit right after (a
    /// denial), and the person should not see a broken page.
    pub(super) async fn wait(mut self, timeout: Duration) -> Option<Outcome> {
        let outcome = tokio::time::timeout(timeout, self.outcomes.recv()).await.ok().flatten();
        let _ = self.stop.send(());
        if tokio::time::timeout(LAST_PAGE_GRACE, self.server).await.is_err() {
            tracing::debug!("the sign-in callback server did not stop in time");
        }
        outcome
    }
}

async fn land(State(shared): State<Arc<Shared>>, Query(landing): Query<Landing>) -> Response {
    let (status, message, outcome) = judge(landing, &shared.expected);
    if let Some(outcome) = outcome {
        // Only the first outcome counts; a reload of the page finds the channel full or closed.
        let _ = shared.outcomes.try_send(outcome);
    }
    page(status, message)
}

/// What a landing means: the page's status and words, and the outcome if it ends the wait.
fn judge(landing: Landing, expected: &Expected) -> (StatusCode, &'static str, Option<Outcome>) {
    if landing.state.as_deref() != Some(expected.state.as_str()) {
        return (
            StatusCode::BAD_REQUEST,
            "This is not the sign-in prom connect is waiting for (it may be an earlier attempt's). \
             Use the newest link the agent printed.",
            None,
        );
    }
    let issuer_ok = match &landing.iss {
        Some(iss) => iss == &expected.issuer,
        None => !expected.iss_required,
    };
    if !issuer_ok {
        return (
            StatusCode::BAD_REQUEST,
            "This answer does not come from the server prom connect sent you to, so it was not used. \
             The agent says more.",
            Some(Outcome::WrongIssuer(landing.iss)),
        );
    }
    match (landing.error, landing.code) {
        (Some(error), _) if error == "access_denied" => (
            StatusCode::OK,
            "You did not allow the connection. You can close this tab.",
            Some(Outcome::Denied(landing.error_description.unwrap_or_default())),
        ),
        (Some(error), _) => (
            StatusCode::OK,
            "The connection failed. The agent says why; you can close this tab.",
            Some(Outcome::Error { error, description: landing.error_description.unwrap_or_default() }),
        ),
        (None, Some(code)) => (StatusCode::OK, "Connected. You can close this tab.", Some(Outcome::Code(code))),
        (None, None) => (
            StatusCode::BAD_REQUEST,
            "This answer carries neither a code nor an error. Use the newest link the agent printed.",
            None,
        ),
    }
}

fn page(status: StatusCode, message: &'static str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>prom connect</title></head>\
         <body><p>{message}</p></body></html>"
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    // The address in the bar holds the code: keep it out of caches and of any Referer.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'"));
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use secrecy::ExposeSecret;

    use super::*;

    fn expected() -> Expected {
        Expected { state: "s1".into(), issuer: "http://127.0.0.1:7070".into(), iss_required: true }
    }

    fn landing(pairs: &str) -> Landing {
        serde_urlencoded::from_str(pairs).unwrap()
    }

    #[test]
    fn only_our_state_from_our_issuer_ends_the_wait() {
        let iss = "iss=http%3A%2F%2F127.0.0.1%3A7070";
        let (status, _, outcome) = judge(landing(&format!("code=c1&state=s1&{iss}")), &expected());
        assert_eq!(status, StatusCode::OK);
        assert!(matches!(outcome, Some(Outcome::Code(code)) if code.expose_secret() == "c1"));

        let (status, _, outcome) = judge(landing(&format!("code=c1&state=other&{iss}")), &expected());
        assert_eq!((status, outcome.is_none()), (StatusCode::BAD_REQUEST, true));
        assert!(judge(landing("code=c1"), &expected()).2.is_none());

        let (_, _, outcome) = judge(landing("code=c1&state=s1&iss=http%3A%2F%2Fevil"), &expected());
        assert!(matches!(outcome, Some(Outcome::WrongIssuer(Some(iss))) if iss == "http://evil"));
        let (_, _, outcome) = judge(landing("code=c1&state=s1"), &expected());
        assert!(matches!(outcome, Some(Outcome::WrongIssuer(None))));
        let lenient = Expected { iss_required: false, ..expected() };
        assert!(matches!(judge(landing("code=c1&state=s1"), &lenient).2, Some(Outcome::Code(_))));
    }

    #[test]
    fn denial_and_errors_end_the_wait_with_their_description() {
        let iss = "iss=http%3A%2F%2F127.0.0.1%3A7070";
        let denied = landing(&format!("error=access_denied&error_description=the+person+said+no&state=s1&{iss}"));
        assert!(matches!(judge(denied, &expected()).2, Some(Outcome::Denied(why)) if why == "the person said no"));
        let failed = landing(&format!("error=invalid_scope&error_description=only+agent%3Aconnect&state=s1&{iss}"));
        assert!(matches!(
            judge(failed, &expected()).2,
            Some(Outcome::Error { error, description }) if error == "invalid_scope" && description == "only agent:connect"
        ));
        assert!(judge(landing(&format!("state=s1&{iss}")), &expected()).2.is_none());
    }

    #[tokio::test]
    async fn serves_the_landing_on_loopback() {
        let callback = Callback::bind(Expected { iss_required: false, ..expected() }).await.unwrap();
        let redirect = callback.redirect_uri();
        assert!(redirect.starts_with("http://127.0.0.1:") && redirect.ends_with("/callback"), "{redirect}");
        let http = reqwest::Client::new();
        let stray = http.get(format!("{redirect}?code=x&state=nope")).send().await.unwrap();
        assert_eq!(stray.status(), 400);
        let landed = http.get(format!("{redirect}?code=c9&state=s1")).send().await.unwrap();
        assert_eq!(landed.status(), 200);
        assert_eq!(landed.headers()["referrer-policy"], "no-referrer");
        assert!(landed.text().await.unwrap().contains("Connected. You can close this tab."));
        let outcome = callback.wait(Duration::from_secs(5)).await;
        assert!(matches!(outcome, Some(Outcome::Code(code)) if code.expose_secret() == "c9"));
    }

    #[tokio::test]
    async fn gives_up_after_the_timeout() {
        let callback = Callback::bind(expected()).await.unwrap();
        assert!(callback.wait(Duration::from_millis(50)).await.is_none());
    }
}
