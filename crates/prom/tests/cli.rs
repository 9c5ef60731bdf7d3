//! The binary as a newcomer uses it: `prom serve` on the embedded default, `prom admin
//! create-user` while it runs, `prom login`, `prom admin mint` into the wallet, `prom keys …`,
//! `whoami` with both headers, revoke and the very next call refused. Then the leak check: no file in the data directory, no log line
//! and no saved CLI file contains any minted key's secret.

// Tests and benchmarks fail by panicking; the library lints against it do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const PROM: &str = env!("CARGO_BIN_EXE_prom");
const PASSWORD: &str = "correct horse battery staple";

struct Server {
    child: Child,
    base: String,
    stderr_tail: tokio::task::JoinHandle<String>,
    first_lines: String,
}

/// Environment shared by the server and the CLI: fast Argon2 for tests, debug logs everywhere.
fn base_env(cmd: &mut Command, home: &Path) {
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("PROM_CONFIG_DIR", home.join("cli"))
        .env("PROM_LOG", "debug")
        .env("PROM_KEY_KDF__M_COST_KIB", "256")
        .env("PROM_KEY_KDF__T_COST", "1")
        .env("PROM_PASSWORD_KDF__M_COST_KIB", "256")
        .env("PROM_PASSWORD_KDF__T_COST", "1")
        // The service published below names a loopback upstream: the operator allows exactly it.
        .env("PROM_EGRESS__ALLOW_HOSTS", "[\"127.0.0.1:9\"]");
}

async fn start_server(home: &Path, data_dir: &Path) -> Server {
    let mut cmd = Command::new(PROM);
    base_env(&mut cmd, home);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn prom serve");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut first_lines = String::new();
    let base = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).await.expect("read stderr") == 0 {
                panic!("prom serve exited early:\n{first_lines}");
            }
            first_lines.push_str(&line);
            if let Some(rest) = line.strip_prefix("Prometheus is serving on ") {
                break rest.split_whitespace().next().expect("address").to_owned();
            }
        }
    })
    .await
    .expect("server start-up timed out");
    let stderr_tail = tokio::spawn(async move {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest).await;
        rest
    });
    Server { child, base, stderr_tail, first_lines }
}

