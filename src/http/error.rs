//! The HTTP layer's one error type. Each variant maps to exactly one status
//! and an RFC 9457 problem document, in one function.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

use crate::auth::Failure;
use crate::backend::{BackendError, BodyError, StorageFault, StoragePlace};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A name, header, query parameter or lifetime the client got wrong.
    #[error("{detail}")]
    BadRequest {
        problem: &'static str,
        detail: String,
    },
    /// No valid credential (`auth::Failure`, all but `Forbidden`).
    #[error("{}; nothing was done", .0.detail())]
    Unauthenticated(Failure),
    /// A valid credential without the role or the namespace.
    #[error("the credential does not grant the role this request needs on its namespace; nothing was done")]
    Forbidden,
    #[error("{0}")]
    NotFound(String),
    #[error("{method} is not allowed here; allowed: {allow}")]
    MethodNotAllowed { method: String, allow: String },
    #[error("the element's blob was deleted; the element has been consumed")]
    Gone,
    #[error("the body exceeds the maximum element size of {limit} bytes")]
    TooLarge { limit: u64 },
    /// A request head past the server's own limits (`--max-header-size`,
    /// `--max-headers`); `problem` says which.
    #[error("{detail}; nothing was done")]
    HeadTooLarge {
        problem: &'static str,
        detail: String,
    },
    #[error("the server is shutting down; retry against another instance or later")]
    ShuttingDown,
    /// The process (or system) has no file descriptor left for a body
    /// file: a passing overload, not a fault of the request or the disk.
    #[error("the server has too many files open to serve this now; the request changed nothing, retry after {OUT_OF_DESCRIPTORS_RETRY_AFTER} s")]
    OutOfDescriptors,
    /// The spill or data directory cannot be written; the detail names
    /// which, and why, never a path.
    #[error("{0}")]
    InsufficientStorage(StorageFault),
    #[error("{detail}; nothing was stored, retry after {retry_after} s or pop some elements")]
    OverQuota { detail: String, retry_after: u64 },
    /// A new namespace or queue past the server's limits; `problem` says which.
    #[error(
        "{detail}; nothing was stored, retry after {retry_after} s or once idle names are dropped"
    )]
    TooManyNames {
        problem: &'static str,
        detail: String,
        retry_after: u64,
    },
    #[error("the request body could not be read: {0}")]
    BodyRead(String),
    #[error("the request body sent nothing for {0} seconds; nothing was stored")]
    BodyTimeout(u64),
    /// Something the request asks of HTTP that blobq does not do (a
    /// transfer coding other than chunked).
    #[error("{detail}")]
    NotImplemented {
        problem: &'static str,
        detail: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
    /// The storage engine cannot be reached now (`BackendError::Unavailable`).
    #[error("{detail}")]
    Unavailable { detail: String, retry_after: u64 },
    /// A batch past one of its limits other than an element's size (its
    /// parts, a part's headers, its receipts).
    #[error("{detail}; nothing was done")]
    BatchTooLarge {
        problem: &'static str,
        detail: String,
    },
    /// What one part of a batch was refused for: its status and problem,
    /// the part named (counted from 0) in the detail and in `part`.
    #[error("part {part}: {error}")]
    InPart { part: usize, error: Box<ApiError> },
}

/// Retry-After, in seconds, of an answer for want of file descriptors:
/// connections and body files close all the time.
const OUT_OF_DESCRIPTORS_RETRY_AFTER: u32 = 1;

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    /// The part of a batch the problem is with.
    #[serde(skip_serializing_if = "Option::is_none")]
    part: Option<usize>,
}

/// The text of a server fault, left in the extensions of its `500`
/// response for the request log (see `layers::observe`), which knows the
/// method and route it failed on.
#[derive(Clone, Debug)]
pub struct ServerFault(pub String);

impl ApiError {
    pub fn bad_request(problem: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            problem,
            detail: detail.into(),
        }
    }

    fn status_and_problem(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { problem, .. } => (StatusCode::BAD_REQUEST, problem),
            ApiError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
            ApiError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed")
            }
            ApiError::Gone => (StatusCode::GONE, "blob-deleted"),
            ApiError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "element-too-large"),
            ApiError::HeadTooLarge { problem, .. } => {
                (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, problem)
            }
            ApiError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting-down"),
            ApiError::OutOfDescriptors => (StatusCode::SERVICE_UNAVAILABLE, "out-of-descriptors"),
            ApiError::InsufficientStorage(fault) => (
                StatusCode::INSUFFICIENT_STORAGE,
                match fault.place {
                    StoragePlace::Spill => "spill-dir-full",
                    StoragePlace::Data => "data-dir-full",
                    StoragePlace::Cluster => "cluster-unwritable",
                },
            ),
            ApiError::OverQuota { .. } => (StatusCode::TOO_MANY_REQUESTS, "over-quota"),
            ApiError::TooManyNames { problem, .. } => (StatusCode::TOO_MANY_REQUESTS, problem),
            ApiError::BodyRead(_) => (StatusCode::BAD_REQUEST, "body-read-failed"),
            ApiError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "body-timeout"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::Unavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "backend-unavailable")
            }
            ApiError::BatchTooLarge { problem, .. } => (StatusCode::PAYLOAD_TOO_LARGE, problem),
            ApiError::InPart { error, .. } => error.status_and_problem(),
            ApiError::NotImplemented { problem, .. } => (StatusCode::NOT_IMPLEMENTED, problem),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status_and_problem().0
    }
}

