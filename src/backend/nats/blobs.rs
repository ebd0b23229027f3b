//! Blobs by id (`/tbs`, the data a header-only pop leaves readable, and
//! what a reference push gives its element):
//! each a message of its namespace's stream on a subject of its own,
//! `blobq.{ns}._b.{id}`, with the element's headers and a per-message TTL
//! for its lifetime. No consumer takes these subjects, so work-queue
//! retention keeps a blob until its TTL or a delete purges the subject.
//! `_b` is no escaped name (names.rs), so no queue shares the subject.
//!
//! A blob past the inline threshold is an object (objects.rs) that the
//! blob's message names; a reference push copies a small blob's bytes into
//! its element, and makes the element hold a large blob's object.

use std::sync::Arc;

use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::HeaderMap;
use bytes::Bytes;

use super::holders::{with_end, Holder};
use super::objects::Body;
use super::queues::nats_error;
use super::{message, names, Inner};
use crate::backend::ids::{BlobId, ElementId};
use crate::backend::name::Name;
use crate::backend::{
    BackendError, BlobRead, IncomingBody, Payload, PushOptions, Pushed, StoredBlob,
};

fn not_found(ns: &Name, id: &str) -> BackendError {
    BackendError::BlobNotFound {
        namespace: ns.clone(),
        id: id.to_owned(),
    }
}

impl Inner {
    pub(super) async fn store_blob(
        &self,
        ns: &Name,
        body: IncomingBody,
        opts: PushOptions,
    ) -> Result<StoredBlob, BackendError> {
        self.link.js()?;
        let data = self.take_in(ns, body).await?;
        self.namespace_stream(ns).await?;
        let id = BlobId::random();
        let holder = Holder::Blob(id);
        let object = data.object();
        if let Some(object) = object {
            if let Err(e) = self.hold(ns, &object.key, holder, opts.lifetime).await {
                self.let_go(ns, &object.key, holder).await;
                return Err(e);
            }
        }
        let headers = message::headers(
            ElementId::random(),
            Some(id),
            object,
            &opts.meta,
            opts.lifetime,
        );
        let size = data.size();
        let subject = names::blob_subject(ns, id);
        if let Err(e) = self.publish(ns, &subject, headers, data.payload()).await {
            if let Some(object) = object {
                self.let_go(ns, &object.key, holder).await;
            }
            return Err(e);
        }
        let meta = message::meta_of(&opts.meta);
        Ok(StoredBlob {
            id,
            size,
            lifetime: opts.lifetime,
            meta,
        })
    }

    /// Keeps a copy of an element's data readable by `blob_id` for the
    /// lifetime it has left (a header-only pop), stored once however often
    /// the element is popped so.
    pub(super) async fn expose(
        &self,
        ns: &Name,
        blob_id: BlobId,
        described: &message::Described,
        headers: Option<&HeaderMap>,
        data: Bytes,
    ) -> Result<(), BackendError> {
        let empty = HeaderMap::new();
        let headers = headers.unwrap_or(&empty);
        if let Some(object) = &described.object {
            let seconds_left = message::seconds_left(described.expires_ms);
            self.hold(ns, &object.key, Holder::Blob(blob_id), seconds_left)
                .await?;
        }
        let msg_id = format!("blob.{blob_id}");
        let headers = message::copy_headers(described, headers, &msg_id);
        self.publish(ns, &names::blob_subject(ns, blob_id), headers, data)
            .await
    }

