//! The operations of `tests/replay_model.rs`, each applied to the store
//! through the `Backend` trait and to the model, the store's answer checked.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

use blobq::backend::meta::CustomPair;
use blobq::backend::name::Name;
use blobq::backend::{
    Backend, BackendError, IncomingBody, MetaInput, Payload, PopOptions, Popped, PushOptions,
};

use crate::store_crash::log_end;
use crate::store_model::*;

pub(crate) fn body(size: Size, seed: usize) -> Vec<u8> {
    let n = match size {
        Size::Small(n) | Size::Spilled(n) => n,
    };
    (0..n).map(|i| (i * 31 + seed * 7) as u8).collect()
}

pub(crate) async fn bytes_of(payload: Option<Payload>) -> Option<Vec<u8>> {
    match payload? {
        Payload::Bytes(b) => Some(b.to_vec()),
        Payload::Stream { mut chunks, .. } => {
            let mut all = Vec::new();
            while let Some(chunk) = chunks.next().await {
                all.extend_from_slice(&chunk.expect("stream"));
            }
            Some(all)
        }
    }
}

pub(crate) fn name(s: &str) -> Name {
    Name::parse(s).expect("valid name")
}

pub(crate) fn pick<'a>(ids: impl Iterator<Item = &'a String>, at: Index) -> Option<String> {
    let ids: Vec<&String> = ids.collect();
    (!ids.is_empty()).then(|| ids[at.index(ids.len())].clone())
}

