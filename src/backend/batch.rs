//! Batches across the seam: many elements in one operation (docs/API.md,
//! "Batches"). A batch push is received part by part into a [`BatchPush`]
//! and stored all together, or not at all, by its `commit`; a batch pop
//! answers a list of [`BatchElement`]s; a batch acknowledgement says which
//! receipts it settled.
//!
//! The parts of a push arrive one after the other on one connection, so the
//! seam receives them the same way: each body is streamed into the engine
//! before the next part is read, and nothing is visible to a consumer before
//! the commit.

use async_trait::async_trait;

use super::ids::ElementId;
use super::{BackendError, IncomingBody, Popped, PushOptions, Pushed};

/// A batch push being received. Dropping it without a commit discards every
/// part taken so far, with their files: that is how a refused batch stores
/// nothing.
#[async_trait]
pub trait BatchPush: Send {
    /// Receives the next part's body, as a push receives its body. An error
    /// refuses the whole batch.
    async fn add(&mut self, body: IncomingBody, opts: PushOptions) -> Result<(), BackendError>;

    /// Takes the next part as a reference push (`blob`, as the client spelled
    /// it) or, without one, an element of metadata only. The blob is looked
    /// up for good at the commit.
    async fn add_reference(
        &mut self,
        blob: Option<&str>,
        opts: PushOptions,
    ) -> Result<(), BackendError>;

    /// Stores every part, in order and together: consecutive in the queue,
    /// visible to consumers at once, as durable as a push once it returns.
    async fn commit(self: Box<Self>) -> Result<Vec<Pushed>, PartError>;
}

/// Why a batch was refused, and the part (counted from 0) it was refused
/// for, where one part is to blame.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct PartError {
    pub part: Option<usize>,
    pub error: BackendError,
}

impl PartError {
    /// `error`, blamed on part `part`.
    pub fn at(part: usize, error: BackendError) -> PartError {
        PartError {
            part: Some(part),
            error,
        }
    }

    /// `error`, which concerns the batch as a whole (the log could not be
    /// written, the server is stopping).
    pub fn whole(error: BackendError) -> PartError {
        PartError { part: None, error }
    }
}

/// One element of a batch pop.
#[derive(Debug)]
pub enum BatchElement {
    /// An element, with its bytes on a data pop.
    Popped(Popped),
    /// An element whose blob was deleted: consumed, with nothing to send
    /// but its id (a single pop answers `410` for it).
    Gone(ElementId),
}

/// What a batch acknowledgement settled: receipts as the client spelled
/// them, in its order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Acked {
    pub acked: Vec<String>,
    /// Unknown, malformed, run out, or already settled (a receipt given
    /// twice is acknowledged once).
    pub unknown: Vec<String>,
}
