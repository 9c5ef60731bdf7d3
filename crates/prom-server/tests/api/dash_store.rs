//! The App Store and Publish pages as a browser sees them: the store's cards (escaped), a
//! service's page with the tools its real upstream lists (read over MCP Streamable HTTP: JSON and
//! SSE answers, a session, `nextCursor` pages, the session deleted after) and their prices, the
//! allowance form (through the API: its audit row, its conflicts in words), publishing, pricing
//! and deleting through forms, and who may do what: members look, other tenants get 404, and an
//! upstream the egress policy refuses is refused in words and never contacted.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prom_core::access::Role;
use prom_server::egress::EgressConfig;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::allowance::fund;
use crate::gateway::{call, mcp_post, register};
use crate::pages::Browser;
use crate::support::{Cred, TestApp, TestUser, actions, python_stdio};

/// What an upstream saw: the JSON-RPC method (or `DELETE`) and the request's headers.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, HeaderMap)>>>);

impl Seen {
    fn methods(&self) -> Vec<String> {
        self.0.lock().expect("lock").iter().map(|(method, _)| method.clone()).collect()
    }

    fn header(&self, method: &str, name: &str) -> Vec<Option<String>> {
        let seen = self.0.lock().expect("lock");
        seen.iter()
            .filter(|(m, _)| m == method)
            .map(|(_, headers)| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned))
            .collect()
    }
}

const SESSION: &str = "catalog-session-1";

