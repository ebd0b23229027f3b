//! Identifiers handed to clients.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use uuid::Uuid;

/// Identifies a blob within its namespace. Random (UUID v4: 122 random bits)
/// because knowing a blob id is what lets a client read or delete the blob.
/// Serialized as its hyphenated text, written without a `String`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize)]
#[serde(transparent)]
pub struct BlobId(Uuid);

impl BlobId {
    /// The id's UUID, for formatting without an allocation.
    pub fn uuid(self) -> Uuid {
        self.0
    }

    pub fn random() -> BlobId {
        BlobId(Uuid::new_v4())
    }

    /// The id as a number, as the log stores it.
    pub fn to_u128(self) -> u128 {
        self.0.as_u128()
    }

    pub fn from_u128(n: u128) -> BlobId {
        BlobId(Uuid::from_u128(n))
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// A string that is not a blob id; the store answers "not found" for it, the
/// same as for an id that does not exist.
#[derive(Debug, thiserror::Error)]
#[error("not a blob id")]
pub struct BadBlobId;

impl FromStr for BlobId {
    type Err = BadBlobId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::try_parse(s).map(BlobId).map_err(|_| BadBlobId)
    }
}

/// Identifies one element. Random too, so that element ids from different
/// servers or restarts never collide in a client's logs or dedup tables.
/// Serialized as its hyphenated text, written without a `String`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(transparent)]
pub struct ElementId(Uuid);

impl ElementId {
    /// The id's UUID, for formatting without an allocation.
    pub fn uuid(self) -> Uuid {
        self.0
    }

    pub fn random() -> ElementId {
        ElementId(Uuid::new_v4())
    }

    /// The id as a number, as the log stores it.
    pub fn to_u128(self) -> u128 {
        self.0.as_u128()
    }

    pub fn from_u128(n: u128) -> ElementId {
        ElementId(Uuid::from_u128(n))
    }
}

impl fmt::Display for ElementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// Identifies one lease. Random, because holding a receipt is what allows a
/// consumer to acknowledge, release or extend the lease.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Receipt(Uuid);

impl Receipt {
    /// The id's UUID, for formatting without an allocation.
    pub fn uuid(self) -> Uuid {
        self.0
    }

    pub fn random() -> Receipt {
        Receipt(Uuid::new_v4())
    }
}

impl fmt::Display for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for Receipt {
    type Err = BadBlobId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::try_parse(s).map(Receipt).map_err(|_| BadBlobId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_ids_round_trip_and_differ() {
        let a = BlobId::random();
        let b = BlobId::random();
        assert_ne!(a, b);
        assert_eq!(a.to_string().parse::<BlobId>().unwrap(), a);
        assert!("../etc/passwd".parse::<BlobId>().is_err());
    }
}
