//! Streams and consumers made on demand, pushes, purges and the move of an
//! element to its dead-letter queue.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{AckKind, Message};
use bytes::Bytes;
use futures_util::StreamExt as _;

use super::connection::unavailable;
use super::holders::Holder;
use super::{message, names, Inner};
use crate::backend::ids::{BlobId, ElementId};
use crate::backend::name::Name;
use crate::backend::{BackendError, IncomingBody, PushOptions, Pushed};

/// Messages a purge takes from JetStream in one fetch.
const PURGE_BATCH: usize = 256;
/// Request timeouts a publish and its resends may take in all (a resend
/// keeps the `Nats-Msg-Id`, so JetStream keeps the message once); also
/// what a push may take from an object's last byte to its marker, or from
/// its marker to its element (holders.rs).
pub(super) const PUBLISH_TIMEOUTS: u32 = 3;
/// Longest one request to make or find a stream or a consumer is waited
/// for before it is asked again.
const MAKE_ATTEMPT: Duration = Duration::from_secs(1);
/// Pause before the first resend of a publish, doubled before each next
/// one up to `PUBLISH_RETRY_PAUSE_MOST`.
const PUBLISH_RETRY_PAUSE: Duration = Duration::from_millis(250);
const PUBLISH_RETRY_PAUSE_MOST: Duration = Duration::from_secs(1);

