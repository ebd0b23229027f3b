//! Batches on JetStream: a batch push is one atomic batch publish
//! (`Nats-Batch-Id`, `Nats-Batch-Sequence`, `Nats-Batch-Commit`: the stream
//! stores every message or none, and none is visible before the commit);
//! a batch pop waits for its first element only, then takes what else is
//! ready in one fetch; a batch acknowledgement settles each lease.

use std::sync::Arc;

use async_nats::header::{
    NATS_BATCH_COMMIT, NATS_BATCH_COMMIT_FINAL, NATS_BATCH_ID, NATS_BATCH_SEQUENCE,
};
use async_nats::HeaderMap;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;

use super::forward::Settle;
use super::holders::Holder;
use super::objects::Body;
use super::queues::nats_error;
use super::{message, names, Inner};
use crate::backend::ids::{BlobId, ElementId};
use crate::backend::name::Name;
use crate::backend::{
    Acked, BackendError, BatchElement, BatchPush, IncomingBody, MetaInput, PartError, PopOptions,
    PushOptions, Pushed,
};

/// A part received, not yet published.
enum Part {
    /// Its body, in memory or (past the inline threshold) an object.
    Data(Body, PushOptions),
    /// A reference push: looked up at the commit.
    Reference(Option<String>, PushOptions),
}

/// A batch push: its parts held in memory until the commit (a large part
/// as an object, which a dropped batch leaves to the sweep, holders.rs).
pub struct NatsBatchPush {
    inner: Arc<Inner>,
    ns: Name,
    queue: Name,
    parts: Vec<Part>,
}

impl NatsBatchPush {
    pub(super) fn new(inner: Arc<Inner>, ns: &Name, queue: &Name) -> NatsBatchPush {
        NatsBatchPush {
            inner,
            ns: ns.clone(),
            queue: queue.clone(),
            parts: Vec::new(),
        }
    }
}

#[async_trait]
impl BatchPush for NatsBatchPush {
    async fn add(&mut self, body: IncomingBody, opts: PushOptions) -> Result<(), BackendError> {
        let data = self.inner.take_in(&self.ns, body).await?;
        self.parts.push(Part::Data(data, opts));
        Ok(())
    }

    async fn add_reference(
        &mut self,
        blob: Option<&str>,
        opts: PushOptions,
    ) -> Result<(), BackendError> {
        self.parts
            .push(Part::Reference(blob.map(str::to_owned), opts));
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<Vec<Pushed>, PartError> {
        let NatsBatchPush {
            inner,
            ns,
            queue,
            parts,
        } = *self;
        let mut messages = Vec::with_capacity(parts.len());
        let mut pushed = Vec::with_capacity(parts.len());
        // The objects this batch's elements hold, let go of if it fails.
        let mut held = Vec::new();
        let built = async {
            if parts.is_empty() {
                return Ok(());
            }
            // The namespace's stream first: holding an object publishes a
            // marker to it.
            inner.queue(&ns, &queue).await.map_err(PartError::whole)?;
            for (i, part) in parts.into_iter().enumerate() {
                let id = ElementId::random();
                let (blob_id, data, meta, lifetime) = match part {
                    Part::Data(data, opts) => {
                        if let Some(object) = data.object() {
                            inner
                                .hold(&ns, &object.key, Holder::Element(id), opts.lifetime)
                                .await
                                .map_err(|e| PartError::at(i, e))?;
                        }
                        (Some(BlobId::random()), data, opts.meta, opts.lifetime)
                    }
                    Part::Reference(blob, opts) => {
                        let blob = blob.as_deref();
                        let (blob_id, data, meta) = inner
                            .referenced(&ns, blob, opts.meta)
                            .await
                            .map_err(|e| PartError::at(i, e))?;
                        let name = blob.unwrap_or_default();
                        inner
                            .hold_referenced(&ns, name, &data, id, opts.lifetime)
                            .await
                            .map_err(|e| PartError::at(i, e))?;
                        (blob_id, data, meta, opts.lifetime)
                    }
                };
                if let Some(object) = data.object() {
                    held.push((object.key.clone(), id));
                }
                pushed.push(Pushed {
                    id,
                    blob_id,
                    size: data.size(),
                    lifetime,
                });
                let headers = message::headers(id, blob_id, data.object(), &meta, lifetime);
                messages.push((headers, data.payload()));
            }
            inner
                .publish_batch(&ns, &names::subject(&ns, &queue), messages)
                .await
                .map_err(PartError::whole)
        }
        .await;
        if let Err(e) = built {
            for (key, id) in held {
                inner.let_go(&ns, &key, Holder::Element(id)).await;
            }
            return Err(e);
        }
        for _ in &pushed {
            inner.counters.pushed(&ns, &queue);
        }
        Ok(pushed)
    }
}

impl Inner {
    /// The data, blob id and metadata of a reference part or push.
    pub(super) async fn referenced(
        &self,
        ns: &Name,
        blob: Option<&str>,
        given: MetaInput,
    ) -> Result<(Option<BlobId>, Body, MetaInput), BackendError> {
        let Some(id) = blob else {
            return Ok((None, Body::Inline(Bytes::new()), given));
        };
        let (blob_id, described, data) = self.load_blob(ns, id).await?;
        let meta = MetaInput {
            content_type: given
                .content_type
                .or_else(|| Some(described.meta.content_type.clone())),
            custom: if given.custom.is_empty() {
                described.meta.custom.to_vec()
            } else {
                given.custom
            },
        };
        let data = match described.object {
            Some(object) => Body::Object(object),
            None => Body::Inline(data),
        };
        Ok((Some(blob_id), data, meta))
    }

