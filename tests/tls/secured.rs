//! TLS and authentication together: the contract's role table (the rows of
//! tests/auth/role_table.rs), each request sent over HTTPS with HTTP/2 on
//! one connection, with each static token and without one.

use crate::client::empty;
use crate::role_table::{rows, CALLERS};
use crate::support::{token, token_file_text, Files, TOKENS};
use crate::{TlsServer, H2};

#[tokio::test]
async fn the_role_table_holds_over_https_and_http2() {
    let files = Files::new();
    let tokens = files.write("tokens.toml", &token_file_text(&TOKENS));
    let tls = TlsServer::start(|options, _, _| options.arg("--auth-file", tokens.display())).await;
    let conn = tls.connect(H2).await;
    for row in rows() {
        for caller in CALLERS {
            let bearer = format!("Bearer {}", token(caller));
            let headers = [("authorization", bearer.as_str())];
            let answer = conn
                .send_with(row.method.clone(), row.path, &headers, empty())
                .await;
            let what = format!("{} {} as {caller} over HTTP/2", row.method, row.path);
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