/// Applies `op` to the store and the model, checking the store's answer.
pub(crate) async fn apply(
    store: &dyn Backend,
    ns: &Name,
    model: &mut Model,
    op: &Op,
    n: usize,
    short_lived: bool,
    dir: &Path,
) -> Result<(), TestCaseError> {
    match *op {
        Op::Push { queue, size, typed } => {
            let bytes = body(size, n);
            let short = short_lived && matches!(size, Size::Small(s) if s % 3 == 0);
            let (meta, expected) = if typed {
                let custom = vec![("k".to_owned(), format!("v{n}"))];
                let input = MetaInput {
                    content_type: Some("text/plain".into()),
                    custom: custom
                        .iter()
                        .map(|(k, v)| CustomPair {
                            key: k.as_str().into(),
                            value: v.as_str().into(),
                        })
                        .collect(),
                };
                let meta = Meta {
                    content_type: "text/plain".into(),
                    custom,
                };
                (input, meta)
            } else {
                (MetaInput::default(), Meta::plain())
            };
            let opts = PushOptions {
                meta,
                lifetime: if short { 1 } else { LONG_LIFETIME },
            };
            let started = Instant::now();
            let body_in = IncomingBody::from_bytes(Bytes::from(bytes.clone()));
            let pushed = store.push(ns, &name(QUEUES[queue]), body_in, opts).await;
            let pushed = pushed.map_err(|e| TestCaseError::fail(format!("push: {e}")))?;
            let life = if short {
                Life::Short {
                    started,
                    answered: Instant::now(),
                }
            } else {
                Life::Long
            };
            let order = model.put_order();
            model.known.extend(pushed.blob_id.map(|b| b.to_string()));
            let over = life.certainly_over();
            if short && model.short_until.is_none_or(|t| t < over) {
                model.short_until = Some(over);
            }
            model.queues[queue].push_back(Element {
                id: pushed.id.to_string(),
                data: Some(bytes),
                meta: expected,
                blob: pushed.blob_id.map(|b| b.to_string()),
                deliveries: 0,
                logged_deliveries: 0,
                order,
                life,
            });
        }
        Op::PushReference { queue, blob, none } => {
            let target = if none {
                None
            } else {
                pick(model.blobs.keys().chain(&model.deleted), blob)
            };
            let opts = PushOptions {
                meta: MetaInput::default(),
                lifetime: LONG_LIFETIME,
            };
            let queue_name = name(QUEUES[queue]);
            let pushed = store
                .push_reference(ns, &queue_name, target.as_deref(), opts)
                .await;
            if let Some(id) = target.as_ref().filter(|id| model.deleted.contains(*id)) {
                prop_assert!(
                    matches!(pushed, Err(BackendError::BlobNotFound { .. })),
                    "a reference to deleted blob {id} was accepted"
                );
                return Ok(());
            }
            let pushed = pushed.map_err(|e| TestCaseError::fail(format!("reference: {e}")))?;
            let (data, meta) = match &target {
                Some(id) => {
                    let (bytes, meta) = &model.blobs[id];
                    (Some(bytes.clone()), meta.clone())
                }
                None => (None, Meta::plain()),
            };
            let order = model.put_order();
            model.queues[queue].push_back(Element {
                id: pushed.id.to_string(),
                data,
                meta,
                blob: target,
                deliveries: 0,
                logged_deliveries: 0,
                order,
                life: Life::Long,
            });
        }
        Op::StoreBlob { size } => {
            let bytes = body(size, n);
            let opts = PushOptions {
                meta: MetaInput {
                    content_type: Some("image/png".into()),
                    custom: Vec::new(),
                },
                lifetime: LONG_LIFETIME,
            };
            let body_in = IncomingBody::from_bytes(Bytes::from(bytes.clone()));
            let stored = store.store_blob(ns, body_in, opts).await;
            let stored = stored.map_err(|e| TestCaseError::fail(format!("store blob: {e}")))?;
            let meta = Meta {
                content_type: "image/png".into(),
                custom: Vec::new(),
            };
            model.known.insert(stored.id.to_string());
            model.blobs.insert(stored.id.to_string(), (bytes, meta));
        }
        Op::DeleteBlob { blob } => {
            let Some(id) = pick(model.blobs.keys().chain(&model.deleted), blob) else {
                return Ok(());
            };
            let deleted = store.delete_blob(ns, &id).await;
            if model.deleted.contains(&id) {
                prop_assert!(
                    matches!(deleted, Err(BackendError::BlobNotFound { .. })),
                    "blob {id} deleted twice"
                );
            } else {
                prop_assert!(deleted.is_ok(), "delete of blob {id}: {deleted:?}");
                model.blobs.remove(&id);
                model.deleted.insert(id);
            }
        }
        Op::Pop { queue, with_data } => {
            let opts = PopOptions {
                with_data,
                lease: None,
                wait: Duration::ZERO,
            };
            let popped = store.pop(ns, &name(QUEUES[queue]), opts).await;
            let expected = model.queues[queue].pop_front();
            check_pop(model, popped, expected, with_data, None).await?;
        }
        Op::PopLeased { queue, with_data } => {
            pop_leased(
                store,
                ns,
                model,
                queue,
                with_data,
                Duration::from_secs(3600),
            )
            .await?;
        }
        Op::Ack { lease } => {
            if model.leases.is_empty() {
                return Ok(());
            }
            let (receipt, queue, _) = model.leases.remove(lease.index(model.leases.len()));
            let acked = store.ack(ns, &name(QUEUES[queue]), &receipt).await;
            prop_assert!(acked.is_ok(), "ack: {acked:?}");
        }
        Op::Release { lease } => {
            if model.leases.is_empty() {
                return Ok(());
            }
            let (receipt, queue, element) = model.leases.remove(lease.index(model.leases.len()));
            let released = store.release(ns, &name(QUEUES[queue]), &receipt).await;
            prop_assert!(released.is_ok(), "release: {released:?}");
            model.return_leased(queue, element, Instant::now());
        }
        // Made by `store_crash::run`, through the store's own method; the
        // model does not change.
        Op::CompactSegments => {}
        Op::LeaseRunsOut { queue } => {
            let before = log_end(dir);
            if !pop_leased(store, ns, model, queue, true, SHORT_LEASE).await? {
                return Ok(());
            }
            let (_, queue, element) = model.leases.pop().expect("just leased");
            let deadline = Instant::now() + PATIENCE;
            while store.totals().leased != model.leases.len() as u64 {
                prop_assert!(Instant::now() < deadline, "the lease never ran out");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // What the sweeper logged is written by the next periodic
            // flush; wait for it, so that it is not part of the next
            // operation's records.
            if model.return_leased(queue, element, Instant::now()) {
                while log_end(dir) == before {
                    prop_assert!(
                        Instant::now() < deadline,
                        "the dead-letter move was never written"
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
    Ok(())
}

/// Pops the head of `queue` under a lease of `lease`. Whether a lease was
/// taken (the model's newest).
pub(crate) async fn pop_leased(
    store: &dyn Backend,
    ns: &Name,
    model: &mut Model,
    queue: usize,
    with_data: bool,
    lease: Duration,
) -> Result<bool, TestCaseError> {
    let opts = PopOptions {
        with_data,
        lease: Some(lease),
        wait: Duration::ZERO,
    };
    let popped = store.pop(ns, &name(QUEUES[queue]), opts).await;
    let expected = model.queues[queue].pop_front();
    check_pop(model, popped, expected, with_data, Some(queue)).await
}

/// Checks a pop's answer against the element the model expected, and
/// applies it to the model: a header-only pop exposes the blob, a leased
/// pop holds the element. Whether a lease was taken.
pub(crate) async fn check_pop(
    model: &mut Model,
    popped: Result<Option<Popped>, BackendError>,
    expected: Option<Element>,
    with_data: bool,
    leased_from: Option<usize>,
) -> Result<bool, TestCaseError> {
    let Some(mut expected) = expected else {
        prop_assert!(
            matches!(popped, Ok(None)),
            "popped from an empty queue: {popped:?}"
        );
        return Ok(false);
    };
    if expected
        .blob
        .as_ref()
        .is_some_and(|b| model.deleted.contains(b))
    {
        prop_assert!(
            matches!(popped, Err(BackendError::BlobGone)),
            "an element of a deleted blob popped as {popped:?}"
        );
        return Ok(false);
    }
    let popped = match popped {
        Ok(Some(p)) => p,
        other => {
            return Err(TestCaseError::fail(format!(
                "expected {expected:?}, got {other:?}"
            )))
        }
    };
    prop_assert_eq!(popped.id.to_string(), expected.id.clone());
    prop_assert_eq!(Meta::of(&popped.meta), expected.meta.clone());
    prop_assert_eq!(popped.blob_id.map(|b| b.to_string()), expected.blob.clone());
    let lease = popped.lease;
    let body = bytes_of(popped.body).await;
    let want = if with_data {
        expected.data.clone()
    } else {
        None
    };
    prop_assert_eq!(body, want, "element {}'s bytes", expected.id);
    if !with_data {
        if let (Some(id), Some(bytes), Life::Long) = (&expected.blob, &expected.data, expected.life)
        {
            model
                .blobs
                .entry(id.clone())
                .or_insert_with(|| (bytes.clone(), expected.meta.clone()));
        }
    }
    let Some(queue) = leased_from else {
        prop_assert!(lease.is_none());
        return Ok(false);
    };
    let Some(grant) = lease else {
        return Err(TestCaseError::fail("a leased pop without a lease"));
    };
    expected.deliveries += 1;
    prop_assert_eq!(grant.deliveries, expected.deliveries);
    model
        .leases
        .push((grant.receipt.to_string(), queue, expected));
    Ok(true)
}
