//! The live state the log describes, and how each record changes it: replay
//! folds a data directory's records into a [`LiveState`] at start-up, and
//! compaction folds sealed segments into one and writes it back as records.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::record::{encode, BlobData, MetaRecord, Record};

/// Metadata as replay keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveMeta {
    pub content_type: Box<str>,
    pub custom: Vec<(Box<str>, Box<str>)>,
}

impl LiveMeta {
    fn from_record(m: &MetaRecord<'_>) -> LiveMeta {
        LiveMeta {
            content_type: m.content_type.into(),
            custom: m
                .custom
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        }
    }

    pub fn to_record(&self) -> MetaRecord<'_> {
        MetaRecord {
            content_type: &self.content_type,
            custom: self.custom.iter().map(|(k, v)| (&**k, &**v)).collect(),
        }
    }
}

/// Where a live blob's bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveData {
    Inline(Bytes),
    /// A file name in the data directory's `blobs/`, and the CRC32C of its
    /// bytes (`None` for a file logged before blob files had checksums).
    File {
        name: Box<str>,
        crc32c: Option<u32>,
    },
    /// The blob's `size` bytes at `offset` of overflow segment `number`
    /// in `segments/`, with this CRC32C.
    Segment {
        number: u64,
        offset: u64,
        crc32c: u32,
    },
}

#[derive(Clone, Debug)]
pub struct LiveBlob {
    pub size: u64,
    pub meta: LiveMeta,
    pub deadline: u64,
    pub exposed: bool,
    pub data: LiveData,
}

#[derive(Clone, Debug)]
pub struct LiveElement {
    pub queue: Box<str>,
    /// Position of its `Put` in the log: queues are rebuilt in this order.
    pub order: u64,
    pub blob: Option<u128>,
    pub meta: LiveMeta,
    pub deadline: u64,
    pub deliveries: u32,
}

/// What one namespace holds.
#[derive(Default, Debug)]
pub struct LiveNamespace {
    pub blobs: HashMap<u128, LiveBlob>,
    pub elements: HashMap<u128, LiveElement>,
}

impl LiveNamespace {
    /// Elements by queue, each queue in FIFO order.
    pub fn queues(&self) -> BTreeMap<&str, Vec<(u128, &LiveElement)>> {
        let mut queues: BTreeMap<&str, Vec<(u128, &LiveElement)>> = BTreeMap::new();
        for (id, e) in &self.elements {
            queues.entry(&e.queue).or_default().push((*id, e));
        }
        for q in queues.values_mut() {
            q.sort_by_key(|(_, e)| e.order);
        }
        queues
    }
}

/// The live state of the whole store.
#[derive(Default, Debug)]
pub struct LiveState {
    pub namespaces: BTreeMap<Box<str>, LiveNamespace>,
    next_order: u64,
}

