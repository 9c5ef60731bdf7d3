//! Upstream locations as they may be shown. A provider's upstream URL can carry its credentials
//! (`https://user:pass@…`, `?token=…`) and a stdio upstream's environment its secrets, so:
//! log lines get URLs without userinfo, query and fragment; service views get them with userinfo,
//! query values and environment values masked.

use std::error::Error as _;

use reqwest::Url;

/// What a masked secret shows instead.
pub const MASK: &str = "***";

/// `url` for a log line: scheme, host, port and path only.
pub fn url_for_log(url: &Url) -> String {
    let mut url = url.clone();
    strip(&mut url);
    url.to_string()
}

fn strip(url: &mut Url) {
    // Fails only for URLs that cannot have userinfo (no host), which then have none.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
}

/// A failed upstream request for a log line: reqwest's message and its causes, with the URL it
/// names stripped as by [`url_for_log`].
pub fn upstream_error(mut err: reqwest::Error) -> String {
    if let Some(url) = err.url_mut() {
        strip(url);
    }
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// An upstream URL for a service view: userinfo, query values and fragment masked, so the owner
/// recognises the URL without it handing out the credentials. Query parameters without a value
/// (`?secret`) are masked whole.
pub fn url_for_view(raw: &str) -> String {
    let Ok(mut url) = Url::parse(raw) else { return MASK.to_owned() };
    if !url.username().is_empty() {
        let _ = url.set_username(MASK);
    }
    if url.password().is_some() {
        let _ = url.set_password(Some(MASK));
    }
    if let Some(query) = url.query().filter(|query| !query.is_empty()) {
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) => format!("{name}={MASK}"),
                None => MASK.to_owned(),
            })
            .collect();
        url.set_query(Some(&masked.join("&")));
    }
    if url.fragment().is_some() {
        url.set_fragment(Some(MASK));
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_URL: &str =
        "https://svc-user:svc-pass@mcp.example.com:8443/v1/mcp?token=tok-secret&region=eu&bare#frag";

    #[test]
    fn log_urls_keep_only_where_the_upstream_is() {
        let url = Url::parse(SECRET_URL).unwrap();
        assert_eq!(url_for_log(&url), "https://mcp.example.com:8443/v1/mcp");
    }

    #[test]
    fn view_urls_mask_userinfo_query_values_and_fragment() {
        assert_eq!(
            url_for_view(SECRET_URL),
            "https://***:***@mcp.example.com:8443/v1/mcp?token=***&region=***&***#***"
        );
        assert_eq!(url_for_view("https://mcp.example.com/mcp"), "https://mcp.example.com/mcp");
        assert_eq!(url_for_view("not a url"), MASK);
    }

    #[tokio::test]
    async fn a_failed_upstream_call_logs_no_query_secret_or_userinfo() {
        // Port 9 (discard) on loopback: nothing listens, so the connection is refused.
        let url = "http://svc-user:svc-pass@127.0.0.1:9/mcp?token=tok-secret";
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let err = client.post(url).send().await.expect_err("nothing listens on port 9");
        assert!(err.to_string().contains("tok-secret"), "reqwest itself shows the URL: {err}");
        let logged = upstream_error(err);
        for secret in ["tok-secret", "token", "svc-user", "svc-pass"] {
            assert!(!logged.contains(secret), "{secret} in the log line: {logged}");
        }
        assert!(logged.contains("http://127.0.0.1:9/mcp"), "the log still says where: {logged}");
    }
}
