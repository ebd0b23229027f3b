//! Durability from a request's side: waiting until its change is as durable
//! as the fsync mode promises, refusing a request up front while the log
//! cannot be written, and what `/healthz` reports about writes. Taking back
//! a change the log could not record is `withdraw`.

use super::journal::{Commit, Journal};
use super::Store;
use crate::backend::{BackendError, StorageFault, StoragePlace};

impl Store {
    /// Waits until the changes made so far are as durable as `commit` asks
    /// (at once when the store is not durable). Every operation of the
    /// seam calls it before it answers.
    ///
    /// `Err` when the log could not record the change: the caller takes it
    /// back (see `withdraw`) and answers `507`.
    pub async fn durable(&self, commit: Commit) -> Result<(), BackendError> {
        // Boxed: the journal's wait is a large future that would otherwise
        // sit inside every push's and pop's, durable or not.
        match &self.shared.journal {
            Some(journal) => Box::pin(journal.wait(commit))
                .await
                .map_err(|_| self.log_fault(journal)),
            None => Ok(()),
        }
    }

    /// Called before an operation that will wait for `commit` changes
    /// anything: `Err` (`507`) if the log is behind after a failed write and
    /// still cannot be written, so a request refused while the disk is full
    /// has changed nothing. At once while the log is healthy.
    pub async fn writable(&self, commit: Commit) -> Result<(), BackendError> {
        // One atomic load on the way of every request: the boxed wait only
        // after a failure.
        let Some(journal) = self.shared.journal.as_ref().filter(|j| j.is_behind()) else {
            return Ok(());
        };
        Box::pin(journal.ready_for(commit))
            .await
            .map_err(|_| self.log_fault(journal))
    }

    /// The client's side of a log that could not be written.
    fn log_fault(&self, journal: &Journal) -> BackendError {
        BackendError::Unwritable(journal.fault().unwrap_or_else(|| {
            // The fault is cleared only by a round that wrote: a newer round
            // succeeded after this request's failed.
            StorageFault::new(StoragePlace::Data, &std::io::ErrorKind::Other.into())
        }))
    }

    /// Why the store cannot take writes now, if it cannot: the log's fault
    /// first, then the body files' (probed afresh).
    pub fn write_fault(&self) -> Option<StorageFault> {
        self.shared
            .journal
            .as_ref()
            .and_then(|j| j.fault())
            .or_else(|| self.shared.file_health.probe())
    }
}
