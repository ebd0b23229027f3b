//! The worker side of `/jobs`: claim a job under a lease, report progress,
//! upload the result or report a failure. Every call but the claim names
//! its lease with `X-QueueServer-Lease`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use bytes::BytesMut;
use http::header::{CONTENT_TYPE, LOCATION};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use serde::Serialize;

use super::document::{path, time};
use super::extract::{self, ATTEMPT, JOB_ID};
use super::{job_answer, report_body, service, JobHandled, JobKey};
use crate::backend::jobs::{ClaimOptions, ResultMeta};
use crate::http::extract::{Namespace, NoQuery, Queue};
use crate::http::headers::{CUSTOM_DATA, LEASE};
use crate::http::layers::BodyRead;
use crate::http::{body, bytes_value, header_value, id_value, json, no_content, App};

/// `POST /jobs/{ns}/{queue}/claim[?lease=S&timeout=S]`: the oldest pending
/// job, its input as the body; `204` if none came in time.
pub(in crate::http) async fn claim(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
    uri: Uri,
) -> JobHandled {
    let jobs = service(&app)?;
    let (lease, wait) = extract::claim_query(uri.query(), &app.limits)?;
    let Some(claimed) = jobs
        .store
        .claim(&ns, &q, ClaimOptions { lease, wait })
        .await?
    else {
        return Ok(no_content());
    };
    let job = &claimed.job;
    let mut response = Response::new(body::payload(claimed.input));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, header_value(&job.input.content_type));
    for pair in job.metadata.iter() {
        let mut text = BytesMut::with_capacity(pair.key.len() + 1 + pair.value.len());
        text.extend_from_slice(pair.key.as_bytes());
        text.extend_from_slice(b"=");
        text.extend_from_slice(pair.value.as_bytes());
        headers.append(CUSTOM_DATA, bytes_value(text.freeze()));
    }
    headers.insert(JOB_ID, id_value(job.id.uuid()));
    headers.insert(LOCATION, header_value(&path(job)));
    headers.insert(LEASE, id_value(claimed.receipt));
    headers.insert(ATTEMPT, HeaderValue::from(job.attempt));
    Ok(response)
}

#[derive(Serialize)]
struct LeaseAnswer {
    lease_expires: String,
}

/// `POST /jobs/{ns}/{queue}/{id}/heartbeat`: progress, and a longer lease.
pub(in crate::http) async fn heartbeat(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
    JobKey(id): JobKey,
    _: NoQuery,
    headers: HeaderMap,
    body: Body,
) -> JobHandled {
    let jobs = service(&app)?;
    let receipt = extract::receipt(&headers)?;
    let raw = report_body(&app, &jobs.limits, body).await?;
    let report = extract::heartbeat(&raw, &app.limits, &jobs.limits.config)?;
    let until = jobs.store.heartbeat(&ns, &q, &id, receipt, report).await?;
    let answer = LeaseAnswer {
        lease_expires: time(until),
    };
    Ok(json(StatusCode::OK, &answer)?)
}

/// `PUT /jobs/{ns}/{queue}/{id}/result`: the body is the job's result.
pub(in crate::http) async fn upload_result(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
    JobKey(id): JobKey,
    _: NoQuery,
    headers: HeaderMap,
    result: Body,
) -> JobHandled {
    let jobs = service(&app)?;
    let receipt = extract::receipt(&headers)?;
    let meta = ResultMeta {
        content_type: extract::result_type(&headers)?,
        status: extract::job_status(&headers)?,
    };
    let result = body::incoming(result, app.limits.body_read_timeout);
    let view = jobs
        .store
        .complete(&ns, &q, &id, receipt, result, meta)
        .await?;
    // A stored result was read whole: the connection can serve the
    // worker's next call.
    let mut response = job_answer(StatusCode::OK, &view)?;
    response.extensions_mut().insert(BodyRead);
    Ok(response)
}

/// `POST /jobs/{ns}/{queue}/{id}/fail`: the worker's failure, retried or
/// final.
pub(in crate::http) async fn fail(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
    JobKey(id): JobKey,
    _: NoQuery,
    headers: HeaderMap,
    body: Body,
) -> JobHandled {
    let jobs = service(&app)?;
    let receipt = extract::receipt(&headers)?;
    let raw = report_body(&app, &jobs.limits, body).await?;
    let report = extract::failure(&raw, &jobs.limits.config)?;
    let view = jobs.store.fail(&ns, &q, &id, receipt, report).await?;
    job_answer(StatusCode::OK, &view)
}
