//! `prom connect URL` without a key, end to end against `prom serve --demo`: it prints the sign-in
//! URL, this test plays the browser (the demo owner's session, the consent form, the redirect to
//! the loopback callback), and then a host's MCP messages over `prom connect`'s stdio reach the demo
//! tools. The tokens land in a 0600 file; a second `prom connect` uses them without a browser; an
//! access token that expires mid-session is refreshed under the same MCP session; a permission
//! revoked on the dashboard sends the next run back to the browser; and Deny in the browser ends
//! `prom connect` with `ACCESS_DENIED`.
//!
//! Tokens are read from the state file here only to check what the gateway does with them.

// Tests fail by panicking; the library lints against it do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/demo_gateway.rs"]
mod demo_gateway;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, COOKIE, LOCATION, ORIGIN};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use self::demo_gateway::{DemoGateway, spawn_demo_gateway, spawn_demo_gateway_with};

const PROM: &str = env!("CARGO_BIN_EXE_prom");
const URL_LINE: &str = "Open this URL to connect: ";

/// `prom connect` as an MCP host runs it, without a key, its stderr collected as it comes.
struct Connect {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<String>>,
    /// Collects stderr until the process closes it: awaited after an exit, so that the last
    /// lines are in before a test reads them.
    collecting: Option<tokio::task::JoinHandle<()>>,
}

impl Connect {
    fn spawn(mcp_url: &str, state_dir: &Path) -> Self {
        let mut child = tokio::process::Command::new(PROM)
            .args(["connect", mcp_url])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", state_dir)
            .env("PROM_CONNECT_NO_BROWSER", "1")
            .env("PROM_CONNECT_STATE_DIR", state_dir)
            .env("PROM_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn prom connect");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let collected = stderr.clone();
        let collecting = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut text = collected.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, stdin, stdout, stderr, collecting: Some(collecting) }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The URL `prom connect` asks the person to open.
    async fn sign_in_url(&self) -> String {
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if let Some(url) = self.stderr().lines().find_map(|line| line.split_once(URL_LINE)) {
                    return url.1.trim().to_owned();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no sign-in URL on stderr:\n{}", self.stderr()))
    }

    async fn send(&mut self, message: Value) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(format!("{message}\n").as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// Sends a request and returns its response (skipping notifications on the way).
    async fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await;
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let line = self
                    .stdout
                    .next_line()
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("prom connect closed stdout; stderr:\n{}", self.stderr()));
                let message: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON-RPC: {line:?}"));
                if message["id"] == id {
                    return message;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {method}; stderr:\n{}", self.stderr()))
    }

    /// `initialize` and `notifications/initialized`, then `tools/list`: the names of the tools.
    async fn initialize_and_list_tools(&mut self) -> Vec<String> {
        let params = json!({
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "connect-oauth-test", "version": "1"}
        });
        let initialized = self.request(1, "initialize", params).await;
        assert!(initialized["result"]["serverInfo"].is_object(), "{initialized}");
        self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        self.list_tools(2).await
    }

    async fn list_tools(&mut self, id: u64) -> Vec<String> {
        let listed = self.request(id, "tools/list", json!({})).await;
        let tools = listed["result"]["tools"].as_array().unwrap_or_else(|| panic!("{listed}"));
        tools.iter().map(|tool| tool["name"].as_str().unwrap().to_owned()).collect()
    }

    /// Closes standard input, as a host does when it quits, and returns the exit code.
    async fn close(mut self) -> Option<i32> {
        drop(self.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.expect("exits").unwrap();
        self.drain_stderr().await;
        status.code()
    }

    /// Waits until every line the exited process wrote to stderr is collected.
    async fn drain_stderr(&mut self) {
        if let Some(collecting) = self.collecting.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), collecting).await;
        }
    }

    async fn exit_code(&mut self) -> Option<i32> {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        let code =
            status.unwrap_or_else(|_| panic!("prom connect did not exit; stderr:\n{}", self.stderr())).unwrap().code();
        self.drain_stderr().await;
        code
    }
}

