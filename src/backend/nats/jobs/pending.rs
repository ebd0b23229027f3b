//! The pending order of each job queue: a work-queue stream per
//! namespace, a message per queued job (its id and ticket) on the queue's
//! `new` or `again` subject, and a durable pull consumer per subject, so
//! that claims on every node take jobs in one order. Claims take `again`
//! (jobs put back) before `new`.

use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::HeaderMap;
use tokio::time::Instant;

use super::super::pop::Delivery;
use super::super::queues::nats_error;
use super::names::{self, Lane};
use super::NatsJobs;
use crate::backend::jobs::JobId;
use crate::backend::name::Name;
use crate::backend::BackendError;

/// A queue's two consumers.
#[derive(Clone)]
pub struct PendingQueue {
    new: PullConsumer,
    again: PullConsumer,
    /// Stream and consumer names, for the pull requests.
    stream: String,
    new_name: String,
    again_name: String,
}

/// A pending message's payload: `{id} {ticket}`.
pub fn payload(id: JobId, ticket: u64) -> String {
    format!("{id} {ticket}")
}

/// The id and ticket of a pending message; `None` if it is not one.
pub fn parse_payload(raw: &[u8]) -> Option<(JobId, u64)> {
    let text = std::str::from_utf8(raw).ok()?;
    let (id, ticket) = text.split_once(' ')?;
    Some((JobId::parse(id)?, ticket.parse().ok()?))
}

impl NatsJobs {
    /// Queue `queue`'s consumers; made (with the namespace's stream) if
    /// `create`, else `None` when missing.
    pub(super) async fn pending(
        &self,
        ns: &Name,
        queue: &Name,
        create: bool,
    ) -> Result<Option<PendingQueue>, BackendError> {
        let key = (ns.clone(), queue.clone());
        if let Some(q) = self.shared.queues.get(&key) {
            return Ok(Some(q.clone()));
        }
        let js = self.shared.inner.link.js()?;
        let stream_name = names::pending_stream(ns);
        let stream = if create {
            let config = stream::Config {
                name: stream_name.clone(),
                subjects: vec![names::pending_subjects(ns)],
                retention: RetentionPolicy::WorkQueue,
                storage: StorageType::File,
                num_replicas: self.replicas(),
                ..stream::Config::default()
            };
            js.get_or_create_stream(config)
                .await
                .map_err(|e| nats_error("making the jobs' pending stream", e))?
        } else {
            match js.get_stream(&stream_name).await {
                Ok(stream) => stream,
                Err(e) if super::super::queues::stream_missing(&e) => return Ok(None),
                Err(e) => return Err(nats_error("looking up the jobs' pending stream", e)),
            }
        };
        let mut consumers = Vec::with_capacity(2);
        for lane in [Lane::New, Lane::Again] {
            let name = names::pending_consumer(queue, lane);
            let consumer = if create {
                let config = pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: names::pending_subject(ns, queue, lane),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.shared.inner.config.ack_wait,
                    max_deliver: -1,
                    max_ack_pending: -1,
                    ..pull::Config::default()
                };
                stream
                    .get_or_create_consumer(&name, config)
                    .await
                    .map_err(|e| nats_error("making the job queue's consumer", e))?
            } else {
                match stream.get_consumer::<pull::Config>(&name).await {
                    Ok(consumer) => consumer,
                    Err(e) if e.to_string().contains("consumer not found") => return Ok(None),
                    Err(e) => return Err(nats_error("looking up the job queue's consumer", e)),
                }
            };
            consumers.push(consumer);
        }
        let again = consumers.pop().expect("two consumers");
        let new = consumers.pop().expect("two consumers");
        let q = PendingQueue {
            new,
            again,
            stream: stream_name,
            new_name: names::pending_consumer(queue, Lane::New),
            again_name: names::pending_consumer(queue, Lane::Again),
        };
        self.shared.queues.insert(key, q.clone());
        Ok(Some(q))
    }

    /// Queues job `id` under `ticket` at the tail of `lane`, waiting for
    /// JetStream to store it.
    pub(super) async fn enqueue(
        &self,
        ns: &Name,
        queue: &Name,
        lane: Lane,
        id: JobId,
        ticket: u64,
    ) -> Result<(), BackendError> {
        self.pending(ns, queue, true).await?;
        let mut headers = HeaderMap::new();
        let msg_id = format!("{id}.{ticket}");
        headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id.as_str());
        let subject = names::pending_subject(ns, queue, lane);
        let sent = self
            .shared
            .inner
            .publish(ns, &subject, headers, payload(id, ticket).into())
            .await;
        if sent.is_err() {
            // The stream may be gone: look it up again next time.
            self.shared.queues.remove(&(ns.clone(), queue.clone()));
        }
        sent
    }

    /// The next pending message of `q`, waiting until `deadline`: one put
    /// back first, else the first to come of either lane.
    pub(super) async fn next_delivery(
        &self,
        q: &PendingQueue,
        deadline: Instant,
    ) -> Result<Option<Delivery>, BackendError> {
        let inner = &self.shared.inner;
        let again_waiting = q.again.get_info().await.map_or(0, |info| info.num_pending);
        if again_waiting > 0 {
            let names = (q.stream.clone(), q.again_name.clone());
            let got = inner.fetch_one(&q.again, names, std::time::Duration::ZERO);
            if let Some(delivery) = got.await? {
                return Ok(Some(delivery));
            }
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        let again = inner.fetch_one(&q.again, (q.stream.clone(), q.again_name.clone()), wait);
        let new = inner.fetch_one(&q.new, (q.stream.clone(), q.new_name.clone()), wait);
        tokio::pin!(again, new);
        let (mut again_done, mut new_done) = (false, false);
        while !(again_done && new_done) {
            tokio::select! {
                biased;
                got = &mut again, if !again_done => match got? {
                    Some(delivery) => return Ok(Some(delivery)),
                    None => again_done = true,
                },
                got = &mut new, if !new_done => match got? {
                    Some(delivery) => return Ok(Some(delivery)),
                    None => new_done = true,
                },
            }
        }
        Ok(None)
    }
}
