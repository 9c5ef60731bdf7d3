//! The suite's one helper: [`TestApp::spawn`] runs the real server (`prom_server::serve`) on
//! `127.0.0.1:0` over a fresh database — a temp SQLite file, or a fresh PostgreSQL schema when
//! `PROM_TEST_DATABASE_URL` is set — and hands out an HTTP client and fixture builders
//! (signed-in users of a tenant, minted keys).

use std::sync::Arc;
use std::time::Duration;

use prom_core::access::Role;
use prom_core::audit::AuditContext;
use prom_core::kdf::KdfParams;
use prom_core::money::Amount;
use prom_core::store::{ProvisionMember, ProvisionOutcome};
use prom_core::user::{Email, Password, TenantSlug};
use prom_server::{AppState, ServerConfig};
use prom_store::{Database, SqlStore};
use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Points the suite at a PostgreSQL database; each test then gets its own schema in it.
const DATABASE_URL_VAR: &str = "PROM_TEST_DATABASE_URL";

/// The password of every provisioned user.
pub const PASSWORD: &str = "correct horse battery staple";

/// Argon2id costs low enough that a test spends no noticeable time hashing.
const FAST_KDF: KdfParams = KdfParams { m_cost_kib: 256, t_cost: 1, p_cost: 1 };

/// A running server with its own database. Dropping it stops the server.
#[derive(Debug)]
pub struct TestApp {
    pub state: AppState,
    pub client: Client,
    shutdown: Option<oneshot::Sender<()>>,
    /// Keeps the SQLite file alive as long as the server.
    _database: TestDatabase,
}

#[derive(Debug)]
enum TestDatabase {
    Sqlite { _dir: TempDir },
    Postgres,
}

/// The settings every test starts from: production defaults with cheap hashing, throttles
/// loose enough that only a test that means to be throttled ever is, and the upstreams the tests
/// run on loopback allowed (as an operator allows its own network).
pub fn test_config() -> ServerConfig {
    ServerConfig {
        egress: prom_server::egress::EgressConfig {
            allow_cidrs: vec!["127.0.0.0/8".into(), "::1/128".into()],
            allow_http: true,
            ..Default::default()
        },
        key_kdf: FAST_KDF,
        password_kdf: FAST_KDF,
        unknown_key_burst: 1000,
        unknown_key_per_sec: 1000.0,
        unknown_key_global_burst: 100_000,
        unknown_key_global_per_sec: 100_000.0,
        login_burst: 1000,
        login_per_sec: 1000.0,
        ..ServerConfig::default()
    }
}

