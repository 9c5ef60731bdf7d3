//! Relaying an upstream's event stream (a POST's answer, or a GET stream, resumed or not) event by
//! event, deciding for each event what reaches the agent.
//!
//! Each chunk is fed, inline, to an `sse-stream` parser; every event it completes is written out
//! again (its `id:`, `event:`, `retry:` and `data:` lines) as soon as it is complete, so the agent
//! gets exactly what the gateway read — nothing a more lenient parser might see differently. An
//! event carrying a paid call's response (a gateway-made id) is settled first: delivered under the
//! agent's id once captured, replaced by a JSON-RPC error under that id if the capture failed, and
//! dropped if no paid call waits for it. Data that is not a JSON-RPC message is dropped; an SSE
//! syntax error ends the stream. When the chunk carrying the stream's own response is written, it
//! waits up to [`END_GRACE`] for the upstream's end of stream, which a server sends right after
//! it, so the agent gets the last event and the end in one write.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use sse_stream::Sse;

use super::envelope::{Message, Outcome};
use super::ids::{is_paid_id, same_id};
use super::paid::PaidCalls;
use super::relay::{Awaiting, RelayError, RelayStream, UpstreamStream, next_within, paid_answer};

/// How long the chunk carrying a call's response waits for the upstream's end of stream, which a
/// server sends right after the response (the spec says it SHOULD close the stream then).
const END_GRACE: std::time::Duration = std::time::Duration::from_millis(2);

/// An event stream, relayed event by event.
pub fn relay_sse(stream: UpstreamStream, awaiting: Awaiting, paid: Arc<PaidCalls>) -> RelayStream {
    let relay = SseRelay { stream, parser: EventParser::new(), awaiting, paid, answered: false, next: Next::Read };
    Box::pin(futures_util::stream::unfold(
        relay,
        |mut relay| async move { relay.next_out().await.map(|out| (out, relay)) },
    ))
}

/// What the relay does next: read the upstream, use an item already read, or end.
enum Next {
    Read,
    Got(Option<Result<Bytes, std::io::Error>>),
    End,
}

struct SseRelay {
    stream: UpstreamStream,
    parser: EventParser,
    awaiting: Awaiting,
    paid: Arc<PaidCalls>,
    /// The stream's own response has been seen.
    answered: bool,
    next: Next,
}

impl SseRelay {
    /// The next bytes for the agent: the events completed by the next chunk(s).
    async fn next_out(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            let item = match std::mem::replace(&mut self.next, Next::Read) {
                Next::End => return None,
                Next::Got(item) => item,
                Next::Read => self.stream.next().await,
            };
            let (events, ended) = match item {
                Some(Ok(chunk)) => (self.parser.feed(chunk), false),
                Some(Err(err)) => {
                    self.stop(Outcome::UpstreamError);
                    return Some(Err(RelayError::Upstream(err).into_io()));
                }
                None => (self.parser.close(), true),
            };
            let (events, broken) = match events {
                Ok(events) => (events, false),
                Err(events) => (events, true),
            };
            let was_answered = self.answered;
            let mut out = BytesMut::new();
            for event in events {
                if let Some(bytes) = self.pass(event).await {
                    out.extend_from_slice(&bytes);
                }
            }
            if broken {
                tracing::warn!("an upstream's event stream is not valid SSE; the stream was ended there");
                self.stop(Outcome::UpstreamError);
                self.next = Next::End;
            } else if ended {
                self.stop(Outcome::Incomplete);
                self.next = Next::End;
            } else if self.answered && !was_answered {
                // The end of the stream is due now: wait a moment to send both in one write.
                if let Some(item) = next_within(&mut self.stream, END_GRACE).await {
                    self.next = Next::Got(item);
                }
            }
            if !out.is_empty() {
                return Some(Ok(out.freeze()));
            }
        }
    }

    /// The stream ended or broke before its own response: a free request is recorded with
    /// `outcome`; a paid call keeps its hold, since the agent may resume the stream.
    fn stop(&mut self, outcome: Outcome) {
        if let Awaiting::Free(mut watch) = std::mem::replace(&mut self.awaiting, Awaiting::Nothing) {
            watch.finish(outcome);
        }
    }

    /// What of `event` reaches the agent: the event written out again (rewritten for a paid
    /// response), or nothing.
    async fn pass(&mut self, event: Sse) -> Option<Bytes> {
        let Some(data) = event.data.as_deref().filter(|data| !data.trim().is_empty()) else {
            return Some(frame(&event, event.data.as_deref()));
        };
        match Message::read(data.as_bytes()) {
            Message::Response { id: Some(id), outcome } if is_paid_id(&id) => {
                let upstream_id = id.as_str().unwrap_or_default();
                if matches!(&self.awaiting, Awaiting::Paid(ticket) if ticket.upstream_id == upstream_id) {
                    self.answered = true;
                    self.awaiting = Awaiting::Nothing;
                }
                let delivery = self.paid.settle(upstream_id, outcome, data.len()).await;
                let Some(answer) = paid_answer(delivery, data.as_bytes()) else {
                    tracing::warn!("a paid call's response came after its hold ended; withheld");
                    return None;
                };
                Some(frame(&event, Some(&answer)))
            }
            Message::Response { id, outcome } => {
                if let Awaiting::Free(watch) = &self.awaiting
                    && id.as_ref().is_some_and(|id| same_id(id, watch.request_id()))
                {
                    self.answered = true;
                    if let Awaiting::Free(mut watch) = std::mem::replace(&mut self.awaiting, Awaiting::Nothing) {
                        watch.add_response_bytes(data.len());
                        watch.finish(outcome);
                    }
                }
                Some(frame(&event, Some(data)))
            }
            Message::Other => {
                if let Awaiting::Free(watch) = &self.awaiting {
                    watch.add_response_bytes(data.len());
                }
                Some(frame(&event, Some(data)))
            }
            Message::Unreadable => {
                tracing::debug!("an upstream sent an event that is not a JSON-RPC message; dropped");
                None
            }
        }
    }
}

