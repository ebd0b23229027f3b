//! Pops: a fetch from the queue's durable pull consumer, waiting up to the
//! pop's timeout with the pull request's `expires`.
//!
//! A delivery is held in a [`Delivery`] until it is answered, acknowledged
//! or leased; dropped before (its waiter went away, or the pop failed) it
//! is handed back to JetStream at once with `-NAK`, so the element goes to
//! the next consumer instead of waiting out the acknowledgement timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{AckKind, Message};
use async_nats::StatusCode;
use futures_util::StreamExt as _;
use tokio::sync::{oneshot, Notify};

use super::holders::{with_end, Holder};
use super::queues::nats_error;
use super::{message, names, Inner};
use crate::backend::name::Name;
use crate::backend::{BackendError, LeaseGrant, Payload, PopOptions, Popped};

/// Longest a statistics read or purge waits for this node's hand-backs
/// to reach JetStream, so that it sees its own node's pops settled.
const SETTLE_WAIT: Duration = Duration::from_secs(1);

/// How long past a pull request's expiry its answer may take to arrive,
/// and a hand-back after its waiter left.
const REQUEST_GRACE: Duration = Duration::from_secs(2);

/// Pause before a waiting pop asks again when nobody answered its pull.
const NO_RESPONDERS_PAUSE: Duration = Duration::from_millis(100);

/// Deliveries being handed back, counted so that a later read of the
/// same node can wait for them.
#[derive(Default)]
pub struct Settling {
    pending: AtomicU64,
    done: Notify,
}

impl Settling {
    /// Waits (a bounded time) until no hand-back is in flight.
    pub async fn wait(&self) {
        let _ = tokio::time::timeout(SETTLE_WAIT, async {
            loop {
                let done = self.done.notified();
                if self.pending.load(Ordering::Acquire) == 0 {
                    return;
                }
                done.await;
            }
        })
        .await;
    }

    /// Hands `msg` back with `-NAK` in a task of its own.
    fn hand_back(self: &Arc<Self>, msg: Message) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.pending.fetch_add(1, Ordering::AcqRel);
        let settling = self.clone();
        runtime.spawn(async move {
            if let Err(e) = msg.double_ack_with(AckKind::Nak(None)).await {
                tracing::debug!(error = %e, "could not hand a delivery back; it returns after the ack wait");
            }
            settling.pending.fetch_sub(1, Ordering::AcqRel);
            settling.done.notify_waiters();
        });
    }
}

/// A message delivered to this node and not yet settled: handed back if
/// dropped.
pub struct Delivery {
    msg: Option<Message>,
    settling: Arc<Settling>,
}

impl Delivery {
    fn new(msg: Message, settling: Arc<Settling>) -> Delivery {
        Delivery {
            msg: Some(msg),
            settling,
        }
    }

    pub(super) fn message(&self) -> &Message {
        self.msg.as_ref().expect("taken only by `into_message`")
    }

    /// The message, now the caller's to settle.
    pub(super) fn into_message(mut self) -> Message {
        self.msg.take().expect("taken once")
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(msg) = self.msg.take() {
            self.settling.hand_back(msg);
        }
    }
}

