//! Reading what a request says: names, metadata headers and query
//! parameters, each turned into a validated value or a `400` that says what
//! is wrong.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

use super::error::ApiError;
use crate::backend::meta::{parse_content_type, CustomPair};
use crate::backend::name::{Name, NameError};
use crate::backend::{MetaInput, PushOptions};

// blobq's own headers, as `HeaderName`s made once: a name given as `&str`
// is parsed on every lookup, and copied into an allocation on every insert.
pub const LIFETIME: HeaderName = HeaderName::from_static("x-queueserver-lifetime");
pub const CONTENT_TYPE_OVERRIDE: HeaderName = HeaderName::from_static("x-queueserver-contenttype");
pub const CUSTOM_DATA: HeaderName = HeaderName::from_static("x-custom-data");
pub const BLOB_ID: HeaderName = HeaderName::from_static("x-blobstorage_id");
pub const ELEMENT_ID: HeaderName = HeaderName::from_static("x-queueserver-id");
pub const SIZE: HeaderName = HeaderName::from_static("x-queueserver-size");
pub const LEASE: HeaderName = HeaderName::from_static("x-queueserver-lease");
pub const DELIVERIES: HeaderName = HeaderName::from_static("x-queueserver-deliveries");

/// Limits the HTTP layer checks requests against.
#[derive(Clone, Debug)]
pub struct RequestLimits {
    pub default_lifetime: u64,
    pub max_lifetime: u64,
    pub max_timeout: Duration,
    pub max_lease: Duration,
    /// Longest a request body may go without sending a byte.
    pub body_read_timeout: Duration,
    pub max_custom_data: usize,
}

/// Validates a path segment as a namespace or queue name.
pub fn name(what: &str, raw: &str) -> Result<Name, ApiError> {
    Name::parse(raw).map_err(|e| invalid_name(what, raw, e))
}

#[cold]
#[inline(never)]
fn invalid_name(what: &str, raw: &str, e: NameError) -> ApiError {
    ApiError::bad_request("invalid-name", format!("{what} name {raw:?} {e}"))
}

/// Metadata and lifetime of a push or blob store.
#[derive(Debug)]
pub struct PushHeaders {
    pub meta: MetaInput,
    pub lifetime: u64,
}

/// The single value of header `name`, if present; a repeated header is refused
/// rather than one of its values silently picked.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::bad_request(
            "invalid-header",
            format!("header {name} is given more than once"),
        ));
    }
    first.to_str().map(Some).map_err(|_| {
        ApiError::bad_request(
            "invalid-header",
            format!("header {name} is not visible ASCII"),
        )
    })
}

/// `single` for a header met while walking the whole map: records the value
/// of `name` in `slot`, refusing a second one.
fn once<'h>(
    slot: &mut Option<&'h str>,
    name: &HeaderName,
    value: &'h HeaderValue,
) -> Result<(), ApiError> {
    if slot.is_some() {
        return Err(ApiError::bad_request(
            "invalid-header",
            format!("header {name} is given more than once"),
        ));
    }
    let text = value.to_str().map_err(|_| {
        ApiError::bad_request(
            "invalid-header",
            format!("header {name} is not visible ASCII"),
        )
    })?;
    *slot = Some(text);
    Ok(())
}

impl PushHeaders {
    /// Reads `X-QueueServer-Lifetime`, the content type (the override header,
    /// else `Content-Type`) and every `X-Custom-Data` pair, in one walk over
    /// the request's few headers rather than a hashed lookup for each name.
    pub fn parse(headers: &HeaderMap, limits: &RequestLimits) -> Result<PushHeaders, ApiError> {
        let (mut lifetime, mut overridden, mut plain) = (None, None, None);
        let mut custom = Vec::new();
        for (name, value) in headers {
            if name == http::header::CONTENT_TYPE {
                once(&mut plain, name, value)?;
            } else if name == LIFETIME {
                once(&mut lifetime, name, value)?;
            } else if name == CONTENT_TYPE_OVERRIDE {
                once(&mut overridden, name, value)?;
            } else if name == CUSTOM_DATA {
                custom.push(custom_pair(value, custom.len(), limits)?);
            }
        }
        let lifetime = match lifetime {
            None => limits.default_lifetime,
            Some(raw) => parse_lifetime(raw, limits.max_lifetime)?,
        };
        let content_type = overridden
            .or(plain)
            .map(|raw| {
                parse_content_type(raw)
                    .map_err(|e| ApiError::bad_request("invalid-content-type", e.to_string()))
            })
            .transpose()?;
        Ok(PushHeaders {
            meta: MetaInput {
                content_type,
                custom,
            },
            lifetime,
        })
    }

