//! `/jobs`: the jobs API of `docs/JOBS.md`. This module holds the client
//! side (submit, get and long poll, result, log, cancel, delete, list,
//! counts); `worker.rs` the worker side (claim, heartbeat, result upload,
//! fail). Requests are checked in `extract.rs`, documents written in
//! `document.rs`, errors shaped in `problem.rs`; job state lives behind the
//! [`JobStore`] seam.

mod document;
pub mod extract;
mod problem;
mod worker;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::header::{CONTENT_TYPE, ETAG, LOCATION, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, Uri};

use super::extract::{raw_param, Namespace, NoQuery, Queue};
use super::layers::BodyUnread;
use super::{body, header_value, json, no_content, with_status, ApiError, App};
use crate::backend::jobs::{JobStore, JobView, Seen};
use crate::backend::{BackendError, BodyError};
use document::{etag, path, CountsDoc, JobDoc, LogEntryDoc, PageDoc};
use extract::{JobLimits, Submit, JOB_STATUS};
pub use problem::JobApiError;
pub(super) use worker::{claim, fail, heartbeat, upload_result};

/// What a jobs handler returns.
type JobHandled = Result<Response, JobApiError>;

/// The jobs engine and the limits its routes check, when the server
/// serves jobs.
pub struct JobsService {
    pub store: Arc<dyn JobStore>,
    pub limits: JobLimits,
}

/// The jobs service, or `501` where the app was built without one.
fn service(app: &App) -> Result<&JobsService, JobApiError> {
    app.jobs.as_ref().ok_or_else(|| {
        JobApiError::NotImplemented("this server was started without the jobs API".into())
    })
}

/// The `{id}` of a job path, as sent: the engine looks it up, and an id it
/// does not know (malformed or not) is a `404`.
pub struct JobKey(pub String);

impl<S: Send + Sync> FromRequestParts<S> for JobKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        raw_param(parts, "id").map(|id| JobKey(id.to_owned()))
    }
}

/// A job document answer with `status`, its `ETag` and `Location`.
fn job_answer(status: StatusCode, view: &JobView) -> JobHandled {
    let mut response = json(status, &JobDoc::of(view))?;
    let headers = response.headers_mut();
    headers.insert(ETAG, etag(view));
    headers.insert(LOCATION, header_value(&path(view)));
    Ok(response)
}