    /// Publishes `messages` as one atomic batch, waiting for the commit's
    /// acknowledgement.
    async fn publish_batch(
        &self,
        ns: &Name,
        subject: &str,
        messages: Vec<(HeaderMap, Bytes)>,
    ) -> Result<(), BackendError> {
        let client = self
            .link
            .client()
            .ok_or_else(|| nats_error("the batch push", "not connected"))?;
        let batch = uuid::Uuid::new_v4().simple().to_string();
        let last = messages.len();
        for (i, (mut headers, data)) in messages.into_iter().enumerate() {
            headers.insert(NATS_BATCH_ID, batch.as_str());
            headers.insert(NATS_BATCH_SEQUENCE, (i + 1).to_string().as_str());
            if i + 1 < last {
                client
                    .publish_with_headers(subject.to_owned(), headers, data)
                    .await
                    .map_err(|e| nats_error("the batch push", e))?;
            } else {
                headers.insert(NATS_BATCH_COMMIT, NATS_BATCH_COMMIT_FINAL);
                self.publish(ns, subject, headers, data).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn pop_batch(
        self: Arc<Self>,
        ns: &Name,
        queue: &Name,
        opts: PopOptions,
        count: usize,
    ) -> Result<Vec<BatchElement>, BackendError> {
        let Some(first) = self.clone().pop(ns, queue, opts).await? else {
            return Ok(Vec::new());
        };
        let mut out = vec![BatchElement::Popped(first)];
        let Some(consumer) = self.existing_queue(ns, queue).await? else {
            return Ok(out);
        };
        let more = count.saturating_sub(1);
        if more == 0 {
            return Ok(out);
        }
        let mut fetched = consumer
            .fetch()
            .max_messages(more)
            .messages()
            .await
            .map_err(|e| nats_error("the batch pop", e))?;
        let mut deliveries = Vec::new();
        while let Some(msg) = fetched.next().await {
            let msg = msg.map_err(|e| nats_error("the batch pop", e))?;
            deliveries.push(self.delivered(msg));
        }
        for delivery in deliveries {
            if let Some(popped) = self.take(ns, queue, delivery, opts).await? {
                out.push(BatchElement::Popped(popped));
            }
        }
        Ok(out)
    }

    pub(super) async fn ack_batch(
        &self,
        ns: &Name,
        queue: &Name,
        receipts: &[String],
    ) -> Result<Acked, BackendError> {
        let mut acked = Acked::default();
        for receipt in receipts {
            match self.settle(ns, queue, receipt, Settle::Ack).await {
                Ok(_) => acked.acked.push(receipt.clone()),
                Err(BackendError::LeaseNotFound { .. }) => acked.unknown.push(receipt.clone()),
                Err(e) => return Err(e),
            }
        }
        Ok(acked)
    }
}