    /// The options a push or a stored blob passes to the backend.
    pub fn options(self) -> PushOptions {
        PushOptions {
            meta: self.meta,
            lifetime: self.lifetime,
        }
    }
}

/// One `X-Custom-Data` value, `before` pairs having been read already.
fn custom_pair(
    value: &HeaderValue,
    before: usize,
    limits: &RequestLimits,
) -> Result<CustomPair, ApiError> {
    if before == limits.max_custom_data {
        return Err(ApiError::bad_request(
            "invalid-custom-data",
            format!(
                "at most {} X-Custom-Data pairs are allowed",
                limits.max_custom_data
            ),
        ));
    }
    let raw = value.to_str().map_err(|_| {
        ApiError::bad_request(
            "invalid-custom-data",
            "X-Custom-Data must be visible ASCII characters or spaces",
        )
    })?;
    CustomPair::parse(raw).map_err(|e| ApiError::bad_request("invalid-custom-data", e.to_string()))
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_lifetime(raw: &str, max: u64) -> Result<u64, ApiError> {
    let bad = |why: String| ApiError::bad_request("invalid-lifetime", why);
    let secs: u64 = Some(raw)
        .filter(|r| is_digits(r))
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| {
            bad(format!(
                "X-QueueServer-Lifetime {raw:?} is not a positive whole number of seconds"
            ))
        })?;
    if secs == 0 {
        return Err(bad(
            "X-QueueServer-Lifetime must be at least 1 second".into()
        ));
    }
    if secs > max {
        return Err(bad(format!(
            "X-QueueServer-Lifetime {secs} is above the maximum of {max} seconds"
        )));
    }
    Ok(secs)
}

/// The `X-BlobStorage_Id` of a reference push, if any.
pub fn blob_reference(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    single(headers, &BLOB_ID)
}

/// A request's query pairs, inline up to four.
type QueryPairs<'a> = SmallVec<[(&'a str, &'a str); 4]>;

/// Query parameters as `(key, value)` pairs. Our values are numbers and flags,
/// so nothing is percent-decoded: an encoded value is simply not valid. A
/// parameter given twice is refused, as a repeated header is. Up to four
/// pairs (a pop's three, one spare) are kept without an allocation.
fn query_pairs(query: Option<&str>) -> Result<QueryPairs<'_>, ApiError> {
    let mut pairs = QueryPairs::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if pairs.iter().any(|(k, _)| *k == key) {
            return Err(ApiError::bad_request(
                "invalid-query",
                format!("query parameter {key:?} is given more than once"),
            ));
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

fn flag(key: &str, raw: &str) -> Result<bool, ApiError> {
    match raw {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(ApiError::bad_request(
            "invalid-query",
            format!("{key}={raw:?} must be 1, true, 0 or false"),
        )),
    }
}

fn unknown_parameter(key: &str, allowed: &str) -> ApiError {
    ApiError::bad_request(
        "invalid-query",
        format!("unknown query parameter {key:?}; allowed: {allowed}"),
    )
}

/// Seconds written as a plain decimal (`5`, `0.5`), at most `max`.
fn seconds(
    problem: &'static str,
    key: &str,
    raw: &str,
    max: Duration,
) -> Result<Duration, ApiError> {
    let well_formed = match raw.split_once('.') {
        Some((int, frac)) => is_digits(int) && is_digits(frac),
        None => is_digits(raw),
    };
    let secs: f64 = raw
        .parse()
        .ok()
        .filter(|s: &f64| well_formed && s.is_finite())
        .ok_or_else(|| {
            ApiError::bad_request(
                problem,
                format!("{key}={raw:?} is not a number of seconds (like 5 or 0.5)"),
            )
        })?;
    // Compared as durations, not floats: a value too large for a `Duration`
    // (possible under an absurd --max-timeout or --max-lease) is refused
    // instead of panicking, and float rounding cannot carry a value past the
    // maximum.
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if d <= max => Ok(d),
        _ => Err(ApiError::bad_request(
            problem,
            format!(
                "{key}={raw} is above the maximum of {} seconds",
                max.as_secs_f64()
            ),
        )),
    }
}

