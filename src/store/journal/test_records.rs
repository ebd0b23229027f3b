//! Records and log files for the journal's unit tests.

use std::io::Write;

use super::files::{create_segment, DataDir, SegmentKind};
use super::live::LiveState;
use super::record::{encode, BlobData, MetaRecord, Record};

pub fn meta() -> MetaRecord<'static> {
    MetaRecord {
        content_type: "text/plain",
        custom: vec![("k", "v")],
    }
}

pub fn put(id: u128, queue: &'static str, blob: Option<u128>, deadline: u64) -> Record<'static> {
    Record::Put {
        ns: "ns",
        queue,
        id,
        blob,
        meta: meta(),
        deadline,
        deliveries: 0,
    }
}

pub fn blob(id: u128, exposed: bool) -> Record<'static> {
    blob_with(id, exposed, BlobData::Inline(b"abc"))
}

/// Blob `id` with its 3 bytes at `offset` of overflow segment `number`.
pub fn segment_blob(id: u128, number: u64, offset: u64) -> Record<'static> {
    let data = BlobData::Segment {
        number,
        offset,
        crc32c: 7,
    };
    blob_with(id, false, data)
}

/// Blob `id` of 3 bytes, kept as `data` says.
fn blob_with(id: u128, exposed: bool, data: BlobData<'static>) -> Record<'static> {
    Record::Blob {
        ns: "ns",
        id,
        size: 3,
        meta: meta(),
        deadline: 10_000,
        exposed,
        data,
    }
}

/// Blob `id`'s body moved to `offset` of overflow segment `number`.
pub fn moved(id: u128, number: u64, offset: u64) -> Record<'static> {
    Record::BlobMoved {
        ns: "ns",
        id,
        number,
        offset,
        crc32c: 7,
    }
}

pub fn write_log(dir: &DataDir, seq: u64, records: &[Record<'_>]) -> Vec<u8> {
    let mut buf = Vec::new();
    for r in records {
        encode(r, &mut buf);
    }
    let mut f = create_segment(&dir.segment(seq, SegmentKind::Log)).unwrap();
    f.write_all(&buf).unwrap();
    buf
}

pub fn ids(state: &LiveState, queue: &str) -> Vec<u128> {
    let Some(ns) = state.namespaces.get("ns") else {
        return Vec::new();
    };
    ns.queues()
        .get(queue)
        .map(|q| q.iter().map(|(id, _)| *id).collect())
        .unwrap_or_default()
}
