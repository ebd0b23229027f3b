//! The model and driver of `tests/replay_model.rs`: operations applied to a
//! durable `blobq::store::Store` through the `Backend` trait and to a plain
//! model (a `VecDeque` per queue, a map of blobs), then a crash at a byte of
//! the newest log segment and a replay compared with the model.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

use blobq::backend::meta::{CustomPair, Metadata, DEFAULT_CONTENT_TYPE};
use blobq::backend::name::Name;
use blobq::backend::{
    Backend, BackendError, IncomingBody, MetaInput, Payload, PopOptions, Popped, PushOptions,
};
use blobq::config::{Config, Settings};
use blobq::store::{FsyncMode, Store};

/// Queues 0 and 1 take pushes and leases; 2 and 3 are their dead-letter queues.
const QUEUES: [&str; 4] = ["a", "b", "a.dead", "b.dead"];
/// Small enough that some bodies spill into the data directory's `blobs/`.
const SPILL_THRESHOLD: u64 = 512;
/// Small enough that segments seal, and compaction runs, within a case.
const SEGMENT_BYTES: u64 = 4096;
/// Low, so that releases and leases running out dead-letter now and then.
const MAX_DELIVERIES: u32 = 2;
const LONG_LIFETIME: u64 = 3600;
const SHORT_LEASE: Duration = Duration::from_millis(30);
/// Longest wait for the store's sweeper to do what the model expects.
const PATIENCE: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug)]
pub enum Size {
    /// Kept in memory and inline in the log.
    Small(usize),
    /// Spilled to a file of the data directory.
    Spilled(usize),
}

