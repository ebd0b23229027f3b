//! Authentication and authorisation through the real server, over plain
//! HTTP: the role table for static tokens and JWTs, every kind of refusal,
//! what a refusal leaves behind, filtered listings, metrics, reload on
//! SIGHUP, start-up failures and `blobq token new`.

mod common;

#[path = "auth/burst.rs"]
mod burst;
#[path = "auth/jwt.rs"]
mod jwt;
#[path = "auth/refusals.rs"]
mod refusals;
#[path = "auth/reload.rs"]
mod reload;
#[path = "auth/role_table.rs"]
mod role_table;
#[path = "auth/roles.rs"]
mod roles;
#[path = "auth/support.rs"]
mod support;
