//! Leases on the embedded store: a leased element's spill file kept until
//! it is acknowledged. The lease API itself, and many consumers crashing
//! with leases, are in the suite run on every backend
//! (tests/suite/leases.rs, leases_concurrent.rs).

mod common;

use common::TestServer;

/// What a pop answered, with the lease headers when there are any.
#[derive(Debug)]
struct Popped {
    status: u16,
    receipt: Option<String>,
    deliveries: Option<u64>,
    body: Vec<u8>,
}

impl Popped {
    fn receipt(&self) -> &str {
        self.receipt.as_deref().expect("X-QueueServer-Lease")
    }
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii header").to_owned())
}

async fn read_pop(r: reqwest::Response) -> Popped {
    let status = r.status().as_u16();
    let receipt = header(&r, "x-queueserver-lease");
    let deliveries = header(&r, "x-queueserver-deliveries").map(|d| d.parse().expect("number"));
    let body = r.bytes().await.expect("body").to_vec();
    Popped {
        status,
        receipt,
        deliveries,
        body,
    }
}

async fn pop(server: &TestServer, path: &str) -> Popped {
    read_pop(server.get(path).await).await
}

/// A pop under a lease that must deliver something.
async fn lease(server: &TestServer, path: &str) -> Popped {
    let p = pop(server, path).await;
    assert_eq!(p.status, 200, "GET {path}: {p:?}");
    assert!(p.receipt.is_some(), "a leased pop names its lease: {p:?}");
    assert!(
        p.deliveries.is_some(),
        "a leased pop counts deliveries: {p:?}"
    );
    p
}

/// Pushes `body` and returns the element id.
async fn push(server: &TestServer, path: &str, body: impl Into<reqwest::Body>) -> String {
    let r = server.post(path, body).await;
    assert_eq!(r.status(), 202, "POST {path}");
    let v: serde_json::Value = r.json().await.expect("push answer");
    v["id"].as_str().expect("id").to_owned()
}

async fn ack(server: &TestServer, ns: &str, q: &str, receipt: &str) -> reqwest::Response {
    server
        .delete(&format!("/qs/{ns}/{q}/leases/{receipt}"))
        .await
}

async fn release(server: &TestServer, ns: &str, q: &str, receipt: &str) -> reqwest::Response {
    server
        .post(&format!("/qs/{ns}/{q}/leases/{receipt}/release"), "")
        .await
}

#[tokio::test]
async fn a_leased_spilled_element_keeps_its_file_until_acknowledged() {
    let server = common::options()
        .arg("--spill-threshold", 1000)
        .start()
        .await;
    let body = common::pattern(5000, 3);
    push(&server, "/qs/ns/big", body.clone()).await;
    assert_eq!(server.spill_files().len(), 1, "spilled");

    let got = lease(&server, "/qs/ns/big?lease=30").await;
    assert!(got.body == body, "the bytes come back whole");
    assert_eq!(server.spill_files().len(), 1, "kept while leased");
    assert_eq!(server.json("/qs", 200).await["disk_bytes"], 5000);

    // Released and leased again, the same bytes are served from the file.
    assert_eq!(
        release(&server, "ns", "big", got.receipt()).await.status(),
        204
    );
    let again = lease(&server, "/qs/ns/big?lease=30").await;
    assert!(again.body == body, "served again from the same file");
    assert_eq!(again.deliveries, Some(2));
    assert_eq!(server.spill_files().len(), 1);

    assert_eq!(
        ack(&server, "ns", "big", again.receipt()).await.status(),
        204
    );
    assert!(
        server.spill_files().is_empty(),
        "file removed once acknowledged: {:?}",
        server.spill_files()
    );
    assert_eq!(server.json("/qs", 200).await["disk_bytes"], 0);
}
