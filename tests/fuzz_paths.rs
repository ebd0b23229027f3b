//! Property tests over names, paths and the route table: every path a
//! client may send, through the real `Router`, and the name checks and
//! lease receipts behind it.
//!
//! No input panics; valid names are accepted unchanged and every route
//! built from them is found; nothing in a path is percent-decoded; any
//! other path answers a status of the contract.
//!
//! Cases per property: `BLOBQ_FUZZ_CASES` (default 256, so `make test` stays
//! fast; `make fuzz` runs many more).

mod fuzz_support;

use std::sync::Arc;

use axum::body::Body;
use blobq::backend::ids::{BlobId, Receipt};
use blobq::backend::name::{Name, MAX_NAME_LEN};
use blobq::config::{Config, Settings};
use blobq::http::{extract, router, router::Api, App};
use blobq::store::Store;
use fuzz_support::*;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use proptest::prelude::*;
use tower::ServiceExt;

// ---------------------------------------------------------------------------
// Names

proptest! {
    #![proptest_config(config())]

    #[test]
    fn valid_names_are_accepted_unchanged(raw in valid_name()) {
        let name = Name::parse(&raw).expect("a valid name");
        prop_assert_eq!(name.as_str(), raw.as_str());
        let checked = extract::name("queue", &raw).expect("valid");
        prop_assert_eq!(checked.as_str(), raw.as_str());
    }

    #[test]
    fn any_string_is_a_name_exactly_when_the_contract_says_so(raw in nasty_string()) {
        let expected = !raw.is_empty()
            && raw.len() <= MAX_NAME_LEN
            && raw.chars().all(name_alphabet)
            && raw != "."
            && raw != "..";
        let parsed = Name::parse(&raw);
        prop_assert_eq!(parsed.is_ok(), expected, "{:?}: {:?}", raw, parsed);
        match extract::name("namespace", &raw) {
            Ok(n) => prop_assert_eq!(n.as_str(), raw.as_str()),
            Err(e) => prop_assert_eq!(bad_request::<()>(Err(e)), "invalid-name"),
        }
    }

    #[test]
    fn a_bad_character_anywhere_spoils_a_name(
        raw in valid_name(),
        at in any::<prop::sample::Index>(),
        bad in prop_oneof![
            Just('/'), Just('%'), Just(' '), Just('\0'), Just('\n'), Just('\u{7f}'),
            Just('é'), Just('\u{202e}'), Just(':'), Just('\\'),
        ],
    ) {
        let mut chars: Vec<char> = raw.chars().collect();
        let i = at.index(chars.len() + 1);
        chars.insert(i, bad);
        let spoiled: String = chars.into_iter().collect();
        prop_assert!(Name::parse(&spoiled).is_err(), "{:?}", spoiled);
    }

    #[test]
    fn over_long_names_are_refused(raw in "[0-9a-zA-Z._-]{64,300}") {
        prop_assert!(Name::parse(&raw).is_err());
    }

    #[test]
    fn dot_segments_and_percent_encoded_names_are_refused(
        raw in valid_name(),
        mask in prop::collection::vec(any::<bool>(), 1..8),
        bytes in prop::collection::vec(any::<u8>(), 1..40),
    ) {
        for dots in [".", "..", "%2e%2e", "%2E%2E", ".%2e", "..%2F..", "%2F"] {
            prop_assert!(Name::parse(dots).is_err(), "{:?}", dots);
        }
        // Paths are never percent-decoded: any encoded character (a slash,
        // a dot, a byte that is not UTF-8 once decoded) leaves a '%' behind.
        let encoded = percent_encode_some(&raw, &mask);
        prop_assert_eq!(Name::parse(&encoded).is_ok(), !encoded.contains('%'));
        prop_assert!(Name::parse(&percent_encode_all(&bytes)).is_err());
        let with_slash = format!("{raw}%2F{raw}");
        prop_assert!(Name::parse(&with_slash).is_err());
    }
}

// ---------------------------------------------------------------------------
// Paths, through the router

