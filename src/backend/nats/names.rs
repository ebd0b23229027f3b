//! How blobq's names become JetStream's: a stream per namespace, a subject
//! and a durable pull consumer per queue.
//!
//! blobq names may hold `.`, which separates subject tokens and is not
//! allowed in stream or consumer names, and `..` or a leading `.`, which
//! would make an empty token. Every name is therefore escaped into one
//! token of `[0-9a-zA-Z_-]`: `_` becomes `_u` and `.` becomes `_d`, which
//! reads back unambiguously, so listings recover the names.

use crate::backend::ids::BlobId;
use crate::backend::name::Name;

/// Prefix of every stream blobq makes, so that its listing skips others.
pub const STREAM_PREFIX: &str = "BLOBQ_";
/// First token of every subject blobq publishes to.
const SUBJECT_PREFIX: &str = "blobq";

/// `name` as one subject token, stream or consumer name.
pub fn escape(name: &Name) -> String {
    let mut out = String::with_capacity(name.as_str().len() + 4);
    for c in name.as_str().chars() {
        match c {
            '_' => out.push_str("_u"),
            '.' => out.push_str("_d"),
            c => out.push(c),
        }
    }
    out
}

/// The name `escaped` came from; `None` if it is not an escaped name.
pub fn unescape(escaped: &str) -> Option<Name> {
    let mut out = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        match c {
            '_' => match chars.next()? {
                'u' => out.push('_'),
                'd' => out.push('.'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Name::parse(&out).ok()
}

/// The stream holding namespace `ns`.
pub fn stream(ns: &Name) -> String {
    format!("{STREAM_PREFIX}{}", escape(ns))
}

/// The namespace of stream `stream`, if blobq made it.
pub fn namespace_of(stream: &str) -> Option<Name> {
    unescape(stream.strip_prefix(STREAM_PREFIX)?)
}

/// Every subject of namespace `ns`'s stream.
pub fn stream_subjects(ns: &Name) -> String {
    format!("{SUBJECT_PREFIX}.{}.>", escape(ns))
}

/// The subject queue `queue`'s elements are published to.
pub fn subject(ns: &Name, queue: &Name) -> String {
    format!("{SUBJECT_PREFIX}.{}.{}", escape(ns), escape(queue))
}

/// Middle token of blob subjects: no escaped name is `_b`.
const BLOBS: &str = "_b";

/// The subject blob `id` of namespace `ns` is kept on.
pub fn blob_subject(ns: &Name, id: BlobId) -> String {
    format!("{SUBJECT_PREFIX}.{}.{BLOBS}.{id}", escape(ns))
}

/// Whether `subject` is a blob's rather than a queue's.
pub fn is_blob_subject(subject: &str) -> bool {
    subject.split('.').nth(2) == Some(BLOBS)
}

/// The durable consumer queue `queue` is popped through.
pub fn consumer(queue: &Name) -> String {
    escape(queue)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_escape_into_one_token_and_read_back() {
        for raw in ["q", "a.b", "a..b", ".x", "x.", "a_b", "_d", "a-b_.u", "Z9"] {
            let name = Name::parse(raw).unwrap();
            let token = escape(&name);
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                "{token}"
            );
            assert_eq!(unescape(&token), Some(name.clone()), "{raw}");
            assert_eq!(namespace_of(&stream(&name)), Some(name));
        }
        let (a, b) = (Name::parse("a_d").unwrap(), Name::parse("a.").unwrap());
        assert_ne!(escape(&a), escape(&b));
        assert_eq!(unescape("a_x"), None);
        assert_eq!(namespace_of("OTHER"), None);
        let ns = Name::parse("n.s").unwrap();
        let q = Name::parse("q.dead").unwrap();
        assert_eq!(subject(&ns, &q), "blobq.n_ds.q_ddead");
        assert_eq!(stream_subjects(&ns), "blobq.n_ds.>");
        let blob = blob_subject(&ns, BlobId::from_u128(1));
        assert!(is_blob_subject(&blob) && !is_blob_subject(&subject(&ns, &q)));
    }
}
