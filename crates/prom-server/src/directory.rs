//! The gateway's view of registered services: a small read-through cache in front of the store,
//! so a request to `/mcp/{slug}` does not cost a database read. The management API calls
//! [`ServiceDirectory::forget`] after every change to a service; entries also expire after a few
//! seconds, which bounds staleness when another node made the change.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use prom_core::service::{ServiceRecord, ServiceSlug};
use prom_core::store::{Store, StoreResult};

/// How long a looked-up service is trusted.
const TTL: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct ServiceDirectory {
    store: Arc<dyn Store>,
    cache: DashMap<ServiceSlug, (Option<Arc<ServiceRecord>>, Instant)>,
}

impl ServiceDirectory {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, cache: DashMap::new() }
    }

    /// The live service with this slug, if any.
    pub async fn get(&self, slug: &ServiceSlug) -> StoreResult<Option<Arc<ServiceRecord>>> {
        if let Some(entry) = self.cache.get(slug)
            && entry.1.elapsed() < TTL
        {
            return Ok(entry.0.clone());
        }
        let found = self.store.get_service(slug).await?.map(Arc::new);
        if self.cache.len() > 10_000 {
            self.cache.clear();
        }
        self.cache.insert(slug.clone(), (found.clone(), Instant::now()));
        Ok(found)
    }

    /// Drops what is cached about a service (after it was created, changed or deleted).
    pub fn forget(&self, slug: &ServiceSlug) {
        self.cache.remove(slug);
    }
}
