//! Random operations against the namespace state and a plain model side
//! by side, with the clock under the test's control.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::backend::ids::ElementId;
use crate::backend::meta::Metadata;
use crate::store::blob::Blob;
use crate::store::blob::BlobContent;
use crate::store::element::Element;

pub(super) const MAX_DELIVERIES: u32 = 3;
const QUEUES: [&str; 2] = ["a", "b"];

#[derive(Debug, Clone)]
enum Op {
    Push {
        queue: usize,
        lifetime: u64,
        data: bool,
    },
    Reference {
        queue: usize,
        blob: usize,
        lifetime: u64,
    },
    Pop {
        queue: usize,
        with_data: bool,
        lease_ms: Option<u64>,
    },
    Ack {
        lease: usize,
    },
    Release {
        lease: usize,
    },
    Delete {
        blob: usize,
    },
    Advance {
        ms: u64,
        sweep: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 1..6u64, any::<bool>())
            .prop_map(|(queue, lifetime, data)| Op::Push { queue, lifetime, data }),
        2 => (0..2usize, 0..8usize, 1..6u64)
            .prop_map(|(queue, blob, lifetime)| Op::Reference { queue, blob, lifetime }),
        4 => (0..2usize, any::<bool>(), proptest::option::of(1..3000u64))
            .prop_map(|(queue, with_data, lease_ms)| Op::Pop { queue, with_data, lease_ms }),
        1 => (0..6usize).prop_map(|lease| Op::Ack { lease }),
        1 => (0..6usize).prop_map(|lease| Op::Release { lease }),
        1 => (0..8usize).prop_map(|blob| Op::Delete { blob }),
        2 => (0..2500u64, any::<bool>()).prop_map(|(ms, sweep)| Op::Advance { ms, sweep }),
    ]
}

/// What the model remembers of an element.
#[derive(Debug, Clone)]
pub(super) struct Expect {
    pub id: ElementId,
    deadline: Millis,
    blob: Option<BlobId>,
    deliveries: u32,
}

/// An element out under a lease, in the model.
#[derive(Debug, Clone)]
struct ModelLease {
    queue: String,
    element: Expect,
    deadline: Millis,
}

/// The model: plain FIFOs by queue name, and leases by receipt.
#[derive(Default)]
struct Model {
    queues: BTreeMap<String, VecDeque<Expect>>,
    leases: BTreeMap<Receipt, ModelLease>,
}

impl Model {
    fn queue(&mut self, name: &str) -> &mut VecDeque<Expect> {
        self.queues.entry(name.to_owned()).or_default()
    }

    /// A lease ends: the element goes back to the head, to the dead-letter
    /// queue after too many deliveries, or nowhere if it expired itself.
    fn end_lease(&mut self, receipt: Receipt, now: Millis) {
        let Some(lease) = self.leases.remove(&receipt) else {
            return;
        };
        if lease.element.deadline.has_passed(now) {
            return;
        }
        if lease.element.deliveries >= MAX_DELIVERIES {
            let dead = format!("{}.dead", lease.queue);
            self.queue(&dead).push_back(lease.element);
        } else {
            self.queue(&lease.queue).push_front(lease.element);
        }
    }

    /// The sweeper at `now`: element expiries, and leases that ran out in
    /// index order (deadline, then receipt), as the real index orders them.
    fn sweep(&mut self, now: Millis) {
        let mut due: Vec<(Millis, Receipt)> = self
            .leases
            .iter()
            .filter(|(_, l)| l.deadline.has_passed(now))
            .map(|(r, l)| (l.deadline, *r))
            .collect();
        due.sort();
        // Elements expire first when their deadline is earlier; a returned
        // element that is itself expired is dropped by `end_lease`.
        for (_, receipt) in due {
            self.end_lease(receipt, now);
        }
        for q in self.queues.values_mut() {
            q.retain(|e| !e.deadline.has_passed(now));
        }
    }
}

pub(super) fn state() -> NsState {
    Namespace::new(
        Name::parse("ns").unwrap(),
        Arc::new(Totals::default()),
        MAX_DELIVERIES,
        Quota::default(),
        None,
    )
    .state
    .into_inner()
    .unwrap()
}

