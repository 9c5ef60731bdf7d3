//! Who is looking at a page: the session cookie turned into the same [`Principal`] the API uses,
//! with the session's idle timeout, the tenants the person may switch to, and the CSRF token of
//! their forms. [`Posted`] is a form post that carries that token and came from this site.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use cookie::{Cookie, SameSite};
use prom_core::id::SessionId;
use prom_core::store::Membership;
use prom_core::time::Timestamp;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::page::{Chrome, Nav, PageError, TenantChoice};
use crate::auth::{ClientMeta, Principal, UserPrincipal};
use crate::error::ApiError;
use crate::state::AppState;

/// The session cookie's name over TLS: `__Host-` binds it to this host, path `/` and `Secure`.
pub const SECURE_COOKIE: &str = "__Host-prom_session";
/// Its name over plain HTTP (a loopback development server), where `__Host-` cannot be used.
pub const PLAIN_COOKIE: &str = "prom_session";
/// A session's last-seen time is written at most this often (seconds).
const TOUCH_EVERY_SECS: u64 = 60;
/// Largest form accepted.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The key CSRF tokens are derived with, the same on every node (kept in the settings table).
#[derive(Clone)]
pub struct CsrfKey([u8; 32]);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(..)")
    }
}

impl CsrfKey {
    pub fn from_setting(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// A session's CSRF token: derived from the session id, so it needs no storage and changes
    /// with every sign-in.
    fn token(&self, session: &SessionId) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        hasher.update(b"prometheus dashboard csrf\0");
        hasher.update(session.as_str().as_bytes());
        hasher.finalize()
    }
}

/// A signed-in person on a page.
#[derive(Clone, Debug)]
pub struct Viewer {
    pub principal: Principal,
    pub meta: ClientMeta,
    /// Every tenant the person belongs to (for the switcher).
    pub memberships: Vec<Membership>,
    csrf: blake3::Hash,
}

impl Viewer {
    pub fn user(&self) -> &UserPrincipal {
        match &self.principal {
            Principal::User(user) => user,
            // Built only from a session cookie.
            Principal::Agent(_) => unreachable_user(),
        }
    }

    pub fn csrf(&self) -> String {
        self.csrf.to_hex().to_string()
    }

    /// The page frame for section `nav`, titled `title`.
    pub fn chrome(&self, nav: Nav, title: impl Into<String>) -> Chrome {
        let session = &self.user().session;
        Chrome {
            email: session.email.to_string(),
            tenant_slug: session.tenant.slug.to_string(),
            tenant_name: session.tenant.name.clone(),
            role: session.role,
            tenants: self
                .memberships
                .iter()
                .map(|m| TenantChoice {
                    slug: m.tenant.slug.to_string(),
                    name: m.tenant.name.clone(),
                    current: m.tenant.id == session.tenant.id,
                })
                .collect(),
            csrf: self.csrf(),
            nav,
            title: title.into(),
        }
    }
}

#[expect(clippy::panic, reason = "a Viewer always holds a user principal: it is only built from a session")]
fn unreachable_user() -> &'static UserPrincipal {
    panic!("a dashboard viewer is always a signed-in user")
}

/// The session token in the request's cookies, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    let mut plain = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for cookie in Cookie::split_parse(text).flatten() {
            match cookie.name() {
                SECURE_COOKIE => return Some(cookie.value().to_owned()),
                PLAIN_COOKIE => plain = Some(cookie.value().to_owned()),
                _ => {}
            }
        }
    }
    plain
}

/// Whether the person reached us over TLS: the configured public URL says so, or the proxy in
/// front does. (A client claiming TLS falsely only makes its own cookie stricter.)
pub fn over_tls(state: &AppState, headers: &HeaderMap) -> bool {
    let configured = state.config.public_url.as_deref().is_some_and(|url| url.starts_with("https://"));
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    configured || forwarded
}

