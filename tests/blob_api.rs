//! `/tbs` on the embedded store: a large blob in a spill file, read back
//! and removed with it. The rest of the blob API is in the suite run on
//! every backend (tests/suite/blobs.rs).

mod common;

use common::{header, TestServer};

/// Spill threshold for the tests that need files: anything from 1000 bytes on
/// goes to disk.
const THRESHOLD: u64 = 1000;

async fn spilling_server() -> TestServer {
    common::options()
        .arg("--spill-threshold", THRESHOLD)
        .start()
        .await
}

#[tokio::test]
async fn a_large_stored_blob_is_spilled_read_back_exactly_and_its_file_removed_on_delete() {
    let server = spilling_server().await;
    let body = common::pattern(200_000, 21);
    let id = common::store_blob(&server, "ns", body.clone(), &[]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let files = server.spill_files();
    assert_eq!(files.len(), 1, "spilled to one file");
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), 200_000);
    assert_eq!(server.json("/qs", 200).await["disk_bytes"], 200_000);

    let r = server.get(&format!("/tbs/ns/blobs/{id}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), "200000");
    assert!(r.bytes().await.unwrap()[..] == body[..]);
    assert_eq!(server.spill_files().len(), 1, "a read does not consume");

    assert_eq!(
        server.delete(&format!("/tbs/ns/blobs/{id}")).await.status(),
        204
    );
    assert!(
        server.spill_files().is_empty(),
        "the file went with the blob"
    );
    assert_eq!(server.json("/qs", 200).await["disk_bytes"], 0);
}
