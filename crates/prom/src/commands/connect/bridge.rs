//! The forwarding of `prom connect`: messages between the host's stdio and the gateway's
//! Streamable HTTP, both rmcp transports.
//!
//! rmcp types the two directions with the same message types (what a client sends is what a server
//! receives), so a message read from one end is written to the other as it is: requests and their
//! responses, notifications (progress, logging, cancellation), the gateway's own requests (sampling,
//! elicitation, roots) and the host's answers, and methods rmcp does not know, which its `Custom*`
//! variants carry with their method and params. The HTTP transport owns the session:
//! `Mcp-Session-Id`, `MCP-Protocol-Version`, the GET stream for server-initiated messages, resuming
//! with `Last-Event-ID`, re-initialising an expired session, and DELETE when we close it.
//!
//! The bridge adds only what a bridge needs on top: answering a request the gateway never got with a
//! JSON-RPC error, telling a refused key (`TOKEN_INVALID`) apart from an outage, and ending cleanly.
//!
//! What the typed hand-over cannot carry (rmcp 3.11, pinned by `known_losses_of_the_typed_round_trip`):
//! fields rmcp does not model inside a known message (an unknown capability, a vendor field next to
//! `tools`, a tool's `execution`); numbers keep their value but not their spelling (`1` arrives as
//! `1.0`, and a model-preference priority of `0.8` as the 32-bit float `0.800000011920929`); messages
//! the gateway sends on the initialize response stream before the response itself; and, from
//! protocol 2026-07-28 on, tools whose `x-mcp-header` annotations rmcp finds invalid.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use rmcp::RoleServer;
use rmcp::model::{ClientJsonRpcMessage, ErrorCode, ErrorData, RequestId, ServerJsonRpcMessage};
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::streamable_http_client::{StreamableHttpClient, StreamableHttpError};
use rmcp::transport::{StreamableHttpClientTransport, Transport};
use serde_json::json;

use super::{Probe, Refusal};

/// JSON-RPC error code of a request that was not forwarded because the gateway refused the key.
/// JSON-RPC leaves -32000 to -32099 to implementations; the message carries the Prometheus code.
const KEY_REFUSED: ErrorCode = ErrorCode(-32001);

/// How long requests in flight may still be answered after the host closed standard input.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

type GatewayError = StreamableHttpError<reqwest::Error>;

/// A message on its way to the gateway, with the id of the request it carries, if it is one.
type Delivery = BoxFuture<'static, (Option<RequestId>, Result<(), GatewayError>)>;

/// Why forwarding stopped.
pub(super) enum Ending {
    /// The host closed standard input (or standard output): the normal end.
    HostClosed,
    /// SIGTERM or Ctrl-C.
    Terminated,
    KeyRefused(Refusal),
    /// The HTTP transport stopped, with the last delivery failure if one says why.
    GatewayClosed(Option<String>),
}

pub(super) type HostTransport =
    AsyncRwTransport<RoleServer, rmcp::transport::StdioReader, rmcp::transport::StdioWriter>;
/// The gateway's side: rmcp's transport over reqwest, either as it is (an agent key) or with the
/// access token swapped in per request (a browser sign-in).
pub(super) type GatewayTransport<C> = StreamableHttpClientTransport<C>;

/// The two transports and the messages in transit between them.
pub(super) struct Bridge<C: StreamableHttpClient<Error = reqwest::Error>> {
    host: HostTransport,
    gateway: GatewayTransport<C>,
    probe: Probe,
    /// Deliveries to the gateway, with the id of the request each carries (to answer it on failure).
    /// Polled in the order they were pushed, so messages reach the transport in the host's order.
    to_gateway: FuturesUnordered<Delivery>,
    to_host: FuturesUnordered<BoxFuture<'static, std::io::Result<()>>>,
    /// The host's requests that have not been answered yet.
    in_flight: HashSet<RequestId>,
    /// Why the last delivery failed, for the message when the transport stops.
    last_failure: Option<String>,
}

impl<C: StreamableHttpClient<Error = reqwest::Error>> Bridge<C> {
    pub(super) fn new(host: HostTransport, gateway: GatewayTransport<C>, probe: Probe) -> Self {
        Self {
            host,
            gateway,
            probe,
            to_gateway: FuturesUnordered::new(),
            to_host: FuturesUnordered::new(),
            in_flight: HashSet::new(),
            last_failure: None,
        }
    }

    pub(super) async fn run(mut self) -> Ending {
        let ending = self.forward().await;
        // Whatever is on its way to the host (such as the error answering a refused request) is
        // written before we go.
        let _ = tokio::time::timeout(DRAIN_GRACE, async { while self.to_host.next().await.is_some() {} }).await;
        if matches!(ending, Ending::HostClosed | Ending::Terminated) {
            // Ends the session: DELETE, bounded by rmcp.
            if let Err(error) = self.gateway.close().await {
                tracing::debug!(%error, "closing the gateway session");
            }
        }
        ending
    }

