//! Property tests over the request parsing and validation layer: names,
//! percent-encoded paths, the route table, `X-Custom-Data`, content types,
//! lifetimes, timeouts, leases and lease receipts.
//!
//! For every parser: no input panics; valid inputs are accepted and come back
//! unchanged; invalid ones are refused with an error; numbers are either
//! within the configured maximum or refused, whatever the maximum.
//!
//! Cases per property: `BLOBQ_FUZZ_CASES` (default 256, so `make test` stays
//! fast; `make fuzz` runs many more in release mode).

use std::time::Duration;

use blobq::backend::ids::{BlobId, Receipt};
use blobq::backend::meta::{
    parse_content_type, CustomPair, MAX_CONTENT_TYPE_LEN, MAX_CUSTOM_KEY_LEN, MAX_CUSTOM_VALUE_LEN,
};
use blobq::backend::name::{Name, MAX_NAME_LEN};
use blobq::http::request::{
    self, delete_after_read, extend_query, no_query, PopQuery, PushHeaders, RequestLimits, LIFETIME,
};
use blobq::http::route::Route;
use blobq::http::ApiError;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Cases per property, from `BLOBQ_FUZZ_CASES`.
fn cases() -> u32 {
    std::env::var("BLOBQ_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // Shrinking is bounded too, so a failure in a long run is reported
        // in reasonable time.
        max_shrink_iters: 4096,
        // Next to this file, as tests/fuzz_parsing.proptest-regressions.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Strategies

/// A valid name: 1 to 63 characters of the alphabet, never `.` or `..`.
fn valid_name() -> impl Strategy<Value = String> {
    "[0-9a-zA-Z._-]{1,63}".prop_filter("reserved", |s| s != "." && s != "..")
}

fn name_alphabet(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Strings biased towards the interesting: the alphabet, separators,
/// percent signs, control bytes and non-ASCII characters.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9a-zA-Z._/%\\-]{0,80}",
        "[.]{1,4}",
        "[0-9a-zA-Z._\\x00-\\x1f\\x7f /%é]{0,70}",
    ]
}

/// Numbers as a client might write them, valid or not: digits, decimals,
/// signs, exponents, huge values, junk.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<u32>().prop_map(|n| n.to_string()),
        (0u64..100_000).prop_map(|n| n.to_string()),
        (any::<u64>(), "[0-9]{1,12}").prop_map(|(n, f)| format!("{n}.{f}")),
        (0u32..1000, "[0-9]{1,30}").prop_map(|(n, f)| format!("{n}.{f}")),
        any::<f64>().prop_map(|f| f.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[0-9]{20,400}",
        "[-+]?[0-9]{0,25}(\\.[0-9]{0,25})?([eE][-+]?[0-9]{1,4})?",
        "(nan|NaN|inf|-inf|infinity|0x1f|1_000| 5|5 |5\\.|\\.5|-0|)",
        any::<String>(),
    ]
}

/// A configured maximum of seconds, from tiny to absurd.
fn max_seconds() -> impl Strategy<Value = u64> {
    prop_oneof![
        1u64..1000,
        Just(300),
        Just(43200),
        Just(86400),
        any::<u64>().prop_map(|n| n.max(1)),
        Just(u64::MAX),
        Just(u64::MAX / 1000),
        Just(1 << 53),
        Just((1 << 53) + 3),
    ]
}

fn limits(max_lifetime: u64, max_timeout: u64, max_lease: u64) -> RequestLimits {
    RequestLimits {
        default_lifetime: 1.max(max_lifetime.min(3600)),
        max_lifetime,
        max_timeout: Duration::from_secs(max_timeout),
        max_lease: Duration::from_secs(max_lease),
        body_read_timeout: Duration::from_secs(30),
        max_custom_data: 64,
    }
}

fn default_limits() -> RequestLimits {
    limits(86400, 300, 43200)
}

/// The problem type of a `400`, failing on any other outcome.
fn bad_request<T: std::fmt::Debug>(r: Result<T, ApiError>) -> &'static str {
    match r {
        Err(ApiError::BadRequest { problem, .. }) => problem,
        other => panic!("expected a 400, got {other:?}"),
    }
}

