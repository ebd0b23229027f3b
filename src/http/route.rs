//! The route table: every path the server answers, in one place.

use http::Method;

/// A recognised path, with its raw segments (validated by the handlers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    ServerStats,
    NamespaceStats(&'a str),
    Queue(&'a str, &'a str),
    QueueStats(&'a str, &'a str),
    Lease(&'a str, &'a str, &'a str),
    LeaseRelease(&'a str, &'a str, &'a str),
    LeaseExtend(&'a str, &'a str, &'a str),
    Blobs(&'a str),
    Blob(&'a str, &'a str),
    Health,
    Metrics,
}

impl<'a> Route<'a> {
    /// Matches a request path; `None` for an unknown route.
    pub fn parse(path: &'a str) -> Option<Route<'a>> {
        // Nearly every request is a push or pop: `/qs/{ns}/{queue}` is found
        // with two searches for '/' instead of the walk over every segment.
        // (Byte loops: `str`'s char searches are several times the code.)
        if let Some(rest) = path.strip_prefix("/qs/") {
            let mut slashes = rest.bytes().enumerate().filter(|&(_, b)| b == b'/');
            if let (Some((at, _)), None) = (slashes.next(), slashes.next()) {
                return Some(Route::Queue(&rest[..at], &rest[at + 1..]));
            }
        }
        let rest = path.strip_prefix('/')?;
        // The longest route has 6 segments: gather up to 7 without a `Vec`,
        // and give up at the 8th (7 already match no route).
        let mut segments = [""; 7];
        let mut count = 0;
        for segment in rest.split('/') {
            if count == segments.len() {
                return None;
            }
            segments[count] = segment;
            count += 1;
        }
        Some(match &segments[..count] {
            ["qs"] => Route::ServerStats,
            ["qs", ns] => Route::NamespaceStats(ns),
            ["qs", ns, q] => Route::Queue(ns, q),
            ["qs", ns, q, "stats"] => Route::QueueStats(ns, q),
            ["qs", ns, q, "leases", r] => Route::Lease(ns, q, r),
            ["qs", ns, q, "leases", r, "release"] => Route::LeaseRelease(ns, q, r),
            ["qs", ns, q, "leases", r, "extend"] => Route::LeaseExtend(ns, q, r),
            ["tbs", ns, "blobs"] => Route::Blobs(ns),
            ["tbs", ns, "blobs", id] => Route::Blob(ns, id),
            ["healthz"] => Route::Health,
            ["metrics"] => Route::Metrics,
            _ => return None,
        })
    }

    /// Methods the route answers, as the `Allow` header lists them. Built
    /// only for a `405`; `allows` looks in the list itself.
    pub fn allow(&self) -> String {
        let names: Vec<&str> = self.methods().iter().map(Method::as_str).collect();
        names.join(", ")
    }

    /// The methods the route answers.
    fn methods(&self) -> &'static [Method] {
        const QUEUE: &[Method] = &[Method::GET, Method::POST, Method::PUT];
        match self {
            Route::Queue(..) => QUEUE,
            Route::Blobs(_) => &[Method::POST],
            Route::Blob(..) => &[Method::GET, Method::DELETE],
            Route::Lease(..) => &[Method::DELETE],
            Route::LeaseRelease(..) | Route::LeaseExtend(..) => &[Method::POST],
            _ => &[Method::GET],
        }
    }

    pub fn allows(&self, method: &Method) -> bool {
        self.methods().contains(method)
    }

    /// The route's template: the `route` label of the metrics, so that names
    /// chosen by clients never become label values.
    pub fn template(&self) -> &'static str {
        match self {
            Route::ServerStats => "/qs",
            Route::NamespaceStats(_) => "/qs/{ns}",
            Route::Queue(..) => "/qs/{ns}/{queue}",
            Route::QueueStats(..) => "/qs/{ns}/{queue}/stats",
            Route::Lease(..) => "/qs/{ns}/{queue}/leases/{receipt}",
            Route::LeaseRelease(..) => "/qs/{ns}/{queue}/leases/{receipt}/release",
            Route::LeaseExtend(..) => "/qs/{ns}/{queue}/leases/{receipt}/extend",
            Route::Blobs(_) => "/tbs/{ns}/blobs",
            Route::Blob(..) => "/tbs/{ns}/blobs/{id}",
            Route::Health => "/healthz",
            Route::Metrics => "/metrics",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_every_route_and_nothing_else() {
        assert_eq!(Route::parse("/qs"), Some(Route::ServerStats));
        assert_eq!(Route::parse("/qs/a"), Some(Route::NamespaceStats("a")));
        assert_eq!(Route::parse("/qs/a/b"), Some(Route::Queue("a", "b")));
        assert_eq!(
            Route::parse("/qs/a/b/stats"),
            Some(Route::QueueStats("a", "b"))
        );
        assert_eq!(
            Route::parse("/qs/a/stats"),
            Some(Route::Queue("a", "stats"))
        );
        assert_eq!(Route::parse("/tbs/a/blobs"), Some(Route::Blobs("a")));
        assert_eq!(Route::parse("/tbs/a/blobs/x"), Some(Route::Blob("a", "x")));
        assert_eq!(
            Route::parse("/qs/a/b/leases/r"),
            Some(Route::Lease("a", "b", "r"))
        );
        assert_eq!(
            Route::parse("/qs/a/b/leases/r/release"),
            Some(Route::LeaseRelease("a", "b", "r"))
        );
        assert_eq!(
            Route::parse("/qs/a/b/leases/r/extend"),
            Some(Route::LeaseExtend("a", "b", "r"))
        );
        assert_eq!(Route::parse("/qs/a/b/leases/r/other"), None);
        assert_eq!(Route::parse("/healthz"), Some(Route::Health));
        assert_eq!(Route::parse("/metrics"), Some(Route::Metrics));
        for unknown in [
            "",
            "/",
            "/q",
            "/qs/a/b/c",
            "/qs/a/b/",
            "/qs/a/b/stats/x",
            "/tbs/a",
            "/tbs/a/blob/x",
            "/qs/a/b/leases/r/release/x",
            "/qs/a/b/leases/r/release/x/y",
            "/qs/a/b/leases/r/release/x/y/z/w",
        ] {
            assert_eq!(Route::parse(unknown), None, "{unknown:?}");
        }
        // An empty segment reaches the handler, which refuses the empty name.
        assert_eq!(Route::parse("/qs/a/"), Some(Route::Queue("a", "")));
        assert_eq!(Route::parse("/qs//b"), Some(Route::Queue("", "b")));
    }

    #[test]
    fn allow_lists_match_allows() {
        let q = Route::Queue("a", "b");
        assert!(q.allows(&Method::PUT) && !q.allows(&Method::DELETE));
        assert!(Route::Blob("a", "b").allows(&Method::DELETE));
        assert!(!Route::Blobs("a").allows(&Method::GET));
        let every = [
            (Route::ServerStats, "GET"),
            (Route::NamespaceStats("a"), "GET"),
            (q, "GET, POST, PUT"),
            (Route::QueueStats("a", "b"), "GET"),
            (Route::Lease("a", "b", "r"), "DELETE"),
            (Route::LeaseRelease("a", "b", "r"), "POST"),
            (Route::LeaseExtend("a", "b", "r"), "POST"),
            (Route::Blobs("a"), "POST"),
            (Route::Blob("a", "b"), "GET, DELETE"),
            (Route::Health, "GET"),
            (Route::Metrics, "GET"),
        ];
        for (route, allow) in every {
            assert_eq!(route.allow(), allow, "{route:?}");
            for method in allow.split(", ") {
                assert!(route.allows(&method.parse().unwrap()), "{route:?} {method}");
            }
        }
    }
}