/// One server's router on a runtime of its own, for every case of one test.
/// Its store spills into a temporary directory, and the router, the store
/// and that directory go when it is dropped at the end of the test: a store
/// kept in a static for the whole binary would never be dropped, and every
/// run would leave its spill folder behind.
struct Routed {
    api: Api,
    store: Arc<Store>,
    runtime: tokio::runtime::Runtime,
    spill_root: tempfile::TempDir,
}

impl Routed {
    fn start() -> Routed {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let spill_root = tempfile::tempdir().expect("a spill directory");
        let config = Config::from_settings(Settings {
            spill_dir: Some(spill_root.path().to_owned()),
            ..Settings::default()
        })
        .expect("default settings");
        let (api, store) = runtime.block_on(async {
            let store = Arc::new(Store::new(config.store()).expect("a store"));
            let app = App::new(store.clone(), config.request_limits());
            (router(Arc::new(app)), store)
        });
        Routed {
            api,
            store,
            runtime,
            spill_root,
        }
    }

    /// Sends `method path` with a small body. `None` if `path` is no
    /// request target at all.
    fn send(&self, method: &Method, path: &str) -> Option<Answer> {
        // No query: a random `?timeout=` would make a pop wait.
        let target = path.replace('?', "%3F").replace('#', "%23");
        let request = Request::builder()
            .method(method.clone())
            .uri(target)
            .body(Body::from("payload"))
            .ok()?;
        let path = request.uri().path().to_owned();
        self.runtime.block_on(async {
            let response = self.api.clone().oneshot(request).await.expect("infallible");
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .expect("a body")
                .to_bytes();
            let doc: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let detail = doc["detail"].as_str().unwrap_or_default().to_owned();
            Some(Answer {
                status,
                detail,
                path,
            })
        })
    }
}

impl Drop for Routed {
    /// The server's shutdown: its elements dropped and its spill folder
    /// removed (the temporary directory goes after it).
    fn drop(&mut self) {
        self.store.purge();
    }
}

/// What the router answered a request.
struct Answer {
    status: StatusCode,
    /// The `detail` of a problem document.
    detail: String,
    /// The path of the request target, as the request carried it.
    path: String,
}

#[test]
fn the_routers_store_leaves_no_spill_folder() {
    let routed = Routed::start();
    let answer = routed
        .send(&Method::POST, "/qs/ns/q")
        .expect("a valid target");
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let root = routed.spill_root.path().to_owned();
    let folders = || std::fs::read_dir(&root).map(|d| d.count()).unwrap_or(0);
    assert_eq!(folders(), 1, "the store's spill folder, while it runs");
    drop(routed);
    assert!(!root.exists(), "{} is left behind", root.display());
}

/// The statuses a request with an unknown or hostile path may get.
fn contract_status(status: StatusCode) -> bool {
    [200, 201, 202, 204, 302, 400, 404, 405].contains(&status.as_u16())
}

fn method() -> impl Strategy<Value = Method> {
    prop::sample::select(vec![
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::PATCH,
        Method::OPTIONS,
    ])
}

// Each test starts its own server, shared by its cases and gone at its end.

#[test]
fn routes_built_from_valid_names_are_found() {
    let routed = Routed::start();
    proptest!(config(), |(ns in valid_name(), q in valid_name(), id in valid_name())| {
        // Only the routes with names in them: `/qs` lists every namespace
        // the cases before made, which would make the run quadratic, and
        // the fixed paths are the router tests' business.
        let paths = [
            (format!("/qs/{ns}"), Method::GET),
            (format!("/qs/{ns}/{q}"), Method::PUT),
            (format!("/qs/{ns}/{q}/stats"), Method::GET),
            (format!("/qs/{ns}/{q}/leases/{id}"), Method::DELETE),
            (format!("/qs/{ns}/{q}/leases/{id}/release"), Method::POST),
            (format!("/qs/{ns}/{q}/leases/{id}/extend"), Method::POST),
            (format!("/tbs/{ns}/blobs/{id}"), Method::DELETE),
        ];
        for (path, method) in paths {
            let a = routed.send(&method, &path).expect("a valid target");
            prop_assert!(!a.detail.starts_with("no route"), "{} {}: {}", method, path, a.detail);
            prop_assert!(a.status != StatusCode::METHOD_NOT_ALLOWED, "{} {}", method, path);
            // Only an extension without its `?lease=` is refused.
            let refused = a.status == StatusCode::BAD_REQUEST;
            prop_assert!(!refused || path.ends_with("/extend"), "{} {}: {}", method, path, a.detail);
        }
    });
}

