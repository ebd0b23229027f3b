//! An element as a JetStream message: its bytes are the payload (or, past
//! the inline threshold, an object named in its headers), and what blobq
//! knows of it travels in headers, so that any node can pop it.

use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use smol_str::SmolStr;

use crate::backend::ids::{BlobId, ElementId};
use crate::backend::meta::{CustomPair, Metadata, SharedMeta};
use crate::backend::MetaInput;

/// The element id and the id of its data as a blob, on a copy (a dead
/// letter, an exposed blob), whose `Nats-Msg-Id` is its own. A pushed
/// element's message carries both in its `Nats-Msg-Id` instead
/// (`msg_id`): every header is stored three times and read by each
/// server, and these would repeat what the message id says.
const ID: &str = "Blobq-Id";
const BLOB_ID: &str = "Blobq-Blob-Id";
const CONTENT_TYPE: &str = "Blobq-Content-Type";
/// The custom pairs, as a JSON array of `[key, value]`: a value may end in
/// spaces, which a header line would lose.
const CUSTOM: &str = "Blobq-Custom";
/// When the element's lifetime ends, in milliseconds since the epoch, on a
/// copy; a pushed element's ends its `Nats-TTL` after JetStream stored it.
const EXPIRES: &str = "Blobq-Expires";
/// The object holding the element's data when it is past the inline
/// threshold (objects.rs), its size in bytes and its SHA-256 (hex).
const OBJECT: &str = "Blobq-Object";
const OBJECT_SIZE: &str = "Blobq-Object-Size";
const OBJECT_SHA256: &str = "Blobq-Object-Sha256";

/// An element's data kept as an object of the namespace's object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// The object's name in the store: 32 hex digits.
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

/// What a message's headers say of its element.
pub struct Described {
    pub id: ElementId,
    pub blob_id: Option<BlobId>,
    pub meta: SharedMeta,
    /// When its lifetime ends, in milliseconds since the epoch.
    pub expires_ms: u64,
    /// Where the data is, when not in the message.
    pub object: Option<ObjectRef>,
}

/// Milliseconds since the epoch of nanoseconds since the epoch (of the
/// time JetStream stored a message: its `published` or `time`).
pub fn millis(nanos: i128) -> u64 {
    u64::try_from(nanos / 1_000_000).unwrap_or(0)
}

