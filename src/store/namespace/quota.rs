//! What a namespace may hold, and the checks a push or stored blob passes.

use super::NsState;
use crate::backend::name::Name;

/// Limits on what one namespace may hold; 0 means no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    #[serde(default)]
    pub max_elements: u64,
    #[serde(default)]
    pub max_bytes: u64,
}

/// Which quota a push would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuotaExceeded {
    #[error("the namespace holds its maximum of {0} elements")]
    Elements(u64),
    #[error("the namespace would hold more than its maximum of {0} bytes")]
    Bytes(u64),
}

impl Quota {
    /// Refuses `more_elements` and `more_bytes` on top of what a namespace
    /// holds (`elements` and `bytes`) if that would break a limit.
    pub fn check(
        &self,
        (elements, bytes): (u64, u64),
        (more_elements, more_bytes): (u64, u64),
    ) -> Result<(), QuotaExceeded> {
        if self.max_elements > 0 && elements + more_elements > self.max_elements {
            return Err(QuotaExceeded::Elements(self.max_elements));
        }
        if self.max_bytes > 0 && bytes + more_bytes > self.max_bytes {
            return Err(QuotaExceeded::Bytes(self.max_bytes));
        }
        Ok(())
    }
}

impl NsState {
    /// Refuses what would take the namespace past its quota: `elements` more
    /// held elements and `bytes` more stored bytes.
    pub fn check_quota(&self, elements: u64, bytes: u64) -> Result<(), QuotaExceeded> {
        let held = (self.elements_held, self.blob_bytes);
        self.quota.check(held, (elements, bytes))
    }

    /// Takes `n` places of the element quota for elements kept outside
    /// the queues.
    pub fn hold_elements(&mut self, n: u64) -> Result<(), QuotaExceeded> {
        self.check_quota(n, 0)?;
        self.elements_held += n;
        self.held_outside += n;
        Ok(())
    }

    /// `hold_elements` for jobs read back at start-up: never refused.
    pub fn hold_elements_restored(&mut self, n: u64) {
        self.elements_held += n;
        self.held_outside += n;
    }

    /// Gives back places taken with `hold_elements`.
    pub fn release_elements(&mut self, n: u64) {
        let n = n.min(self.held_outside);
        self.held_outside -= n;
        self.elements_held -= n;
    }
}

impl NsState {
    /// Whether queue `queue` exists, or may be made with the namespace
    /// holding fewer than `limit` queues.
    pub fn may_make_queue(&self, queue: &Name, limit: usize) -> bool {
        self.queues.len() < limit || self.queues.contains_key(queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_of_zero_is_no_limit_and_a_full_namespace_refuses_one_more() {
        let none = Quota::default();
        assert_eq!(none.check((u64::MAX / 2, u64::MAX / 2), (1, 1)), Ok(()));
        let q = Quota {
            max_elements: 2,
            max_bytes: 10,
        };
        assert_eq!(q.check((1, 0), (1, 10)), Ok(()));
        assert_eq!(q.check((2, 0), (1, 0)), Err(QuotaExceeded::Elements(2)));
        assert_eq!(q.check((0, 6), (1, 5)), Err(QuotaExceeded::Bytes(10)));
    }
}
