//! Durable compaction through the store: a mostly dead segment of the data
//! directory is compacted, its file removed once the moves are durable, the
//! bodies read back byte for byte before and after a restart; a damaged
//! body stays where it is; compaction racing pushes and pops loses nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;

use crate::backend::ids::ElementId;
use crate::backend::name::Name;
use crate::backend::{Backend, BackendError, IncomingBody, Payload, PopOptions, PushOptions};
use crate::store::journal::files::DataDir;
use crate::store::journal::record::{decode, records_of, Record};
use crate::store::overflow::OverflowConfig;
use crate::store::{FsyncMode, Store};

/// Segments of 4 KiB, about a dozen bodies each; every body past the
/// memory budget; no background compaction, so each test compacts at a
/// known point; a short background sync for `batch` mode.
fn durable(dir: &Path, fsync: FsyncMode) -> Store {
    let mut config = crate::store::tests_durable_config(dir, fsync);
    config.spill_threshold = 4096;
    config.memory_limit = 1;
    config.overflow = OverflowConfig {
        segment_bytes: 4096,
        compact_percent: 0,
        ..OverflowConfig::default()
    };
    if let Some(d) = &mut config.durability {
        d.fsync_interval = Duration::from_millis(20);
    }
    Store::new(config).unwrap()
}

fn names() -> (Name, Name) {
    (Name::parse("ns").unwrap(), Name::parse("q").unwrap())
}

/// Body `i`: about 300 bytes, each different.
fn body(i: usize) -> Vec<u8> {
    (0..280 + i % 40).map(|j| (i * 31 + j * 7) as u8).collect()
}

async fn push(s: &Store, bytes: &[u8]) -> ElementId {
    let (ns, q) = names();
    let opts = PushOptions {
        lifetime: 600,
        ..PushOptions::default()
    };
    let body = IncomingBody::from_bytes(bytes.to_vec());
    Backend::push(s, &ns, &q, body, opts).await.unwrap().id
}

/// Pops `expected`, in order, and then finds the queue empty.
async fn pops_exactly<'a>(
    s: &Store,
    expected: impl IntoIterator<Item = &'a (ElementId, Vec<u8>)>,
    fsync: FsyncMode,
) {
    for expected in expected {
        assert_eq!(pop(s).await.unwrap().as_ref(), Some(expected), "{fsync:?}");
    }
    assert_eq!(pop(s).await.unwrap(), None, "{fsync:?}");
}

async fn pop(s: &Store) -> Result<Option<(ElementId, Vec<u8>)>, BackendError> {
    let (ns, q) = names();
    let opts = PopOptions {
        with_data: true,
        lease: None,
        wait: Duration::ZERO,
    };
    let Some(popped) = Backend::pop(s, &ns, &q, opts).await? else {
        return Ok(None);
    };
    let bytes = match popped.body.expect("data") {
        Payload::Bytes(b) => b.to_vec(),
        Payload::Stream { mut chunks, .. } => {
            let mut v = Vec::new();
            while let Some(chunk) = chunks.next().await {
                v.extend_from_slice(&chunk?);
            }
            v
        }
    };
    Ok(Some((popped.id, bytes)))
}

fn segment(dir: &Path, number: u64) -> PathBuf {
    dir.join("data")
        .join("segments")
        .join(crate::store::overflow::segment_name(number))
}

