//! Relaying an upstream's answer to the agent, while watching for the JSON-RPC response that ends
//! the request (to record its outcome, and for a paid call to settle its charge first).
//!
//! **Fail closed.** A paid call's result reaches the agent only after its capture: a paid JSON
//! answer is read whole, settled, and only then released, under the agent's own id; anything else
//! in its place is withheld. Responses with gateway-made ids (paid calls, `ids.rs`) found in any
//! other answer go through the same rule (`sse.rs` for event streams); a free JSON answer is
//! released only once its end shows it carries no such response (its last chunk waits for that).
//!
//! One delay is deliberate and bounded: the response's head waits up to [`FIRST_GRACE`] for the
//! body's first chunk ([`body_of`]), so a short answer leaves in one write — head, body and end —
//! instead of two.

use std::sync::Arc;
use std::task::Poll;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, Stream, StreamExt};
use prom_core::money::Amount;
use serde_json::Value;

use super::envelope::{Message, Outcome};
use super::ids::{is_paid_id, same_id, with_id};
use super::paid::{Delivery, PaidCalls};
use super::rpc;
use super::watch::Watch;
use crate::money::ChargeError;

/// Largest JSON response body kept for reading its envelope.
pub const MAX_WATCHED_JSON: usize = 4 * 1024 * 1024;

/// What an upstream's answer is awaited for.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per request, moved a few times; boxing the watch would allocate on every free request"
)]
pub enum Awaiting {
    /// A free request, watched for its metering.
    Free(Watch),
    /// A paid call, waiting in [`PaidCalls`] under its upstream id.
    Paid(PaidTicket),
    /// No request of the agent's (a GET stream, a DELETE, a notification).
    Nothing,
}

/// A paid call as the stream that carries it knows it.
#[derive(Clone, Debug)]
pub struct PaidTicket {
    /// The gateway-made id the call went upstream under.
    pub upstream_id: String,
    /// The id the agent sent.
    pub client_id: Value,
    pub price: Amount,
}

/// Why an answer (or part of it) was withheld or broke off.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the paid call could not be charged")]
    Charge(#[source] ChargeError),
    #[error("the service's answer does not answer the paid call")]
    Unanswered,
    #[error("the service's answer to a paid call is too large")]
    TooLarge,
    #[error("the service's answer carried another call's paid result")]
    Foreign,
    #[error("the service's answer broke off")]
    Upstream(#[source] std::io::Error),
}

impl RelayError {
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::other(self)
    }
}

pub type UpstreamStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// An upstream's body as a stream of chunks; with `idle`, one that sends nothing for that long
/// fails (`TimedOut`) and ends, so a call whose upstream stalls after its head ends as an upstream
/// failure (a paid call's hold is released) instead of waiting for ever.
pub fn upstream_body(upstream: reqwest::Response, idle: Option<std::time::Duration>) -> UpstreamStream {
    let chunks = upstream.bytes_stream().map(|chunk| chunk.map_err(std::io::Error::other));
    let Some(idle) = idle else { return Box::pin(chunks) };
    Box::pin(Idle { chunks: Box::pin(chunks), idle, sleep: Box::pin(tokio::time::sleep(idle)), ended: false })
}

/// An upstream body that fails once it has sent nothing for `idle`. One timer, reset at each
/// chunk and polled only while the upstream has nothing ready.
struct Idle {
    chunks: UpstreamStream,
    idle: std::time::Duration,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    ended: bool,
}

