//! Property tests over the headers and query strings of a request:
//! `X-Custom-Data`, content types, lifetimes, timeouts and leases.
//!
//! For every parser: no input panics; valid inputs are accepted and come back
//! unchanged; invalid ones are refused with an error; numbers are either
//! within the configured maximum or refused, whatever the maximum.
//!
//! Cases per property: `BLOBQ_FUZZ_CASES` (default 256, so `make test` stays
//! fast; `make fuzz` runs many more).

mod fuzz_support;

use std::time::Duration;

use blobq::backend::meta::{
    parse_content_type, CustomPair, MAX_CONTENT_TYPE_LEN, MAX_CUSTOM_KEY_LEN, MAX_CUSTOM_VALUE_LEN,
};
use blobq::http::extract::{delete_after_read, extend_query, no_query, PopQuery, PushHeaders};
use blobq::http::headers::LIFETIME;
use blobq::http::ApiError;
use fuzz_support::*;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

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
