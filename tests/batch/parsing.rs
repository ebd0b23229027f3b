//! Property tests of the batch body reader (`http::batch::multipart`):
//! any well-formed body, cut into chunks anywhere, reads back as the parts
//! it was made of, and as multer reads it (multer keeping only the last
//! value of a repeated header, and misreading a part without headers); bodies past a limit are refused
//! with that limit; any other bytes are read or refused without a panic,
//! and never yield more than they hold.
//!
//! Cases per property: `BLOBQ_FUZZ_CASES` (default 256), as in
//! `tests/fuzz_parsing.rs`.

use blobq::http::batch::multipart::{MultipartError, MultipartReader, PartLimits};
use bytes::Bytes;
use proptest::prelude::*;

use crate::wire::{encode, Part, BOUNDARY};

fn config() -> ProptestConfig {
    let cases = std::env::var("BLOBQ_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        max_shrink_iters: 4096,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    }
}

const LIMITS: PartLimits = PartLimits {
    max_parts: 1000,
    max_header_bytes: 16 * 1024,
};

/// A part as read: header lines (lower-case names) and body.
type Read = (Vec<(String, String)>, Vec<u8>);

/// `body` cut at `cuts` (offsets, any order) into chunks.
fn chunks(body: &[u8], cuts: &[usize]) -> Vec<Bytes> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    at.push(0);
    at.push(body.len());
    at.sort_unstable();
    at.windows(2)
        .map(|w| Bytes::copy_from_slice(&body[w[0]..w[1]]))
        .collect()
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
        .block_on(f)
}

/// Reads every part with blobq's reader; bodies of the parts whose index
/// is in `skip` are left unread (the reader skips them itself).
fn read(
    body: &[u8],
    cuts: &[usize],
    limits: PartLimits,
    skip: &[usize],
) -> Result<Vec<Read>, MultipartError> {
    let stream = futures_util::stream::iter(chunks(body, cuts).into_iter().map(Ok));
    let mut reader = MultipartReader::new(Box::pin(stream), BOUNDARY, limits);
    block_on(async move {
        let mut parts = Vec::new();
        while let Some(head) = reader.next_part().await? {
            let headers = head
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let mut data = Vec::new();
            if !skip.contains(&head.index) {
                while let Some(chunk) = reader.next_chunk().await {
                    data.extend_from_slice(&chunk?);
                }
            }
            parts.push((headers, data));
        }
        Ok(parts)
    })
}

/// Reads every part with multer.
fn read_with_multer(body: &[u8], cuts: &[usize]) -> Result<Vec<Read>, multer::Error> {
    let stream =
        futures_util::stream::iter(chunks(body, cuts).into_iter().map(Ok::<_, std::io::Error>));
    let mut multipart = multer::Multipart::new(stream, BOUNDARY);
    block_on(async move {
        let mut parts = Vec::new();
        while let Some(field) = multipart.next_field().await? {
            let headers = field
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            parts.push((headers, field.bytes().await?.to_vec()));
        }
        Ok(parts)
    })
}

/// Header lines a push part may carry (values of visible ASCII).
fn header() -> impl Strategy<Value = (String, String)> {
    (
        prop::sample::select(vec![
            "Content-Type",
            "X-QueueServer-ContentType",
            "X-Custom-Data",
            "X-QueueServer-Lifetime",
            "X-BlobStorage_Id",
            "X-Other",
        ]),
        "[!-~][ -~]{0,40}[!-~]",
    )
        .prop_map(|(n, v)| (n.to_owned(), v))
}

/// A body: any bytes, and the framing's own pieces, but never the
/// delimiter itself (a sender picks a boundary its data does not hold).
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            Just(b"\r\n".to_vec()),
            Just(b"--".to_vec()),
            Just(b"\r\n--b0undary-7e1".to_vec()),
            Just(b"\r\n\r\n".to_vec()),
        ],
        0..8,
    )
    .prop_map(|pieces| pieces.concat())
    .prop_filter("no delimiter inside", |b| {
        !b.windows(BOUNDARY.len() + 4)
            .any(|w| w == format!("\r\n--{BOUNDARY}").as_bytes())
            && !b.ends_with(b"\r\n--b0undary-7e1")
    })
}

