//! The command line: what each subcommand takes. `--help` on any of them explains it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use prom_core::money::Amount;

#[derive(Debug, Parser)]
#[command(
    name = "prom",
    version,
    about = "Prometheus: let AI agents call paid MCP tools safely",
    long_about = "Prometheus lets AI agents call paid MCP tools safely: people sign in, mint API keys for \
their agents, and every request is authenticated, charged and recorded.\n\n\
Start a server:         prom serve\n\
Create its first owner: prom admin create-user --email you@example.com --tenant acme --role owner\n\
Sign in from the CLI:   prom login --server http://127.0.0.1:7070\n\
Mint a key for an agent: prom keys create --label my-agent",
    after_help = "Configuration comes from defaults, then a TOML file (--config or PROM_CONFIG), then PROM_* \
environment variables, then flags. See the README's configuration reference."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (management API, and later the MCP gateway and dashboard).
    Serve(ServeArgs),
    /// Operate on the server's database directly (works with the server stopped or running).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Sign in to a server; the session is kept in your config directory (mode 0600).
    Login(LoginArgs),
    /// Sign out and forget the saved session.
    Logout,
    /// Create, list, rotate, revoke and delete API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Read the audit log of your tenant.
    Audit(AuditArgs),
    /// Check an agent key: which key and tenant the server sees (reads PROMETHEUS_API_KEY or AGENT_TOKEN).
    Whoami(WhoamiArgs),
    /// Serve MCP on stdio for an MCP host (Claude Desktop, Cursor, …), forwarding to a gateway URL.
    #[command(long_about = CONNECT_ABOUT, after_help = CONNECT_EXAMPLE)]
    Connect(ConnectArgs),
}

/// Where the server keeps its data, and its configuration file.
#[derive(Debug, Args, Clone, Default)]
pub struct StorageArgs {
    /// Directory of the embedded SQLite database [default: ./prom-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use this database instead of the embedded one: postgres://USER@HOST/DB or sqlite://PATH.
    #[arg(long, value_name = "URL", conflicts_with = "data_dir")]
    pub database_url: Option<String>,
    /// A TOML configuration file.
    #[arg(long, env = "PROM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:7070].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Which keys this server accepts: live (prom_live_…) or test (prom_test_…) [default: live].
    #[arg(long, value_parser = ["live", "test"])]
    pub environment: Option<String>,
    /// Also run the demo MCP service (tools echo, fortune at 250, countdown) as service `demo`,
    /// with a `demo` tenant, its owner and an agent key printed on standard output, ready to try.
    #[arg(long)]
    pub demo: bool,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a user (or add an existing one to a tenant, or change their role there).
    /// The tenant is created if it does not exist.
    CreateUser(CreateUserArgs),
    /// Put new tokens into a tenant's wallet on the embedded ledger, for development and demos
    /// (a real ledger mints through its own governance).
    Mint(MintArgs),
}

