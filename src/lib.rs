//! blobq: a namespaced HTTP queue server for binary blobs.
//!
//! - [`auth`]: who a caller is (static tokens, JWTs) and what its
//!   credential grants on which namespaces; reloaded on SIGHUP.
//! - [`backend`]: the storage seam: the trait every engine implements, and
//!   the types that cross it.
//! - [`config`]: the settings, from flags, environment and TOML file.
//! - [`server`]: the listener, connections and graceful shutdown.
//! - [`http`]: routes, request validation and error responses.
//! - [`store`]: the embedded engine: namespaces, queues, blobs, spill files,
//!   expiry and the durable log; no HTTP.
//! - [`jobs`]: the embedded jobs engine: job documents, their queues,
//!   leases and long polls, with their bytes kept as blobs of a backend.
//! - [`metrics`]: the Prometheus registry.
//! - [`client`]: `blobq push`, `pop`, `stats` and the other client
//!   subcommands.

pub mod auth;
pub mod backend;
pub mod client;
pub mod config;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod server;
pub mod store;