fn rpc_result(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// An MCP server with three tools over two `tools/list` pages: the first answered as an event
/// stream (after a request of the server's own), the second as JSON. Stateful: a session id
/// from `initialize`, required afterwards.
async fn upstream_post(State(seen): State<Seen>, headers: HeaderMap, body: String) -> Response {
    let message: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let method = message["method"].as_str().unwrap_or("<response>").to_owned();
    seen.0.lock().expect("lock").push((method.clone(), headers.clone()));
    let id = message["id"].clone();
    let in_session = headers.get("mcp-session-id").is_some_and(|v| v == SESSION);
    match method.as_str() {
        "initialize" => {
            let result = json!({
                "protocolVersion": "2025-11-25",
                "capabilities": { "tools": {} },
                "serverInfo": { "name": "catalogued", "version": "1.0.0" }
            });
            ([("mcp-session-id", SESSION)], axum::Json(rpc_result(&id, result))).into_response()
        }
        // Calls work without a session (as on a stateless server), for the earnings test.
        "tools/call" => {
            axum::Json(rpc_result(&id, json!({ "content": [{ "type": "text", "text": "found" }] }))).into_response()
        }
        _ if !in_session => StatusCode::NOT_FOUND.into_response(),
        "notifications/initialized" => StatusCode::ACCEPTED.into_response(),
        "tools/list" if message["params"]["cursor"].is_null() => {
            let tools = json!({
                "tools": [
                    { "name": "search", "title": "Web search", "description": "<b>Finds</b> pages", "inputSchema": {"type":"object"} },
                    { "name": "echo", "description": "Says it back", "inputSchema": {"type":"object"} }
                ],
                "nextCursor": "page-2"
            });
            let ping = json!({ "jsonrpc": "2.0", "id": "server-1", "method": "ping" });
            let events =
                format!("event: message\ndata: {ping}\n\nevent: message\ndata: {}\n\n", rpc_result(&id, tools));
            ([("content-type", "text/event-stream")], events).into_response()
        }
        "tools/list" if message["params"]["cursor"] == "page-2" => {
            let tools = json!({ "tools": [ { "name": "fortune", "description": "A fortune", "inputSchema": {"type":"object"} } ] });
            axum::Json(rpc_result(&id, tools)).into_response()
        }
        _ => StatusCode::BAD_REQUEST.into_response(),
    }
}

async fn upstream_delete(State(seen): State<Seen>, headers: HeaderMap) -> StatusCode {
    seen.0.lock().expect("lock").push(("DELETE".into(), headers));
    StatusCode::OK
}

/// Starts the MCP server on loopback; its URL and what it sees.
async fn spawn_catalogued() -> (String, u16, Seen) {
    let seen = Seen::default();
    let app = axum::Router::new().route("/mcp", post(upstream_post).delete(upstream_delete)).with_state(seen.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://127.0.0.1:{port}/mcp"), port, seen)
}

/// Publishes `slug` at `url` through the API with `prices`.
async fn publish(owner: &TestUser, slug: &str, url: &str, prices: Value) {
    let body = json!({ "slug": slug, "name": format!("{slug} tools"), "description": "Useful tools.",
        "upstream": { "url": url }, "prices": prices });
    let (status, body) = owner.post("/v1/services", body).await;
    assert_eq!(status, StatusCode::CREATED, "publishing {slug} failed: {body}");
}

/// `html` with askama's numeric escapes (`&#60;`) written as the named ones (`&lt;`), so that
/// assertions read as the escaped text.
fn named(html: &str) -> String {
    html.replace("&#60;", "&lt;").replace("&#62;", "&gt;").replace("&#38;", "&amp;").replace("&#34;", "&quot;")
}

/// The text of the element with `id` up to its closing `tag` (enough to assert on).
fn element<'a>(html: &'a str, id: &str, tag: &str) -> &'a str {
    let start = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in: {html}"));
    let end = html[start..].find(&format!("</{tag}>")).map_or(html.len(), |end| start + end);
    &html[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_lists_every_service_escaped() {
    let app = TestApp::spawn().await;
    let acme = app.with_owner("acme").await;
    let (status, body) = acme
        .post(
            "/v1/services",
            json!({ "slug": "xss", "name": "<i>Shiny</i>", "description": "<script>alert(1)</script>",
                "upstream": { "url": "http://127.0.0.1:9/mcp?token=upstream-secret" }, "prices": { "zap": "1234567" } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let globex = app.with_owner("globex").await;

    let page = Browser::of(&app, &globex).get("/app/store?notice=welcome").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains("Welcome — "), "{}", page.html);
    let html = named(&page.html);
    let card = element(&html, "service-xss", "article");
    assert!(card.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{card}");
    assert!(card.contains("&lt;i&gt;Shiny&lt;/i&gt;"), "{card}");
    assert!(card.contains("by acme"), "the publisher's name: {card}");
    assert!(card.contains("href=\"/app/store/xss\""), "{card}");
    // Its upstream cannot be reached: the priced tool is shown all the same.
    assert!(card.contains("zap") && card.contains("1,234,567"), "{card}");
    assert!(!page.html.contains("<script>alert(1)"), "unescaped: {}", page.html);
    assert!(!page.html.contains("<i>Shiny"), "unescaped: {}", page.html);
    assert!(!page.html.contains("upstream-secret"), "the upstream's credentials leaked: {}", page.html);

    let service = Browser::of(&app, &globex).get("/app/store/xss").await;
    assert_eq!(service.status, StatusCode::OK);
    assert!(named(&service.html).contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!service.html.contains("<script>alert(1)") && !service.html.contains("upstream-secret"));
    // A buyer is not told why the upstream failed (the gateway maps no networks for anyone).
    let lower = service.html.to_lowercase();
    assert!(!lower.contains("connection refused") && !lower.contains("127.0.0.1:9/mcp"), "{}", service.html);
    assert_eq!(Browser::of(&app, &globex).get("/app/store/nope").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_page_lists_the_tools_its_upstream_serves_with_prices() {
    let app = TestApp::spawn().await;
    let (url, _, seen) = spawn_catalogued().await;
    let acme = app.with_owner("acme").await;
    publish(&acme, "catalogued", &url, json!({ "search": "1500", "retired": "7" })).await;
    let buyer = app.with_owner("globex").await;

    let page = Browser::of(&app, &buyer).get("/app/store/catalogued").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let html = named(&page.html);
    let tools = element(&html, "tools", "table");
    for expected in ["search", "Web search", "&lt;b&gt;Finds&lt;/b&gt; pages", "1,500", "echo", "fortune", "free"] {
        assert!(tools.contains(expected), "{expected:?} missing from: {tools}");
    }
    assert!(tools.contains("retired") && tools.contains("does not list"), "a priced tool not listed: {tools}");
    assert!(!tools.contains("<b>Finds"), "unescaped: {tools}");

    // Spoken as MCP asks: initialize, the session kept, the version negotiated, both pages, DELETE.
    assert_eq!(seen.methods(), ["initialize", "notifications/initialized", "tools/list", "tools/list", "DELETE"]);
    assert_eq!(seen.header("initialize", "mcp-session-id"), [None]);
    for method in ["notifications/initialized", "tools/list", "DELETE"] {
        assert!(seen.header(method, "mcp-session-id").iter().all(|s| s.as_deref() == Some(SESSION)), "{method}");
        assert!(seen.header(method, "mcp-protocol-version").iter().all(|v| v.as_deref() == Some("2025-11-25")));
    }
    assert!(seen.header("initialize", "authorization").iter().all(Option::is_none));

    // How to connect, and the way to a key.
    let host = app.client.url("").trim_start_matches("http://").to_owned();
    assert!(page.html.contains(&format!("http://{host}/mcp/catalogued")), "{}", page.html);
    let config = element(&page.html, "connect-config", "pre");
    assert!(config.contains("mcpServers") && config.contains("PROMETHEUS_API_KEY") && config.contains("connect"));
    assert!(page.html.contains("id=\"create-key-link\""));
    assert!(page.html.contains("href=\"/app/api-keys?service=catalogued\""));

    // Read once: the next look is served from the catalogue.
    let again = Browser::of(&app, &buyer).get("/app/store").await;
    assert!(element(&again.html, "service-catalogued", "article").contains("fortune"));
    assert_eq!(seen.methods().len(), 5, "no second read within the cache's lifetime");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allowance_form_approves_through_the_api_and_shows_conflicts_in_words() {
    let app = TestApp::spawn().await;
    let (url, _, _) = spawn_catalogued().await;
    let acme = app.with_owner("acme").await;
    publish(&acme, "catalogued", &url, json!({ "search": "100" })).await;
    let buyer = app.with_owner("globex").await;
    let browser = Browser::of(&app, &buyer);

    let saved = browser
        .post("/app/store/catalogued/allowance", &[("amount", "5,000"), ("expires_at", "2099-01-02T03:04")])
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.html);
    assert_eq!(saved.location(), Some("/app/store/catalogued?notice=allowance_saved#access"));
    let (status, view) = buyer.get("/v1/services/catalogued/allowance").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["approved"], "5000", "{view}");
    assert!(view["expires_at"].as_str().is_some_and(|at| at.starts_with("2099-01-02T03:04:00")), "{view}");
    let audit = buyer.audit("?action=allowance.approve").await;
    assert_eq!(actions(&audit), ["allowance.approve"]);
    assert_eq!(audit[0]["details"]["amount"], "5000", "{audit:?}");

    let page = browser.get("/app/store/catalogued?notice=allowance_saved").await;
    assert!(page.html.contains("The allowance is saved"));
    let figures = element(&page.html, "allowance", "dl");
    assert!(figures.contains("5,000") && figures.contains("2099-01-02 03:04 UTC"), "{figures}");
    assert!(page.html.contains("value=\"2099-01-02T03:04\""), "the expiry is shown in the form");

    // The API's conflict, in its words, with what was typed kept.
    let past =
        browser.post("/app/store/catalogued/allowance", &[("amount", "777"), ("expires_at", "2001-01-01T00:00")]).await;
    assert_eq!(past.status, StatusCode::CONFLICT, "{}", past.html);
    let error = element(&past.html, "allowance-error", "p");
    assert!(error.contains("expires_at is in the past"), "{error}");
    assert!(past.html.contains("value=\"777\"") && past.html.contains("value=\"2001-01-01T00:00\""));
    let bad = browser.post("/app/store/catalogued/allowance", &[("amount", "lots")]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.html.contains("not a whole number"), "{}", bad.html);
    assert_eq!(buyer.get("/v1/services/catalogued/allowance").await.1["approved"], "5000", "unchanged");

    // Revoking sets it to 0.
    let revoked = browser.post("/app/store/catalogued/allowance", &[("amount", "0")]).await;
    assert_eq!(revoked.location(), Some("/app/store/catalogued?notice=allowance_revoked#access"));
    assert_eq!(buyer.get("/v1/services/catalogued/allowance").await.1["approved"], "0");

    // A member sees the allowance, but the API refuses their change.
    let member = app.with_user("globex", "member@globex.example", Role::Member).await;
    let member_browser = Browser::of(&app, &member);
    let page = member_browser.get("/app/store/catalogued").await;
    assert!(page.html.contains("id=\"allowance\"") && !page.html.contains("id=\"allowance-form\""));
    let refused = member_browser.post("/app/store/catalogued/allowance", &[("amount", "9")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.html);
    assert_eq!(buyer.get("/v1/services/catalogued/allowance").await.1["approved"], "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowance_exceeded_points_at_the_service_page() {
    let app = TestApp::spawn().await;
    let (url, _, _) = spawn_catalogued().await;
    let acme = app.with_owner("acme").await;
    publish(&acme, "catalogued", &url, json!({ "search": "100" })).await;
    let buyer = app.with_owner("globex").await;
    let (_, key) = buyer.create_key("agent").await;
    let answer: Value =
        mcp_post(&app, "catalogued", Cred::ApiKey(&key), &call(1, "search"), &[]).await.json().await.expect("json");
    let manage_url = answer["error"]["data"]["manage_url"].as_str().unwrap_or_else(|| panic!("{answer}"));
    let path = manage_url.strip_prefix(&app.client.url("")).unwrap_or_else(|| panic!("{manage_url}"));
    assert_eq!(path, "/app/store/catalogued");
    let page = Browser::of(&app, &buyer).get(path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("id=\"access\"") && page.html.contains("id=\"allowance-form\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_pricing_and_deleting_through_the_forms() {
    let app = TestApp::spawn().await;
    let (url, _, seen) = spawn_catalogued().await;
    let acme = app.with_owner("acme").await;
    let browser = Browser::of(&app, &acme);

    let fields = [
        ("slug", "weather"),
        ("name", "Weather <b>Pro</b>"),
        ("description", "Forecasts."),
        ("upstream", url.as_str()),
    ];
    let published = browser.post("/app/publish", &fields).await;
    assert_eq!(published.status, StatusCode::SEE_OTHER, "{}", published.html);
    assert_eq!(published.location(), Some("/app/publish/weather?notice=published"));

    // The slug is taken now: the API's 409 in words, the form kept.
    let taken = browser.post("/app/publish", &fields).await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.html);
    assert!(element(&taken.html, "publish-error", "p").contains("weather"), "{}", taken.html);
    assert!(named(&taken.html).contains("value=\"Weather &lt;b&gt;Pro&lt;/b&gt;\""), "{}", taken.html);

    // The service's page: the upstream's tools, one price field each.
    let page = browser.get("/app/publish/weather?notice=published").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    for tool in ["search", "echo", "fortune"] {
        assert!(page.html.contains(&format!("id=\"price-{tool}\" name=\"price.{tool}\"")), "{tool}: {}", page.html);
    }
    let read = browser.post("/app/publish/weather/tools", &[]).await;
    assert_eq!(read.location(), Some("/app/publish/weather?notice=tools_read#tools"));
    assert_eq!(seen.methods().iter().filter(|m| *m == "initialize").count(), 2, "read again on demand");

    let saved = browser
        .post("/app/publish/weather/prices", &[("price.search", "2,500"), ("price.echo", ""), ("price.fortune", "")])
        .await;
    assert_eq!(saved.location(), Some("/app/publish/weather?notice=prices_saved#tools"));
    let (_, view) = acme.get("/v1/services/weather").await;
    assert_eq!(view["prices"], json!({ "search": "2500" }));
    let bad = browser.post("/app/publish/weather/prices", &[("price.search", "cheap")]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(element(&bad.html, "prices-error", "p").contains("not an amount"), "{}", bad.html);
    assert!(bad.html.contains("value=\"cheap\""), "what was typed is kept");

    // Details: the upstream is kept when left as shown.
    let details = browser
        .post("/app/publish/weather", &[("name", "Weather"), ("description", "Better."), ("upstream", &url)])
        .await;
    assert_eq!(details.location(), Some("/app/publish/weather?notice=saved"));
    let (_, view) = acme.get("/v1/services/weather").await;
    assert_eq!((view["name"].as_str(), view["description"].as_str()), (Some("Weather"), Some("Better.")));
    assert_eq!(seen.methods().iter().filter(|m| *m == "initialize").count(), 2, "the same upstream: not read again");
    // Another upstream: its tools are read from it, without anyone asking.
    let (moved, _, moved_seen) = spawn_catalogued().await;
    let details = browser.post("/app/publish/weather", &[("name", "Weather"), ("upstream", &moved)]).await;
    assert_eq!(details.location(), Some("/app/publish/weather?notice=saved"), "{}", details.html);
    let page = browser.get("/app/publish/weather").await;
    assert!(page.html.contains("id=\"price-fortune\""));
    assert_eq!(moved_seen.methods().first().map(String::as_str), Some("initialize"));

    // The list, read-only earnings table included.
    let list = browser.get("/app/publish").await;
    assert!(element(&list.html, "own-services", "table").contains("/app/publish/weather"));
    assert!(list.html.contains("id=\"publish-form\""));

    // Deleting, behind a confirmation page.
    let confirm = browser.get("/app/publish/weather/delete").await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.html.contains("id=\"confirm-delete-service\"") && confirm.html.contains("Delete service"));
    let deleted = browser.post("/app/publish/weather/delete", &[]).await;
    assert_eq!(deleted.location(), Some("/app/publish?notice=deleted"));
    assert_eq!(acme.get("/v1/services/weather").await.0, StatusCode::NOT_FOUND);
    assert_eq!(actions(&acme.audit("?action=service.delete").await), ["service.delete"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_look_and_other_tenants_find_nothing() {
    let app = TestApp::spawn().await;
    let (url, _, _) = spawn_catalogued().await;
    let acme = app.with_owner("acme").await;
    publish(&acme, "catalogued", &url, json!({ "search": "100" })).await;

    // A member sees the list, without the forms; the API refuses what they post.
    let member = app.with_user("acme", "member@acme.example", Role::Member).await;
    let browser = Browser::of(&app, &member);
    let list = browser.get("/app/publish").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.html.contains("/app/publish/catalogued") && !list.html.contains("id=\"publish-form\""));
    let page = browser.get("/app/publish/catalogued").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.html.contains("id=\"prices-form\"") && !page.html.contains(&url), "{}", page.html);
    let refused = browser
        .post("/app/publish", &[("slug", "mine"), ("name", "Mine"), ("upstream", "https://mcp.example.com/mcp")])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.html);
    assert_eq!(
        browser.post("/app/publish/catalogued/prices", &[("price.search", "1")]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(browser.post("/app/publish/catalogued/tools", &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(browser.get("/app/publish/catalogued/delete").await.status, StatusCode::FORBIDDEN);
    assert_eq!(browser.post("/app/publish/catalogued/delete", &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(acme.get("/v1/services/catalogued").await.1["prices"], json!({ "search": "100" }));

    // Another tenant's owner: not found, whatever they try; nothing changes.
    let globex = app.with_owner("globex").await;
    let other = Browser::of(&app, &globex);
    assert_eq!(other.get("/app/publish/catalogued").await.status, StatusCode::NOT_FOUND);
    assert_eq!(other.get("/app/publish/catalogued/delete").await.status, StatusCode::NOT_FOUND);
    for (path, fields) in [
        ("/app/publish/catalogued", vec![("name", "Mine now"), ("upstream", "https://evil.example/mcp")]),
        ("/app/publish/catalogued/prices", vec![("price.search", "1")]),
        ("/app/publish/catalogued/tools", vec![]),
        ("/app/publish/catalogued/delete", vec![]),
    ] {
        let page = other.post(path, &fields).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}: {}", page.html);
    }
    let (status, view) = acme.get("/v1/services/catalogued").await;
    assert_eq!((status, view["name"].as_str()), (StatusCode::OK, Some("catalogued tools")));
    assert_eq!(view["prices"], json!({ "search": "100" }));
    let list = other.get("/app/publish").await;
    assert!(!list.html.contains("/app/publish/catalogued"), "another tenant's service on globex's list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upstream_is_refused_in_words_and_never_contacted() {
    let (_, port, seen) = spawn_catalogued().await;
    // Plain http is allowed, so that the upstream (plain http on loopback) would see any request
    // that got through: only the address rules stand between them.
    let app =
        TestApp::spawn_with(|config| config.egress = EgressConfig { allow_http: true, ..EgressConfig::default() })
            .await;
    let acme = app.with_owner("acme").await;
    let browser = Browser::of(&app, &acme);

    let loopback = format!("https://127.0.0.1:{port}/mcp");
    let fields = [("slug", "local"), ("name", "Local"), ("description", "Mine."), ("upstream", loopback.as_str())];
    let refused = browser.post("/app/publish", &fields).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.html);
    let error = element(&refused.html, "publish-error", "p");
    assert!(error.contains("refused") && error.contains("loopback") && error.contains("egress."), "{error}");
    assert!(refused.html.contains(&format!("value=\"{loopback}\"")), "the form is kept");

    // Registered past the policy (before it, or by a name that now resolves to loopback): the
    // catalogue refuses to read them, on every page, and says why to the publisher only.
    register(&app, &acme, "literal", &format!("http://127.0.0.1:{port}/mcp")).await;
    app.state.gateway.lookup.pin("rebound.test.example", vec!["127.0.0.1".parse().expect("ip")]);
    register(&app, &acme, "rebound", &format!("http://rebound.test.example:{port}/mcp")).await;
    let buyer = app.with_owner("globex").await;
    for slug in ["literal", "rebound"] {
        assert_eq!(Browser::of(&app, &buyer).get(&format!("/app/store/{slug}")).await.status, StatusCode::OK);
        let read = browser.post(&format!("/app/publish/{slug}/tools"), &[]).await;
        assert_eq!(read.location(), Some(format!("/app/publish/{slug}?notice=tools_failed#tools").as_str()));
        let page = browser.get(&format!("/app/publish/{slug}?notice=tools_failed")).await;
        let note = element(&page.html, "catalog-note", "p");
        assert!(note.contains("refused") && note.contains("egress."), "{slug}: {note}");
    }
    browser.get("/app/store").await;
    assert!(seen.methods().is_empty(), "the refused upstream was contacted: {:?}", seen.methods());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_command_service_shows_its_prices_without_being_started() {
    let app = TestApp::spawn_with(|config| config.stdio_commands = vec![python_stdio()]).await;
    let acme = app.with_owner("acme").await;
    let body = json!({ "slug": "local", "name": "Local", "upstream": { "command": "python3", "args": ["server.py"] },
        "prices": { "search": "42" } });
    let (status, body) = acme.post("/v1/services", body).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let buyer = app.with_owner("globex").await;
    let page = Browser::of(&app, &buyer).get("/app/store/local").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("Tools are listed when an agent connects; prices below."), "{}", page.html);
    assert!(element(&page.html, "tools", "table").contains("search"));
    let own = Browser::of(&app, &acme).get("/app/publish/local").await;
    assert!(own.html.contains("id=\"price-search\"") && !own.html.contains("id=\"read-tools\""), "{}", own.html);
    assert_eq!(app.state.gateway.stdio.running(), 0, "no process was started to list tools");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_see_what_each_service_earned_per_day() {
    let app = TestApp::spawn_with(|config| config.settle_interval_secs = 3600).await;
    let (url, _, _) = spawn_catalogued().await;
    let acme = app.with_owner("acme").await;
    publish(&acme, "catalogued", &url, json!({ "search": "1200" })).await;
    let buyer = app.with_owner("globex").await;
    fund(&app, &buyer, 1_000_000).await;
    let approved = Browser::of(&app, &buyer).post("/app/store/catalogued/allowance", &[("amount", "100000")]).await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.html);
    let (_, key) = buyer.create_key("agent").await;
    for id in 1..=3 {
        let answer: Value = mcp_post(&app, "catalogued", Cred::ApiKey(&key), &call(id, "search"), &[])
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(answer["result"]["content"][0]["text"], "found", "{answer}");
    }
    // Captured, then settled by a round of the settler.
    let before = named(&Browser::of(&app, &acme).get("/app/publish").await.html);
    let today = prom_core::time::Timestamp::now().date_string();
    let rows = element(&before, "earnings", "table");
    assert!(rows.contains(&today) && rows.contains("catalogued") && rows.contains("3,600"), "{rows}");
    app.state.settler.settle_once().await;
    let after = Browser::of(&app, &acme).get("/app/publish").await;
    let totals = element(&after.html, "earnings-totals", "table");
    let cells: Vec<&str> =
        totals.split("<td class=\"num\">").skip(1).map(|cell| &cell[..cell.find('<').unwrap_or(0)]).collect();
    assert_eq!(cells, ["3", "3,600", "3,600"], "calls, charged, settled: {totals}");

    // The paying tenant earned nothing, and sees nothing of acme's.
    let theirs = Browser::of(&app, &buyer).get("/app/publish").await;
    assert!(!theirs.html.contains("id=\"earnings\"") && !theirs.html.contains("3,600"), "{}", theirs.html);
}
