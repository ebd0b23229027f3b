//! Query strings: a pop's, an extension's, a blob read's, a listing's, and
//! the requests that take none, each checked into a value or a `400`.

use std::time::Duration;

use smallvec::SmallVec;

use super::{is_digits, RequestLimits};
use crate::backend::stats::{Page, PageToken};
use crate::http::error::ApiError;

/// Names in a page of a listing that does not say how many it wants.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// A request's query pairs, inline up to four.
type QueryPairs<'a> = SmallVec<[(&'a str, &'a str); 4]>;

/// Query parameters as `(key, value)` pairs. Our values are numbers and flags,
/// so nothing is percent-decoded: an encoded value is simply not valid. A
/// parameter given twice is refused, as a repeated header is. Up to four
/// pairs (a pop's three, one spare) are kept without an allocation.
pub(crate) fn query_pairs(query: Option<&str>) -> Result<QueryPairs<'_>, ApiError> {
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

pub(crate) fn unknown_parameter(key: &str, allowed: &str) -> ApiError {
    ApiError::bad_request(
        "invalid-query",
        format!("unknown query parameter {key:?}; allowed: {allowed}"),
    )
}

/// Seconds written as a plain decimal (`5`, `0.5`), at most `max`.
pub(crate) fn seconds(
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
pub(crate) fn lease_length(raw: &str, max: Duration) -> Result<Duration, ApiError> {
    let lease = seconds("invalid-lease", "lease", raw, max)?;
    if lease.as_millis() == 0 {
        return Err(ApiError::bad_request(
            "invalid-lease",
            "lease must be longer than 0 seconds",
        ));
    }
    Ok(lease)
}

/// `?timeout=S&header_only=1&lease=S&count=N` of a pop.
#[derive(Debug, PartialEq)]
pub struct PopQuery {
    pub timeout: Duration,
    pub header_only: bool,
    /// Pop under a lease of this length instead of removing the element.
    pub lease: Option<Duration>,
    /// A batch pop of up to this many elements (at least 1; its maximum,
    /// `--max-batch`, is the batch handler's to check).
    pub count: Option<usize>,
}

impl PopQuery {
    pub fn parse(query: Option<&str>, limits: &RequestLimits) -> Result<PopQuery, ApiError> {
        let mut out = PopQuery {
            timeout: Duration::ZERO,
            header_only: false,
            lease: None,
            count: None,
        };
        for (key, raw) in query_pairs(query)? {
            match key {
                "timeout" => {
                    out.timeout = seconds("invalid-timeout", key, raw, limits.max_timeout)?
                }
                "header_only" => out.header_only = flag(key, raw)?,
                "lease" => out.lease = Some(lease_length(raw, limits.max_lease)?),
                "count" => out.count = Some(batch_count(raw)?),
                _ => return Err(unknown_parameter(key, "timeout, header_only, lease, count")),
            }
        }
        Ok(out)
    }
}

/// `count=N` of a batch pop: a whole number from 1.
fn batch_count(raw: &str) -> Result<usize, ApiError> {
    Some(raw)
        .filter(|r| is_digits(r))
        .and_then(|r| r.parse::<usize>().ok())
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid-count",
                format!("count={raw:?} must be a whole number from 1 to --max-batch"),
            )
        })
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

/// `?limit=N&page_token=T` of a listing: which page of names to answer.
/// Without a limit, [`DEFAULT_PAGE_SIZE`] names (fewer if `max` is lower).
pub fn list_query(query: Option<&str>, max: usize) -> Result<Page, ApiError> {
    let mut page = Page::first(DEFAULT_PAGE_SIZE.min(max));
    for (key, raw) in query_pairs(query)? {
        match key {
            "limit" => {
                page.limit = Some(raw)
                    .filter(|raw| is_digits(raw))
                    .and_then(|raw| raw.parse::<usize>().ok())
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid-limit",
                            format!("limit={raw:?} must be a whole number from 1 to {max}"),
                        )
                    })?;
            }
            "page_token" => {
                let token = PageToken::decode(raw).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid-page-token",
                        format!("page_token={raw:?} is not a token a listing gave"),
                    )
                })?;
                page.after = Some(token.0);
            }
            _ => return Err(unknown_parameter(key, "limit, page_token")),
        }
    }
    Ok(page)
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
    use crate::http::extract::tests::{limits, problem};

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
            count: None,
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
    fn a_listing_takes_a_bounded_limit_and_a_token_it_gave() {
        assert_eq!(list_query(None, 1000).unwrap(), Page::first(100));
        assert_eq!(list_query(None, 10).unwrap(), Page::first(10));
        let token = PageToken(crate::backend::name::Name::parse("tenant-9").unwrap());
        let q = format!("limit=1000&page_token={}", token.encode());
        let page = list_query(Some(&q), 1000).unwrap();
        assert_eq!((page.limit, page.after), (1000, Some(token.0)));
        for bad in ["limit=0", "limit=1001", "limit=-1", "limit=", "limit=1e3"] {
            assert_eq!(
                problem(list_query(Some(bad), 1000)),
                "invalid-limit",
                "{bad}"
            );
        }
        let huge = "limit=99999999999999999999999";
        assert_eq!(problem(list_query(Some(huge), 1000)), "invalid-limit");
        for bad in ["page_token=", "page_token=tenant-9", "page_token=%41"] {
            assert_eq!(
                problem(list_query(Some(bad), 1000)),
                "invalid-page-token",
                "{bad}"
            );
        }
        assert_eq!(problem(list_query(Some("offset=5"), 1000)), "invalid-query");
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
