//! Relaying an upstream response to the agent, byte for byte and chunk by chunk, while watching
//! for the JSON-RPC response that ends the request (to record its outcome and latency).
//!
//! JSON responses are watched as they stream (the body is kept, up to a cap, only to read the
//! envelope at the end). SSE responses are relayed unbuffered; each chunk is also parsed with
//! `sse-stream`, inline, until the response whose id matches the request is seen. Nothing the
//! agent receives is altered by the watching; the one delay is deliberate and bounded: the chunk that
//! carries the call's response waits up to [`END_GRACE`] for the upstream's end of stream, which
//! follows at once from a server that closes the stream after the response as the spec advises,
//! so the agent's client reads the last event and the end in one write. Likewise the response's
//! head waits up to [`FIRST_GRACE`] for the body's first chunk ([`body_of`]), so that a short
//! answer leaves in one write — head, body and end — instead of two.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, Stream, StreamExt};
use prom_core::service::ServiceSlug;
use prom_core::time::Timestamp;
use prom_core::usage::UsageEvent;
use serde_json::Value;

use prom_core::charge::{ChargeOp, ChargeOpResult};
use prom_core::id::ChargeId;

use super::envelope::{Outcome, response_outcome};
use crate::charging::{ChargeBook, ChargeError};
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
    charge: Option<HeldCharge>,
    finished: bool,
}

/// The hold placed for a paid call, to be captured or released when the call ends.
#[derive(Debug)]
pub struct HeldCharge {
    pub id: ChargeId,
    pub book: ChargeBook,
    /// The service's setting when the hold was placed: a result with `isError: true` is charged.
    pub charge_tool_errors: bool,
}

