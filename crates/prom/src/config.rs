//! Configuration of `prom serve` and `prom admin`: defaults, then a TOML file, then `PROM_*`
//! environment variables (nested settings with `__`, e.g. `PROM_KEY_KDF__M_COST_KIB`), then flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use prom_server::ServerConfig;
use prom_store::Database;
use serde::{Deserialize, Serialize};

use crate::cli::StorageArgs;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory of the embedded SQLite database.
    pub data_dir: PathBuf,
    /// A PostgreSQL (or SQLite) URL; overrides `data_dir`.
    pub database_url: Option<String>,
    /// `text` or `json` log lines on standard error.
    pub log_format: String,
    #[serde(flatten)]
    pub server: ServerConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            data_dir: PathBuf::from("./prom-data"),
            database_url: None,
            log_format: "text".into(),
            server: ServerConfig::default(),
        }
    }
}

impl Config {
    /// Loads the layers; `flags` adds the command line's overrides on top.
    pub fn load(storage: &StorageArgs, flags: impl FnOnce(Figment) -> Figment) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = &storage.config {
            if !file.exists() {
                anyhow::bail!("the configuration file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(Env::prefixed("PROM_").split("__").ignore(&["config", "server", "log"]));
        if let Some(dir) = &storage.data_dir {
            figment = figment.merge(("data_dir", dir)).merge(("database_url", None::<String>));
        }
        if let Some(url) = &storage.database_url {
            figment = figment.merge(("database_url", url));
        }
        let config: Config = flags(figment).extract().context("the configuration is invalid")?;
        if !matches!(config.log_format.as_str(), "text" | "json") {
            anyhow::bail!("log_format must be \"text\" or \"json\", not {:?}", config.log_format);
        }
        Ok(config)
    }

    pub fn database(&self) -> anyhow::Result<Database> {
        match &self.database_url {
            Some(url) => Ok(Database::from_url(url)?),
            None => Ok(Database::in_data_dir(&self.data_dir)),
        }
    }
}