#[derive(Clone, Debug)]
pub enum Op {
    Push {
        queue: usize,
        size: Size,
        typed: bool,
    },
    /// References one of the known blobs (or none: a header-only element).
    PushReference {
        queue: usize,
        blob: Index,
        none: bool,
    },
    StoreBlob {
        size: Size,
    },
    DeleteBlob {
        blob: Index,
    },
    Pop {
        queue: usize,
        with_data: bool,
    },
    PopLeased {
        queue: usize,
        with_data: bool,
    },
    Ack {
        lease: Index,
    },
    Release {
        lease: Index,
    },
    /// Pops under a lease too short to finish and waits until it ran out.
    LeaseRunsOut {
        queue: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Meta {
    content_type: String,
    custom: Vec<(String, String)>,
}

impl Meta {
    fn of(m: &Metadata) -> Meta {
        Meta {
            content_type: m.content_type.to_string(),
            custom: m
                .custom
                .iter()
                .map(|p| (p.key.to_string(), p.value.to_string()))
                .collect(),
        }
    }

    fn plain() -> Meta {
        Meta {
            content_type: DEFAULT_CONTENT_TYPE.into(),
            custom: Vec::new(),
        }
    }
}

/// How long an element lives: the hour of most, or the one second of a
/// short-lived one, pushed between `started` and `answered`.
#[derive(Clone, Copy, Debug)]
enum Life {
    Long,
    Short { started: Instant, answered: Instant },
}

impl Life {
    /// Whether it has certainly run out (`Some(true)`), is certainly alive
    /// for the next operation (`Some(false)`), or is too close to call.
    fn expired(self, now: Instant) -> Option<bool> {
        match self {
            Life::Long => Some(false),
            Life::Short { started, answered } => {
                if now + Duration::from_millis(300) < started + Duration::from_secs(1) {
                    Some(false)
                } else if now > answered + Duration::from_millis(1050) {
                    Some(true)
                } else {
                    None
                }
            }
        }
    }

    fn certainly_over(self) -> Instant {
        match self {
            Life::Long => Instant::now(),
            Life::Short { answered, .. } => answered + Duration::from_millis(1060),
        }
    }
}

#[derive(Clone, Debug)]
struct Element {
    id: String,
    data: Option<Vec<u8>>,
    meta: Meta,
    blob: Option<String>,
    /// Deliveries under lease so far, and as the log last recorded them.
    deliveries: u32,
    logged_deliveries: u32,
    /// Position of its latest `Put` in the log: replay rebuilds by it.
    order: u64,
    life: Life,
}

/// The model: what the store holds, live.
#[derive(Clone, Default)]
struct Model {
    queues: [VecDeque<Element>; 4],
    leases: Vec<(String, usize, Element)>,
    /// Blobs readable by id (stored, or exposed by a header-only pop), each
    /// with its bytes and metadata.
    blobs: BTreeMap<String, (Vec<u8>, Meta)>,
    deleted: BTreeSet<String>,
    /// Every blob id the client ever learnt (a push's, a stored blob's).
    known: BTreeSet<String>,
    /// When every short-lived element ever pushed has certainly run out:
    /// a cut log may bring back one the model saw consumed.
    short_until: Option<Instant>,
    next_order: u64,
}

/// What a replay must give back: each queue in log order and each blob
/// readable by id (exposed, or held by an element). Leased elements are
/// ready again; short-lived ones have run out by the time it is compared.
#[derive(Debug, PartialEq, Eq)]
struct Durable {
    queues: BTreeMap<&'static str, Vec<Entry>>,
    blobs: BTreeMap<String, (Digest, Meta)>,
}

/// An element as a replay must give it back.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    id: String,
    blob: Option<String>,
    data: Option<Digest>,
    meta: Meta,
    /// Deliveries as of its last dead-letter move (0 if none).
    deliveries: u32,
}

/// Bytes as compared: their length and an FNV-1a hash, short in a report.
#[derive(Debug, PartialEq, Eq)]
struct Digest(usize, u64);

impl Digest {
    fn of(bytes: &[u8]) -> Digest {
        let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
        Digest(bytes.len(), hash)
    }
}

impl Model {
    fn durable(&self) -> Durable {
        let mut queues = BTreeMap::new();
        for (q, name) in QUEUES.iter().enumerate() {
            let mut elements: Vec<&Element> = self.queues[q]
                .iter()
                .chain(self.leases.iter().filter(|l| l.1 == q).map(|l| &l.2))
                .filter(|e| matches!(e.life, Life::Long))
                .filter(|e| e.blob.as_ref().is_none_or(|b| !self.deleted.contains(b)))
                .collect();
            elements.sort_by_key(|e| e.order);
            if !elements.is_empty() {
                let listed = elements
                    .into_iter()
                    .map(|e| Entry {
                        id: e.id.clone(),
                        blob: e.blob.clone(),
                        data: e.data.as_deref().map(Digest::of),
                        meta: e.meta.clone(),
                        deliveries: e.logged_deliveries,
                    })
                    .collect();
                queues.insert(*name, listed);
            }
        }
        let mut blobs: BTreeMap<String, (Digest, Meta)> = self
            .blobs
            .iter()
            .map(|(id, (bytes, meta))| (id.clone(), (Digest::of(bytes), meta.clone())))
            .collect();
        // An element's own blob is readable by the id its push answered
        // for as long as the element holds it.
        let held = self
            .queues
            .iter()
            .flatten()
            .chain(self.leases.iter().map(|l| &l.2));
        for e in held.filter(|e| matches!(e.life, Life::Long)) {
            if let (Some(id), Some(bytes)) = (&e.blob, &e.data) {
                if !self.deleted.contains(id) {
                    blobs
                        .entry(id.clone())
                        .or_insert_with(|| (Digest::of(bytes), e.meta.clone()));
                }
            }
        }
        Durable { queues, blobs }
    }

    fn put_order(&mut self) -> u64 {
        self.next_order += 1;
        self.next_order
    }

    /// A leased element comes back: to the head of its queue, or to the tail
    /// of the dead-letter queue once delivered too often. Whether the log
    /// records it (a dead-letter move is a `Take` and a `Put`).
    fn return_leased(&mut self, queue: usize, mut element: Element, now: Instant) -> bool {
        let dead = element.deliveries >= MAX_DELIVERIES;
        let expired = element.life.expired(now) == Some(true);
        if dead {
            element.logged_deliveries = element.deliveries;
            element.order = self.put_order();
            if !expired {
                self.queues[queue + 2].push_back(element);
            }
        } else if !expired {
            self.queues[queue].push_front(element);
        }
        dead || expired
    }