/// The person's browser: the demo owner's dashboard session, no redirects followed.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Browser {
    async fn signed_in(gateway: &DemoGateway) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let cookie = format!("prom_session={}", gateway.owner_token().await);
        Self { http, base: gateway.base.clone(), cookie }
    }

    /// Follows the sign-in URL to the consent page, answers it with `decision`, and lands on
    /// the loopback callback as a browser would. Returns the callback page.
    async fn consent(&self, sign_in_url: &str, decision: &str) -> String {
        let authorize = self.http.get(sign_in_url).header(COOKIE, &self.cookie).send().await.unwrap();
        assert_eq!(authorize.status(), StatusCode::SEE_OTHER, "{}", authorize.text().await.unwrap());
        let consent_path = location(&authorize);
        assert!(consent_path.starts_with("/app/connect?"), "{consent_path}");

        let page = self.http.get(format!("{}{consent_path}", self.base)).header(COOKIE, &self.cookie).send().await;
        let page = page.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        assert!(html.contains("id=\"consent-allow\""), "the owner may allow: {html}");
        let mut form = hidden_fields(&html);
        assert!(form.iter().any(|(name, _)| name == "csrf"), "{html}");
        form.extend([("cap", "1000"), ("days", "30"), ("decision", decision)].map(|(n, v)| (n.into(), v.into())));

        let decided = self
            .http
            .post(format!("{}/app/connect", self.base))
            .header(COOKIE, &self.cookie)
            .header(ORIGIN, &self.base)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&form).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(decided.status(), StatusCode::SEE_OTHER, "{}", decided.text().await.unwrap());
        let callback = location(&decided);
        assert!(callback.starts_with("http://127.0.0.1:") && callback.contains("/callback?"), "{callback}");

        let landed = self.http.get(&callback).send().await.unwrap();
        assert_eq!(landed.status(), StatusCode::OK);
        landed.text().await.unwrap()
    }
}

impl Browser {
    /// Revokes the one connected app on the dashboard's Connected apps page.
    async fn revoke_the_connected_app(&self) {
        let page = self.http.get(format!("{}/app/apps", self.base)).header(COOKIE, &self.cookie).send().await.unwrap();
        let html = page.text().await.unwrap();
        let form = html.split("action=\"/app/apps/").nth(1).unwrap_or_else(|| panic!("no connected app: {html}"));
        let action = format!("/app/apps/{}", form.split('"').next().unwrap());
        let csrf = form.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap();
        let revoked = self
            .http
            .post(format!("{}{action}", self.base))
            .header(COOKIE, &self.cookie)
            .header(ORIGIN, &self.base)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("csrf={csrf}"))
            .send()
            .await
            .unwrap();
        assert_eq!(revoked.status(), StatusCode::SEE_OTHER, "{}", revoked.text().await.unwrap());
    }
}

fn location(response: &reqwest::Response) -> String {
    response.headers()[LOCATION].to_str().unwrap().to_owned()
}

/// The `name` and `value` of every hidden input of the consent form, unescaped.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let form = html.split("<form id=\"consent\"").nth(1).unwrap_or_else(|| panic!("no consent form: {html}"));
    let form = form.split("</form>").next().unwrap();
    form.split("<input ")
        .skip(1)
        .filter(|tag| tag.starts_with("type=\"hidden\""))
        .map(|tag| {
            let attribute = |name: &str| {
                let start = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
                let end = start + tag[start..].find('"').unwrap();
                unescape(&tag[start..end])
            };
            (attribute("name"), attribute("value"))
        })
        .collect()
}

fn unescape(text: &str) -> String {
    [("&quot;", "\""), ("&#x27;", "'"), ("&#39;", "'"), ("&#x2f;", "/"), ("&#47;", "/"), ("&lt;", "<"), ("&gt;", ">")]
        .into_iter()
        .fold(text.to_owned(), |text, (escaped, plain)| text.replace(escaped, plain))
        .replace("&amp;", "&")
}

fn state_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().map(|entry| entry.path()).filter(|path| path.extension().is_some_and(|e| e == "json")).collect()
}

