//! Bounded names through the real server: `--max-namespaces` and
//! `--max-queues-per-namespace` refuse a new name with `429`, the listings
//! of `GET /qs` and `GET /qs/{ns}` come in pages, and what a namespace
//! costs in memory (`limits/memory.rs`).

mod common;
#[path = "limits/memory.rs"]
mod memory;