/// A lease length: at least a millisecond, at most `max`.
fn lease_length(raw: &str, max: Duration) -> Result<Duration, ApiError> {
    let lease = seconds("invalid-lease", "lease", raw, max)?;
    if lease.as_millis() == 0 {
        return Err(ApiError::bad_request(
            "invalid-lease",
            "lease must be longer than 0 seconds",
        ));
    }
    Ok(lease)
}

/// `?timeout=S&header_only=1&lease=S` of a pop.
#[derive(Debug, PartialEq)]
pub struct PopQuery {
    pub timeout: Duration,
    pub header_only: bool,
    /// Pop under a lease of this length instead of removing the element.
    pub lease: Option<Duration>,
}

impl PopQuery {
    pub fn parse(query: Option<&str>, limits: &RequestLimits) -> Result<PopQuery, ApiError> {
        let mut out = PopQuery {
            timeout: Duration::ZERO,
            header_only: false,
            lease: None,
        };
        for (key, raw) in query_pairs(query)? {
            match key {
                "timeout" => {
                    out.timeout = seconds("invalid-timeout", key, raw, limits.max_timeout)?
                }
                "header_only" => out.header_only = flag(key, raw)?,
                "lease" => out.lease = Some(lease_length(raw, limits.max_lease)?),
                _ => return Err(unknown_parameter(key, "timeout, header_only, lease")),
            }
        }
        Ok(out)
    }
}

/// `?lease=S` of a lease extension: required.
pub fn extend_query(query: Option<&str>, limits: &RequestLimits) -> Result<Duration, ApiError> {
    let mut lease = None;
    for (key, raw) in query_pairs(query)? {
        match key {
            "lease" => lease = Some(lease_length(raw, limits.max_lease)?),
            _ => return Err(unknown_parameter(key, "lease")),
        }
    }
    lease.ok_or_else(|| {
        ApiError::bad_request(
            "invalid-lease",
            "extend needs ?lease=S, the new lease length in seconds",
        )
    })
}

/// Refuses any query parameter, where none is expected.
pub fn no_query(query: Option<&str>) -> Result<(), ApiError> {
    match query_pairs(query)?.first() {
        Some((key, _)) => Err(unknown_parameter(key, "none")),
        None => Ok(()),
    }
}

