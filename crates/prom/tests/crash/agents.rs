//! The crash test's agents: each loops `tools/call fortune` over raw Streamable HTTP on a session
//! of its own, re-initializing on whichever server is up, and tallies what it saw.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Value, json};

const PROTOCOL: &str = "2025-11-25";

/// What one agent saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub key_id: String,
    /// Results read in full: each must have been captured.
    pub served: u64,
    /// The connection broke after the request was sent: maybe captured, never read.
    pub in_doubt: u64,
    /// Answered without a result (no session after a restart, 5xx, …): never charged.
    pub not_served: u64,
    /// Hung up on by the agent itself once the answer began (every fifth call): charged only if
    /// the result was captured before the hang-up was seen; otherwise its hold waits for a
    /// resumption until `paid_result_secs`, then is released.
    pub dropped: u64,
    pub allowance_exceeded: u64,
}

enum Call {
    Served,
    InDoubt,
    Dropped,
    NotServed,
    AllowanceExceeded,
}

/// Shared between the orchestrator and the agents.
pub struct Load {
    /// The running server's base URL.
    pub base: RwLock<String>,
    pub stop: AtomicBool,
    /// Calls served so far, over all agents.
    pub served: AtomicU64,
}

impl Load {
    fn mcp_url(&self) -> String {
        format!("{}/mcp/demo", self.base.read().unwrap())
    }
}

/// The JSON-RPC message answering `id`, from a JSON or an SSE body.
fn answer(body: &str, sse: bool, id: u64) -> Option<Value> {
    if !sse {
        return serde_json::from_str(body).ok();
    }
    let mut data = String::new();
    for line in body.lines().chain(std::iter::once("")) {
        if let Some(rest) = line.strip_prefix("data:") {
            data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
        } else if line.is_empty() && !data.is_empty() {
            let event = std::mem::take(&mut data);
            // Compared as numbers: a call sent as `5.0` may come back as `5.0` or `5`.
            let wanted = id as f64;
            if let Ok(message) = serde_json::from_str::<Value>(&event)
                && message["id"].as_f64() == Some(wanted)
            {
                return Some(message);
            }
        }
    }
    None
}

fn mcp_request(client: &reqwest::Client, url: &str, key: &str, session: Option<&str>) -> reqwest::RequestBuilder {
    let mut request = client
        .post(url)
        .header("x-api-key", key)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json");
    if let Some(session) = session {
        request = request.header("mcp-session-id", session).header("mcp-protocol-version", PROTOCOL);
    }
    request
}

/// `initialize` and `notifications/initialized`: a fresh session on whichever server is up.
async fn open_session(client: &reqwest::Client, url: &str, key: &str) -> Option<String> {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "crash-test", "version": "1"}}});
    let response = mcp_request(client, url, key, None).json(&init).send().await.ok()?;
    if response.status() != 200 {
        return None;
    }
    let session = response.headers().get("mcp-session-id")?.to_str().ok()?.to_owned();
    response.text().await.ok()?;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let response = mcp_request(client, url, key, Some(&session)).json(&initialized).send().await.ok()?;
    response.status().is_success().then_some(session)
}

async fn call_fortune(client: &reqwest::Client, url: &str, key: &str, session: &str, id: u64) -> Call {
    // Every other call has a float id (`5.0`): SDK servers answer it as `5`, which once let its
    // paid result through unmatched and uncharged; the audit's "settled >= served" catches that.
    let wire_id = if id.is_multiple_of(2) { json!(id) } else { json!(id as f64) };
    let call = json!({"jsonrpc": "2.0", "id": wire_id, "method": "tools/call", "params": {"name": "fortune", "arguments": {}}});
    let response = match mcp_request(client, url, key, Some(session)).json(&call).send().await {
        Ok(response) => response,
        // Nobody listening: the request never reached a server.
        Err(err) if err.is_connect() => return Call::NotServed,
        Err(_) => return Call::InDoubt,
    };
    if response.status() != 200 {
        return Call::NotServed;
    }
    if id.is_multiple_of(5) {
        // The agent hangs up on its paid call's stream: the result must not leak uncharged.
        drop(response);
        return Call::Dropped;
    }
    let sse = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let Ok(body) = response.text().await else { return Call::InDoubt };
    let Some(message) = answer(&body, sse, id) else { return Call::InDoubt };
    if message["error"]["data"]["code"] == "ALLOWANCE_EXCEEDED" {
        return Call::AllowanceExceeded;
    }
    let text = message["result"]["content"][0]["text"].as_str().unwrap_or_default();
    if message["result"]["isError"] != true && text.starts_with(demo_mcp::FORTUNE_PREFIX) {
        Call::Served
    } else {
        Call::NotServed
    }
}

/// One agent: calls `fortune` until told to stop, opening a new session whenever it loses one.
pub async fn agent(load: Arc<Load>, key: String, key_id: String) -> Tally {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let mut tally = Tally { key_id, ..Tally::default() };
    let mut session: Option<String> = None;
    let mut id = 0;
    while !load.stop.load(Ordering::SeqCst) {
        let url = load.mcp_url();
        let Some(current) = &session else {
            session = open_session(&client, &url, &key).await;
            if session.is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            continue;
        };
        id += 1;
        match call_fortune(&client, &url, &key, current, id).await {
            Call::Served => {
                tally.served += 1;
                load.served.fetch_add(1, Ordering::SeqCst);
            }
            Call::AllowanceExceeded => tally.allowance_exceeded += 1,
            Call::Dropped => tally.dropped += 1,
            Call::InDoubt => {
                tally.in_doubt += 1;
                session = None;
            }
            Call::NotServed => {
                tally.not_served += 1;
                session = None;
            }
        }
    }
    tally
}

/// Waits until at least one more call than `seen` was served (the load runs on the new server).
pub async fn wait_for_progress(load: &Load, seen: u64) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while load.served.load(Ordering::SeqCst) <= seen {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("no paid call succeeded within 30 s of a restart");
}
