//! Unit tests of the namespace state's single operations; the random
//! model test is in `model_tests`.

use bytes::Bytes;

use super::model_tests::{check_invariants, push_element, state, MAX_DELIVERIES};
use super::*;
use crate::backend::meta::Metadata;
use crate::store::blob::BlobContent;

#[test]
fn a_data_pop_releases_its_blob_into_the_grave_without_allocating() {
    let mut st = state();
    let q = Name::parse("q").unwrap();
    let now = Millis(1000);
    let meta = Metadata::shared(None, vec![], 64).unwrap();
    let blob = Blob::new(
        BlobContent::Memory(Bytes::from_static(b"x")),
        1,
        meta,
        st.totals.clone(),
    );
    st.insert_blob(blob.clone(), 1, now.plus_secs(5));
    let mut grave = Graveyard::default();
    push_element(&mut st, &q, Some(blob), 5, now, &mut grave);
    let mode = PopMode {
        with_data: true,
        lease_ms: None,
    };
    let mut grave = Graveyard::default();
    let taken = st.pop_head(&q, mode, now, &mut grave);
    assert!(matches!(taken, Some(Delivery::Element { .. })));
    assert_eq!(
        grave.blobs.len(),
        1,
        "the table's reference, dropped after the lock"
    );
    assert!(!grave.blobs.spilled(), "held inline, no allocation");
    assert_eq!(st.blobs.len(), 0);
}

#[test]
fn a_waiter_that_left_never_receives_and_the_element_is_queued() {
    let mut st = state();
    let q = Name::parse("q").unwrap();
    let now = Millis(1000);
    let (tx, rx) = tokio::sync::oneshot::channel();
    st.add_waiter(&q, crate::store::queue::Waiter { id: 1, tx }, now);
    drop(rx); // the consumer's connection closed
    let mut grave = Graveyard::default();
    let expect = push_element(&mut st, &q, None, 5, now, &mut grave);
    assert_eq!(
        st.take_head(&q, now, &mut grave).map(|e| e.id),
        Some(expect.id)
    );
    assert_eq!(st.totals.snapshot().waiting, 0);
}

#[test]
fn elements_of_one_lifetime_share_one_index_entry_and_expire_in_batches() {
    let mut st = state();
    let q = Name::parse("q").unwrap();
    let mut grave = Graveyard::default();
    for i in 0..1000u64 {
        push_element(&mut st, &q, None, 10, Millis(i), &mut grave);
    }
    assert_eq!(st.expiry.len(), 1, "one chain entry for the whole queue");
    // A shorter lifetime cannot join the chain: it gets an entry of its own.
    let short = push_element(&mut st, &q, None, 1, Millis(1000), &mut grave);
    assert_eq!(st.expiry.len(), 2);
    check_invariants(&st, Millis(1000));
    assert_eq!(
        st.expire_due(Millis(2000), 100, &mut grave),
        1,
        "only the short one is due"
    );
    assert!(st.queues[&q].ready().all(|e| e.id != short.id));
    // Half of the chain is due at 10.5 s, handled in bounded batches.
    let mut rounds = 0;
    while st.expire_due(Millis(10_500), 100, &mut grave) > 0 {
        let _ = st.reschedule();
        rounds += 1;
        check_invariants(&st, Millis(10_500));
    }
    assert!(rounds >= 5, "batches of at most 100: {rounds}");
    assert_eq!(st.queues[&q].counts().elements, 499);
    assert_eq!(st.queues[&q].counts().expired, 502);
}

#[test]
fn holes_left_by_expiry_are_closed_up_and_the_index_follows() {
    let mut st = state();
    let q = Name::parse("q").unwrap();
    let mut grave = Graveyard::default();
    // A long-lived head keeps the holes behind it from reaching the front.
    let mut kept = vec![push_element(&mut st, &q, None, 100, Millis(0), &mut grave).id];
    for i in 0..300 {
        let lifetime = if i % 3 == 0 { 50 } else { 1 };
        let e = push_element(&mut st, &q, None, lifetime, Millis(0), &mut grave);
        if lifetime == 50 {
            kept.push(e.id);
        }
    }
    while st.expire_due(Millis(2000), 64, &mut grave) > 0 {}
    let queue = &st.queues[&q];
    assert!(
        queue.ready.len() < 200,
        "compacted: {} slots for {} elements",
        queue.ready.len(),
        kept.len()
    );
    check_invariants(&st, Millis(2000));
    // Every moved element's expiry entry points at it: at 50 s all but the head expire.
    while st.expire_due(Millis(50_000), 64, &mut grave) > 0 {}
    check_invariants(&st, Millis(50_000));
    assert_eq!(st.queues[&q].counts().elements, 1);
    assert_eq!(
        st.take_head(&q, Millis(50_000), &mut grave).map(|e| e.id),
        Some(kept[0])
    );
}

