//! Streaming a blob's file back out, so a large element is never read whole
//! into memory.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use tokio_util::io::ReaderStream;

use crate::backend::Payload;

use super::blob::BlobBody;

/// Size of the reads that stream a file back to a client.
const FILE_CHUNK: usize = 256 * 1024;

impl BlobBody {
    /// The bytes of a blob of `size` bytes as they cross the seam.
    pub fn into_payload(self, size: u64) -> Payload {
        match self {
            BlobBody::Memory(bytes) => Payload::Bytes(bytes),
            BlobBody::File(file) => Payload::Stream {
                len: size,
                chunks: Box::pin(FileChunks {
                    stream: ReaderStream::with_capacity(file, FILE_CHUNK),
                    remaining: size,
                }),
            },
        }
    }
}

/// Exactly `remaining` bytes of a file, or an error: a file that ends early
/// must never pass for a complete body.
struct FileChunks {
    stream: ReaderStream<tokio::fs::File>,
    remaining: u64,
}

impl Stream for FileChunks {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.stream).poll_next(cx) {
            Poll::Ready(Some(Ok(mut chunk))) => {
                if chunk.len() as u64 > this.remaining {
                    chunk.truncate(this.remaining as usize);
                }
                this.remaining -= chunk.len() as u64;
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "spill file shorter than its element",
            )))),
            Poll::Pending => Poll::Pending,
        }
    }
}
