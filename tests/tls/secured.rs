//! TLS and authentication together: the contract's role table (the rows of
//! tests/auth/role_table.rs), each request sent over HTTPS with HTTP/2 on
//! one connection, with each static token, with a JWT for each role, and
//! without a credential.

use crate::client::{empty, Conn};
use crate::role_table::{rows, CALLERS};
use crate::support::{claims, token, token_file_text, Files, Signer, MEDIA, TOKENS};
use crate::{TlsServer, H2};

/// Sends every row as each caller, its bearer credential made by
/// `credential`, and without one.
async fn check_table(conn: &Conn, kind: &str, credential: impl Fn(&str) -> String) {
    for row in rows() {
        for caller in CALLERS {
            let bearer = format!("Bearer {}", credential(caller));
            let headers = [("authorization", bearer.as_str())];
            let answer = conn
                .send_with(row.method.clone(), row.path, &headers, empty())
                .await;
            let what = format!(
                "{} {} as {caller} ({kind}) over HTTP/2",
                row.method, row.path
            );
            assert_eq!(answer.version, http::Version::HTTP_2, "{what}");
            let refused = matches!(answer.status.as_u16(), 401 | 403);
            if row.allowed.contains(&caller) {
                assert!(
                    !refused,
                    "{what}: refused {}: {}",
                    answer.status,
                    answer.text()
                );
            } else {
                assert_eq!(answer.status, 403, "{what}: {}", answer.text());
            }
        }
        let answer = conn
            .send_with(row.method.clone(), row.path, &[], empty())
            .await;
        assert_eq!(
            answer.status, 401,
            "{} {} without a credential",
            row.method, row.path
        );
        assert!(answer.headers.contains_key("www-authenticate"));
    }
}

#[tokio::test]
async fn the_role_table_holds_over_https_and_http2_for_tokens_and_jwts() {
    let files = Files::new();
    let tokens = files.write("tokens.toml", &token_file_text(&TOKENS));
    let signer = Signer::ed25519();
    let key = files.write("jwt.pem", &signer.public_pem);
    let tls = TlsServer::start(|options, _, _| {
        options
            .arg("--auth-file", tokens.display())
            .arg("--auth-jwt-key", key.display())
    })
    .await;
    let conn = tls.connect(H2).await;
    check_table(&conn, "static token", |caller| token(caller).to_owned()).await;
    let jwt = |caller: &str| match caller {
        "root" => signer.sign(&claims(&["*"], &["admin"])),
        role => signer.sign(&claims(MEDIA, &[role])),
    };
    check_table(&conn, "JWT", jwt).await;
}
