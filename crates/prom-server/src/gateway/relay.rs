//! Relaying an upstream response to the agent, byte for byte and chunk by chunk, while watching
//! for the JSON-RPC response that ends the request (to record its outcome and latency).
//!
//! JSON responses are watched as they stream (the body is kept, up to a cap, only to read the
//! envelope at the end). SSE responses are relayed unbuffered; each chunk is also parsed with
//! `sse-stream`, inline, until the response whose id matches the request is seen. Nothing the
//! agent receives is altered or delayed by the watching.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use prom_core::service::ServiceSlug;
use prom_core::time::Timestamp;
use prom_core::usage::UsageEvent;
use serde_json::Value;

use super::envelope::{Outcome, response_outcome};
use crate::metrics::{Metrics, RequestLabels, ServiceLabel};
use crate::usage::{KeyUser, UsageRecorder};

/// Largest JSON response body kept for reading its envelope.
const MAX_WATCHED_JSON: usize = 4 * 1024 * 1024;

/// One JSON-RPC request being watched until its response is seen. Dropping it unfinished records
/// the request as `incomplete`, so every request produces exactly one usage event.
#[derive(Debug)]
pub struct Watch {
    started: Instant,
    request_id: Value,
    service: ServiceSlug,
    method: String,
    tool: Option<String>,
    request_bytes: i64,
    response_bytes: Arc<AtomicI64>,
    user: KeyUser,
    usage: UsageRecorder,
    metrics: Arc<Metrics>,
    finished: bool,
}

impl Watch {
    #[expect(clippy::too_many_arguments, reason = "a plain record of what one request was")]
    pub fn new(
        request_id: Value,
        service: ServiceSlug,
        method: String,
        tool: Option<String>,
        request_bytes: usize,
        user: KeyUser,
        usage: UsageRecorder,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            started: Instant::now(),
            request_id,
            service,
            method,
            tool,
            request_bytes: i64::try_from(request_bytes).unwrap_or(i64::MAX),
            response_bytes: Arc::new(AtomicI64::new(0)),
            user,
            usage,
            metrics,
            finished: false,
        }
    }

    pub fn add_response_bytes(&self, bytes: usize) {
        self.response_bytes.fetch_add(i64::try_from(bytes).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    pub fn finish(&mut self, outcome: Outcome) {
        if self.finished {
            return;
        }
        self.finished = true;
        let elapsed = self.started.elapsed();
        let service = self.service.to_string();
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                service: service.clone(),
                method: self.method.clone(),
                outcome: outcome.as_str().to_owned(),
            })
            .inc();
        self.metrics.latency.get_or_create(&ServiceLabel { service }).observe(elapsed.as_secs_f64());
        self.usage.record_event(
            UsageEvent {
                at: Timestamp::now(),
                tenant_id: self.user.tenant_id.clone(),
                key_id: self.user.key_id.clone(),
                service: self.service.clone(),
                method: std::mem::take(&mut self.method),
                tool: self.tool.take(),
                outcome: outcome.as_str().to_owned(),
                latency_us: i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX),
                request_bytes: self.request_bytes,
                response_bytes: self.response_bytes.load(Ordering::Relaxed),
            },
            self.user.clone(),
        );
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.finish(Outcome::Incomplete);
    }
}

type UpstreamStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// A JSON body: relayed chunk by chunk, read once complete.
pub fn relay_json(upstream: reqwest::Response, watch: Option<Watch>) -> Body {
    let stream: UpstreamStream = Box::pin(upstream.bytes_stream());
    let state = (stream, watch, BytesMut::new());
    Body::from_stream(futures_util::stream::unfold(state, |(mut stream, mut watch, mut kept)| async move {
        match stream.next().await {
            Some(Ok(chunk)) => {
                if let Some(watch) = &watch {
                    watch.response_bytes.fetch_add(chunk.len() as i64, Ordering::Relaxed);
                    if kept.len() + chunk.len() <= MAX_WATCHED_JSON {
                        kept.extend_from_slice(&chunk);
                    }
                }
                Some((Ok::<Bytes, reqwest::Error>(chunk), (stream, watch, kept)))
            }
            Some(Err(err)) => {
                if let Some(watch) = &mut watch {
                    watch.finish(Outcome::UpstreamError);
                }
                Some((Err(err), (stream, None, kept)))
            }
            None => {
                if let Some(mut watch) = watch.take() {
                    let outcome = response_outcome(&kept, &watch.request_id).unwrap_or(Outcome::Incomplete);
                    watch.finish(outcome);
                }
                None
            }
        }
    }))
}

