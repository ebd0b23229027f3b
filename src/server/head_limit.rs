//! The ceilings of hyper's own head parser, and the count of the heads it
//! refuses itself. blobq's lower limits are checked by the router
//! (`http::head_limit`), which answers them with a problem document;
//! hyper's refusals (past these ceilings, or not HTTP) are bare, and only
//! counted (`Protocols::count_refusal`).

use std::time::Duration;

use super::limits::ParserCeiling;
use crate::config::Config;
use crate::http::App;

/// How much of a request head hyper reads at most: the `[limits]`
/// ceilings, never below blobq's own limits.
pub(super) fn parser_ceiling(config: &Config) -> ParserCeiling {
    config
        .limits
        .parser
        .above(config.max_header_size, config.max_headers)
}

/// Counts in the request metrics a request hyper refused for its head,
/// under route `unknown` and method `OTHER` (the head was not taken as a
/// request, so neither its route nor its method is).
pub(super) fn count_refused_head(app: &App, status: u16) {
    let method = http::Method::from_bytes(b"UNPARSED").unwrap_or_default();
    app.metrics
        .observe("unknown", &method, status, Duration::ZERO);
}
