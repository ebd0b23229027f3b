//! The response body: bytes already in memory, or a spill file streamed in
//! chunks so a large element is never read whole into memory.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use hyper::body::{Frame, SizeHint};
use tokio_util::io::ReaderStream;

use crate::store::blob::BlobBody;

/// Size of the reads that stream a spill file back to a client.
const FILE_CHUNK: usize = 256 * 1024;

pub enum Body {
    Full(Option<Bytes>),
    File {
        stream: ReaderStream<tokio::fs::File>,
        remaining: u64,
    },
}

impl Body {
    pub fn empty() -> Body {
        Body::Full(None)
    }

    pub fn bytes(b: impl Into<Bytes>) -> Body {
        let b = b.into();
        Body::Full((!b.is_empty()).then_some(b))
    }

    /// The body of a blob of `size` bytes.
    pub fn blob(content: BlobBody, size: u64) -> Body {
        match content {
            BlobBody::Memory(b) => Body::bytes(b),
            BlobBody::File(file) => Body::File {
                stream: ReaderStream::with_capacity(file, FILE_CHUNK),
                remaining: size,
            },
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::File { stream, remaining } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                match Pin::new(stream).poll_next(cx) {
                    Poll::Ready(Some(Ok(chunk))) => {
                        *remaining = remaining.saturating_sub(chunk.len() as u64);
                        Poll::Ready(Some(Ok(Frame::data(chunk))))
                    }
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                    // The file ended before its recorded size: never send a short body as complete.
                    Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "spill file shorter than its element",
                    )))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(b) => b.is_none(),
            Body::File { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::File { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}
