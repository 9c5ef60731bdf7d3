//! The address people and agents reach this server at, for every absolute URL it hands out (the
//! OAuth issuer and resources, `manage_url`, links on pages): the configured `public_url`, else
//! the request's `Host` (when it is a plain host name or address) with `https` when the request
//! came over TLS, else a placeholder.

use axum::http::{HeaderMap, header};

use crate::state::AppState;

pub fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| is_host(host))
        .unwrap_or("127.0.0.1:7070");
    let scheme = if crate::dashboard::viewer::over_tls(state, headers) { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// A host name or address with an optional port: nothing that could break out of a URL or a
/// header parameter it is put in.
fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_names_are_echoed() {
        assert!(is_host("127.0.0.1:7070"));
        assert!(is_host("[::1]:8080"));
        assert!(is_host("prometheus.example.com"));
        assert!(!is_host("evil.example'; rm -rf /"));
        assert!(!is_host("a b"));
        assert!(!is_host(""));
    }
}
