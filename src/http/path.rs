//! Request paths as the contract reads them: raw, never percent-decoded or
//! normalised, with an empty segment standing for an empty name (which the
//! name check then refuses with a `400`).
//!
//! The router's matcher never matches a parameter to an empty segment, so
//! [`make_routable`] gives each empty segment a stand-in before routing and
//! keeps the path as sent; the parameters are then read from that.

use axum::extract::MatchedPath;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Extensions, Request, Uri};

/// What an empty segment becomes for routing. No route has an empty
/// literal segment, so the stand-in can only ever fill a parameter.
const EMPTY_SEGMENT: &str = "-";

/// The path as the client sent it, kept when routing needed it changed.
#[derive(Clone, Debug)]
struct SentPath(String);

/// `request` with its path's empty segments filled, so that `/qs/a/`
/// reaches the queue route (with an empty queue name) as it always has.
pub fn make_routable<B>(mut request: Request<B>) -> Request<B> {
    let path = request.uri().path();
    let has_empty = path.len() > 1 && (path.ends_with('/') || path.contains("//"));
    if !has_empty {
        return request;
    }
    let filled: Vec<&str> = path
        .split('/')
        .enumerate()
        .map(|(i, s)| {
            if i > 0 && s.is_empty() {
                EMPTY_SEGMENT
            } else {
                s
            }
        })
        .collect();
    let mut text = filled.join("/");
    if let Some(query) = request.uri().query() {
        text.push('?');
        text.push_str(query);
    }
    let sent = SentPath(path.to_owned());
    let mut parts = request.uri().clone().into_parts();
    let Ok(routable) = PathAndQuery::try_from(text) else {
        return request;
    };
    parts.path_and_query = Some(routable);
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
        request.extensions_mut().insert(sent);
    }
    request
}

/// The path of a request as the client sent it.
pub fn as_sent<'a>(uri: &'a Uri, extensions: &'a Extensions) -> &'a str {
    extensions
        .get::<SentPath>()
        .map_or(uri.path(), |sent| sent.0.as_str())
}

/// The raw text of the path parameter `{key}` of the route the request
/// matched; `None` if that route has no such parameter.
pub fn param<'a>(parts: &'a Parts, key: &str) -> Option<&'a str> {
    let template = parts.extensions.get::<MatchedPath>()?.as_str();
    segment_of(template, as_sent(&parts.uri, &parts.extensions), key)
}

/// The segment of `path` at the place `{key}` holds in `template`. The
/// router matched the path against the template segment by segment, so
/// the two line up.
fn segment_of<'a>(template: &str, path: &'a str, key: &str) -> Option<&'a str> {
    let is_key =
        |segment: &str| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) == Some(key);
    Segments(Some(template))
        .zip(Segments(Some(path)))
        .find_map(|(t, p)| is_key(t).then_some(p))
}

/// The segments of a path between its `/`s, found with a plain byte scan:
/// paths are a few dozen bytes, too short for a string searcher to pay.
struct Segments<'a>(Option<&'a str>);

impl<'a> Iterator for Segments<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.0?;
        match rest.bytes().position(|b| b == b'/') {
            Some(at) => {
                self.0 = Some(&rest[at + 1..]);
                Some(&rest[..at])
            }
            None => {
                self.0 = None;
                Some(rest)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_the_raw_segments_at_their_place_in_the_template() {
        let template = "/qs/{ns}/{queue}/leases/{receipt}";
        let path = "/qs/a%2Fb/q/leases/";
        assert_eq!(segment_of(template, path, "ns"), Some("a%2Fb"));
        assert_eq!(segment_of(template, path, "queue"), Some("q"));
        assert_eq!(segment_of(template, path, "receipt"), Some(""));
        assert_eq!(segment_of(template, path, "id"), None);
        assert_eq!(segment_of("", path, "ns"), None);
    }

    #[test]
    fn empty_segments_get_a_stand_in_and_the_sent_path_is_kept() {
        for (sent, routed) in [
            ("/qs/a/", "/qs/a/-"),
            ("/qs//b?timeout=1", "/qs/-/b?timeout=1"),
            ("//", "/-/-"),
        ] {
            let request = make_routable(Request::get(sent).body(()).unwrap());
            assert_eq!(request.uri().path_and_query().unwrap().as_str(), routed);
            let path = sent.split('?').next().unwrap();
            assert_eq!(as_sent(request.uri(), request.extensions()), path);
        }
        for path in ["/", "/qs/a/b?x"] {
            let untouched = make_routable(Request::get(path).body(()).unwrap());
            assert_eq!(untouched.uri(), path);
            assert!(untouched.extensions().get::<SentPath>().is_none());
        }
    }
}