/// `?delete=1` of a blob read.
pub fn delete_after_read(query: Option<&str>) -> Result<bool, ApiError> {
    let mut delete = false;
    for (key, raw) in query_pairs(query)? {
        match key {
            "delete" => delete = flag(key, raw)?,
            _ => return Err(unknown_parameter(key, "delete")),
        }
    }
    Ok(delete)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RequestLimits {
        RequestLimits {
            default_lifetime: 3600,
            max_lifetime: 86400,
            max_timeout: Duration::from_secs(300),
            max_lease: Duration::from_secs(600),
            body_read_timeout: Duration::from_secs(30),
            max_custom_data: 3,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            let name = http::HeaderName::from_bytes(k.as_bytes()).unwrap();
            h.append(name, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn problem(r: Result<impl std::fmt::Debug, ApiError>) -> &'static str {
        match r {
            Err(ApiError::BadRequest { problem, .. }) => problem,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    fn lifetime(raw: &str) -> Result<u64, ApiError> {
        PushHeaders::parse(&headers(&[(LIFETIME.as_str(), raw)]), &limits()).map(|p| p.lifetime)
    }

    fn content_type(h: &[(&str, &str)]) -> Option<String> {
        let parsed = PushHeaders::parse(&headers(h), &limits()).unwrap();
        parsed.meta.content_type.map(String::from)
    }

    #[test]
    fn lifetimes_default_and_are_bounded() {
        let default = PushHeaders::parse(&headers(&[]), &limits()).unwrap();
        assert_eq!(default.lifetime, 3600);
        assert_eq!(lifetime("86400").unwrap(), 86400);
        let bad = [
            "0",
            "-1",
            "+5",
            " 5",
            "1.5",
            "1e3",
            "abc",
            "",
            "86401",
            "99999999999999999999",
        ];
        for raw in bad {
            assert_eq!(problem(lifetime(raw)), "invalid-lifetime", "{raw:?}");
        }
        let twice = headers(&[(LIFETIME.as_str(), "1"), (LIFETIME.as_str(), "2")]);
        assert_eq!(
            problem(PushHeaders::parse(&twice, &limits())),
            "invalid-header"
        );
    }

    #[test]
    fn a_header_read_once_is_refused_twice_and_custom_data_repeats() {
        for name in [
            "content-type",
            "x-queueserver-contenttype",
            "x-queueserver-lifetime",
        ] {
            let twice = headers(&[(name, "1"), ("x-custom-data", "a=b"), (name, "1")]);
            assert_eq!(
                problem(PushHeaders::parse(&twice, &limits())),
                "invalid-header",
                "{name}"
            );
        }
        let repeated = headers(&[
            ("x-custom-data", "a=1"),
            ("content-type", "text/plain"),
            ("x-custom-data", "b=2"),
        ]);
        let parsed = PushHeaders::parse(&repeated, &limits()).unwrap();
        let keys: Vec<&str> = parsed.meta.custom.iter().map(|p| &*p.key).collect();
        assert_eq!(keys, ["a", "b"]);
    }

    #[test]
    fn the_override_content_type_wins_over_content_type() {
        let both = [
            ("x-queueserver-contenttype", "image/png"),
            ("content-type", "text/plain"),
        ];
        assert_eq!(content_type(&both).as_deref(), Some("image/png"));
        assert_eq!(
            content_type(&[("content-type", "text/plain")]).as_deref(),
            Some("text/plain")
        );
        assert_eq!(content_type(&[]), None);
        let bad = headers(&[(CONTENT_TYPE_OVERRIDE.as_str(), "nonsense")]);
        assert_eq!(
            problem(PushHeaders::parse(&bad, &limits())),
            "invalid-content-type"
        );
    }

    #[test]
    fn custom_data_keeps_order_and_is_capped() {
        let l = limits();
        let h = headers(&[
            (CUSTOM_DATA.as_str(), "b=2"),
            (CUSTOM_DATA.as_str(), "a=1"),
            (CUSTOM_DATA.as_str(), "b=3"),
        ]);
        let custom = PushHeaders::parse(&h, &l).unwrap().meta.custom;
        let got: Vec<_> = custom
            .iter()
            .map(|p| format!("{}={}", p.key, p.value))
            .collect();
        assert_eq!(got, ["b=2", "a=1", "b=3"]);
        let h = headers(&[(CUSTOM_DATA.as_str(), "a=1"); 4]);
        assert_eq!(problem(PushHeaders::parse(&h, &l)), "invalid-custom-data");
        let h = headers(&[(CUSTOM_DATA.as_str(), "x")]);
        assert_eq!(problem(PushHeaders::parse(&h, &l)), "invalid-custom-data");
    }

    #[test]
    fn a_pops_query_is_split_without_an_allocation_and_repeats_are_refused() {
        let pairs = query_pairs(Some("timeout=5&header_only=1&lease=30")).unwrap();
        assert_eq!(
            pairs.as_slice(),
            [("timeout", "5"), ("header_only", "1"), ("lease", "30")]
        );
        assert!(!pairs.spilled(), "held inline");
        let many = query_pairs(Some("a=1&b=2&c=3&d=4&e=5&&f")).unwrap();
        assert_eq!(many.len(), 6);
        assert_eq!(many[5], ("f", ""));
        assert!(query_pairs(Some("a=1&b=2&c=3&d=4&e=5&a=6")).is_err());
    }

    #[test]
    fn pop_queries_parse_and_refuse_nonsense() {
        let l = limits();
        let parse = |q: &str| PopQuery::parse(Some(q), &l);
        let none = PopQuery {
            timeout: Duration::ZERO,
            header_only: false,
            lease: None,
        };
        assert_eq!(PopQuery::parse(None, &l).unwrap(), none);
        let q = parse("timeout=0.25&header_only=1").unwrap();
        assert_eq!(
            (q.timeout, q.header_only),
            (Duration::from_millis(250), true)
        );
        assert_eq!(
            parse("timeout=300").unwrap().timeout,
            Duration::from_secs(300)
        );
        let bad_timeouts = [
            "-1", "abc", "NaN", "inf", "300.5", "", "%31", "1e1", ".5", "5.", "-0", "+1",
        ];
        for raw in bad_timeouts {
            let q = format!("timeout={raw}");
            assert_eq!(problem(parse(&q)), "invalid-timeout", "{q}");
        }
        assert_eq!(problem(parse("header_only=yes")), "invalid-query");
        assert_eq!(problem(parse("timout=5")), "invalid-query");
        assert_eq!(problem(parse("timeout=1&timeout=2")), "invalid-query");
        assert!(delete_after_read(Some("delete=1")).unwrap());
        assert_eq!(
            problem(delete_after_read(Some("remove=1"))),
            "invalid-query"
        );
    }

    #[test]
    fn seconds_beyond_any_duration_are_refused_not_a_panic() {
        // Found by tests/fuzz_parsing.rs: under a maximum near u64::MAX
        // seconds, `Duration::from_secs_f64` panicked on values that round
        // to 2^64 seconds.
        let mut l = limits();
        l.max_timeout = Duration::from_secs(u64::MAX);
        l.max_lease = Duration::from_secs(u64::MAX);
        for raw in ["18446744073709551615", "18446744073709551615.5", "1e20"] {
            let q = format!("timeout={raw}");
            assert_eq!(
                problem(PopQuery::parse(Some(&q), &l)),
                "invalid-timeout",
                "{q}"
            );
            let q = format!("lease={raw}");
            assert_eq!(problem(extend_query(Some(&q), &l)), "invalid-lease", "{q}");
        }
        let big = PopQuery::parse(Some("timeout=18446744073709549568"), &l).unwrap();
        assert!(big.timeout <= l.max_timeout);
        // Rounding may not carry a value past a maximum that floats cannot hold.
        l.max_timeout = Duration::from_secs((1 << 53) + 3);
        let q = format!("timeout={}", (1u64 << 53) + 3);
        if let Ok(q) = PopQuery::parse(Some(&q), &l) {
            assert!(q.timeout <= l.max_timeout);
        }
    }

    #[test]
    fn leases_are_positive_and_bounded() {
        let l = limits();
        let q = PopQuery::parse(Some("lease=30&header_only=true"), &l).unwrap();
        assert_eq!(
            (q.lease, q.header_only),
            (Some(Duration::from_secs(30)), true)
        );
        for bad in ["lease=0", "lease=0.0001", "lease=601", "lease=x", "lease="] {
            assert_eq!(
                problem(PopQuery::parse(Some(bad), &l)),
                "invalid-lease",
                "{bad}"
            );
        }
        assert_eq!(
            extend_query(Some("lease=2.5"), &l).unwrap(),
            Duration::from_millis(2500)
        );
        assert_eq!(problem(extend_query(None, &l)), "invalid-lease");
        assert!(no_query(None).is_ok());
        assert_eq!(problem(no_query(Some("x=1"))), "invalid-query");
    }
}
