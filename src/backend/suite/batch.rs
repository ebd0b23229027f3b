//! The suite's cases for batches: a push stored whole or not at all, a pop
//! that takes what is ready, a leased pop settled by one acknowledgement.

use std::time::Duration;

use super::{
    body_of, bytes_of, counts_of, eventually, leased, lives, name, names, push, waiting_on, Fresh,
};
use super::{DATA, HEADER, LIMITED_MAX_ELEMENTS, LIMITED_NAMESPACE};
use crate::backend::name::Name;
use crate::backend::{Backend, BackendError, BatchElement, IncomingBody, PopOptions, Popped};

/// Each element of a batch pop, failing on a gone one.
fn popped(batch: Vec<BatchElement>) -> Vec<Popped> {
    batch
        .into_iter()
        .map(|e| match e {
            BatchElement::Popped(p) => p,
            BatchElement::Gone(id) => panic!("element {id} is gone"),
        })
        .collect()
}

/// Pushes `bodies` as one batch.
async fn push_bodies(b: &dyn Backend, ns: &Name, q: &Name, bodies: &[&[u8]]) {
    let mut batch = b.push_batch(ns, q).await.expect("a batch");
    for body in bodies {
        let body = IncomingBody::from_bytes(body.to_vec());
        batch.add(body, lives(60)).await.expect("a part");
    }
    batch.commit().await.expect("a commit");
}

pub async fn a_batch_is_pushed_in_order_and_popped_in_a_batch(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    push(b, &ns, &q, b"before").await;
    let mut batch = b.push_batch(&ns, &q).await.expect("a batch");
    // A small body, a large one (an engine may keep it elsewhere), a
    // metadata-only element.
    batch
        .add(IncomingBody::from_bytes(&b"one"[..]), lives(60))
        .await
        .unwrap();
    batch
        .add(IncomingBody::from_bytes(vec![2u8; 100]), lives(30))
        .await
        .unwrap();
    batch.add_reference(None, lives(60)).await.unwrap();
    let counts = counts_of(b, &ns, &q).await;
    assert_eq!(counts.elements, 1, "nothing of the batch before its commit");
    let pushed = batch.commit().await.expect("a commit");
    let sizes: Vec<u64> = pushed.iter().map(|p| p.size).collect();
    assert_eq!(sizes, [3, 100, 0]);
    assert_eq!(pushed[1].lifetime, 30);
    assert!(pushed[2].blob_id.is_none() && pushed[0].blob_id.is_some());
    let all = popped(b.pop_batch(&ns, &q, DATA, 10).await.unwrap());
    assert_eq!(all.len(), 4, "as many as are ready, up to the count");
    assert_eq!(all[1].id, pushed[0].id);
    assert_eq!(all[3].id, pushed[2].id);
    let mut bodies = Vec::new();
    for p in all {
        bodies.push(match p.body {
            Some(body) => bytes_of(body).await,
            None => Vec::new(),
        });
    }
    assert_eq!(bodies, [&b"before"[..], b"one", &[2u8; 100], b""]);
    assert!(b.pop_batch(&ns, &q, DATA, 10).await.unwrap().is_empty());
    assert_eq!(b.totals().pops, 4);
}

pub async fn a_refused_or_dropped_batch_stores_nothing(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    let blob = b
        .store_blob(&ns, IncomingBody::from_bytes(&b"kept"[..]), lives(60))
        .await
        .unwrap();
    let (memory, disk) = (b.totals().memory_bytes, b.totals().disk_bytes);
    // Part 2 references a blob that does not exist.
    let mut batch = b.push_batch(&ns, &q).await.unwrap();
    let blob_id = blob.id.to_string();
    batch
        .add_reference(Some(&blob_id), lives(60))
        .await
        .unwrap();
    batch
        .add(IncomingBody::from_bytes(vec![1u8; 200]), lives(60))
        .await
        .unwrap();
    let unknown = "00000000-0000-4000-8000-000000000000";
    batch.add_reference(Some(unknown), lives(60)).await.unwrap();
    let refused = batch.commit().await.expect_err("an unknown blob");
    assert_eq!(refused.part, Some(2));
    assert!(matches!(refused.error, BackendError::BlobNotFound { .. }));
    // A batch given up before its commit.
    let mut batch = b.push_batch(&ns, &q).await.unwrap();
    batch
        .add(IncomingBody::from_bytes(vec![1u8; 200]), lives(60))
        .await
        .unwrap();
    drop(batch);
    assert!(b.pop_batch(&ns, &q, DATA, 10).await.unwrap().is_empty());
    let t = b.totals();
    assert_eq!((t.pushes, t.memory_bytes, t.disk_bytes), (0, memory, disk));
    // Over the quota at the part that breaks it.
    let limited = name(LIMITED_NAMESPACE);
    let mut batch = b.push_batch(&limited, &q).await.unwrap();
    for _ in 0..=LIMITED_MAX_ELEMENTS {
        batch
            .add(IncomingBody::from_bytes(&b"x"[..]), lives(60))
            .await
            .unwrap();
    }
    let refused = batch.commit().await.expect_err("over quota");
    assert_eq!(refused.part, Some(LIMITED_MAX_ELEMENTS as usize));
    assert!(matches!(refused.error, BackendError::OverQuota { .. }));
    let counts = b.queue_stats(&limited, &q).await.unwrap();
    assert!(counts.is_none_or(|s| s.counts.elements == 0));
}

