//! The handle's tests: namespaces dropped between lookup and lock, spill
//! files freed by the last pop, and a purge that leaves nothing.

use super::*;
use crate::backend::{Backend, IncomingBody, Page, Payload, PopOptions, PushOptions};
use crate::store::test_store;

const DATA: PopOptions = PopOptions {
    with_data: true,
    lease: None,
    wait: Duration::ZERO,
};

fn names() -> (Name, Name) {
    (Name::parse("ns").unwrap(), Name::parse("q").unwrap())
}

async fn push(s: &Store, ns: &Name, q: &Name, body: &[u8]) {
    let opts = PushOptions {
        lifetime: 60,
        ..PushOptions::default()
    };
    let body = IncomingBody::from_bytes(body.to_vec());
    Backend::push(s, ns, q, body, opts).await.unwrap();
}

async fn pop_bytes(s: &Store, ns: &Name, q: &Name) -> Option<Vec<u8>> {
    use futures_util::StreamExt;
    let popped = Backend::pop(s, ns, q, DATA).await.unwrap()?;
    Some(match popped.body.expect("data") {
        Payload::Bytes(b) => b.to_vec(),
        Payload::Stream { mut chunks, .. } => {
            let mut v = Vec::new();
            while let Some(chunk) = chunks.next().await {
                v.extend_from_slice(&chunk.unwrap());
            }
            v
        }
    })
}

#[tokio::test]
async fn a_namespace_dropped_between_lookup_and_lock_is_looked_up_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let s = test_store(dir.path());
    let (ns, q) = names();
    push(&s, &ns, &q, b"one").await;
    // Hold the namespace as an operation that looked it up would.
    let stale = s.existing_namespace(&ns).unwrap();
    assert_eq!(pop_bytes(&s, &ns, &q).await.unwrap(), b"one");
    sweeper::drop_idle(&s.shared, Millis(Millis::now().0 + 3_600_000));
    assert!(
        stale.lock().removed,
        "dropped, and marked so under its lock"
    );
    assert!(s.namespace_stats(&ns, &Page::first(1)).is_none());
    // A pop that will not wait finds nothing, and creates nothing.
    assert!(pop_bytes(&s, &ns, &q).await.is_none());
    assert!(s.namespace_stats(&ns, &Page::first(1)).is_none());
    // A push goes to a new namespace in the map, not to the dropped one.
    push(&s, &ns, &q, b"two").await;
    let fresh = s.existing_namespace(&ns).unwrap();
    assert!(!Arc::ptr_eq(&stale, &fresh));
    assert_eq!(s.queue_stats(&ns, &q).unwrap().counts.elements, 1);
    assert_eq!(pop_bytes(&s, &ns, &q).await.unwrap(), b"two");
}

#[tokio::test]
async fn the_last_pop_of_a_spilled_body_frees_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = test_store(dir.path());
    let (ns, q) = names();
    let big = vec![7u8; 100];
    push(&s, &ns, &q, &big).await;
    assert_eq!(s.totals().disk_bytes, 100, "spilled");
    assert_eq!(std::fs::read_dir(s.spill_dir()).unwrap().count(), 1);
    assert_eq!(pop_bytes(&s, &ns, &q).await.unwrap(), big);
    assert_eq!(s.totals().disk_bytes, 0);
    assert_eq!(std::fs::read_dir(s.spill_dir()).unwrap().count(), 0);
}

#[tokio::test]
async fn purge_removes_every_file_and_zeroes_every_gauge() {
    let dir = tempfile::tempdir().unwrap();
    let s = test_store(dir.path());
    let (ns, q) = names();
    push(&s, &ns, &Name::parse("other").unwrap(), &[1u8; 64]).await;
    push(&s, &ns, &q, b"small").await;
    let waiter = {
        let (s, ns) = (s.clone(), ns.clone());
        let q = Name::parse("empty").unwrap();
        let opts = PopOptions {
            wait: Duration::from_secs(30),
            ..DATA
        };
        tokio::spawn(async move { Backend::pop(&s, &ns, &q, opts).await })
    };
    while s.totals().waiting == 0 {
        tokio::task::yield_now().await;
    }
    s.purge();
    assert!(matches!(
        waiter.await.unwrap(),
        Err(BackendError::ShuttingDown)
    ));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "spill folder removed"
    );
    let t = s.totals();
    assert_eq!(
        (t.elements, t.memory_bytes, t.disk_bytes, t.waiting),
        (0, 0, 0, 0),
        "every gauge back to zero"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn namespaces_made_at_once_never_pass_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::store::tests_config(dir.path());
    config.names.max_namespaces = 3;
    let s = Store::new(config).unwrap();
    let q = Name::parse("q").unwrap();
    let pushes: Vec<_> = (0..32)
        .map(|i| {
            let (s, q) = (s.clone(), q.clone());
            tokio::spawn(async move {
                let ns = Name::parse(&format!("ns{i}")).unwrap();
                let body = IncomingBody::from_bytes(b"x".to_vec());
                let opts = PushOptions {
                    lifetime: 60,
                    ..PushOptions::default()
                };
                Backend::push(&s, &ns, &q, body, opts).await
            })
        })
        .collect();
    let mut made = 0;
    for push in pushes {
        match push.await.unwrap() {
            Ok(_) => made += 1,
            Err(BackendError::TooManyNamespaces { limit: 3, .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(made, 3);
    let listed = s.server_stats(&Page::first(10), &|_| true);
    assert_eq!(listed.namespace_count, 3);
}
