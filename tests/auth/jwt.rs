//! JWTs: each algorithm, keys from a PEM file or a JWKS, and every way a
//! token is refused `401`.

use reqwest::Method;
use serde_json::json;

use super::support::{self, assert_401, claims, now, send, Files, Signer, Via, MEDIA};
use crate::common::{self, TestServer};

/// Whether `jwt` may observe `media`.
async fn observes(server: &TestServer, jwt: &str) -> u16 {
    send(server, Method::GET, "/qs/media", Some(jwt), Via::Bearer)
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn rs256_es256_and_eddsa_keys_in_pem_files_verify_their_tokens() {
    for signer in [Signer::rsa(), Signer::p256(), Signer::ed25519()] {
        let files = Files::new();
        let server = support::start(&files, Some(&signer), &[]).await;
        let jwt = signer.sign(&claims(MEDIA, &["observer"]));
        // 404: allowed, and the namespace does not exist yet.
        assert_eq!(observes(&server, &jwt).await, 404, "{:?}", signer.algorithm);
        // A PEM key has no kid: it verifies a token naming any.
        let named = signer.with_kid("key-7");
        let jwt = named.sign(&claims(MEDIA, &["observer"]));
        assert_eq!(
            observes(&server, &jwt).await,
            404,
            "{:?} with a kid",
            named.algorithm
        );
        let stranger = Signer::ed25519().sign(&claims(MEDIA, &["observer"]));
        let r = send(
            &server,
            Method::GET,
            "/qs/media",
            Some(&stranger),
            Via::Bearer,
        )
        .await;
        assert_401(r, true, "a key the server does not have").await;
    }
}

#[tokio::test]
async fn a_jwks_file_holds_several_keys_told_apart_by_kid() {
    let (a, b) = (Signer::p256().with_kid("a"), Signer::rsa().with_kid("b"));
    let files = Files::new();
    let jwks = files.write("jwks.json", &support::jwks(&[&a, &b]));
    let server = common::options()
        .arg("--auth-jwt-key", jwks.display())
        .start()
        .await;
    for signer in [&a, &b] {
        let jwt = signer.sign(&claims(MEDIA, &["observer"]));
        assert_eq!(observes(&server, &jwt).await, 404, "kid {:?}", signer.kid);
    }
    let unknown = Signer::p256()
        .with_kid("c")
        .sign(&claims(MEDIA, &["observer"]));
    let r = send(
        &server,
        Method::GET,
        "/qs/media",
        Some(&unknown),
        Via::Bearer,
    )
    .await;
    assert_401(r, true, "an unknown kid").await;
    // An EdDSA token under the kid of an ES256 key: the key decides the
    // algorithm, never the token's header.
    let forged = Signer::ed25519().with_kid("a");
    let r = send(
        &server,
        Method::GET,
        "/qs/media",
        Some(&forged.sign(&claims(MEDIA, &["observer"]))),
        Via::Bearer,
    )
    .await;
    assert_401(r, true, "an EdDSA token under an ES256 key's kid").await;
}

#[tokio::test]
async fn expired_early_forged_misaddressed_and_malformed_tokens_are_401() {
    let signer = Signer::ed25519();
    let files = Files::new();
    let server = support::start(
        &files,
        Some(&signer),
        &[
            ("--auth-jwt-issuer", "https://idp.example"),
            ("--auth-jwt-audience", "blobq"),
        ],
    )
    .await;
    let good = |changes: serde_json::Value| {
        let mut c = claims(MEDIA, &["observer"]);
        c["iss"] = json!("https://idp.example");
        c["aud"] = json!("blobq");
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let t = now();
    // Within the 30 s leeway: accepted.
    for (what, changes) in [
        ("valid", json!({})),
        ("expired 10 s ago", json!({"exp": t - 10})),
        ("valid from 10 s on", json!({"nbf": t + 10})),
        (
            "an audience list holding ours",
            json!({"aud": ["x", "blobq"]}),
        ),
    ] {
        let jwt = signer.sign(&good(changes));
        assert_eq!(observes(&server, &jwt).await, 404, "{what}");
    }
    let forged = {
        let jwt = signer.sign(&good(json!({})));
        let other = Signer::ed25519().sign(&good(json!({})));
        let (body, _) = jwt.rsplit_once('.').unwrap();
        let (_, signature) = other.rsplit_once('.').unwrap();
        format!("{body}.{signature}")
    };
    let refused = [
        ("expired", signer.sign(&good(json!({"exp": t - 120})))),
        ("without exp", signer.sign(&good(json!({"exp": null})))),
        ("not valid yet", signer.sign(&good(json!({"nbf": t + 120})))),
        (
            "another issuer",
            signer.sign(&good(json!({"iss": "https://evil.example"}))),
        ),
        ("without issuer", signer.sign(&good(json!({"iss": null})))),
        (
            "another audience",
            signer.sign(&good(json!({"aud": "other"}))),
        ),
        ("without audience", signer.sign(&good(json!({"aud": null})))),
        ("a forged signature", forged),
        ("not a JWT", "a.b.c".to_owned()),
        (
            "claims of the wrong type",
            signer.sign(&good(json!({"blobq_roles": "observer"}))),
        ),
    ];
    for (what, jwt) in &refused {
        let r = send(&server, Method::GET, "/qs/media", Some(jwt), Via::Bearer).await;
        assert_401(r, true, what).await;
    }
    let m = support::metrics(&server).await;
    assert_eq!(support::failures(&m, "expired"), 1);
    assert_eq!(support::failures(&m, "not_yet_valid"), 1);
    assert_eq!(support::failures(&m, "wrong_issuer"), 2);
    assert_eq!(support::failures(&m, "wrong_audience"), 2);
    assert_eq!(support::failures(&m, "bad_signature"), 1);
    assert_eq!(support::failures(&m, "malformed"), 3);
    // A valid token without the role is a 403, not a 401.
    let producer = signer.sign(&good(json!({"blobq_roles": ["producer"]})));
    let r = send(
        &server,
        Method::GET,
        "/qs/media",
        Some(&producer),
        Via::Bearer,
    )
    .await;
    common::problem(r, 403).await;
    // Roles and patterns blobq does not know grant nothing, and break nothing.
    let odd = signer.sign(&good(json!({
        "blobq_roles": ["observer", "superuser"],
        "blobq_namespaces": ["media", "bad name"],
    })));
    assert_eq!(observes(&server, &odd).await, 404);
}