impl IntoResponse for ApiError {
    /// The status and problem document of the error, with `Allow` for a
    /// `405`, `Retry-After` for a `429` and `WWW-Authenticate` for a `401`.
    fn into_response(self) -> Response {
        let (status, problem) = self.status_and_problem();
        let doc = Problem {
            kind: format!("urn:blobq:problem:{problem}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: self.to_string(),
            part: match &self {
                ApiError::InPart { part, .. } => Some(*part),
                _ => None,
            },
        };
        let json = serde_json::to_vec(&doc).unwrap_or_default();
        let mut response = Response::new(Body::from(json));
        *response.status_mut() = status;
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            response.extensions_mut().insert(ServerFault(doc.detail));
        }
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        let this = match self {
            ApiError::InPart { error, .. } => *error,
            other => other,
        };
        match this {
            ApiError::MethodNotAllowed { allow, .. } => {
                if let Ok(allow) = HeaderValue::from_str(&allow) {
                    headers.insert(header::ALLOW, allow);
                }
            }
            ApiError::OverQuota { retry_after, .. }
            | ApiError::TooManyNames { retry_after, .. }
            | ApiError::Unavailable { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, retry_after.into());
            }
            ApiError::OutOfDescriptors => {
                headers.insert(header::RETRY_AFTER, OUT_OF_DESCRIPTORS_RETRY_AFTER.into());
            }
            ApiError::Unauthenticated(failure) => {
                // RFC 6750: the error code only when a credential was given.
                let challenge = if failure == Failure::Missing {
                    r#"Bearer realm="blobq""#
                } else {
                    r#"Bearer realm="blobq", error="invalid_token""#
                };
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            _ => {}
        }
        response
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::BlobNotFound { .. } | BackendError::LeaseNotFound { .. } => {
                ApiError::NotFound(e.to_string())
            }
            BackendError::NoDeadLetterQueue(_) => {
                ApiError::bad_request("invalid-lease", e.to_string())
            }
            BackendError::OverQuota { retry_after, .. } => ApiError::OverQuota {
                detail: e.to_string(),
                retry_after,
            },
            BackendError::TooManyNamespaces { retry_after, .. } => ApiError::TooManyNames {
                problem: "too-many-namespaces",
                detail: e.to_string(),
                retry_after,
            },
            BackendError::TooManyQueues { retry_after, .. } => ApiError::TooManyNames {
                problem: "too-many-queues",
                detail: e.to_string(),
                retry_after,
            },
            BackendError::BlobGone => ApiError::Gone,
            BackendError::ShuttingDown => ApiError::ShuttingDown,
            BackendError::TooLarge { limit } => ApiError::TooLarge { limit },
            BackendError::Unwritable(fault) if fault.out_of_descriptors => {
                ApiError::OutOfDescriptors
            }
            BackendError::Unwritable(fault) => ApiError::InsufficientStorage(fault),
            BackendError::Body(BodyError::Timeout(secs)) => ApiError::BodyTimeout(secs),
            BackendError::Body(BodyError::Read(detail)) => ApiError::BodyRead(detail),
            BackendError::Io(e) if crate::server::out_of_descriptors(&e) => {
                ApiError::OutOfDescriptors
            }
            BackendError::Unavailable { retry_after, .. } => ApiError::Unavailable {
                detail: e.to_string(),
                retry_after,
            },
            BackendError::NotSupported { .. } => ApiError::NotImplemented {
                problem: "not-supported-by-backend",
                detail: e.to_string(),
            },
            // The kind alone: the error itself may name a file.
            BackendError::Io(e) => {
                ApiError::Internal(format!("could not read the element's data ({})", e.kind()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_server_fault_leaves_its_text_for_the_log() {
        let fault = ApiError::Internal("disk on fire".into()).into_response();
        assert_eq!(fault.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let logged = fault
            .extensions()
            .get::<ServerFault>()
            .map(|f| f.0.as_str());
        assert_eq!(logged, Some("internal error: disk on fire"));
        let refused = ApiError::bad_request("invalid-name", "no").into_response();
        assert!(refused.extensions().get::<ServerFault>().is_none());
    }

    #[test]
    fn an_unreachable_engine_is_503_with_retry_after_and_a_missing_operation_501() {
        let down = ApiError::from(BackendError::Unavailable {
            reason: "not connected to NATS".into(),
            retry_after: 2,
        })
        .into_response();
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(down.headers()[header::RETRY_AFTER], "2");
        let missing = ApiError::from(BackendError::NotSupported {
            operation: "a batch push",
            engine: "NATS",
        });
        assert_eq!(
            missing.status_and_problem(),
            (StatusCode::NOT_IMPLEMENTED, "not-supported-by-backend")
        );
        assert!(missing.to_string().contains("a batch push"), "{missing}");
    }

    #[test]
    fn a_storage_fault_is_507_naming_the_directory_but_no_path() {
        let io = std::io::Error::other("failed to create file at path /var/lib/blobq/blobs/blob-x");
        let cases = [
            (
                StoragePlace::Spill,
                std::io::Error::from_raw_os_error(libc::ENOSPC),
                "spill-dir-full",
                "spill directory is full",
            ),
            (
                StoragePlace::Data,
                std::io::Error::from_raw_os_error(libc::EDQUOT),
                "data-dir-full",
                "data directory is full",
            ),
            (
                StoragePlace::Data,
                io,
                "data-dir-full",
                "data directory cannot be written",
            ),
        ];
        for (place, e, problem, says) in cases {
            let api = ApiError::from(BackendError::Unwritable(StorageFault::new(place, &e)));
            assert_eq!(
                api.status_and_problem(),
                (StatusCode::INSUFFICIENT_STORAGE, problem)
            );
            let detail = api.to_string();
            assert!(detail.contains(says), "{detail}");
            assert!(!detail.contains('/'), "a path in {detail}");
        }
        let read = ApiError::from(BackendError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "/srv/spill/blob-1",
        )));
        assert!(!read.to_string().contains('/'), "{read}");
    }

    #[test]
    fn running_out_of_descriptors_is_503_with_retry_after_never_500_or_507() {
        let emfile = || std::io::Error::from_raw_os_error(libc::EMFILE);
        // As tempfile reports it: the path added around the OS's error.
        let wrapped =
            std::io::Error::other(WithPath(std::io::Error::from_raw_os_error(libc::ENFILE)));
        let errors = [
            BackendError::Unwritable(StorageFault::new(StoragePlace::Spill, &emfile())),
            BackendError::Unwritable(StorageFault::new(StoragePlace::Data, &wrapped)),
            BackendError::Io(emfile()),
        ];
        for e in errors {
            let api = ApiError::from(e);
            assert_eq!(
                api.status_and_problem(),
                (StatusCode::SERVICE_UNAVAILABLE, "out-of-descriptors")
            );
            let response = api.into_response();
            assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        }
    }

    /// An error that names a path around the OS's error, as tempfile's does.
    #[derive(Debug)]
    struct WithPath(std::io::Error);

    impl std::fmt::Display for WithPath {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{} at path /tmp/x", self.0)
        }
    }

    impl std::error::Error for WithPath {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_405_lists_allow_and_a_429_says_when_to_retry() {
        let not_allowed = ApiError::MethodNotAllowed {
            method: "PATCH".into(),
            allow: "GET, POST, PUT".into(),
        };
        assert_eq!(
            not_allowed.into_response().headers()[header::ALLOW],
            "GET, POST, PUT"
        );
        let over = ApiError::OverQuota {
            detail: "full".into(),
            retry_after: 7,
        };
        assert_eq!(over.into_response().headers()[header::RETRY_AFTER], "7");
        let name = |s: &str| crate::backend::name::Name::parse(s).unwrap();
        let too_many = ApiError::from(BackendError::TooManyQueues {
            namespace: name("ns"),
            queue: name("q"),
            limit: 2,
            retry_after: 3,
        });
        assert_eq!(
            too_many.status_and_problem(),
            (StatusCode::TOO_MANY_REQUESTS, "too-many-queues")
        );
        assert_eq!(too_many.into_response().headers()[header::RETRY_AFTER], "3");
        let too_many = ApiError::from(BackendError::TooManyNamespaces {
            namespace: name("ns"),
            limit: 2,
            retry_after: 3,
        });
        assert_eq!(too_many.status_and_problem().1, "too-many-namespaces");
    }

    #[test]
    fn a_401_challenges_and_names_the_error_only_for_a_credential_given() {
        let missing = ApiError::Unauthenticated(Failure::Missing).into_response();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            missing.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer realm="blobq""#
        );
        let expired = ApiError::Unauthenticated(Failure::Expired).into_response();
        assert_eq!(
            expired.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer realm="blobq", error="invalid_token""#
        );
        let forbidden = ApiError::Forbidden.into_response();
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        assert!(forbidden.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
