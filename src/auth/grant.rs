//! What a credential grants: roles on namespace patterns, and what a route
//! asks of its caller ([`Access`]). Static tokens and JWTs both become a
//! [`Grant`], so the decision is made in one place whatever the credential.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The four roles of the contract. `Admin` includes the other three.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Producer,
    Consumer,
    Observer,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Producer, Role::Consumer, Role::Observer, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
            Role::Observer => "observer",
            Role::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.name() == s)
            .ok_or_else(|| {
                format!("unknown role {s:?} (known: producer, consumer, observer, admin)")
            })
    }
}

/// A set of roles, one bit each.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    pub fn insert(&mut self, role: Role) {
        self.0 |= role.bit();
    }

    /// Whether the set grants `role`, directly or through `admin`.
    pub fn grants(self, role: Role) -> bool {
        self.0 & (role.bit() | Role::Admin.bit()) != 0
    }
}

impl fmt::Debug for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = Role::ALL.into_iter().filter(|r| self.0 & r.bit() != 0);
        f.debug_list().entries(names.map(Role::name)).finish()
    }
}

/// The namespaces a credential names: one name, every name starting with a
/// prefix (`media-*`), or every namespace (`*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespacePattern {
    Exact(Box<str>),
    Prefix(Box<str>),
    Any,
}

impl NamespacePattern {
    pub fn matches(&self, namespace: &str) -> bool {
        match self {
            NamespacePattern::Exact(name) => **name == *namespace,
            NamespacePattern::Prefix(prefix) => namespace.starts_with(&**prefix),
            NamespacePattern::Any => true,
        }
    }
}

impl FromStr for NamespacePattern {
    type Err = String;

    /// A name, or a prefix followed by `*`, in the characters a name may
    /// hold: a pattern that could never match is a mistake worth reporting.
    fn from_str(s: &str) -> Result<NamespacePattern, String> {
        let (text, prefix) = match s.strip_suffix('*') {
            Some("") => return Ok(NamespacePattern::Any),
            Some(prefix) => (prefix, true),
            None => (s, false),
        };
        let valid_chars = text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if text.is_empty() || text.len() > crate::backend::name::MAX_NAME_LEN || !valid_chars {
            return Err(format!(
                "namespace pattern {s:?} is not a name, a prefix ending in '*', or '*'"
            ));
        }
        Ok(if prefix {
            NamespacePattern::Prefix(text.into())
        } else {
            NamespacePattern::Exact(text.into())
        })
    }
}

/// Roles on namespaces: every role applies to every namespace listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    pub namespaces: Vec<NamespacePattern>,
    pub roles: Roles,
}

impl Grant {
    /// Parses the textual fields of a token entry or a JWT's claims.
    /// `lenient` skips what cannot be parsed (a JWT's claims, written by an
    /// identity provider, may carry roles meant for others) instead of
    /// refusing it (a token entry, written by the operator).
    pub fn parse(namespaces: &[String], roles: &[String], lenient: bool) -> Result<Grant, String> {
        let mut grant = Grant::default();
        for text in namespaces {
            match text.parse() {
                Ok(pattern) => grant.namespaces.push(pattern),
                Err(e) if !lenient => return Err(e),
                Err(_) => {}
            }
        }
        for text in roles {
            match text.parse() {
                Ok(role) => grant.roles.insert(role),
                Err(e) if !lenient => return Err(e),
                Err(_) => {}
            }
        }
        Ok(grant)
    }

    /// `role` on `namespace`.
    pub fn allows(&self, role: Role, namespace: &str) -> bool {
        self.roles.grants(role) && self.namespaces.iter().any(|p| p.matches(namespace))
    }

    /// `role` on every namespace (`*`).
    pub fn allows_everywhere(&self, role: Role) -> bool {
        self.roles.grants(role) && self.namespaces.contains(&NamespacePattern::Any)
    }

    /// `role` on at least one namespace.
    pub fn allows_somewhere(&self, role: Role) -> bool {
        self.roles.grants(role) && !self.namespaces.is_empty()
    }
}

/// An authenticated caller: who (for logs: a token's name or a JWT's
/// subject, never the credential) and what it may do.
#[derive(Clone, Debug)]
pub struct Caller {
    pub name: Arc<str>,
    pub grant: Arc<Grant>,
}

/// What a route's method asks of its caller, declared in the route table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, with or without a credential (`/healthz`).
    Open,
    /// The role on the namespace named by the route's `{ns}`.
    Namespace(Role),
    /// Either role on the route's `{ns}` (reading a job: its producer or
    /// an observer).
    EitherNamespace(Role, Role),
    /// `observer` on at least one namespace; the answer then shows only
    /// what the caller may observe (`GET /qs`).
    Listing,
    /// `admin` on `*`, unless `--metrics-open` (`/metrics`).
    Metrics,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(namespaces: &[&str], roles: &[&str]) -> Grant {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Grant::parse(&owned(namespaces), &owned(roles), false).unwrap()
    }

    #[test]
    fn patterns_match_a_name_a_prefix_or_everything() {
        let g = grant(&["media", "media-*"], &["producer"]);
        assert!(g.allows(Role::Producer, "media"));
        assert!(g.allows(Role::Producer, "media-eu"));
        assert!(!g.allows(Role::Producer, "mediaX"));
        assert!(!g.allows(Role::Producer, "other"));
        assert!(!g.allows(Role::Consumer, "media"));
        assert!(!g.allows_everywhere(Role::Producer));
        let star = grant(&["*"], &["observer"]);
        assert!(star.allows(Role::Observer, "anything"));
        assert!(star.allows_everywhere(Role::Observer));
        assert!(!star.allows_everywhere(Role::Admin));
    }

    #[test]
    fn admin_grants_every_role_on_its_namespaces_only() {
        let g = grant(&["ops"], &["admin"]);
        for role in Role::ALL {
            assert!(g.allows(role, "ops"), "{role}");
            assert!(!g.allows(role, "other"), "{role}");
        }
        assert!(!g.allows_everywhere(Role::Admin));
        assert!(grant(&["*"], &["admin"]).allows_everywhere(Role::Admin));
    }

    #[test]
    fn bad_patterns_and_roles_are_refused_in_entries_and_skipped_in_claims() {
        for bad in ["", "a b", "a*b", "**", "x/*"] {
            assert!(bad.parse::<NamespacePattern>().is_err(), "{bad:?}");
        }
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (ns, roles) = (owned(&["ok", "not ok"]), owned(&["consumer", "root"]));
        assert!(Grant::parse(&ns, &roles, false).is_err());
        let lenient = Grant::parse(&ns, &roles, true).unwrap();
        assert_eq!(
            lenient.namespaces,
            vec![NamespacePattern::Exact("ok".into())]
        );
        assert!(lenient.allows(Role::Consumer, "ok"));
        assert!(!lenient.allows(Role::Admin, "ok"));
    }
}
