//! Blobs by id (`/tbs`, the data a header-only pop leaves readable, and
//! what a reference push copies into its element):
//! each a message of its namespace's stream on a subject of its own,
//! `blobq.{ns}._b.{id}`, with the element's headers and a per-message TTL
//! for its lifetime. No consumer takes these subjects, so work-queue
//! retention keeps a blob until its TTL or a delete purges the subject.
//! `_b` is no escaped name (names.rs), so no queue shares the subject.

use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::HeaderMap;
use bytes::Bytes;

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
        let data = self.receive(body).await?;
        self.namespace_stream(ns).await?;
        let id = BlobId::random();
        let headers = message::headers(ElementId::random(), Some(id), &opts.meta, opts.lifetime);
        let size = data.len() as u64;
        self.publish(ns, &names::blob_subject(ns, id), headers, data)
            .await?;
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
        headers: Option<&HeaderMap>,
        data: Bytes,
        seconds_left: u64,
    ) -> Result<(), BackendError> {
        let empty = HeaderMap::new();
        let msg_id = format!("blob.{blob_id}");
        let headers = message::copy_headers(headers.unwrap_or(&empty), &msg_id, seconds_left);
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
        let described =
            message::describe(Some(&stored.headers)).ok_or_else(|| not_found(ns, id))?;
        if described.expires_ms <= message::now_ms() {
            return Err(not_found(ns, id));
        }
        Ok((blob_id, described, stored.payload))
    }

    pub(super) async fn read_blob(
        &self,
        ns: &Name,
        id: &str,
        delete_after: bool,
    ) -> Result<BlobRead, BackendError> {
        let (blob_id, described, data) = self.load_blob(ns, id).await?;
        if delete_after {
            self.delete_blob(ns, id).await?;
        }
        Ok(BlobRead {
            id: blob_id,
            meta: described.meta,
            size: data.len() as u64,
            seconds_left: message::seconds_left(described.expires_ms),
            body: Payload::Bytes(data),
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
        let headers = message::headers(id, blob_id, &meta, opts.lifetime);
        let size = data.len() as u64;
        self.publish(ns, &names::subject(ns, queue), headers, data)
            .await?;
        self.counters.pushed(ns, queue);
        Ok(Pushed {
            id,
            blob_id,
            size,
            lifetime: opts.lifetime,
        })
    }

    pub(super) async fn delete_blob(&self, ns: &Name, id: &str) -> Result<(), BackendError> {
        let blob_id: BlobId = id.parse().map_err(|_| not_found(ns, id))?;
        let Some(stream) = self.find_stream(ns).await? else {
            return Err(not_found(ns, id));
        };
        let purged = stream
            .purge()
            .filter(names::blob_subject(ns, blob_id))
            .await
            .map_err(|e| nats_error("deleting the blob", e))?;
        if purged.purged == 0 {
            return Err(not_found(ns, id));
        }
        Ok(())
    }
}