/// Reads a small JSON body (a heartbeat, a failure) whole, refusing one
/// larger than the configured maximum.
async fn report_body(app: &App, limits: &JobLimits, body: Body) -> Result<Bytes, ApiError> {
    let max = limits.config.max_report_bytes;
    let too_large = || {
        ApiError::bad_request(
            "invalid-report",
            format!("the body is larger than {max} bytes"),
        )
    };
    let mut incoming = body::incoming(body, app.limits.body_read_timeout);
    if incoming.announced.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = incoming.chunks.next().await {
        let chunk = chunk.map_err(|e: BodyError| ApiError::from(BackendError::Body(e)))?;
        if buf.len() + chunk.len() > max {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// `POST /jobs/{ns}/{queue}`: submits a job whose input is the body.
pub(super) async fn submit(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
    _: NoQuery,
    headers: HeaderMap,
    input: Body,
) -> JobHandled {
    let jobs = service(&app)?;
    let submit = Submit::parse(&headers, &app.limits, &jobs.limits)?;
    let input = body::incoming(input, app.limits.body_read_timeout);
    let submitted = jobs.store.submit(&ns, &q, input, submit.options).await?;
    if !submitted.created {
        // The first job's answer: this request's body was never read.
        let mut response = job_answer(StatusCode::OK, &submitted.job)?;
        response.extensions_mut().insert(BodyUnread);
        return Ok(response);
    }
    let mut view = submitted.job;
    if let Some(wait) = submit.wait {
        let id = view.id.to_string();
        view = jobs.store.watch(&ns, &q, &id, &Seen::Nothing, wait).await?;
        if view.state.is_done() {
            return job_answer(StatusCode::OK, &view);
        }
    }
    let mut response = job_answer(StatusCode::ACCEPTED, &view)?;
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    Ok(response)
}

/// `GET /jobs/{ns}/{queue}/{id}[?wait=S]`: the document, once done or
/// changed from the client's `If-None-Match` when it waits; `304` if the
/// client's version is still the job's.
pub(super) async fn get(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
    JobKey(id): JobKey,
    uri: Uri,
    headers: HeaderMap,
) -> JobHandled {
    let jobs = service(&app)?;
    let wait = extract::wait_query(uri.query(), &app.limits)?;
    let seen = extract::seen(&headers)?;
    let view = jobs.store.watch(&ns, &q, &id, &seen, wait).await?;
    if seen.contains(view.version) {
        let mut response = with_status(StatusCode::NOT_MODIFIED, Body::empty(), None);
        response.headers_mut().insert(ETAG, etag(&view));
        return Ok(response);
    }
    job_answer(StatusCode::OK, &view)
}

/// `GET /jobs/{ns}/{queue}/{id}/result`: a succeeded job's result bytes.
pub(super) async fn result(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
    JobKey(id): JobKey,
    _: NoQuery,
) -> JobHandled {
    let jobs = service(&app)?;
    let (view, payload) = jobs.store.read_result(&ns, &q, &id).await?;
    let mut response = Response::new(body::payload(payload));
    let headers = response.headers_mut();
    if let Some(result) = &view.result {
        headers.insert(CONTENT_TYPE, header_value(&result.body.content_type));
        headers.insert(JOB_STATUS, HeaderValue::from(result.status));
    }
    headers.insert(ETAG, etag(&view));
    Ok(response)
}

/// `GET /jobs/{ns}/{queue}/{id}/log[?after=N]`: the progress log.
pub(super) async fn log(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
    JobKey(id): JobKey,
    uri: Uri,
) -> JobHandled {
    let jobs = service(&app)?;
    let after = extract::after_query(uri.query())?;
    let entries = jobs.store.log(&ns, &q, &id, after).await?;
    let docs: Vec<LogEntryDoc> = entries.iter().map(LogEntryDoc::of).collect();
    Ok(json(StatusCode::OK, &docs)?)
}

/// `POST /jobs/{ns}/{queue}/{id}/cancel`
pub(super) async fn cancel(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
    JobKey(id): JobKey,
    _: NoQuery,
) -> JobHandled {
    let jobs = service(&app)?;
    let view = jobs.store.cancel(&ns, &q, &id).await?;
    job_answer(StatusCode::OK, &view)
}

/// `DELETE /jobs/{ns}/{queue}/{id}`: removes a finished job.
pub(super) async fn delete(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
    JobKey(id): JobKey,
    _: NoQuery,
) -> JobHandled {
    let jobs = service(&app)?;
    jobs.store.delete(&ns, &q, &id).await?;
    Ok(no_content())
}

/// `GET /jobs/{ns}/{queue}[?state=&limit=&page_token=]`
pub(super) async fn list(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    Queue(q): Queue,
    uri: Uri,
) -> JobHandled {
    let jobs = service(&app)?;
    let opts = extract::list_query(uri.query())?;
    let page = jobs.store.list(&ns, &q, opts).await?;
    Ok(json(StatusCode::OK, &PageDoc::of(&page))?)
}

/// `GET /jobs/{ns}`: per queue, the jobs in each state.
pub(super) async fn counts(
    State(app): State<Arc<App>>,
    Namespace(ns): Namespace,
    _: NoQuery,
) -> JobHandled {
    let jobs = service(&app)?;
    let counts = jobs
        .store
        .counts(&ns)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no jobs in namespace {ns}")))?;
    Ok(json(StatusCode::OK, &CountsDoc(&counts))?)
}