/// A pushed element's `Nats-Msg-Id`: its id, then its blob's after a `/`.
fn msg_id(id: ElementId, blob_id: Option<BlobId>) -> String {
    match blob_id {
        Some(blob_id) => format!("{id}/{blob_id}"),
        None => id.to_string(),
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The headers of a new element: its ids, metadata and lifetime, as a
/// per-message TTL too, so that JetStream drops it when it ends.
pub fn headers(
    id: ElementId,
    blob_id: Option<BlobId>,
    object: Option<&ObjectRef>,
    meta: &MetaInput,
    lifetime: u64,
) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(object) = object {
        h.insert(OBJECT, object.key.as_str());
        h.insert(OBJECT_SIZE, object.size.to_string().as_str());
        h.insert(OBJECT_SHA256, object.sha256.as_str());
    }
    h.insert(
        async_nats::header::NATS_MESSAGE_ID,
        msg_id(id, blob_id).as_str(),
    );
    h.insert(
        async_nats::header::NATS_MESSAGE_TTL,
        lifetime.max(1).to_string().as_str(),
    );
    if let Some(content_type) = &meta.content_type {
        h.insert(CONTENT_TYPE, content_type.as_str());
    }
    if !meta.custom.is_empty() {
        let pairs: Vec<(&str, &str)> = meta.custom.iter().map(|p| (&*p.key, &*p.value)).collect();
        if let Ok(json) = serde_json::to_string(&pairs) {
            h.insert(CUSTOM, json.as_str());
        }
    }
    h
}

/// The headers of a copy of `original` (dead-lettering, exposing its
/// blob): the same element with the same end, de-duplicated under its own
/// message id, with the lifetime it has left as its TTL.
pub fn copy_headers(original: &Described, headers: &HeaderMap, msg_id: &str) -> HeaderMap {
    let expires_ms = original.expires_ms;
    let mut h = HeaderMap::new();
    for key in [CONTENT_TYPE, CUSTOM, OBJECT, OBJECT_SIZE, OBJECT_SHA256] {
        if let Some(value) = headers.get(key) {
            h.insert(key, value.as_str());
        }
    }
    h.insert(ID, original.id.to_string().as_str());
    if let Some(blob_id) = original.blob_id {
        h.insert(BLOB_ID, blob_id.to_string().as_str());
    }
    h.insert(EXPIRES, expires_ms.to_string().as_str());
    let seconds_left = seconds_left(expires_ms);
    h.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
    h.insert(
        async_nats::header::NATS_MESSAGE_TTL,
        seconds_left.max(1).to_string().as_str(),
    );
    h
}

/// The element a message holds; `None` if blobq did not write it.
/// `stored_ms` is when JetStream stored the message (its `published` or
/// `time`, see `millis`): a pushed element's lifetime counts from then.
/// Callers that want only the ids or the object pass 0.
pub fn describe(headers: Option<&HeaderMap>, stored_ms: u64) -> Option<Described> {
    let h = headers?;
    let get = |key: &str| h.get(key).map(|v| v.as_str());
    let element = |v: &str| {
        Some(ElementId::from_u128(
            v.parse::<uuid::Uuid>().ok()?.as_u128(),
        ))
    };
    let (id, blob_id) = match get(ID) {
        Some(id) => (
            element(id)?,
            get(BLOB_ID).and_then(|v| v.parse::<BlobId>().ok()),
        ),
        None => {
            let msg_id = h.get(async_nats::header::NATS_MESSAGE_ID)?.as_str();
            match msg_id.split_once('/') {
                Some((id, blob_id)) => (element(id)?, Some(blob_id.parse::<BlobId>().ok()?)),
                None => (element(msg_id)?, None),
            }
        }
    };
    let content_type = get(CONTENT_TYPE).map(SmolStr::new);
    let custom = match get(CUSTOM) {
        Some(json) => serde_json::from_str::<Vec<(String, String)>>(json)
            .ok()?
            .into_iter()
            .map(|(key, value)| CustomPair {
                key: key.into(),
                value: value.into(),
            })
            .collect(),
        None => Vec::new(),
    };
    let meta = if content_type.is_none() && custom.is_empty() {
        Metadata::plain()
    } else {
        SharedMeta::new(Metadata::with_default_type(content_type, custom))
    };
    let object = match get(OBJECT) {
        Some(key) => Some(ObjectRef {
            key: key.to_owned(),
            size: get(OBJECT_SIZE)?.parse().ok()?,
            sha256: get(OBJECT_SHA256)?.to_owned(),
        }),
        None => None,
    };
    Some(Described {
        id,
        blob_id,
        meta,
        object,
        expires_ms: match get(EXPIRES) {
            Some(ms) => ms.parse().ok()?,
            None => {
                let ttl: u64 = h
                    .get(async_nats::header::NATS_MESSAGE_TTL)?
                    .as_str()
                    .parse()
                    .ok()?;
                stored_ms.saturating_add(ttl.saturating_mul(1000))
            }
        },
    })
}

/// The metadata a client gave, as stored.
pub fn meta_of(meta: &MetaInput) -> SharedMeta {
    if meta.content_type.is_none() && meta.custom.is_empty() {
        Metadata::plain()
    } else {
        SharedMeta::new(Metadata::with_default_type(
            meta.content_type.clone(),
            meta.custom.clone(),
        ))
    }
}

/// Seconds left before `expires_ms`, rounded up: a live element never
/// shows 0.
pub fn seconds_left(expires_ms: u64) -> u64 {
    expires_ms.saturating_sub(now_ms()).div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_element_reads_back_from_its_headers() {
        let (id, blob) = (ElementId::random(), BlobId::random());
        let meta = MetaInput {
            content_type: Some("text/plain".into()),
            custom: vec![CustomPair::parse("k=v with end  ").unwrap()],
        };
        let object = ObjectRef {
            key: "k".into(),
            size: 7,
            sha256: "ab".into(),
        };
        let h = headers(id, Some(blob), Some(&object), &meta, 60);
        assert!(
            h.get(ID).is_none() && h.get(EXPIRES).is_none(),
            "the message id and TTL say it"
        );
        let stored = now_ms();
        let d = describe(Some(&h), stored).expect("an element");
        assert_eq!((d.id, d.blob_id), (id, Some(blob)));
        assert_eq!(&*d.meta.content_type, "text/plain");
        assert_eq!(&*d.meta.custom[0].value, "v with end  ");
        assert_eq!(d.expires_ms, stored + 60_000);
        assert!((59..=60).contains(&seconds_left(d.expires_ms)));
        // A copy has a message id of its own, and keeps its end whenever stored.
        let copy = copy_headers(&d, &h, "x");
        let c = describe(Some(&copy), stored + 5_000).expect("the same element");
        assert_eq!((c.id, c.blob_id), (id, Some(blob)));
        assert_eq!(c.expires_ms, d.expires_ms);
        assert_eq!(c.object.as_ref(), Some(&object));
        assert_eq!(&*c.meta.custom[0].value, "v with end  ");
        assert!(describe(Some(&HeaderMap::new()), stored).is_none());
        let plain = headers(id, None, None, &MetaInput::default(), 1);
        let plain = describe(Some(&plain), stored).unwrap();
        assert_eq!(
            (plain.id, plain.meta.clone(), plain.blob_id),
            (id, Metadata::plain(), None)
        );
        assert_eq!(plain.object, None);
        let copy = copy_headers(&plain, &HeaderMap::new(), "y");
        assert_eq!(describe(Some(&copy), 0).unwrap().blob_id, None);
    }
}
