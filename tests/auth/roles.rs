//! The contract's role table, row by row, for static tokens (in either
//! header) and for JWTs: each request either passes the gate (whatever the
//! route then answers) or is refused `403`; without a credential, `401`.

use reqwest::Method;

use super::role_table::{rows, CALLERS};
use super::support::{self, claims, send, token, Files, Signer, Via, MEDIA};

/// Runs every row for every caller, its credential made by `credential`.
async fn check_table(
    server: &crate::common::TestServer,
    via: Via,
    credential: impl Fn(&str) -> String,
) {
    for row in rows() {
        for caller in CALLERS {
            let secret = credential(caller);
            let r = send(server, row.method.clone(), row.path, Some(&secret), via).await;
            let status = r.status().as_u16();
            let what = format!("{} {} as {caller} via {via:?}", row.method, row.path);
            if row.allowed.contains(&caller) {
                assert!(
                    status != 401 && status != 403,
                    "{what}: refused {status}: {}",
                    r.text().await.unwrap_or_default()
                );
            } else {
                let doc = crate::common::problem(r, 403).await;
                assert_eq!(doc["type"], "urn:blobq:problem:forbidden", "{what}");
            }
        }
        let r = send(server, row.method.clone(), row.path, None, via).await;
        support::assert_401(
            r,
            false,
            &format!("{} {} without a credential", row.method, row.path),
        )
        .await;
    }
    for caller in CALLERS.iter().map(|c| Some(credential(c))).chain([None]) {
        let r = send(server, Method::GET, "/healthz", caller.as_deref(), via).await;
        assert_eq!(r.status(), 200, "/healthz is open");
        let r = send(server, Method::HEAD, "/healthz", caller.as_deref(), via).await;
        assert_eq!(r.status(), 405, "/healthz's 405 is open too");
    }
    // Elsewhere a path or method no route answers takes a valid credential
    // before its 404 or 405.
    for (method, path, status) in [
        (Method::GET, "/nowhere", 404),
        (Method::PATCH, "/qs/media/q", 405),
    ] {
        let r = send(server, method.clone(), path, None, via).await;
        support::assert_401(r, false, path).await;
        let r = send(server, method, path, Some(&credential("observer")), via).await;
        assert_eq!(r.status(), status, "{path}");
    }
}

#[tokio::test]
async fn static_tokens_grant_what_the_role_table_says_in_either_header() {
    let files = Files::new();
    let server = support::start(&files, None, &[]).await;
    check_table(&server, Via::Bearer, |caller| token(caller).to_owned()).await;
    check_table(&server, Via::ApiKey, |caller| token(caller).to_owned()).await;
}

#[tokio::test]
async fn jwts_grant_what_their_claims_say_by_the_same_table() {
    let files = Files::new();
    let signer = Signer::ed25519();
    let server = support::start(&files, Some(&signer), &[]).await;
    let jwt = |caller: &str| match caller {
        "root" => signer.sign(&claims(&["*"], &["admin"])),
        role => signer.sign(&claims(MEDIA, &[role])),
    };
    check_table(&server, Via::Bearer, jwt).await;
}
