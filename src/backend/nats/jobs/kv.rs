//! The buckets of job documents: found or made per namespace, entries
//! read and changed by compare-and-set on their revision, and scans of
//! every entry of a bucket (or a queue) for listings, counts and sweeps.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::kv::{self, Operation, Store, UpdateErrorKind};
use async_nats::jetstream::stream::StorageType;
use bytes::Bytes;
use futures_util::StreamExt as _;

use super::super::queues::{nats_error, stream_missing};
use super::doc::{now_ms, StoredJob};
use super::{names, NatsJobs};
use crate::backend::jobs::{JobError, JobId};
use crate::backend::name::Name;
use crate::backend::BackendError;

/// Entries a scan takes from JetStream in one fetch.
const SCAN_BATCH: usize = 512;
/// How long a scan's consumer outlives a scan that stopped midway.
const SCAN_CONSUMER_IDLE: Duration = Duration::from_secs(30);
/// Times a change is tried again after another node changed the entry
/// between the read and the write.
const MAX_CONFLICTS: usize = 100;

/// A job entry as read: the document and the revision to update.
pub struct Read {
    pub job: StoredJob,
    pub revision: u64,
}

/// What a change function decides.
pub enum Step<R> {
    /// Write the changed document, then answer `R`.
    Write(R),
    /// Leave the entry as it is and answer `R`.
    Keep(R),
}

impl NatsJobs {
    /// Replicas of a new bucket or stream: the backend's setting, or 1 on
    /// a server outside a cluster.
    pub(super) fn replicas(&self) -> usize {
        let inner = &self.shared.inner;
        match inner.link.client() {
            Some(client) if client.server_info().cluster.is_some() => inner.config.replicas,
            _ => 1,
        }
    }

    /// Namespace `ns`'s bucket; made if `create`, else `None` when missing.
    pub(super) async fn bucket(
        &self,
        ns: &Name,
        create: bool,
    ) -> Result<Option<Store>, BackendError> {
        if let Some(store) = self.shared.buckets.get(ns) {
            return Ok(Some(store.clone()));
        }
        let js = self.shared.inner.link.js()?;
        let name = names::bucket(ns);
        let stream_name = format!("{}{name}", names::KV_STREAM_PREFIX);
        let exists = match js.get_stream(&stream_name).await {
            Ok(_) => true,
            Err(e) if stream_missing(&e) => false,
            Err(e) => return Err(nats_error("looking up the jobs bucket", e)),
        };
        let store = if exists {
            js.get_key_value(&name)
                .await
                .map_err(|e| nats_error("opening the jobs bucket", e))?
        } else if create {
            let config = kv::Config {
                bucket: name.clone(),
                history: 1,
                num_replicas: self.replicas(),
                storage: StorageType::File,
                ..kv::Config::default()
            };
            match js.create_key_value(config).await {
                Ok(store) => store,
                // Made by another node meanwhile.
                Err(_) => js
                    .get_key_value(&name)
                    .await
                    .map_err(|e| nats_error("making the jobs bucket", e))?,
            }
        } else {
            return Ok(None);
        };
        self.shared.buckets.insert(ns.clone(), store.clone());
        Ok(Some(store))
    }

    /// Job `id` of `queue` with its revision; not found for an id of the
    /// wrong shape, a missing bucket or entry.
    pub(super) async fn read(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
    ) -> Result<(Store, Read), JobError> {
        let job_id = JobId::parse(id).ok_or_else(|| Self::not_found(ns, queue, id))?;
        let store = self
            .bucket(ns, false)
            .await?
            .ok_or_else(|| Self::not_found(ns, queue, id))?;
        let read = read_entry(&store, &names::job_key(queue, job_id))
            .await?
            .filter(|r| r.job.is_kept())
            .ok_or_else(|| Self::not_found(ns, queue, id))?;
        Ok((store, read))
    }