    /// Drops what has run out; waits first if any deadline is too close to call.
    async fn settle_expiry(&mut self) {
        let all = || {
            self.queues
                .iter()
                .flatten()
                .chain(self.leases.iter().map(|l| &l.2))
        };
        let now = Instant::now();
        if let Some(wait) = all()
            .filter(|e| e.life.expired(now).is_none())
            .map(|e| e.life.certainly_over())
            .max()
        {
            tokio::time::sleep(wait.saturating_duration_since(now)).await;
        }
        let now = Instant::now();
        for q in &mut self.queues {
            q.retain(|e| e.life.expired(now) != Some(true));
        }
    }
}

/// Where the log ends: the newest segment's number and length.
type LogEnd = (u64, u64);

fn log_end(dir: &Path) -> LogEnd {
    let mut newest = (0, 0);
    for entry in std::fs::read_dir(dir.join("log")).expect("log dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(seq) = name.strip_suffix(".log").and_then(|n| n.parse().ok()) else {
            continue;
        };
        if seq > newest.0 {
            newest = (seq, entry.metadata().map(|m| m.len()).unwrap_or(0));
        }
    }
    newest
}

/// Keeps a hard link to every blob file of `dir` in `archive`. A cut log
/// loses the records after the cut, and with them the removals they made
/// durable: the files such a removal took must be back for the replay, as
/// a real crash would have left them (a file goes only once the record
/// saying it is gone is synced).
fn archive_blob_files(dir: &Path, archive: &Path) {
    for entry in std::fs::read_dir(dir.join("blobs")).expect("blob dir") {
        let entry = entry.expect("entry");
        let kept = archive.join(entry.file_name());
        if !kept.exists() {
            // Gone meanwhile: removed by the store, which is what a cut undoes.
            let _ = std::fs::hard_link(entry.path(), kept);
        }
    }
}

fn restore_blob_files(dir: &Path, archive: &Path) {
    for entry in std::fs::read_dir(archive).expect("archive") {
        let entry = entry.expect("entry");
        let file = dir.join("blobs").join(entry.file_name());
        if !file.exists() {
            std::fs::hard_link(entry.path(), file).expect("restore a blob file");
        }
    }
}

fn newest_segment(dir: &Path) -> PathBuf {
    dir.join("log").join(format!("{:020}.log", log_end(dir).0))
}

fn body(size: Size, seed: usize) -> Vec<u8> {
    let n = match size {
        Size::Small(n) | Size::Spilled(n) => n,
    };
    (0..n).map(|i| (i * 31 + seed * 7) as u8).collect()
}

async fn bytes_of(payload: Option<Payload>) -> Option<Vec<u8>> {
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

fn name(s: &str) -> Name {
    Name::parse(s).expect("valid name")
}

fn open(data: &Path, spill: &Path) -> Store {
    let config = Config::from_settings(Settings {
        data_dir: Some(data.to_owned()),
        spill_dir: Some(spill.to_owned()),
        spill_threshold: Some(SPILL_THRESHOLD),
        fsync: Some(FsyncMode::Always),
        fsync_interval_ms: Some(5),
        log_segment_bytes: Some(SEGMENT_BYTES),
        max_deliveries: Some(MAX_DELIVERIES),
        ..Settings::default()
    })
    .expect("config");
    Store::new(config.store()).expect("store")
}

fn pick<'a>(ids: impl Iterator<Item = &'a String>, at: Index) -> Option<String> {
    let ids: Vec<&String> = ids.collect();
    (!ids.is_empty()).then(|| ids[at.index(ids.len())].clone())
}

/// Runs one case: the operations, the crash at `cut`, the replay.
pub fn run_case(ops: &[Op], short_lived: bool, cut: Index) -> Result<(), TestCaseError> {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    let data = tempfile::tempdir().expect("data dir");
    let spill = tempfile::tempdir().expect("spill dir");
    let archive = tempfile::tempdir().expect("archive dir");
    let dirs = (data.path(), spill.path(), archive.path());
    // Each store on a thread of its own: a store keeps the namespaces a
    // thread used last in that thread's locals, and they hold its journal,
    // which only stops when the last of them goes (or at the purge).
    let (model, history) = std::thread::scope(|scope| {
        let running = scope.spawn(|| runtime().block_on(run(ops, short_lived, dirs)));
        running.join().expect("the operations panicked")
    })?;
    // The crash. Dropped without the shutdown purge, the store wrote out
    // what was pending (as a kill -9 after that write would leave it) and
    // its journal stopped. Then the newest segment is torn.
    journal_threads_end();
    let segment = newest_segment(data.path());
    let (newest, len) = log_end(data.path());
    let keep = cut.index(len as usize + 1) as u64;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .and_then(|f| f.set_len(keep))
        .expect("cut the segment");
    restore_blob_files(data.path(), archive.path());
    let cut = Cut {
        at: (newest, keep),
        len,
        ops: ops.len(),
    };
    let verdict = std::thread::scope(|scope| {
        let replaying = scope.spawn(|| runtime().block_on(replay(&model, &history, cut, dirs)));
        replaying.join().expect("the replay panicked")
    });
    journal_threads_end();
    verdict
}

