//! Typed extraction: what a handler asks for in its signature (names from
//! the path, a query, push headers, a lease receipt), each read from the
//! request and checked into a value, or refused with the `ApiError` (a
//! `400` problem, mostly) that says what is wrong.
//!
//! Path segments are read raw (`path.rs`), never percent-decoded: axum's
//! `Path` would decode `%2F` into a `/` inside a name, where the contract
//! refuses the `%` itself. The checks themselves are plain functions ([`name`],
//! [`PushHeaders::parse`], [`PopQuery::parse`], ...) so that they can be
//! tested, and fuzzed, without a request.

mod push;
mod query;
mod transfer;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use http::request::Parts;

use super::error::ApiError;
use super::head_limit::HeadLimits;
use super::{path, App};
use crate::backend::name::{Name, NameError};
use crate::backend::stats::Page;

pub use push::{blob_reference, PushHeaders};
pub use query::{
    delete_after_read, extend_query, list_query, no_query, PopQuery, DEFAULT_PAGE_SIZE,
};
pub(crate) use query::{lease_length, query_pairs, seconds, unknown_parameter};
pub use transfer::transfer_coding;

/// Limits the HTTP layer checks requests against.
#[derive(Clone, Debug)]
pub struct RequestLimits {
    pub default_lifetime: u64,
    pub max_lifetime: u64,
    pub max_timeout: Duration,
    pub max_lease: Duration,
    /// Longest a request body may go without sending a byte.
    pub body_read_timeout: Duration,
    pub max_custom_data: usize,
    /// Most names a page of `GET /qs` or `GET /qs/{ns}` may ask for.
    pub max_page_size: usize,
    /// The size and header lines a request head may have.
    pub head: HeadLimits,
}

/// Validates a path segment as a namespace or queue name (`what`).
pub fn name(what: &str, raw: &str) -> Result<Name, ApiError> {
    Name::parse(raw).map_err(|e| invalid_name(what, raw, e))
}

fn invalid_name(what: &str, raw: &str, e: NameError) -> ApiError {
    ApiError::bad_request("invalid-name", format!("{what} name {raw:?} {e}"))
}

pub(crate) fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The raw text of the path parameter `{key}` (see `path.rs`).
pub(crate) fn raw_param<'a>(parts: &'a Parts, key: &str) -> Result<&'a str, ApiError> {
    path::param(parts, key).ok_or_else(|| ApiError::Internal(format!("no {{{key}}} in the route")))
}

/// The `{ns}` of the path, a valid name.
#[derive(Debug)]
pub struct Namespace(pub Name);

/// The `{queue}` of the path, a valid name.
#[derive(Debug)]
pub struct Queue(pub Name);

/// The `{receipt}` of the path, as sent: the backend looks it up, and a
/// receipt it does not know (malformed or not) is a `404`.
#[derive(Debug)]
pub struct LeaseReceipt(pub String);

/// The `{id}` of a blob path, as sent: looked up like a receipt.
#[derive(Debug)]
pub struct BlobKey(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Namespace {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        name("namespace", raw_param(parts, "ns")?).map(Namespace)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Queue {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        name("queue", raw_param(parts, "queue")?).map(Queue)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for LeaseReceipt {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        raw_param(parts, "receipt").map(|r| LeaseReceipt(r.to_owned()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for BlobKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        raw_param(parts, "id").map(|id| BlobKey(id.to_owned()))
    }
}

impl FromRequestParts<Arc<App>> for PushHeaders {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        PushHeaders::parse(&parts.headers, &app.limits)
    }
}

/// The `X-BlobStorage_Id` of a reference push, if any.
#[derive(Debug)]
pub struct BlobReference(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for BlobReference {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(BlobReference(
            blob_reference(&parts.headers)?.map(str::to_owned),
        ))
    }
}

impl FromRequestParts<Arc<App>> for PopQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        PopQuery::parse(parts.uri.query(), &app.limits)
    }
}

/// `?lease=S` of a lease extension: the new lease length.
#[derive(Debug)]
pub struct ExtendQuery(pub Duration);

impl FromRequestParts<Arc<App>> for ExtendQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        extend_query(parts.uri.query(), &app.limits).map(ExtendQuery)
    }
}

/// `?limit=N&page_token=T` of a listing: the page to answer.
#[derive(Debug)]
pub struct ListQuery(pub Page);

impl FromRequestParts<Arc<App>> for ListQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        list_query(parts.uri.query(), app.limits.max_page_size).map(ListQuery)
    }
}

/// `?delete=1` of a blob read: delete the blob once read.
#[derive(Debug)]
pub struct DeleteAfterRead(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for DeleteAfterRead {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        delete_after_read(parts.uri.query()).map(DeleteAfterRead)
    }
}

/// A request that takes no query parameter: any is refused.
#[derive(Debug)]
pub struct NoQuery;

impl<S: Send + Sync> FromRequestParts<S> for NoQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        no_query(parts.uri.query()).map(|()| NoQuery)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub fn limits() -> RequestLimits {
        RequestLimits {
            default_lifetime: 3600,
            max_lifetime: 86400,
            max_timeout: Duration::from_secs(300),
            max_lease: Duration::from_secs(600),
            body_read_timeout: Duration::from_secs(30),
            max_custom_data: 3,
            max_page_size: 1000,
            head: HeadLimits::new(16 * 1024, 100),
        }
    }

    /// The problem type of a `400`, failing on any other outcome.
    pub fn problem(r: Result<impl std::fmt::Debug, ApiError>) -> &'static str {
        match r {
            Err(ApiError::BadRequest { problem, .. }) => problem,
            other => panic!("expected a 400, got {other:?}"),
        }
    }
}