/// Structural invariants that must hold after every operation.
pub(super) fn check_invariants(st: &NsState, now: Millis) {
    let held: Vec<&Element> = st
        .queues
        .values()
        .flat_map(|q| q.ready().chain(q.leased.values().map(|l| &l.element)))
        .collect();
    for entry in st.blobs.iter() {
        let id = &entry.blob.id();
        let refs = held
            .iter()
            .filter(|e| e.blob.as_ref().is_some_and(|b| b.id() == *id))
            .count();
        assert_eq!(
            entry.refs() as usize,
            refs,
            "refs of blob {id} match the held elements"
        );
        if !entry.exposed() {
            assert!(
                entry.refs() > 0 || !entry.is_garbage(now),
                "unreferenced unexposed blob kept"
            );
        }
    }
    let ready: usize = st.queues.values().map(|q| q.ready().count()).sum();
    let indexed: usize = st
        .queues
        .values()
        .map(|q| q.ready().filter(|e| e.indexed).count())
        .sum();
    for (name, q) in &st.queues {
        if let Some(head) = q.chain_deadline() {
            let key = q.chain_key.expect("a chain has an index entry");
            assert!(key <= head, "the chain entry is due by its first deadline");
            assert!(st.expiry.contains(&(key, ExpiryKey::Chain(name.clone()))));
        }
    }
    let leased: usize = st.queues.values().map(|q| q.leased.len()).sum();
    let element_keys = st
        .expiry
        .iter()
        .filter(|(_, k)| matches!(k, ExpiryKey::Element(..)))
        .count();
    let lease_keys = st
        .expiry
        .iter()
        .filter(|(_, k)| matches!(k, ExpiryKey::Lease(..)))
        .count();
    assert_eq!(
        element_keys, indexed,
        "one expiry entry per indexed element"
    );
    assert_eq!(lease_keys, leased, "one expiry entry per lease");
    let totals = st.totals.snapshot();
    assert_eq!(
        (totals.elements as usize, totals.leased as usize),
        (ready, leased)
    );
    assert_eq!(
        st.elements_held as usize,
        ready + leased,
        "the quota's element count"
    );
    let bytes: u64 = st.blobs.iter().map(|e| e.blob.size()).sum();
    assert_eq!(st.blob_bytes, bytes, "the quota's byte count");
    if let Some((first, _)) = st.expiry.first() {
        assert!(
            st.scheduled.is_some_and(|s| s <= *first),
            "the sweeper is due by the first deadline"
        );
    }
}

