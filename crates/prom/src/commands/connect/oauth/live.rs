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

/// Refreshes `current`, taking over a pair another process has rotated meanwhile, and stores
/// the result. A refused refresh token forgets the stored sign-in.
pub(super) async fn refresh(
    http: &reqwest::Client,
    file: Option<&StateFile>,
    current: &Stored,
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
    if let Some(newer) = file.and_then(|file| file.load(&current.mcp_url))
        && !newer.same_refresh_token(current)
        && newer.remaining() > refresh_ahead(newer.remaining()).max(Duration::from_secs(1))
    {
        tracing::debug!("another prom connect refreshed the sign-in; using its tokens");
        return Ok(newer);
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

    use super::*;

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
