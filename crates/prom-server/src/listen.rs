//! Serving connections: hyper's HTTP/1.1 with the limits a public server needs, which
//! `axum::serve` does not offer — a deadline for a request's head (a client that sends half a
//! request line and stalls is cut), a cap on open connections (past it, new ones wait in the
//! kernel's backlog instead of taking memory), and a bounded drain at shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_service::Service;

/// A request body that did not arrive within its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0} s")]
pub struct BodyTimedOut(pub u64);

impl BodyTimedOut {
    const TEXT: &str = "the request body did not arrive within";
}

/// Middleware: a request's body must arrive whole within `limit` of its head. A body read after
/// that fails with [`BodyTimedOut`] (see [`body_error`]), so a client trickling a byte at a time
/// cannot hold a request open.
pub async fn body_deadline(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::body::HttpBody as _;
    if request.body().size_hint().upper() == Some(0) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let chunks = Deadline {
        chunks: body.into_data_stream(),
        // Only polled (so only put on the timer wheel) when the body is not there yet.
        sleep: Box::pin(tokio::time::sleep(limit)),
        secs: limit.as_secs(),
        expired: false,
    };
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from_stream(chunks))).await
}

/// A body's chunks, failing with [`BodyTimedOut`] once `sleep` is over.
struct Deadline {
    chunks: axum::body::BodyDataStream,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    secs: u64,
    expired: bool,
}

impl futures_util::Stream for Deadline {
    type Item = Result<bytes::Bytes, axum::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(chunk) = std::pin::Pin::new(&mut self.chunks).poll_next(cx) {
            return Poll::Ready(chunk);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.expired = true;
                Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(self.secs)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Middleware for the management API: a request answered within `limit`, or 503. (Gateway
/// requests stream for as long as their upstream does; their limits are the upstream's timeouts.)
pub async fn request_deadline(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => crate::error::ApiError::Unavailable(format!(
            "the request took longer than {} s and was stopped; retry shortly",
            limit.as_secs()
        ))
        .into_response(),
    }
}

/// What a failed body read is, for the caller: too late (408) or `otherwise`.
pub fn body_error(
    err: &(dyn std::error::Error + 'static),
    otherwise: crate::error::ApiError,
) -> crate::error::ApiError {
    // Extractors' rejections keep the cause's text but not always the cause itself.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if current.downcast_ref::<BodyTimedOut>().is_some() || current.to_string().contains(BodyTimedOut::TEXT) {
            return crate::error::ApiError::RequestTimeout(format!(
                "{} the server's limit; send it faster, or all at once",
                BodyTimedOut::TEXT
            ));
        }
        source = current.source();
    }
    otherwise
}

/// How connections are bounded.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A request's head (request line and headers) must arrive within this, from the moment
    /// the connection is ready for it.
    pub header_read: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// How long open requests may still run once shutdown begins.
    pub drain: Duration,
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open requests finish for at
/// most `limits.drain`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let mut make = router.into_make_service_with_connect_info::<SocketAddr>();
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read).keep_alive(true);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    tracing::warn!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // SSE relays many small writes; without TCP_NODELAY, Nagle's algorithm and delayed ACKs
        // add ~40 ms stalls to every streamed response.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::warn!(error = %err, "cannot set TCP_NODELAY");
        }
        let service = match make.call(remote).await {
            Ok(service) => service,
            Err(never) => match never {},
        };
        let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, %remote, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.drain) => {
            tracing::warn!(drain_secs = limits.drain.as_secs(), "requests still open after the drain; closing them");
        }
    }
    Ok(())
}
