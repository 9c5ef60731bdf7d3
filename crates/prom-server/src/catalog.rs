//! The tools each service's upstream offers (`tools/list`: name, title, description), for the
//! App Store's pages. Read from the upstream itself, so a publisher prices what the upstream
//! really serves and a buyer sees every tool, free ones included.
//!
//! Read in the background and kept in memory per service: five minutes for a list, thirty
//! seconds for a failure, at most [`MAX_ENTRIES`] services. An entry belongs to one service and
//! one upstream: a service deleted and published again, or given another upstream, is read
//! afresh whoever asks (the cache compares, callers never have to remember to invalidate).
//! One read per service runs at a time; everyone asking meanwhile waits for that one.
//!
//! Upstreams are untrusted, like everywhere in the gateway: the client connects only where the
//! egress policy allows ([`crate::egress`], the gateway's own resolver and lookups), and a read is
//! bounded in time ([`READ_DEADLINE`]), size ([`mcp::MAX_BODY_BYTES`] per answer), pages and
//! number at once ([`CONCURRENT_READS`]). A stdio upstream is not started for a listing: its
//! tools are listed when an agent connects.

mod mcp;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use prom_core::id::ServiceId;
use prom_core::service::{ServiceRecord, ServiceSlug, Upstream};
use prom_core::time::Timestamp;

use crate::egress::{EgressResolver, Refusal};
use crate::gateway::{Gateway, GatewayError};

/// How long a tool list is shown before it is read again.
const LISTED_FOR: Duration = Duration::from_secs(5 * 60);
/// How long a failed read is remembered (so a page view does not hammer a broken upstream).
const FAILED_FOR: Duration = Duration::from_secs(30);
/// Most services whose tools are kept.
pub const MAX_ENTRIES: usize = 1024;
/// Longest a read of one upstream may take, every request of it included.
pub const READ_DEADLINE: Duration = Duration::from_secs(10);
/// Most reads under way at once (a store of many services, first opened, reads them all).
const CONCURRENT_READS: usize = 16;

/// One tool an upstream offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tool {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
}

/// A service's tools as its upstream listed them.
#[derive(Clone, Debug)]
pub struct Listing {
    pub tools: Vec<Tool>,
    pub read_at: Timestamp,
    /// The upstream listed more than is kept (pages or tools); the rest were left out.
    pub truncated: bool,
}

/// What reading a service's tools came to.
pub type Outcome = Result<Arc<Listing>, CatalogError>;

/// Why a service's tools could not be read. The words are for the service's publisher and the
/// operator; everyone else is told [`CatalogError::public_message`].
#[derive(Clone, Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("tools are listed when an agent connects (the service runs as a local process per session)")]
    Stdio,
    #[error("the upstream URL is not a URL")]
    BadUrl,
    #[error("the upstream is refused: {0}")]
    Refused(Refusal),
    #[error("the upstream did not list its tools within {} s", READ_DEADLINE.as_secs())]
    Timeout,
    #[error("the upstream cannot be reached: {0}")]
    Unreachable(String),
    #[error(
        "the upstream refused the gateway (HTTP {status} to {method}); it may need credentials in its URL, or it \
         does not allow this gateway"
    )]
    Denied { method: &'static str, status: u16 },
    #[error("the upstream answered {method} with HTTP {status}")]
    Status { method: &'static str, status: u16 },
    #[error("the upstream's answer to {method} is larger than {} KiB", mcp::MAX_BODY_BYTES / 1024)]
    TooLarge { method: &'static str },
    #[error("the upstream's answer to {method} is not an MCP answer: {detail}")]
    Malformed { method: &'static str, detail: String },
    #[error("the upstream answered {method} with the error {code}: {message}")]
    Rpc { method: &'static str, code: i64, message: String },
    #[error("the tools were not read: the read stopped early; try again")]
    Stopped,
}

impl CatalogError {
    /// What a buyer is told: whether the upstream was refused or failed is the publisher's and
    /// the operator's business (as for agents, the gateway does not map networks for anyone).
    pub fn public_message(&self) -> &'static str {
        match self {
            Self::Stdio => "tools are listed when an agent connects; prices below",
            _ => "the tool list cannot be read from the service right now; prices below",
        }
    }
}

/// Which service and upstream an entry was read for: anything else is another entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Source {
    service: ServiceId,
    upstream: Upstream,
}

impl Source {
    fn of(service: &ServiceRecord) -> Self {
        Self { service: service.id.clone(), upstream: service.upstream.clone() }
    }
}

type Reading = Shared<BoxFuture<'static, Outcome>>;

/// The outcome of a read, if it has ended (whether or not anyone waited for it).
fn finished(reading: &Reading) -> Option<Outcome> {
    reading.clone().now_or_never()
}

#[derive(Clone)]
struct Entry {
    source: Source,
    started: Instant,
    reading: Reading,
}

impl Entry {
    /// Still good to show (or still being read).
    fn fresh(&self) -> bool {
        match finished(&self.reading) {
            None => true,
            Some(Ok(_)) => self.started.elapsed() < LISTED_FOR,
            Some(Err(_)) => self.started.elapsed() < FAILED_FOR,
        }
    }
}

/// The catalogue of services' tools.
pub struct ToolCatalog {
    http: reqwest::Client,
    resolver: EgressResolver,
    reads: Arc<tokio::sync::Semaphore>,
    entries: Mutex<HashMap<ServiceSlug, Entry>>,
}

impl std::fmt::Debug for ToolCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.lock().len();
        f.debug_struct("ToolCatalog").field("entries", &entries).finish_non_exhaustive()
    }
}

