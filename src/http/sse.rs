//! Subscriptions over plain HTTP, for clients without WebSockets, in the two framings the
//! ecosystem's clients read: Apollo's multipart subscription protocol (Apollo Client's
//! HttpLink, urql's `fetchSubscriptions`) and GraphQL over Server-Sent Events in its
//! "distinct connections" mode (the npm `graphql-sse` client, and any client that asks
//! for `text/event-stream` alone). One loop serves both, so that both are bounded alike:
//! the caller's connection slot, a heartbeat after 5 s of silence, each message within
//! the response-size limit, and the end of the subscription's own stream (completion,
//! `SERVER_DRAINING`, an expired token).
//!
//! A message is written as soon as it is produced, each one complete in itself: a client
//! never waits for the next message (or heartbeat) to see the previous one. Neither
//! framing is gzip-compressed (the router's compression layer skips both types), since a
//! compressor holds bytes back.

use async_graphql::{Request, ServerResult};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;

use super::{HttpState, authorization, bounded_json, error_response, ws};
use crate::error::AppError;
use crate::graphql::error::ensure_code;

/// How each message, heartbeat and end of a stream is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Apollo's multipart subscription protocol: each message one `multipart/mixed` part
    /// `{"payload": <response>}`, `{}` as a heartbeat part.
    ///
    /// Each part is written with the delimiter that *closes* it. A part ends where the
    /// next delimiter begins (RFC 2046 §5.1.1), so a part written after its opening
    /// delimiter alone is only complete, and released by the client's parser (Apollo
    /// Client's, urql's), once the next part or heartbeat arrives: every message one
    /// message late. So the body opens with the first delimiter, each part is its
    /// headers, its JSON and the next delimiter, and `--` after the last delimiter
    /// closes the body:
    ///
    /// ```text
    /// \r\n--graphql
    /// \r\ncontent-type: application/json\r\n\r\n{"payload":{...}}\r\n--graphql
    /// \r\ncontent-type: application/json\r\n\r\n{}\r\n--graphql
    /// --\r\n
    /// ```
    Multipart,
    /// GraphQL over SSE, distinct connections mode (graphql-sse's PROTOCOL.md): each
    /// message a `next` event whose data is the response, a `complete` event at the end,
    /// and a comment line as the heartbeat (the HTML standard's keep-alive, §9.2.7).
    /// Errors raised before execution (syntax, validation, a limit) are a `next` event
    /// too, on an accepted stream: the protocol asks for that, as a browser's
    /// `EventSource` cannot read a `4xx` body.
    ///
    /// ```text
    /// event: next
    /// data: {"data":{...}}
    ///
    /// :
    ///
    /// event: complete
    /// data:
    ///
    /// ```
    EventStream,
}

/// The multipart delimiter: the boundary `graphql` on a line of its own.
const DELIMITER: &str = "\r\n--graphql";

/// One multipart part with `json` as its body, closed by the delimiter after it.
fn multipart_part(json: &str) -> String {
    format!("\r\ncontent-type: application/json\r\n\r\n{json}{DELIMITER}")
}

impl Framing {
    fn content_type(self) -> &'static str {
        match self {
            Framing::Multipart => "multipart/mixed; boundary=\"graphql\"; subscriptionSpec=\"1.0\"",
            Framing::EventStream => "text/event-stream; charset=utf-8",
        }
    }

    fn opening(self) -> &'static str {
        match self {
            Framing::Multipart => DELIMITER,
            Framing::EventStream => "",
        }
    }

    fn message(self, json: &str) -> String {
        match self {
            Framing::Multipart => multipart_part(&format!("{{\"payload\":{json}}}")),
            // JSON from serde_json has no raw line break, so the response is one data line.
            Framing::EventStream => format!("event: next\ndata: {json}\n\n"),
        }
    }

    fn heartbeat(self) -> String {
        match self {
            Framing::Multipart => multipart_part("{}"),
            Framing::EventStream => ":\n\n".to_owned(),
        }
    }

    fn end(self) -> &'static str {
        match self {
            Framing::Multipart => "--\r\n",
            Framing::EventStream => "event: complete\ndata:\n\n",
        }
    }
}

/// Streams the results of `request` (its document already resolved and measured:
/// `super::resolved`) in `framing` until its stream ends; a request refused there is
/// streamed as its error, a `next` event under `EventStream` (see
/// [`Framing::EventStream`]). A streamed operation holds a connection as long as a
/// WebSocket does, so it counts against the same limits: a signed-in user's connection
/// limit, or the cap on anonymous connections; a refusal is a `401` or a `429` before the
/// stream starts.
pub async fn stream(
    state: &HttpState,
    headers: &HeaderMap,
    request: ServerResult<Request>,
    framing: Framing,
) -> Response {
    let auth = state.verifier.authenticate(authorization(headers));
    let slot = match state.connections.claim_for(&auth, &state.ws) {
        Ok(slot) => slot,
        Err(refusal) => {
            return match refusal {
                ws::Refusal::InvalidToken(_) => error_response(
                    StatusCode::UNAUTHORIZED,
                    AppError::Unauthenticated(refusal.to_string()),
                ),
                _ => error_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    AppError::RateLimited(refusal.to_string()),
                ),
            };
        }
    };
    let responses = match request {
        Ok(request) => state.schema.execute_stream(request.data(auth)).boxed(),
        Err(mut error) => {
            ensure_code(&mut error);
            // Refused before the schema saw it: counted here (the schema counts the rest).
            state
                .metrics
                .graphql_error(crate::graphql::error::code_of(&error));
            futures_util::stream::iter([async_graphql::Response::from_errors(vec![error])]).boxed()
        }
    };
    let max_message_bytes = state.max_response_bytes;
    let heartbeat_every = state.ws.multipart_heartbeat;
    let body = async_stream::stream! {
        // The slot is held for as long as the operation streams.
        let _slot = slot;
        let mut responses = responses;
        let mut heartbeat = tokio::time::interval(heartbeat_every);
        heartbeat.tick().await;
        yield Ok::<_, std::convert::Infallible>(framing.opening().to_owned());
        loop {
            let message = tokio::select! {
                response = responses.next() => match response {
                    Some(mut response) => {
                        response.errors.iter_mut().for_each(ensure_code);
                        let mut budget = max_message_bytes;
                        framing.message(&bounded_json(&response, &mut budget))
                    }
                    None => break,
                },
                _ = heartbeat.tick() => framing.heartbeat(),
            };
            // The next heartbeat is due after this long without a message.
            heartbeat.reset();
            yield Ok(message);
        }
        yield Ok(framing.end().to_owned());
    };
    let mut response = axum::body::Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(framing.content_type()),
    );
    // A stream is never a cached answer, and a proxy must pass each message on at once
    // (nginx buffers a response unless told not to).
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
