//! Drop-in mode: requests the API does not answer itself go to Planetmint's own API unchanged,
//! and the root documents are Planetmint's with `streams`/`streamedblocks` pointing at us.
//!
//! Method, path, query, headers and body are forwarded; status, headers and body come back.
//! The request body is streamed to Planetmint as it arrives, never gathered in memory, within
//! `api.upstream_max_body` (413) and `api.body_timeout` (408). Hop-by-hop headers (RFC 9110
//! 7.6.1) are dropped in both directions; `X-Forwarded-For` keeps every value the client sent
//! (all such headers, in order) with the peer's address appended,
//! `X-Forwarded-Proto` and `X-Forwarded-Host` are set from the connection, and client-sent
//! `Forwarded`, `X-Real-IP`, `X-Forwarded-Proto` and `X-Forwarded-Host` are dropped. When
//! Planetmint cannot be reached or does not answer in time the client gets a 502 with a fixed
//! JSON body (the upstream's address and the error are logged, not shown); the root documents
//! are then built by us instead. A path with a dot segment (`.`, `..`, percent-encoded or not)
//! or an encoded separator is refused with 400 and never forwarded, so an `api.upstream` with a
//! path prefix cannot be climbed out of.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BodyStream, MessageBody, SizedStream};
use actix_web::dev;
use actix_web::http::header::{self, HeaderName};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::{Stream, TryStreamExt};
use serde_json::Value;
use tracing::{info, warn};

use crate::discovery::Advertised;

/// Headers that describe one connection, not the request: never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// How long the root document may take upstream before we answer with our own.
const ROOT_DOCUMENT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where Planetmint's API is and how to reach it.
#[derive(Debug, Clone)]
pub struct Upstream {
    base: String,
    timeout: Duration,
}

impl Upstream {
    /// Upstream at `base` (`http://host:port`).
    pub fn new(base: &str, timeout: Duration) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            timeout,
        }
    }

    /// The upstream base URL.
    pub fn base(&self) -> &str {
        &self.base
    }
}

/// An HTTP client for one worker (awc clients are per thread).
pub fn client() -> awc::Client {
    awc::Client::builder()
        .disable_redirects()
        .timeout(Duration::from_secs(3600))
        .finish()
}

fn is_hop_by_hop(name: &HeaderName, connection_listed: &[String]) -> bool {
    HOP_BY_HOP.contains(&name.as_str()) || connection_listed.iter().any(|h| h == name.as_str())
}

fn connection_listed(headers: &header::HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .collect()
}

/// A short JSON answer that keeps the request's unread body attached until the answer is
/// written. actix-http then closes the connection after the answer; had the body been dropped
/// unread, it would keep reading and discarding a chunked body for as long as the client kept
/// sending it.
pub(crate) struct ClosingBody {
    bytes: Option<Bytes>,
    len: u64,
    _unread: Option<dev::Payload>,
}

impl MessageBody for ClosingBody {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.len)
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Poll::Ready(self.bytes.take().map(Ok))
    }
}

/// `{"error": message, "status": status}` with `status`, closing the connection after it and
/// never reading the rest of `unread`.
pub(crate) fn closing_json(
    status: StatusCode,
    body: &Value,
    unread: Option<dev::Payload>,
) -> HttpResponse {
    let bytes = Bytes::from(body.to_string());
    HttpResponse::build(status)
        .force_close()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .body(ClosingBody {
            len: bytes.len() as u64,
            bytes: Some(bytes),
            _unread: unread,
        })
}

fn refusal(status: StatusCode, message: &str, unread: Option<dev::Payload>) -> HttpResponse {
    closing_json(
        status,
        &planetmint_streams_broadcaster::http::json_error_body(status.as_u16(), message, &[]),
        unread,
    )
}

/// What the client gets when Planetmint's API fails: nothing about where it is or why (the
/// log has that).
const UPSTREAM_UNREACHABLE: &str = "Planetmint's API cannot be reached";
/// The same when it does not answer in time.
const UPSTREAM_TIMEOUT: &str = "Planetmint's API did not answer in time";