impl ToolCatalog {
    /// A catalogue that reaches upstreams as the gateway does: through its egress policy and
    /// lookups, never through a proxy, never following a redirect.
    pub fn new(gateway: &Gateway) -> Result<Self, GatewayError> {
        let resolver = EgressResolver { policy: gateway.egress.clone(), lookup: gateway.lookup.clone() };
        let http = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(Arc::new(resolver.clone()))
            .connect_timeout(READ_DEADLINE)
            .pool_idle_timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("prometheus-catalog/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let reads = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_READS));
        Ok(Self { http, resolver, reads, entries: Mutex::new(HashMap::new()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ServiceSlug, Entry>> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The service's tools if they are known now: read already, or readable within `wait` (a read
    /// is started if none is under way; it goes on after `wait` and is kept for the next look).
    pub async fn tools(&self, service: &ServiceRecord, wait: Duration) -> Option<Outcome> {
        let Some(reading) = self.reading(service, false) else { return Some(Err(CatalogError::Stdio)) };
        if let Some(outcome) = finished(&reading) {
            return Some(outcome);
        }
        tokio::time::timeout(wait, reading).await.ok()
    }

    /// Reads the service's tools again now (a publisher asked), and waits for them.
    pub async fn refresh(&self, service: &ServiceRecord) -> Outcome {
        match self.reading(service, true) {
            Some(reading) => reading.await,
            None => Err(CatalogError::Stdio),
        }
    }

    /// Forgets a service (it was deleted).
    pub fn forget(&self, slug: &ServiceSlug) {
        self.lock().remove(slug);
    }

    /// The read of `service`'s tools: the entry's, while it is fresh and for this service and
    /// upstream, else a new one. `None` for a stdio upstream, which is never read.
    fn reading(&self, service: &ServiceRecord, again: bool) -> Option<Reading> {
        let Upstream::Http { url } = &service.upstream else { return None };
        let source = Source::of(service);
        let mut entries = self.lock();
        if !again
            && let Some(entry) = entries.get(&service.slug)
            && entry.source == source
            && entry.fresh()
        {
            return Some(entry.reading.clone());
        }
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&service.slug) {
            entries.retain(|_, entry| entry.fresh());
            if entries.len() >= MAX_ENTRIES
                && let Some(oldest) =
                    entries.iter().min_by_key(|(_, entry)| entry.started).map(|(slug, _)| slug.clone())
            {
                entries.remove(&oldest);
            }
        }
        let reading = self.start(service.slug.clone(), url);
        entries.insert(service.slug.clone(), Entry { source, started: Instant::now(), reading: reading.clone() });
        Some(reading)
    }

    /// Starts reading the tools at `url` on a task of its own (a page that stops waiting does not
    /// stop the read: the next look finds its result).
    fn start(&self, slug: ServiceSlug, url: &str) -> Reading {
        let checked = reqwest::Url::parse(url)
            .map_err(|_| CatalogError::BadUrl)
            .and_then(|parsed| self.resolver.policy.check_url(&parsed).map(|()| parsed).map_err(CatalogError::Refused));
        let http = self.http.clone();
        let reads = self.reads.clone();
        let task = tokio::spawn(async move {
            let url = checked?;
            let _turn = reads.acquire_owned().await.map_err(|_| CatalogError::Stopped)?;
            let listing = mcp::list_tools(&http, url, slug.as_str()).await;
            if let Err(err) = &listing {
                tracing::info!(service = %slug, error = %err, "could not read a service's tools");
            }
            listing.map(Arc::new)
        });
        async move { task.await.unwrap_or(Err(CatalogError::Stopped)) }.boxed().shared()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buyers_are_not_told_why_an_upstream_failed() {
        let refused = CatalogError::Refused(Refusal::Scheme { scheme: "http".into() });
        assert!(refused.to_string().contains("refused"));
        assert!(!refused.public_message().contains("refused"));
        assert_eq!(CatalogError::Stdio.public_message(), "tools are listed when an agent connects; prices below");
    }
}