/// The `Set-Cookie` value that starts a session (`None` clears it).
pub fn session_set_cookie(state: &AppState, headers: &HeaderMap, token: Option<(&str, u64)>) -> String {
    let secure = over_tls(state, headers);
    let name = if secure { SECURE_COOKIE } else { PLAIN_COOKIE };
    let (value, max_age) = match token {
        Some((token, secs)) => (token.to_owned(), i64::try_from(secs).unwrap_or(i64::MAX)),
        None => (String::new(), 0),
    };
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(max_age))
        .build()
        .to_string()
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // Pages are nested under `/app`, which the router strips from the URI they see.
        let next = match (&parts.method, parts.uri.path_and_query()) {
            (&Method::GET, Some(pq)) if pq.as_str().starts_with("/app") => pq.as_str().to_owned(),
            (&Method::GET, Some(pq)) => format!("/app{}", pq.as_str()),
            _ => "/app".to_owned(),
        };
        let sign_in = || PageError::SignIn { next: next.clone() };
        let token = session_cookie(&parts.headers).ok_or_else(sign_in)?;
        let user = match crate::auth::authenticate_session(state, &token).await {
            Ok(user) => user,
            Err(ApiError::TokenInvalid(_)) => return Err(sign_in()),
            Err(other) => return Err(other.into()),
        };
        let now = Timestamp::now();
        let session = &user.session;
        if session.last_seen_at.plus_seconds(state.config.session_idle_secs) <= now {
            return Err(sign_in());
        }
        if session.last_seen_at.plus_seconds(TOUCH_EVERY_SECS) <= now {
            state.store.touch_session(&session.id, now).await?;
        }
        let memberships = state.store.memberships(&session.user_id).await?;
        let csrf = state.csrf_key.token(&session.id);
        let meta = ClientMeta::from_parts(parts);
        Ok(Self { principal: Principal::User(user), meta, memberships, csrf })
    }
}

/// A form post from a signed-in person: from this site, with the CSRF token of their session in
/// the field `csrf`; the rest of the form is `T`.
#[derive(Debug)]
pub struct Posted<T> {
    pub viewer: Viewer,
    pub form: T,
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// Refuses a state-changing request another site made the browser send: browsers say where a
/// request came from in `Sec-Fetch-Site` and `Origin`.
pub fn same_site(headers: &HeaderMap) -> Result<(), PageError> {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(fetch_site, Some("cross-site" | "same-site")) {
        return Err(PageError::Csrf);
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some("null"), _) => Err(PageError::Csrf),
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            if origin_host.eq_ignore_ascii_case(host) { Ok(()) } else { Err(PageError::Csrf) }
        }
        _ => Ok(()),
    }
}

/// Reads an urlencoded form body of at most 64 KiB.
pub async fn form_bytes(body: axum::body::Body) -> Result<bytes::Bytes, PageError> {
    axum::body::to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| {
        PageError::Api(ApiError::PayloadTooLarge("the form is too large (at most 64 KiB) or came too slowly".into()))
    })
}

/// Parses a form into `T`, with a message that names the problem.
pub fn parse_form<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PageError> {
    serde_urlencoded::from_bytes(bytes)
        .map_err(|err| PageError::Api(ApiError::InvalidRequest(format!("the form is not valid: {err}"))))
}

impl<T: DeserializeOwned> FromRequest<AppState> for Posted<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        same_site(&parts.headers)?;
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        let bytes = form_bytes(body).await?;
        let field: CsrfField = serde_urlencoded::from_bytes(&bytes).map_err(|_| PageError::Csrf)?;
        let presented = blake3::Hash::from_hex(field.csrf.trim()).map_err(|_| PageError::Csrf)?;
        // blake3::Hash compares in constant time.
        if presented != viewer.csrf {
            return Err(PageError::Csrf);
        }
        let form = parse_form(&bytes)?;
        Ok(Self { viewer, form })
    }
}
