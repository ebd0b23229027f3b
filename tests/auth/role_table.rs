//! The contract's role table as data: each request with the credentials
//! (by the names of tests/auth/support.rs's tokens) that may make it.
//! Shared by the plain-HTTP role tests (tests/auth/roles.rs) and the same
//! table over HTTPS and HTTP/2 (tests/tls/secured.rs).

use reqwest::Method;

/// A request and the credentials that may make it. `root` (admin on `*`)
/// may make every one; the others are scoped to `media` and `media-*`.
pub struct Row {
    pub method: Method,
    pub path: &'static str,
    pub allowed: &'static [&'static str],
}

const PRODUCER: &[&str] = &["producer", "admin", "root"];
const CONSUMER: &[&str] = &["consumer", "admin", "root"];
const OBSERVER: &[&str] = &["observer", "admin", "root"];
const ROOT: &[&str] = &["root"];
/// Reading a job: its producer or an observer.
const READER: &[&str] = &["producer", "observer", "admin", "root"];

pub fn rows() -> Vec<Row> {
    let row = |method: Method, path, allowed| Row {
        method,
        path,
        allowed,
    };
    vec![
        row(Method::POST, "/qs/media/q", PRODUCER),
        row(Method::PUT, "/qs/media/q", PRODUCER),
        row(Method::POST, "/qs/media-eu/q", PRODUCER),
        row(Method::POST, "/tbs/media/blobs", PRODUCER),
        row(Method::GET, "/qs/media/q", CONSUMER),
        row(Method::GET, "/qs/media/q?header_only=1", CONSUMER),
        row(Method::GET, "/qs/media/q?lease=30", CONSUMER),
        row(
            Method::DELETE,
            "/qs/media/q/leases/5f0c2d1e-0000-4000-8000-000000000000",
            CONSUMER,
        ),
        row(Method::POST, "/qs/media/q/leases/x/release", CONSUMER),
        row(
            Method::POST,
            "/qs/media/q/leases/x/extend?lease=5",
            CONSUMER,
        ),
        row(Method::GET, "/tbs/media/blobs/x", CONSUMER),
        row(Method::DELETE, "/tbs/media/blobs/x", CONSUMER),
        row(Method::GET, "/qs/media/q/stats", OBSERVER),
        row(Method::GET, "/qs/media", OBSERVER),
        row(Method::GET, "/qs", OBSERVER),
        row(Method::DELETE, "/qs/media/q", CONSUMER),
        row(Method::POST, "/jobs/media/export", PRODUCER),
        row(Method::GET, "/jobs/media/export/x", READER),
        row(Method::GET, "/jobs/media/export/x/log", READER),
        row(Method::GET, "/jobs/media/export/x/result", PRODUCER),
        row(Method::POST, "/jobs/media/export/x/cancel", PRODUCER),
        row(Method::DELETE, "/jobs/media/export/x", PRODUCER),
        row(Method::GET, "/jobs/media/export", OBSERVER),
        row(Method::GET, "/jobs/media", OBSERVER),
        row(Method::POST, "/jobs/media/export/claim", CONSUMER),
        row(Method::POST, "/jobs/media/export/x/heartbeat", CONSUMER),
        row(Method::PUT, "/jobs/media/export/x/result", CONSUMER),
        row(Method::POST, "/jobs/media/export/x/fail", CONSUMER),
        row(Method::POST, "/jobs/other/export", ROOT),
        row(Method::GET, "/metrics", ROOT),
        // Outside the scoped credentials' namespaces.
        row(Method::POST, "/qs/other/q", ROOT),
        row(Method::GET, "/qs/other/q", ROOT),
        row(Method::GET, "/qs/other", ROOT),
        row(Method::GET, "/qs/mediaX/q/stats", ROOT),
        row(Method::DELETE, "/tbs/other/blobs/x", ROOT),
    ]
}

/// Every credential the table names.
pub const CALLERS: [&str; 5] = ["producer", "consumer", "observer", "admin", "root"];