/// Counts this node's waiting pops while one lives.
struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    fn new(gauge: &'a AtomicU64) -> Waiting<'a> {
        gauge.fetch_add(1, Ordering::Relaxed);
        Waiting(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Inner {
    pub(super) async fn pop(
        self: Arc<Self>,
        ns: &Name,
        queue: &Name,
        opts: PopOptions,
    ) -> Result<Option<Popped>, BackendError> {
        if opts.lease.is_some() && queue.dead_letter().is_none() {
            return Err(BackendError::NoDeadLetterQueue(queue.clone()));
        }
        if !opts.wait.is_zero() && self.closing.is_cancelled() {
            return Err(BackendError::ShuttingDown);
        }
        self.link.js()?;
        self.settling.wait().await;
        // A pop that would not wait makes nothing; one that waits needs
        // the consumer to wait on.
        let consumer = if opts.wait.is_zero() {
            match self.existing_queue(ns, queue).await? {
                Some(consumer) => consumer,
                None => return Ok(None),
            }
        } else {
            self.queue(ns, queue).await?
        };
        let deadline = tokio::time::Instant::now() + opts.wait;
        loop {
            let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
            let names = (names::stream(ns), names::consumer(queue));
            let Some(delivery) = self.fetch_one(&consumer, names, wait).await? else {
                // Ended early (nobody answered for the consumer yet): again.
                if tokio::time::Instant::now() + NO_RESPONDERS_PAUSE < deadline {
                    continue;
                }
                return Ok(None);
            };
            if let Some(popped) = self.take(ns, queue, delivery, opts).await? {
                return Ok(Some(popped));
            }
        }
    }

    /// `msg`, held until it is settled.
    pub(super) fn delivered(&self, msg: Message) -> Delivery {
        Delivery::new(msg, self.settling.clone())
    }

    /// Hands `delivery` out as `opts` asks: acknowledged, or leased.
    /// `None` if it is not to be handed out: not an element blobq wrote
    /// (dropped), or one past its last delivery (dead-lettered).
    pub(super) async fn take(
        self: &Arc<Self>,
        ns: &Name,
        queue: &Name,
        delivery: Delivery,
        opts: PopOptions,
    ) -> Result<Option<Popped>, BackendError> {
        let msg = delivery.message();
        let info = msg.info().map_err(|e| nats_error("the pop", e))?;
        let stored_ms = message::millis(info.published.unix_timestamp_nanos());
        let Some(described) = message::describe(msg.headers.as_ref(), stored_ms) else {
            tracing::warn!(namespace = %ns, queue = %queue, "a message without blobq's headers was dropped from the queue");
            let _ = delivery.into_message().ack_with(AckKind::Term).await;
            return Ok(None);
        };
        let deliveries = u32::try_from(info.delivered.max(1)).unwrap_or(u32::MAX);
        if deliveries > self.max_deliveries {
            // Back after its last lease on a node that went away.
            self.dead_letter(ns, queue, delivery.into_message()).await;
            return Ok(None);
        }
        let data = msg.payload.clone();
        let seconds_left = message::seconds_left(described.expires_ms);
        let size = described
            .object
            .as_ref()
            .map_or(data.len() as u64, |o| o.size);
        if let (false, Some(blob_id)) = (opts.with_data, described.blob_id) {
            // Dropped on failure, the delivery is handed back.
            let headers = msg.headers.as_ref();
            self.expose(ns, blob_id, &described, headers, data.clone())
                .await?;
        }
        // An element without a blob (a header-only push) has no body.
        let sends_data = opts.with_data && described.blob_id.is_some();
        let object = match &described.object {
            Some(object) if sends_data => match self.open_object(ns, object).await? {
                Some(stream) => Some((object, stream)),
                None => {
                    tracing::warn!(namespace = %ns, queue = %queue, object = %object.key, "an element whose object is gone was dropped from the queue");
                    let _ = delivery.into_message().double_ack_with(AckKind::Term).await;
                    return Ok(None);
                }
            },
            _ => None,
        };
        let holder = Holder::Element(described.id);
        let lease = match opts.lease {
            Some(lease) => {
                let msg = delivery.into_message();
                let receipt = self.leases.grant(self, ns, queue, msg, lease);
                Some(LeaseGrant {
                    receipt,
                    deliveries,
                    seconds_left: lease.as_secs().max(1),
                })
            }
            None => {
                delivery
                    .into_message()
                    .double_ack_with(AckKind::Ack)
                    .await
                    .map_err(|e| nats_error("the pop's acknowledgement", e))?;
                None
            }
        };
        let body = match object {
            // Removed by this pop: its object goes once it has been sent.
            Some((object, stream)) if lease.is_none() => Some(Payload::Stream {
                len: object.size,
                chunks: with_end(stream, self.let_go_later(ns, object, holder)),
            }),
            Some((object, stream)) => Some(Payload::Stream {
                len: object.size,
                chunks: stream,
            }),
            None => sends_data.then_some(Payload::Bytes(data)),
        };
        if let (None, false, Some(object)) = (lease, sends_data, &described.object) {
            self.let_go(ns, &object.key, holder).await;
        }
        let popped = Popped {
            id: described.id,
            meta: described.meta,
            blob_id: described.blob_id,
            size,
            seconds_left,
            body,
            lease,
        };
        self.counters.popped(ns, queue);
        Ok(Some(popped))
    }

    /// One message of `consumer`, waiting up to `wait`. A wait runs in a
    /// task of its own holding the pull request's subscription: if this
    /// future is dropped, the task unsubscribes (JetStream forgets a pull
    /// request nobody listens to) and hands back whatever had come.
    pub(super) async fn fetch_one(
        &self,
        consumer: &PullConsumer,
        names: (String, String),
        wait: Duration,
    ) -> Result<Option<Delivery>, BackendError> {
        if wait.is_zero() {
            let mut batch = consumer
                .batch()
                .max_messages(1)
                .expires(self.config.empty_pop_wait)
                .messages()
                .await
                .map_err(|e| nats_error("the pop", e))?;
            return match batch.next().await {
                Some(Ok(msg)) => Ok(Some(Delivery::new(msg, self.settling.clone()))),
                Some(Err(e)) => Err(nats_error("the pop", e)),
                None => Ok(None),
            };
        }
        let _waiting = Waiting::new(&self.counters.waiting);
        let js = self.link.js()?.clone();
        let client = self
            .link
            .client()
            .ok_or_else(|| nats_error("the pop", "not connected"))?
            .clone();
        let inbox = client.new_inbox();
        let mut replies = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| nats_error("the pop", e))?;
        let (stream, consumer) = names;
        let request = serde_json::json!({ "batch": 1, "expires": wait.as_nanos() as u64 });
        client
            .publish_with_reply(
                format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
                inbox,
                request.to_string().into(),
            )
            .await
            .map_err(|e| nats_error("the pop", e))?;
        let (mut tx, rx) = oneshot::channel();
        let settling = self.settling.clone();
        tokio::spawn(async move {
            let answer = async {
                while let Some(reply) = replies.next().await {
                    match reply.status {
                        None => {
                            let msg = Message {
                                message: reply,
                                context: js.clone(),
                            };
                            return Ok(Some(Delivery::new(msg, settling.clone())));
                        }
                        // Idle heartbeat.
                        Some(StatusCode::IDLE_HEARTBEAT) => continue,
                        // Timed out, or nothing there.
                        Some(StatusCode::TIMEOUT | StatusCode::NOT_FOUND) => return Ok(None),
                        // A consumer just made, not yet known to this server.
                        Some(StatusCode::NO_RESPONDERS) => {
                            tokio::time::sleep(NO_RESPONDERS_PAUSE).await;
                            return Ok(None);
                        }
                        Some(status) => {
                            let why = reply.description.unwrap_or_else(|| status.to_string());
                            return Err(nats_error("the pop", why));
                        }
                    }
                }
                Ok(None)
            };
            let got = tokio::select! {
                biased;
                got = tokio::time::timeout(wait + REQUEST_GRACE, answer) => Some(got.unwrap_or(Ok(None))),
                () = tx.closed() => None,
            };
            match got {
                Some(got) => {
                    // Refused if the pop went away meanwhile: the delivery
                    // is dropped, which hands it back.
                    let _ = tx.send(got);
                }
                None => {
                    let _ = replies.unsubscribe().await;
                    let drained = async {
                        while let Some(reply) = replies.next().await {
                            if reply.status.is_none() {
                                settling.hand_back(Message {
                                    message: reply,
                                    context: js.clone(),
                                });
                            }
                        }
                    };
                    let _ = tokio::time::timeout(REQUEST_GRACE, drained).await;
                }
            }
        });
        tokio::select! {
            got = rx => got.unwrap_or(Ok(None)),
            () = self.closing.cancelled() => Err(BackendError::ShuttingDown),
        }
    }
}
