//! The `prom` processes of the crash test: `prom serve --demo` started, killed and stopped on one
//! data directory, and `prom admin` run beside it.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

const PROM: &str = env!("CARGO_BIN_EXE_prom");

/// One life of `prom serve --demo`.
pub struct Server {
    child: Child,
    pub base: String,
    pub port: u16,
    stderr: JoinHandle<String>,
    /// When its banner was read: its settler ticks about every second from here.
    pub ready_at: Instant,
}

/// A `prom` command with a clean environment and fast Argon2 (tests only).
fn prom(home: &Path) -> Command {
    let mut cmd = Command::new(PROM);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("PROM_KEY_KDF__M_COST_KIB", "256")
        .env("PROM_KEY_KDF__T_COST", "1")
        .env("PROM_PASSWORD_KDF__M_COST_KIB", "256")
        .env("PROM_PASSWORD_KDF__T_COST", "1")
        .env("PROM_LOG", "warn")
        .env("NO_COLOR", "1");
    cmd
}

/// Starts the server and waits for its demo banner; `Err` with its logs if it exits first (a port
/// still taken, say).
pub async fn start_server(home: &Path, data: &Path, listen: &str) -> Result<Server, String> {
    let mut child = prom(home)
        // Settle every second, so that kills can land in the middle of a settlement.
        .env("PROM_SETTLE_INTERVAL_SECS", "1")
        // Paid calls whose agent hung up keep their holds this long, waiting for a resumption.
        .env("PROM_PAID_RESULT_SECS", "2")
        .args(["serve", "--demo", "--listen", listen, "--data-dir"])
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn prom serve");
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text).await;
        text
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).await.unwrap() == 0 {
                return false;
            }
            banner.push_str(&line);
            if line.starts_with("=====") && banner.contains("Agent key:") {
                return true;
            }
        }
    })
    .await
    .expect("the demo banner within 60 s");
    if !ready {
        let _ = child.wait().await;
        return Err(stderr.await.unwrap_or_default());
    }
    tokio::spawn(async move {
        let mut rest = String::new();
        let _ = stdout.read_to_string(&mut rest).await;
    });
    let mcp_url = banner
        .lines()
        .find_map(|line| line.strip_prefix("MCP service:"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no MCP URL in:\n{banner}"));
    let base = mcp_url.strip_suffix("/mcp/demo").unwrap().to_owned();
    let port = base.rsplit(':').next().unwrap().parse().unwrap();
    Ok(Server { child, base, port, stderr, ready_at: Instant::now() })
}

impl Server {
    /// SIGKILL: no drain, no flush, no last settlement. Returns what it logged.
    pub async fn kill(mut self) -> String {
        self.child.kill().await.expect("SIGKILL");
        self.stderr.await.unwrap()
    }

    /// SIGTERM, and a clean exit.
    pub async fn stop(mut self) -> String {
        let pid = self.child.id().expect("pid").to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("a graceful stop within 30 s")
            .unwrap();
        let logs = self.stderr.await.unwrap();
        assert!(status.success(), "prom serve exited with {status}:\n{logs}");
        logs
    }
}

/// Runs `prom admin …` against the data directory (the server may be running).
pub async fn prom_admin(home: &Path, data: &Path, args: &[&str], stdin: &str) -> String {
    let mut cmd = prom(home);
    cmd.arg("admin").args(args).arg("--data-dir").arg(data);
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn prom admin");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "prom admin {args:?} failed:\n{text}");
    text
}

/// `released=N` of the start-up warning about holds abandoned by the previous process.
pub fn released_at_start(logs: &str) -> u64 {
    logs.lines()
        .filter(|line| line.contains("released holds of calls that never completed"))
        .filter_map(|line| line.split("released=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}