    /// Changes job `id` of `queue` with `f`, which sees the document as
    /// stored and the time; a write that meets another node's change reads
    /// again and runs `f` again. Answers `f`'s answer and the document as
    /// it now is.
    pub(super) async fn change<R>(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
        mut f: impl FnMut(&mut StoredJob, u64) -> Result<Step<R>, JobError>,
    ) -> Result<(R, StoredJob), JobError> {
        let (store, mut read) = self.read(ns, queue, id).await?;
        let key = names::job_key(queue, read.job.job_id());
        for _ in 0..MAX_CONFLICTS {
            let mut job = read.job.clone();
            match f(&mut job, now_ms())? {
                Step::Keep(answer) => return Ok((answer, job)),
                Step::Write(answer) => {
                    match store.update(&key, job.encode(), read.revision).await {
                        Ok(_) => return Ok((answer, job)),
                        Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                            read = read_entry(&store, &key)
                                .await?
                                .ok_or_else(|| Self::not_found(ns, queue, id))?;
                        }
                        Err(e) => return Err(nats_error("updating the job", e).into()),
                    }
                }
            }
        }
        Err(nats_error("updating the job", "it changed under every attempt").into())
    }

    /// Removes entry `key` with its history, leaving no marker behind.
    pub(super) async fn purge_key(&self, store: &Store, key: &str) -> Result<(), BackendError> {
        store
            .stream
            .purge()
            .filter(format!("{}{key}", store.prefix))
            .await
            .map_err(|e| nats_error("removing the job", e))?;
        Ok(())
    }
}

/// The entry under `key`, `None` if missing or deleted.
pub async fn read_entry(store: &Store, key: &str) -> Result<Option<Read>, BackendError> {
    let entry = store
        .entry(key)
        .await
        .map_err(|e| nats_error("reading the job", e))?;
    Ok(entry.and_then(|e| {
        if e.operation != Operation::Put {
            return None;
        }
        let job = StoredJob::decode(&e.value)?;
        Some(Read {
            job,
            revision: e.revision,
        })
    }))
}

/// Every live entry of `store` whose key matches `filter` (`>` for all),
/// as `(key, value)`: the latest value of each, read through a consumer
/// of its own.
pub async fn scan(store: &Store, filter: &str) -> Result<Vec<(String, Bytes)>, BackendError> {
    let failed = |e: &dyn std::fmt::Display| nats_error("reading the jobs", e);
    let config = pull::Config {
        deliver_policy: DeliverPolicy::LastPerSubject,
        filter_subject: format!("{}{filter}", store.prefix),
        ack_policy: AckPolicy::None,
        inactive_threshold: SCAN_CONSUMER_IDLE,
        memory_storage: true,
        num_replicas: 1,
        ..pull::Config::default()
    };
    let consumer = store
        .stream
        .create_consumer(config)
        .await
        .map_err(|e| failed(&e))?;
    let total = consumer.cached_info().num_pending;
    let name = consumer.cached_info().name.clone();
    let mut out = Vec::new();
    let mut seen = 0u64;
    let result = async {
        while seen < total {
            let mut batch = consumer
                .fetch()
                .max_messages(SCAN_BATCH)
                .messages()
                .await
                .map_err(|e| failed(&e))?;
            let mut taken = 0u64;
            while let Some(msg) = batch.next().await {
                let msg = msg.map_err(|e| failed(&e))?;
                taken += 1;
                let removed = msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("KV-Operation"))
                    .is_some();
                if removed || msg.payload.is_empty() {
                    continue;
                }
                if let Some(key) = msg.subject.strip_prefix(store.prefix.as_str()) {
                    out.push((key.to_owned(), msg.payload.clone()));
                }
            }
            if taken == 0 {
                // Entries removed since the consumer was made.
                break;
            }
            seen += taken;
        }
        Ok::<(), BackendError>(())
    }
    .await;
    let stream = store.stream.clone();
    tokio::spawn(async move {
        let _ = stream.delete_consumer(&name).await;
    });
    result.map(|()| out)
}
