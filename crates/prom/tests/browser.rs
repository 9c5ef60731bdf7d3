//! A real browser against the gateway: headless Chromium (Debian's `chromium`) loads a page from
//! one origin that calls `/mcp/demo` on `prom serve --demo` with `fetch`, as a web agent would —
//! the CORS preflight, the call with `x-api-key`, and reading `Mcp-Session-Id` from the answer.
//! From an origin the operator allowed it works; from another, the browser is refused.
//!
//! And the dashboard end to end (`tests/interop/dashboard.mjs`): playwright-core drives the same
//! chromium through first-run setup, publishing, a key's one-time reveal, an allowance, usage,
//! revocation and the audit log, beside an agent on the official TypeScript MCP SDK; every page
//! is screenshotted at desktop and phone widths (under this crate's test output directory,
//! `CARGO_TARGET_TMPDIR/dashboard-screenshots`) and checked with axe-core.
//!
//! And OAuth (`tests/interop/oauth.mjs`): the official SDK's `auth()` signs an MCP client in to
//! `prom serve --demo` while the same browser signs the person in and consents with a spend cap;
//! the client then calls tools, refreshes its expired token, and is refused past the cap.
//!
//! Without chromium (or node and tests/interop/node_modules) a test says SKIPPED; with `CI` set it
//! fails (`.ci/run` installs chromium, scripts/test the npm packages).

// Tests fail by panicking; the library lints against it do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/demo_gateway.rs"]
mod demo_gateway;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
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

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop")
}

fn playwright_ready() -> bool {
    let node = Command::new("node").arg("--version").output().is_ok_and(|output| output.status.success());
    let modules = interop_dir().join("node_modules/playwright-core/package.json").is_file()
        && interop_dir().join("node_modules/axe-core/package.json").is_file();
    if node && modules {
        return true;
    }
    let missing = "node or tests/interop/node_modules (playwright-core, axe-core) missing \
                   (install with `npm ci --prefix tests/interop`, which ./scripts/test does)";
    if std::env::var_os("CI").is_some_and(|value| !value.is_empty()) {
        panic!("{missing}; CI is set, and there the dashboard test must run");
    }
    eprintln!("SKIPPED: {missing}");
    false
}

/// A fresh `prom serve` (no user yet, so it prints a setup link) that may publish `upstream` and
/// lets the wallet page add test funds. Returns the child, its base URL and the setup link.
async fn spawn_fresh_server(data: &std::path::Path, upstream: &str) -> (tokio::process::Child, String, String) {
    let config = data.join("prom.toml");
    std::fs::write(&config, format!("test_funds = true\n\n[egress]\nallow_hosts = [\"{upstream}\"]\n")).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_prom"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.join("db"))
        .arg("--config")
        .arg(&config)
        .env("PROM_KEY_KDF__M_COST_KIB", "256")
        .env("PROM_KEY_KDF__T_COST", "1")
        .env("PROM_PASSWORD_KDF__M_COST_KIB", "256")
        .env("PROM_PASSWORD_KDF__T_COST", "1")
        .env("PROM_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let (base, setup) = tokio::time::timeout(Duration::from_secs(60), async {
        let mut base = None;
        loop {
            let mut line = String::new();
            assert!(stderr.read_line(&mut line).await.unwrap() > 0, "prom serve exited:\n{seen}");
            seen.push_str(&line);
            if let Some(rest) = line.split("serving on ").nth(1) {
                base = rest.split_whitespace().next().map(str::to_owned);
            }
            if let Some(at) = line.find("/app/setup?token=") {
                let start = line[..at].rfind("http").unwrap();
                break (base.clone().unwrap(), line[start..].trim().to_owned());
            }
        }
    })
    .await
    .expect("prom serve prints its address and a setup link");
    // Keep draining stderr so the server never blocks on a full pipe.
    tokio::spawn(async move {
        let mut line = String::new();
        while stderr.read_line(&mut line).await.is_ok_and(|n| n > 0) {
            line.clear();
        }
    });
    (child, base, setup)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_sets_up_publishes_funds_an_agent_and_revokes_it_in_the_browser() {
    if chromium().is_none() || !playwright_ready() {
        return;
    }
    // The upstream to publish: the demo MCP server (echo, fortune) on its own loopback port.
    let upstream_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_host = upstream_listener.local_addr().unwrap().to_string();
    tokio::spawn(demo_mcp::serve_http(upstream_listener, std::future::pending()));
    let upstream = format!("http://{upstream_host}{}", demo_mcp::MCP_PATH);

    let data = tempfile::tempdir().unwrap();
    let (_server, base, setup) = spawn_fresh_server(data.path(), &upstream_host).await;
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    let shots_text = shots.to_string_lossy().into_owned();
    let envs = [
        ("BASE_URL", base.as_str()),
        ("SETUP_URL", setup.as_str()),
        ("UPSTREAM_URL", upstream.as_str()),
        ("SHOTS_DIR", shots_text.as_str()),
    ]
    .map(|(name, value)| (name.to_owned(), value.to_owned()));
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("dashboard.mjs")
            .current_dir(interop_dir())
            .envs(envs)
            .stdin(Stdio::null())
            .output()
            .expect("start node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the dashboard run failed ({}):\n{stderr}\n{stdout}", output.status);
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(result["ok"], true, "{result}");
    eprintln!("dashboard end to end: {result}; screenshots in {}", shots.display());
    assert!(shots.join("09-keys-reveal-phone.png").is_file(), "the screenshots were saved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_client_signs_in_with_oauth_consents_with_a_cap_and_is_held_to_it() {
    if chromium().is_none() || !playwright_ready() {
        return;
    }
    // Access tokens that expire within the run, so the SDK has to refresh.
    let gateway = spawn_demo_gateway_with(&[("PROM_OAUTH__ACCESS_TOKEN_SECS", "3")]).await;
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("oauth-screenshots");
    let shots_text = shots.to_string_lossy().into_owned();
    let envs = [
        ("BASE_URL", gateway.base.as_str()),
        ("MCP_URL", gateway.mcp_url.as_str()),
        ("EMAIL", "demo@prometheus.local"),
        ("PASSWORD", gateway.password.as_str()),
        ("SHOTS_DIR", shots_text.as_str()),
    ]
    .map(|(name, value)| (name.to_owned(), value.to_owned()));
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("oauth.mjs")
            .current_dir(interop_dir())
            .envs(envs)
            .stdin(Stdio::null())
            .output()
            .expect("start node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the OAuth run failed ({}):\n{stderr}\n{stdout}", output.status);
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(result["ok"], true, "{result}");
    eprintln!("OAuth end to end: {result}; screenshots in {}", shots.display());
    drop(gateway);
}
