//! The accept loop: HTTP/1.1 (with upgrades, for WebSockets) on every accepted TCP
//! connection, with the limits that `axum::serve` does not let one set.
//!
//! - **A header-read timeout.** `axum::serve` gives hyper no timer, so hyper's
//!   `header_read_timeout` never fires: a connection that sends nothing, or trickles its
//!   headers a byte at a time, was kept forever (600 of them made the server unreachable
//!   under a 512-descriptor limit). Hyper starts that timer whenever it waits for a
//!   request head, on a new connection and between two requests on a kept-alive one, so
//!   the same timeout also closes idle keep-alive connections.
//! - **A cap on open connections** (WebSockets included: the permit lives in the socket
//!   and goes with it). Past the cap a connection is answered `503` with a GraphQL-shaped
//!   body and `Retry-After`, then closed, instead of waiting in the kernel's backlog.
//! - **GraphQL-shaped bodies on hyper's own error responses.** Hyper answers a request it
//!   cannot parse (`400`: a bad method, header or transfer encoding; `414`; `431`) by
//!   itself, with an empty body, and offers no hook. [`ErrorBodies`] recognises those
//!   canned responses on their way out and writes a JSON error in their place, so every
//!   response a client gets carries `extensions.code`.
//!
//! HTTP/2 is not served: without TLS only prior-knowledge h2c would be possible, which
//! browsers never speak, and hyper's protocol sniffing waits for the client's first
//! bytes without any timeout. A TLS terminator in front (which speaks h2 to browsers)
//! talks HTTP/1.1 to the service. ADR 0003 has the reasoning.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::error::AppError;

/// Limits of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// Time a client has to send a request's headers, on a new connection and between
    /// requests on a kept-alive one.
    pub header_timeout: Duration,
    /// Most connections open at once (HTTP and WebSocket).
    pub max_connections: usize,
}

/// Connections refused at the cap that may be answered at once; past this, a refused
/// connection is closed without an answer (a flood must not cost a task each).
const MAX_REFUSALS_IN_FLIGHT: usize = 64;

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and
/// waits for the requests in flight (upgraded WebSockets are drained by the application).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    // Every connection task holds a receiver; `closed()` on the sender resolves once the
    // last one has ended.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if let Ok(refusal) = refusals.clone().try_acquire_owned() {
                tokio::spawn(refuse(stream, limits.max_connections, refusal));
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(ErrorBodies::new(stream, permit));
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let conn = builder.serve_connection(io, service).with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = stop.wait_for(|stop| *stop) => conn.as_mut().graceful_shutdown(),
            }
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error while shutting down");
            }
        });
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    stop_tx.closed().await;
    Ok(())
}

/// Accept errors are about one connection (it went away) or about resources (no file
/// descriptors left): the latter must not spin the loop.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    ) {
        return;
    }
    tracing::warn!(error = %e, "accepting a connection failed; pausing the accept loop");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Answers a connection over the cap with `503` and closes it.
async fn refuse(mut stream: TcpStream, max: usize, _refusal: OwnedSemaphorePermit) {
    let body = super::error_body(&AppError::RateLimited(format!(
        "the server has {max} connections open, the most it accepts; retry shortly"
    )));
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let answered = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent, so that closing does not reset the connection
        // before it has read the answer.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answered).await;
}

/// A connection's socket, with its slot under the connection cap, that gives hyper's
/// canned error responses a GraphQL-shaped body.
pub struct ErrorBodies {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// A replacement response still to be written, and how much of it was.
    pending: Option<(Vec<u8>, usize)>,
}

impl ErrorBodies {
    fn new(inner: TcpStream, permit: OwnedSemaphorePermit) -> Self {
        Self {
            inner,
            _permit: permit,
            pending: None,
        }
    }

    /// Writes what is left of a replacement response.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

/// The JSON response that replaces a canned response of hyper's, when `head` is one.
///
/// Hyper writes those (`Server::on_error` in hyper's h1 role) as a status line and
/// headers with `content-length: 0` and nothing after, and only for a request it could
/// not parse, after which it closes the connection. The application never answers these
/// statuses without a body, so the match cannot catch one of its own responses.
pub fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    let head = std::str::from_utf8(head).ok()?;
    let rest = head.strip_prefix("HTTP/1.1 ")?;
    if !head.ends_with("\r\n\r\n")
        || !head
            .to_ascii_lowercase()
            .contains("\r\ncontent-length: 0\r\n")
    {
        return None;
    }
    let status_line = rest.split("\r\n").next()?;
    let message = match status_line.get(..3)? {
        "400" => {
            "the request is not valid HTTP/1.1 (its method, a header or its transfer encoding was refused)"
        }
        "414" => "the request's URI is too long",
        "431" => "the request's headers are too large",
        _ => return None,
    };
    let body = super::error_body(&AppError::BadUserInput(message.to_owned()));
    Some(
        format!(
            "HTTP/1.1 {status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl AsyncRead for ErrorBodies {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ErrorBodies {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        // Hyper writes a canned response as one buffer, the whole head; a write of the
        // application's never is one (its error responses all have bodies).
        let mut non_empty = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (non_empty.next(), non_empty.next())
            && only.starts_with(b"HTTP/1.1 4")
            && let Some(bytes) = replacement(only)
        {
            let len = only.len();
            this.pending = Some((bytes, 0));
            // Report the canned response as written: it is, in its new form.
            let _ = this.poll_pending(cx)?;
            return Poll::Ready(Ok(len));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_canned_responses_get_a_graphql_body() {
        let canned = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Thu, 26 Nov 2026 10:00:00 GMT\r\n\r\n";
        let replaced = String::from_utf8(replacement(canned).unwrap()).unwrap();
        assert!(replaced.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        let body = replaced.split("\r\n\r\n").nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
        assert!(replaced.contains(&format!("content-length: {}\r\n", body.len())));
    }

    #[test]
    fn responses_with_a_body_or_another_status_pass_through() {
        assert!(replacement(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n").is_none());
        assert!(replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(replacement(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}").is_none());
    }
}
