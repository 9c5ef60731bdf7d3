//! Keeping the access token alive while the bridge runs: a task refreshes it a little before it
//! expires, stores the rotated pair, and hands the new access token to the bridge's HTTP client,
//! which reads the current one for every request (see `bearer_client.rs`).
//!
//! Refreshing happens under the state file's lock, and the file is read again first: another
//! `prom connect` for the same URL (a second host, a restarted one) may have rotated the refresh
//! token already, and presenting the old one would get the whole permission revoked as stolen.

use std::time::Duration;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;

use super::stored::{StateFile, Stored, now_secs};
use super::token::{self, TokenError};

/// The longest time before expiry at which the refresh starts.
const REFRESH_AHEAD_MAX: Duration = Duration::from_secs(300);
/// Sleeps are cut into slices of this: the monotonic clock stands still while a laptop sleeps,
/// the token's expiry does not.
const WAKE_EVERY: Duration = Duration::from_secs(30);
/// How long to wait before trying a refresh again after an outage.
const RETRY_AFTER: Duration = Duration::from_secs(15);

/// The current access token, as the refresh task last set it.
#[derive(Clone, Debug)]
pub(in crate::commands::connect) struct LiveToken(watch::Receiver<SecretString>);

impl LiveToken {
    /// A token that tests change by hand.
    #[cfg(test)]
    pub(in crate::commands::connect) fn channel(token: &str) -> (watch::Sender<SecretString>, Self) {
        let (sender, receiver) = watch::channel(SecretString::from(token));
        (sender, Self(receiver))
    }

    pub(in crate::commands::connect) fn current(&self) -> SecretString {
        self.0.borrow().clone()
    }
}

/// Why a refresh produced no token.
#[derive(Debug)]
pub(super) enum RefreshError {
    /// The server refused the refresh token (revoked, expired, used): sign in again.
    Refused(String),
    /// No answer that counts: try again later.
    Unavailable(String),
}

/// When the refresh of a token with `remaining` lifetime should start: a quarter of it ahead,
/// at most five minutes.
pub(super) fn refresh_ahead(remaining: Duration) -> Duration {
    (remaining / 4).min(REFRESH_AHEAD_MAX)
}

/// Refreshes `ours` and stores the result. Under the lock, the stored pair counts, not ours:
/// if another process has rotated it and its access token is fresh, that one is taken over; if
/// it needs refreshing too, its refresh token (the newest) is the one presented, never our
/// older one. A refused refresh token forgets the stored sign-in.
pub(super) async fn refresh(
    http: &reqwest::Client,
    file: Option<&StateFile>,
    ours: &Stored,
) -> Result<Stored, RefreshError> {
    let _lock = match file {
        Some(file) => match file.lock().await {
            Ok(lock) => Some(lock),
            Err(error) => {
                tracing::warn!(%error, path = %file.path().display(), "cannot lock the stored sign-in; refreshing anyway");
                None
            }
        },
        None => None,
    };
    let current = file.and_then(|file| file.load(&ours.mcp_url)).unwrap_or_else(|| ours.clone());
    if !current.same_refresh_token(ours) && current.remaining() > refresh_ahead(current.remaining()) {
        tracing::debug!("another prom connect refreshed the sign-in; using its tokens");
        return Ok(current);
    }
    let Some(refresh_token) = &current.refresh_token else {
        return Err(RefreshError::Refused("the server issued no refresh token".into()));
    };
    let endpoint = Url::parse(&current.token_endpoint)
        .map_err(|_| RefreshError::Refused("the stored token endpoint is not a URL".into()))?;
    match token::refresh(http, &endpoint, refresh_token, &current.client_id, &current.resource).await {
        Ok(issued) => {
            let next = Stored {
                access_token: issued.access_token,
                // A server that does not rotate keeps the old refresh token working.
                refresh_token: issued.refresh_token.or_else(|| current.refresh_token.clone()),
                expires_at: now_secs().saturating_add(issued.expires_in),
                ..current.clone()
            };
            if let Some(file) = file
                && let Err(error) = file.save(&next)
            {
                tracing::warn!(%error, path = %file.path().display(), "cannot store the refreshed sign-in");
            }
            Ok(next)
        }
        Err(TokenError::Refused { error, description }) => {
            if let Some(file) = file {
                file.remove();
            }
            let said = if description.is_empty() { error } else { format!("{error}: {description}") };
            Err(RefreshError::Refused(said))
        }
        Err(TokenError::Unavailable(why)) => Err(RefreshError::Unavailable(why)),
    }
}

/// Starts the task that keeps `stored`'s access token fresh, and returns the token it keeps.
/// The task ends with the process, or when the server refuses the refresh token (the bridge
/// then hears `401` on its next message and says so).
pub(super) fn keep_fresh(http: reqwest::Client, file: Option<StateFile>, stored: Stored) -> LiveToken {
    let (sender, receiver) = watch::channel(stored.access_token.clone());
    tokio::spawn(async move {
        let mut stored = stored;
        let mut retry_at: Option<u64> = None;
        loop {
            let due = match retry_at {
                Some(at) => at,
                None => stored.expires_at.saturating_sub(refresh_ahead(stored.remaining()).as_secs()),
            };
            sleep_until_wall_clock(due).await;
            match refresh(&http, file.as_ref(), &stored).await {
                Ok(next) => {
                    tracing::debug!(expires_in = next.remaining().as_secs(), "refreshed the access token");
                    let changed = next.access_token.expose_secret() != stored.access_token.expose_secret();
                    stored = next;
                    retry_at = None;
                    if changed && sender.send(stored.access_token.clone()).is_err() {
                        return;
                    }
                }
                Err(RefreshError::Refused(why)) => {
                    tracing::warn!(
                        "TOKEN_INVALID: the access token could not be refreshed ({why}); the gateway will refuse \
                         it once it expires. Restart the agent to sign in again."
                    );
                    return;
                }
                Err(RefreshError::Unavailable(why)) => {
                    tracing::warn!("could not refresh the access token ({why}); trying again shortly");
                    retry_at = Some(now_secs().saturating_add(RETRY_AFTER.as_secs()));
                }
            }
        }
    });
    LiveToken(receiver)
}

