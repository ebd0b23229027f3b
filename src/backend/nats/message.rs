//! An element as a JetStream message: its bytes are the payload (or, past
//! the inline threshold, an object named in its headers), and what blobq
//! knows of it travels in headers, so that any node can pop it.

use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use smol_str::SmolStr;

use crate::backend::ids::{BlobId, ElementId};
use crate::backend::meta::{CustomPair, Metadata, SharedMeta};
use crate::backend::MetaInput;

/// The element id (also the `Nats-Msg-Id`, for de-duplication).
const ID: &str = "Blobq-Id";
/// The id of the element's data as a blob.
const BLOB_ID: &str = "Blobq-Blob-Id";
const CONTENT_TYPE: &str = "Blobq-Content-Type";
/// The custom pairs, as a JSON array of `[key, value]`: a value may end in
/// spaces, which a header line would lose.
const CUSTOM: &str = "Blobq-Custom";
/// When the element's lifetime ends, in milliseconds since the epoch.
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
    /// Milliseconds since the epoch.
    pub expires_ms: u64,
    /// Where the data is, when not in the message.
    pub object: Option<ObjectRef>,
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
    h.insert(async_nats::header::NATS_MESSAGE_ID, id.to_string().as_str());
    h.insert(
        async_nats::header::NATS_MESSAGE_TTL,
        lifetime.max(1).to_string().as_str(),
    );
    h.insert(ID, id.to_string().as_str());
    if let Some(blob_id) = blob_id {
        h.insert(BLOB_ID, blob_id.to_string().as_str());
    }
    if let Some(content_type) = &meta.content_type {
        h.insert(CONTENT_TYPE, content_type.as_str());
    }
    if !meta.custom.is_empty() {
        let pairs: Vec<(&str, &str)> = meta.custom.iter().map(|p| (&*p.key, &*p.value)).collect();
        if let Ok(json) = serde_json::to_string(&pairs) {
            h.insert(CUSTOM, json.as_str());
        }
    }
    let expires = now_ms().saturating_add(lifetime.saturating_mul(1000));
    h.insert(EXPIRES, expires.to_string().as_str());
    h
}

/// The headers of a copy of an element (dead-lettering): the same
/// element, de-duplicated under its own message id, with the lifetime it
/// has left.
pub fn copy_headers(original: &HeaderMap, msg_id: &str, seconds_left: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    let keys = [
        ID,
        BLOB_ID,
        CONTENT_TYPE,
        CUSTOM,
        EXPIRES,
        OBJECT,
        OBJECT_SIZE,
        OBJECT_SHA256,
    ];
    for key in keys {
        if let Some(value) = original.get(key) {
            h.insert(key, value.as_str());
        }
    }
    h.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
    h.insert(
        async_nats::header::NATS_MESSAGE_TTL,
        seconds_left.max(1).to_string().as_str(),
    );
    h
}

/// The element a message holds; `None` if blobq did not write it.
pub fn describe(headers: Option<&HeaderMap>) -> Option<Described> {
    let h = headers?;
    let get = |key: &str| h.get(key).map(|v| v.as_str());
    let id: ElementId = ElementId::from_u128(get(ID)?.parse::<uuid::Uuid>().ok()?.as_u128());
    let blob_id = get(BLOB_ID).and_then(|v| v.parse::<BlobId>().ok());
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
        expires_ms: get(EXPIRES)?.parse().ok()?,
        object,
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
        let d = describe(Some(&h)).expect("an element");
        assert_eq!((d.id, d.blob_id), (id, Some(blob)));
        assert_eq!(&*d.meta.content_type, "text/plain");
        assert_eq!(&*d.meta.custom[0].value, "v with end  ");
        assert!((59..=60).contains(&seconds_left(d.expires_ms)));
        let copy = copy_headers(&h, "x", 5);
        let c = describe(Some(&copy)).expect("the same element");
        assert_eq!(c.id, id);
        assert_eq!(c.object.as_ref(), Some(&object));
        assert!(describe(Some(&HeaderMap::new())).is_none());
        let plain = headers(id, None, None, &MetaInput::default(), 1);
        let plain = describe(Some(&plain)).unwrap();
        assert_eq!((plain.meta, plain.blob_id), (Metadata::plain(), None));
        assert_eq!(plain.object, None);
    }
}
