//! Namespace and queue names: the one place that decides what a valid name is,
//! so an invalid name can never reach the store.

use std::borrow::Borrow;
use std::fmt;

use smol_str::SmolStr;

/// Longest name the contract allows.
pub const MAX_NAME_LEN: usize = 63;

/// A validated namespace or queue name: 1 to 63 characters of `[0-9a-zA-Z._-]`,
/// never `.` or `..`.
///
/// The same name is held by a map key, the expiry index and the sweeper's
/// wake list, and every request parses one or two: a `SmolStr` keeps names
/// up to 23 bytes inline (no allocation to parse, a copy to clone) and
/// longer ones behind an `Arc` (a reference count to clone).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(SmolStr);

/// Why a string is not a valid name; the message is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must be 1 to {MAX_NAME_LEN} characters long, got {0}")]
    Length(usize),
    #[error("may only contain 0-9, a-z, A-Z, '.', '_' and '-'")]
    Character,
    #[error("'.' and '..' are reserved")]
    Reserved,
}

impl Name {
    /// Validates `s` and returns it as a name.
    pub fn parse(s: &str) -> Result<Name, NameError> {
        if s.is_empty() || s.len() > MAX_NAME_LEN {
            return Err(NameError::Length(s.chars().count()));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(NameError::Character);
        }
        if s == "." || s == ".." {
            return Err(NameError::Reserved);
        }
        Ok(Name(SmolStr::new(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The dead-letter queue of this queue, `{name}.dead`; `None` when that
    /// would be longer than a name may be.
    pub fn dead_letter(&self) -> Option<Name> {
        Name::parse(&format!("{}.dead", self.0)).ok()
    }
}

/// A map keyed by names creates a missing entry from a borrowed one
/// (`entry_ref`): a clone of the name at hand, only when the entry is new.
impl From<&Name> for Name {
    fn from(name: &Name) -> Name {
        name.clone()
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_full_alphabet_and_both_length_limits() {
        for ok in ["a", "Z9", "a.b_c-d", "...", ".a", "a..", &"x".repeat(63)] {
            assert_eq!(Name::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn dead_letter_names_append_dead_while_they_fit() {
        assert_eq!(
            Name::parse("jobs").unwrap().dead_letter().unwrap().as_str(),
            "jobs.dead"
        );
        assert!(Name::parse(&"x".repeat(58))
            .unwrap()
            .dead_letter()
            .is_some());
        assert!(Name::parse(&"x".repeat(59))
            .unwrap()
            .dead_letter()
            .is_none());
    }

    #[test]
    fn refuses_bad_names_with_the_reason() {
        assert_eq!(Name::parse(""), Err(NameError::Length(0)));
        assert_eq!(Name::parse(&"x".repeat(64)), Err(NameError::Length(64)));
        assert_eq!(Name::parse("."), Err(NameError::Reserved));
        assert_eq!(Name::parse(".."), Err(NameError::Reserved));
        for bad in ["a/b", "a b", "a%2Fb", "é", "a\0", "a:b", "a+b"] {
            assert_eq!(Name::parse(bad), Err(NameError::Character), "{bad:?}");
        }
    }
}
