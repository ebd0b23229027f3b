//! Why a request was refused ([`Failure`], the `reason` label of
//! `blobq_auth_failures`), and the log of refusals, at most one line a
//! second for each client address so that a flood of bad attempts cannot
//! flood the log too.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Why a request was refused. All but `Forbidden` are `401`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No credential at all.
    Missing,
    /// Not a bearer token, not visible ASCII, or not a well-formed JWT.
    Malformed,
    /// A token no entry has, or a JWT whose key is not known.
    Unknown,
    Expired,
    NotYetValid,
    BadSignature,
    WrongIssuer,
    WrongAudience,
    /// A valid credential without the role or the namespace: `403`.
    Forbidden,
}

impl Failure {
    pub const ALL: [Failure; 9] = [
        Failure::Missing,
        Failure::Malformed,
        Failure::Unknown,
        Failure::Expired,
        Failure::NotYetValid,
        Failure::BadSignature,
        Failure::WrongIssuer,
        Failure::WrongAudience,
        Failure::Forbidden,
    ];

    /// The metric's label value.
    pub fn reason(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Malformed => "malformed",
            Failure::Unknown => "unknown",
            Failure::Expired => "expired",
            Failure::NotYetValid => "not_yet_valid",
            Failure::BadSignature => "bad_signature",
            Failure::WrongIssuer => "wrong_issuer",
            Failure::WrongAudience => "wrong_audience",
            Failure::Forbidden => "forbidden",
        }
    }

    /// What the client is told.
    pub fn detail(self) -> &'static str {
        match self {
            Failure::Missing => {
                "a credential is required: Authorization: Bearer <token> or X-Api-Key: <token>"
            }
            Failure::Malformed => "the credential is malformed",
            Failure::Unknown => "the credential is not known",
            Failure::Expired => "the token has expired",
            Failure::NotYetValid => "the token is not valid yet",
            Failure::BadSignature => "the token's signature does not verify",
            Failure::WrongIssuer => "the token was not issued by the configured issuer",
            Failure::WrongAudience => "the token is not meant for this audience",
            Failure::Forbidden => "the credential does not grant this on this namespace",
        }
    }

    /// Its index in [`Failure::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The client addresses already logged in the current second. Cleared when
/// the second turns, so it holds no more than the addresses that failed
/// within one second.
pub struct FailureLog {
    started: Instant,
    logged: Mutex<(u64, HashSet<Option<IpAddr>>)>,
}

impl Default for FailureLog {
    fn default() -> Self {
        FailureLog {
            started: Instant::now(),
            logged: Mutex::new((0, HashSet::new())),
        }
    }
}

impl FailureLog {
    /// Whether a refusal of a request from `peer` should be logged now:
    /// the first in this second from that address.
    pub fn should_log(&self, peer: Option<IpAddr>) -> bool {
        let second = self.started.elapsed().as_secs();
        let mut logged = self
            .logged
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if logged.0 != second {
            logged.0 = second;
            logged.1.clear();
        }
        logged.1.insert(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_is_logged_once_a_second() {
        let log = FailureLog::default();
        let (a, b) = (
            Some(IpAddr::from([10, 0, 0, 1])),
            Some(IpAddr::from([10, 0, 0, 2])),
        );
        assert!(log.should_log(a));
        assert!(!log.should_log(a));
        assert!(log.should_log(b));
        assert!(!log.should_log(b));
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(log.should_log(a));
    }

    #[test]
    fn reasons_are_distinct_and_indexed_in_order() {
        for (i, f) in Failure::ALL.into_iter().enumerate() {
            assert_eq!(f.index(), i);
        }
        let mut reasons: Vec<_> = Failure::ALL.iter().map(|f| f.reason()).collect();
        reasons.dedup();
        assert_eq!(reasons.len(), Failure::ALL.len());
    }
}