impl HeldCharge {
    /// Whether a call that ended with `outcome` is charged: a result, or a tool error on a
    /// service that charges those. Anything else is released.
    fn captures(&self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Ok => true,
            Outcome::ToolError => self.charge_tool_errors,
            Outcome::RpcError | Outcome::UpstreamError | Outcome::Incomplete | Outcome::AllowanceExceeded => false,
        }
    }
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
            charge: None,
            finished: false,
        }
    }

    /// Attaches the hold placed for this call.
    pub fn with_charge(mut self, charge: HeldCharge) -> Self {
        self.charge = Some(charge);
        self
    }

    pub fn is_charged(&self) -> bool {
        self.charge.is_some()
    }

    /// The JSON-RPC id of the request.
    pub fn request_id(&self) -> &Value {
        &self.request_id
    }

    /// The tool called, for `tools/call`.
    pub fn tool(&self) -> Option<&str> {
        self.tool.as_deref()
    }

    /// Ends the call: captures its charge when it succeeded (or ended in a tool error on a service
    /// that charges those), releases it otherwise — durably — then records usage. An error means
    /// the capture could not be written: the result must not be delivered, since it would be
    /// served uncharged.
    pub async fn settle(&mut self, outcome: Outcome) -> Result<(), ChargeError> {
        if self.finished {
            return Ok(());
        }
        if let Some(charge) = self.charge.take() {
            let capture = charge.captures(outcome);
            let op = if capture { ChargeOp::Capture(charge.id) } else { ChargeOp::Release(charge.id) };
            let applied = match charge.book.apply(op.clone()).await {
                // Another process released the hold (it took this one for dead): serving the
                // result now would serve it uncharged.
                Ok(ChargeOpResult::NotHeld) if capture => Err(ChargeError::NotHeld),
                // The allowance expires before this charge could be settled: released, withheld.
                Ok(ChargeOpResult::Expired) => Err(ChargeError::Expired),
                Ok(_) => Ok(()),
                Err(err) => Err(err),
            };
            if let Err(ChargeError::Expired) = applied {
                tracing::warn!(
                    service = %self.service,
                    "a paid call ended too close to its allowance's expiry to be settled; its result was withheld \
                     and nothing was charged"
                );
                self.finish(Outcome::AllowanceExceeded);
                return Err(ChargeError::Expired);
            }
            if let Err(err) = applied {
                tracing::error!(error = %err, "could not settle a paid call; its hold stays until repaired");
                if capture {
                    // The hold is still there: give it back, since the result is withheld.
                    if let ChargeOp::Capture(id) = op {
                        charge.book.apply_later(ChargeOp::Release(id));
                    }
                    self.finish(Outcome::UpstreamError);
                    return Err(err);
                }
            }
        }
        self.finish(outcome);
        Ok(())
    }

    pub fn add_response_bytes(&self, bytes: usize) {
        self.response_bytes.fetch_add(i64::try_from(bytes).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// Records how the call ended. A charge still attached is released (this path is for calls
    /// that failed or never completed; successful paid calls go through [`Watch::settle`]).
    pub fn finish(&mut self, outcome: Outcome) {
        if self.finished {
            return;
        }
        self.finished = true;
        if let Some(charge) = self.charge.take() {
            charge.book.apply_later(ChargeOp::Release(charge.id));
        }
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

/// What the agent is sent, chunk by chunk.
pub type RelayStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// How long a response's head waits for the first chunk of its body before it is sent alone. The
/// upstream's body usually comes with its head, but reaches this task through the HTTP client's
/// connection task a moment later; a short answer then leaves in one write (one TCP segment for
/// the agent's client to read) instead of two. A body that takes longer is not waited for.
const FIRST_GRACE: std::time::Duration = std::time::Duration::from_millis(2);

/// The next item of `stream`, if it is ready now or within `grace`; `None` if not yet (the stream
/// keeps its place: nothing is lost by the wait's end).
async fn next_within<S: Stream + Unpin>(stream: &mut S, grace: std::time::Duration) -> Option<Option<S::Item>> {
    // First a few turns of the scheduler, without a timer: the item is usually on its way through
    // the HTTP client's connection task, which runs meanwhile (a timer earlier than every other one
    // wakes the runtime's driver, a system call of its own).
    for _ in 0..SOON_TURNS {
        if let Some(item) = stream.next().now_or_never() {
            return Some(item);
        }
        tokio::task::yield_now().await;
    }
    tokio::time::timeout(grace, stream.next()).await.ok()
}

/// Scheduler turns [`next_within`] tries before it sets a timer.
const SOON_TURNS: usize = 4;

/// The response body for `relay`, with its first chunk already taken when it comes within
/// [`FIRST_GRACE`] (or, `whole`, however long it takes: a paid JSON answer, which is held back
/// until its charge is captured anyway), so the head and that chunk are written together. A first
/// chunk that is an error comes back as the error: nothing has been sent yet, so the agent can be
/// answered properly instead of with a cut connection.
pub async fn body_of(mut relay: RelayStream, whole: bool) -> Result<Body, std::io::Error> {
    let first = if whole { Some(relay.next().await) } else { next_within(&mut relay, FIRST_GRACE).await };
    Ok(match first {
        Some(Some(Ok(first))) => {
            Body::from_stream(futures_util::stream::once(std::future::ready(Ok(first))).chain(relay))
        }
        Some(Some(Err(err))) => return Err(err),
        Some(None) => Body::empty(),
        None => Body::from_stream(relay),
    })
}

/// A JSON body: relayed chunk by chunk, read once complete. The body of a paid call is held back
/// until its charge is captured.
pub fn relay_json(upstream: reqwest::Response, watch: Option<Watch>) -> RelayStream {
    let stream: UpstreamStream = Box::pin(upstream.bytes_stream());
    let watch = match watch {
        Some(watch) if watch.is_charged() => {
            return Box::pin(futures_util::stream::once(charged_json(stream, watch)));
        }
        other => other,
    };
    let state = (stream, watch, BytesMut::new());
    Box::pin(futures_util::stream::unfold(state, |(mut stream, mut watch, mut kept)| async move {
        match stream.next().await {
            Some(Ok(chunk)) => {
                if let Some(watch) = &watch {
                    watch.response_bytes.fetch_add(chunk.len() as i64, Ordering::Relaxed);
                    if kept.len() + chunk.len() <= MAX_WATCHED_JSON {
                        kept.extend_from_slice(&chunk);
                    }
                }
                Some((Ok::<Bytes, std::io::Error>(chunk), (stream, watch, kept)))
            }
            Some(Err(err)) => {
                if let Some(watch) = &mut watch {
                    watch.finish(Outcome::UpstreamError);
                }
                Some((Err(std::io::Error::other(err)), (stream, None, kept)))
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

/// Reads a paid call's whole JSON body, settles its charge, and only then releases the body.
async fn charged_json(mut stream: UpstreamStream, mut watch: Watch) -> Result<Bytes, std::io::Error> {
    let mut body = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) if body.len() + chunk.len() <= MAX_WATCHED_JSON => body.extend_from_slice(&chunk),
            Ok(_) => {
                let _ = watch.settle(Outcome::UpstreamError).await;
                return Err(std::io::Error::other("the service's answer to a paid call is too large"));
            }
            Err(err) => {
                let _ = watch.settle(Outcome::UpstreamError).await;
                return Err(std::io::Error::other(err));
            }
        }
    }
    watch.add_response_bytes(body.len());
    let outcome = response_outcome(&body, &watch.request_id).unwrap_or(Outcome::Incomplete);
    watch.settle(outcome).await.map_err(std::io::Error::other)?;
    Ok(body.freeze())
}

/// How long the chunk carrying a call's response waits for the upstream's end of stream, which a
/// server sends right after the response (the spec says it SHOULD close the stream then): the
/// agent then gets the last event and the end in one write instead of two.
const END_GRACE: std::time::Duration = std::time::Duration::from_millis(2);

/// What an SSE relay does next: read the upstream, pass on an item already read, or end.
enum Next {
    Read(Option<Box<SseWatcher>>),
    Item(Result<Bytes, reqwest::Error>),
    End,
}

/// An SSE body: relayed unbuffered; each chunk is also fed to an SSE parser that looks for the
/// response, inline (no extra task or channel on the hot path).
pub fn relay_sse(upstream: reqwest::Response, watch: Option<Watch>) -> RelayStream {
    let stream: UpstreamStream = Box::pin(upstream.bytes_stream());
    let Some(watch) = watch else {
        return Box::pin(stream.map(|item| item.map_err(std::io::Error::other)));
    };
    let state = (stream, Next::Read(Some(Box::new(SseWatcher::new(watch)))));
    Box::pin(futures_util::stream::unfold(state, |(mut stream, next)| async move {
        let mut watcher = match next {
            Next::Read(watcher) => watcher,
            Next::Item(item) => return Some((item.map_err(std::io::Error::other), (stream, Next::Read(None)))),
            Next::End => return None,
        };
        match stream.next().await {
            Some(Ok(chunk)) => {
                if let Some(active) = &mut watcher
                    && let Some(outcome) = active.feed(chunk.clone())
                {
                    // The chunk carries the response: a paid call's charge is captured first, and
                    // meanwhile the end of the stream, due now, is awaited for a moment.
                    let (settled, after) =
                        tokio::join!(active.watch.settle(outcome), next_within(&mut stream, END_GRACE));
                    if let Err(err) = settled {
                        return Some((Err(std::io::Error::other(err)), (stream, Next::End)));
                    }
                    let next = match after {
                        Some(None) => Next::End,
                        Some(Some(item)) => Next::Item(item),
                        None => Next::Read(None),
                    };
                    return Some((Ok(chunk), (stream, next)));
                }
                Some((Ok::<Bytes, std::io::Error>(chunk), (stream, Next::Read(watcher))))
            }
            Some(Err(err)) => {
                if let Some(mut active) = watcher.take() {
                    let _ = active.watch.settle(Outcome::UpstreamError).await;
                }
                Some((Err(std::io::Error::other(err)), (stream, Next::Read(None))))
            }
            None => {
                if let Some(mut active) = watcher.take()
                    && let Some(outcome) = active.close()
                {
                    let _ = active.watch.settle(outcome).await;
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

/// What feeds the parser: the queued chunks, then the end.
type ChunkSource = Box<dyn FnMut(&mut Context<'_>) -> Poll<Option<Result<Bytes, Infallible>>> + Send>;

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
        let poll: ChunkSource = Box::new(move |_cx| {
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

    /// Adds a chunk and reads every event it completes: the outcome once the response is seen.
    fn feed(&mut self, chunk: Bytes) -> Option<Outcome> {
        self.watch.add_response_bytes(chunk.len());
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).chunks.push_back(chunk);
        self.drain()
    }

    /// The body ended: read what is left (an unfinished watch records `incomplete` when dropped).
    fn close(&mut self) -> Option<Outcome> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).ended = true;
        self.drain()
    }

    fn drain(&mut self) -> Option<Outcome> {
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            match self.parser.as_mut().poll_next(&mut cx) {
                Poll::Ready(Some(Ok(event))) => {
                    let Some(data) = event.data else { continue };
                    if let Some(outcome) = response_outcome(data.as_bytes(), &self.watch.request_id) {
                        return Some(outcome);
                    }
                }
                Poll::Ready(Some(Err(_)) | None) | Poll::Pending => return None,
            }
        }
    }
}
