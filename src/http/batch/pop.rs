//! `GET /qs/{ns}/{queue}?count=N`: a batch pop, answered as one
//! `multipart/mixed` body whose parts carry a single pop's headers and
//! bytes. The body is written as it is sent: in-memory bytes are copied
//! into the part heads around them, spilled bodies streamed from their
//! files; its length is known up front, so it goes with `Content-Length`.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue};
use hyper::body::{Frame, SizeHint};
use uuid::Uuid;

use crate::backend::{BatchElement, BodyStream, Payload, PopOptions, Popped};
use crate::http::extract::{Namespace, PopQuery, Queue};
use crate::http::headers::{DELIVERIES, ELEMENT_ID, LEASE};
use crate::http::queues::{self, describe};
use crate::http::{header_value, id_value, no_content, ApiError, App, Handled};

/// How many parts the body holds, on a batch pop's answer.
pub const COUNT: HeaderName = HeaderName::from_static("x-queueserver-count");
/// On a part: the element's blob was deleted; the part has no body.
pub const GONE: HeaderName = HeaderName::from_static("x-queueserver-gone");

/// In-memory bodies up to this size are copied into the surrounding part
/// heads, making one frame of many small elements; larger ones are frames
/// of their own, not copied.
const COPIED_BELOW: usize = 4096;

/// `GET /qs/{ns}/{queue}`: a batch pop with `?count=`, else a single pop.
pub(in crate::http) async fn pop(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
    query: PopQuery,
) -> Handled {
    let Some(count) = query.count else {
        return queues::pop(State(app), Namespace(ns), Queue(q), query).await;
    };
    let max = app.batch.max_batch;
    if count > max {
        return Err(ApiError::bad_request(
            "invalid-count",
            format!("count={count} is above the maximum of {max} (--max-batch)"),
        ));
    }
    let opts = PopOptions {
        with_data: !query.header_only,
        lease: query.lease,
        wait: query.timeout,
    };
    let elements = app.backend.pop_batch(&ns, &q, opts, count).await?;
    if elements.is_empty() {
        return Ok(no_content());
    }
    let n = elements.len();
    let boundary = Uuid::new_v4().simple().to_string();
    let mut response = Response::new(Body::new(MultipartBody::new(&boundary, elements)));
    let headers = response.headers_mut();
    let content_type = format!("multipart/mixed; boundary={boundary}");
    headers.insert(CONTENT_TYPE, header_value(&content_type));
    headers.insert(COUNT, HeaderValue::from(n));
    Ok(response)
}

/// A piece of the answer: bytes in hand, or a spilled body read as sent.
enum Piece {
    Bytes(Bytes),
    Stream {
        chunks: BodyStream<io::Error>,
        left: u64,
    },
}

/// The `multipart/mixed` body of a batch pop.
struct MultipartBody {
    pieces: VecDeque<Piece>,
    /// Bytes not yet sent, all pieces together.
    remaining: u64,
}

impl MultipartBody {
    fn new(boundary: &str, elements: Vec<BatchElement>) -> MultipartBody {
        let mut body = MultipartBody {
            pieces: VecDeque::new(),
            remaining: 0,
        };
        let mut pending = BytesMut::with_capacity(elements.len() * 512);
        let mut headers = HeaderMap::new();
        for (i, element) in elements.into_iter().enumerate() {
            if i > 0 {
                pending.extend_from_slice(b"\r\n");
            }
            pending.extend_from_slice(b"--");
            pending.extend_from_slice(boundary.as_bytes());
            pending.extend_from_slice(b"\r\n");
            headers.clear();
            let payload = match element {
                BatchElement::Popped(p) => part_headers(&mut headers, p),
                BatchElement::Gone(id) => {
                    headers.insert(ELEMENT_ID, id_value(id.uuid()));
                    headers.insert(GONE, HeaderValue::from_static("1"));
                    headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
                    None
                }
            };
            for (name, value) in headers.iter() {
                pending.extend_from_slice(name.as_str().as_bytes());
                pending.extend_from_slice(b": ");
                pending.extend_from_slice(value.as_bytes());
                pending.extend_from_slice(b"\r\n");
            }
            pending.extend_from_slice(b"\r\n");
            match payload {
                None => {}
                Some(Payload::Bytes(b)) if b.len() < COPIED_BELOW => pending.extend_from_slice(&b),
                Some(Payload::Bytes(b)) => {
                    body.push_bytes(&mut pending);
                    body.push(Piece::Bytes(b));
                }
                Some(Payload::Stream { len, chunks }) => {
                    body.push_bytes(&mut pending);
                    body.push(Piece::Stream { chunks, left: len });
                }
            }
        }
        pending.extend_from_slice(b"\r\n--");
        pending.extend_from_slice(boundary.as_bytes());
        pending.extend_from_slice(b"--\r\n");
        body.push_bytes(&mut pending);
        body
    }

    /// Moves what `pending` holds into a piece of its own.
    fn push_bytes(&mut self, pending: &mut BytesMut) {
        if !pending.is_empty() {
            let bytes = pending.split().freeze();
            self.push(Piece::Bytes(bytes));
        }
    }

    fn push(&mut self, piece: Piece) {
        self.remaining += match &piece {
            Piece::Bytes(b) => b.len() as u64,
            Piece::Stream { left, .. } => *left,
        };
        self.pieces.push_back(piece);
    }
}

/// A single pop's headers for `p`, with its `Content-Length`; its bytes,
/// on a data pop.
fn part_headers(headers: &mut HeaderMap, p: Popped) -> Option<Payload> {
    describe(headers, &p.meta, p.blob_id, p.size, p.seconds_left);
    headers.insert(ELEMENT_ID, id_value(p.id.uuid()));
    if let Some(lease) = p.lease {
        headers.insert(LEASE, id_value(lease.receipt.uuid()));
        headers.insert(DELIVERIES, HeaderValue::from(lease.deliveries));
    }
    let len = p.body.as_ref().map_or(0, Payload::len);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    p.body
}

impl hyper::body::Body for MultipartBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            let (mut chunks, mut left) = match this.pieces.pop_front() {
                None => return Poll::Ready(None),
                Some(Piece::Bytes(b)) => {
                    this.remaining -= b.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                Some(Piece::Stream { left: 0, .. }) => continue,
                Some(Piece::Stream { chunks, left }) => (chunks, left),
            };
            let polled = chunks.as_mut().poll_next(cx);
            let chunk = match polled {
                Poll::Ready(Some(Ok(chunk))) => chunk,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "an element's body ended before its length",
                    ))))
                }
                Poll::Pending => {
                    this.pieces.push_front(Piece::Stream { chunks, left });
                    return Poll::Pending;
                }
            };
            // A file that grew is cut at the length announced.
            let chunk = match usize::try_from(left) {
                Ok(l) if chunk.len() > l => chunk.slice(..l),
                _ => chunk,
            };
            left -= chunk.len() as u64;
            this.remaining -= chunk.len() as u64;
            this.pieces.push_front(Piece::Stream { chunks, left });
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
