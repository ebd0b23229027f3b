//! Reading what a request says: names, metadata headers and query
//! parameters, each turned into a validated value or a `400` that says what
//! is wrong.

use std::time::Duration;

use http::HeaderMap;

use super::error::ApiError;
use crate::store::meta::{parse_content_type, CustomPair};
use crate::store::name::Name;
use crate::store::MetaInput;

pub const LIFETIME: &str = "x-queueserver-lifetime";
pub const CONTENT_TYPE_OVERRIDE: &str = "x-queueserver-contenttype";
pub const CUSTOM_DATA: &str = "x-custom-data";
pub const BLOB_ID: &str = "x-blobstorage_id";
pub const ELEMENT_ID: &str = "x-queueserver-id";
pub const SIZE: &str = "x-queueserver-size";

/// Limits the HTTP layer checks requests against.
#[derive(Clone, Debug)]
pub struct RequestLimits {
    pub default_lifetime: u64,
    pub max_lifetime: u64,
    pub max_timeout: Duration,
    pub max_custom_data: usize,
}

/// Validates a path segment as a namespace or queue name.
pub fn name(what: &str, raw: &str) -> Result<Name, ApiError> {
    Name::parse(raw)
        .map_err(|e| ApiError::bad_request("invalid-name", format!("{what} name {raw:?} {e}")))
}

/// Metadata and lifetime of a push or blob store.
#[derive(Debug)]
pub struct PushHeaders {
    pub meta: MetaInput,
    pub lifetime: u64,
}

/// The single value of header `name`, if present; a repeated header is refused
/// rather than one of its values silently picked.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ApiError> {
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

