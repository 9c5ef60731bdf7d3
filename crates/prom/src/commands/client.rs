//! The CLI's side of the management API: the saved session and an HTTP client that turns the
//! server's `{"error":{"code","message"}}` into a readable failure.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::EXIT_USAGE;

/// What `prom login` saves. The token is a secret: the file is created with mode 0600.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedSession {
    pub server: String,
    pub token: String,
    pub email: String,
    pub tenant: String,
    pub expires_at: String,
}

/// `$PROM_CONFIG_DIR`, else the platform's config directory plus `prometheus`.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PROM_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    dirs::config_dir()
        .map(|dir| dir.join("prometheus"))
        .context("cannot find a config directory for the session: set PROM_CONFIG_DIR")
}

fn session_path() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("session.json"))
}

impl SavedSession {
    pub fn load() -> anyhow::Result<Self> {
        let path = session_path()?;
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                bail!("you are not signed in: run `prom login --server URL` first")
            }
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
        };
        serde_json::from_str(&text).with_context(|| format!("{} is damaged: run `prom login` again", path.display()))
    }

    pub fn save(&self) -> anyhow::Result<PathBuf> {
        let path = session_path()?;
        let dir = path.parent().context("session path has no directory")?;
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).with_context(|| format!("cannot write {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        Ok(path)
    }

    pub fn forget() -> anyhow::Result<()> {
        match fs::remove_file(session_path()?) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err.into()),
            _ => Ok(()),
        }
    }
}

/// A failure the server reported.
#[derive(Debug)]
pub struct ApiFailure {
    pub code: String,
    pub message: String,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if self.code == "TOKEN_INVALID" && self.message.contains("session") {
            write!(f, "\n(hint: run `prom login` again)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiFailure {}

impl ApiFailure {
    pub fn exit_code(&self) -> u8 {
        match self.code.as_str() {
            "TOKEN_MISSING" | "TOKEN_INVALID" | "INVALID_CREDENTIALS" => EXIT_USAGE,
            _ => 1,
        }
    }
}

/// How a request authenticates.
#[derive(Clone, Copy, Debug)]
pub enum Credential<'a> {
    None,
    Session(&'a str),
    ApiKey(&'a str),
}

#[derive(Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
}

impl ApiClient {
    pub fn new(server: &str) -> anyhow::Result<Self> {
        let base = server.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("the server must be an http:// or https:// URL, like http://127.0.0.1:7070");
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("prom-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { http, base })
    }

    /// Sends a request and returns the JSON body of a success (`Value::Null` for 204).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        credential: Credential<'_>,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        match credential {
            Credential::None => {}
            Credential::Session(token) => request = request.bearer_auth(token),
            Credential::ApiKey(key) => request = request.header("x-api-key", key),
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response =
            request.send().await.with_context(|| format!("cannot reach {}: is the server running?", self.base))?;
        let status = response.status();
        let text = response.text().await.context("the server's answer was cut off")?;
        if status.is_success() {
            if text.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).context("the server's answer is not JSON");
        }
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        let error = parsed.as_ref().and_then(|v| v.get("error"));
        let code = error.and_then(|e| e.get("code")).and_then(Value::as_str).unwrap_or("HTTP_ERROR").to_owned();
        let message = error
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map_or_else(|| format!("the server answered {status}"), str::to_owned);
        Err(ApiFailure { code, message }.into())
    }
}