/// An SSE body: relayed unbuffered; each chunk is also fed to an SSE parser that looks for the
/// response, inline (no extra task or channel on the hot path).
pub fn relay_sse(upstream: reqwest::Response, watch: Option<Watch>) -> Body {
    let stream: UpstreamStream = Box::pin(upstream.bytes_stream());
    let Some(watch) = watch else {
        return Body::from_stream(stream);
    };
    let state = (stream, Some(SseWatcher::new(watch)));
    Body::from_stream(futures_util::stream::unfold(state, |(mut stream, mut watcher)| async move {
        match stream.next().await {
            Some(Ok(chunk)) => {
                if let Some(active) = &mut watcher {
                    if active.feed(chunk.clone()) {
                        watcher = None;
                    }
                }
                Some((Ok::<Bytes, reqwest::Error>(chunk), (stream, watcher)))
            }
            Some(Err(err)) => {
                if let Some(mut active) = watcher.take() {
                    active.watch.finish(Outcome::UpstreamError);
                }
                Some((Err(err), (stream, None)))
            }
            None => {
                if let Some(mut active) = watcher.take() {
                    active.close();
                }
                None
            }
        }
    }))
}

/// Chunks waiting for the parser, and whether the body has ended.
#[derive(Debug, Default)]
struct Pending {
    chunks: VecDeque<Bytes>,
    ended: bool,
}

/// The parser's output: parsed events (errors are malformed SSE, which ends the watching).
type Parser = dyn Stream<Item = Result<sse_stream::Sse, sse_stream::Error>> + Send;

/// Parses the SSE events of a response as its chunks pass by. The parser reads from a queue
/// that this watcher fills, and is polled right after each fill with a no-op waker: it never has
/// to wait for anything but the next chunk, which is exactly when it is polled again.
struct SseWatcher {
    pending: Arc<Mutex<Pending>>,
    parser: Pin<Box<Parser>>,
    watch: Watch,
}

impl std::fmt::Debug for SseWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseWatcher").field("watch", &self.watch).finish_non_exhaustive()
    }
}

impl SseWatcher {
    fn new(watch: Watch) -> Self {
        let pending = Arc::new(Mutex::new(Pending::default()));
        let source = pending.clone();
        let poll: Box<dyn FnMut(&mut Context<'_>) -> Poll<Option<Result<Bytes, Infallible>>> + Send> =
            Box::new(move |_cx| {
                let mut pending = source.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                match pending.chunks.pop_front() {
                    Some(chunk) => Poll::Ready(Some(Ok(chunk))),
                    None if pending.ended => Poll::Ready(None),
                    None => Poll::Pending,
                }
            });
        let parser: Pin<Box<Parser>> =
            Box::pin(sse_stream::SseStream::from_bytes_stream(futures_util::stream::poll_fn(poll)));
        Self { pending, parser, watch }
    }

    /// Adds a chunk and reads every event it completes. True once the response was seen.
    fn feed(&mut self, chunk: Bytes) -> bool {
        self.watch.add_response_bytes(chunk.len());
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).chunks.push_back(chunk);
        self.drain()
    }

    /// The body ended: read what is left (an unfinished watch records `incomplete` when dropped).
    fn close(&mut self) {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).ended = true;
        self.drain();
    }

    fn drain(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            match self.parser.as_mut().poll_next(&mut cx) {
                Poll::Ready(Some(Ok(event))) => {
                    let Some(data) = event.data else { continue };
                    if let Some(outcome) = response_outcome(data.as_bytes(), &self.watch.request_id) {
                        self.watch.finish(outcome);
                        return true;
                    }
                }
                Poll::Ready(Some(Err(_)) | None) | Poll::Pending => return false,
            }
        }
    }
}