impl Server {
    /// Stops the server with SIGTERM (graceful) and returns everything it logged.
    async fn stop(mut self) -> String {
        let pid = self.child.id().expect("pid").to_string();
        let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(killed.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("graceful stop")
            .expect("wait");
        assert!(status.success(), "prom serve exited with {status}");
        let rest = self.stderr_tail.await.expect("stderr task");
        format!("{}{rest}", self.first_lines)
    }
}

async fn prom(home: &Path, args: &[&str], stdin: Option<&str>, extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(PROM);
    base_env(&mut cmd, home);
    for (name, value) in extra_env {
        cmd.env(name, value);
    }
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn prom");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.expect("write stdin");
    }
    drop(input);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("prom timed out")
        .expect("prom output")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[track_caller]
fn ok(output: &Output) -> String {
    assert!(output.status.success(), "prom failed ({}):\n{}", output.status, text(output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() { stack.push(path) } else { found.push(path) }
        }
    }
    found
}

async fn whoami(base: &str, header: (&str, String)) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/whoami"))
        .header(header.0, header.1)
        .send()
        .await
        .expect("whoami request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newcomer_walk_and_no_key_material_leaks() {
    let home = tempfile::tempdir().expect("tempdir");
    let data_dir = home.path().join("prom-data");
    let server = start_server(home.path(), &data_dir).await;
    let base = server.base.clone();
    let h = home.path();

    // An owner, created while the server runs (SQLite WAL lets both processes in).
    let created = ok(&prom(
        h,
        &[
            "admin",
            "create-user",
            "--email",
            "ada@example.com",
            "--tenant",
            "acme",
            "--role",
            "owner",
            "--password-stdin",
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
        Some(PASSWORD),
        &[],
    )
    .await);
    assert!(created.contains("Created user ada@example.com"), "{created}");

    // A second server on the same data is refused: the running one keeps holds in memory.
    let second =
        prom(h, &["serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir.to_str().unwrap()], None, &[]).await;
    assert!(!second.status.success(), "a second server started on the same data");
    assert!(text(&second).contains("another `prom serve` is already using"), "{}", text(&second));

    // A wrong password is refused with the stable code and exit code 2.
    let refused = prom(
        h,
        &["login", "--server", &base, "--email", "ada@example.com", "--password-stdin"],
        Some("wrong password!!"),
        &[],
    )
    .await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused).contains("INVALID_CREDENTIALS"), "{}", text(&refused));

    let login = ok(&prom(
        h,
        &["login", "--server", &base, "--email", "ada@example.com", "--password-stdin"],
        Some(PASSWORD),
        &[],
    )
    .await);
    assert!(login.contains("owner of tenant acme"), "{login}");
    let session_file = h.join("cli/session.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&session_file).expect("session file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the saved session must be private");
    }

    // Fund the tenant's wallet on the embedded ledger while the server runs, and see the balance
    // through the API. A service to read an allowance of, published with the saved session:
    let saved: Value = serde_json::from_slice(&std::fs::read(&session_file).expect("session file")).expect("json");
    let token = saved["token"].as_str().expect("token").to_owned();
    let published = reqwest::Client::new()
        .post(format!("{base}/v1/services"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "slug": "weather", "name": "Weather", "upstream": { "url": "http://127.0.0.1:9/mcp" } }))
        .send()
        .await
        .expect("publish a service");
    assert_eq!(published.status(), 201, "{}", published.text().await.unwrap_or_default());
    let data = data_dir.to_str().unwrap();
    for (amount, balance) in [("5000", "5000"), ("250", "5250")] {
        let minted =
            ok(&prom(h, &["admin", "mint", "--tenant", "acme", "--amount", amount, "--data-dir", data], None, &[])
                .await);
        assert!(minted.contains(&format!("balance is now {balance}")), "{minted}");
    }
    let allowance: Value = reqwest::Client::new()
        .get(format!("{base}/v1/services/weather/allowance"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("read the allowance")
        .json()
        .await
        .expect("json");
    assert_eq!(allowance["wallet_balance"], "5250", "{allowance}");
    assert_eq!(allowance["approved"], "0");
    let nobody =
        prom(h, &["admin", "mint", "--tenant", "nobody", "--amount", "5", "--data-dir", data], None, &[]).await;
    assert_eq!(nobody.status.code(), Some(1));
    assert!(text(&nobody).contains("no tenant nobody") && text(&nobody).contains("create-user"), "{}", text(&nobody));
    for bad in ["1.5", "-5", "lots"] {
        let refused =
            prom(h, &["admin", "mint", "--tenant", "acme", "--amount", bad, "--data-dir", data], None, &[]).await;
        assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
        assert!(text(&refused).contains("decimal digits"), "{}", text(&refused));
    }

    // Mint keys: the human form shows the key once; --json gives it to scripts.
    let human = ok(&prom(h, &["keys", "create", "--label", "laptop agent"], None, &[]).await);
    assert!(human.contains("only time the key is shown"), "{human}");
    let first_key = human
        .split_whitespace()
        .find(|w| w.starts_with("prom_live_") && w.len() == 74)
        .expect("key in output")
        .to_owned();
    let json: Value =
        serde_json::from_str(&ok(&prom(h, &["keys", "create", "--label", "ci runner", "--json"], None, &[]).await))
            .expect("json");
    let key = json["key"].as_str().expect("key").to_owned();
    let key_id = json["id"].as_str().expect("id").to_owned();
    let mut minted = vec![first_key.clone(), key.clone()];

    // The list shows display forms, never keys.
    let list = ok(&prom(h, &["keys", "list"], None, &[]).await);
    assert!(list.contains(&format!("prom_live_...{}", &key[key.len() - 4..])), "{list}");
    assert!(!list.contains(&key[10..]) && !list.contains(&first_key[10..]));

    // whoami with both headers, and through the CLI with the variables MCP hosts use.
    for header in [("x-api-key", key.clone()), ("authorization", format!("Bearer {key}"))] {
        let (status, body) = whoami(&base, header).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["key_id"], key_id.as_str());
        assert_eq!(body["tenant"]["slug"], "acme");
        assert_eq!(body["label"], "ci runner");
    }
    for var in ["PROMETHEUS_API_KEY", "AGENT_TOKEN"] {
        let out = ok(&prom(h, &["whoami", "--server", &base], None, &[(var, &key)]).await);
        assert!(out.contains("ci runner") && out.contains("acme"), "{out}");
    }
    let missing = prom(h, &["whoami", "--server", &base], None, &[]).await;
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing).contains("TOKEN_MISSING") && text(&missing).contains("PROMETHEUS_API_KEY"));

