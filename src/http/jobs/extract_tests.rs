//! The checks of jobs requests, without a request.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::*;
use crate::http::extract::tests::{limits, problem};

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        let name = HeaderName::from_bytes(k.as_bytes()).unwrap();
        h.append(name, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn job_limits() -> JobLimits {
    JobLimits {
        config: JobConfig::default(),
        max_attempts: 10,
    }
}

fn submit(pairs: &[(&str, &str)]) -> Result<Submit, ApiError> {
    Submit::parse(&headers(pairs), &limits(), &job_limits())
}

#[test]
fn a_plain_submit_takes_the_defaults() {
    let s = submit(&[]).unwrap();
    assert_eq!(s.options.max_attempts, 10);
    assert_eq!(s.options.retention, 86_400);
    assert_eq!(s.options.lifetime, 3600);
    assert!(s.options.idempotency_key.is_none());
    assert!(s.wait.is_none());
}

#[test]
fn submit_headers_are_bounded_and_malformed_ones_refused() {
    let s = submit(&[
        ("x-job-max-attempts", "3"),
        ("x-job-retention", "604800"),
        ("idempotency-key", "order-42"),
        ("prefer", "respond-async, wait=2.5"),
    ])
    .unwrap();
    assert_eq!(s.options.max_attempts, 3);
    assert_eq!(s.options.retention, 604_800);
    assert_eq!(s.options.idempotency_key.as_deref(), Some("order-42"));
    assert_eq!(s.wait, Some(Duration::from_millis(2500)));
    for bad in ["0", "11", "-1", "x", "", "1.5"] {
        let r = submit(&[("x-job-max-attempts", bad)]);
        assert_eq!(problem(r), "invalid-max-attempts", "{bad:?}");
    }
    for bad in ["0", "604801", "abc", " 5"] {
        let r = submit(&[("x-job-retention", bad)]);
        assert_eq!(problem(r), "invalid-retention", "{bad:?}");
    }
    let long = "k".repeat(256);
    for bad in ["", "a b", long.as_str()] {
        let r = submit(&[("idempotency-key", bad)]);
        assert_eq!(problem(r), "invalid-idempotency-key", "{bad:?}");
    }
    assert!(submit(&[("idempotency-key", &"k".repeat(255))]).is_ok());
    for bad in ["wait=x", "wait=301", "wait=-1"] {
        assert_eq!(
            problem(submit(&[("prefer", bad)])),
            "invalid-prefer",
            "{bad}"
        );
    }
    assert!(submit(&[("prefer", "respond-async")])
        .unwrap()
        .wait
        .is_none());
    let twice = submit(&[("x-custom-data", "a=1"), ("x-custom-data", "a=2")]);
    assert_eq!(problem(twice), "invalid-custom-data");
    let callback = submit(&[("x-job-callback", "https://example.com/hook")]);
    assert_eq!(problem(callback), "callback-not-allowed");
    let repeated = submit(&[("x-job-retention", "5"), ("x-job-retention", "5")]);
    assert_eq!(problem(repeated), "invalid-header");
}

#[test]
fn if_none_match_reads_versions_weak_tags_and_star() {
    let seen = |v: &str| super::seen(&headers(&[("if-none-match", v)])).unwrap();
    assert!(seen("\"3\"").contains(3));
    assert!(!seen("\"3\"").contains(4));
    assert!(seen("W/\"7\", \"9\"").contains(7));
    assert!(seen("W/\"7\", \"9\"").contains(9));
    assert!(seen("*").contains(12));
    // Another server's tag matches nothing, so the job always differs.
    assert!(!seen("\"abc\"").contains(1));
    assert!(seen("\"abc\"").answers(false, 1));
    assert!(matches!(
        super::seen(&HeaderMap::new()).unwrap(),
        Seen::Nothing
    ));
    let unquoted = super::seen(&headers(&[("if-none-match", "3")]));
    assert_eq!(problem(unquoted), "invalid-header");
}

#[test]
fn queries_take_their_own_parameters_only() {
    let l = limits();
    assert_eq!(
        wait_query(Some("wait=1.5"), &l).unwrap(),
        Duration::from_millis(1500)
    );
    assert_eq!(problem(wait_query(Some("wait=301"), &l)), "invalid-wait");
    assert_eq!(problem(wait_query(Some("timeout=1"), &l)), "invalid-query");
    let (lease, timeout) = claim_query(None, &l).unwrap();
    assert_eq!((lease, timeout), (Duration::from_secs(60), Duration::ZERO));
    let (lease, timeout) = claim_query(Some("lease=5&timeout=0.5"), &l).unwrap();
    assert_eq!(
        (lease, timeout),
        (Duration::from_secs(5), Duration::from_millis(500))
    );
    assert_eq!(problem(claim_query(Some("lease=0"), &l)), "invalid-lease");
    assert_eq!(problem(claim_query(Some("lease=601"), &l)), "invalid-lease");
    assert_eq!(
        problem(claim_query(Some("header_only=1"), &l)),
        "invalid-query"
    );
    assert_eq!(after_query(Some("after=3")).unwrap(), 3);
    assert_eq!(problem(after_query(Some("after=-1"))), "invalid-query");
    let list = list_query(Some("state=running&limit=1000&page_token=7")).unwrap();
    assert_eq!(list.state, Some(JobState::Running));
    assert_eq!((list.limit, list.page_token.as_deref()), (1000, Some("7")));
    assert_eq!(list_query(None).unwrap().limit, 100);
    for bad in ["state=done", "limit=0", "limit=1001", "limit=x", "page=1"] {
        assert_eq!(problem(list_query(Some(bad))), "invalid-query", "{bad}");
    }
}

#[test]
fn reports_are_checked_json() {
    let (l, c) = (limits(), JobConfig::default());
    let hb = heartbeat(
        br#"{"progress": 40, "message": "zipping", "lease": 2.5}"#,
        &l,
        &c,
    )
    .unwrap();
    assert_eq!(hb.progress, Some(40));
    assert_eq!(hb.message.as_deref(), Some("zipping"));
    assert_eq!(hb.lease, Some(Duration::from_millis(2500)));
    let empty = heartbeat(b"", &l, &c).unwrap();
    assert!(empty.progress.is_none() && empty.message.is_none() && empty.lease.is_none());
    let long = format!(r#"{{"message": "{}"}}"#, "m".repeat(4097));
    for bad in [
        &br#"{"progress": 101}"#[..],
        br#"{"progress": 1.5}"#,
        br#"{"progress": -1}"#,
        br#"{"progres": 1}"#,
        br#"not json"#,
        br#"[1]"#,
        long.as_bytes(),
    ] {
        let r = heartbeat(bad, &l, &c);
        assert_eq!(
            problem(r),
            "invalid-report",
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    for bad in [
        &br#"{"lease": 0}"#[..],
        br#"{"lease": 601}"#,
        br#"{"lease": -2}"#,
    ] {
        assert_eq!(problem(heartbeat(bad, &l, &c)), "invalid-lease");
    }
    let f = failure(
        br#"{"code": "NO_SPACE", "message": "disk", "details": {"free": 0}, "retry": true}"#,
        &c,
    )
    .unwrap();
    assert_eq!(&*f.failure.code, "NO_SPACE");
    assert_eq!(
        f.failure.details.as_deref().map(|d| d.get()),
        Some(r#"{"free": 0}"#)
    );
    assert!(f.retry);
    let plain = failure(b"{}", &c).unwrap();
    assert_eq!(&*plain.failure.code, "FAILED");
    assert!(!plain.retry);
    for bad in [
        &br#"{"code": ""}"#[..],
        br#"{"code": "a b"}"#,
        br#"{"retry": "yes"}"#,
        br#"{"x": 1}"#,
    ] {
        assert_eq!(problem(failure(bad, &c)), "invalid-report");
    }
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Whatever a check is given, it answers a value or a `400`.
    fn accepted_or_400<T: std::fmt::Debug>(r: Result<T, ApiError>) -> Result<(), TestCaseError> {
        match r {
            Ok(_) | Err(ApiError::BadRequest { .. }) => Ok(()),
            Err(other) => Err(TestCaseError::fail(format!("{other:?}"))),
        }
    }

    proptest! {
        #[test]
        fn any_header_value_is_a_value_or_a_400(
            name in prop::sample::select(vec![
                "x-job-max-attempts", "x-job-retention", "idempotency-key",
                "prefer", "x-job-status", "if-none-match", "content-type",
                "x-custom-data", "x-queueserver-lifetime", "x-queueserver-lease",
            ]),
            value in "[ -~]{0,40}",
        ) {
            let h = headers(&[(name, &value)]);
            accepted_or_400(Submit::parse(&h, &limits(), &job_limits()))?;
            accepted_or_400(job_status(&h))?;
            accepted_or_400(result_type(&h))?;
            accepted_or_400(super::super::seen(&h))?;
            accepted_or_400(receipt(&h))?;
        }

        #[test]
        fn any_query_or_body_is_a_value_or_a_400(query in "[ -~]{0,60}", body in any::<Vec<u8>>()) {
            let l = limits();
            accepted_or_400(wait_query(Some(&query), &l))?;
            accepted_or_400(claim_query(Some(&query), &l))?;
            accepted_or_400(after_query(Some(&query)))?;
            accepted_or_400(list_query(Some(&query)))?;
            let c = JobConfig::default();
            accepted_or_400(heartbeat(&body, &l, &c))?;
            accepted_or_400(failure(&body, &c))?;
            accepted_or_400(heartbeat(query.as_bytes(), &l, &c))?;
            accepted_or_400(failure(query.as_bytes(), &c))?;
        }
    }
}
