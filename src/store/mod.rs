//! The embedded engine: namespaces, queues, blobs, spill files, expiry and,
//! in durable mode, a log. It knows nothing of HTTP; it implements the
//! storage seam ([`crate::backend::Backend`], in `backend_impl`).
//!
//! - [`Store`] (`handle`): the cheap-to-clone handle, how it starts and
//!   stops, and how an operation finds and locks its namespace.
//! - `operations`, `pop` and `wait_ticket`: what the handle does;
//!   `listing`: the statistics documents, paged.
//! - `namespace`: one namespace's state behind its lock, split into queues,
//!   leases, blobs, quotas, expiry, statistics and the log records of a change.
//! - `queue`, `element`, `blob`, `blob_table` (over `incremental_map`):
//!   the data structures; `ingest` and `file_body`: bodies in and out;
//!   `overflow`: the spill folder, and the shared segments small bodies go
//!   to past the memory limit.
//! - `sweeper`: the task that expires what is due and drops idle queues.
//! - `durable`: waiting for the log, and refusing requests while it cannot
//!   be written; `withdraw`: taking back a change it could not record;
//!   `health`: whether body files can be written (for `/healthz`).
//! - `journal` and `recovery`: durable mode's log and its replay.

mod backend_impl;
mod batch;
pub mod blob;
mod blob_table;
pub mod clock;
mod config;
mod damage;
mod durable;
pub mod element;
mod file_body;
mod handle;
mod health;
mod incremental_map;
pub mod ingest;
pub mod journal;
mod listing;
mod namespace;
mod operations;
pub mod overflow;
mod pop;
mod queue;
mod recovery;
mod segment_body;
pub mod stats;
mod sweeper;
mod wait_ticket;
mod withdraw;

pub use config::{NameLimits, StoreConfig, UnknownFsyncMode};
pub(crate) use handle::Namespaces;
pub use handle::Store;
pub use journal::{Commit, DurabilityConfig, FsyncMode};
pub use namespace::{PopMode, Quota, QuotaExceeded};

/// A memory-mode store with small limits, for the store's unit tests.
#[cfg(test)]
pub(crate) fn test_store(dir: &std::path::Path) -> Store {
    Store::new(tests_config(dir)).expect("a store in a temporary directory")
}

/// The configuration of [`test_store`].
#[cfg(test)]
pub(crate) fn tests_config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        spill_dir: dir.to_owned(),
        spill_threshold: 16,
        max_element_size: 1 << 20,
        queue_idle_timeout: std::time::Duration::from_secs(60),
        max_deliveries: 3,
        namespace_quota: Quota::default(),
        namespace_quotas: std::collections::HashMap::new(),
        quota_retry_after: 1,
        memory_limit: 0,
        overflow: overflow::OverflowConfig::default(),
        durability: None,
        names: NameLimits::default(),
    }
}

/// A durable store's configuration for the store's own tests: its log
/// under `DIR/data` in `fsync` mode, with the background flush out of the
/// tests' way, and spill files under `DIR/spill`.
#[cfg(test)]
pub(crate) fn tests_durable_config(dir: &std::path::Path, fsync: FsyncMode) -> StoreConfig {
    StoreConfig {
        spill_dir: dir.join("spill"),
        max_deliveries: 5,
        durability: Some(DurabilityConfig {
            dir: dir.join("data"),
            fsync,
            fsync_interval: std::time::Duration::from_secs(3600),
            segment_bytes: 1 << 20,
            repair: false,
        }),
        ..tests_config(dir)
    }
}
