//! The decision taken for each request before routing: which route and
//! method it is (the route table's own templates, matched by the router's
//! own matcher), what that asks ([`Access`]), who the caller is and
//! whether the caller's grant covers it.

use std::net::IpAddr;
use std::sync::Arc;

use http::{header, HeaderMap, Method};

use super::failures::Failure;
use super::grant::{Access, Caller, Role};
use super::Authority;
use crate::http::routing::Template;

/// What each route's methods ask, by the route's template.
#[derive(Default)]
pub struct RoutePolicy {
    rules: Vec<RouteRule>,
}

struct RouteRule {
    template: Template,
    methods: Vec<(Method, Access)>,
    /// Every method listed is open: the route's `405`s are open too, so
    /// that `/healthz` answers anyone whatever the method.
    open: bool,
}

/// The request's route, as far as the policy knows it.
struct Matched<'p> {
    template: &'static str,
    /// `None`: a method the route does not answer (`405`).
    access: Option<Access>,
    namespace: Option<&'p str>,
}

impl RoutePolicy {
    /// Declares `template`'s methods, as the route table lists them.
    pub fn add(&mut self, template: &'static str, methods: Vec<(Method, Access)>) {
        let open = methods.iter().all(|(_, access)| *access == Access::Open);
        self.rules.push(RouteRule {
            template: Template::parse(template),
            methods,
            open,
        });
    }

    fn find<'p>(&self, method: &Method, path: &'p str) -> Option<Matched<'p>> {
        let (rule, params) = self
            .rules
            .iter()
            .find_map(|rule| Some((rule, rule.template.matches(path)?)))?;
        let access = rule
            .methods
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, access)| *access)
            .or(rule.open.then_some(Access::Open));
        Some(Matched {
            template: rule.template.text(),
            access,
            namespace: params.param(path, "ns"),
        })
    }
}

/// The outcome for one request.
#[derive(Debug)]
pub enum Verdict {
    /// On to the router.
    Pass,
    /// On to the router, with the caller, whose grant filters the answer.
    PassFiltered(Caller),
    Refused(Refusal),
}

/// A refused request: why, on which route (for the metrics' label), and by
/// whom when the credential was valid.
#[derive(Debug)]
pub struct Refusal {
    pub failure: Failure,
    pub route: Option<&'static str>,
    pub caller: Option<Arc<str>>,
}

/// The credentials and the policy together: what the authorisation layer
/// asks for each request.
pub struct Gate {
    authority: Arc<Authority>,
    policy: RoutePolicy,
}

impl Gate {
    pub(super) fn new(authority: Arc<Authority>, policy: RoutePolicy) -> Gate {
        Gate { authority, policy }
    }

    /// Decides on a request from its method, (routable) path and headers
    /// alone: nothing of its body has been read.
    pub fn check(&self, method: &Method, path: &str, headers: &HeaderMap) -> Verdict {
        let matched = self.policy.find(method, path);
        let route = matched.as_ref().map(|m| m.template);
        let access = matched.as_ref().and_then(|m| m.access);
        let open = match access {
            Some(Access::Open) => true,
            Some(Access::Metrics) => self.authority.config.metrics_open,
            _ => false,
        };
        if open {
            return Verdict::Pass;
        }
        let refuse = |failure, caller: Option<&Caller>| {
            Verdict::Refused(Refusal {
                failure,
                route,
                caller: caller.map(|c| c.name.clone()),
            })
        };
        let caller = match presented(headers).and_then(|token| self.authority.authenticate(token)) {
            Ok(caller) => caller,
            Err(failure) => return refuse(failure, None),
        };
        let grant = &caller.grant;
        let allowed = match access {
            // An unknown path or method: `404` or `405` for any valid
            // credential.
            None => true,
            Some(Access::Open) => true,
            Some(Access::Namespace(role)) => matched
                .as_ref()
                .and_then(|m| m.namespace)
                .is_some_and(|ns| grant.allows(role, ns)),
            Some(Access::EitherNamespace(one, other)) => matched
                .as_ref()
                .and_then(|m| m.namespace)
                .is_some_and(|ns| grant.allows(one, ns) || grant.allows(other, ns)),
            Some(Access::Listing) => {
                return if grant.allows_somewhere(Role::Observer) {
                    Verdict::PassFiltered(caller)
                } else {
                    refuse(Failure::Forbidden, Some(&caller))
                };
            }
            Some(Access::Metrics) => grant.allows_everywhere(Role::Admin),
        };
        if allowed {
            Verdict::Pass
        } else {
            refuse(Failure::Forbidden, Some(&caller))
        }
    }

    /// Whether a refusal of a request from `peer` is to be logged: the
    /// first in each second from each address.
    pub fn should_log(&self, peer: Option<IpAddr>) -> bool {
        self.authority.failures.should_log(peer)
    }
}

/// The credential a request carries: `Authorization: Bearer`, else
/// `X-Api-Key`.
fn presented(headers: &HeaderMap) -> Result<&str, Failure> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().map_err(|_| Failure::Malformed)?;
        let (scheme, token) = text.split_once(' ').ok_or(Failure::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Failure::Malformed);
        }
        return non_empty(token.trim());
    }
    match headers.get("x-api-key") {
        Some(value) => non_empty(value.to_str().map_err(|_| Failure::Malformed)?.trim()),
        None => Err(Failure::Missing),
    }
}

fn non_empty(token: &str) -> Result<&str, Failure> {
    if token.is_empty() {
        Err(Failure::Malformed)
    } else {
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn the_credential_comes_from_a_bearer_header_or_the_api_key() {
        assert_eq!(
            presented(&headers("authorization", "Bearer abc")),
            Ok("abc")
        );
        assert_eq!(
            presented(&headers("authorization", "bearer  abc ")),
            Ok("abc")
        );
        assert_eq!(presented(&headers("x-api-key", "k")), Ok("k"));
        assert_eq!(presented(&HeaderMap::new()), Err(Failure::Missing));
        for bad in ["Basic abc", "Bearer", "Bearer ", "abc"] {
            assert_eq!(
                presented(&headers("authorization", bad)),
                Err(Failure::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            presented(&headers("x-api-key", " ")),
            Err(Failure::Malformed)
        );
    }

    #[test]
    fn the_policy_finds_a_routes_method_and_namespace() {
        let mut policy = RoutePolicy::default();
        policy.add(
            "/qs/{ns}/{queue}",
            vec![
                (Method::GET, Access::Namespace(Role::Consumer)),
                (Method::POST, Access::Namespace(Role::Producer)),
            ],
        );
        policy.add("/qs", vec![(Method::GET, Access::Listing)]);
        policy.add("/healthz", vec![(Method::GET, Access::Open)]);
        let m = policy.find(&Method::POST, "/qs/media/q").unwrap();
        assert_eq!(m.template, "/qs/{ns}/{queue}");
        assert_eq!(m.access, Some(Access::Namespace(Role::Producer)));
        assert_eq!(m.namespace, Some("media"));
        assert_eq!(policy.find(&Method::PUT, "/qs/a/b").unwrap().access, None);
        assert_eq!(
            policy.find(&Method::GET, "/qs").unwrap().access,
            Some(Access::Listing)
        );
        assert!(policy.find(&Method::GET, "/nowhere").is_none());
        assert_eq!(
            policy.find(&Method::HEAD, "/healthz").unwrap().access,
            Some(Access::Open),
            "an open route's 405s are open too"
        );
    }
}
