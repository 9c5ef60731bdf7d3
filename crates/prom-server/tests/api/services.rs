//! The services registry through `/v1/services`: who may publish, change and remove a service,
//! what each caller sees (the upstream only for the publisher's signed-in members), validation,
//! slug conflicts, the stdio allow-list, the audit log and the gateway's directory.

use prom_core::access::Role;
use prom_core::service::ServiceSlug;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Cred, TestApp, TestUser, actions, expect_error, service_body};

const WEATHER: &str = "/v1/services/weather";

/// The body with its timestamps checked and removed, for comparing the rest exactly.
fn without_times(mut body: Value) -> Value {
    for field in ["created_at", "updated_at"] {
        let at = body[field].take();
        assert!(at.as_str().is_some_and(|at| at.ends_with('Z')), "{field} is a UTC timestamp in {body}");
    }
    if let Some(object) = body.as_object_mut() {
        object.retain(|_, value| !value.is_null());
    }
    body
}

fn public_view(publisher: &str, prices: Value) -> Value {
    json!({
        "slug": "weather",
        "name": "weather service",
        "description": "What weather does.",
        "publisher": publisher,
        "prices": prices,
        "charge_tool_errors": false,
        "mcp_path": "/mcp/weather",
    })
}

fn publisher_view(publisher: &str, prices: Value) -> Value {
    let mut view = public_view(publisher, prices);
    view["upstream"] = json!({ "url": "https://weather.example/mcp?token=***" });
    view
}

