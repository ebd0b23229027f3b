//! `/qs/{ns}/{queue}/leases/{receipt}`: acknowledge, release or extend an
//! element popped under a lease.

use std::sync::Arc;

use axum::extract::State;
use http::StatusCode;
use serde::Serialize;

use super::extract::{ExtendQuery, LeaseReceipt, Namespace, NoQuery, Queue};
use super::headers::LEASE;
use super::{header_value, json, no_content, App, Handled};

/// `DELETE .../leases/{receipt}`: the element is done with and removed.
pub(super) async fn ack(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
    _: NoQuery,
    LeaseReceipt(receipt): LeaseReceipt,
) -> Handled {
    app.backend.ack(&ns, &q, &receipt).await?;
    Ok(no_content())
}

/// `POST .../leases/{receipt}/release`: hands the element back at once.
pub(super) async fn release(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
    _: NoQuery,
    LeaseReceipt(receipt): LeaseReceipt,
) -> Handled {
    app.backend.release(&ns, &q, &receipt).await?;
    Ok(no_content())
}

#[derive(Serialize)]
struct Extended<'a> {
    receipt: &'a str,
    lease: u64,
}

/// `POST .../leases/{receipt}/extend?lease=S`: restarts the lease with `S`
/// seconds from now.
pub(super) async fn extend(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
    ExtendQuery(lease): ExtendQuery,
    LeaseReceipt(receipt): LeaseReceipt,
) -> Handled {
    let seconds_left = app.backend.extend(&ns, &q, &receipt, lease).await?;
    let answer = Extended {
        receipt: &receipt,
        lease: seconds_left,
    };
    let mut response = json(StatusCode::OK, &answer)?;
    response.headers_mut().insert(LEASE, header_value(&receipt));
    Ok(response)
}
