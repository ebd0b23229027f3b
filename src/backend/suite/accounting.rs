//! The suite's cases for what a backend counts and limits: quotas,
//! lifetimes, statistics and paged listings.

use std::time::Duration;

use super::{counts_of, lives, name, names, push, stats_of, whole, Fresh, DATA};
use super::{LIMITED_MAX_BYTES, LIMITED_MAX_ELEMENTS, LIMITED_NAMESPACE};
use crate::backend::name::Name;
use crate::backend::{BackendError, IncomingBody, Page};

pub async fn quotas_refuse_what_would_break_them(fresh: Fresh) {
    let b = &*fresh.backend;
    let (limited, free, q) = (name(LIMITED_NAMESPACE), name("free"), name("q"));
    for _ in 0..LIMITED_MAX_ELEMENTS {
        push(b, &limited, &q, b"x").await;
    }
    let over = |r: Result<crate::backend::Pushed, BackendError>| matches!(r, Err(BackendError::OverQuota { namespace, .. }) if namespace == limited);
    let body = IncomingBody::from_bytes(&b"x"[..]);
    assert!(over(b.push(&limited, &q, body, lives(60)).await));
    assert!(over(b.push_reference(&limited, &q, None, lives(60)).await));
    for _ in 0..=LIMITED_MAX_ELEMENTS {
        push(b, &free, &q, b"x").await;
    }
    b.pop(&limited, &q, DATA)
        .await
        .unwrap()
        .expect("an element");
    push(b, &limited, &q, b"x").await;
    // Bytes: a blob larger than the namespace may hold.
    b.pop(&limited, &q, DATA)
        .await
        .unwrap()
        .expect("an element");
    let big = vec![1u8; LIMITED_MAX_BYTES as usize + 1];
    let stored = b
        .store_blob(&limited, IncomingBody::from_bytes(big), lives(60))
        .await;
    assert!(matches!(stored, Err(BackendError::OverQuota { .. })));
    let stats = stats_of(b, &limited).await;
    assert_eq!((stats.counts.elements, stats.blobs), (1, 1), "nothing kept");
}

pub async fn an_element_expires_after_its_lifetime(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    let body = IncomingBody::from_bytes(&b"brief"[..]);
    b.push(&ns, &q, body, lives(1)).await.unwrap();
    let kept = push(b, &ns, &q, b"kept").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let p = b.pop(&ns, &q, DATA).await.unwrap().expect("the live one");
    assert_eq!(p.id, kept.id);
    assert!(b.pop(&ns, &q, DATA).await.unwrap().is_none());
    let counts = counts_of(b, &ns, &q).await;
    assert_eq!((counts.expired, counts.popped), (1, 1));
    assert_eq!(b.totals().expirations, 1);
}

pub async fn statistics_count_what_happened(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    let r = name("r");
    for body in [&b"1"[..], b"22", b"333"] {
        push(b, &ns, &q, body).await;
    }
    push(b, &ns, &r, b"4444").await;
    b.pop(&ns, &q, DATA).await.unwrap().expect("an element");
    let counts = counts_of(b, &ns, &q).await;
    assert_eq!((counts.elements, counts.bytes), (2, 5));
    assert_eq!((counts.pushed, counts.popped, counts.expired), (3, 1, 0));
    let stats = stats_of(b, &ns).await;
    let queues: Vec<&str> = stats.queues.iter().map(|s| s.queue.as_str()).collect();
    assert_eq!(queues, ["q", "r"], "sorted by name");
    assert_eq!((stats.counts.elements, stats.counts.pushed), (3, 4));
    assert_eq!((stats.blobs, stats.blob_bytes), (3, 9));
    let server = b.server_stats(&whole(), &|_| true).await.expect("stats");
    assert_eq!(server.namespace_count, 1);
    assert_eq!(server.namespaces[0].namespace, ns);
    assert_eq!(server.namespaces[0].queue_count, 2);
    let t = b.totals();
    assert_eq!((t.elements, t.pushes, t.pops, t.waiting), (3, 4, 1, 0));
    assert_eq!(server.totals, t);
    assert!(b
        .queue_stats(&ns, &name("none"))
        .await
        .expect("stats")
        .is_none());
    assert!(b
        .namespace_stats(&name("none"), &whole())
        .await
        .expect("stats")
        .is_none());
}

/// `namespace_stats` and `server_stats` answer a page at a time, in name
/// order, each page's token leading to the next; the figures count every
/// queue and every listed namespace on every page.
pub async fn listings_come_in_pages(fresh: Fresh) {
    let b = &*fresh.backend;
    let ns = name("paged");
    let queues = ["e", "a", "d", "b", "c"];
    for q in queues {
        push(b, &ns, &name(q), b"x").await;
    }
    push(b, &name("other"), &name("q"), b"y").await;
    let mut page = Page::first(2);
    let mut seen = Vec::new();
    loop {
        let stats = b.namespace_stats(&ns, &page).await.expect("stats").unwrap();
        assert_eq!((stats.counts.elements, stats.queue_count), (5, 5));
        assert!(stats.queues.len() <= 2);
        seen.extend(stats.queues.iter().map(|q| q.queue.to_string()));
        match stats.next_page_token {
            Some(token) => page.after = Some(token.0),
            None => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    let first = b
        .server_stats(&Page::first(1), &|_| true)
        .await
        .expect("stats");
    assert_eq!(first.namespace_count, 2);
    assert_eq!(first.namespaces[0].namespace, name("other"));
    let after = first.next_page_token.expect("a second page").0;
    let page = Page {
        after: Some(after),
        limit: 1,
    };
    let second = b.server_stats(&page, &|_| true).await.expect("stats");
    assert_eq!(second.namespaces[0].namespace, ns);
    assert!(second.next_page_token.is_none(), "the last page");
    let only = |n: &Name| n.as_str() == "paged";
    let listed = b.server_stats(&Page::first(1), &only).await.expect("stats");
    assert_eq!(listed.namespace_count, 1, "counts what the filter lists");
    assert_eq!(listed.namespaces[0].namespace, ns);
    assert!(listed.next_page_token.is_none());
}
