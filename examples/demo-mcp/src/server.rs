//! `DemoServer`: the MCP handler with the `echo`, `fortune` and `countdown` tools.

use rmcp::{
    ErrorData, ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{
        CallToolResult, ContentBlock, Implementation, ProgressNotificationParam, ServerCapabilities, ServerConfig,
    },
    schemars::{self, JsonSchema},
    service::{RequestContext, RoleServer},
    tool, tool_handler, tool_router,
};
use serde::Deserialize;

use crate::{
    countdown::{Countdown, MAX_INTERVAL_MS, MAX_STEPS},
    fortune::pick_fortune,
};

/// The name the server reports in `serverInfo`.
pub const SERVER_NAME: &str = "demo-mcp";

const INSTRUCTIONS: &str = "This is the Prometheus demo service, an example paid MCP upstream. \
    `echo` repeats your text, `fortune` tells a fortune (a paid tool when called through the \
    Prometheus gateway), and `countdown` sends progress notifications before it answers.";

/// Arguments of the `echo` tool.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct EchoParams {
    /// The text to send back.
    pub text: String,
}

/// Arguments of the `countdown` tool.
///
/// Numbers are `i64` so out-of-range values reach [`Countdown::parse`] and get a readable tool
/// error rather than a JSON decoding error.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CountdownParams {
    /// How many progress notifications to send before answering (1 to 100).
    #[schemars(range(min = 1, max = MAX_STEPS))]
    pub n: i64,
    /// Milliseconds between two notifications (0 to 1000, default 10).
    #[serde(default)]
    #[schemars(range(min = 0, max = MAX_INTERVAL_MS))]
    pub interval_ms: Option<i64>,
}

/// The demo MCP server. It holds no state across calls, so every session gets a fresh one.
#[derive(Debug, Clone)]
pub struct DemoServer {
    tool_router: ToolRouter<Self>,
}

impl Default for DemoServer {
    fn default() -> Self {
        Self::new()
    }
}

#[tool_router]
impl DemoServer {
    /// Builds the server with its three tools.
    pub fn new() -> Self {
        Self { tool_router: Self::tool_router() }
    }

    /// Returns `text` unchanged.
    #[tool(
        description = "Return the given text unchanged.",
        annotations(title = "Echo", read_only_hint = true, idempotent_hint = true)
    )]
    async fn echo(&self, Parameters(EchoParams { text }): Parameters<EchoParams>) -> String {
        text
    }

    /// Tells a random fortune.
    #[tool(
        description = "Tell a random fortune cookie message.",
        annotations(title = "Fortune", read_only_hint = true, open_world_hint = false)
    )]
    async fn fortune(&self) -> String {
        pick_fortune()
    }

    /// Sends `n` progress notifications `interval_ms` apart, then answers `liftoff after n`.
    ///
    /// Notifications go out only when the caller sent a `progressToken`; the spec forbids them
    /// otherwise. Refused input is a tool error (`isError: true`) rather than a protocol error, as
    /// MCP asks for input validation failures, so an agent can read why and try again.
    #[tool(
        description = "Count down from n, sending a progress notification every interval_ms \
                       milliseconds, then answer \"liftoff after n\".",
        annotations(title = "Countdown", read_only_hint = true, idempotent_hint = true)
    )]
    async fn countdown(
        &self,
        Parameters(params): Parameters<CountdownParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let countdown = match Countdown::parse(params.n, params.interval_ms) {
            Ok(countdown) => countdown,
            Err(refusal) => {
                return Ok(CallToolResult::error(vec![ContentBlock::text(refusal.to_string())]));
            }
        };
        let steps = countdown.steps();
        let progress_token = context.meta.get_progress_token();
        for step in 1..=steps {
            if step > 1 {
                // A cancelled request gets no answer anyway; stop rather than keep sleeping.
                tokio::select! {
                    () = context.ct.cancelled() => {
                        return Err(ErrorData::internal_error("countdown cancelled", None));
                    }
                    () = tokio::time::sleep(countdown.interval()) => {}
                }
            }
            if let Some(token) = &progress_token {
                let progress = ProgressNotificationParam::new(token.clone(), f64::from(step))
                    .with_total(f64::from(steps))
                    .with_message(format!("{} left", steps - step));
                context.peer.notify_progress(progress).await.map_err(|error| {
                    ErrorData::internal_error(format!("could not send progress notification: {error}"), None)
                })?;
            }
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(format!("liftoff after {steps}"))]))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION")).with_title("Prometheus demo service"),
            )
            .with_instructions(INSTRUCTIONS)
    }
}
