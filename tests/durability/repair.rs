//! `--repair` drops only the damaged records: every intact element after
//! the damage comes back, and every blob file a surviving record refers to
//! is kept byte for byte.

use std::collections::BTreeMap;
use std::path::Path;

use super::common::{self, pattern};
use super::log_files::{newest_log, record_starts};
use super::{drain, durable, push, run_to_exit, stop};

/// Every blob file of a data directory, by name, with its bytes.
fn blob_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    common::files_below(&dir.join("blobs"))
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// 150 small elements and 50 large ones (blob files) in one segment; the
/// `Put` of one large element in the middle is damaged (its length field,
/// so that the framing itself is broken). After `--repair` the other 199
/// elements come back in order, the other 49 blob files are untouched, and
/// the one the damaged record referred to is kept aside, not deleted.
#[tokio::test]
async fn repair_keeps_every_intact_element_and_blob_file() {
    let data = tempfile::tempdir().unwrap();
    let mut server = durable(data.path(), &[]).await;
    let mut bodies = Vec::new();
    for i in 0..200u32 {
        let body = if i % 4 == 3 {
            pattern(300_000, i as u8)
        } else {
            format!("small-{i}").into_bytes()
        };
        push(&server, "/qs/ns/q", body.clone(), &[]).await;
        bodies.push(body);
    }
    stop(&mut server).await;
    let before = blob_files(data.path());
    assert_eq!(before.len(), 50);

    // Records: one change per element (its blob and put in one frame).
    // Element 103 is large.
    let damaged = 103;
    let log = newest_log(data.path());
    let mut bytes = std::fs::read(&log).unwrap();
    let starts = record_starts(&bytes);
    assert_eq!(starts.len(), 200);
    let put = starts[damaged];
    bytes[put + 1] ^= 0x01;
    std::fs::write(&log, &bytes).unwrap();

    let (ok, stderr) = run_to_exit(data.path(), &[]);
    assert!(!ok && stderr.contains("--repair"), "refused: {stderr}");

    let server = durable(data.path(), &[("--repair", "true")]).await;
    let log_lines = server.log();
    assert!(
        log_lines
            .iter()
            .any(|l| l.contains("dropped 1 damaged part(s)") && l.contains("bytes in 1 file(s)")),
        "the repair says what it dropped: {log_lines:?}"
    );
    assert!(
        log_lines
            .iter()
            .any(|l| l.contains(&format!("bytes {put}..{}", starts[damaged + 1]))),
        "with the byte range: {log_lines:?}"
    );
    let got: Vec<Vec<u8>> = drain(&server, "/qs/ns/q")
        .await
        .into_iter()
        .map(|(s, _)| s.body)
        .collect();
    let mut expected = bodies.clone();
    expected.remove(damaged);
    assert_eq!(got.len(), 199);
    assert!(
        got == expected,
        "every intact element, in order, byte for byte"
    );

    // The damaged record's blob file is moved aside; the others served
    // their bytes above, and are removed now that they were popped.
    let kept = common::files_below(&data.path().join("damaged"));
    let aside: Vec<&str> = kept
        .iter()
        .filter_map(|p| p.file_name()?.to_str())
        .filter(|n| n.starts_with("blob-"))
        .collect();
    assert_eq!(aside.len(), 1, "{kept:?}");
    assert_eq!(before[aside[0]], bodies[damaged], "kept byte for byte");
}

/// The blob files of the elements after the damage are kept across the
/// repair itself, before anything is popped.
#[tokio::test]
async fn repair_leaves_the_files_of_surviving_records_in_place() {
    let data = tempfile::tempdir().unwrap();
    let mut server = durable(data.path(), &[]).await;
    for i in 0..20u8 {
        push(&server, "/qs/ns/q", pattern(5000, i), &[]).await;
    }
    stop(&mut server).await;
    let before = blob_files(data.path());
    let log = newest_log(data.path());
    let mut bytes = std::fs::read(&log).unwrap();
    let starts = record_starts(&bytes);
    // The change of element 5 (its blob and its put): it cannot come back.
    bytes[starts[5] + 12] ^= 0xff;
    std::fs::write(&log, &bytes).unwrap();
    let mut server = durable(data.path(), &[("--repair", "true")]).await;
    stop(&mut server).await;
    let after = blob_files(data.path());
    assert_eq!(after.len(), 19);
    for (name, content) in &after {
        assert_eq!(&before[name], content, "{name} unchanged");
    }
    // The repaired log starts without --repair from now on.
    let server = durable(data.path(), &[]).await;
    assert_eq!(drain(&server, "/qs/ns/q").await.len(), 19);
}
