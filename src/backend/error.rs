//! The one error type every engine maps its failures into.

use std::io;

use super::body::BodyError;
use super::name::Name;

/// What can go wrong in an operation, as the client should learn it. The
/// HTTP layer maps each variant to one status.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("no blob {id} in namespace {namespace}")]
    BlobNotFound { namespace: Name, id: String },
    #[error("the element's blob was deleted")]
    BlobGone,
    #[error("namespace {namespace} is over quota: {reason}")]
    OverQuota {
        namespace: Name,
        /// Which limit, in words.
        reason: String,
        /// Seconds a client should wait before trying again.
        retry_after: u64,
    },
    #[error(
        "no running lease {receipt} on queue {queue} of namespace {namespace}; it may have run out"
    )]
    LeaseNotFound {
        namespace: Name,
        queue: Name,
        receipt: String,
    },
    #[error("queue {0} has no room for a dead-letter queue: leases need a queue name of at most 58 characters, so that '{0}.dead' is a valid name")]
    NoDeadLetterQueue(Name),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the body is larger than the maximum element size of {limit} bytes")]
    TooLarge { limit: u64 },
    /// No room left to store the body; nothing was kept.
    #[error("the spill directory is full")]
    StorageFull,
    /// The request body could not be read to its end; nothing was kept.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// A body could not be written where the engine keeps it.
    #[error("spill file: {0}")]
    Write(io::Error),
    /// A stored body could not be read back.
    #[error("could not read the element's data: {0}")]
    Io(#[from] io::Error),
    /// The engine could not make a change durable.
    #[error("{0}")]
    Durability(String),
}
