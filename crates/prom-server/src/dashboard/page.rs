//! What every page shares: the chrome around it (who is signed in, in which tenant, the
//! navigation), rendering a template, and the error page.

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use prom_core::access::Role;
use prom_core::store::StoreError;

use crate::error::ApiError;

/// The sections of the navigation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nav {
    Store,
    Publish,
    Keys,
    Wallet,
    Usage,
    Audit,
    Members,
    Apps,
    None,
}

impl Nav {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Publish => "publish",
            Self::Keys => "keys",
            Self::Wallet => "wallet",
            Self::Usage => "usage",
            Self::Audit => "audit",
            Self::Members => "members",
            Self::Apps => "apps",
            Self::None => "",
        }
    }
}

/// A tenant the signed-in person may switch to.
#[derive(Clone, Debug)]
pub struct TenantChoice {
    pub slug: String,
    pub name: String,
    pub current: bool,
}

/// The frame of a signed-in page: the header with the person, their tenant, the switcher and the
/// sign-out form, and the navigation. Every page template has a `chrome` field.
#[derive(Clone, Debug)]
pub struct Chrome {
    pub email: String,
    pub tenant_slug: String,
    pub tenant_name: String,
    pub role: Role,
    pub tenants: Vec<TenantChoice>,
    /// The CSRF token every form of the page must carry (field `csrf`).
    pub csrf: String,
    pub nav: Nav,
    /// The page's title (before " · Prometheus").
    pub title: String,
}

impl Chrome {
    /// Owners and admins manage keys, services and members.
    pub fn is_admin(&self) -> bool {
        self.role.includes(Role::Admin)
    }

    /// `aria-current` for the navigation link of section `name` (`"store"`, `"keys"`, …).
    pub fn current(&self, name: &str) -> &'static str {
        if self.nav.as_str() == name { "page" } else { "false" }
    }
}

/// Renders a template as an HTML page.
pub fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "a page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page failed to render; the error was logged").into_response()
        }
    }
}

/// Renders a template with a status other than 200 (a form shown again with its error).
pub fn render_status(status: StatusCode, template: &impl Template) -> Response {
    let mut response = render(template);
    if response.status() == StatusCode::OK {
        *response.status_mut() = status;
    }
    response
}

/// Why a page cannot be shown.
#[derive(Debug)]
pub enum PageError {
    /// Not signed in (or the session ended): go to the sign-in page, then come back to `next`.
    SignIn {
        next: String,
    },
    /// The form's CSRF token is missing or wrong, or it came from another site.
    Csrf,
    NotFound(String),
    /// Anything the API would answer: its status and message are shown.
    Api(ApiError),
}

impl From<ApiError> for PageError {
    fn from(err: ApiError) -> Self {
        Self::Api(err)
    }
}

impl From<StoreError> for PageError {
    fn from(err: StoreError) -> Self {
        Self::Api(err.into())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    heading: &'static str,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, heading, message) = match self {
            Self::SignIn { next } => {
                let target = format!("/app/login?next={}", crate::dashboard::login::encode_next(&next));
                return Redirect::to(&target).into_response();
            }
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "This form has expired",
                "The form was not sent from this page, or your session changed since it was shown. Go back, \
                 reload the page and try again."
                    .to_owned(),
            ),
            Self::NotFound(message) => (StatusCode::NOT_FOUND, "Not found", message),
            Self::Api(err) => {
                let heading = match err.status() {
                    StatusCode::FORBIDDEN => "Not allowed",
                    StatusCode::NOT_FOUND => "Not found",
                    StatusCode::TOO_MANY_REQUESTS => "Slow down",
                    status if status.is_server_error() => "Something went wrong",
                    _ => "That did not work",
                };
                let status = err.status();
                let message = err.body().error.message;
                if let ApiError::Internal(cause) = &err {
                    tracing::error!(error = %cause, "internal error on a page");
                }
                (status, heading, message)
            }
        };
        let mut response = render_status(status, &ErrorPage { status: status.as_u16(), heading, message });
        response.headers_mut().insert(header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
        response
    }
}
