//! `/qs/{ns}/{queue}/leases/{receipt}`: acknowledge, release or extend an
//! element popped under a lease.

use http::request::Parts;
use http::{Response, StatusCode};
use serde::Serialize;

use super::request::{extend_query, name, no_query, LEASE};
use super::{header_value, json, ApiError, App, Body, Handled};
use crate::backend::name::Name;

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
    app.backend.ack(&nsn, &qn, receipt).await?;
    no_content()
}

/// `POST .../leases/{receipt}/release`: hands the element back at once.
pub(super) async fn release(app: &App, ns: &str, q: &str, receipt: &str, head: &Parts) -> Handled {
    let (nsn, qn) = names_without_query(ns, q, head)?;
    app.backend.release(&nsn, &qn, receipt).await?;
    no_content()
}

#[derive(Serialize)]
struct Extended<'a> {
    receipt: &'a str,
    lease: u64,
}

/// `POST .../leases/{receipt}/extend?lease=S`: restarts the lease with `S`
/// seconds from now.
pub(super) async fn extend(app: &App, ns: &str, q: &str, receipt: &str, head: &Parts) -> Handled {
    let (nsn, qn) = (name("namespace", ns)?, name("queue", q)?);
    let lease = extend_query(head.uri.query(), &app.limits)?;
    let seconds_left = app.backend.extend(&nsn, &qn, receipt, lease).await?;
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