    async fn forward(&mut self) -> Ending {
        let terminated = super::super::terminate_signal();
        tokio::pin!(terminated);
        let drain_deadline = tokio::time::sleep(Duration::MAX);
        tokio::pin!(drain_deadline);
        let mut host_open = true;
        let mut gateway_open = true;
        loop {
            if !host_open && self.in_flight.is_empty() && self.to_gateway.is_empty() {
                return Ending::HostClosed;
            }
            if !gateway_open && self.to_gateway.is_empty() {
                // Every delivery has failed or succeeded by now; nobody will answer the rest.
                for id in std::mem::take(&mut self.in_flight) {
                    let error = ErrorData::internal_error("the connection to the Prometheus gateway ended", None);
                    self.send_to_host(ServerJsonRpcMessage::error(error, Some(id)));
                }
                return Ending::GatewayClosed(self.last_failure.take());
            }
            tokio::select! {
                message = self.host.receive(), if host_open && gateway_open => match message {
                    Some(message) => self.send_to_gateway(message),
                    None => {
                        tracing::debug!("the host closed standard input");
                        host_open = false;
                        drain_deadline.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
                    }
                },
                message = self.gateway.receive(), if gateway_open => match message {
                    Some(message) => {
                        if let Some(id) = answered_request(&message) {
                            self.in_flight.remove(id);
                        }
                        self.send_to_host(message);
                    }
                    None => gateway_open = false,
                },
                Some((id, result)) = self.to_gateway.next(), if !self.to_gateway.is_empty() => {
                    if let Err(error) = result
                        && let Some(refusal) = self.delivery_failed(id, error).await {
                            return Ending::KeyRefused(refusal);
                        }
                }
                Some(written) = self.to_host.next(), if !self.to_host.is_empty() => {
                    if let Err(error) = written {
                        tracing::debug!(%error, "standard output is closed");
                        return Ending::HostClosed;
                    }
                }
                () = &mut drain_deadline, if !host_open => {
                    tracing::warn!(unanswered = self.in_flight.len(), "stopping with requests still in flight");
                    return Ending::HostClosed;
                }
                () = &mut terminated => return Ending::Terminated,
            }
        }
    }

    fn send_to_gateway(&mut self, message: ClientJsonRpcMessage) {
        let id = match &message {
            ClientJsonRpcMessage::Request(request) => Some(request.id.clone()),
            _ => None,
        };
        if let Some(id) = &id {
            self.in_flight.insert(id.clone());
        }
        let delivery = self.gateway.send(message);
        self.to_gateway.push(Box::pin(async move { (id, delivery.await) }));
    }

    fn send_to_host(&mut self, message: ServerJsonRpcMessage) {
        tracing::trace!(?message, "to the host");
        self.to_host.push(Box::pin(self.host.send(message)));
    }

    /// A message did not reach the gateway. A request gets a JSON-RPC error in its place, so that
    /// the host does not wait forever; a refused key ends the bridge.
    async fn delivery_failed(&mut self, id: Option<RequestId>, error: GatewayError) -> Option<Refusal> {
        let described = describe(&error);
        // Once the transport has stopped, every delivery fails alike: there is nothing to ask.
        let refusal = match error {
            StreamableHttpError::TransportChannelClosed => None,
            _ => {
                self.last_failure = Some(described.clone());
                self.probe.refusal().await
            }
        };
        match &refusal {
            Some(refusal) => tracing::debug!(code = %refusal.code, "the gateway refused the key"),
            None => tracing::warn!(error = described, "could not forward a message to the gateway"),
        }
        if let Some(id) = id.filter(|id| self.in_flight.remove(id)) {
            let error = match &refusal {
                Some(refusal) => ErrorData::new(
                    KEY_REFUSED,
                    format!("{}: {}", refusal.code, refusal.message),
                    Some(json!({ "code": refusal.code, "message": refusal.message, "status": refusal.status })),
                ),
                None => ErrorData::internal_error(
                    format!("prom connect could not forward this request to the gateway: {described}"),
                    None,
                ),
            };
            self.send_to_host(ServerJsonRpcMessage::error(error, Some(id)));
        }
        refusal
    }
}

/// A delivery error and its causes on one line: the message of reqwest's error leaves out why a
/// connection failed, and rmcp's wrapper of it does not name it as its source.
fn describe(error: &GatewayError) -> String {
    match error {
        StreamableHttpError::Client(inner) => format!("the HTTP request failed: {}", with_causes(inner)),
        other => with_causes(other),
    }
}

