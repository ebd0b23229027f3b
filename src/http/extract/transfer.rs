//! The transfer codings of a request: hyper decodes `chunked`, the only
//! one blobq speaks, and hands over any other coding's bytes as they came.
//! Stored as they are, a `gzip, chunked` body would become an element of
//! compressed bytes nobody asked for; RFC 9112 (section 6.1) asks a server
//! to answer `501` to a coding it does not understand instead.

use http::header::TRANSFER_ENCODING;
use http::HeaderMap;

use crate::http::error::ApiError;

/// Refuses a request whose `Transfer-Encoding` names any coding but
/// `chunked`, before its body is read.
pub fn transfer_coding(headers: &HeaderMap) -> Result<(), ApiError> {
    for value in headers.get_all(TRANSFER_ENCODING) {
        let Ok(text) = value.to_str() else {
            return Err(unsupported("(not visible ASCII)"));
        };
        for coding in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            // A coding may carry parameters (`gzip;q=1` is not one, but
            // `x;y=z` is well formed); its name is what counts.
            let name = coding.split(';').next().unwrap_or("").trim();
            if !name.eq_ignore_ascii_case("chunked") {
                return Err(unsupported(coding));
            }
        }
    }
    Ok(())
}

fn unsupported(coding: &str) -> ApiError {
    ApiError::NotImplemented {
        problem: "unsupported-transfer-coding",
        detail: format!(
            "transfer coding {coding:?} is not supported, only chunked; nothing was stored"
        ),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn codings(values: &[&str]) -> Result<(), ApiError> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(TRANSFER_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        transfer_coding(&headers)
    }

    #[test]
    fn only_chunked_passes_and_every_other_coding_is_501() {
        assert!(codings(&[]).is_ok());
        assert!(codings(&["chunked"]).is_ok());
        assert!(codings(&["Chunked"]).is_ok());
        for refused in [
            &["gzip, chunked"][..],
            &["gzip", "chunked"],
            &["deflate,chunked"],
            &["x-custom;p=1, chunked"],
            &["identity"],
        ] {
            let e = codings(refused).unwrap_err();
            assert_eq!(e.status(), http::StatusCode::NOT_IMPLEMENTED, "{refused:?}");
        }
    }
}
