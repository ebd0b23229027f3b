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
    /// A new namespace past the most the engine keeps; nothing was stored.
    #[error("the server holds its maximum of {limit} namespaces, so namespace {namespace} cannot be made until one is dropped")]
    TooManyNamespaces {
        namespace: Name,
        limit: usize,
        retry_after: u64,
    },
    /// A new queue past the most one namespace may have; nothing was stored.
    #[error("namespace {namespace} has its maximum of {limit} queues, so queue {queue} cannot be made until one is dropped")]
    TooManyQueues {
        namespace: Name,
        queue: Name,
        limit: usize,
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
    /// The request body could not be read to its end; nothing was kept.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// A body or a change could not be written where the engine keeps it
    /// (a full disk, most often); the request changed nothing.
    #[error(transparent)]
    Unwritable(#[from] StorageFault),
    /// A stored body could not be read back.
    #[error("could not read the element's data: {0}")]
    Io(#[from] io::Error),
    /// The engine cannot be reached now (a remote cluster down, or without
    /// its quorum); the reason says whether the request may have changed
    /// anything.
    #[error("{reason}; retry after {retry_after} s")]
    Unavailable { reason: String, retry_after: u64 },
    /// An operation this engine does not provide (yet).
    #[error("{operation} is not supported by the {engine} backend")]
    NotSupported {
        operation: &'static str,
        engine: &'static str,
    },
}

/// Where an engine keeps what it is asked to store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoragePlace {
    /// Bodies kept while the process runs (`--spill-dir`).
    Spill,
    /// Durable mode's log and bodies (`--data-dir`).
    Data,
    /// A remote cluster holding the queues (`--backend nats://...`).
    Cluster,
}

/// A write that failed, as a client may read it: which place and the
/// operating system's words for why, never a path (the server log has the
/// whole error).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct StorageFault {
    pub place: StoragePlace,
    /// Out of space (or quota), as opposed to another write error.
    pub full: bool,
    /// Out of file descriptors (the process's or the system's): not the
    /// place's fault, and over once connections or files close.
    pub out_of_descriptors: bool,
    /// Why, without a path: "No space left on device".
    pub reason: String,
}

impl StorageFault {
    /// The fault `e` caused at `place`.
    pub fn new(place: StoragePlace, e: &io::Error) -> StorageFault {
        let full = matches!(
            e.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        );
        let code = os_error_code(e);
        let out_of_descriptors = matches!(code, Some(libc::EMFILE | libc::ENFILE));
        let reason = match code {
            // The operating system's own words, which name no file.
            Some(code) => io::Error::from_raw_os_error(code).to_string(),
            None => e.kind().to_string(),
        };
        StorageFault {
            place,
            full,
            out_of_descriptors,
            reason,
        }
    }

    /// The situation alone, as `/healthz` reports it: "the data directory
    /// is full (No space left on device)".
    pub fn situation(&self) -> String {
        let place = match self.place {
            StoragePlace::Spill => "spill directory",
            StoragePlace::Data => "data directory",
            StoragePlace::Cluster => {
                return format!("the NATS cluster cannot be reached ({})", self.reason)
            }
        };
        let state = if self.full {
            "is full"
        } else {
            "cannot be written"
        };
        format!("the {place} {state} ({})", self.reason)
    }

    fn describe(&self) -> String {
        format!(
            "{}; the request changed nothing, retry once space is freed",
            self.situation()
        )
    }
}

/// The operating system's error number of `e`, or of an error it wraps.
/// `tempfile` wraps the error of a file it cannot make in one that adds the
/// path and hides the original from `source()`; its text still ends the
/// way an OS error's always does, "(os error N)", which is read instead.
pub fn os_error_code(e: &io::Error) -> Option<i32> {
    if let Some(code) = e.raw_os_error() {
        return Some(code);
    }
    let mut source = e
        .get_ref()
        .map(|inner| inner as &(dyn std::error::Error + 'static));
    while let Some(error) = source {
        if let Some(code) = error
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
        {
            return Some(code);
        }
        if let Some(code) = code_in_text(&error.to_string()) {
            return Some(code);
        }
        source = error.source();
    }
    None
}

/// N of the first "(os error N)" in `text`.
fn code_in_text(text: &str) -> Option<i32> {
    let (_, after) = text.split_once("(os error ")?;
    let (digits, _) = after.split_once(')')?;
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_os_error_is_found_inside_the_errors_that_wrap_it() {
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(os_error_code(&emfile), Some(libc::EMFILE));
        let wrapped = io::Error::new(emfile.kind(), io::Error::from_raw_os_error(libc::ENFILE));
        assert_eq!(os_error_code(&wrapped), Some(libc::ENFILE));
        // As tempfile does: a text naming the path, no source.
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        let made = tempfile::Builder::new().tempfile_in(&missing).unwrap_err();
        assert_eq!(os_error_code(&made), Some(libc::ENOENT), "{made}");
        assert_eq!(os_error_code(&io::Error::other("no code")), None);
        let fault = StorageFault::new(StoragePlace::Spill, &made);
        assert!(!fault.reason.contains('/'), "{}", fault.reason);
    }
}