#[test]
fn an_encoded_slash_or_dot_is_part_of_a_name_and_refused() {
    let routed = Routed::start();
    proptest!(config(), |(ns in valid_name(), a in valid_name(), b in valid_name())| {
        for q in [format!("{a}%2F{b}"), format!("%2e%2e%2f{b}")] {
            let path = format!("/qs/{ns}/{q}");
            let a = routed.send(&Method::GET, &path).expect("a valid target");
            prop_assert_eq!(a.status, StatusCode::BAD_REQUEST);
            let why = Name::parse(&q).expect_err("not a name");
            prop_assert_eq!(a.detail, format!("queue name {q:?} {why}"));
        }
    });
}

#[test]
fn any_path_answers_a_status_of_the_contract() {
    let routed = Routed::start();
    proptest!(config(), |(path in nasty_string(), method in method())| {
        for candidate in [path.clone(), format!("/{path}"), format!("/qs/{path}"), format!("/tbs/{path}")] {
            if let Some(a) = routed.send(&method, &candidate) {
                prop_assert!(contract_status(a.status), "{} {:?}: {}", method, candidate, a.status);
                if a.detail.starts_with("no route") {
                    prop_assert_eq!(a.status, StatusCode::NOT_FOUND);
                    prop_assert_eq!(a.detail, format!("no route for {}", a.path));
                }
            }
        }
    });
}

#[test]
fn any_request_target_bytes_answer_without_panicking() {
    let routed = Routed::start();
    proptest!(config(), |(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        prefix in prop_oneof![Just(&b"/qs/"[..]), Just(&b"/tbs/"[..]), Just(&b"/"[..]), Just(&b""[..])],
    )| {
        let mut target = prefix.to_vec();
        target.extend_from_slice(&bytes);
        if let Ok(uri) = http::Uri::try_from(&target[..]) {
            if let Some(a) = routed.send(&Method::DELETE, uri.path()) {
                prop_assert!(contract_status(a.status), "{:?}: {}", uri, a.status);
            }
            let l = default_limits();
            let _ = extract::PopQuery::parse(uri.query(), &l);
            let _ = extract::extend_query(uri.query(), &l);
            let _ = extract::no_query(uri.query());
            let _ = extract::delete_after_read(uri.query());
        }
    });
}

// ---------------------------------------------------------------------------
// Lease receipts and blob ids

proptest! {
    #![proptest_config(config())]

    #[test]
    fn receipts_and_blob_ids_round_trip(_seed in any::<u8>()) {
        let r = Receipt::random();
        prop_assert_eq!(r.to_string().parse::<Receipt>().ok(), Some(r));
        let b = BlobId::random();
        prop_assert_eq!(b.to_string().parse::<BlobId>().ok(), Some(b));
    }

    #[test]
    fn any_receipt_text_parses_or_errs_without_panicking(
        raw in prop_oneof![
            nasty_string(),
            "[0-9a-fA-F-]{30,40}",
            "\\{?(urn:uuid:)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\\}?",
        ],
    ) {
        if let Ok(r) = raw.parse::<Receipt>() {
            // Whatever form was accepted, the canonical one names the same lease.
            prop_assert_eq!(r.to_string().parse::<Receipt>().ok(), Some(r));
            prop_assert!(!raw.contains('/') && !raw.contains(".."));
        }
        if let Ok(b) = raw.parse::<BlobId>() {
            prop_assert_eq!(b.to_string().parse::<BlobId>().ok(), Some(b));
        }
    }
}
