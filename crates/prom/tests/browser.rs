//! A real browser against the gateway: headless Chromium (Debian's `chromium`) loads a page from
//! one origin that calls `/mcp/demo` on `prom serve --demo` with `fetch`, as a web agent would —
//! the CORS preflight, the call with `x-api-key`, and reading `Mcp-Session-Id` from the answer.
//! From an origin the operator allowed it works; from another, the browser is refused.
//!
//! Without chromium the test says SKIPPED; with `CI` set it fails (`.ci/run` installs chromium).

// Tests fail by panicking; the library lints against it do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/demo_gateway.rs"]
mod demo_gateway;

use std::process::{Command, Stdio};

use tokio::net::TcpListener;

use self::demo_gateway::spawn_demo_gateway_with;

fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|name| Command::new(name).arg("--version").output().is_ok_and(|out| out.status.success()));
    if found.is_none() {
        let missing = "chromium is missing (Debian: apt-get install chromium, which .ci/run does)";
        if std::env::var_os("CI").is_some_and(|value| !value.is_empty()) {
            panic!("{missing}; CI is set, and there the browser test must run");
        }
        eprintln!("SKIPPED: {missing}");
    }
    found
}

/// A page that initializes an MCP session through the gateway and writes what it saw into `#out`.
fn page(mcp_url: &str, key: &str) -> String {
    format!(
        r#"<!doctype html><html><body><pre id="out">pending</pre><script>
const out = document.getElementById("out");
fetch({mcp_url:?}, {{
  method: "POST",
  headers: {{ "x-api-key": {key:?}, "content-type": "application/json", "accept": "application/json, text/event-stream",
             "mcp-protocol-version": "2025-11-25" }},
  body: JSON.stringify({{ jsonrpc: "2.0", id: 1, method: "initialize", params: {{ protocolVersion: "2025-11-25",
        capabilities: {{}}, clientInfo: {{ name: "browser", version: "1" }} }} }})
}}).then(async (response) => {{
  const text = await response.text();
  out.textContent = "status=" + response.status + " session=" + (response.headers.get("mcp-session-id") ? "yes" : "no")
    + " server=" + (text.includes("serverInfo") ? "yes" : "no");
}}).catch((error) => {{ out.textContent = "refused: " + error; }});
</script></body></html>"#
    )
}

/// Serves `html` at `/` on a new loopback port (a new origin); returns the origin.
async fn serve_page(html: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/", axum::routing::get(move || async move { axum::response::Html(html) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    origin
}

/// What the page wrote, as headless Chromium saw it once its scripts were done.
fn load(browser: &str, url: &str) -> String {
    let output = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .args(["--virtual-time-budget=15000", "--dump-dom", url])
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    let start = dom.find("<pre id=\"out\">").map(|at| at + "<pre id=\"out\">".len());
    start.and_then(|start| dom[start..].split("</pre>").next().map(str::to_owned)).unwrap_or_else(|| {
        panic!(
            "no #out in what chromium printed ({}):\n{dom}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_an_allowed_origin_calls_the_gateway_and_another_cannot() {
    let Some(browser) = chromium() else { return };
    // Two page origins: the second is not allowed. Their ports are taken before the gateway starts.
    let allowed_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let allowed_origin = format!("http://{}", allowed_listener.local_addr().unwrap());
    drop(allowed_listener);

    let allowed = format!("[\"{allowed_origin}\"]");
    let gateway = spawn_demo_gateway_with(&[("PROM_ALLOWED_ORIGINS", &allowed)]).await;
    let (mcp_url, key) = (gateway.mcp_url.clone(), gateway.key.clone());

    // The allowed origin, on the port reserved for it.
    let listener = TcpListener::bind(allowed_origin.trim_start_matches("http://")).await.unwrap();
    let html = page(&mcp_url, &key);
    let app = axum::Router::new().route("/", axum::routing::get(move || async move { axum::response::Html(html) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let seen = tokio::task::spawn_blocking(move || load(browser, &format!("{allowed_origin}/"))).await.unwrap();
    assert_eq!(seen, "status=200 session=yes server=yes", "from the allowed origin");

    let other = serve_page(page(&mcp_url, &key)).await;
    let seen = tokio::task::spawn_blocking(move || load(browser, &format!("{other}/"))).await.unwrap();
    assert!(seen.starts_with("refused:"), "from another origin the browser is refused: {seen}");
    drop(gateway);
}