/// Threads of this process whose name says they belong to a journal.
fn journal_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("blobq-fsync") || name.starts_with("blobq-compact"))
        .count()
}

/// Waits until the dropped store's journal has stopped its threads: until
/// then its syncer may still remove blob files and its compactor rewrite
/// the log, which a crash would not do.
fn journal_threads_end() {
    let deadline = Instant::now() + PATIENCE;
    while journal_threads() > 0 {
        assert!(Instant::now() < deadline, "the journal outlived its store");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Where the newest segment was cut.
struct Cut {
    at: LogEnd,
    len: u64,
    ops: usize,
}

type Dirs<'a> = (&'a Path, &'a Path, &'a Path);

/// The model after each operation, and where the log ended then.
type History = Vec<(Durable, LogEnd)>;

/// Applies `ops` to a fresh store and the model; returns the model and its history.
async fn run(
    ops: &[Op],
    short_lived: bool,
    (data, spill, archive): Dirs<'_>,
) -> Result<(Model, History), TestCaseError> {
    let ns = name("ns");
    let store = open(data, spill);
    let mut model = Model::default();
    let mut history: History = vec![(model.durable(), log_end(data))];
    for (n, op) in ops.iter().enumerate() {
        model.settle_expiry().await;
        apply(&store, &ns, &mut model, op, n, short_lived, data).await?;
        archive_blob_files(data, archive);
        history.push((model.durable(), log_end(data)));
    }
    // Short-lived elements have run out before the crash, so that the
    // replay's view of them is certain.
    if let Some(at) = model.short_until {
        tokio::time::sleep(at.saturating_duration_since(Instant::now())).await;
    }
    drop(store);
    Ok((model, history))
}

/// Reopens the cut data directory and compares it with the history.
async fn replay(
    model: &Model,
    history: &History,
    Cut { at, len, ops }: Cut,
    (data, spill, _): Dirs<'_>,
) -> Result<(), TestCaseError> {
    let (newest, keep) = at;
    let ns = name("ns");
    let last = history.iter().rposition(|(_, end)| *end <= at).unwrap_or(0);
    let store = open(data, spill);
    let found = observe(&store, &ns, model).await;
    let before = &history[last].0;
    let verdict = match history.get(last + 1) {
        // The cut falls inside the next operation's records: unanswered, it
        // may have happened in part (a pop's blob exposed, its element not
        // yet taken, say), but nothing the two states agree on may differ.
        Some((after, _)) if history[last].1 < at => between(&found, before, after),
        _ if found == *before => Ok(()),
        _ => Err("the state differs".to_owned()),
    };
    if let Err(why) = verdict {
        return Err(TestCaseError::fail(format!(
            "cut at byte {keep} of segment {newest} ({len} bytes), after operation {last} of {}: \
             {why}\nreplay gave\n{found:?}\nafter operation {last}:\n{before:?}\nafter the next:\n{:?}",
            ops,
            history.get(last + 1).map(|h| &h.0),
        )));
    }
    Ok(())
}

/// Whether `found` is `before` with part of the one operation that leads to
/// `after` applied: every element is as one of them has it, in their order;
/// what both hold is there, but for what the operation's own records may
/// take with them; no blob appears that neither has.
///
/// Two losses are allowed. A plain pop is at most once: cut between its
/// `Take` and the `Expose` of a header-only pop, the element and its blob
/// are gone, as if it had been answered (`docs/DURABILITY.md`). And a
/// dead-letter move is logged by `NsState::return_leased` as a `Take` then
/// a `Put`: cut between the two, the element is lost. That second one is a
/// hole in the promise that an accepted push is never lost; logging the
/// move as the `Put` alone (which replay already reads as a move) closes
/// it, and this allowance should then go.
fn between(found: &Durable, before: &Durable, after: &Durable) -> Result<(), String> {
    let elements = |d: &Durable| -> BTreeMap<String, (&'static str, Option<String>)> {
        d.queues
            .iter()
            .flat_map(|(q, list)| {
                list.iter()
                    .map(move |e| (e.id.clone(), (*q, e.blob.clone())))
            })
            .collect()
    };
    let empty: Vec<Entry> = Vec::new();
    for (queue, list) in &found.queues {
        for side in [before, after] {
            let theirs = side.queues.get(queue).unwrap_or(&empty);
            let common: Vec<&String> = list
                .iter()
                .filter(|e| theirs.iter().any(|t| t.id == e.id))
                .map(|e| &e.id)
                .collect();
            let order: Vec<&String> = theirs
                .iter()
                .filter(|t| common.contains(&&t.id))
                .map(|t| &t.id)
                .collect();
            if common != order {
                return Err(format!("queue {queue} is out of order"));
            }
        }
        for entry in list {
            let known = [before, after]
                .iter()
                .any(|side| side.queues.get(queue).is_some_and(|l| l.contains(entry)));
            if !known {
                return Err(format!(
                    "element {} of {queue} is in neither state",
                    entry.id
                ));
            }
        }
    }
    let (found_ids, before_ids, after_ids) = (elements(found), elements(before), elements(after));
    for (id, (queue, _)) in &before_ids {
        let Some((moved_to, _)) = after_ids.get(id) else {
            continue;
        };
        let dead_letter_move = *moved_to == format!("{queue}.dead");
        if !found_ids.contains_key(id) && !dead_letter_move {
            return Err(format!("element {id} is lost"));
        }
    }
    for (id, blob) in &found.blobs {
        if before.blobs.get(id) != Some(blob) && after.blobs.get(id) != Some(blob) {
            return Err(format!("blob {id} is in neither state"));
        }
    }
    for id in before
        .blobs
        .keys()
        .filter(|id| after.blobs.contains_key(*id))
    {
        // Gone with an element the cut operation took (allowed above).
        let popped_holder = before_ids
            .iter()
            .any(|(e, (_, blob))| blob.as_ref() == Some(id) && !found_ids.contains_key(e));
        if !found.blobs.contains_key(id) && !popped_holder {
            return Err(format!("blob {id} is lost"));
        }
    }
    Ok(())
}

/// What the reopened store holds: every blob the model ever knew, read by
/// id, then every queue drained under leases (so deliveries show).
async fn observe(store: &dyn Backend, ns: &Name, model: &Model) -> Durable {
    let mut blobs = BTreeMap::new();
    for id in &model.known {
        if let Ok(read) = store.read_blob(ns, id, false).await {
            let bytes = bytes_of(Some(read.body)).await.unwrap_or_default();
            blobs.insert(id.clone(), (Digest::of(&bytes), Meta::of(&read.meta)));
        }
    }
    let mut queues = BTreeMap::new();
    for queue in QUEUES {
        let mut listed = Vec::new();
        let opts = PopOptions {
            with_data: true,
            lease: Some(Duration::from_secs(3600)),
            wait: Duration::ZERO,
        };
        loop {
            let p = match store.pop(ns, &name(queue), opts).await {
                Ok(Some(p)) => p,
                Ok(None) => break,
                // Shown in the report as an element that no state has.
                Err(e) => {
                    listed.push(Entry {
                        id: format!("a pop failed: {e}"),
                        blob: None,
                        data: None,
                        meta: Meta::plain(),
                        deliveries: 0,
                    });
                    match e {
                        BackendError::BlobGone => continue,
                        _ => break,
                    }
                }
            };
            let deliveries = p.lease.map_or(0, |l| l.deliveries - 1);
            listed.push(Entry {
                id: p.id.to_string(),
                blob: p.blob_id.map(|b| b.to_string()),
                meta: Meta::of(&p.meta),
                data: bytes_of(p.body).await.as_deref().map(Digest::of),
                deliveries,
            });
        }
        if !listed.is_empty() {
            queues.insert(queue, listed);
        }
    }
    Durable { queues, blobs }
}

/// Applies `op` to the store and the model, checking the store's answer.
async fn apply(
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
async fn pop_leased(
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
async fn check_pop(
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
