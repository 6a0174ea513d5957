//! The accept loop: TCP connections to HTTP/1.1 (and WebSocket upgrades), with the limits that
//! `axum::serve` does not have.
//!
//! - A header read timeout: a client that sends half a request (or nothing) and goes silent is
//!   closed, so idle sockets cannot pile up (slowloris). `axum::serve` builds hyper's connection
//!   without a timer, and hyper ignores its default header timeout without one.
//! - A connection cap: past `max_connections` the loop stops accepting until one closes, and
//!   the kernel's backlog holds the rest, instead of running out of file descriptors.
//! - Accept errors (out of descriptors, say) pause the loop briefly instead of ending it.
//!
//! On shutdown it stops accepting and asks every HTTP connection to finish its request and close;
//! upgraded WebSocket sessions watch the same signal themselves.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::shutdown::stopped;
use crate::telemetry::metrics::EdgeMetrics;

/// Limits of the accept loop.
#[derive(Clone, Copy, Debug)]
pub struct EdgeSettings {
    /// Most HTTP connections open at once. A WebSocket session leaves this count when it is
    /// upgraded; listeners are limited by [`ListenerSlots`](super::slots::ListenerSlots).
    pub max_connections: usize,
    /// Longest a client may take to send a request's headers (also the idle keep-alive limit).
    pub header_read_timeout: Duration,
    /// Longest a request may take from its head to its response (a body sent byte by byte, say);
    /// answered with 408. Streaming responses are not cut: their head is the response.
    pub request_timeout: Duration,
    /// Kernel send buffer per socket; bounds memory and latency for clients that stop reading.
    pub send_buffer_bytes: Option<usize>,
}

/// Lets a handler close its connection outright: a streaming response (an HTTP mount) whose
/// client stopped reading cannot end its body gracefully, as the end would never be written.
/// Every request carries one for its connection as an extension.
#[derive(Clone, Debug, Default)]
pub struct ConnectionAbort(Arc<tokio::sync::Notify>);

impl ConnectionAbort {
    /// Closes the connection (at once if it is being served, else when it is).
    pub fn abort(&self) {
        self.0.notify_one();
    }

    async fn aborted(&self) {
        self.0.notified().await;
    }
}

/// How long the loop pauses after an accept error such as running out of file descriptors.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Largest request head hyper buffers (the default is 400 KiB; our requests are small).
const MAX_REQUEST_HEAD_BYTES: usize = 64 * 1024;

/// Serves `app` on `listener` until `shutdown` turns true, then waits up to `grace` for open
/// HTTP connections to finish. Returns when the shutdown began, so the caller can hold the rest
/// of the shutdown (WebSocket sessions) to the same grace period.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: EdgeSettings,
    metrics: Arc<EdgeMetrics>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) -> Instant {
    let permits = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let mut connections = JoinSet::new();
    loop {
        // Finished connections leave the set as we go, so it stays as small as the open ones.
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Per-connection failures (reset before accept) and resource exhaustion
                    // alike: the listener itself stays usable.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        tune(&stream, settings.send_buffer_bytes);
        let app = app.clone();
        let metrics = Arc::clone(&metrics);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            let _open = OpenConnection::new(&metrics);
            serve_connection(stream, peer, app, settings, shutdown, &metrics).await;
        });
    }
    let stopping_since = Instant::now();
    // Refuse new connections at once rather than let the kernel queue them until we exit.
    drop(listener);
    if tokio::time::timeout_at(stopping_since + grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::debug!(
            open = connections.len(),
            "HTTP connections still open at the end of the grace period were closed"
        );
        connections.abort_all();
    }
    stopping_since
}

/// Counts a connection in the open-connections gauge for as long as it lives, panics included.
struct OpenConnection<'a>(&'a EdgeMetrics);

impl<'a> OpenConnection<'a> {
    fn new(metrics: &'a EdgeMetrics) -> Self {
        metrics.connections.increment(1.0);
        Self(metrics)
    }
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.connections.decrement(1.0);
    }
}

/// Audio must not wait for Nagle; a bounded send buffer bounds memory per stalled client. A
/// failure only costs a little latency, so it is logged, not fatal.
fn tune(stream: &TcpStream, send_buffer_bytes: Option<usize>) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("cannot set TCP_NODELAY: {e}");
    }
    if let Some(bytes) = send_buffer_bytes {
        if let Err(e) = socket2::SockRef::from(stream).set_send_buffer_size(bytes) {
            tracing::debug!("cannot set SO_SNDBUF: {e}");
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    settings: EdgeSettings,
    mut shutdown: watch::Receiver<bool>,
    metrics: &EdgeMetrics,
) {
    let request_timeout = settings.request_timeout;
    let abort = ConnectionAbort::default();
    let handle = abort.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(handle.clone());
        let app = app.clone();
        async move {
            let handled = app.oneshot(request.map(axum::body::Body::new));
            let response = match tokio::time::timeout(request_timeout, handled).await {
                Ok(response) => response.unwrap_or_else(|never| match never {}),
                Err(_) => request_timed_out(),
            };
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES);
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = abort.aborted() => {
            tracing::debug!(%peer, "closed a connection whose stream was dropped");
            return;
        }
        _ = stopped(&mut shutdown) => {
            connection.as_mut().graceful_shutdown();
            connection.as_mut().await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            metrics.header_timeouts.increment(1);
            tracing::debug!(%peer, "closed a connection that did not send its request in time");
        } else {
            tracing::trace!(%peer, "connection ended with an error: {e}");
        }
    }
}

/// The answer to a request that took longer than the request timeout.
fn request_timed_out() -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = serde_json::json!({
        "error": {"code": "request_timeout", "message": "the request took too long to arrive"}
    });
    (axum::http::StatusCode::REQUEST_TIMEOUT, axum::Json(body)).into_response()
}
