//! The headers of a push or blob store: lifetime, content type and custom
//! data, each checked into a value or a `400` that says what is wrong.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::{is_digits, RequestLimits};
use crate::backend::meta::{parse_content_type, CustomPair};
use crate::backend::{MetaInput, PushOptions};
use crate::http::error::ApiError;
use crate::http::headers::{BLOB_ID, CONTENT_TYPE_OVERRIDE, CUSTOM_DATA, LIFETIME};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::extract::tests::{limits, problem};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            let name = http::HeaderName::from_bytes(k.as_bytes()).unwrap();
            h.append(name, HeaderValue::from_str(v).unwrap());
        }
        h
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
}
