//! The durable store against a plain model, in the style of redb's fuzzer:
//! random operations (pushes small and spilled, reference pushes, pops plain
//! and header-only, leases acknowledged, released and run out, element
//! expiry, blobs stored and deleted, overflow segments compacted, which
//! moves their bodies) are applied through the `Backend` trait
//! to a store with `--data-dir` and `--fsync always`, whose small segments
//! seal and compact as it goes (and whose small bodies past a small memory
//! limit go to small overflow segments), and to a model of queues and blobs. Every
//! answer is checked against the model. Then the store is stopped without
//! its shutdown purge, its newest log segment is cut at a random byte (the
//! torn tail a kill -9 or a power loss leaves), and the store reopened on it
//! must hold what the model held after the last operation whose records lie
//! wholly before the cut (or after the operation the cut falls in, whose
//! answer was never sent) as `docs/DURABILITY.md` promises: queues in push
//! order with leased elements back at their place, consumed elements gone,
//! delivery counts as of the last dead-letter move.
//!
//! Cases: `BLOBQ_REPLAY_CASES` (default 16, so `make test` stays quick;
//! `make fuzz` runs many more).

#[path = "common/store_crash.rs"]
mod store_crash;
#[path = "common/store_model.rs"]
mod store_model;
#[path = "common/store_ops.rs"]
mod store_ops;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use store_crash::run_case;
use store_model::{Op, Size};

fn cases() -> u32 {
    std::env::var("BLOBQ_REPLAY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

fn size() -> impl Strategy<Value = Size> {
    prop_oneof![
        4 => (1usize..200).prop_map(Size::Small),
        1 => (600usize..3000).prop_map(Size::Spilled),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let queue = 0usize..2;
    let any_queue = 0usize..4;
    prop_oneof![
        8 => (queue.clone(), size(), any::<bool>()).prop_map(|(queue, size, typed)| Op::Push { queue, size, typed }),
        2 => (queue.clone(), any::<prop::sample::Index>(), any::<bool>()).prop_map(|(queue, blob, none)| Op::PushReference { queue, blob, none }),
        2 => size().prop_map(|size| Op::StoreBlob { size }),
        1 => any::<prop::sample::Index>().prop_map(|blob| Op::DeleteBlob { blob }),
        5 => (any_queue, any::<bool>()).prop_map(|(queue, with_data)| Op::Pop { queue, with_data }),
        3 => (queue.clone(), any::<bool>()).prop_map(|(queue, with_data)| Op::PopLeased { queue, with_data }),
        2 => any::<prop::sample::Index>().prop_map(|lease| Op::Ack { lease }),
        2 => any::<prop::sample::Index>().prop_map(|lease| Op::Release { lease }),
        1 => queue.prop_map(|queue| Op::LeaseRunsOut { queue }),
        2 => Just(Op::CompactSegments),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    /// After a crash at any byte of the newest segment, replay gives back
    /// exactly the state of the last operation wholly logged.
    #[test]
    fn a_torn_log_replays_to_the_last_acknowledged_operation(
        ops in prop::collection::vec(op(), 1..48),
        // One case in six pushes some elements with a lifetime of 1 s, and
        // then waits (once) for them to expire.
        short_lived in prop::bool::weighted(1.0 / 6.0),
        cut in any::<prop::sample::Index>(),
    ) {
        run_case(&ops, short_lived, cut)?;
    }
}
