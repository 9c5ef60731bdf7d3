//! The App Store: every published service as a card (`/app/store`), and each service's page
//! (`/app/store/{slug}`, in [`service`]) with its tools and prices, how to connect an agent, and
//! the tenant's allowance for it. The gateway's `ALLOWANCE_EXCEEDED` errors point at that page
//! (`manage_url`), so its path must stay `/app/store/{slug}`.
//!
//! Tools come from the [`ToolCatalog`](crate::catalog::ToolCatalog) when it has them or can read
//! them quickly; otherwise the page shows the service's priced tools, which the store always has.

mod service;

pub(crate) use self::service::parse_amount;

use std::collections::HashMap;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use prom_core::id::TenantId;
use prom_core::service::ServiceRecord;
use serde::Deserialize;

use super::page::{Chrome, Nav, PageError, render};
use super::viewer::Viewer;
use crate::catalog::{CatalogError, Listing, Outcome};
use crate::state::AppState;

/// How long the store's list waits for tool lists it has not read yet (they are read on, for the
/// next look).
const LIST_WAIT: Duration = Duration::from_millis(800);
/// Most tools a card names.
const CARD_TOOLS: usize = 6;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/store", get(store_page))
        .route("/store/{slug}", get(service::service_page))
        .route("/store/{slug}/allowance", post(service::set_allowance))
}

/// An amount in the token's smallest unit with thousands separators: `1,234,567`.
pub fn grouped(units: impl std::fmt::Display) -> String {
    let digits = units.to_string();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return digits;
    }
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (n, digit) in digits.chars().enumerate() {
        if n > 0 && (digits.len() - n).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// One tool of a service as the pages show it.
#[derive(Clone, Debug)]
pub struct ToolRow {
    pub name: String,
    pub title: Option<String>,
    pub description: String,
    /// `"free"`, or the price with separators.
    pub price: String,
    /// The price in digits (empty when free), for a price form.
    pub units: String,
    /// Whether the upstream listed it (a priced tool it did not list is shown all the same).
    pub listed: bool,
}

/// The tools to show for `service`: those its upstream listed, with their prices, then any
/// priced tool it did not list; without a listing, the priced tools.
pub fn tool_rows(service: &ServiceRecord, listing: Option<&Listing>) -> Vec<ToolRow> {
    let price = |name: &str| service.prices.get(name).map(|amount| (grouped(amount), amount.to_string()));
    let mut rows: Vec<ToolRow> = Vec::new();
    if let Some(listing) = listing {
        for tool in &listing.tools {
            let (price, units) = price(&tool.name).unwrap_or_else(|| ("free".to_owned(), String::new()));
            rows.push(ToolRow {
                name: tool.name.clone(),
                title: tool.title.clone().filter(|title| *title != tool.name),
                description: tool.description.clone().unwrap_or_default(),
                price,
                units,
                listed: true,
            });
        }
    }
    for (name, amount) in &service.prices {
        if rows.iter().any(|row| row.name == *name) {
            continue;
        }
        let description = match listing {
            Some(_) => "The upstream does not list this tool now.".to_owned(),
            None => String::new(),
        };
        rows.push(ToolRow {
            name: name.clone(),
            title: None,
            description,
            price: grouped(amount),
            units: amount.to_string(),
            listed: false,
        });
    }
    rows
}

/// What the pages say about a service's tool list.
#[derive(Clone, Debug, Default)]
pub struct CatalogNote {
    /// The tools shown are the upstream's (else only the priced ones).
    pub listed: bool,
    /// Why the upstream's list is not shown, or that it is partial.
    pub message: Option<String>,
}

impl CatalogNote {
    /// The note for `outcome` (`None`: not read yet). `detailed` shows the publisher why a read
    /// failed; everyone else gets [`CatalogError::public_message`].
    pub fn of(outcome: Option<&Outcome>, detailed: bool) -> Self {
        match outcome {
            Some(Ok(listing)) => Self {
                listed: true,
                message: listing.truncated.then(|| "The upstream lists more tools than are shown here.".to_owned()),
            },
            Some(Err(err)) => Self { listed: false, message: Some(error_words(err, detailed)) },
            None => Self {
                listed: false,
                message: Some("The tool list is being read from the service; reload in a moment. Prices below.".into()),
            },
        }
    }
}

fn error_words(err: &CatalogError, detailed: bool) -> String {
    match (err, detailed) {
        (CatalogError::Stdio, _) | (_, false) => capitalised(err.public_message()),
        (err, true) => format!("The tools could not be read: {err}. The priced tools are shown."),
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

/// The names of the tenants that published `services`.
pub async fn publisher_names(
    state: &AppState,
    services: &[ServiceRecord],
) -> Result<HashMap<TenantId, String>, PageError> {
    let mut names = HashMap::new();
    for service in services {
        if names.contains_key(&service.tenant_id) {
            continue;
        }
        let name = match state.store.get_tenant(&service.tenant_id).await? {
            Some(tenant) => tenant.name,
            None => "an unknown publisher".to_owned(),
        };
        names.insert(service.tenant_id.clone(), name);
    }
    Ok(names)
}

#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    #[serde(default)]
    pub notice: Option<String>,
}

fn store_notice(code: Option<&str>) -> Option<&'static str> {
    match code? {
        "welcome" => Some(
            "Welcome — your organisation is set up and you are its owner. Browse the services below and set an \
             allowance for those your agents may pay for, publish your own under Publish, and add your team under \
             Members.",
        ),
        "service_deleted" => Some("The service was deleted."),
        _ => None,
    }
}

#[derive(Debug)]
struct Card {
    slug: String,
    name: String,
    publisher: String,
    description: String,
    tools: Vec<ToolRow>,
    more_tools: usize,
    note: CatalogNote,
}

#[derive(Template)]
#[template(path = "store.html")]
struct StorePage {
    chrome: Chrome,
    notice: Option<&'static str>,
    cards: Vec<Card>,
}

async fn store_page(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(query): Query<NoticeQuery>,
) -> Result<Response, PageError> {
    let services = state.store.list_services().await?;
    let publishers = publisher_names(&state, &services).await?;
    // Every service's tools at once, each waiting at most LIST_WAIT.
    let outcomes =
        futures_util::future::join_all(services.iter().map(|service| state.catalog.tools(service, LIST_WAIT))).await;
    let cards = services
        .iter()
        .zip(outcomes)
        .map(|(service, outcome)| {
            let listing = outcome.as_ref().and_then(|outcome| outcome.as_ref().ok());
            let mut tools = tool_rows(service, listing.map(|listing| listing.as_ref()));
            let more_tools = tools.len().saturating_sub(CARD_TOOLS);
            tools.truncate(CARD_TOOLS);
            Card {
                slug: service.slug.to_string(),
                name: service.name.clone(),
                publisher: publishers.get(&service.tenant_id).cloned().unwrap_or_default(),
                description: service.description.clone(),
                tools,
                more_tools,
                note: CatalogNote::of(outcome.as_ref(), false),
            }
        })
        .collect();
    let page = StorePage {
        chrome: viewer.chrome(Nav::Store, "App Store"),
        notice: store_notice(query.notice.as_deref()),
        cards,
    };
    Ok(render(&page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_grouped_by_thousands() {
        assert_eq!(grouped(0u128), "0");
        assert_eq!(grouped(999u128), "999");
        assert_eq!(grouped(1000u128), "1,000");
        assert_eq!(grouped(1_234_567u128), "1,234,567");
        assert_eq!(grouped("n/a"), "n/a");
    }
}
