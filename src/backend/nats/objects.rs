//! Bodies past the inline threshold, kept as objects: in a JetStream object
//! store bucket per namespace (`BLOBQ_{ns}`, chunked by the client), or in
//! S3 at `{prefix}/{ns}/{object}` (multipart uploads). Either way a body is
//! streamed in and out chunk by chunk, never held whole, and its size and
//! SHA-256 travel in the element's headers (message.rs) and are checked as
//! it streams out. Who may still need an object, and so when it goes, is
//! holders.rs's business.

use std::io;
use std::sync::{Arc, Mutex};

use async_nats::jetstream::object_store::{self as js_objects, ObjectMetadata};
use async_nats::jetstream::stream::StorageType;
use bytes::{Bytes, BytesMut};
use futures_util::{stream, StreamExt as _, TryStreamExt as _};
use object_store::{ObjectStore as _, WriteMultipart};
use sha2::{Digest as _, Sha256};
use tokio_util::io::StreamReader;

mod integrity;

use integrity::{checked, lock, Meter};

use super::message::ObjectRef;
use super::queues::nats_error;
use super::store_config::BlobStore;
use super::{names, Inner};
use crate::backend::name::Name;
use crate::backend::{BackendError, BodyStream, IncomingBody};

/// Bytes an S3 multipart upload sends in one part (S3's least is 5 MiB).
const S3_PART: usize = 5 * 1024 * 1024;
/// Parts of one upload in flight at once: what a body may hold in memory.
const S3_PARTS_IN_FLIGHT: usize = 2;
/// Room left in a message for blobq's headers.
const HEADER_ROOM: u64 = 4096;

/// A body as it is kept.
pub enum Body {
    /// In the element's message.
    Inline(Bytes),
    /// In the object store; the message carries no payload.
    Object(ObjectRef),
}

impl Body {
    pub fn size(&self) -> u64 {
        match self {
            Body::Inline(bytes) => bytes.len() as u64,
            Body::Object(object) => object.size,
        }
    }

    /// What the element's message carries as its payload.
    pub fn payload(&self) -> Bytes {
        match self {
            Body::Inline(bytes) => bytes.clone(),
            Body::Object(_) => Bytes::new(),
        }
    }

    pub fn object(&self) -> Option<&ObjectRef> {
        match self {
            Body::Inline(_) => None,
            Body::Object(object) => Some(object),
        }
    }
}

fn s3_error(what: &str, e: object_store::Error) -> BackendError {
    nats_error(what, format!("S3: {e}"))
}

impl Inner {
    /// The largest body kept in a message: `--nats-max-inline`, within
    /// what the server takes in one message.
    fn inline_limit(&self) -> u64 {
        let server = self.link.client().map_or(u64::MAX, |c| {
            (c.server_info().max_payload as u64).saturating_sub(HEADER_ROOM)
        });
        self.config.max_inline.min(server)
    }

    /// Reads `body`: whole up to the inline threshold, streamed into an
    /// object past it; refused (`413`) past `--max-element-size`.
    pub(super) async fn take_in(
        &self,
        ns: &Name,
        body: IncomingBody,
    ) -> Result<Body, BackendError> {
        let limit = self.max_element_size;
        if body.announced.is_some_and(|n| n > limit) {
            return Err(BackendError::TooLarge { limit });
        }
        let inline = self.inline_limit();
        let mut chunks = body.chunks;
        let mut first = BytesMut::new();
        if body.announced.is_none_or(|n| n <= inline) {
            first.reserve(body.announced.unwrap_or(0) as usize);
            loop {
                match chunks.next().await {
                    None => return Ok(Body::Inline(first.freeze())),
                    Some(chunk) => first.extend_from_slice(&chunk?),
                }
                if first.len() as u64 > inline {
                    break;
                }
            }
        }
        let first = first.freeze();
        let rest = stream::iter((!first.is_empty()).then_some(Ok(first))).chain(chunks);
        self.put_object(ns, Box::pin(rest), limit)
            .await
            .map(Body::Object)
    }

