//! Request paths as the contract reads them: raw, never percent-decoded or
//! normalised, with an empty segment standing for an empty name (which the
//! name check then refuses with a `400`). The router matched the path as
//! sent (`routing.rs`) and left where each parameter lies.

use http::request::Parts;

use super::routing::Matched;

/// The raw text of the path parameter `{key}` of the route the request
/// matched; `None` if that route has no such parameter.
pub fn param<'a>(parts: &'a Parts, key: &str) -> Option<&'a str> {
    parts
        .extensions
        .get::<Matched>()?
        .param(parts.uri.path(), key)
}