/// Request headers not passed on as the client sent them: we set them from the connection
/// (`X-Forwarded-Proto`, `X-Forwarded-Host`) or not at all (`Forwarded`, `X-Real-IP`), so
/// Planetmint never sees a client's claim as ours; the body's length is the body's own, and
/// `Expect: 100-continue` is answered by the node itself.
const SET_BY_US: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "x-forwarded-proto",
    "x-forwarded-host",
    "content-length",
    "expect",
];

/// Limits on the request body of one forwarded request.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Most bytes (`api.upstream_max_body`).
    pub max_bytes: usize,
    /// Time for the whole body to arrive (`api.body_timeout`).
    pub timeout: Duration,
}

/// Why a request body was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFault {
    TooLarge,
    TimedOut,
    Broken,
}

/// The request body as it arrives, passed on chunk by chunk (never gathered), ending in an
/// error once it exceeds its size or its deadline; the fault is recorded for the answer.
/// When dropped (the upstream request is over), it hands the client's body back through
/// `returned`, so that the answer can hold what is left of it unread (see [`ClosingBody`]).
struct GuardedBody {
    payload: Option<dev::Payload>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    received: usize,
    max_bytes: usize,
    fault: Rc<Cell<Option<BodyFault>>>,
    returned: Rc<RefCell<Option<dev::Payload>>>,
}

impl GuardedBody {
    fn fail(&mut self, fault: BodyFault) -> Poll<Option<Result<Bytes, BodyError>>> {
        self.fault.set(Some(fault));
        Poll::Ready(Some(Err(BodyError(fault))))
    }
}

impl Drop for GuardedBody {
    fn drop(&mut self) {
        *self.returned.borrow_mut() = self.payload.take();
    }
}

/// The error that ends a [`GuardedBody`].
#[derive(Debug)]
struct BodyError(BodyFault);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            BodyFault::TooLarge => f.write_str("request body too large"),
            BodyFault::TimedOut => f.write_str("request body not received in time"),
            BodyFault::Broken => f.write_str("request body broken off"),
        }
    }
}

impl std::error::Error for BodyError {}

impl Stream for GuardedBody {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.fault.get().is_some() {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return self.fail(BodyFault::TimedOut);
        }
        let Some(payload) = self.payload.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(payload).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.received = self.received.saturating_add(chunk.len());
                if self.received > self.max_bytes {
                    return self.fail(BodyFault::TooLarge);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            // The client's body broke off (connection lost, bad chunk): end the upstream request.
            Poll::Ready(Some(Err(_))) => self.fail(BodyFault::Broken),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Planetmint's answer as it streams to the client, holding the client's unread body (if any)
/// until it ends.
struct Holding {
    inner: Pin<Box<dyn Stream<Item = RelayedChunk>>>,
    _unread: Option<dev::Payload>,
}

/// One chunk of Planetmint's answer.
type RelayedChunk = Result<Bytes, Box<dyn std::error::Error>>;

impl Stream for Holding {
    type Item = RelayedChunk;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// How the request announces its body.
enum BodyKind {
    None,
    Sized(u64),
    Chunked,
}

fn body_kind(req: &HttpRequest) -> Result<BodyKind, ()> {
    let headers = req.headers();
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return Ok(BodyKind::Chunked);
    }
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(BodyKind::None),
        Some(value) => match value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            Some(0) => Ok(BodyKind::None),
            Some(length) => Ok(BodyKind::Sized(length)),
            None => Err(()),
        },
    }
}

/// How many times a path segment is percent-decoded when looking for dot segments: an
/// upstream (or a proxy in front of it) that decodes twice must not see one either.
const PATH_DECODE_ROUNDS: usize = 3;

