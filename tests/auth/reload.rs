//! Credentials re-read on SIGHUP (a bad file keeps the previous ones), an
//! unreadable credential file at start-up, and `blobq token new`.

use std::time::{Duration, Instant};

use reqwest::Method;

use super::support::{
    claims, run_blobq, send, signal, token_file_text, Files, Signer, Token, Via, MEDIA,
};
use crate::common::{self, TestServer, STEP};

fn observer(name: &'static str, secret: &'static str) -> Token {
    Token {
        name,
        secret,
        namespaces: MEDIA,
        roles: &["observer"],
    }
}

/// The status of `GET /qs/media` with `credential`.
async fn status(server: &TestServer, credential: &str) -> u16 {
    send(
        server,
        Method::GET,
        "/qs/media",
        Some(credential),
        Via::Bearer,
    )
    .await
    .status()
    .as_u16()
}

/// Waits until `credential` is answered `want`, failing after [`STEP`].
async fn wait_status(server: &TestServer, credential: &str, want: u16, what: &str) {
    let deadline = Instant::now() + STEP;
    loop {
        let got = status(server, credential).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: still {got}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for `count` log lines containing `text`.
async fn wait_log(server: &TestServer, text: &str, count: usize) {
    let deadline = Instant::now() + STEP;
    while server.log().iter().filter(|l| l.contains(text)).count() < count {
        assert!(
            Instant::now() < deadline,
            "no {count} × {text:?} in {:?}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sighup_rereads_token_files_and_keys_and_a_bad_file_keeps_the_old_ones() {
    let files = Files::new();
    let (old_key, new_key) = (Signer::ed25519(), Signer::p256());
    let tokens = files.write(
        "tokens.toml",
        &token_file_text(&[observer("a", "tok-a-1111")]),
    );
    let settings = files.write(
        "blobq.toml",
        &token_file_text(&[observer("in-settings", "tok-s-1111")]),
    );
    let key = files.write("jwt.pem", &old_key.public_pem);
    let server = common::options()
        .arg("--config", settings.display())
        .arg("--auth-file", tokens.display())
        .arg("--auth-jwt-key", key.display())
        .start()
        .await;
    let (old_jwt, new_jwt) = (
        old_key.sign(&claims(MEDIA, &["observer"])),
        new_key.sign(&claims(MEDIA, &["observer"])),
    );
    for (credential, want) in [
        ("tok-a-1111", 404),
        ("tok-s-1111", 404),
        ("tok-b-2222", 401),
        ("tok-t-2222", 401),
        (old_jwt.as_str(), 404),
        (new_jwt.as_str(), 401),
    ] {
        assert_eq!(
            status(&server, credential).await,
            want,
            "before: {credential}"
        );
    }
    // Rotate all three.
    files.write(
        "tokens.toml",
        &token_file_text(&[observer("b", "tok-b-2222")]),
    );
    files.write(
        "blobq.toml",
        &token_file_text(&[observer("in-settings", "tok-t-2222")]),
    );
    files.write("jwt.pem", &new_key.public_pem);
    signal(&server, "-HUP");
    wait_log(&server, "credentials reloaded", 1).await;
    for (credential, want) in [
        ("tok-a-1111", 401),
        ("tok-s-1111", 401),
        ("tok-b-2222", 404),
        ("tok-t-2222", 404),
        (old_jwt.as_str(), 401),
        (new_jwt.as_str(), 404),
    ] {
        assert_eq!(
            status(&server, credential).await,
            want,
            "after: {credential}"
        );
    }
    // A file that does not parse, then one that cannot be read: the
    // credentials in force stay, and the log says which file and why.
    files.write(
        "tokens.toml",
        "[[auth.tokens]]\nname = \"c\"\nsha256 = \"nothex\"\n",
    );
    signal(&server, "-HUP");
    wait_log(&server, "credentials not reloaded", 1).await;
    std::fs::remove_file(&key).unwrap();
    files.write(
        "tokens.toml",
        &token_file_text(&[observer("c", "tok-c-3333")]),
    );
    signal(&server, "-HUP");
    wait_log(&server, "credentials not reloaded", 2).await;
    let refusals: Vec<String> = server
        .log()
        .into_iter()
        .filter(|l| l.contains("credentials not reloaded"))
        .collect();
    assert!(refusals[0].contains("tokens.toml"), "{refusals:?}");
    assert!(refusals[1].contains("jwt.pem"), "{refusals:?}");
    assert_eq!(status(&server, "tok-b-2222").await, 404);
    assert_eq!(status(&server, &new_jwt).await, 404);
    assert_eq!(status(&server, "tok-c-3333").await, 401);
    // Fixed again: the next SIGHUP takes it.
    files.write("jwt.pem", &new_key.public_pem);
    signal(&server, "-HUP");
    wait_status(&server, "tok-c-3333", 404, "the fixed files are read").await;
    assert_eq!(status(&server, "tok-b-2222").await, 401);
}

#[test]
fn an_unreadable_or_invalid_credential_file_stops_start_up_naming_it() {
    let files = Files::new();
    let missing = files.dir.path().join("absent.toml");
    let bad_tokens = files.write("bad.toml", "[[auth.tokens]]\nname = 1\n");
    let bad_key = files.write("key.pem", "not a key");
    let spill = files.dir.path().display().to_string();
    for (flag, path) in [
        ("--auth-file", &missing),
        ("--auth-jwt-key", &missing),
        ("--auth-file", &bad_tokens),
        ("--auth-jwt-key", &bad_key),
    ] {
        let path_text = path.display().to_string();
        let out = run_blobq(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--spill-dir",
            &spill,
            flag,
            &path_text,
        ]);
        assert_eq!(out.status.code(), Some(2), "{flag} {path_text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&path_text), "{flag}: {stderr}");
    }
}

#[tokio::test]
async fn a_minted_token_works_once_its_entry_is_pasted() {
    let out = run_blobq(&[
        "token",
        "new",
        "--name",
        "thumbs",
        "--namespace",
        "media",
        "--namespace",
        "media-*",
        "--role",
        "producer",
        "--role",
        "consumer",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (minted, entry) = text.split_once('\n').unwrap();
    assert!(minted.len() >= 43, "{minted}");
    assert!(
        !entry.contains(minted),
        "the entry holds the digest, not the token"
    );
    let files = Files::new();
    let tokens = files.write("tokens.toml", entry);
    let server = common::options()
        .arg("--auth-file", tokens.display())
        .start()
        .await;
    let r = send(
        &server,
        Method::POST,
        "/qs/media-eu/q",
        Some(minted),
        Via::Bearer,
    )
    .await;
    assert_eq!(r.status(), 202);
    let r = send(
        &server,
        Method::GET,
        "/qs/media-eu/q",
        Some(minted),
        Via::ApiKey,
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = send(
        &server,
        Method::GET,
        "/qs/media-eu",
        Some(minted),
        Via::Bearer,
    )
    .await;
    assert_eq!(r.status(), 403, "no observer role");
    let bad = run_blobq(&[
        "token",
        "new",
        "--name",
        "x",
        "--namespace",
        "a b",
        "--role",
        "producer",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    let bad = run_blobq(&[
        "token",
        "new",
        "--name",
        "x",
        "--namespace",
        "a",
        "--role",
        "root",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("root"));
}