/// One event written out: its id, event type and retry as the upstream sent them, then `data`.
fn frame(event: &Sse, data: Option<&str>) -> Bytes {
    let mut out = String::with_capacity(data.map_or(0, str::len) + 64);
    let mut field = |name: &str, value: &str| {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push('\n');
    };
    if let Some(id) = &event.id {
        field("id", id);
    }
    if let Some(kind) = &event.event {
        field("event", kind);
    }
    if let Some(retry) = event.retry {
        field("retry", &retry.to_string());
    }
    if let Some(data) = data {
        for line in data.split('\n') {
            field("data", line);
        }
    }
    out.push('\n');
    Bytes::from(out)
}

/// Chunks waiting for the parser, and whether the body has ended.
#[derive(Debug, Default)]
struct Pending {
    chunks: VecDeque<Bytes>,
    ended: bool,
}

/// What feeds the parser: the queued chunks, then the end.
type ChunkSource = Box<dyn FnMut(&mut Context<'_>) -> Poll<Option<Result<Bytes, Infallible>>> + Send>;

/// The parser's output: parsed events (an error is malformed SSE).
type Parser = dyn Stream<Item = Result<Sse, sse_stream::Error>> + Send;

/// Parses SSE events as chunks pass by. The parser reads from a queue that this parser's owner
/// fills, and is polled right after each fill with a no-op waker: it never has to wait for
/// anything but the next chunk, which is exactly when it is polled again.
struct EventParser {
    pending: Arc<Mutex<Pending>>,
    parser: Pin<Box<Parser>>,
}

impl EventParser {
    fn new() -> Self {
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
        Self { pending, parser }
    }

    /// Adds a chunk; the events it completes (`Err` with those before it if the stream is not
    /// valid SSE).
    fn feed(&mut self, chunk: Bytes) -> Result<Vec<Sse>, Vec<Sse>> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).chunks.push_back(chunk);
        self.drain()
    }

    /// The body ended: the events left.
    fn close(&mut self) -> Result<Vec<Sse>, Vec<Sse>> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).ended = true;
        self.drain()
    }

    fn drain(&mut self) -> Result<Vec<Sse>, Vec<Sse>> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut events = Vec::new();
        loop {
            match self.parser.as_mut().poll_next(&mut cx) {
                Poll::Ready(Some(Ok(event))) => events.push(event),
                Poll::Ready(Some(Err(_))) => return Err(events),
                Poll::Ready(None) | Poll::Pending => return Ok(events),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Field text as SSE carries it: no line breaks (a `data` value may hold `\n`, split in lines).
    fn field() -> impl Strategy<Value = String> {
        "[^\r\n]{0,40}"
    }

    proptest! {
        /// An event written out by [`frame`] reads back, through the parser, as the same event.
        #[test]
        fn framed_events_read_back_exactly(
            id in proptest::option::of("[^\r\n\0]{1,20}"),
            event in proptest::option::of("[^\r\n]{1,20}"),
            retry in proptest::option::of(0u64..100_000),
            lines in proptest::collection::vec(field(), 1..4),
        ) {
            let data = lines.join("\n");
            let sent = Sse { id: id.clone(), event: event.clone(), retry, data: Some(data.clone()) };
            let mut parser = EventParser::new();
            let mut got = parser.feed(frame(&sent, Some(&data))).unwrap_or_else(|events| events);
            got.extend(parser.close().unwrap_or_else(|events| events));
            prop_assert_eq!(got.len(), 1, "{:?}", got);
            prop_assert_eq!(got[0].data.as_deref(), Some(data.as_str()));
            prop_assert_eq!(&got[0].id, &id);
            prop_assert_eq!(&got[0].event, &event);
            prop_assert_eq!(got[0].retry, retry);
        }

        /// Arbitrary bytes, in arbitrary chunks, never panic the parser.
        #[test]
        fn any_stream_parses_or_is_refused(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..6)) {
            let mut parser = EventParser::new();
            for chunk in chunks {
                let _ = parser.feed(Bytes::from(chunk));
            }
            let _ = parser.close();
        }
    }
}