async fn wait_until_gone(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while path.exists() {
        assert!(Instant::now() < deadline, "{} still there", path.display());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How many `BlobMoved` records the log holds.
fn moves_logged(dir: &Path) -> usize {
    let data = DataDir::new(&dir.join("data"));
    let mut moves = 0;
    for (seq, kind) in data.list().unwrap() {
        let bytes = std::fs::read(data.segment(seq, kind)).unwrap();
        let mut at = crate::store::journal::files::MAGIC.len();
        while let Ok((record, used)) = decode(&bytes[at..]) {
            let inner: Vec<Record<'_>> = match &record {
                Record::Change(body) => records_of(body).collect(),
                other => vec![other.clone()],
            };
            moves += inner
                .iter()
                .filter(|r| matches!(r, Record::BlobMoved { .. }))
                .count();
            at += used;
        }
    }
    moves
}

/// 40 bodies over four segments, the first 11 popped: the first segment
/// holds two live bodies of about a dozen.
async fn mostly_dead_first_segment(s: &Store) -> Vec<(ElementId, Vec<u8>)> {
    let mut pushed = Vec::new();
    for i in 0..40 {
        let bytes = body(i);
        pushed.push((push(s, &bytes).await, bytes));
    }
    for expected in pushed.drain(..11) {
        assert_eq!(pop(s).await.unwrap(), Some(expected));
    }
    pushed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mostly_dead_durable_segment_is_compacted_and_its_survivors_come_back_after_a_restart() {
    for fsync in [FsyncMode::Always, FsyncMode::Batch] {
        let dir = tempfile::tempdir().unwrap();
        let s = durable(dir.path(), fsync);
        let left = mostly_dead_first_segment(&s).await;
        let first = segment(dir.path(), 0);
        assert!(first.exists(), "{fsync:?}");

        s.compact_overflow(25).await.unwrap();
        wait_until_gone(&first).await;
        assert!(moves_logged(dir.path()) >= 1, "{fsync:?}: no move logged");
        // The first survivor read from its new place.
        assert_eq!(pop(&s).await.unwrap().as_ref(), left.first(), "{fsync:?}");

        // A restart replays the moves: every survivor at its new place.
        s.purge();
        drop(s);
        let s = durable(dir.path(), fsync);
        assert!(!first.exists(), "{fsync:?}");
        pops_exactly(&s, &left[1..], fsync).await;
        s.purge();
    }
}

/// A body whose bytes are damaged is not copied: it stays in its segment,
/// which stays too, and the pop that reaches it takes the damaged-body
/// path (its element moves to the dead-letter queue); the bodies around it
/// move and read back intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_found_damaged_while_copied_stays_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let s = durable(dir.path(), FsyncMode::Always);
    let left = mostly_dead_first_segment(&s).await;
    // Stopped, so that no read-ahead window holds the bytes as they were.
    s.purge();
    drop(s);
    let first = segment(dir.path(), 0);
    // Flip a byte of the first survivor in its segment.
    let mut bytes = std::fs::read(&first).unwrap();
    let in_first = left
        .iter()
        .filter(|(_, b)| bytes.windows(b.len()).any(|w| w == &b[..]))
        .count();
    assert!(in_first >= 2, "{in_first} survivors in the first segment");
    let at = bytes
        .windows(left[0].1.len())
        .position(|w| w == left[0].1)
        .expect("the body in the first segment");
    bytes[at + 10] ^= 0x20;
    std::fs::write(&first, &bytes).unwrap();
    let s = durable(dir.path(), FsyncMode::Always);

    s.compact_overflow(25).await.unwrap();
    assert!(first.exists(), "the damaged body keeps its segment");
    assert_eq!(
        moves_logged(dir.path()),
        in_first - 1,
        "only the intact survivors moved"
    );
    assert!(pop(&s).await.is_err(), "the damaged body is not served");
    let (ns, q) = names();
    let dead = q.dead_letter().unwrap();
    let dead_letter = Backend::pop(
        &s,
        &ns,
        &dead,
        PopOptions {
            with_data: false,
            lease: None,
            wait: Duration::ZERO,
        },
    )
    .await
    .unwrap()
    .expect("the damaged element in the dead-letter queue");
    assert_eq!(dead_letter.id, left[0].0);
    for expected in &left[1..] {
        assert_eq!(pop(&s).await.unwrap().as_ref(), Some(expected));
    }
    wait_until_gone(&first).await;
    s.purge();
}

/// Compactions racing pushes and pops: every element pushed is popped
/// once, byte for byte, before and after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_racing_pushes_and_pops_loses_and_duplicates_nothing() {
    for fsync in [FsyncMode::Always, FsyncMode::Batch] {
        let dir = tempfile::tempdir().unwrap();
        let s = durable(dir.path(), fsync);
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let compactor = {
            let (s, done) = (s.clone(), done.clone());
            tokio::spawn(async move {
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    s.compact_overflow(60).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        };
        let mut pushed = std::collections::VecDeque::new();
        for i in 0..300 {
            let bytes = body(i);
            pushed.push_back((push(&s, &bytes).await, bytes));
            // Pop two of every three: segments die behind the pushes.
            if i % 3 != 0 {
                let expected = pushed.pop_front();
                assert_eq!(pop(&s).await.unwrap(), expected, "{fsync:?} at {i}");
            }
        }
        done.store(true, std::sync::atomic::Ordering::Release);
        compactor.await.unwrap();
        assert!(moves_logged(dir.path()) > 0, "{fsync:?}: nothing moved");
        s.purge();
        drop(s);
        let s = durable(dir.path(), fsync);
        pops_exactly(&s, &pushed, fsync).await;
        s.purge();
    }
}

/// A move is made and logged under its namespace's lock, which orders it
/// after any record naming the old place: while the lock is held (as by a
/// push staging its `Blob` record), the compaction copies but moves
/// nothing, and logs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_waits_for_its_namespace_lock() {
    let dir = tempfile::tempdir().unwrap();
    let s = durable(dir.path(), FsyncMode::Always);
    let left = mostly_dead_first_segment(&s).await;
    let (ns, _) = names();
    let namespace = s.shared.namespaces.get(&ns).unwrap().clone();
    let locked = namespace.lock();
    let compaction = {
        let s = s.clone();
        tokio::spawn(async move { s.compact_overflow(25).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!compaction.is_finished());
    assert_eq!(
        moves_logged(dir.path()),
        0,
        "a move logged outside the lock"
    );
    drop(locked);
    tokio::time::timeout(Duration::from_secs(10), compaction)
        .await
        .expect("the compaction ends once the lock is free")
        .unwrap()
        .unwrap();
    assert!(moves_logged(dir.path()) > 0);
    wait_until_gone(&segment(dir.path(), 0)).await;
    for expected in &left {
        assert_eq!(pop(&s).await.unwrap().as_ref(), Some(expected));
    }
    s.purge();
}
