//! `/qs/{ns}/{queue}/leases/{receipt}`: acknowledge, release or extend an
//! element popped under a lease.

use http::request::Parts;
use http::{Response, StatusCode};
use serde::Serialize;

use super::request::{extend_query, name, no_query, LEASE};
use super::{header_value, json, ApiError, App, Body, Handled};
use crate::store::name::Name;
use crate::store::Commit;

fn no_content() -> Handled {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// The namespace and queue of an ack or release, which take no parameters.
fn names_without_query(ns: &str, q: &str, head: &Parts) -> Result<(Name, Name), ApiError> {
    let names = (name("namespace", ns)?, name("queue", q)?);
    no_query(head.uri.query())?;
    Ok(names)
}

/// `DELETE .../leases/{receipt}`: the element is done with and removed.
pub(super) async fn ack(app: &App, ns: &str, q: &str, receipt: &str, head: &Parts) -> Handled {
    let (nsn, qn) = names_without_query(ns, q, head)?;
    app.store.ack(&nsn, &qn, receipt)?;
    app.store.durable(Commit::Consumed).await?;
    no_content()
}

/// `POST .../leases/{receipt}/release`: hands the element back at once.
pub(super) fn release(app: &App, ns: &str, q: &str, receipt: &str, head: &Parts) -> Handled {
    let (nsn, qn) = names_without_query(ns, q, head)?;
    app.store.release(&nsn, &qn, receipt)?;
    no_content()
}

#[derive(Serialize)]
struct Extended<'a> {
    receipt: &'a str,
    lease: u64,
}

/// `POST .../leases/{receipt}/extend?lease=S`: restarts the lease with `S`
/// seconds from now.
pub(super) fn extend(app: &App, ns: &str, q: &str, receipt: &str, head: &Parts) -> Handled {
    let (nsn, qn) = (name("namespace", ns)?, name("queue", q)?);
    let lease = extend_query(head.uri.query(), &app.limits)?;
    let seconds_left = app.store.extend(&nsn, &qn, receipt, lease)?;
    let mut response = json(
        StatusCode::OK,
        &Extended {
            receipt,
            lease: seconds_left,
        },
    )?;
    response.headers_mut().insert(LEASE, header_value(receipt));
    Ok(response)
}