    // Rotation with a grace period: both keys work for now.
    let rotated: Value =
        serde_json::from_str(&ok(&prom(h, &["keys", "rotate", &key_id, "--grace", "3600", "--json"], None, &[]).await))
            .expect("json");
    let new_key = rotated["key"].as_str().expect("new key").to_owned();
    minted.push(new_key.clone());
    assert_eq!(whoami(&base, ("x-api-key", new_key.clone())).await.0, 200);
    assert_eq!(whoami(&base, ("x-api-key", key.clone())).await.0, 200);

    // Revoke: the very next call is refused.
    let revoked = ok(&prom(h, &["keys", "revoke", &key_id], None, &[]).await);
    assert!(revoked.contains("Revoked"), "{revoked}");
    let (status, body) = whoami(&base, ("x-api-key", key.clone())).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "TOKEN_INVALID");
    assert_eq!(whoami(&base, ("x-api-key", new_key.clone())).await.0, 200);

    // A key sent where it does not belong (query string, odd headers) must not be logged either.
    let stray = minted[0].clone();
    let _ = reqwest::Client::new()
        .get(format!("{base}/v1/whoami?api_key={stray}"))
        .header("x-forwarded-for", &stray)
        .send()
        .await;
    let _ = reqwest::Client::new().get(format!("{base}/v1/keys/{stray}")).send().await;

    // The audit log, through the CLI.
    let audit = ok(&prom(h, &["audit"], None, &[]).await);
    for action in
        // (`user.login_failed` rows are written once their minute is over.)
        ["api_key.create", "api_key.rotate", "api_key.revoke", "user.login", "member.add"]
    {
        assert!(audit.contains(action), "missing {action} in:\n{audit}");
    }
    let delete = ok(&prom(h, &["keys", "delete", rotated["id"].as_str().expect("id")], None, &[]).await);
    assert!(delete.contains("Deleted"));
    assert_eq!(whoami(&base, ("x-api-key", new_key.clone())).await.0, 401);
    ok(&prom(h, &["logout"], None, &[]).await);
    let after_logout = prom(h, &["keys", "list"], None, &[]).await;
    assert!(!after_logout.status.success());

    let logs = server.stop().await;
    assert!(logs.contains("request"), "the server logged requests at debug level:\n{logs}");

    // Nothing on disk or in the logs carries a key's secret part.
    let data_files = files_under(&data_dir);
    assert!(data_files.iter().any(|p| p.extension().is_some_and(|e| e == "sqlite3")), "{data_files:?}");
    let cli_files = files_under(&h.join("cli"));
    for secret in minted.iter().map(|k| &k[10..]) {
        assert_eq!(secret.len(), 64);
        assert!(!logs.contains(secret), "a key's secret reached the server log");
        for file in data_files.iter().chain(&cli_files) {
            let bytes = std::fs::read(file).expect("read data file");
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a key's secret is stored in {}",
                file.display()
            );
        }
    }
}