    /// Blob `id`'s description and bytes, if it is there and alive.
    pub(super) async fn load_blob(
        &self,
        ns: &Name,
        id: &str,
    ) -> Result<(BlobId, message::Described, Bytes), BackendError> {
        let blob_id: BlobId = id.parse().map_err(|_| not_found(ns, id))?;
        let Some(stream) = self.find_stream(ns).await? else {
            return Err(not_found(ns, id));
        };
        let subject = names::blob_subject(ns, blob_id);
        let stored = match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(stored) => stored,
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {
                return Err(not_found(ns, id))
            }
            Err(e) => return Err(nats_error("reading the blob", e)),
        };
        let stored_ms = message::millis(stored.time.unix_timestamp_nanos());
        let described =
            message::describe(Some(&stored.headers), stored_ms).ok_or_else(|| not_found(ns, id))?;
        if described.expires_ms <= message::now_ms() {
            return Err(not_found(ns, id));
        }
        Ok((blob_id, described, stored.payload))
    }

    pub(super) async fn read_blob(
        self: &Arc<Self>,
        ns: &Name,
        id: &str,
        delete_after: bool,
    ) -> Result<BlobRead, BackendError> {
        let (blob_id, described, data) = self.load_blob(ns, id).await?;
        let (size, body) = match &described.object {
            None => {
                if delete_after && self.purge_blob(ns, blob_id).await? == 0 {
                    return Err(not_found(ns, id));
                }
                (data.len() as u64, Payload::Bytes(data))
            }
            Some(object) => {
                let stream = self
                    .open_object(ns, object)
                    .await?
                    .ok_or_else(|| not_found(ns, id))?;
                let stream = if delete_after {
                    if self.purge_blob(ns, blob_id).await? == 0 {
                        return Err(not_found(ns, id));
                    }
                    with_end(stream, self.let_go_later(ns, object, Holder::Blob(blob_id)))
                } else {
                    stream
                };
                let len = object.size;
                (
                    len,
                    Payload::Stream {
                        len,
                        chunks: stream,
                    },
                )
            }
        };
        Ok(BlobRead {
            id: blob_id,
            meta: described.meta,
            size,
            seconds_left: message::seconds_left(described.expires_ms),
            body,
        })
    }

    /// A header-only element, or one whose data is a copy of blob `blob`
    /// (the element's blob id is the blob's; metadata it does not give is
    /// the blob's).
    pub(super) async fn push_reference(
        &self,
        ns: &Name,
        queue: &Name,
        blob: Option<&str>,
        opts: PushOptions,
    ) -> Result<Pushed, BackendError> {
        self.link.js()?;
        let (blob_id, data, meta) = self.referenced(ns, blob, opts.meta).await?;
        self.queue(ns, queue).await?;
        let id = ElementId::random();
        self.hold_referenced(ns, blob.unwrap_or_default(), &data, id, opts.lifetime)
            .await?;
        let headers = message::headers(id, blob_id, data.object(), &meta, opts.lifetime);
        let size = data.size();
        let subject = names::subject(ns, queue);
        if let Err(e) = self.publish(ns, &subject, headers, data.payload()).await {
            if let Some(object) = data.object() {
                self.let_go(ns, &object.key, Holder::Element(id)).await;
            }
            return Err(e);
        }
        self.counters.pushed(ns, queue);
        Ok(Pushed {
            id,
            blob_id,
            size,
            lifetime: opts.lifetime,
        })
    }

    /// Makes element `id`, pushed by reference to blob `blob`, hold the
    /// blob's object if its data is one; `404` if the object went meanwhile
    /// (the blob was deleted between its reading and now).
    pub(super) async fn hold_referenced(
        &self,
        ns: &Name,
        blob: &str,
        data: &Body,
        id: ElementId,
        lifetime: u64,
    ) -> Result<(), BackendError> {
        let Some(object) = data.object() else {
            return Ok(());
        };
        let holder = Holder::Element(id);
        self.hold(ns, &object.key, holder, lifetime).await?;
        if !self.object_exists(ns, &object.key).await? {
            self.let_go(ns, &object.key, holder).await;
            return Err(not_found(ns, blob));
        }
        Ok(())
    }

    pub(super) async fn delete_blob(&self, ns: &Name, id: &str) -> Result<(), BackendError> {
        let blob_id: BlobId = id.parse().map_err(|_| not_found(ns, id))?;
        let Some(stream) = self.find_stream(ns).await? else {
            return Err(not_found(ns, id));
        };
        let subject = names::blob_subject(ns, blob_id);
        let object = match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(stored) => message::describe(Some(&stored.headers), 0).and_then(|d| d.object),
            Err(_) => None,
        };
        if self.purge_blob(ns, blob_id).await? == 0 {
            return Err(not_found(ns, id));
        }
        if let Some(object) = object {
            self.let_go(ns, &object.key, Holder::Blob(blob_id)).await;
        }
        Ok(())
    }

    /// Removes blob `blob_id`'s message (not its object); how many went.
    async fn purge_blob(&self, ns: &Name, blob_id: BlobId) -> Result<u64, BackendError> {
        let Some(stream) = self.find_stream(ns).await? else {
            return Ok(0);
        };
        let purged = stream
            .purge()
            .filter(names::blob_subject(ns, blob_id))
            .await
            .map_err(|e| nats_error("deleting the blob", e))?;
        Ok(purged.purged)
    }
}