async fn services_seen_by(user: &TestUser) -> Vec<Value> {
    let (status, body) = user.get("/v1/services").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["services"].as_array().unwrap_or_else(|| panic!("a services array in {body}")).clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_publishes_a_service_and_reads_it_back() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;

    let created = owner.create_service("weather", json!({ "search": "250", "forecast": "0" })).await;
    let expected = publisher_view("acme", json!({ "forecast": "0", "search": "250" }));
    assert_eq!(created["created_at"], created["updated_at"]);
    assert_eq!(without_times(created.clone()), expected);

    let (status, read) = owner.get(WEATHER).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read, created);
    assert_eq!(services_seen_by(&owner).await, [created]);

    let missing = owner.get("/v1/services/nothing-here").await;
    let message = expect_error(&missing, StatusCode::NOT_FOUND, "NOT_FOUND");
    assert!(message.contains("nothing-here") && message.contains("GET /v1/services"), "{message}");
    expect_error(&owner.get("/v1/services/Not_A_Slug").await, StatusCode::NOT_FOUND, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_publish_members_and_agents_cannot() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let admin = app.with_user("acme", "admin@acme.example", Role::Admin).await;
    let member = app.with_user("acme", "member@acme.example", Role::Member).await;
    let (_, key) = owner.create_key("agent").await;
    let agent = Cred::ApiKey(&key);

    admin.create_service("weather", json!({ "search": "250" })).await;

    let create = member.post("/v1/services", service_body("mine", json!({}))).await;
    let message = expect_error(&create, StatusCode::FORBIDDEN, "FORBIDDEN");
    assert!(message.contains("admin") && message.contains("member"), "{message}");
    expect_error(&member.patch(WEATHER, json!({ "name": "Mine" })).await, StatusCode::FORBIDDEN, "FORBIDDEN");
    expect_error(&member.delete(WEATHER).await, StatusCode::FORBIDDEN, "FORBIDDEN");

    let create = app.client.post("/v1/services", agent, Some(&service_body("agents", json!({})))).await;
    let message = expect_error(&create, StatusCode::FORBIDDEN, "FORBIDDEN");
    assert!(message.contains("API keys"), "{message}");
    let patch = app.client.patch(WEATHER, agent, &json!({ "prices": {} })).await;
    expect_error(&patch, StatusCode::FORBIDDEN, "FORBIDDEN");
    expect_error(&app.client.delete(WEATHER, agent).await, StatusCode::FORBIDDEN, "FORBIDDEN");

    // Everyone may browse; owners and admins of the publishing tenant see the (masked) upstream,
    // members and agents never do.
    let (status, listed) = app.client.get("/v1/services", agent).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let services = listed["services"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        services.into_iter().map(without_times).collect::<Vec<_>>(),
        [public_view("acme", json!({ "search": "250" }))]
    );
    let (status, read) = app.client.get(WEATHER, agent).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(without_times(read), public_view("acme", json!({ "search": "250" })));
    let (status, read) = member.get(WEATHER).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(without_times(read), public_view("acme", json!({ "search": "250" })));
    let (status, read) = admin.get(WEATHER).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(without_times(read), publisher_view("acme", json!({ "search": "250" })));

    let (status, read) = owner.get(WEATHER).await;
    assert_eq!(
        (status, &read["name"]),
        (StatusCode::OK, &json!("weather service")),
        "nothing the others tried happened"
    );
    assert_eq!(actions(&owner.audit("?action=service.update").await), Vec::<&str>::new());

    expect_error(&app.client.get("/v1/services", Cred::None).await, StatusCode::UNAUTHORIZED, "TOKEN_MISSING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tenants_see_no_upstream_and_cannot_change_it() {
    let app = TestApp::spawn().await;
    let alice = app.with_owner("alice-co").await;
    let bob = app.with_owner("bob-co").await;
    let created = alice.create_service("weather", json!({ "search": "250" })).await;

    let (status, read) = bob.get(WEATHER).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert!(read.get("upstream").is_none(), "the upstream is the publisher's: {read}");
    assert_eq!(without_times(read), public_view("alice-co", json!({ "search": "250" })));
    let listed = services_seen_by(&bob).await;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].get("upstream").is_none(), "{listed:?}");
    assert!(!format!("{listed:?}").contains("upstream-secret"));

    let patch = bob.patch(WEATHER, json!({ "prices": { "search": "1000000" } })).await;
    let message = expect_error(&patch, StatusCode::NOT_FOUND, "NOT_FOUND");
    assert!(message.contains("published by your tenant"), "{message}");
    expect_error(&bob.delete(WEATHER).await, StatusCode::NOT_FOUND, "NOT_FOUND");
    // Publishing under a taken slug does not take it over either.
    let taken = bob.post("/v1/services", service_body("weather", json!({}))).await;
    expect_error(&taken, StatusCode::CONFLICT, "CONFLICT");

    assert_eq!(alice.get(WEATHER).await.1, created, "alice's service is untouched");
    let bob_changes: Vec<_> = bob.audit("").await.into_iter().filter(|e| e["action"] != "user.login").collect();
    assert_eq!(actions(&bob_changes), ["member.add"], "{bob_changes:?}");
    assert_eq!(actions(&alice.audit("?action=service.update").await), Vec::<&str>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_changes_only_what_it_names() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let created = owner.create_service("weather", json!({ "search": "250" })).await;

    let (status, patched) =
        owner.patch(WEATHER, json!({ "name": "  Weather Pro ", "prices": { "forecast": "5" } })).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    let mut expected = publisher_view("acme", json!({ "forecast": "5" }));
    expected["name"] = json!("Weather Pro");
    assert_eq!(without_times(patched.clone()), expected, "prices are replaced as a whole; the name is trimmed");
    assert_eq!(patched["created_at"], created["created_at"]);
    assert_eq!(owner.get(WEATHER).await.1, patched);

    let (status, patched) = owner
        .patch(WEATHER, json!({ "description": "Forecasts.", "upstream": { "url": "http://127.0.0.1:9/mcp" } }))
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["description"], "Forecasts.");
    assert_eq!(patched["upstream"], json!({ "url": "http://127.0.0.1:9/mcp" }));
    assert_eq!(patched["name"], "Weather Pro");

    let (status, unchanged) = owner.patch(WEATHER, json!({})).await;
    assert_eq!((status, &unchanged), (StatusCode::OK, &patched), "an empty patch changes nothing");

    let slug_change = owner.patch(WEATHER, json!({ "slug": "renamed" })).await;
    let message = expect_error(&slug_change, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert!(message.contains("slug"), "{message}");
    let events = owner.audit("?action=service.update").await;
    assert_eq!(actions(&events), ["service.update", "service.update"]);
    assert_eq!(events[1]["details"]["changed"], json!(["name", "prices"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_service_and_frees_the_slug() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    owner.create_service("weather", json!({ "search": "250" })).await;

    let (status, body) = owner.delete(WEATHER).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    expect_error(&owner.get(WEATHER).await, StatusCode::NOT_FOUND, "NOT_FOUND");
    assert!(services_seen_by(&owner).await.is_empty());
    expect_error(&owner.delete(WEATHER).await, StatusCode::NOT_FOUND, "NOT_FOUND");
    expect_error(&owner.patch(WEATHER, json!({ "name": "Ghost" })).await, StatusCode::NOT_FOUND, "NOT_FOUND");

    let again = owner.create_service("weather", json!({ "search": "300" })).await;
    assert_eq!(again["prices"], json!({ "search": "300" }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_slug_is_a_conflict() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    owner.create_service("weather", json!({ "search": "250" })).await;

    let again = owner.post("/v1/services", service_body("weather", json!({ "search": "1" }))).await;
    let message = expect_error(&again, StatusCode::CONFLICT, "CONFLICT");
    assert!(message.contains("the slug weather is taken"), "{message}");
    assert_eq!(owner.get(WEATHER).await.1["prices"], json!({ "search": "250" }));
    assert_eq!(actions(&owner.audit("?action=service.create").await), ["service.create"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_say_what_is_wrong() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let with = |field: &str, value: Value| {
        let mut body = service_body("valid", json!({ "search": "1" }));
        body[field] = value;
        body
    };
    let many_prices: serde_json::Map<String, Value> = (0..1001).map(|i| (format!("tool-{i}"), json!("1"))).collect();
    let cases = [
        (with("slug", json!("Weather_Pro")), "slug is 2 to 63 characters"),
        (with("slug", json!("-weather")), "slug is 2 to 63 characters"),
        (with("name", json!("  ")), "name must be 1 to 100 characters"),
        (with("name", json!("n".repeat(101))), "name must be 1 to 100 characters"),
        (with("description", json!("d".repeat(2001))), "description must be at most 2000"),
        (with("upstream", json!({ "url": "ftp://files.example/mcp" })), "http:// or https://"),
        (with("upstream", json!({ "url": "not a url" })), "http:// or https://"),
        (with("upstream", json!({ "url": "https://" })), "http:// or https://"),
        (with("upstream", json!({ "url": "/relative/mcp" })), "http:// or https://"),
        (with("upstream", json!({})), "upstream needs"),
        (with("upstream", json!({ "url": "https://a.example", "command": "demo-mcp" })), "both url and command"),
        (with("upstream", json!({ "url": "https://a.example", "env": { "A": "b" } })), "go with upstream.command"),
        (with("upstream", json!({ "url": "https://a.example", "headers": {} })), "unknown field `headers`"),
        (with("prices", json!({ "search": 250 })), "is a JSON number"),
        (with("prices", json!({ "search": "-1" })), "an amount is a string of decimal digits"),
        (with("prices", json!({ "search": "1.5" })), "an amount is a string of decimal digits"),
        (with("prices", json!({ "search": "340282366920938463463374607431768211456" })), "decimal digits"),
        (with("prices", json!({ "search": null })), "must be a string of decimal digits"),
        (with("prices", json!({ "": "1" })), "tool names in prices must be 1 to 128"),
        (with("prices", json!({ "t".repeat(129): "1" })), "tool names in prices must be 1 to 128"),
        (with("prices", Value::Object(many_prices)), "at most 1000 tools"),
        (with("owner", json!("bob-co")), "unknown field `owner`"),
        (json!({ "slug": "valid", "name": "Valid" }), "missing field `upstream`"),
    ];
    for (body, expected) in cases {
        let response = owner.post("/v1/services", body.clone()).await;
        let message = expect_error(&response, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
        assert!(message.contains(expected), "for {body}: expected {expected:?} in {message:?}");
        assert!(!message.contains("upstream-secret"), "the upstream URL is not echoed: {message}");
    }
    let patch = owner.patch("/v1/services/valid", json!({ "prices": { "search": 1 } })).await;
    expect_error(&patch, StatusCode::BAD_REQUEST, "INVALID_REQUEST");

    // The largest amount there is goes through exactly.
    let max = u128::MAX.to_string();
    let created = owner.create_service("exact", json!({ "max": max, "free": "0" })).await;
    assert_eq!(created["prices"], json!({ "free": "0", "max": max }));
    assert_eq!(services_seen_by(&owner).await.len(), 1, "nothing invalid was published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_upstreams_are_refused_unless_the_operator_allows_the_command() {
    let stdio = json!({ "command": "demo-mcp", "args": ["--stdio"], "env": { "DEMO_TOKEN": "s3cret" } });
    let refused = "\"demo-mcp\" is not a command this server runs; an operator can allow one with \
                   [[stdio_commands]] (name, absolute path, fixed args, allowed env names)";

    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let mut body = service_body("local", json!({}));
    body["upstream"] = stdio.clone();
    let create = owner.post("/v1/services", body.clone()).await;
    assert_eq!(expect_error(&create, StatusCode::FORBIDDEN, "FORBIDDEN"), refused);
    owner.create_service("weather", json!({})).await;
    let patch = owner.patch(WEATHER, json!({ "upstream": stdio })).await;
    assert_eq!(expect_error(&patch, StatusCode::FORBIDDEN, "FORBIDDEN"), refused);
    assert_eq!(owner.get(WEATHER).await.1["upstream"]["url"], "https://weather.example/mcp?token=***");

    let demo = prom_server::gateway::StdioCommand {
        name: "demo-mcp".into(),
        path: "/usr/local/bin/demo-mcp".into(),
        args: Vec::new(),
        extra_args: true,
        env: vec!["DEMO_TOKEN".into()],
    };
    let app = TestApp::spawn_with(|config| config.stdio_commands = vec![demo]).await;
    let owner = app.with_owner("acme").await;
    let (status, created) = owner.post("/v1/services", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let masked = json!({ "command": "demo-mcp", "args": ["--stdio"], "env": { "DEMO_TOKEN": "***" } });
    assert_eq!(created["upstream"], masked, "environment values are masked");
    let (status, minimal) = owner
        .post("/v1/services", json!({ "slug": "bare", "name": "Bare", "upstream": { "command": "demo-mcp" } }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{minimal}");
    assert_eq!(minimal["upstream"], json!({ "command": "demo-mcp", "args": [], "env": {} }));
    assert_eq!((&minimal["description"], &minimal["prices"]), (&json!(""), &json!({})));

    body["slug"] = json!("other");
    body["upstream"]["command"] = json!("/bin/sh");
    let other = owner.post("/v1/services", body).await;
    let refused_sh = refused.replace("\"demo-mcp\"", "\"/bin/sh\"");
    assert_eq!(expect_error(&other, StatusCode::FORBIDDEN, "FORBIDDEN"), refused_sh, "only the listed command");

    let bob = app.with_owner("bob-co").await;
    let (_, seen) = bob.get("/v1/services/local").await;
    assert!(seen.get("upstream").is_none() && !seen.to_string().contains("s3cret"), "{seen}");
    let logged = owner.audit("").await;
    assert!(!format!("{logged:?}").contains("s3cret"), "stdio secrets stay out of the audit log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_change_writes_its_audit_row() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let admin = app.with_user("acme", "admin@acme.example", Role::Admin).await;
    owner.create_service("weather", json!({ "search": "250" })).await;
    assert_eq!(
        admin.patch(WEATHER, json!({ "name": "Weather Pro", "prices": { "search": "300" } })).await.0,
        StatusCode::OK
    );
    assert_eq!(owner.delete(WEATHER).await.0, StatusCode::NO_CONTENT);

    let events: Vec<Value> = owner
        .audit("")
        .await
        .into_iter()
        .filter(|event| event["action"].as_str().is_some_and(|action| action.starts_with("service.")))
        .collect();
    assert_eq!(actions(&events), ["service.delete", "service.update", "service.create"]);
    let by = |user: &TestUser| json!({ "type": "user", "id": user.user_id, "name": user.email });
    let actors: Vec<_> = events.iter().map(|event| event["actor"].clone()).collect();
    assert_eq!(actors, [by(&owner), by(&admin), by(&owner)]);
    let target = |label: &str| json!({ "type": "service", "id": "weather", "label": label });
    let targets: Vec<_> = events.iter().map(|event| event["target"].clone()).collect();
    assert_eq!(targets, [target("Weather Pro"), target("Weather Pro"), target("weather service")]);
    assert_eq!(
        events[2]["details"],
        json!({ "upstream": "http", "prices": { "search": "250" }, "charge_tool_errors": false })
    );
    assert_eq!(
        events[1]["details"],
        json!({
            "changed": ["name", "prices"],
            "upstream": "http",
            "prices": { "before": { "search": "250" }, "after": { "search": "300" } },
        })
    );
    assert!(events.iter().all(|event| event["ip"] == "127.0.0.1"), "{events:?}");
    assert!(!format!("{events:?}").contains("upstream-secret"), "upstream URLs stay out of the audit log");
    assert_eq!(actions(&owner.audit("?action=service.create").await), ["service.create"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_the_gateway_directory_at_once() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let slug = ServiceSlug::parse("weather").expect("a valid slug");
    let lookup = || async { app.state.services.get(&slug).await.expect("the directory answers") };

    assert!(lookup().await.is_none(), "the miss is cached now");
    owner.create_service("weather", json!({ "search": "250" })).await;
    let found = lookup().await.expect("published services are found at once");
    assert_eq!(found.price_of("search").units(), 250);

    assert_eq!(owner.patch(WEATHER, json!({ "prices": { "search": "300" } })).await.0, StatusCode::OK);
    assert_eq!(lookup().await.expect("still there").price_of("search").units(), 300);

    assert_eq!(owner.delete(WEATHER).await.0, StatusCode::NO_CONTENT);
    assert!(lookup().await.is_none(), "deleted services are gone at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_the_services_endpoints() {
    let app = TestApp::spawn().await;
    let (status, document) = app.client.get("/v1/openapi.json", Cred::None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = &document["paths"];
    for method in ["post", "get"] {
        assert!(paths["/v1/services"][method].is_object(), "{method} /v1/services in {paths}");
    }
    for method in ["get", "patch", "delete"] {
        assert!(paths["/v1/services/{slug}"][method].is_object(), "{method} /v1/services/{{slug}} in {paths}");
    }
    assert!(document["components"]["schemas"]["ServiceView"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_owners_and_admins_see_the_upstream_and_its_secrets_are_masked() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let admin = app.with_user("acme", "admin@acme.example", Role::Admin).await;
    let member = app.with_user("acme", "member@acme.example", Role::Member).await;
    let mut body = service_body("weather", json!({}));
    body["upstream"] = json!({ "url": "https://svc:hunter2@weather.example/mcp?token=upstream-secret&region=eu" });
    let (status, created) = owner.post("/v1/services", body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");

    let masked = json!({ "url": "https://***:***@weather.example/mcp?token=***&region=***" });
    for (who, user) in [("owner", &owner), ("admin", &admin)] {
        let (status, read) = user.get(WEATHER).await;
        assert_eq!(status, StatusCode::OK, "{read}");
        assert_eq!(read["upstream"], masked, "{who}");
        assert_eq!(services_seen_by(user).await[0]["upstream"], masked, "{who}");
    }
    assert_eq!(created["upstream"], masked, "the create answer too");

    let (status, read) = member.get(WEATHER).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert!(read.get("upstream").is_none(), "a member sees no upstream: {read}");
    let listed = services_seen_by(&member).await;
    assert!(listed[0].get("upstream").is_none(), "{listed:?}");
    for secret in ["upstream-secret", "hunter2"] {
        for text in [read.to_string(), format!("{listed:?}"), created.to_string()] {
            assert!(!text.contains(secret), "{secret} shown: {text}");
        }
    }
}