impl LiveState {
    /// Applies one record. Records about ids that are not live (an element
    /// already dropped by compaction as expired, say) change nothing.
    pub fn apply(&mut self, record: &Record<'_>) {
        let ns = match record {
            Record::Change(frames) => {
                for inner in super::record::records_of(frames) {
                    self.apply(&inner);
                }
                return;
            }
            Record::Blob { ns, .. }
            | Record::Expose { ns, .. }
            | Record::BlobGone { ns, .. }
            | Record::Put { ns, .. }
            | Record::Take { ns, .. }
            | Record::BlobMoved { ns, .. } => self.namespaces.entry((*ns).into()).or_default(),
        };
        match record {
            Record::Blob {
                id,
                size,
                meta,
                deadline,
                exposed,
                data,
                ..
            } => {
                let data = match data {
                    BlobData::Inline(bytes) => LiveData::Inline(Bytes::copy_from_slice(bytes)),
                    BlobData::File(name) => LiveData::File {
                        name: (*name).into(),
                        crc32c: None,
                    },
                    BlobData::CheckedFile { name, crc32c } => LiveData::File {
                        name: (*name).into(),
                        crc32c: Some(*crc32c),
                    },
                    BlobData::Segment {
                        number,
                        offset,
                        crc32c,
                    } => LiveData::Segment {
                        number: *number,
                        offset: *offset,
                        crc32c: *crc32c,
                    },
                };
                ns.blobs.insert(
                    *id,
                    LiveBlob {
                        size: *size,
                        meta: LiveMeta::from_record(meta),
                        deadline: *deadline,
                        exposed: *exposed,
                        data,
                    },
                );
            }
            Record::Expose { id, .. } => {
                if let Some(b) = ns.blobs.get_mut(id) {
                    b.exposed = true;
                }
            }
            Record::BlobGone { id, .. } => {
                ns.blobs.remove(id);
            }
            Record::Put {
                queue,
                id,
                blob,
                meta,
                deadline,
                deliveries,
                ..
            } => {
                self.next_order += 1;
                ns.elements.insert(
                    *id,
                    LiveElement {
                        queue: (*queue).into(),
                        order: self.next_order,
                        blob: *blob,
                        meta: LiveMeta::from_record(meta),
                        deadline: *deadline,
                        deliveries: *deliveries,
                    },
                );
            }
            Record::Take { id, .. } => {
                ns.elements.remove(id);
            }
            Record::BlobMoved {
                id,
                number,
                offset,
                crc32c,
                ..
            } => {
                // A blob gone since (or never logged) stays gone; only a
                // body in a segment moves.
                if let Some(b) = ns.blobs.get_mut(id) {
                    if matches!(b.data, LiveData::Segment { .. }) {
                        b.data = LiveData::Segment {
                            number: *number,
                            offset: *offset,
                            crc32c: *crc32c,
                        };
                    }
                }
            }
            Record::Change(_) => {}
        }
    }

    /// Drops what is dead at `now` (wall-clock milliseconds): expired
    /// elements, elements whose blob was deleted, and blobs nothing keeps.
    pub fn settle(&mut self, now: u64) {
        for ns in self.namespaces.values_mut() {
            let blobs = &ns.blobs;
            ns.elements
                .retain(|_, e| e.deadline > now && e.blob.is_none_or(|b| blobs.contains_key(&b)));
            let mut refs: HashMap<u128, u32> = HashMap::new();
            for e in ns.elements.values() {
                if let Some(b) = e.blob {
                    *refs.entry(b).or_default() += 1;
                }
            }
            ns.blobs
                .retain(|id, b| refs.contains_key(id) || (b.exposed && b.deadline > now));
        }
        self.namespaces
            .retain(|_, ns| !ns.blobs.is_empty() || !ns.elements.is_empty());
    }

    /// Writes the state as records: every blob, then every queue in order.
    pub fn write_records(&self, buf: &mut Vec<u8>) {
        for (name, ns) in &self.namespaces {
            for (id, b) in &ns.blobs {
                let data = match &b.data {
                    LiveData::Inline(bytes) => BlobData::Inline(bytes),
                    LiveData::File { name, crc32c: None } => BlobData::File(name),
                    LiveData::File {
                        name,
                        crc32c: Some(crc32c),
                    } => BlobData::CheckedFile {
                        name,
                        crc32c: *crc32c,
                    },
                    LiveData::Segment {
                        number,
                        offset,
                        crc32c,
                    } => BlobData::Segment {
                        number: *number,
                        offset: *offset,
                        crc32c: *crc32c,
                    },
                };
                let record = Record::Blob {
                    ns: name,
                    id: *id,
                    size: b.size,
                    meta: b.meta.to_record(),
                    deadline: b.deadline,
                    exposed: b.exposed,
                    data,
                };
                encode(&record, buf);
            }
            for (queue, elements) in ns.queues() {
                for (id, e) in elements {
                    let record = Record::Put {
                        ns: name,
                        queue,
                        id,
                        blob: e.blob,
                        meta: e.meta.to_record(),
                        deadline: e.deadline,
                        deliveries: e.deliveries,
                    };
                    encode(&record, buf);
                }
            }
        }
    }