#[test]
fn an_expired_head_is_skipped_before_the_sweeper_runs() {
    let mut st = state();
    let q = Name::parse("q").unwrap();
    let mut grave = Graveyard::default();
    push_element(&mut st, &q, None, 1, Millis(0), &mut grave);
    let live = push_element(&mut st, &q, None, 10, Millis(0), &mut grave);
    // At 1 s the first has just expired; no sweep has run.
    assert_eq!(
        st.take_head(&q, Millis(1000), &mut grave).map(|e| e.id),
        Some(live.id)
    );
    assert_eq!(st.queues[&q].counts().expired, 1);
}

#[test]
fn a_lease_that_runs_out_max_deliveries_times_dead_letters_the_element() {
    let mut st = state();
    let q = Name::parse("jobs").unwrap();
    let mut grave = Graveyard::default();
    let pushed = push_element(&mut st, &q, None, 3600, Millis(0), &mut grave);
    let mut now = Millis(0);
    for round in 1..=MAX_DELIVERIES {
        let element = st.take_head(&q, now, &mut grave).expect("back at the head");
        let mode = PopMode {
            with_data: true,
            lease_ms: Some(1000),
        };
        let taken = st.finish_pop(&q, element, mode, now, &mut grave);
        let Delivery::Element {
            lease: Some(lease), ..
        } = taken
        else {
            panic!("leased")
        };
        assert_eq!(lease.deliveries, round);
        assert_eq!(st.queues[&q].counts().leased, 1);
        now = Millis(now.0 + 1000);
        st.expire_due(now, 100, &mut grave);
    }
    assert!(
        st.take_head(&q, now, &mut grave).is_none(),
        "no longer in its queue"
    );
    let dead = Name::parse("jobs.dead").unwrap();
    let element = st.take_head(&dead, now, &mut grave).expect("dead-lettered");
    assert_eq!(
        (element.id, element.deliveries),
        (pushed.id, MAX_DELIVERIES)
    );
}

/// A push's `Blob` and `Put` reach the log together even when another
/// request's leader writes what is pending between the two and seals the
/// segment: split, compacting the first segment alone would drop the blob
/// as unreferenced, and replay would then drop the element.
#[test]
fn a_change_reaches_the_log_whole_when_a_write_falls_inside_it() {
    use crate::store::journal::files::DataDir;
    use crate::store::journal::replay::{replay, OnDamage};
    use crate::store::journal::{Commit, DurabilityConfig, FsyncMode, Journal};

    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path());
    dir.create().unwrap();
    let config = DurabilityConfig {
        dir: tmp.path().to_owned(),
        fsync: FsyncMode::Batch,
        fsync_interval: std::time::Duration::from_secs(3600),
        // Every write seals its segment and hands it to compaction.
        segment_bytes: 1,
        repair: false,
    };
    let journal = Arc::new(Journal::start(dir.clone(), &config, 1, 0).unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let write_pending = || runtime.block_on(journal.wait(Commit::Accepted)).unwrap();
    let namespace = Namespace::new(
        Name::parse("ns").unwrap(),
        Arc::new(Totals::default()),
        MAX_DELIVERIES,
        Quota::default(),
        Some(journal.clone()),
    );
    let q = Name::parse("q").unwrap();
    let now = Millis::now();
    let meta = Metadata::shared(None, vec![], 64).unwrap();
    let blob = Blob::new(
        BlobContent::Memory(Bytes::from_static(b"body")),
        4,
        meta,
        Arc::new(Totals::default()),
    );
    let mut grave = Graveyard::default();
    let pushed = {
        let mut st = namespace.lock();
        st.insert_blob(blob.clone(), 1, now.plus_secs(3600));
        write_pending();
        push_element(&mut st, &q, Some(blob.clone()), 3600, now, &mut grave)
    };
    write_pending();
    journal.close();

    let (state, _) = replay(&dir, OnDamage::Refuse).unwrap();
    let ns = &state.namespaces["ns"];
    let element = &ns.elements[&pushed.id.to_u128()];
    assert_eq!(element.blob, Some(blob.id().to_u128()));
    assert!(
        ns.blobs.contains_key(&blob.id().to_u128()),
        "the blob was compacted away"
    );
}