fn stored_access_token(file: &Path) -> String {
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    stored["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_prom_connect_signs_in_through_the_browser_and_reaches_the_demo_tools() {
    // Access tokens of six seconds, so that one expires while the test watches.
    let gateway = spawn_demo_gateway_with(&[("PROM_OAUTH__ACCESS_TOKEN_SECS", "6")]).await;
    let state = tempfile::tempdir().unwrap();
    let mut connect = Connect::spawn(&gateway.mcp_url, state.path());

    let sign_in_url = connect.sign_in_url().await;
    assert!(sign_in_url.starts_with(&format!("{}/oauth/authorize?", gateway.base)), "{sign_in_url}");
    let browser = Browser::signed_in(&gateway).await;
    let page = browser.consent(&sign_in_url, "allow").await;
    assert!(page.contains("Connected. You can close this tab."), "{page}");

    let tools = connect.initialize_and_list_tools().await;
    assert!(tools.contains(&"echo".to_owned()) && tools.contains(&"fortune".to_owned()), "{tools:?}");

    let files = state_files(state.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(state.path()).unwrap().permissions().mode() & 0o777, 0o700);
    }
    let first_token = stored_access_token(file);
    assert!(first_token.starts_with("prom_at_"), "an access token is stored");

    // The first access token expires; the same MCP session goes on with a refreshed one.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let tools = connect.list_tools(3).await;
    assert!(tools.contains(&"echo".to_owned()), "{tools:?}");
    assert_ne!(stored_access_token(file), first_token, "the token was refreshed and the new pair stored");
    let expired = reqwest::Client::new()
        .post(&gateway.mcp_url)
        .bearer_auth(&first_token)
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json, text/event-stream")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED, "so the call above went with the new token");

    // A second run for the same URL uses the stored sign-in: no browser.
    let mut again = Connect::spawn(&gateway.mcp_url, state.path());
    let tools = again.initialize_and_list_tools().await;
    assert!(tools.contains(&"fortune".to_owned()), "{tools:?}");
    assert!(!again.stderr().contains(URL_LINE), "{}", again.stderr());

    // Both ran side by side on one refresh-token family without tripping reuse detection.
    let tools = connect.list_tools(4).await;
    assert!(tools.contains(&"echo".to_owned()), "{tools:?}");
    let logs = format!("{}{}", connect.stderr(), again.stderr());
    assert!(!logs.contains("prom_at_") && !logs.contains("prom_rt_"), "no token is ever printed:\n{logs}");
    assert_eq!(again.close().await, Some(0));
    assert_eq!(connect.close().await, Some(0));
}

/// With hour-long tokens: the next run uses the stored one as it is; once the permission is
/// revoked on the Connected apps page, the run after that finds out before bridging (the token
/// has not expired, the gateway refuses it, so does the token endpoint) and asks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_permission_sends_the_next_run_back_to_the_browser() {
    let gateway = spawn_demo_gateway().await;
    let state = tempfile::tempdir().unwrap();
    let browser = Browser::signed_in(&gateway).await;
    let mut connect = Connect::spawn(&gateway.mcp_url, state.path());
    browser.consent(&connect.sign_in_url().await, "allow").await;
    assert!(connect.initialize_and_list_tools().await.contains(&"echo".to_owned()));
    assert_eq!(connect.close().await, Some(0));
    let file = state_files(state.path()).pop().unwrap();
    let token = stored_access_token(&file);

    let mut again = Connect::spawn(&gateway.mcp_url, state.path());
    assert!(again.initialize_and_list_tools().await.contains(&"fortune".to_owned()));
    assert!(!again.stderr().contains(URL_LINE), "{}", again.stderr());
    assert_eq!(stored_access_token(&file), token, "a fresh stored token is used as it is");
    assert_eq!(again.close().await, Some(0));

    browser.revoke_the_connected_app().await;
    let mut after_revoke = Connect::spawn(&gateway.mcp_url, state.path());
    let sign_in_url = after_revoke.sign_in_url().await;
    assert!(after_revoke.stderr().contains("no longer works"), "{}", after_revoke.stderr());
    assert!(state_files(state.path()).is_empty(), "the dead sign-in is forgotten");
    browser.consent(&sign_in_url, "deny").await;
    assert_eq!(after_revoke.exit_code().await, Some(2), "{}", after_revoke.stderr());
    assert!(after_revoke.stderr().contains("ACCESS_DENIED: "), "{}", after_revoke.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denying_in_the_browser_ends_prom_connect_with_access_denied() {
    let gateway = spawn_demo_gateway().await;
    let state = tempfile::tempdir().unwrap();
    let mut connect = Connect::spawn(&gateway.mcp_url, state.path());

    let sign_in_url = connect.sign_in_url().await;
    let browser = Browser::signed_in(&gateway).await;
    let page = browser.consent(&sign_in_url, "deny").await;
    assert!(page.contains("You did not allow the connection"), "{page}");

    let code = connect.exit_code().await;
    let stderr = connect.stderr();
    assert_eq!(code, Some(2), "{stderr}");
    let denied = stderr.lines().find(|line| line.starts_with("ACCESS_DENIED: ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(denied.contains("not allowed in the browser") && denied.contains("run the agent again"), "{denied}");
    assert!(state_files(state.path()).is_empty(), "nothing is stored");
}