    /// Streams `chunks` into a new object of `ns`; a body that fails or
    /// grows past `limit` stores nothing.
    async fn put_object(
        &self,
        ns: &Name,
        chunks: BodyStream,
        limit: u64,
    ) -> Result<ObjectRef, BackendError> {
        let key = uuid::Uuid::new_v4().simple().to_string();
        let meter = Arc::new(Mutex::new(Meter {
            limit,
            size: 0,
            sha256: Sha256::new(),
            failure: None,
        }));
        match &self.config.blob_store {
            BlobStore::Nats => {
                let bucket = self.bucket(ns, true).await?.ok_or_else(|| {
                    nats_error("storing the body", "the namespace's bucket is missing")
                })?;
                // A body that fails ends the reader early: the object is
                // then stored short and deleted at once, so that no chunk
                // stays behind without the object that would delete it.
                let metered =
                    stream::unfold((chunks, meter.clone()), |(mut chunks, meter)| async {
                        let passed = match chunks.next().await? {
                            Ok(chunk) => lock(&meter).pass(&chunk).map(|()| chunk),
                            Err(e) => Err(e.into()),
                        };
                        match passed {
                            Ok(chunk) => Some((Ok::<Bytes, io::Error>(chunk), (chunks, meter))),
                            Err(e) => {
                                lock(&meter).failure = Some(e);
                                None
                            }
                        }
                    });
                let mut reader = StreamReader::new(Box::pin(metered));
                let meta = ObjectMetadata {
                    name: key.clone(),
                    ..ObjectMetadata::default()
                };
                let put = bucket.put(meta, &mut reader).await;
                let failure = lock(&meter).failure.take();
                if let Err(e) = put {
                    let text = e.to_string();
                    if text.contains("maximum bytes") {
                        return Err(self.over_quota(ns));
                    }
                    return Err(failure.unwrap_or_else(|| nats_error("storing the body", text)));
                }
                if let Some(failure) = failure {
                    let _ = bucket.delete(&key).await;
                    return Err(failure);
                }
            }
            BlobStore::S3 { store, .. } => {
                let path = self.s3_path(ns, &key);
                let upload = store
                    .put_multipart(&path)
                    .await
                    .map_err(|e| s3_error("storing the body", e))?;
                let mut writer = WriteMultipart::new_with_chunk_size(upload, S3_PART);
                let mut chunks = chunks;
                let written = async {
                    while let Some(chunk) = chunks.next().await {
                        let chunk = chunk?;
                        lock(&meter).pass(&chunk)?;
                        writer
                            .wait_for_capacity(S3_PARTS_IN_FLIGHT)
                            .await
                            .map_err(|e| s3_error("storing the body", e))?;
                        writer.put(chunk);
                    }
                    Ok::<(), BackendError>(())
                }
                .await;
                match written {
                    Ok(()) => {
                        writer
                            .finish()
                            .await
                            .map_err(|e| s3_error("storing the body", e))?;
                    }
                    Err(e) => {
                        let _ = writer.abort().await;
                        return Err(e);
                    }
                }
            }
        }
        let object = lock(&meter).finish(key);
        Ok(object)
    }

    /// The bytes of `object`, checked against its size and SHA-256 as they
    /// stream; `None` if the object is not there.
    pub(super) async fn open_object(
        &self,
        ns: &Name,
        object: &ObjectRef,
    ) -> Result<Option<BodyStream<io::Error>>, BackendError> {
        let raw: BodyStream<io::Error> = match &self.config.blob_store {
            BlobStore::Nats => {
                let Some(bucket) = self.bucket(ns, false).await? else {
                    return Ok(None);
                };
                let info = match bucket.info(&object.key).await {
                    Ok(info) if !info.deleted => info,
                    Ok(_) => return Ok(None),
                    Err(e) if matches!(e.kind(), js_objects::InfoErrorKind::NotFound) => {
                        return Ok(None)
                    }
                    Err(e) => return Err(nats_error("reading the body", e)),
                };
                let stream = self
                    .link
                    .js()?
                    .get_stream(format!("OBJ_{}", names::stream(ns)))
                    .await
                    .map_err(|e| nats_error("reading the body", e))?;
                chunks_of(stream, &info)
            }
            BlobStore::S3 { store, .. } => match store.get(&self.s3_path(ns, &object.key)).await {
                Ok(got) => Box::pin(got.into_stream().map_err(io::Error::other)),
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(s3_error("reading the body", e)),
            },
        };
        Ok(Some(checked(raw, object.clone())))
    }