impl Stream for Idle {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Poll::Ready(chunk) = self.chunks.as_mut().poll_next(cx) {
            let next = tokio::time::Instant::now() + self.idle;
            self.sleep.as_mut().reset(next);
            self.ended = !matches!(chunk, Some(Ok(_)));
            return Poll::Ready(chunk);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.ended = true;
                let stalled = format!("the upstream sent nothing for {} s", self.idle.as_secs());
                Poll::Ready(Some(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, stalled))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// What the agent is sent, chunk by chunk.
pub type RelayStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// How long a response's head waits for the first chunk of its body before it is sent alone. The
/// upstream's body usually comes with its head, but reaches this task through the HTTP client's
/// connection task a moment later; a short answer then leaves in one write (one TCP segment for
/// the agent's client to read) instead of two. A body that takes longer is not waited for.
const FIRST_GRACE: std::time::Duration = std::time::Duration::from_millis(2);

/// The next item of `stream`, if it is ready now or within `grace`; `None` if not yet (the stream
/// keeps its place: nothing is lost by the wait's end).
pub async fn next_within<S: Stream + Unpin>(stream: &mut S, grace: std::time::Duration) -> Option<Option<S::Item>> {
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

/// A JSON body. A paid call's is read whole and released only once settled; any other is relayed
/// chunk by chunk, its last chunk held until the end shows what the body is.
pub fn relay_json(stream: UpstreamStream, awaiting: Awaiting, paid: Arc<PaidCalls>) -> RelayStream {
    match awaiting {
        Awaiting::Paid(ticket) => Box::pin(futures_util::stream::once(paid_json(stream, ticket, paid))),
        Awaiting::Free(watch) => free_json(stream, Some(watch)),
        Awaiting::Nothing => free_json(stream, None),
    }
}

/// Reads a paid call's whole JSON answer, settles its charge, and only then releases it, under
/// the agent's id. An answer that is not the call's response is withheld and the hold released.
async fn paid_json(
    mut stream: UpstreamStream,
    ticket: PaidTicket,
    paid: Arc<PaidCalls>,
) -> Result<Bytes, std::io::Error> {
    let mut body = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let failure = match chunk {
            Ok(chunk) if body.len() + chunk.len() <= MAX_WATCHED_JSON => {
                body.extend_from_slice(&chunk);
                continue;
            }
            Ok(_) => RelayError::TooLarge,
            Err(err) => RelayError::Upstream(err),
        };
        paid.fail(&ticket.upstream_id, Outcome::UpstreamError).await;
        return Err(failure.into_io());
    }
    match Message::read(&body) {
        Message::Response { id: Some(id), outcome } if id.as_str() == Some(ticket.upstream_id.as_str()) => {
            let delivery = paid.settle(&ticket.upstream_id, outcome, body.len()).await;
            deliverable(delivery, &body).map(Bytes::from).map_err(RelayError::into_io)
        }
        _ => {
            paid.fail(&ticket.upstream_id, Outcome::Incomplete).await;
            Err(RelayError::Unanswered.into_io())
        }
    }
}

/// A settled paid response, rewritten to the agent's id; or why it is withheld.
pub fn deliverable(delivery: Delivery, message: &[u8]) -> Result<Vec<u8>, RelayError> {
    match delivery {
        Delivery::Deliver(client_id) => with_id(message, &client_id).map_err(|_| RelayError::Unanswered),
        Delivery::Withheld(_, err) => Err(RelayError::Charge(err)),
        Delivery::Unknown => Err(RelayError::Charge(ChargeError::NotHeld)),
    }
}

/// What the agent gets for a settled paid response (one message): the response under its own id,
/// a JSON-RPC error under its id if the capture failed, or nothing if no call waited for it.
pub fn paid_answer(delivery: Delivery, message: &[u8]) -> Option<String> {
    let withheld_id = match &delivery {
        Delivery::Withheld(client_id, _) => Some(client_id.clone()),
        Delivery::Deliver(_) | Delivery::Unknown => None,
    };
    match (deliverable(delivery, message), withheld_id) {
        (Ok(rewritten), _) => String::from_utf8(rewritten).ok(),
        (Err(RelayError::Charge(err)), Some(client_id)) => Some(rpc::charge_failure(&client_id, &err).to_string()),
        (Err(_), _) => None,
    }
}

/// A free JSON body, relayed as it comes but for its last chunk, which waits for the end: a body
/// that turns out to be a paid call's response (a gateway-made id) is cut there, withheld.
fn free_json(stream: UpstreamStream, watch: Option<Watch>) -> RelayStream {
    struct State {
        stream: UpstreamStream,
        watch: Option<Watch>,
        kept: BytesMut,
        overflowed: bool,
        held: Option<Bytes>,
        ended: bool,
    }
    let state = State { stream, watch, kept: BytesMut::new(), overflowed: false, held: None, ended: false };
    Box::pin(futures_util::stream::unfold(state, |mut state| async move {
        if state.ended {
            return None;
        }
        loop {
            match state.stream.next().await {
                Some(Ok(chunk)) => {
                    if let Some(watch) = &state.watch {
                        watch.add_response_bytes(chunk.len());
                    }
                    if state.kept.len() + chunk.len() <= MAX_WATCHED_JSON {
                        state.kept.extend_from_slice(&chunk);
                    } else {
                        state.overflowed = true;
                    }
                    if let Some(previous) = state.held.replace(chunk) {
                        return Some((Ok(previous), state));
                    }
                }
                Some(Err(err)) => {
                    if let Some(mut watch) = state.watch.take() {
                        watch.finish(Outcome::UpstreamError);
                    }
                    state.ended = true;
                    return Some((Err(RelayError::Upstream(err).into_io()), state));
                }
                None => {
                    state.ended = true;
                    let message = if state.overflowed { Message::Unreadable } else { Message::read(&state.kept) };
                    match message {
                        Message::Response { id: Some(id), .. } if is_paid_id(&id) => {
                            tracing::warn!("an upstream answered a request with a paid call's response; withheld");
                            return Some((Err(RelayError::Foreign.into_io()), state));
                        }
                        Message::Response { id: Some(id), outcome } => {
                            if let Some(mut watch) = state.watch.take_if(|watch| same_id(&id, watch.request_id())) {
                                watch.finish(outcome);
                            }
                        }
                        _ => {}
                    }
                    // An unfinished watch records the request as incomplete when dropped.
                    state.watch = None;
                    return state.held.take().map(|last| (Ok(last), state));
                }
            }
        }
    }))
}