/// Sleeps until `at` (seconds since the Unix epoch), by the wall clock.
async fn sleep_until_wall_clock(at: u64) {
    loop {
        let now = now_secs();
        if now >= at {
            return;
        }
        tokio::time::sleep(Duration::from_secs(at - now).min(WAKE_EVERY)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    use super::*;

    /// A token endpoint that records the refresh tokens presented to it: `prom_rt_bad` is refused,
    /// any other is rotated to `<it>+` with an access token named after it.
    async fn token_endpoint() -> (String, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let app = axum::Router::new().route(
            "/token",
            axum::routing::post(move |body: String| {
                let record = record.clone();
                async move {
                    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap();
                    assert_eq!(form["grant_type"], "refresh_token");
                    assert_eq!(form["client_id"], "c1");
                    assert_eq!(form["resource"], "http://x/mcp/demo");
                    let presented = form["refresh_token"].clone();
                    record.lock().unwrap().push(presented.clone());
                    if presented == "prom_rt_bad" {
                        let body = serde_json::json!({"error": "invalid_grant", "error_description": "revoked"});
                        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
                    }
                    axum::Json(serde_json::json!({
                        "access_token": format!("at-for-{presented}"), "token_type": "Bearer",
                        "expires_in": 3600, "refresh_token": format!("{presented}+"),
                    }))
                    .into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }

    fn stored(endpoint: &str, refresh: &str, expires_in: u64) -> Stored {
        Stored {
            mcp_url: "http://x/mcp/demo".into(),
            issuer: "http://x".into(),
            resource: "http://x/mcp/demo".into(),
            client_id: "c1".into(),
            redirect_uri: "http://127.0.0.1:1/callback".into(),
            token_endpoint: endpoint.into(),
            access_token: SecretString::from(format!("at-{refresh}")),
            refresh_token: Some(SecretString::from(refresh)),
            expires_at: now_secs() + expires_in,
        }
    }

    #[tokio::test]
    async fn refreshes_rotates_and_stores() {
        let (endpoint, seen) = token_endpoint().await;
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(dir.path(), "http://x/mcp/demo");
        let ours = stored(&endpoint, "rt1", 10);
        file.save(&ours).unwrap();
        let next = refresh(&reqwest::Client::new(), Some(&file), &ours).await.unwrap();
        assert_eq!(next.access_token.expose_secret(), "at-for-rt1");
        assert!(next.remaining() > Duration::from_secs(3000));
        let kept = file.load("http://x/mcp/demo").unwrap();
        assert_eq!(kept.refresh_token.unwrap().expose_secret(), "rt1+");
        assert_eq!(*seen.lock().unwrap(), ["rt1"]);
    }

    /// Another process rotated the pair: a fresh one is taken over without asking the server;
    /// a stale one is refreshed with its refresh token, never with our used one.
    #[tokio::test]
    async fn another_process_rotation_wins() {
        let (endpoint, seen) = token_endpoint().await;
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(dir.path(), "http://x/mcp/demo");
        let ours = stored(&endpoint, "rt1", 10);

        file.save(&stored(&endpoint, "rt2", 3600)).unwrap();
        let taken = refresh(&reqwest::Client::new(), Some(&file), &ours).await.unwrap();
        assert_eq!(taken.access_token.expose_secret(), "at-rt2");
        assert!(seen.lock().unwrap().is_empty());

        file.save(&stored(&endpoint, "rt3", 0)).unwrap();
        let next = refresh(&reqwest::Client::new(), Some(&file), &ours).await.unwrap();
        assert_eq!(next.access_token.expose_secret(), "at-for-rt3");
        assert_eq!(*seen.lock().unwrap(), ["rt3"]);
    }

    #[tokio::test]
    async fn a_refused_refresh_forgets_the_sign_in() {
        let (endpoint, _) = token_endpoint().await;
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(dir.path(), "http://x/mcp/demo");
        let ours = stored(&endpoint, "prom_rt_bad", 0);
        file.save(&ours).unwrap();
        let error = refresh(&reqwest::Client::new(), Some(&file), &ours).await.unwrap_err();
        assert!(matches!(&error, RefreshError::Refused(why) if why == "invalid_grant: revoked"), "{error:?}");
        assert!(file.load("http://x/mcp/demo").is_none());

        let gone = stored("http://127.0.0.1:9/token", "rt1", 0);
        let error = refresh(&reqwest::Client::new(), None, &gone).await.unwrap_err();
        assert!(matches!(error, RefreshError::Unavailable(_)), "{error:?}");
    }

    #[test]
    fn refreshes_a_quarter_ahead_at_most_five_minutes() {
        assert_eq!(refresh_ahead(Duration::from_secs(3600)), Duration::from_secs(300));
        assert_eq!(refresh_ahead(Duration::from_secs(40)), Duration::from_secs(10));
        assert_eq!(refresh_ahead(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn the_token_is_the_last_one_sent_even_after_the_sender_is_gone() {
        let (sender, token) = LiveToken::channel("t1");
        assert_eq!(token.current().expose_secret(), "t1");
        sender.send(SecretString::from("t2")).unwrap();
        drop(sender);
        assert_eq!(token.current().expose_secret(), "t2");
    }
}
