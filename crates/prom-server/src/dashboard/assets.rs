//! The dashboard's own stylesheet, script and icon, compiled into the binary (no build step, no
//! other origin).

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::AppState;

const STYLESHEET: &str = include_str!("../../static/app.css");
const SCRIPT: &str = include_str!("../../static/app.js");
const ICON: &str = include_str!("../../static/icon.svg");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/static/app.css", get(|| async { asset("text/css; charset=utf-8", STYLESHEET) }))
        .route("/static/app.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/static/icon.svg", get(|| async { asset("image/svg+xml", ICON) }))
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=300")], body)
}