pub async fn a_waiting_batch_pop_takes_the_whole_batch_that_woke_it(fresh: Fresh) {
    let b = fresh.backend.clone();
    let (ns, q) = names();
    let waiter = {
        let (b, ns, q) = (b.clone(), ns.clone(), q.clone());
        let opts = PopOptions {
            wait: Duration::from_secs(10),
            ..DATA
        };
        tokio::spawn(async move { b.pop_batch(&ns, &q, opts, 5).await })
    };
    eventually(|| async { waiting_on(&*b, &ns, &q).await == 1 }).await;
    push_bodies(&*b, &ns, &q, &[b"a", b"b", b"c"]).await;
    let got = popped(waiter.await.unwrap().unwrap());
    let mut bodies = Vec::new();
    for p in got {
        bodies.push(body_of(p).await);
    }
    assert_eq!(bodies, [b"a", b"b", b"c"], "the whole batch, in order");
    let opts = PopOptions {
        wait: Duration::from_millis(50),
        ..DATA
    };
    assert!(b.pop_batch(&ns, &q, opts, 5).await.unwrap().is_empty());
}

pub async fn a_leased_batch_is_settled_by_one_acknowledgement(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    push_bodies(b, &ns, &q, &[b"a", b"b", b"c"]).await;
    let out = popped(
        b.pop_batch(&ns, &q, leased(Duration::from_secs(60), Duration::ZERO), 2)
            .await
            .unwrap(),
    );
    let receipts: Vec<String> = out
        .iter()
        .map(|p| p.lease.expect("leased").receipt.to_string())
        .collect();
    assert_eq!(out.len(), 2);
    let asked = [
        receipts[0].clone(),
        "not-a-receipt".to_owned(),
        receipts[1].clone(),
        receipts[0].clone(),
    ];
    let acked = b.ack_batch(&ns, &q, &asked).await.unwrap();
    assert_eq!(acked.acked, receipts);
    assert_eq!(acked.unknown, [asked[1].clone(), asked[3].clone()]);
    let counts = counts_of(b, &ns, &q).await;
    assert_eq!((counts.elements, counts.leased), (1, 0));
    let none = b
        .ack_batch(&name("nowhere"), &q, &asked[..1])
        .await
        .unwrap();
    assert_eq!(none.unknown, asked[..1]);
}

pub async fn a_batch_pop_marks_deleted_blobs_gone_and_header_only_exposes(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    push_bodies(b, &ns, &q, &[b"a", b"b", b"c"]).await;
    let first = popped(b.pop_batch(&ns, &q, HEADER, 1).await.unwrap());
    let blob = first[0].blob_id.expect("a blob").to_string();
    assert!(first[0].body.is_none(), "header-only");
    let read = b.read_blob(&ns, &blob, false).await.expect("exposed");
    assert_eq!(bytes_of(read.body).await, b"a");
    assert_eq!(b.pop_batch(&ns, &q, HEADER, 5).await.unwrap().len(), 2);
    // A reference to a blob deleted while queued, between two live ones.
    let stored = b
        .store_blob(&ns, IncomingBody::from_bytes(&b"z"[..]), lives(60))
        .await
        .expect("stored");
    let id = stored.id.to_string();
    push(b, &ns, &q, b"d").await;
    let element = b
        .push_reference(&ns, &q, Some(&id), lives(60))
        .await
        .unwrap();
    push(b, &ns, &q, b"e").await;
    b.delete_blob(&ns, &id).await.unwrap();
    let out = b.pop_batch(&ns, &q, DATA, 5).await.unwrap();
    assert_eq!(out.len(), 3, "the gone element does not end the batch");
    assert!(matches!(out[1], BatchElement::Gone(id) if id == element.id));
    assert!(matches!(&out[2], BatchElement::Popped(p) if p.size == 1));
}
