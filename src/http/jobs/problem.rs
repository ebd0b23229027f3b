//! The jobs routes' error: any [`ApiError`], plus the answers only jobs
//! give: `409`s whose problem document names the job's state (and carries
//! its error), and `501` while jobs are not served.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

use super::document::ErrorDoc;
use crate::backend::jobs::{JobError, JobFailure, JobState};
use crate::http::ApiError;

#[derive(Debug)]
pub enum JobApiError {
    Api(ApiError),
    /// The job's state does not allow the request.
    Conflict {
        problem: &'static str,
        detail: String,
        state: Option<JobState>,
        error: Option<JobFailure>,
    },
    /// This server does not serve jobs (see the detail for why).
    NotImplemented(String),
}

impl From<ApiError> for JobApiError {
    fn from(e: ApiError) -> Self {
        JobApiError::Api(e)
    }
}

impl From<JobError> for JobApiError {
    fn from(e: JobError) -> Self {
        let detail = e.to_string();
        let conflict = |problem, state, error| JobApiError::Conflict {
            problem,
            detail: detail.clone(),
            state,
            error,
        };
        match e {
            JobError::JobNotFound { .. } | JobError::QueueNotFound { .. } => {
                ApiError::NotFound(detail).into()
            }
            JobError::NotDone { state, .. } => conflict("job-not-done", Some(state), None),
            JobError::NoResult { state, error, .. } => {
                conflict("job-has-no-result", Some(state), error)
            }
            JobError::LeaseNotHeld { .. } => conflict("lease-not-held", None, None),
            JobError::Cancelled { .. } => {
                conflict("job-cancelled", Some(JobState::Cancelled), None)
            }
            JobError::BadPageToken(_) => ApiError::bad_request("invalid-page-token", detail).into(),
            JobError::ShuttingDown => ApiError::ShuttingDown.into(),
            JobError::Bytes(e) => ApiError::from(e).into(),
        }
    }
}

/// A problem document with the members jobs add.
#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorDoc<'a>>,
}

impl IntoResponse for JobApiError {
    fn into_response(self) -> Response {
        let (status, problem, detail, state, error) = match self {
            JobApiError::Api(e) => return e.into_response(),
            JobApiError::Conflict {
                problem,
                detail,
                state,
                error,
            } => (StatusCode::CONFLICT, problem, detail, state, error),
            JobApiError::NotImplemented(detail) => (
                StatusCode::NOT_IMPLEMENTED,
                "jobs-not-available",
                detail,
                None,
                None,
            ),
        };
        let doc = Problem {
            kind: format!("urn:blobq:problem:{problem}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: &detail,
            state: state.map(JobState::as_str),
            error: error.as_ref().map(ErrorDoc::of),
        };
        let mut response = Response::new(Body::from(serde_json::to_vec(&doc).unwrap_or_default()));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}