    /// Whether `key` is stored.
    pub(super) async fn object_exists(&self, ns: &Name, key: &str) -> Result<bool, BackendError> {
        match &self.config.blob_store {
            BlobStore::Nats => {
                let Some(bucket) = self.bucket(ns, false).await? else {
                    return Ok(false);
                };
                match bucket.info(key).await {
                    Ok(info) => Ok(!info.deleted),
                    Err(e) if matches!(e.kind(), js_objects::InfoErrorKind::NotFound) => Ok(false),
                    Err(e) => Err(nats_error("looking up the body", e)),
                }
            }
            BlobStore::S3 { store, .. } => match store.head(&self.s3_path(ns, key)).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(s3_error("looking up the body", e)),
            },
        }
    }

    /// Deletes `key`; one already gone is no error.
    pub(super) async fn delete_object(&self, ns: &Name, key: &str) -> Result<(), BackendError> {
        match &self.config.blob_store {
            BlobStore::Nats => {
                let Some(bucket) = self.bucket(ns, false).await? else {
                    return Ok(());
                };
                match bucket.delete(key).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.to_string().contains("not found") => Ok(()),
                    Err(e) => Err(nats_error("deleting the body", e)),
                }
            }
            BlobStore::S3 { store, .. } => match store.delete(&self.s3_path(ns, key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(s3_error("deleting the body", e)),
            },
        }
    }

    /// Every object of `ns`, with when it was stored (epoch milliseconds).
    pub(super) async fn list_objects(&self, ns: &Name) -> Result<Vec<(String, u64)>, BackendError> {
        match &self.config.blob_store {
            BlobStore::Nats => {
                let Some(bucket) = self.bucket(ns, false).await? else {
                    return Ok(Vec::new());
                };
                let infos: Vec<_> = bucket
                    .list()
                    .await
                    .map_err(|e| nats_error("listing the bodies", e))?
                    .try_collect()
                    .await
                    .map_err(|e| nats_error("listing the bodies", e))?;
                Ok(infos
                    .into_iter()
                    .map(|i| {
                        let ms = i.modified.map_or(0, |m| {
                            u64::try_from(m.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
                        });
                        (i.name, ms)
                    })
                    .collect())
            }
            BlobStore::S3 { store, prefix, .. } => {
                let under = prefix.child(names::escape(ns));
                let metas: Vec<_> = store
                    .list(Some(&under))
                    .try_collect()
                    .await
                    .map_err(|e| s3_error("listing the bodies", e))?;
                Ok(metas
                    .into_iter()
                    .filter_map(|m| {
                        let key = m.location.filename()?.to_owned();
                        let ms = u64::try_from(m.last_modified.timestamp_millis()).unwrap_or(0);
                        Some((key, ms))
                    })
                    .collect())
            }
        }
    }

    fn s3_path(&self, ns: &Name, key: &str) -> object_store::path::Path {
        match &self.config.blob_store {
            BlobStore::S3 { prefix, .. } => prefix.child(names::escape(ns)).child(key),
            BlobStore::Nats => object_store::path::Path::from(key),
        }
    }

    /// Namespace `ns`'s object store bucket; made if `create`, else `None`
    /// when missing. Its byte limit is the namespace's quota.
    async fn bucket(
        &self,
        ns: &Name,
        create: bool,
    ) -> Result<Option<js_objects::ObjectStore>, BackendError> {
        let js = self.link.js()?;
        let name = names::stream(ns);
        match js.get_object_store(&name).await {
            Ok(bucket) => return Ok(Some(bucket)),
            Err(e) if !e.to_string().contains("not found") => {
                return Err(nats_error("opening the namespace's bucket", e))
            }
            Err(_) if !create => return Ok(None),
            Err(_) => {}
        }
        let quota = self.quotas.get(ns.as_str()).unwrap_or(&self.quota);
        let config = js_objects::Config {
            bucket: name,
            storage: StorageType::File,
            num_replicas: self.replicas(),
            max_bytes: i64::try_from(quota.max_bytes).unwrap_or(i64::MAX),
            ..js_objects::Config::default()
        };
        js.create_object_store(config)
            .await
            .map(Some)
            .map_err(|e| nats_error("making the namespace's bucket", e))
    }
}

/// The chunks of object `info`, read one at a time from its bucket's
/// stream (a direct get of the next message on its chunk subject), so that
/// no more than a chunk is held however fast the server could send.
fn chunks_of(
    stream: async_nats::jetstream::stream::Stream,
    info: &js_objects::ObjectInfo,
) -> BodyStream<io::Error> {
    let subject = format!("$O.{}.C.{}", info.bucket, info.nuid);
    let state = (stream, subject, 1u64, info.chunks);
    Box::pin(stream::unfold(
        state,
        |(stream, subject, next, left)| async move {
            if left == 0 {
                return None;
            }
            match stream
                .direct_get_next_for_subject(&*subject, Some(next))
                .await
            {
                Ok(msg) => {
                    let next = msg.sequence + 1;
                    Some((Ok(msg.payload), (stream, subject, next, left - 1)))
                }
                Err(e) => Some((Err(io::Error::other(e)), (stream, subject, next, 0))),
            }
        },
    ))
}