pub(super) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        let text = error.to_string();
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        cause = error.source();
    }
    line
}

/// The id of the host's request that this message answers, if it is an answer.
fn answered_request(message: &ServerJsonRpcMessage) -> Option<&RequestId> {
    match message {
        ServerJsonRpcMessage::Response(response) => Some(&response.id),
        ServerJsonRpcMessage::Error(error) => error.id.as_ref(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::{Value, json};

    use super::*;

    /// A message goes through the bridge as rmcp's typed value: read as one side's message, written
    /// as the other side's. This is what that does to it on the wire.
    fn from_gateway(raw: &Value) -> Value {
        serde_json::to_value(serde_json::from_value::<ServerJsonRpcMessage>(raw.clone()).unwrap()).unwrap()
    }

    fn from_host(raw: &Value) -> Value {
        serde_json::to_value(serde_json::from_value::<ClientJsonRpcMessage>(raw.clone()).unwrap()).unwrap()
    }

    #[test]
    fn what_hosts_and_servers_rely_on_crosses_unchanged() {
        let from_server = [
            json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1.0,"total":5.0,"message":"4 left"}}),
            json!({"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","logger":"l","data":{"x":1}}}),
            json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"}),
            json!({"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{"messages":[{"role":"user","content":{"type":"text","text":"q"}}],"maxTokens":10,"systemPrompt":"sp"}}),
            json!({"jsonrpc":"2.0","id":"s2","method":"elicitation/create","params":{"mode":"form","message":"name?","requestedSchema":{"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}}}),
            json!({"jsonrpc":"2.0","id":"s3","method":"roots/list"}),
            json!({"jsonrpc":"2.0","id":"s4","method":"vendor/custom","params":{"a":[1,2]}}),
            json!({"jsonrpc":"2.0","method":"notifications/vendor","params":{"a":1}}),
            json!({"jsonrpc":"2.0","id":4,"error":{"code":-32001,"message":"ALLOWANCE_EXCEEDED: raise it","data":{"url":"http://x/app"}}}),
            json!({"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"echo","title":"Echo","description":"d","inputSchema":{"type":"object"},"outputSchema":{"type":"object"},"annotations":{"readOnlyHint":true},"icons":[{"src":"http://x/i.png"}],"_meta":{"k":"v"}}],"nextCursor":"c2"}}),
            json!({"jsonrpc":"2.0","id":6,"result":{"content":[{"type":"text","text":"t"},{"type":"image","data":"aGk=","mimeType":"image/png"},{"type":"resource_link","uri":"file:///a","name":"a"}],"structuredContent":{"a":1},"isError":false,"_meta":{"m":1}}}),
            json!({"jsonrpc":"2.0","id":7,"result":{"vendor":"an unknown result"}}),
        ];
        for raw in &from_server {
            assert_eq!(&from_gateway(raw), raw);
        }
        let from_client = [
            json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{"listChanged":true},"sampling":{},"elicitation":{"form":{}}},"clientInfo":{"name":"c","version":"1"}}}),
            json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"countdown","arguments":{"n":5},"_meta":{"progressToken":1}}}),
            json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"reason":"r"}}),
            json!({"jsonrpc":"2.0","id":"s1","result":{"role":"assistant","content":{"type":"text","text":"a"},"model":"m","stopReason":"endTurn"}}),
            json!({"jsonrpc":"2.0","id":"s2","result":{"action":"accept","content":{"name":"ada"}}}),
            json!({"jsonrpc":"2.0","id":"s3","result":{"roots":[{"uri":"file:///r","name":"r"}]}}),
            json!({"jsonrpc":"2.0","id":"s5","error":{"code":-1,"message":"declined"}}),
            json!({"jsonrpc":"2.0","id":2,"method":"vendor/thing","params":{"x":1}}),
        ];
        for raw in &from_client {
            assert_eq!(&from_host(raw), raw);
        }
    }

    /// What rmcp's types drop on the way, as of rmcp 3.11: fields it does not model inside a known
    /// message. When this fails, rmcp keeps more than it did; update the report in the module docs.
    #[test]
    fn known_losses_of_the_typed_round_trip() {
        let unknown_field = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[],"x-vendor":1}});
        assert_eq!(from_gateway(&unknown_field), json!({"jsonrpc":"2.0","id":1,"result":{"tools":[]}}));
        let unknown_capability = json!({"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{"vendor":{}},"serverInfo":{"name":"s","version":"1"}}});
        assert_eq!(from_gateway(&unknown_capability)["result"]["capabilities"], json!({}));
        let execution = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"t","inputSchema":{"type":"object"},"execution":{"taskSupport":"optional"}}]}});
        assert_eq!(from_gateway(&execution)["result"]["tools"][0].get("execution"), None);
    }
}
