//! A flood of failed attempts does not hold up an authorised client: a
//! bounded check that every authorised request is served, each within a
//! generous limit, while other clients keep failing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;

use super::support::{self, claims, send, token, Files, Signer, Via, MEDIA};

/// Longest one authorised request may take under the flood. Far above a
/// request's usual time, far below what a server stalled by the flood
/// would take.
const LIMIT: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_failed_attempts_does_not_slow_an_authorised_client() {
    let files = Files::new();
    let signer = Signer::ed25519();
    let server = Arc::new(support::start(&files, Some(&signer), &[]).await);
    let forger = Signer::ed25519();
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let attackers: Vec<_> = (0..4)
        .map(|i| {
            let (server, stop, refused) = (server.clone(), stop.clone(), refused.clone());
            // Unknown tokens, and JWTs whose signature must be checked.
            let credential = if i % 2 == 0 {
                format!("tok-guess-{i}")
            } else {
                forger.sign(&claims(&["*"], &["admin"]))
            };
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = send(
                        &server,
                        Method::POST,
                        "/qs/media/q",
                        Some(&credential),
                        Via::Bearer,
                    )
                    .await;
                    assert_eq!(r.status(), 401);
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..100 {
        let (path, credential, method, want) = if i % 2 == 0 {
            (
                "/qs/media/q",
                token("producer").to_owned(),
                Method::POST,
                202,
            )
        } else {
            (
                "/qs/media/q",
                signer.sign(&claims(MEDIA, &["consumer"])),
                Method::GET,
                200,
            )
        };
        let t = Instant::now();
        let r = send(&server, method, path, Some(&credential), Via::Bearer).await;
        assert_eq!(r.status(), want, "request {i}");
        slowest = slowest.max(t.elapsed());
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        attacker.await.unwrap();
    }
    assert!(slowest < LIMIT, "slowest authorised request {slowest:?}");
    assert!(
        refused.load(Ordering::Relaxed) >= 100,
        "the flood was a flood: {} refusals in {elapsed:?}",
        refused.load(Ordering::Relaxed)
    );
}