/// The first segment of `path` (as sent, not decoded) that would move an upstream out of the
/// path it was given once decoded: `.` or `..` (plain or percent-encoded, e.g. `%2e%2e`), or
/// one holding an encoded `/` or `\` (`..%2f`). With a path prefix in `api.upstream`
/// (`http://planetmint:9986/prefix`), `/../x` would otherwise reach `/x` upstream.
pub fn dot_segment(path: &str) -> Option<&str> {
    let escapes = |segment: &[u8]| {
        segment == b"." || segment == b".." || segment.contains(&b'/') || segment.contains(&b'\\')
    };
    path.split('/').find(|raw| {
        if escapes(raw.as_bytes()) {
            return true;
        }
        let mut segment = raw.as_bytes().to_vec();
        for _ in 0..PATH_DECODE_ROUNDS {
            let decoded = percent_decode(&segment);
            if decoded == segment {
                break;
            }
            segment = decoded;
            if escapes(&segment) {
                return true;
            }
        }
        false
    })
}

/// `%XX` sequences decoded; anything else (a lone `%`) kept as it is.
fn percent_decode(input: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' && i + 2 < input.len() {
            if let (Some(high), Some(low)) = (hex(input[i + 1]), hex(input[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

/// `X-Forwarded-For` for Planetmint: every value the client sent, in every such header, in
/// order, then the peer's address.
fn forwarded_for(req: &HttpRequest, peer: std::net::IpAddr) -> String {
    let mut hops: Vec<String> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect();
    hops.push(peer.to_string());
    hops.join(", ")
}

/// Forwards the request to Planetmint and relays the answer. The body is streamed to
/// Planetmint as it arrives, within `limits`; a body announced larger than allowed is refused
/// before any of it is read.
pub async fn forward(
    req: HttpRequest,
    payload: web::Payload,
    upstream: &Upstream,
    limits: BodyLimits,
    client: &awc::Client,
) -> HttpResponse {
    let payload = payload.into_inner();
    if let Some(segment) = dot_segment(req.uri().path()) {
        info!(peer = ?req.peer_addr(), path = req.path(), "path with a dot segment: not forwarded");
        return refusal(
            StatusCode::BAD_REQUEST,
            &format!(
                "the path has a dot segment or an encoded separator ({segment:?}): not forwarded"
            ),
            Some(payload),
        );
    }
    let kind = match body_kind(&req) {
        Ok(kind) => kind,
        Err(()) => return refusal(StatusCode::BAD_REQUEST, "bad Content-Length", Some(payload)),
    };
    if let BodyKind::Sized(length) = kind {
        if length > limits.max_bytes as u64 {
            return refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body larger than {} bytes", limits.max_bytes),
                Some(payload),
            );
        }
    }
    // Origin-form only (checked before routing), so this stays on the upstream's host.
    let path_and_query = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let url = format!("{}{path_and_query}", upstream.base);
    let has_body = !matches!(kind, BodyKind::None);
    // The body's own deadline applies while it is sent; the upstream's starts after it.
    let timeout = if has_body {
        upstream.timeout + limits.timeout
    } else {
        upstream.timeout
    };
    let mut request = client.request(req.method().clone(), &url).timeout(timeout);
    let listed = connection_listed(req.headers());
    for (name, value) in req.headers() {
        if !is_hop_by_hop(name, &listed) && !SET_BY_US.contains(&name.as_str()) {
            request = request.append_header((name.clone(), value.clone()));
        }
    }
    if let Some(peer) = req.peer_addr() {
        request = request.insert_header(("x-forwarded-for", forwarded_for(&req, peer.ip())));
    }
    if let Some(host) = req.headers().get(header::HOST) {
        request = request.insert_header(("x-forwarded-host", host.clone()));
    }
    // From the connection itself: TLS on our listener or not.
    let scheme = if req.app_config().secure() {
        "https"
    } else {
        "http"
    };
    request = request.insert_header(("x-forwarded-proto", scheme));
    let fault = Rc::new(Cell::new(None));
    let returned = Rc::new(RefCell::new(None));
    let body = GuardedBody {
        payload: Some(payload),
        deadline: Box::pin(tokio::time::sleep(limits.timeout)),
        received: 0,
        max_bytes: limits.max_bytes,
        fault: fault.clone(),
        returned: returned.clone(),
    };
    let sent = match kind {
        BodyKind::None => {
            drop(body);
            request.send().await
        }
        BodyKind::Sized(length) => request.send_body(SizedStream::new(length, body)).await,
        BodyKind::Chunked => request.send_body(BodyStream::new(body)).await,
    };
    // What the upstream request left of the client's body (none once it was read to its end).
    let unread = returned.borrow_mut().take();
    let response = match (sent, fault.get()) {
        (_, Some(BodyFault::TooLarge)) => {
            return refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body larger than {} bytes", limits.max_bytes),
                unread,
            )
        }
        (_, Some(BodyFault::TimedOut)) => {
            info!(peer = ?req.peer_addr(), path = req.path(), "request body not received in time");
            return refusal(
                StatusCode::REQUEST_TIMEOUT,
                &format!("request body not received within {:?}", limits.timeout),
                unread,
            );
        }
        (_, Some(BodyFault::Broken)) => {
            return refusal(StatusCode::BAD_REQUEST, "request body broken off", unread)
        }
        (Ok(response), None) => response,
        (Err(err), None) => {
            warn!(upstream = %upstream.base, error = %err, path = req.path(), "forwarding to Planetmint failed");
            let message = match err {
                awc::error::SendRequestError::Timeout => UPSTREAM_TIMEOUT,
                _ => UPSTREAM_UNREACHABLE,
            };
            return refusal(StatusCode::BAD_GATEWAY, message, unread);
        }
    };
    let mut reply = HttpResponse::build(response.status());
    let listed = connection_listed(response.headers());
    for (name, value) in response.headers() {
        if !is_hop_by_hop(name, &listed) && name != header::CONTENT_LENGTH {
            reply.append_header((name.clone(), value.clone()));
        }
    }
    let length = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Planetmint may answer before the client's body is complete: keep the rest unread until
    // the answer is relayed, then the connection closes (see [`ClosingBody`]).
    let stream = Holding {
        inner: Box::pin(response.map_err(|e| -> Box<dyn std::error::Error> { Box::new(e) })),
        _unread: unread,
    };
    match length {
        Some(length) => reply.body(SizedStream::new(length, stream)),
        None => reply.body(BodyStream::new(stream)),
    }
}

/// Planetmint's root document at `path` (`/` or `/api/v1/`) with our stream URLs, or `None`
/// when Planetmint does not give a JSON object in time.
pub async fn root_document(
    path: &str,
    upstream: &Upstream,
    client: &awc::Client,
    advertised: &Advertised,
) -> Option<Value> {
    let url = format!("{}{path}", upstream.base);
    let mut response = client
        .get(&url)
        .insert_header((header::ACCEPT, "application/json"))
        .timeout(ROOT_DOCUMENT_TIMEOUT.min(upstream.timeout))
        .send()
        .await
        .ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    let mut document: Value = response.json().limit(1 << 20).await.ok()?;
    let v1 = if path == "/" {
        document.get_mut("api")?.get_mut("v1")?
    } else {
        &mut document
    };
    let v1 = v1.as_object_mut()?;
    v1.insert("streams".into(), advertised.valid_transactions().into());
    v1.insert("streamedblocks".into(), advertised.valid_blocks().into());
    Some(document)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_found_plain_and_encoded() {
        for path in [
            "/api/v1/../admin",
            "/api/v1/./x",
            "/..",
            "/api/%2e%2e/x",
            "/api/%2E%2e/x",
            "/api/.%2e/x",
            "/api/%2e/x",
            "/api/..%2fadmin",
            "/api/..%5Cadmin",
            "/api/%252e%252e/x",
        ] {
            assert!(dot_segment(path).is_some(), "{path}");
        }
        for path in [
            "/",
            "/api/v1/",
            "/api/v1/transactions/4f0c",
            "/api/v1/a.b/...c/.hidden",
            "/api/v1/assets?search=..",
            "/api/v1/%41%42",
            "/api/v1/100%",
            "/api/v1/%zz",
        ] {
            assert_eq!(dot_segment(path), None, "{path}");
        }
    }

    #[test]
    fn percent_decoding_leaves_what_is_not_an_escape() {
        assert_eq!(percent_decode(b"%41%2e%"), b"A.%");
        assert_eq!(percent_decode(b"%4"), b"%4");
        assert_eq!(percent_decode(b"%g1x"), b"%g1x");
    }
}
