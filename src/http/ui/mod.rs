//! The live dashboard at `/ui` (docs/DASHBOARD.md): a page, its script and
//! style, embedded in the binary so that it works offline, and the recent
//! history of the server-wide totals its charts start from. The page reads
//! everything else from the API's own JSON routes with the operator's
//! credential; this module serves no queue or job data of its own.

mod history;
mod settings;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use http::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue, StatusCode};

pub use history::{sample_in_background, History, HistoryDoc, JobSample, Sample};
pub use settings::{UiConfig, UiSettings};

use super::{json, with_status, App, Handled};

/// The dashboard's state in the app: its settings and the history.
pub struct Dashboard {
    config: UiConfig,
    pub history: History,
}

impl Dashboard {
    pub fn new(config: UiConfig) -> Dashboard {
        Dashboard {
            config,
            history: History::new(config),
        }
    }

    pub fn config(&self) -> UiConfig {
        self.config
    }
}

/// One embedded file and how it is served.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    /// A digest of the body: the `ETag`, so that a browser revalidates a
    /// cached copy cheaply and never keeps one a new binary replaced.
    digest: u64,
}

impl Asset {
    const fn new(body: &'static [u8], content_type: &'static str) -> Asset {
        Asset {
            body,
            content_type,
            digest: fnv1a(body),
        }
    }
}

/// FNV-1a, computed at compile time: a cache validator, not a security
/// measure, so any stable digest does.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

const PAGE: Asset = Asset::new(
    include_bytes!("assets/index.html"),
    "text/html; charset=utf-8",
);
const SCRIPT: Asset = Asset::new(
    include_bytes!("assets/app.js"),
    "text/javascript; charset=utf-8",
);
const STYLE: Asset = Asset::new(include_bytes!("assets/app.css"), "text/css; charset=utf-8");
const ICON: Asset = Asset::new(include_bytes!("assets/icon.svg"), "image/svg+xml");

/// What the page may load and run: its own files and API calls only, no
/// inline script, and it may not be framed by another site.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `asset`, or `304` if the browser's copy is current. Browsers keep it
/// but ask again each time (`no-cache`): a page of a few kilobytes is not
/// worth serving stale after an upgrade.
fn serve(asset: &Asset, request: &HeaderMap) -> Handled {
    let etag = format!("\"{:016x}\"", asset.digest);
    let current = request
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == etag
        });
    let mut response = if current {
        with_status(StatusCode::NOT_MODIFIED, Body::empty(), None)
    } else {
        with_status(
            StatusCode::OK,
            Body::from(asset.body),
            Some(asset.content_type),
        )
    };
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(ETAG, super::header_value(&etag));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if asset.content_type.starts_with("text/html") {
        headers.insert(
            "content-security-policy",
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    }
    Ok(response)
}

/// `GET /ui`: the page.
pub(super) async fn page(headers: HeaderMap) -> Handled {
    serve(&PAGE, &headers)
}

/// `GET /`: the dashboard, for whoever opens the server's address in a
/// browser.
pub(super) async fn home() -> Handled {
    let mut answer = with_status(StatusCode::FOUND, Body::empty(), None);
    answer
        .headers_mut()
        .insert(http::header::LOCATION, HeaderValue::from_static("/ui"));
    Ok(answer)
}

/// `GET /ui/app.js`
pub(super) async fn script(headers: HeaderMap) -> Handled {
    serve(&SCRIPT, &headers)
}

/// `GET /ui/app.css`
pub(super) async fn style(headers: HeaderMap) -> Handled {
    serve(&STYLE, &headers)
}

/// `GET /ui/icon.svg`
pub(super) async fn icon(headers: HeaderMap) -> Handled {
    serve(&ICON, &headers)
}

/// `GET /ui/history`: the samples of the server-wide totals kept, oldest
/// first. Never cached: it is a moment's figures.
pub(super) async fn history(State(app): State<Arc<App>>) -> Handled {
    let mut response = json(StatusCode::OK, &app.dashboard.history.document())?;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_current_copy_is_not_sent_again() {
        let fresh = serve(&STYLE, &HeaderMap::new()).unwrap();
        assert_eq!(fresh.status(), StatusCode::OK);
        let etag = fresh.headers()[ETAG].clone();
        let mut asks = HeaderMap::new();
        asks.insert(IF_NONE_MATCH, etag.clone());
        let again = serve(&STYLE, &asks).unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[ETAG], etag);
        let mut stale = HeaderMap::new();
        stale.insert(IF_NONE_MATCH, HeaderValue::from_static("\"0\", W/\"1\""));
        assert_eq!(serve(&STYLE, &stale).unwrap().status(), StatusCode::OK);
    }

    #[test]
    fn each_file_has_its_own_digest() {
        let digests = [PAGE.digest, SCRIPT.digest, STYLE.digest, ICON.digest];
        for (i, a) in digests.iter().enumerate() {
            assert!(digests[i + 1..].iter().all(|b| a != b));
        }
    }
}
