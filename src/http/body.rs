//! Bodies at the HTTP edge: a request body turned into the stream an engine
//! reads, and an engine's bytes or stream turned into a response body.

use std::fmt::Display;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use hyper::body::{Frame, SizeHint};
use tokio::time::Sleep;

use crate::backend::{BodyError, BodyStream, IncomingBody, Payload};

/// A request body as an engine takes it. A client that sends nothing for
/// `idle` fails the stream with `BodyError::Timeout`: a slow-body client
/// must not hold a connection and a half-written file forever.
pub fn incoming<B>(body: B, idle: Duration) -> IncomingBody
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Display,
{
    IncomingBody {
        announced: body.size_hint().exact(),
        chunks: Box::pin(IdleTimed {
            body,
            idle,
            timer: None,
        }),
    }
}

/// The frames of a body as chunks, with a timer that runs only while the
/// next frame is awaited (a small body has usually arrived with the head).
struct IdleTimed<B> {
    body: B,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> Stream for IdleTimed<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    type Item = Result<Bytes, BodyError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.timer = None;
                    // Trailers carry no bytes of the element.
                    if let Ok(data) = frame.into_data() {
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Some(Err(BodyError::Read(e.to_string()))))
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {
                    let idle = this.idle;
                    let timer = this
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                    return match timer.as_mut().poll(cx) {
                        Poll::Ready(()) => {
                            Poll::Ready(Some(Err(BodyError::Timeout(idle.as_secs()))))
                        }
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }
}

/// The response body of an element's or blob's bytes.
pub fn payload(payload: Payload) -> axum::body::Body {
    match payload {
        Payload::Bytes(b) => axum::body::Body::from(b),
        Payload::Stream { len, chunks } => axum::body::Body::new(Sized {
            chunks,
            remaining: len,
        }),
    }
}

/// An engine's stream of a known length, as a response body: the length
/// becomes `Content-Length`, and a stream that ends short fails the
/// response rather than passing for complete.
struct Sized {
    chunks: BodyStream<io::Error>,
    remaining: u64,
}

impl hyper::body::Body for Sized {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        match this.chunks.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.remaining = this.remaining.saturating_sub(chunk.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the body ended before its length",
            )))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
