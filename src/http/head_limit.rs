//! blobq's own limits on a request head (`--max-header-size`,
//! `--max-headers`), checked by the router before it matches a route, so
//! that a head over them is answered `431` with a problem document.
//!
//! hyper answers the heads it refuses itself with a bare status and offers
//! no hook for a body. So its parser is given higher ceilings (`[limits]
//! parser_max_header_size`, `parser_max_headers`, see `server::limits`):
//! it stops only a head past them, or one that is not HTTP at all, and
//! such refusals are only counted.

use http::Request;

use super::ApiError;

/// blobq's own limits on a request head.
#[derive(Clone, Copy, Debug)]
pub struct HeadLimits {
    max_header_size: usize,
    max_headers: usize,
}

impl HeadLimits {
    pub fn new(max_header_size: usize, max_headers: usize) -> HeadLimits {
        HeadLimits {
            max_header_size,
            max_headers,
        }
    }

    /// Why `request`'s head is refused, if it is.
    pub fn refusal<B>(self, request: &Request<B>) -> Option<ApiError> {
        let lines = request.headers().len();
        if lines > self.max_headers {
            return Some(ApiError::HeadTooLarge {
                problem: "too-many-headers",
                detail: format!(
                    "the request has {lines} header lines, more than the server's limit of {}",
                    self.max_headers
                ),
            });
        }
        let size = head_size(request);
        if size > self.max_header_size {
            return Some(ApiError::HeadTooLarge {
                problem: "request-head-too-large",
                detail: format!(
                    "the request head is {size} bytes, more than the server's limit of {}",
                    self.max_header_size
                ),
            });
        }
        None
    }
}

/// The size of `request`'s head as HTTP/1.1 sends it: the request line,
/// one `name: value` line for each header, and the empty line. (The exact
/// spacing a client used is gone once hyper parsed it.)
fn head_size<B>(request: &Request<B>) -> usize {
    const CRLF: usize = 2;
    let target = request
        .uri()
        .path_and_query()
        .map_or(1, |p| p.as_str().len());
    let line = request.method().as_str().len() + 1 + target + 1 + "HTTP/1.1".len() + CRLF;
    let fields: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + ": ".len() + value.len() + CRLF)
        .sum();
    line + fields + CRLF
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_header_size: usize, max_headers: usize) -> HeadLimits {
        HeadLimits {
            max_header_size,
            max_headers,
        }
    }

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method("GET").uri("/qs/ns/q?wait=1");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn the_head_is_measured_as_http1_sends_it() {
        let r = request(&[("host", "x"), ("x-custom-data", "k=v")]);
        let sent = "GET /qs/ns/q?wait=1 HTTP/1.1\r\nhost: x\r\nx-custom-data: k=v\r\n\r\n";
        assert_eq!(head_size(&r), sent.len());
    }

    #[test]
    fn heads_within_the_limits_pass_and_others_are_refused_for_what_they_exceed() {
        let r = request(&[("host", "x"), ("a", "1"), ("b", "2")]);
        let size = head_size(&r);
        assert!(limits(size, 3).refusal(&r).is_none());
        let refused = |l: HeadLimits| match l.refusal(&r) {
            Some(ApiError::HeadTooLarge { problem, .. }) => problem,
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(limits(size, 2)), "too-many-headers");
        assert_eq!(refused(limits(size - 1, 3)), "request-head-too-large");
    }
}
