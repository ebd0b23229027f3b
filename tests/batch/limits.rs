//! A part's headers past `--max-part-header-size`, refused and storing
//! nothing. (`--max-batch`, malformed bodies and quotas are in the suite,
//! tests/suite/batch_limits.rs.)

use crate::common::{self, problem};
use crate::wire::{self, encode, post_raw, queued, Part};

#[tokio::test]
async fn part_headers_past_their_limit_are_refused() {
    let server = common::options()
        .arg("--max-part-header-size", 1024)
        .start()
        .await;
    let long = "v".repeat(600);
    let fits = Part::new("x").header("X-Custom-Data", &format!("a={long}"));
    wire::push(&server, "ns", "q", std::slice::from_ref(&fits)).await;
    let over = fits.header("X-Custom-Data", &format!("b={long}"));
    let r = post_raw(&server, "ns", "q", encode(&[Part::new("first"), over])).await;
    let p = problem(r, 413).await;
    assert_eq!(p["type"], "urn:blobq:problem:part-headers-too-large");
    assert_eq!(p["part"], 1);
    assert_eq!(queued(&server, "ns", "q").await, 1, "only the first batch");
    // More pairs than 32 lines fit, up to --max-custom-data.
    let mut many = Part::new("m");
    for i in 0..40 {
        many = many.header("X-Custom-Data", &format!("k{i}=v"));
    }
    let big = common::options().start().await;
    wire::push(&big, "ns", "q", &[many]).await;
    // Read by a single pop: multer, which reads the tests' batch answers,
    // stops at 32 header lines.
    let popped = big.get("/qs/ns/q").await;
    assert_eq!(common::custom_data(&popped).len(), 40);
}