#[derive(Debug, Args)]
pub struct CreateUserArgs {
    /// The user's e-mail address (their sign-in name).
    #[arg(long)]
    pub email: String,
    /// The tenant's short name (lowercase letters, digits, dashes), e.g. acme.
    #[arg(long)]
    pub tenant: String,
    /// owner or admin may mint and revoke keys; member may only look.
    #[arg(long, value_parser = ["owner", "admin", "member"])]
    pub role: String,
    /// Read the password from the first line of standard input instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Args)]
pub struct MintArgs {
    /// The tenant whose wallet is funded (its short name, e.g. acme).
    #[arg(long)]
    pub tenant: String,
    /// How much, in the token's smallest unit: decimal digits only, e.g. 100000.
    #[arg(long, value_parser = amount, allow_hyphen_values = true)]
    pub amount: Amount,
    #[command(flatten)]
    pub storage: StorageArgs,
}

fn amount(value: &str) -> Result<Amount, String> {
    value.parse().map_err(|err: prom_core::money::AmountError| err.to_string())
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server's base URL, e.g. http://127.0.0.1:7070.
    #[arg(long, env = "PROM_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
    /// Your e-mail address (prompted for when absent).
    #[arg(long)]
    pub email: Option<String>,
    /// The tenant to act in, when you belong to several.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Read the password from the first line of standard input instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Args, Clone, Copy)]
pub struct OutputArgs {
    /// Print JSON (the API's response) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key for an agent. The key is printed once and never again.
    Create {
        /// What the key is for, e.g. "claude-desktop on ada's laptop".
        #[arg(long)]
        label: String,
        /// live or test; must match the server's environment.
        #[arg(long, value_parser = ["live", "test"])]
        environment: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List the tenant's keys (display form only).
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Revoke a key at once and for good: its next request gets 401.
    Revoke {
        /// The key's id (from `prom keys list`).
        id: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Delete a key: it stops working and leaves the list (its audit history stays).
    Delete { id: String },
    /// Create a replacement key; the old one stops now, or after --grace seconds.
    Rotate {
        id: String,
        /// Label of the new key [default: the old label plus today's date].
        #[arg(long)]
        label: Option<String>,
        /// Seconds the old key keeps working, so agents can switch over.
        #[arg(long, value_name = "SECONDS")]
        grace: Option<u64>,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this action, e.g. api_key.revoke.
    #[arg(long)]
    pub action: Option<String>,
    /// Only events about this key.
    #[arg(long)]
    pub key_id: Option<String>,
    /// Only events older than this event id.
    #[arg(long)]
    pub before: Option<i64>,
    /// At most this many events.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct WhoamiArgs {
    /// The server's base URL [default: the one you signed in to, else http://127.0.0.1:7070].
    #[arg(long, env = "PROM_SERVER")]
    pub server: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

const CONNECT_ABOUT: &str = "Serve MCP on standard input and output for an MCP host, and forward every message to \
a Prometheus gateway endpoint (MCP Streamable HTTP) with the agent's key, or with a token from a sign-in \
in the browser.\n\n\
MCP hosts such as Claude Desktop and Cursor start MCP servers as commands; this is the command that \
connects them to Prometheus. The key is read from PROMETHEUS_API_KEY, or AGENT_TOKEN when that is \
unset or empty. Without a key, the person signs in through the browser (OAuth): the line \
\"Open this URL to connect: ...\" on standard error names the page (the browser opens it too, unless \
PROM_CONNECT_NO_BROWSER=1), and the tokens are kept for the next runs in the config directory \
(prometheus/oauth/, mode 0600; PROM_CONNECT_STATE_DIR moves them) and refreshed as needed. When the \
gateway refuses the key or token, or the person denies, the reason is printed on standard error \
(TOKEN_MISSING, TOKEN_INVALID, ACCESS_DENIED) and the exit code is 2. Logs go to standard error only \
(level from PROM_LOG, default warn). It exits when the host closes standard input.";

const CONNECT_EXAMPLE: &str = r#"Claude Desktop (claude_desktop_config.json) or Cursor (mcp.json); leave out "env" to sign in
through the browser instead:

{
  "mcpServers": {
    "prometheus-demo": {
      "command": "/path/to/prom",
      "args": ["connect", "http://127.0.0.1:7070/mcp/demo"],
      "env": { "PROMETHEUS_API_KEY": "prom_live_..." }
    }
  }
}"#;

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The gateway's MCP endpoint of one service, e.g. http://127.0.0.1:7070/mcp/demo.
    #[arg(value_parser = gateway_url)]
    pub url: reqwest::Url,
    /// How the key is sent: `Authorization: Bearer KEY` or `x-api-key: KEY`.
    #[arg(long, value_enum, default_value_t = KeyHeader::Bearer)]
    pub key_header: KeyHeader,
}

/// The HTTP header that carries the agent key; the gateway accepts both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyHeader {
    /// `Authorization: Bearer KEY`
    Bearer,
    /// `x-api-key: KEY`
    XApiKey,
}

fn gateway_url(value: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(value)
        .map_err(|error| format!("{error}: give a URL like http://127.0.0.1:7070/mcp/demo"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!("{other}:// is not HTTP: give a URL like http://127.0.0.1:7070/mcp/demo")),
    }
}
