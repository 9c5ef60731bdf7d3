//! The one-time reveal of a new key: the key itself, and configurations that use it, ready to
//! paste (an MCP host's `mcpServers` entry, a curl request, the TypeScript SDK).
//!
//! The snippets are built here as plain text and escaped by the template like everything else.
//! What goes into them is checked first: the service is a valid slug (or a placeholder) and the
//! host is a host name, so nothing typed can break out of a JSON string or a shell quote.

use axum::http::HeaderMap;
use prom_core::service::ServiceSlug;
use serde_json::json;

use crate::api::views::CreatedKeyView;
use crate::dashboard::PageError;
use crate::state::AppState;

/// Stands in for the service when the tenant can reach none yet.
const SERVICE_PLACEHOLDER: &str = "<service>";

/// Where the snippets point: this server's public address and one service on it.
#[derive(Debug)]
pub struct Target {
    base: String,
    service: String,
}

impl Target {
    /// The configured public URL, else the address the person reached us at; the service asked
    /// for, else the first one registered, else a placeholder.
    pub async fn resolve(state: &AppState, headers: &HeaderMap, requested: &str) -> Result<Self, PageError> {
        let base = crate::origin::base_url(state, headers);
        let service = if ServiceSlug::parse(requested).is_ok() {
            requested.to_owned()
        } else {
            match state.store.list_services().await?.first() {
                Some(service) => service.slug.to_string(),
                None => SERVICE_PLACEHOLDER.to_owned(),
            }
        };
        Ok(Self { base, service })
    }

    fn endpoint(&self) -> String {
        format!("{}/mcp/{}", self.base, self.service)
    }
}

/// A `Host` header worth echoing into a snippet: a name or address and a port, nothing else.
/// What the reveal panel shows. Holds the key in clear (its `Debug` leaves it out): it exists
/// only for the one response that renders it.
pub struct Reveal {
    pub heading: &'static str,
    pub label: String,
    pub display: String,
    pub key: String,
    /// What became of the key this one replaces (after a rotation).
    pub replaced: Option<String>,
    pub placeholder: bool,
    pub mcp_json: String,
    pub curl: String,
    pub typescript: String,
}

impl std::fmt::Debug for Reveal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reveal").field("label", &self.label).field("display", &self.display).finish_non_exhaustive()
    }
}

impl Reveal {
    pub fn new(heading: &'static str, created: &CreatedKeyView, target: &Target, replaced: Option<String>) -> Self {
        let endpoint = target.endpoint();
        let key = created.key.as_str();
        let server_name = if target.service == SERVICE_PLACEHOLDER {
            "prometheus".to_owned()
        } else {
            format!("prometheus-{}", target.service)
        };
        let config = json!({
            "mcpServers": {
                server_name: {
                    "command": "prom",
                    "args": ["connect", endpoint],
                    "env": { "PROMETHEUS_API_KEY": key },
                }
            }
        });
        let mcp_json = serde_json::to_string_pretty(&config).unwrap_or_else(|_| config.to_string());
        let curl = format!(
            "curl -X POST '{endpoint}' \\\n  -H 'Authorization: Bearer {key}' \\\n  -H 'Content-Type: application/json' \\\n  \
             -H 'Accept: application/json, text/event-stream' \\\n  -H 'MCP-Protocol-Version: 2026-07-28' \\\n  \
             -H 'Mcp-Method: tools/list' \\\n  -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}}'"
        );
        let typescript = format!(
            "import {{ Client }} from '@modelcontextprotocol/sdk/client/index.js';\n\
             import {{ StreamableHTTPClientTransport }} from '@modelcontextprotocol/sdk/client/streamableHttp.js';\n\n\
             const transport = new StreamableHTTPClientTransport(new URL('{endpoint}'), {{\n  \
             requestInit: {{ headers: {{ Authorization: 'Bearer {key}' }} }},\n}});\n\
             const client = new Client({{ name: 'my-agent', version: '1.0.0' }});\n\
             await client.connect(transport);\n\
             console.log(await client.listTools());"
        );
        Self {
            heading,
            label: created.label.clone(),
            display: created.display.clone(),
            key: key.to_owned(),
            replaced,
            placeholder: target.service == SERVICE_PLACEHOLDER,
            mcp_json,
            curl,
            typescript,
        }
    }
}
