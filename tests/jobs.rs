//! The jobs API (`docs/JOBS.md`) through the real server on the embedded
//! engine, for what the cases run on both backends (`tests/nats_jobs.rs`:
//! the client side, claims, leases, failures, cancels, shutdown) do not
//! cover: the worker side's embedded specifics in `jobs/workers.rs`, bad
//! input in `jobs/refusals.rs`, retention with its blobs in
//! `jobs/lifecycle.rs`, the four flows of the issue end to end in
//! `jobs/flows.rs`, and what a job costs in memory in `jobs/memory.rs`;
//! callbacks in `jobs/callbacks.rs`; the element quota in `jobs/quota.rs`;
//! durable mode, restarts and a crash run in `jobs/durable.rs`.
//! The requests every part makes are in `jobs/api.rs`.

#[path = "jobs/api.rs"]
mod api;
#[path = "jobs/callbacks.rs"]
mod callbacks;
mod common;
#[path = "jobs/durable.rs"]
mod durable;
#[path = "jobs/flows.rs"]
mod flows;
#[path = "jobs/lifecycle.rs"]
mod lifecycle;
#[path = "jobs/memory.rs"]
mod memory;
/// The test certificate authority of the TLS tests, for the HTTPS
/// callback receiver.
#[allow(dead_code)]
#[path = "tls/pki.rs"]
mod pki;
#[path = "jobs/quota.rs"]
mod quota;
#[path = "jobs/refusals.rs"]
mod refusals;
#[path = "jobs/workers.rs"]
mod workers;

pub use api::*;
