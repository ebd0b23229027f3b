//! Bodies crossing the seam: a stream of chunks in, bytes or a stream out.

use std::fmt;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;

/// Why a request body could not be read to its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The client sent nothing for this many seconds.
    #[error("the request body sent nothing for {0} seconds")]
    Timeout(u64),
    /// The connection failed or the framing was broken.
    #[error("{0}")]
    Read(String),
}

/// A stream of body chunks.
pub type BodyStream<E = BodyError> = Pin<Box<dyn Stream<Item = Result<Bytes, E>> + Send>>;

/// A request body on its way into an engine.
pub struct IncomingBody {
    /// The length the client announced (`Content-Length`), if any: lets an
    /// engine refuse an oversized or over-quota body before reading it.
    pub announced: Option<u64>,
    pub chunks: BodyStream,
}

impl IncomingBody {
    /// A body already whole in memory (tests, and engines feeding engines).
    pub fn from_bytes(bytes: impl Into<Bytes>) -> IncomingBody {
        let bytes: Bytes = bytes.into();
        IncomingBody {
            announced: Some(bytes.len() as u64),
            chunks: Box::pin(futures_util::stream::iter(
                (!bytes.is_empty()).then_some(Ok(bytes)),
            )),
        }
    }
}

impl fmt::Debug for IncomingBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncomingBody")
            .field("announced", &self.announced)
            .finish_non_exhaustive()
    }
}

/// Bytes on their way out of an engine.
pub enum Payload {
    /// The whole body, in memory.
    Bytes(Bytes),
    /// A body read as it is sent: `len` bytes in all. The stream fails,
    /// rather than ending early, if the bytes behind it are shorter, so a
    /// short body is never sent as complete.
    Stream {
        len: u64,
        chunks: BodyStream<std::io::Error>,
    },
}

impl Payload {
    pub fn len(&self) -> u64 {
        match self {
            Payload::Bytes(b) => b.len() as u64,
            Payload::Stream { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Bytes(b) => f.debug_tuple("Bytes").field(&b.len()).finish(),
            Payload::Stream { len, .. } => f.debug_struct("Stream").field("len", len).finish(),
        }
    }
}