pub(super) fn push_element(
    st: &mut NsState,
    queue: &Name,
    blob: Option<Arc<Blob>>,
    lifetime: u64,
    now: Millis,
    grave: &mut Graveyard,
) -> Expect {
    let meta = blob.as_ref().map_or_else(
        || Metadata::shared(None, vec![], 64).unwrap(),
        |b| b.meta().clone(),
    );
    let deadline = now.plus_secs(lifetime);
    let element = Element::new(blob.clone(), meta, deadline);
    let expect = Expect {
        id: element.id,
        deadline,
        blob: blob.map(|b| b.id()),
        deliveries: 0,
    };
    st.enqueue(queue, element, Arrival::Push, now, grave);
    expect
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]
    #[test]
    fn namespace_state_matches_a_fifo_model(ops in proptest::collection::vec(op(), 1..150)) {
        let mut st = state();
        let totals = st.totals.clone();
        let names: Vec<Name> = QUEUES.iter().map(|q| Name::parse(q).unwrap()).collect();
        let mut model = Model::default();
        let mut blobs: Vec<BlobId> = Vec::new();
        let mut deleted: Vec<BlobId> = Vec::new();
        let mut receipts: Vec<(usize, Receipt)> = Vec::new();
        let mut now = Millis(1_000_000);
        for op in ops {
            let mut grave = Graveyard::default();
            match op {
                Op::Push { queue, lifetime, data } => {
                    let blob = data.then(|| {
                        let meta = Metadata::shared(None, vec![], 64).unwrap();
                        Blob::new(BlobContent::Memory(Bytes::from_static(b"x")), 1, meta, totals.clone())
                    });
                    if let Some(b) = &blob {
                        blobs.push(b.id());
                        st.insert_blob(b.clone(), 1, now.plus_secs(lifetime));
                    }
                    let expect = push_element(&mut st, &names[queue], blob, lifetime, now, &mut grave);
                    model.queue(QUEUES[queue]).push_back(expect);
                }
                Op::Reference { queue, blob, lifetime } => {
                    let Some(&id) = blobs.get(blob) else { continue };
                    if let Some(b) = st.reference_blob(id, now) {
                        prop_assert!(!deleted.contains(&id), "a deleted blob cannot be referenced");
                        let expect = push_element(&mut st, &names[queue], Some(b), lifetime, now, &mut grave);
                        model.queue(QUEUES[queue]).push_back(expect);
                    }
                }
                Op::Pop { queue, with_data, lease_ms } => {
                    let q = model.queue(QUEUES[queue]);
                    while q.front().is_some_and(|e| e.deadline.has_passed(now)) {
                        q.pop_front();
                    }
                    let expected = q.pop_front();
                    let got = st.take_head(&names[queue], now, &mut grave);
                    prop_assert_eq!(got.as_ref().map(|e| e.id), expected.as_ref().map(|e| e.id), "FIFO order, expired skipped");
                    let (Some(element), Some(mut expected)) = (got, expected) else { continue };
                    let mode = PopMode { with_data, lease_ms };
                    let taken = st.finish_pop(&names[queue], element, mode, now, &mut grave);
                    let gone = expected.blob.is_some_and(|b| deleted.contains(&b));
                    prop_assert_eq!(matches!(taken, Delivery::BlobGone), gone, "410 exactly when the blob was deleted");
                    if let Delivery::Element { lease: Some(lease), .. } = taken {
                        expected.deliveries += 1;
                        prop_assert_eq!(lease.deliveries, expected.deliveries);
                        receipts.push((queue, lease.receipt));
                        model.leases.insert(lease.receipt, ModelLease {
                            queue: QUEUES[queue].to_owned(),
                            element: expected,
                            deadline: lease.deadline,
                        });
                    }
                }
                Op::Ack { lease } | Op::Release { lease } if lease >= receipts.len() => {}
                Op::Ack { lease } => {
                    let (queue, receipt) = receipts[lease];
                    let running = model.leases.get(&receipt).is_some_and(|l| !l.deadline.has_passed(now));
                    let ok = st.ack(&names[queue], receipt, now, &mut grave).is_some();
                    prop_assert_eq!(ok, running, "ack succeeds exactly on a running lease");
                    if running {
                        model.leases.remove(&receipt);
                    } else {
                        model.end_lease(receipt, now);
                    }
                }
                Op::Release { lease } => {
                    let (queue, receipt) = receipts[lease];
                    let running = model.leases.get(&receipt).is_some_and(|l| !l.deadline.has_passed(now));
                    let ok = st.release(&names[queue], receipt, now, &mut grave);
                    prop_assert_eq!(ok, running, "release succeeds exactly on a running lease");
                    model.end_lease(receipt, now);
                }
                Op::Delete { blob } => {
                    let Some(&id) = blobs.get(blob) else { continue };
                    if let Some(b) = st.remove_blob(id, now) {
                        b.delete();
                        deleted.push(id);
                    }
                }
                Op::Advance { ms, sweep } => {
                    now = Millis(now.0 + ms);
                    if sweep {
                        while st.expire_due(now, 7, &mut grave) == 7 {}
                        let _ = st.reschedule();
                        model.sweep(now);
                    }
                }
            }
            drop(grave);
            check_invariants(&st, now);
            for (name, q) in &model.queues {
                let real: Vec<ElementId> = st.queues.get(name.as_str())
                    .map(|rq| rq.ready().filter(|e| !e.deadline.has_passed(now)).map(|e| e.id).collect())
                    .unwrap_or_default();
                let live: Vec<ElementId> = q.iter().filter(|e| !e.deadline.has_passed(now)).map(|e| e.id).collect();
                prop_assert_eq!(real, live, "queue {} holds the model's live elements in order", name);
            }
        }
    }
}
