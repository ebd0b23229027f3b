//! What the property tests of request parsing share: the case count, the
//! strategies that make hostile input, and the limits they run under.

#![allow(dead_code)] // each test binary uses a different part of it

use std::time::Duration;

use blobq::http::head_limit::HeadLimits;
use blobq::http::{ApiError, RequestLimits};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Cases per property, from `BLOBQ_FUZZ_CASES`.
pub fn cases() -> u32 {
    std::env::var("BLOBQ_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

pub fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // Shrinking is bounded too, so a failure in a long run is reported
        // in reasonable time.
        max_shrink_iters: 4096,
        // Next to the test file, as tests/fuzz_parsing.proptest-regressions.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

/// A valid name: 1 to 63 characters of the alphabet, never `.` or `..`.
pub fn valid_name() -> impl Strategy<Value = String> {
    "[0-9a-zA-Z._-]{1,63}".prop_filter("reserved", |s| s != "." && s != "..")
}

pub fn name_alphabet(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Strings biased towards the interesting: the alphabet, separators,
/// percent signs, control bytes and non-ASCII characters.
pub fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9a-zA-Z._/%\\-]{0,80}",
        "[.]{1,4}",
        "[0-9a-zA-Z._\\x00-\\x1f\\x7f /%é]{0,70}",
    ]
}

/// Numbers as a client might write them, valid or not: digits, decimals,
/// signs, exponents, huge values, junk.
pub fn number_text() -> impl Strategy<Value = String> {
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
pub fn max_seconds() -> impl Strategy<Value = u64> {
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

pub fn limits(max_lifetime: u64, max_timeout: u64, max_lease: u64) -> RequestLimits {
    RequestLimits {
        default_lifetime: 1.max(max_lifetime.min(3600)),
        max_lifetime,
        max_timeout: Duration::from_secs(max_timeout),
        max_lease: Duration::from_secs(max_lease),
        body_read_timeout: Duration::from_secs(30),
        max_custom_data: 64,
        max_page_size: 1000,
        head: HeadLimits::new(16 * 1024, 100),
    }
}

pub fn default_limits() -> RequestLimits {
    limits(86400, 300, 43200)
}

/// The problem type of a `400`, failing on any other outcome.
pub fn bad_request<T: std::fmt::Debug>(r: Result<T, ApiError>) -> &'static str {
    match r {
        Err(ApiError::BadRequest { problem, .. }) => problem,
        other => panic!("expected a 400, got {other:?}"),
    }
}

pub fn percent_encode_all(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// Percent-encodes the characters of `s` picked by `mask` (cycled), and
/// every `/`.
pub fn percent_encode_some(s: &str, mask: &[bool]) -> String {
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

pub fn header_map(pairs: &[(&'static str, Vec<u8>)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            h.append(HeaderName::from_static(name), v);
        }
    }
    h
}
