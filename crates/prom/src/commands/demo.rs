//! `prom serve --demo`: a working paid MCP tool in one command. Runs the demo MCP server
//! (`examples/demo-mcp`) in-process on a loopback port, registers it as service `demo` of a
//! `demo` tenant, and hands out a sign-in and an agent key on standard output (never in the logs).
//!
//! Each start resets the demo: a new password for the demo owner, the previous demo agent keys
//! revoked and a new one minted, and the service pointed at this run's demo upstream.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::Context;
use prom_core::access::{Role, Scope};
use prom_core::audit::AuditContext;
use prom_core::id::{KeyId, ServiceId};
use prom_core::key::PlainKey;
use prom_core::money::Amount;
use prom_core::service::{ServiceSlug, Upstream};
use prom_core::store::{NewKey, NewService, ProvisionMember, ServicePatch, StoreError};
use prom_core::time::Timestamp;
use prom_core::user::{Email, Label, Password, TenantSlug};
use prom_server::AppState;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const DEMO_TENANT: &str = "demo";
const DEMO_EMAIL: &str = "demo@prometheus.local";
const DEMO_SERVICE: &str = "demo";
const DEMO_KEY_LABEL: &str = "demo agent (prom serve --demo)";
/// The demo's paid tool and its price, in the token's smallest unit.
const FORTUNE_PRICE: u128 = 250;

/// Keeps the demo upstream running; dropping it stops it.
#[derive(Debug)]
pub struct DemoHandle {
    _stop: oneshot::Sender<()>,
}

/// The demo MCP server's port on loopback, bound before the server starts (so that the egress
/// policy can allow exactly it).
pub async fn bind() -> anyhow::Result<TcpListener> {
    TcpListener::bind("127.0.0.1:0").await.context("cannot bind a port for the demo MCP server")
}

pub async fn start(state: &AppState, listener: TcpListener, gateway: SocketAddr) -> anyhow::Result<DemoHandle> {
    let upstream = format!("http://{}{}", listener.local_addr()?, demo_mcp::MCP_PATH);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(err) = demo_mcp::serve_http(listener, shutdown).await {
            tracing::error!(error = %err, "the demo MCP server stopped");
        }
    });

    let ctx = AuditContext::admin_cli();
    let store = &state.store;
    let password = random_password();
    let password_hash = state.passwords.hash(&Password::new(password.clone())?)?;
    let owner = store
        .provision_member(
            ProvisionMember {
                email: Email::parse(DEMO_EMAIL)?,
                password_hash: Some(password_hash),
                tenant: TenantSlug::parse(DEMO_TENANT)?,
                role: Role::Owner,
            },
            &ctx,
        )
        .await?;

    let slug = ServiceSlug::parse(DEMO_SERVICE)?;
    let prices: BTreeMap<String, Amount> = [("fortune".to_owned(), Amount::new(FORTUNE_PRICE))].into_iter().collect();
    let upstream_url = upstream.clone();
    let upstream = Upstream::Http { url: upstream };
    let patch =
        ServicePatch { upstream: Some(upstream.clone()), prices: Some(prices.clone()), ..ServicePatch::default() };
    match store.update_service(&owner.tenant.id, &slug, patch, Timestamp::now(), &ctx).await {
        Ok(_) => {}
        Err(StoreError::NotFound) => {
            store
                .create_service(
                    NewService {
                        id: ServiceId::new(),
                        tenant_id: owner.tenant.id.clone(),
                        slug: slug.clone(),
                        name: "Prometheus demo".into(),
                        description: "Tools echo (free), fortune (paid: 250) and countdown (free, with progress)."
                            .into(),
                        upstream,
                        prices,
                        charge_tool_errors: false,
                        created_at: Timestamp::now(),
                    },
                    &ctx,
                )
                .await
                .context("cannot register the demo service (is the slug `demo` taken by another tenant?)")?;
        }
        Err(err) => return Err(err).context("cannot update the demo service"),
    }
    state.services.forget(&slug);

    for old in store.list_keys(&owner.tenant.id).await? {
        if old.label.as_str() == DEMO_KEY_LABEL && old.revoked_at.is_none() {
            store.revoke_key(&owner.tenant.id, &old.id, Timestamp::now(), &ctx).await?;
            state.verifier.forget_key(&old.id);
        }
    }
    let key = PlainKey::mint(state.config.environment);
    let hasher = state.hasher.clone();
    let text = key.expose().to_owned();
    let digest = tokio::task::spawn_blocking(move || anyhow::Ok(hasher.digest(&PlainKey::parse(&text)?)?)).await??;
    store
        .insert_key(
            NewKey {
                id: KeyId::new(),
                tenant_id: owner.tenant.id.clone(),
                label: Label::parse(DEMO_KEY_LABEL)?,
                environment: key.environment(),
                digest,
                last4: key.last4(),
                scopes: vec![Scope::AgentConnect],
                created_by: Some(owner.user.id.clone()),
                created_at: Timestamp::now(),
            },
            &ctx,
        )
        .await?;

    tracing::info!(upstream = %upstream_url, "demo MCP server running");
    print_banner(gateway, &password, key.expose(), &upstream_url);
    Ok(DemoHandle { _stop: stop })
}

fn random_password() -> String {
    let mut bytes = [0u8; 12];
    prom_core::os_random(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn print_banner(gateway: SocketAddr, password: &str, key: &str, upstream: &str) {
    let base = format!("http://{gateway}");
    let mcp_url = format!("{base}/mcp/{DEMO_SERVICE}");
    let prom = std::env::current_exe().map_or_else(|_| "prom".to_owned(), |p| p.display().to_string());
    let config = serde_json::json!({
        "mcpServers": {
            "prometheus-demo": {
                "command": prom,
                "args": ["connect", mcp_url],
                "env": { "PROMETHEUS_API_KEY": key }
            }
        }
    });
    let config = serde_json::to_string_pretty(&config).unwrap_or_default();
    println!(
        "\n=== Prometheus demo ready ===========================================================\n\
         MCP service:  {mcp_url}   (tools: echo, fortune = {FORTUNE_PRICE}, countdown)\n\
         Upstream:     {upstream}   (the demo server itself, without the gateway)\n\
         Agent key:    {key}\n\
         Sign in:      prom login --server {base} --email {DEMO_EMAIL}   (password: {password})\n\
         \n\
         Try it:       curl -s {base}/v1/whoami -H 'x-api-key: {key}'\n\
         \n\
         Claude Desktop / Cursor — add to the mcpServers of your MCP config:\n{config}\n\
         \n\
         Custom clients (official MCP SDKs): Streamable HTTP to {mcp_url} with the header\n\
         `x-api-key: <key>` (or `Authorization: Bearer <key>`).\n\
         No key at all: OAuth clients (and `prom connect {mcp_url}` without the env) sign in\n\
         through the browser, where you set what the agent may spend.\n\
         The key and password are shown only here; the next `prom serve --demo` replaces them.\n\
         =====================================================================================\n"
    );
}
