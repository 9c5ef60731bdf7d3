//! `GET /metrics` in the Prometheus/OpenMetrics text format: gateway requests by service, method
//! and outcome, latency histograms per service, upstream errors, key verification (cache hits,
//! cold lookups, refusals, throttling), the Argon2 pool and dropped usage notes. Key ids and
//! service slugs may be labels; key material never is. Every label has a bounded set of values:
//! a method label is a known MCP method or `other` ([`method_label`]), whatever agents send.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::auth::verifier::KeyVerifier;
use crate::state::AppState;
use crate::usage::UsageRecorder;

/// The MCP methods (requests and notifications, both directions) that get a label of their own.
const KNOWN_METHODS: [&str; 31] = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/message",
    "notifications/roots/list_changed",
    "notifications/resources/list_changed",
    "notifications/resources/updated",
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/elicitation/complete",
    "notifications/tasks/status",
];

/// The metric label of a JSON-RPC method: the method itself if MCP defines it, else
/// `notifications/other` or `other`. Agents choose method names, and every distinct label value
/// is a time series kept until the process ends.
pub fn method_label(method: &str) -> &'static str {
    match KNOWN_METHODS.iter().find(|known| **known == method) {
        Some(known) => known,
        // Other notifications are one label, not one per name.
        None if method.starts_with("notifications/") => "notifications/other",
        None => "other",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub service: String,
    pub method: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub service: String,
    pub kind: String,
}

type HistogramFamily = Family<ServiceLabel, Histogram, fn() -> Histogram>;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: HistogramFamily,
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Metrics {
    pub fn new(verifier: Arc<KeyVerifier>, usage: UsageRecorder) -> Self {
        let mut registry = Registry::with_prefix("prometheus");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        registry.register("gateway_requests", "JSON-RPC requests through the gateway", requests.clone());
        registry.register(
            "gateway_request_duration_seconds",
            "Time from receiving a request to the end of its response",
            latency.clone(),
        );
        registry.register("gateway_upstream_errors", "Upstream failures by kind", upstream_errors.clone());
        registry.register_collector(Box::new(AuthCollector { verifier, usage }));
        Self { registry, requests, latency, upstream_errors }
    }

    pub fn upstream_error(&self, service: &str, kind: &str) {
        self.upstream_errors.get_or_create(&UpstreamErrorLabels { service: service.into(), kind: kind.into() }).inc();
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(error = %err, "could not encode metrics");
        }
        text
    }
}

/// Reads the verifier's and recorder's counters at scrape time.
#[derive(Debug)]
struct AuthCollector {
    verifier: Arc<KeyVerifier>,
    usage: UsageRecorder,
}

impl prometheus_client::collector::Collector for AuthCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = &self.verifier.stats;
        let counters = [
            ("key_cache_hits", "Key verifications answered from the verified-key cache", &stats.warm_hits),
            ("key_cold_lookups", "Key verifications that ran Argon2id", &stats.cold_lookups),
            ("key_revalidations", "Cached keys re-read from the database by digest", &stats.revalidations),
            ("key_refusals", "Keys refused as unknown, revoked, deleted or expired", &stats.unknown),
            ("key_throttled", "Key lookups refused by the per-client unknown-key budget", &stats.throttled),
            (
                "key_throttled_globally",
                "Key lookups refused by the unknown-key budget all clients share",
                &stats.throttled_globally,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        let dropped = ConstCounter::new(self.usage.dropped());
        dropped.encode(encoder.encode_descriptor(
            "usage_notes_dropped",
            "Usage notes dropped because the writer fell behind",
            None,
            dropped.metric_type(),
        )?)?;
        let pool = ConstGauge::new(self.verifier.pool().in_flight() as i64);
        pool.encode(encoder.encode_descriptor(
            "argon2_pool_in_flight",
            "Argon2 jobs running or queued",
            None,
            pool.metric_type(),
        )?)?;
        let cached = ConstGauge::new(self.verifier.cached_keys() as i64);
        cached.encode(encoder.encode_descriptor(
            "key_cache_entries",
            "Keys in the verified-key cache",
            None,
            cached.metric_type(),
        )?)?;
        Ok(())
    }
}

/// `GET /metrics`. With `metrics_token` set, only a request carrying `Authorization: Bearer
/// <token>` is answered (compared as BLAKE3 digests, in constant time).
pub async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, crate::error::ApiError> {
    if let Some(expected) = state.config.metrics_token.as_deref().filter(|token| !token.is_empty()) {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or(crate::error::ApiError::TokenMissing)?;
        if blake3::hash(presented.trim().as_bytes()) != blake3::hash(expected.as_bytes()) {
            return Err(crate::error::ApiError::TokenInvalid(
                "the metrics token is wrong; send the one in this server's metrics_token setting".into(),
            ));
        }
    }
    Ok((
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.gateway.metrics.encode(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_known_methods_or_other() {
        assert_eq!(method_label("tools/call"), "tools/call");
        assert_eq!(method_label("resources/templates/list"), "resources/templates/list");
        assert_eq!(method_label("notifications/progress"), "notifications/progress");
        assert_eq!(method_label("notifications/made-up"), "notifications/other");
        assert_eq!(method_label(&"x".repeat(250_000)), "other");
        assert_eq!(method_label("tools/call "), "other");
        assert_eq!(method_label(""), "other");
    }
}
