//! The tokens `prom connect` keeps between runs: one JSON file per gateway URL in the user's
//! config directory, readable by the user alone.
//!
//! The file holds a refresh token, which is as good as the permission itself until it expires,
//! so the directory is created 0700 and the file 0600, and a new version is written to a
//! temporary file (already 0600) and renamed over the old one: a reader never sees half a file,
//! and the secret never sits in a file with looser permissions, even for a moment.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Overrides where the files are kept (tests use a temporary directory).
const DIR_VARIABLE: &str = "PROM_CONNECT_STATE_DIR";

/// What one browser sign-in left behind for one gateway URL.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Stored {
    /// The URL `prom connect` was given; a file whose URL differs is not used.
    pub mcp_url: String,
    pub issuer: String,
    /// The protected resource the tokens are bound to (RFC 8707).
    pub resource: String,
    pub client_id: String,
    pub redirect_uri: String,
    /// Kept so that refreshing needs no discovery.
    pub token_endpoint: String,
    #[serde(serialize_with = "expose")]
    pub access_token: SecretString,
    #[serde(serialize_with = "expose_optional", default)]
    pub refresh_token: Option<SecretString>,
    /// When the access token stops working, in seconds since the Unix epoch.
    pub expires_at: u64,
}

fn expose<S: Serializer>(secret: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}

fn expose_optional<S: Serializer>(secret: &Option<SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => serializer.serialize_some(secret.expose_secret()),
        None => serializer.serialize_none(),
    }
}

/// Seconds since the Unix epoch, now.
pub(super) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

impl Stored {
    /// How long the access token still works (zero once it has expired).
    pub(super) fn remaining(&self) -> Duration {
        Duration::from_secs(self.expires_at.saturating_sub(now_secs()))
    }

    pub(super) fn same_refresh_token(&self, other: &Self) -> bool {
        match (&self.refresh_token, &other.refresh_token) {
            (Some(mine), Some(theirs)) => mine.expose_secret() == theirs.expose_secret(),
            (None, None) => true,
            _ => false,
        }
    }
}

/// The file of one gateway URL: the directory, and a name derived from the URL.
#[derive(Debug, Clone)]
pub(super) struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The file for `mcp_url` under `$PROM_CONNECT_STATE_DIR`, else `oauth/` in the CLI's config
    /// directory (`$PROM_CONFIG_DIR`, else the platform's config directory plus `prometheus`).
    pub(super) fn for_url(mcp_url: &str) -> Option<Self> {
        let dir = match std::env::var_os(DIR_VARIABLE).filter(|dir| !dir.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => crate::commands::client::config_dir().ok()?.join("oauth"),
        };
        Some(Self::in_dir(&dir, mcp_url))
    }

    pub(super) fn in_dir(dir: &Path, mcp_url: &str) -> Self {
        let digest = format!("{:x}", Sha256::digest(mcp_url.as_bytes()));
        let name = digest.get(..16).unwrap_or(&digest);
        Self { path: dir.join(format!("{name}.json")) }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The stored tokens for `mcp_url`; none when there is no file, or it is damaged or another URL's.
    pub(super) fn load(&self, mcp_url: &str) -> Option<Stored> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "cannot read the stored sign-in");
                return None;
            }
        };
        match serde_json::from_str::<Stored>(&text) {
            Ok(stored) if stored.mcp_url == mcp_url => Some(stored),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "the stored sign-in is damaged; ignoring it");
                None
            }
        }
    }

    /// Writes `stored`: a 0600 temporary file in a 0700 directory, renamed into place.
    pub(super) fn save(&self, stored: &Stored) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or_else(|| Path::new("."));
        create_private_dir(dir)?;
        let temporary = self.path.with_extension(format!("json.{}.tmp", std::process::id()));
        let written = (|| {
            let mut options = fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&temporary)?;
            // A leftover temporary file of ours may predate the mode: set it again.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(fs::Permissions::from_mode(0o600))?;
            }
            let text = serde_json::to_string_pretty(stored).map_err(std::io::Error::other)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&temporary, &self.path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        written
    }

    /// Forgets the sign-in (the permission was revoked, or has expired).
    pub(super) fn remove(&self) {
        match fs::remove_file(&self.path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %self.path.display(), %error, "cannot remove the stored sign-in");
            }
            _ => {}
        }
    }

    /// Holds the file's lock (released when the returned file is dropped) while one process
    /// refreshes: refresh tokens are single-use, and two `prom connect`s presenting the same one
    /// would look like a stolen token to the server, which then revokes the permission.
    pub(super) async fn lock(&self) -> std::io::Result<fs::File> {
        let dir = self.path.parent().unwrap_or_else(|| Path::new(".")).to_owned();
        let path = self.path.with_extension("lock");
        tokio::task::spawn_blocking(move || {
            create_private_dir(&dir)?;
            let mut options = fs::OpenOptions::new();
            options.write(true).create(true).truncate(false);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let file = options.open(&path)?;
            file.lock()?;
            Ok(file)
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir)?;
        // An existing directory keeps its mode from `create`: tighten it.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn sample(url: &str) -> Stored {
        Stored {
            mcp_url: url.to_owned(),
            issuer: "http://127.0.0.1:1".into(),
            resource: url.to_owned(),
            client_id: "c".into(),
            redirect_uri: "http://127.0.0.1:2/callback".into(),
            token_endpoint: "http://127.0.0.1:1/oauth/token".into(),
            access_token: SecretString::from("prom_at_secret"),
            refresh_token: Some(SecretString::from("prom_rt_secret")),
            expires_at: now_secs() + 100,
        }
    }

    #[test]
    fn one_private_file_per_url_that_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/oauth");
        let url = "http://127.0.0.1:1/mcp/demo";
        let file = StateFile::in_dir(&nested, url);
        let name = file.path().file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(name.len(), "0123456789abcdef.json".len(), "{name}");
        assert_ne!(file.path(), StateFile::in_dir(&nested, "http://127.0.0.1:1/mcp/other").path());
        assert!(file.load(url).is_none());

        file.save(&sample(url)).unwrap();
        let loaded = file.load(url).unwrap();
        assert_eq!(loaded.access_token.expose_secret(), "prom_at_secret");
        assert!(loaded.same_refresh_token(&sample(url)));
        assert!(loaded.remaining() > Duration::from_secs(90));
        // Another URL that happened to land on the same file is not used.
        assert!(file.load("http://127.0.0.1:1/mcp/other").is_none());
        // Nothing but the file itself is left behind.
        assert_eq!(fs::read_dir(&nested).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(file.path()), 0o600);
            assert_eq!(mode(&nested), 0o700);
        }
        file.remove();
        assert!(file.load(url).is_none());
        file.remove();
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let shown = format!("{:?}", sample("http://x/mcp/demo"));
        assert!(!shown.contains("prom_at_secret") && !shown.contains("prom_rt_secret"), "{shown}");
    }

    #[tokio::test]
    async fn the_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(dir.path(), "http://x/mcp/demo");
        let held = file.lock().await.unwrap();
        let second = file.clone();
        let waiting = tokio::spawn(async move { second.lock().await.map(drop) });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished());
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap().unwrap();
    }
}