impl PushHeaders {
    /// Reads `X-QueueServer-Lifetime`, the content type (the override header,
    /// else `Content-Type`) and every `X-Custom-Data` pair.
    pub fn parse(headers: &HeaderMap, limits: &RequestLimits) -> Result<PushHeaders, ApiError> {
        let lifetime = match single(headers, LIFETIME)? {
            None => limits.default_lifetime,
            Some(raw) => parse_lifetime(raw, limits.max_lifetime)?,
        };
        let content_type = match single(headers, CONTENT_TYPE_OVERRIDE)? {
            Some(raw) => Some(raw),
            None => single(headers, http::header::CONTENT_TYPE.as_str())?,
        }
        .map(|raw| {
            parse_content_type(raw)
                .map_err(|e| ApiError::bad_request("invalid-content-type", e.to_string()))
        })
        .transpose()?;
        let mut custom = Vec::new();
        for value in headers.get_all(CUSTOM_DATA) {
            if custom.len() == limits.max_custom_data {
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
            custom.push(
                CustomPair::parse(raw)
                    .map_err(|e| ApiError::bad_request("invalid-custom-data", e.to_string()))?,
            );
        }
        Ok(PushHeaders {
            meta: MetaInput {
                content_type,
                custom,
            },
            lifetime,
        })
    }
}

fn parse_lifetime(raw: &str, max: u64) -> Result<u64, ApiError> {
    let bad = |why: String| ApiError::bad_request("invalid-lifetime", why);
    let secs: u64 = raw.parse().map_err(|_| {
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
    single(headers, BLOB_ID)
}

/// Query parameters as `(key, value)` pairs. Our values are numbers and flags,
/// so nothing is percent-decoded: an encoded value is simply not valid.
fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
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

/// `?timeout=S&header_only=1` of a pop.
#[derive(Debug, PartialEq)]
pub struct PopQuery {
    pub timeout: Duration,
    pub header_only: bool,
}

impl PopQuery {
    pub fn parse(query: Option<&str>, limits: &RequestLimits) -> Result<PopQuery, ApiError> {
        let mut out = PopQuery {
            timeout: Duration::ZERO,
            header_only: false,
        };
        for (key, raw) in query_pairs(query) {
            match key {
                "timeout" => out.timeout = parse_timeout(raw, limits.max_timeout)?,
                "header_only" => out.header_only = flag(key, raw)?,
                _ => return Err(unknown_parameter(key, "timeout, header_only")),
            }
        }
        Ok(out)
    }
}

fn parse_timeout(raw: &str, max: Duration) -> Result<Duration, ApiError> {
    let secs: f64 = raw
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s >= 0.0 && !raw.starts_with('+'))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid-timeout",
                format!("timeout={raw:?} is not a number of seconds (like 5 or 0.5)"),
            )
        })?;
    if secs > max.as_secs_f64() {
        return Err(ApiError::bad_request(
            "invalid-timeout",
            format!(
                "timeout={raw} is above the maximum of {} seconds",
                max.as_secs_f64()
            ),
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `?delete=1` of a blob read.
pub fn delete_after_read(query: Option<&str>) -> Result<bool, ApiError> {
    let mut delete = false;
    for (key, raw) in query_pairs(query) {
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
    use http::HeaderValue;

    fn limits() -> RequestLimits {
        RequestLimits {
            default_lifetime: 3600,
            max_lifetime: 86400,
            max_timeout: Duration::from_secs(300),
            max_custom_data: 3,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn problem(r: Result<impl std::fmt::Debug, ApiError>) -> &'static str {
        match r {
            Err(ApiError::BadRequest { problem, .. }) => problem,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn lifetimes_default_and_are_bounded() {
        let l = limits();
        assert_eq!(
            PushHeaders::parse(&headers(&[]), &l).unwrap().lifetime,
            3600
        );
        assert_eq!(
            PushHeaders::parse(&headers(&[(LIFETIME, "86400")]), &l)
                .unwrap()
                .lifetime,
            86400
        );
        for bad in ["0", "-1", "1.5", "abc", "86401", "99999999999999999999999"] {
            assert_eq!(
                problem(PushHeaders::parse(&headers(&[(LIFETIME, bad)]), &l)),
                "invalid-lifetime",
                "{bad}"
            );
        }
        assert_eq!(
            problem(PushHeaders::parse(
                &headers(&[(LIFETIME, "1"), (LIFETIME, "2")]),
                &l
            )),
            "invalid-header"
        );
    }

    #[test]
    fn the_override_content_type_wins_over_content_type() {
        let l = limits();
        let h = headers(&[
            (CONTENT_TYPE_OVERRIDE, "image/png"),
            ("content-type", "text/plain"),
        ]);
        assert_eq!(
            PushHeaders::parse(&h, &l)
                .unwrap()
                .meta
                .content_type
                .as_deref(),
            Some("image/png")
        );
        let h = headers(&[("content-type", "text/plain")]);
        assert_eq!(
            PushHeaders::parse(&h, &l)
                .unwrap()
                .meta
                .content_type
                .as_deref(),
            Some("text/plain")
        );
        assert_eq!(
            PushHeaders::parse(&headers(&[]), &l)
                .unwrap()
                .meta
                .content_type,
            None
        );
        let h = headers(&[(CONTENT_TYPE_OVERRIDE, "nonsense")]);
        assert_eq!(problem(PushHeaders::parse(&h, &l)), "invalid-content-type");
    }

    #[test]
    fn custom_data_keeps_order_and_is_capped() {
        let l = limits();
        let h = headers(&[
            (CUSTOM_DATA, "b=2"),
            (CUSTOM_DATA, "a=1"),
            (CUSTOM_DATA, "b=3"),
        ]);
        let custom = PushHeaders::parse(&h, &l).unwrap().meta.custom;
        let got: Vec<_> = custom
            .iter()
            .map(|p| format!("{}={}", p.key, p.value))
            .collect();
        assert_eq!(got, ["b=2", "a=1", "b=3"]);
        let h = headers(&[(CUSTOM_DATA, "a=1"); 4]);
        assert_eq!(problem(PushHeaders::parse(&h, &l)), "invalid-custom-data");
        assert_eq!(
            problem(PushHeaders::parse(&headers(&[(CUSTOM_DATA, "x")]), &l)),
            "invalid-custom-data"
        );
    }

    #[test]
    fn pop_queries_parse_and_refuse_nonsense() {
        let l = limits();
        assert_eq!(
            PopQuery::parse(None, &l).unwrap(),
            PopQuery {
                timeout: Duration::ZERO,
                header_only: false
            }
        );
        let q = PopQuery::parse(Some("timeout=0.25&header_only=1"), &l).unwrap();
        assert_eq!(
            (q.timeout, q.header_only),
            (Duration::from_millis(250), true)
        );
        assert_eq!(
            PopQuery::parse(Some("timeout=300"), &l).unwrap().timeout,
            Duration::from_secs(300)
        );
        for bad in [
            "timeout=-1",
            "timeout=abc",
            "timeout=NaN",
            "timeout=inf",
            "timeout=300.5",
            "timeout=",
            "timeout=%31",
        ] {
            assert_eq!(
                problem(PopQuery::parse(Some(bad), &l)),
                "invalid-timeout",
                "{bad}"
            );
        }
        assert_eq!(
            problem(PopQuery::parse(Some("header_only=yes"), &l)),
            "invalid-query"
        );
        assert_eq!(
            problem(PopQuery::parse(Some("timout=5"), &l)),
            "invalid-query"
        );
        assert!(delete_after_read(Some("delete=1")).unwrap());
        assert_eq!(
            problem(delete_after_read(Some("remove=1"))),
            "invalid-query"
        );
    }
}