fn parts() -> impl Strategy<Value = Vec<Part>> {
    prop::collection::vec(
        (prop::collection::vec(header(), 0..6), body())
            .prop_map(|(headers, body)| Part { headers, body }),
        1..12,
    )
}

/// `read` as multer gives it: one value per name, the last one.
fn last_values(read: Vec<Read>) -> Vec<Read> {
    read.into_iter()
        .map(|(headers, body)| {
            let mut kept: Vec<(String, String)> = Vec::new();
            for (n, v) in headers {
                match kept.iter_mut().find(|(k, _)| *k == n) {
                    Some(slot) => slot.1 = v,
                    None => kept.push((n, v)),
                }
            }
            (kept, body)
        })
        .collect()
}

fn expected(parts: &[Part]) -> Vec<Read> {
    parts
        .iter()
        .map(|p| {
            // A header map lists a name's values together, names in the
            // order they first appear.
            let mut headers: Vec<(String, String)> = Vec::new();
            for (n, v) in &p.headers {
                let n = n.to_ascii_lowercase();
                let at = headers
                    .iter()
                    .rposition(|(h, _)| *h == n)
                    .map_or(headers.len(), |i| i + 1);
                headers.insert(at, (n, v.clone()));
            }
            (headers, p.body.clone())
        })
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_well_formed_batch_reads_back_as_its_parts_however_it_is_cut(
        parts in parts(),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
        skip in prop::collection::vec(0usize..12, 0..3),
    ) {
        let body = encode(&parts);
        let read = read(&body, &cuts, LIMITS, &skip).expect("well-formed");
        let mut want = expected(&parts);
        for i in &skip {
            if let Some(part) = want.get_mut(*i) {
                part.1.clear();
            }
        }
        prop_assert_eq!(read, want);
        // multer, made for form data, misreads a part with no header line.
        if parts.iter().all(|p| !p.headers.is_empty()) {
            let multer = read_with_multer(&body, &cuts).expect("multer reads it too");
            prop_assert_eq!(multer, last_values(expected(&parts)));
        }
    }

    #[test]
    fn a_batch_cut_short_is_refused(parts in parts(), cut in any::<usize>()) {
        let body = encode(&parts);
        // Anywhere before the close delimiter's final "--".
        let end = body.len() - 4;
        let short = &body[..cut % end];
        let read = read(short, &[], LIMITS, &[]);
        prop_assert!(matches!(read, Err(MultipartError::Malformed(_))), "{:?}", read);
    }

    #[test]
    fn limits_on_parts_and_headers_are_kept(
        parts in parts(),
        max_parts in 1usize..12,
        max_header_bytes in 0usize..200,
    ) {
        let body = encode(&parts);
        let limits = PartLimits { max_parts, max_header_bytes };
        let read = read(&body, &[], limits, &[]);
        let header_bytes = |p: &Part| p.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>();
        match read {
            Ok(read) => {
                prop_assert!(read.len() <= max_parts);
                prop_assert!(parts.iter().all(|p| header_bytes(p) <= max_header_bytes));
            }
            Err(MultipartError::TooManyParts { limit }) => {
                prop_assert_eq!(limit, max_parts);
                prop_assert!(parts.len() > max_parts);
            }
            Err(MultipartError::HeadersTooLarge { part, limit }) => {
                prop_assert_eq!(limit, max_header_bytes);
                prop_assert!(header_bytes(&parts[part]) > max_header_bytes);
            }
            Err(other) => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn any_bytes_are_read_or_refused_without_a_panic(
        parts in parts(),
        noise in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        raw in prop::collection::vec(any::<u8>(), 0..200),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut body = encode(&parts);
        for (at, byte) in noise {
            let at = at % body.len();
            body[at] = byte;
        }
        for input in [body, raw] {
            if let Ok(read) = read(&input, &cuts, LIMITS, &[]) {
                let held: usize = read.iter().map(|(_, b)| b.len()).sum();
                prop_assert!(held <= input.len());
            }
        }
    }
}
