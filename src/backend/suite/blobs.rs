//! The suite's cases for pushing and popping elements and the blobs they
//! carry: order, header-only pops, references to a shared blob, deleted
//! blobs and when a shared one goes.

use super::{body_of, bytes_of, lives, name, names, push, stats_of, Fresh, DATA, HEADER};
use crate::backend::{BackendError, IncomingBody};

pub async fn fifo_push_pop(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    let mut ids = Vec::new();
    // Small and large bodies: an engine may keep them differently.
    for body in [&b"one"[..], &[2u8; 100], b"three"] {
        ids.push(push(b, &ns, &q, body).await.id);
    }
    for (id, body) in ids.iter().zip([&b"one"[..], &[2u8; 100], b"three"]) {
        let p = b.pop(&ns, &q, DATA).await.unwrap().expect("an element");
        assert_eq!((p.id, p.size), (*id, body.len() as u64));
        assert_eq!(body_of(p).await, body);
    }
    assert!(b.pop(&ns, &q, DATA).await.unwrap().is_none());
}

pub async fn header_only_pop_leaves_the_blob_readable(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    let pushed = push(b, &ns, &q, b"the bytes").await;
    let p = b.pop(&ns, &q, HEADER).await.unwrap().expect("an element");
    assert!(p.body.is_none());
    assert_eq!((p.size, p.blob_id), (9, pushed.blob_id));
    let id = p.blob_id.expect("a blob id").to_string();
    let read = b.read_blob(&ns, &id, false).await.unwrap();
    assert_eq!(bytes_of(read.body).await, b"the bytes");
    // Read, not consumed; then read and deleted.
    let read = b.read_blob(&ns, &id, true).await.unwrap();
    assert_eq!(bytes_of(read.body).await, b"the bytes");
    let gone = b.read_blob(&ns, &id, false).await;
    assert!(matches!(gone, Err(BackendError::BlobNotFound { .. })));
}

pub async fn reference_push_shares_a_blob_and_an_unknown_one_is_not_found(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    let stored = b
        .store_blob(&ns, IncomingBody::from_bytes(&b"shared"[..]), lives(60))
        .await
        .unwrap();
    let id = stored.id.to_string();
    for _ in 0..2 {
        b.push_reference(&ns, &q, Some(&id), lives(60))
            .await
            .unwrap();
    }
    assert_eq!(stats_of(b, &ns).await.blobs, 1, "stored once");
    for _ in 0..2 {
        let p = b.pop(&ns, &q, DATA).await.unwrap().expect("an element");
        assert_eq!(p.blob_id, Some(stored.id));
        assert_eq!(body_of(p).await, b"shared");
    }
    // Without a blob: a header-only element.
    b.push_reference(&ns, &q, None, lives(60)).await.unwrap();
    let p = b.pop(&ns, &q, DATA).await.unwrap().expect("an element");
    assert!(p.body.is_none() && p.blob_id.is_none());
    let unknown = crate::backend::ids::BlobId::random().to_string();
    for bad in [unknown.as_str(), "not-an-id"] {
        let refused = b.push_reference(&ns, &q, Some(bad), lives(60)).await;
        assert!(
            matches!(&refused, Err(BackendError::BlobNotFound { id, .. }) if id == bad),
            "{refused:?}"
        );
    }
    assert!(
        b.pop(&ns, &q, DATA).await.unwrap().is_none(),
        "nothing pushed"
    );
}

pub async fn a_deleted_blob_makes_a_data_pop_gone(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    let pushed = push(b, &ns, &q, &[3u8; 40]).await;
    let id = pushed.blob_id.expect("a blob").to_string();
    b.push_reference(&ns, &q, Some(&id), lives(60))
        .await
        .unwrap();
    b.delete_blob(&ns, &id).await.unwrap();
    let gone = b.pop(&ns, &q, DATA).await;
    assert!(matches!(gone, Err(BackendError::BlobGone)), "{gone:?}");
    let gone = b.pop(&ns, &q, DATA).await;
    assert!(matches!(gone, Err(BackendError::BlobGone)), "{gone:?}");
    assert!(b.pop(&ns, &q, DATA).await.unwrap().is_none(), "consumed");
    let again = b.delete_blob(&ns, &id).await;
    assert!(matches!(again, Err(BackendError::BlobNotFound { .. })));
}

pub async fn a_shared_blob_lives_until_its_last_element_is_consumed(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    let (x, y) = (name("x"), name("y"));
    let pushed = push(b, &ns, &q, b"8 bytes!").await;
    let id = pushed.blob_id.expect("a blob").to_string();
    for target in [&x, &y] {
        b.push_reference(&ns, target, Some(&id), lives(60))
            .await
            .unwrap();
    }
    for queue in [&q, &x] {
        let p = b.pop(&ns, queue, DATA).await.unwrap().expect("an element");
        assert_eq!(body_of(p).await, b"8 bytes!");
        let stats = stats_of(b, &ns).await;
        assert_eq!((stats.blobs, stats.blob_bytes), (1, 8), "still referenced");
    }
    let last = b.pop(&ns, &y, DATA).await.unwrap().expect("an element");
    assert_eq!(body_of(last).await, b"8 bytes!");
    let stats = stats_of(b, &ns).await;
    assert_eq!((stats.blobs, stats.blob_bytes), (0, 0));
    assert_eq!(b.totals().memory_bytes + b.totals().disk_bytes, 0);
}