fn percent_encode_all(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// Percent-encodes the characters of `s` picked by `mask` (cycled), and
/// every `/`.
fn percent_encode_some(s: &str, mask: &[bool]) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c == '/' || mask.get(i % mask.len().max(1)).copied().unwrap_or(false) {
            let mut buf = [0u8; 4];
            out.push_str(&percent_encode_all(c.encode_utf8(&mut buf).as_bytes()));
        } else {
            out.push(c);
        }
    }
    out
}

fn header_map(pairs: &[(&'static str, Vec<u8>)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            h.append(HeaderName::from_static(name), v);
        }
    }
    h
}

// ---------------------------------------------------------------------------
// Names and paths

proptest! {
    #![proptest_config(config())]

    #[test]
    fn valid_names_are_accepted_unchanged(raw in valid_name()) {
        let name = Name::parse(&raw).expect("a valid name");
        prop_assert_eq!(name.as_str(), raw.as_str());
        let checked = request::name("queue", &raw).expect("valid");
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
        match request::name("namespace", &raw) {
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

    #[test]
    fn routes_built_from_valid_names_parse_back(
        ns in valid_name(),
        q in valid_name(),
        id in valid_name(),
    ) {
        let expect = [
            ("/qs".to_owned(), Route::ServerStats),
            (format!("/qs/{ns}"), Route::NamespaceStats(&ns)),
            (format!("/qs/{ns}/{q}"), Route::Queue(&ns, &q)),
            (format!("/qs/{ns}/{q}/stats"), Route::QueueStats(&ns, &q)),
            (format!("/qs/{ns}/{q}/leases/{id}"), Route::Lease(&ns, &q, &id)),
            (format!("/qs/{ns}/{q}/leases/{id}/release"), Route::LeaseRelease(&ns, &q, &id)),
            (format!("/qs/{ns}/{q}/leases/{id}/extend"), Route::LeaseExtend(&ns, &q, &id)),
            (format!("/tbs/{ns}/blobs"), Route::Blobs(&ns)),
            (format!("/tbs/{ns}/blobs/{id}"), Route::Blob(&ns, &id)),
            ("/healthz".to_owned(), Route::Health),
            ("/metrics".to_owned(), Route::Metrics),
        ];
        for (path, route) in expect {
            prop_assert_eq!(Route::parse(&path), Some(route), "{}", path);
            // The path is also a valid request target that http keeps as is.
            let uri: http::Uri = path.parse().expect("a valid URI");
            prop_assert_eq!(uri.path(), path.as_str());
        }
    }

    #[test]
    fn an_encoded_slash_never_splits_a_segment(
        ns in valid_name(),
        a in valid_name(),
        b in valid_name(),
    ) {
        let q = format!("{a}%2F{b}");
        let path = format!("/qs/{ns}/{q}");
        prop_assert_eq!(Route::parse(&path), Some(Route::Queue(&ns, &q)));
        prop_assert!(Name::parse(&q).is_err());
        let escape = format!("/qs/{ns}/%2e%2e%2f{b}");
        match Route::parse(&escape) {
            Some(Route::Queue(n, q)) => {
                prop_assert_eq!(n, ns.as_str());
                prop_assert!(Name::parse(q).is_err());
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn any_path_parses_without_panicking(path in nasty_string(), method in "[A-Z]{1,10}") {
        for candidate in [path.clone(), format!("/{path}"), format!("/qs/{path}"), format!("/tbs/{path}")] {
            if let Some(route) = Route::parse(&candidate) {
                prop_assert!(candidate.starts_with('/'));
                prop_assert!(route.template().starts_with('/'));
                let method = Method::from_bytes(method.as_bytes()).expect("a token");
                let listed = route.allow().split(", ").any(|m| m == method.as_str());
                prop_assert_eq!(route.allows(&method), listed);
                // Every name the route carries is validated without panicking.
                match route {
                    Route::NamespaceStats(ns) | Route::Blobs(ns) | Route::Blob(ns, _) => {
                        let _ = request::name("namespace", ns);
                    }
                    Route::Queue(ns, q)
                    | Route::QueueStats(ns, q)
                    | Route::Lease(ns, q, _)
                    | Route::LeaseRelease(ns, q, _)
                    | Route::LeaseExtend(ns, q, _) => {
                        let _ = request::name("namespace", ns);
                        let _ = request::name("queue", q);
                    }
                    Route::ServerStats | Route::Health | Route::Metrics => {}
                }
            }
        }
    }

    #[test]
    fn any_request_target_bytes_parse_without_panicking(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        prefix in prop_oneof![Just(&b"/qs/"[..]), Just(&b"/tbs/"[..]), Just(&b"/"[..]), Just(&b""[..])],
    ) {
        let mut target = prefix.to_vec();
        target.extend_from_slice(&bytes);
        if let Ok(uri) = http::Uri::try_from(&target[..]) {
            if let Some(route) = Route::parse(uri.path()) {
                let _ = route.template();
            }
            let l = default_limits();
            let _ = PopQuery::parse(uri.query(), &l);
            let _ = extend_query(uri.query(), &l);
            let _ = no_query(uri.query());
            let _ = delete_after_read(uri.query());
        }
    }
}

// ---------------------------------------------------------------------------
// Metadata: X-Custom-Data and content types

/// The contract's rule for one `X-Custom-Data` value.
fn custom_pair_is_valid(raw: &str) -> bool {
    let Some((key, value)) = raw.split_once('=') else {
        return false;
    };
    !key.is_empty()
        && key.len() <= MAX_CUSTOM_KEY_LEN
        && key.chars().all(name_alphabet)
        && value.len() <= MAX_CUSTOM_VALUE_LEN
        && value.chars().all(|c| (' '..='~').contains(&c))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn valid_custom_pairs_round_trip(
        key in "[0-9a-zA-Z_.-]{1,64}",
        value in "[ -~]{0,1024}",
    ) {
        let pair = CustomPair::parse(&format!("{key}={value}")).expect("a valid pair");
        prop_assert_eq!(&*pair.key, key.as_str());
        prop_assert_eq!(&*pair.value, value.as_str());
    }

    #[test]
    fn any_custom_pair_is_accepted_exactly_when_valid(
        raw in prop_oneof![
            nasty_string(),
            "[0-9a-zA-Z_. =\\x00-\\x1f\\x7fé-]{0,90}",
            ("[0-9a-zA-Z_.-]{60,70}", "[ -~]{1020,1030}").prop_map(|(k, v)| format!("{k}={v}")),
        ],
    ) {
        let parsed = CustomPair::parse(&raw);
        prop_assert_eq!(parsed.is_ok(), custom_pair_is_valid(&raw), "{:?}: {:?}", raw, parsed);
        if let Ok(pair) = parsed {
            prop_assert_eq!(format!("{}={}", pair.key, pair.value), raw);
        }
    }

    #[test]
    fn content_types_are_type_slash_subtype_and_kept_verbatim(
        ty in "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,40}",
        sub in "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,40}",
        params in prop::option::of("[ -~]{0,60}"),
    ) {
        let raw = match &params {
            Some(p) => format!("{ty}/{sub}; {p}"),
            None => format!("{ty}/{sub}"),
        };
        let parsed = parse_content_type(&raw);
        prop_assert!(parsed.is_ok(), "{:?}", raw);
        prop_assert_eq!(&*parsed.expect("checked"), raw.as_str());
    }

    #[test]
    fn any_content_type_parses_or_errs_without_panicking(raw in nasty_string(), long in 256usize..600) {
        if let Ok(ct) = parse_content_type(&raw) {
            prop_assert_eq!(&*ct, raw.as_str());
            prop_assert!(raw.len() <= MAX_CONTENT_TYPE_LEN);
            prop_assert!(raw.contains('/'));
            // What is stored is sent back as a header: it must be one.
            prop_assert!(HeaderValue::from_str(&ct).is_ok(), "{:?}", ct);
            prop_assert!(raw.bytes().all(|b| (0x20..0x7f).contains(&b)));
        }
        let too_long = format!("a/{}", "b".repeat(long));
        prop_assert!(parse_content_type(&too_long).is_err());
    }

    #[test]
    fn push_headers_never_panic_and_keep_only_valid_metadata(
        headers in prop::collection::vec(
            (
                prop::sample::select(vec![
                    "x-queueserver-lifetime", "x-queueserver-contenttype", "x-custom-data",
                    "content-type", "x-other",
                ]),
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..80),
                    number_text().prop_map(String::into_bytes),
                    "[a-z]{1,8}=[ -~]{0,20}".prop_map(String::into_bytes),
                    "[a-z]{1,8}/[a-z]{1,8}".prop_map(String::into_bytes),
                ],
            ),
            0..12,
        ),
        max_lifetime in max_seconds(),
        max_custom_data in 0usize..8,
    ) {
        let mut l = limits(max_lifetime, 300, 43200);
        l.max_custom_data = max_custom_data;
        let map = header_map(&headers);
        if let Ok(push) = PushHeaders::parse(&map, &l) {
            prop_assert!((1..=max_lifetime).contains(&push.lifetime));
            prop_assert!(push.meta.custom.len() <= max_custom_data);
            for pair in &push.meta.custom {
                let text = format!("{}={}", pair.key, pair.value);
                prop_assert!(custom_pair_is_valid(&text), "{:?}", text);
            }
            if let Some(ct) = &push.meta.content_type {
                prop_assert!(parse_content_type(ct).is_ok());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Numbers: lifetimes, timeouts, leases

/// `X-QueueServer-Lifetime: raw` under `max`.
fn lifetime(raw: &str, max: u64) -> Option<Result<u64, ApiError>> {
    let value = HeaderValue::from_str(raw).ok()?;
    let mut h = HeaderMap::new();
    h.insert(LIFETIME, value);
    Some(PushHeaders::parse(&h, &limits(max, 300, 43200)).map(|p| p.lifetime))
}

/// Whether `raw` is a plain decimal: digits, optionally `.` and digits.
fn plain_decimal(raw: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match raw.split_once('.') {
        Some((int, frac)) => digits(int) && digits(frac),
        None => digits(raw),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn lifetimes_are_within_the_maximum_or_refused(raw in number_text(), max in max_seconds()) {
        let Some(result) = lifetime(&raw, max) else {
            return Ok(()); // not a header value at all: hyper never passes it on
        };
        match result {
            Ok(secs) => {
                prop_assert!((1..=max).contains(&secs), "{:?} under {}: {}", raw, max, secs);
                prop_assert!(raw.bytes().all(|b| b.is_ascii_digit()));
                prop_assert_eq!(raw.parse::<u64>().ok(), Some(secs));
            }
            Err(e) => {
                let problem = bad_request::<()>(Err(e));
                prop_assert!(problem == "invalid-lifetime" || problem == "invalid-header");
            }
        }
    }

    #[test]
    fn every_lifetime_up_to_the_maximum_is_accepted(max in max_seconds(), pick in any::<u64>()) {
        let secs = 1 + pick % max;
        prop_assert_eq!(lifetime(&secs.to_string(), max).expect("a header").ok(), Some(secs));
        if max < u64::MAX {
            let above = (max + 1).to_string();
            prop_assert_eq!(bad_request(lifetime(&above, max).expect("a header")), "invalid-lifetime");
        }
    }

    #[test]
    fn timeouts_are_within_the_maximum_or_refused(raw in number_text(), max in max_seconds()) {
        // One parameter: a '&' would start another.
        let raw = raw.replace('&', "");
        let l = limits(86400, max, 43200);
        match PopQuery::parse(Some(&format!("timeout={raw}")), &l) {
            Ok(q) => {
                prop_assert!(q.timeout <= l.max_timeout, "{:?} under {}: {:?}", raw, max, q.timeout);
                prop_assert!(plain_decimal(&raw), "{:?} accepted", raw);
                prop_assert_eq!(q.lease, None);
            }
            Err(e) => prop_assert_eq!(bad_request::<()>(Err(e)), "invalid-timeout"),
        }
    }

    #[test]
    fn leases_are_within_the_maximum_or_refused(raw in number_text(), max in max_seconds()) {
        // One parameter: a '&' would start another.
        let raw = raw.replace('&', "");
        let l = limits(86400, 300, max);
        let pop = PopQuery::parse(Some(&format!("lease={raw}")), &l).map(|q| q.lease);
        let extend = extend_query(Some(&format!("lease={raw}")), &l);
        match (pop, extend) {
            (Ok(Some(a)), Ok(b)) => {
                prop_assert_eq!(a, b);
                prop_assert!(a <= l.max_lease, "{:?} under {}: {:?}", raw, max, a);
                prop_assert!(a >= Duration::from_millis(1));
                prop_assert!(plain_decimal(&raw));
            }
            (Err(a), Err(b)) => {
                prop_assert_eq!(bad_request::<()>(Err(a)), "invalid-lease");
                prop_assert_eq!(bad_request::<()>(Err(b)), "invalid-lease");
            }
            (pop, extend) => prop_assert!(false, "pop {:?} and extend {:?} disagree", pop, extend),
        }
    }

    #[test]
    fn numbers_at_the_edge_of_the_maximum_are_within_it_or_refused(
        max in max_seconds(),
        below in 0u64..4096,
        frac in "[0-9]{1,20}",
    ) {
        let l = limits(max, max, max);
        let edge = [
            max.to_string(),
            max.saturating_sub(below).to_string(),
            (u128::from(max) + u128::from(below) + 1).to_string(),
            format!("{max}.{frac}"),
            format!("{}.{frac}", max.saturating_sub(below)),
            format!("{}", max as f64),
        ];
        for raw in edge {
            for key in ["timeout", "lease"] {
                match PopQuery::parse(Some(&format!("{key}={raw}")), &l) {
                    Ok(q) => {
                        prop_assert!(q.timeout <= l.max_timeout, "{}={} under {}", key, raw, max);
                        prop_assert!(q.lease.is_none_or(|d| d <= l.max_lease), "{}={} under {}", key, raw, max);
                    }
                    Err(e) => {
                        let _ = bad_request::<()>(Err(e));
                    }
                }
            }
            if let Some(Ok(secs)) = lifetime(&raw, max) {
                prop_assert!(secs <= max);
            }
        }
    }

    #[test]
    fn plain_decimals_up_to_the_maximum_are_accepted(
        max in 1u64..10_000_000,
        pick in any::<u64>(),
        frac in "[0-9]{1,9}",
    ) {
        let whole = pick % max;
        let raw = format!("{whole}.{frac}");
        let l = limits(86400, max, max);
        let q = PopQuery::parse(Some(&format!("timeout={raw}")), &l).expect("within the maximum");
        let expected: f64 = raw.parse().expect("a decimal");
        prop_assert!((q.timeout.as_secs_f64() - expected).abs() < 1e-6);
        let above = format!("timeout={}.{frac}", max + 1);
        prop_assert_eq!(bad_request(PopQuery::parse(Some(&above), &l)), "invalid-timeout");
    }

    #[test]
    fn any_query_string_parses_or_errs_without_panicking(
        query in prop_oneof![
            nasty_string(),
            prop::collection::vec(
                (
                    prop::sample::select(vec!["timeout", "lease", "header_only", "delete", "x", ""]),
                    number_text(),
                ),
                0..5,
            )
            .prop_map(|pairs| pairs
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")),
        ],
        max in max_seconds(),
    ) {
        let l = limits(86400, max, max);
        if let Ok(q) = PopQuery::parse(Some(&query), &l) {
            prop_assert!(q.timeout <= l.max_timeout);
            prop_assert!(q.lease.is_none_or(|d| d <= l.max_lease && !d.is_zero()));
        }
        if let Ok(d) = extend_query(Some(&query), &l) {
            prop_assert!(d <= l.max_lease && !d.is_zero());
        }
        let _ = no_query(Some(&query));
        let _ = delete_after_read(Some(&query));
    }
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