/// Whether looking up a stream failed because it does not exist.
pub fn stream_missing(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    use async_nats::jetstream::context::GetStreamErrorKind;
    use async_nats::jetstream::ErrorCode;
    matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// A NATS failure as the client learns it: `503`, with what it asked.
pub fn nats_error(what: &str, e: impl std::fmt::Display) -> BackendError {
    tracing::debug!(error = %e, "{what} failed");
    unavailable(&format!("NATS JetStream did not complete {what} ({e})"))
}

impl Inner {
    /// Replicas a new stream gets: the setting, or 1 on a server that is
    /// not part of a cluster (it cannot keep more).
    pub(super) fn replicas(&self) -> usize {
        match self.link.client() {
            Some(client) if client.server_info().cluster.is_some() => self.config.replicas,
            _ => 1,
        }
    }

    /// Namespace `ns`'s stream, made if missing.
    pub(super) async fn namespace_stream(&self, ns: &Name) -> Result<stream::Stream, BackendError> {
        let js = self.link.js()?;
        let quota = self.quotas.get(ns.as_str()).unwrap_or(&self.quota);
        let config = stream::Config {
            name: names::stream(ns),
            subjects: vec![names::stream_subjects(ns)],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            num_replicas: self.replicas(),
            allow_message_ttl: true,
            // Batch pushes publish atomically (batch.rs).
            allow_atomic_publish: true,
            max_messages: quota.max_elements as i64,
            max_bytes: quota.max_bytes as i64,
            discard: DiscardPolicy::New,
            ..stream::Config::default()
        };
        self.until_made("making the namespace's stream", || {
            js.get_or_create_stream(config.clone())
        })
        .await
    }

    /// `make`'s answer, asked again for up to a request timeout while it
    /// fails or does not come: while another request makes a stream, or
    /// its leader is being elected, requests about it go unanswered or are
    /// refused at once.
    async fn until_made<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
        &self,
        what: &str,
        make: impl Fn() -> F,
    ) -> Result<T, BackendError> {
        let deadline = tokio::time::Instant::now() + self.config.request_timeout;
        loop {
            let failure = match tokio::time::timeout(MAKE_ATTEMPT, make()).await {
                Ok(Ok(made)) => return Ok(made),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() + MAKE_ATTEMPT >= deadline {
                return Err(nats_error(what, failure));
            }
            tokio::time::sleep(MAKE_ATTEMPT / 10).await;
        }
    }

    /// The consumer of `queue`, made (with its namespace's stream) if
    /// missing; remembered for the next operations.
    pub(super) async fn queue(
        &self,
        ns: &Name,
        queue: &Name,
    ) -> Result<PullConsumer, BackendError> {
        let key = (ns.clone(), queue.clone());
        if let Some(consumer) = self.consumers.get(&key) {
            return Ok(consumer.clone());
        }
        let stream = self.namespace_stream(ns).await?;
        let name = names::consumer(queue);
        let config = pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: names::subject(ns, queue),
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.config.ack_wait,
            // Dead-lettering is blobq's, when a lease ends (leases.rs).
            max_deliver: -1,
            max_ack_pending: -1,
            ..pull::Config::default()
        };
        let consumer = self
            .until_made("making the queue's consumer", || {
                stream.get_or_create_consumer(&name, config.clone())
            })
            .await?;
        self.consumers.insert(key, consumer.clone());
        Ok(consumer)
    }

    /// The consumer of `queue` if it exists, without making anything.
    pub(super) async fn existing_queue(
        &self,
        ns: &Name,
        queue: &Name,
    ) -> Result<Option<PullConsumer>, BackendError> {
        let key = (ns.clone(), queue.clone());
        if let Some(consumer) = self.consumers.get(&key) {
            return Ok(Some(consumer.clone()));
        }
        let js = self.link.js()?;
        let stream = match js.get_stream(names::stream(ns)).await {
            Ok(stream) => stream,
            Err(e) if stream_missing(&e) => return Ok(None),
            Err(e) => return Err(nats_error("looking up the namespace's stream", e)),
        };
        match stream
            .get_consumer::<pull::Config>(&names::consumer(queue))
            .await
        {
            Ok(consumer) => {
                self.consumers.insert(key, consumer.clone());
                Ok(Some(consumer))
            }
            Err(e) if e.to_string().contains("consumer not found") => Ok(None),
            Err(e) => Err(nats_error("looking up the queue's consumer", e)),
        }
    }

    pub(super) async fn push(
        &self,
        ns: &Name,
        queue: &Name,
        body: IncomingBody,
        opts: PushOptions,
    ) -> Result<Pushed, BackendError> {
        self.link.js()?;
        let data = self.take_in(ns, body).await?;
        self.queue(ns, queue).await?;
        let (id, blob_id) = (ElementId::random(), BlobId::random());
        let holder = Holder::Element(id);
        if let Some(object) = data.object() {
            if let Err(e) = self.hold(ns, &object.key, holder, opts.lifetime).await {
                self.let_go(ns, &object.key, holder).await;
                return Err(e);
            }
        }
        let headers = message::headers(id, Some(blob_id), data.object(), &opts.meta, opts.lifetime);
        let size = data.size();
        if let Err(e) = self
            .publish(ns, &names::subject(ns, queue), headers, data.payload())
            .await
        {
            // The stream may be gone (deleted, or lost with its peers):
            // the next push makes it again rather than trust the cache.
            self.consumers.remove(&(ns.clone(), queue.clone()));
            if let Some(object) = data.object() {
                self.let_go(ns, &object.key, holder).await;
            }
            return Err(e);
        }
        self.counters.pushed(ns, queue);
        Ok(Pushed {
            id,
            blob_id: Some(blob_id),
            size,
            lifetime: opts.lifetime,
        })
    }

    /// Publishes and waits for JetStream's acknowledgement, sending again
    /// (the same message id) if it does not come.
    pub(super) async fn publish(
        &self,
        ns: &Name,
        subject: &str,
        headers: async_nats::HeaderMap,
        data: Bytes,
    ) -> Result<(), BackendError> {
        let js = self.link.js()?;
        let started = tokio::time::Instant::now();
        let budget = self.config.request_timeout * PUBLISH_TIMEOUTS;
        let mut pause = PUBLISH_RETRY_PAUSE;
        let last = loop {
            let sent = self
                .bursts
                .publish(js, subject.to_owned(), headers.clone(), data.clone())
                .await;
            let acked = match sent {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            let text = match acked {
                Ok(_) => return Ok(()),
                Err(e) => e.to_string(),
            };
            // The stream's limits are the namespace's quota.
            if text.contains("maximum messages") || text.contains("maximum bytes") {
                return Err(self.over_quota(ns));
            }
            // Sent again while a whole attempt still fits: a stream just
            // made, or electing a leader, refuses at once for a while.
            if started.elapsed() + pause + self.config.request_timeout > budget {
                break text;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(PUBLISH_RETRY_PAUSE_MOST);
        };
        Err(unavailable(&format!(
            "NATS JetStream did not acknowledge the push ({last}); it may or may not have been stored"
        )))
    }

    /// The refusal of a write past namespace `ns`'s quota.
    pub(super) fn over_quota(&self, ns: &Name) -> BackendError {
        BackendError::OverQuota {
            namespace: ns.clone(),
            reason: "its stream holds the most elements or bytes it may".into(),
            retry_after: self.quota_retry_after,
        }
    }

    /// Removes every ready element of `queue` by taking and acknowledging
    /// them: leased ones are out with their consumers and are not taken.
    pub(super) async fn purge(&self, ns: &Name, queue: &Name) -> Result<u64, BackendError> {
        let Some(consumer) = self.existing_queue(ns, queue).await? else {
            return Ok(0);
        };
        let mut purged = 0u64;
        loop {
            let mut batch = consumer
                .fetch()
                .max_messages(PURGE_BATCH)
                .messages()
                .await
                .map_err(|e| nats_error("the purge", e))?;
            let mut taken = 0usize;
            while let Some(msg) = batch.next().await {
                let msg = msg.map_err(|e| nats_error("the purge", e))?;
                msg.double_ack_with(AckKind::Ack)
                    .await
                    .map_err(|e| nats_error("the purge", e))?;
                self.element_gone(ns, msg.headers.as_ref()).await;
                taken += 1;
            }
            purged += taken as u64;
            if taken < PURGE_BATCH {
                return Ok(purged);
            }
        }
    }

    /// Moves `msg` of `queue` to `{queue}.dead`: a copy published there,
    /// then the original acknowledged. If the copy cannot be stored, the
    /// original is handed out again and moved at its next delivery.
    pub(super) async fn dead_letter(&self, ns: &Name, queue: &Name, msg: Message) {
        let moved = async {
            let dead = queue
                .dead_letter()
                .ok_or_else(|| BackendError::NoDeadLetterQueue(queue.clone()))?;
            self.queue(ns, &dead).await?;
            let info = msg.info().map_err(|e| nats_error("dead-lettering", e))?;
            let stored_ms = message::millis(info.published.unix_timestamp_nanos());
            let empty = async_nats::HeaderMap::new();
            let original = msg.headers.as_ref().unwrap_or(&empty);
            // Only elements blobq wrote are handed out (pop.rs).
            let described = message::describe(Some(original), stored_ms)
                .ok_or_else(|| nats_error("dead-lettering", "a message blobq did not write"))?;
            let msg_id = format!("{}.dead.{}", msg.subject, info.stream_sequence);
            let headers = message::copy_headers(&described, original, &msg_id);
            self.publish(ns, &names::subject(ns, &dead), headers, msg.payload.clone())
                .await?;
            msg.double_ack_with(AckKind::Ack)
                .await
                .map_err(|e| nats_error("dead-lettering", e))?;
            self.counters.pushed(ns, &dead);
            Ok::<(), BackendError>(())
        };
        if let Err(e) = moved.await {
            tracing::warn!(namespace = %ns, queue = %queue, error = %e, "could not move an element to its dead-letter queue; it will be delivered again");
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
        }
    }
}