    /// Names of the blob files the state needs.
    pub fn blob_files(&self) -> std::collections::HashSet<&str> {
        self.namespaces
            .values()
            .flat_map(|ns| ns.blobs.values())
            .filter_map(|b| match &b.data {
                LiveData::File { name, .. } => Some(&**name),
                LiveData::Inline(_) | LiveData::Segment { .. } => None,
            })
            .collect()
    }

    /// Numbers of the overflow segments the state needs.
    pub fn segments(&self) -> std::collections::HashSet<u64> {
        self.namespaces
            .values()
            .flat_map(|ns| ns.blobs.values())
            .filter_map(|b| match &b.data {
                LiveData::Segment { number, .. } => Some(*number),
                LiveData::Inline(_) | LiveData::File { .. } => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::journal::test_records::{blob, ids, moved, put, segment_blob};

    #[test]
    fn replay_rebuilds_queues_in_order_and_settle_drops_the_dead() {
        let mut s = LiveState::default();
        for r in [
            blob(100, false),
            put(1, "q", Some(100), 10_000),
            put(2, "q", None, 10_000),
            put(3, "other", None, 500),
            put(4, "q", None, 10_000),
            Record::Take { ns: "ns", id: 2 },
            blob(200, true),
            blob(300, false),
            Record::Take { ns: "ns", id: 99 },
        ] {
            s.apply(&r);
        }
        s.settle(1000);
        assert_eq!(ids(&s, "q"), vec![1, 4]);
        assert!(ids(&s, "other").is_empty(), "expired");
        let blobs = &s.namespaces["ns"].blobs;
        assert!(blobs.contains_key(&100) && blobs.contains_key(&200));
        assert!(!blobs.contains_key(&300), "unreferenced, unexposed");
    }

    fn place(s: &LiveState, id: u128) -> Option<LiveData> {
        Some(s.namespaces.get("ns")?.blobs.get(&id)?.data.clone())
    }

    fn at(number: u64, offset: u64) -> Option<LiveData> {
        Some(LiveData::Segment {
            number,
            offset,
            crc32c: 7,
        })
    }

    /// A move after the blob's record names its new place, in the state
    /// and in the records written back; a move of a blob gone (or never
    /// logged) changes nothing, and a blob recorded again afterwards keeps
    /// the place its own record names.
    #[test]
    fn a_moved_record_changes_the_place_of_a_live_blob_only() {
        let mut s = LiveState::default();
        for r in [
            segment_blob(1, 3, 0),
            put(10, "q", Some(1), 10_000),
            moved(1, 5, 40),
            moved(2, 5, 80),
            Record::BlobGone { ns: "ns", id: 1 },
            moved(1, 6, 0),
        ] {
            s.apply(&r);
        }
        assert_eq!(place(&s, 1), None);
        assert_eq!(place(&s, 2), None, "a move never makes a blob");
        s.apply(&segment_blob(1, 5, 40));
        s.apply(&moved(1, 7, 8));
        assert_eq!(place(&s, 1), at(7, 8));
        s.settle(1000);
        assert_eq!(s.segments(), [7].into_iter().collect());

        let mut buf = Vec::new();
        s.write_records(&mut buf);
        let mut rewritten = LiveState::default();
        let mut rest = &buf[..];
        while !rest.is_empty() {
            let (record, used) = super::super::record::decode(rest).unwrap();
            rewritten.apply(&record);
            rest = &rest[used..];
        }
        assert_eq!(place(&rewritten, 1), at(7, 8));
        assert_eq!(ids(&rewritten, "q"), vec![10]);

        // An inline blob has no segment place to move.
        s.apply(&blob(3, true));
        s.apply(&moved(3, 9, 0));
        assert!(matches!(place(&s, 3), Some(LiveData::Inline(_))));
    }
}
