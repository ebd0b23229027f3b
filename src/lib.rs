//! blobq: a namespaced HTTP queue server for binary blobs.
//!
//! - [`config`]: the settings, from flags, environment and TOML file.
//! - [`server`]: the listener, connections and graceful shutdown.
//! - [`http`]: routes, request validation and error responses.
//! - [`store`]: namespaces, queues, blobs, spill files and expiry; no HTTP.
//! - [`metrics`]: the Prometheus registry.

pub mod backend;
pub mod config;
pub mod http;
pub mod metrics;
pub mod server;
pub mod store;