/// The operator's command for the suite's stdio upstreams: `python3` (found on this machine's
/// usual paths), any script argument, and the one environment name the fixture reads.
pub fn python_stdio() -> prom_server::gateway::StdioCommand {
    let path = ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
        .expect("python3 in /usr/bin, /usr/local/bin or /bin");
    prom_server::gateway::StdioCommand {
        name: "python3".into(),
        path: path.into(),
        args: Vec::new(),
        extra_args: true,
        env: vec!["FAKE_SETTING".into()],
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns with [`test_config`] changed by `configure` (another environment, tight throttles).
    pub async fn spawn_with(configure: impl FnOnce(&mut ServerConfig)) -> Self {
        Self::spawn_with_fee(0, configure).await
    }

    /// [`TestApp::spawn_with`], on an embedded ledger whose fee is `fee`.
    pub async fn spawn_with_fee(fee: u128, configure: impl FnOnce(&mut ServerConfig)) -> Self {
        let (store, database) = fresh_store().await;
        let mut config = test_config();
        configure(&mut config);
        let ledger = Arc::new(prom_store::EmbeddedLedger::new(
            store.clone(),
            prom_store::EmbeddedLedgerConfig { fee: Amount::new(fee), ..Default::default() },
            Arc::new(prom_core::ledger::SystemClock),
        ));
        let state =
            AppState::build(Arc::new(store.clone()), ledger, config).await.expect("build the application state");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a local port");
        let addr = listener.local_addr().expect("the bound address");
        let (shutdown, stop) = oneshot::channel::<()>();
        let server = prom_server::serve(listener, state.clone(), async move {
            let _ = stop.await;
        });
        tokio::spawn(async move {
            if let Err(err) = server.await {
                eprintln!("the test server stopped with an error: {err}");
            }
        });
        let client = Client::new(format!("http://{addr}"));
        Self { state, client, shutdown: Some(shutdown), _database: database }
    }

    /// Makes sure `tenant` exists and `email` is a member of it with `role` and [`PASSWORD`].
    pub async fn provision(&self, tenant: &str, email: &str, role: Role) -> ProvisionOutcome {
        let password_hash = self
            .state
            .passwords
            .hash(&Password::new(PASSWORD.to_owned()).expect("a valid password"))
            .expect("hash the password");
        let request = ProvisionMember {
            email: Email::parse(email).expect("a valid e-mail address"),
            password_hash: Some(password_hash),
            tenant: TenantSlug::parse(tenant).expect("a valid tenant slug"),
            role,
        };
        self.state.store.provision_member(request, &AuditContext::admin_cli()).await.expect("provision the member")
    }

    /// Provisions `email` as `role` of `tenant` and signs in through `POST /v1/auth/login`.
    pub async fn with_user(&self, tenant: &str, email: &str, role: Role) -> TestUser {
        let outcome = self.provision(tenant, email, role).await;
        let (status, body) = self
            .client
            .post(
                "/v1/auth/login",
                Cred::None,
                Some(&json!({ "email": email, "password": PASSWORD, "tenant": tenant })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "sign-in of {email} failed: {body}");
        TestUser {
            client: self.client.clone(),
            token: str_field(&body, "token"),
            email: email.to_owned(),
            tenant: tenant.to_owned(),
            tenant_id: outcome.tenant.id.to_string(),
            user_id: outcome.user.id.to_string(),
        }
    }

    /// The owner of `tenant`, `owner@<tenant>.example`.
    pub async fn with_owner(&self, tenant: &str) -> TestUser {
        self.with_user(tenant, &format!("owner@{tenant}.example"), Role::Owner).await
    }

    /// `GET /v1/whoami` with `key` in `x-api-key`.
    pub async fn whoami(&self, key: &str) -> (StatusCode, Value) {
        self.client.get("/v1/whoami", Cred::ApiKey(key)).await
    }

    /// Writes out pending `last_used_at` updates now instead of at the next flush tick.
    pub async fn flush_usage(&self) {
        self.state.usage.flush().await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

async fn fresh_store() -> (SqlStore, TestDatabase) {
    match std::env::var(DATABASE_URL_VAR).ok().filter(|url| !url.trim().is_empty()) {
        Some(url) => {
            // Schemas are left behind: dropping them needs a PostgreSQL client this crate does not
            // depend on, and a leftover schema is handy when a test fails.
            let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
            eprintln!("PostgreSQL schema for this test: {schema}");
            let database = Database::Postgres { url, schema: Some(schema) };
            let store = SqlStore::open(&database).await.expect("open the PostgreSQL store");
            (store, TestDatabase::Postgres)
        }
        None => {
            let dir = TempDir::new().expect("create a temp dir for the SQLite file");
            let database = Database::Sqlite { path: dir.path().join("prometheus.sqlite3") };
            let store = SqlStore::open(&database).await.expect("open the SQLite store");
            (store, TestDatabase::Sqlite { _dir: dir })
        }
    }
}

/// How a request authenticates.
#[derive(Clone, Copy, Debug)]
pub enum Cred<'a> {
    None,
    /// `Authorization: Bearer <token>` (a session token or an API key).
    Bearer(&'a str),
    /// `x-api-key: <key>`.
    ApiKey(&'a str),
}

/// A JSON client for one test server.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

/// A response with everything a test may look at.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    /// The body as JSON; `Null` when it is empty.
    pub body: Value,
}

impl Client {
    fn new(base: String) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build the HTTP client");
        Self { http, base }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to `path` carrying `cred`, to add headers or a body to before [`Client::send`].
    pub fn request(&self, method: Method, path: &str, cred: Cred<'_>) -> RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match cred {
            Cred::None => request,
            Cred::Bearer(token) => request.header("authorization", format!("Bearer {token}")),
            Cred::ApiKey(key) => request.header("x-api-key", key),
        }
    }

    pub async fn send(&self, request: RequestBuilder) -> TestResponse {
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("read the response body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|err| panic!("the body is not JSON ({err}): {text}"))
        };
        TestResponse { status, headers, text, body }
    }

    pub async fn get(&self, path: &str, cred: Cred<'_>) -> (StatusCode, Value) {
        self.send(self.request(Method::GET, path, cred)).await.pair()
    }

    /// POSTs `body` as JSON, or nothing at all when `body` is `None`.
    pub async fn post(&self, path: &str, cred: Cred<'_>, body: Option<&Value>) -> (StatusCode, Value) {
        let request = self.request(Method::POST, path, cred);
        let request = match body {
            Some(body) => request.json(body),
            None => request,
        };
        self.send(request).await.pair()
    }

    pub async fn delete(&self, path: &str, cred: Cred<'_>) -> (StatusCode, Value) {
        self.send(self.request(Method::DELETE, path, cred)).await.pair()
    }

    /// PATCHes `body` as JSON.
    pub async fn patch(&self, path: &str, cred: Cred<'_>, body: &Value) -> (StatusCode, Value) {
        self.send(self.request(Method::PATCH, path, cred).json(body)).await.pair()
    }

    /// PUTs `body` as JSON.
    pub async fn put(&self, path: &str, cred: Cred<'_>, body: &Value) -> (StatusCode, Value) {
        self.send(self.request(Method::PUT, path, cred).json(body)).await.pair()
    }
}

impl TestResponse {
    pub fn pair(self) -> (StatusCode, Value) {
        (self.status, self.body)
    }

    /// Asserts that this is the error `code` with `status` and returns its message. Errors that
    /// ask for an API key must carry a `WWW-Authenticate` challenge.
    pub fn expect_error(&self, status: StatusCode, code: &str) -> String {
        let message = expect_error(&(self.status, self.body.clone()), status, code);
        if matches!(code, "TOKEN_MISSING" | "TOKEN_INVALID") {
            let challenge = self.headers.get(WWW_AUTHENTICATE).expect("a WWW-Authenticate header on a 401");
            assert!(challenge.to_str().expect("a text header").starts_with("Bearer"), "challenge: {challenge:?}");
        }
        message
    }
}

/// Asserts that a response is the JSON error `code` with `status`, and returns its message.
pub fn expect_error(response: &(StatusCode, Value), status: StatusCode, code: &str) -> String {
    let (got_status, body) = response;
    assert_eq!(*got_status, status, "unexpected status; body: {body}");
    assert_eq!(body["error"]["code"], code, "unexpected error code; body: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_else(|| panic!("an error message in {body}"));
    assert!(!message.is_empty(), "an empty error message");
    message.to_owned()
}

/// A string field of a JSON object.
pub fn str_field(body: &Value, field: &str) -> String {
    body[field].as_str().unwrap_or_else(|| panic!("a string {field:?} in {body}")).to_owned()
}

/// Asserts that `text` holds neither `key` nor any 16-character run of its secret part.
pub fn assert_no_key_material(text: &str, key: &str) {
    assert!(!text.contains(key), "the key leaked into: {text}");
    let secret = key.get(10..).unwrap_or(key);
    for start in (0..secret.len().saturating_sub(16)).step_by(8) {
        let run = &secret[start..start + 16];
        assert!(!text.contains(run), "part of the key's secret ({run}) leaked into: {text}");
    }
}

/// A signed-in person, with a client that sends their session token.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub client: Client,
    pub token: String,
    pub email: String,
    pub tenant: String,
    pub tenant_id: String,
    pub user_id: String,
}

impl TestUser {
    pub fn cred(&self) -> Cred<'_> {
        Cred::Bearer(&self.token)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.client.get(path, self.cred()).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.client.post(path, self.cred(), Some(&body)).await
    }

    /// POSTs with no body at all.
    pub async fn post_empty(&self, path: &str) -> (StatusCode, Value) {
        self.client.post(path, self.cred(), None).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.client.delete(path, self.cred()).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.client.patch(path, self.cred(), &body).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.client.put(path, self.cred(), &body).await
    }

    /// Publishes `slug` with an HTTP upstream and `prices` through the API; returns its view.
    pub async fn create_service(&self, slug: &str, prices: Value) -> Value {
        let (status, body) = self.post("/v1/services", service_body(slug, prices)).await;
        assert_eq!(status, StatusCode::CREATED, "publishing service {slug:?} failed: {body}");
        body
    }

    /// Creates a key through the API; returns its id and the key itself.
    pub async fn create_key(&self, label: &str) -> (String, String) {
        let (status, body) = self.post("/v1/keys", json!({ "label": label })).await;
        assert_eq!(status, StatusCode::CREATED, "creating key {label:?} failed: {body}");
        (str_field(&body, "id"), str_field(&body, "key"))
    }

    /// `GET /v1/keys/{id}`, asserting 200.
    pub async fn key(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/keys/{id}")).await;
        assert_eq!(status, StatusCode::OK, "reading key {id} failed: {body}");
        body
    }

    /// The tenant's keys from `GET /v1/keys`.
    pub async fn keys(&self) -> Vec<Value> {
        let (status, body) = self.get("/v1/keys").await;
        assert_eq!(status, StatusCode::OK, "listing keys failed: {body}");
        body["keys"].as_array().unwrap_or_else(|| panic!("a keys array in {body}")).clone()
    }

    /// The events of `GET /v1/audit<query>` (query is empty or starts with `?`).
    pub async fn audit(&self, query: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/v1/audit{query}")).await;
        assert_eq!(status, StatusCode::OK, "reading the audit log failed: {body}");
        body["events"].as_array().unwrap_or_else(|| panic!("an events array in {body}")).clone()
    }
}

/// The `action` of each event, in order.
pub fn actions(events: &[Value]) -> Vec<&str> {
    events.iter().map(|event| event["action"].as_str().unwrap_or("<none>")).collect()
}

/// A `POST /v1/services` body: `slug` with an HTTP upstream and `prices`.
pub fn service_body(slug: &str, prices: Value) -> Value {
    json!({
        "slug": slug,
        "name": format!("{slug} service"),
        "description": format!("What {slug} does."),
        "upstream": { "url": format!("https://{slug}.example/mcp?token=upstream-secret") },
        "prices": prices,
    })
}
