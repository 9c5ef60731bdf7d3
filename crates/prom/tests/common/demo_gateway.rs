//! `prom serve --demo` as a child process, shared by the tests that drive it as real clients do
//! (`interop.rs`, `browser.rs`): the gateway with the demo service behind `/mcp/demo`.

// Each test crate that includes this uses part of it.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

const PROM: &str = env!("CARGO_BIN_EXE_prom");

/// `prom serve --demo` as a child process: the gateway with the demo service behind `/mcp/demo`.
pub struct DemoGateway {
    pub child: tokio::process::Child,
    pub base: String,
    pub mcp_url: String,
    pub key: String,
    pub password: String,
    _data: tempfile::TempDir,
}

pub async fn spawn_demo_gateway() -> DemoGateway {
    spawn_demo_gateway_with(&[]).await
}

/// [`spawn_demo_gateway`] with more settings in its environment.
pub async fn spawn_demo_gateway_with(env: &[(&str, &str)]) -> DemoGateway {
    let data = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(PROM)
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("PROM_KEY_KDF__M_COST_KIB", "256")
        .env("PROM_KEY_KDF__T_COST", "1")
        .env("PROM_PASSWORD_KDF__M_COST_KIB", "256")
        .env("PROM_PASSWORD_KDF__T_COST", "1")
        .env("PROM_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let mut line = String::new();
            assert!(stdout.read_line(&mut line).await.unwrap() > 0, "prom serve --demo exited:\n{banner}");
            banner.push_str(&line);
            if line.starts_with("=====") && banner.contains("Agent key:") {
                break;
            }
        }
    })
    .await
    .expect("the demo banner");
    let field = |label: &str| {
        banner
            .lines()
            .find_map(|line| line.strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {label} in:\n{banner}"))
            .to_owned()
    };
    let mcp_url = field("MCP service:");
    let key = field("Agent key:");
    let password = banner.split("(password: ").nth(1).and_then(|rest| rest.split(')').next()).unwrap().to_owned();
    let base = mcp_url.trim_end_matches("/mcp/demo").to_owned();
    tokio::spawn(async move {
        let mut rest = String::new();
        let _ = stdout.read_to_string(&mut rest).await;
    });
    DemoGateway { child, base, mcp_url, key, password, _data: data }
}

impl DemoGateway {
    /// Signs in as the demo owner and returns a session token.
    pub async fn owner_token(&self) -> String {
        let body = json!({"email": "demo@prometheus.local", "password": self.password});
        let response =
            reqwest::Client::new().post(format!("{}/v1/auth/login", self.base)).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
    }

    pub async fn create_key(&self, token: &str, label: &str) -> (String, String) {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/keys", self.base))
            .bearer_auth(token)
            .json(&json!({"label": label}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        (body["id"].as_str().unwrap().to_owned(), body["key"].as_str().unwrap().to_owned())
    }

    pub async fn revoke(&self, token: &str, id: &str) {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/keys/{id}/revoke", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}
