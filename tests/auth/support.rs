//! What the authentication tests share: the credentials a server is
//! started with (static tokens in an `--auth-file`, JWT keys made fresh for
//! the run), requests carrying them, and checks of the answers.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{self, TestServer};

/// A static token and what it grants.
pub struct Token {
    pub name: &'static str,
    pub secret: &'static str,
    pub namespaces: &'static [&'static str],
    pub roles: &'static [&'static str],
}

/// Namespaces every scoped credential of the tests names.
pub const MEDIA: &[&str] = &["media", "media-*"];

/// One token per role on `MEDIA`, and `root`, admin on every namespace.
pub const TOKENS: [Token; 5] = [
    Token {
        name: "producer",
        secret: "tok-producer-9c1d6a0b3e",
        namespaces: MEDIA,
        roles: &["producer"],
    },
    Token {
        name: "consumer",
        secret: "tok-consumer-51f0e2c7aa",
        namespaces: MEDIA,
        roles: &["consumer"],
    },
    Token {
        name: "observer",
        secret: "tok-observer-03bd94e6f1",
        namespaces: MEDIA,
        roles: &["observer"],
    },
    Token {
        name: "admin",
        secret: "tok-admin-7e2a58c9d4",
        namespaces: MEDIA,
        roles: &["admin"],
    },
    Token {
        name: "root",
        secret: "tok-root-b86f1d27e3",
        namespaces: &["*"],
        roles: &["admin"],
    },
];

pub fn token(name: &str) -> &'static str {
    TOKENS
        .iter()
        .find(|t| t.name == name)
        .map(|t| t.secret)
        .unwrap_or_else(|| panic!("no token {name}"))
}

pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The `[[auth.tokens]]` entries of `tokens`.
pub fn token_file_text(tokens: &[Token]) -> String {
    tokens
        .iter()
        .map(|t| {
            blobq::auth::entry_toml(t.name, t.secret, &strings(t.namespaces), &strings(t.roles))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A key pair made for this run, and the public half as the server reads
/// it.
pub struct Signer {
    pub algorithm: Algorithm,
    key: EncodingKey,
    pub public_pem: String,
    pub kid: Option<String>,
}

fn pem(label: &str, der: &[u8]) -> String {
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn random32() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).unwrap();
    bytes
}

impl Signer {
    pub fn ed25519() -> Signer {
        use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
        let secret = ed25519_dalek::SigningKey::from_bytes(&random32());
        let private = secret.to_pkcs8_der().unwrap();
        let public = secret.verifying_key().to_public_key_der().unwrap();
        Signer {
            algorithm: Algorithm::EdDSA,
            key: EncodingKey::from_ed_der(private.as_bytes()),
            public_pem: pem("PUBLIC KEY", public.as_bytes()),
            kid: None,
        }
    }

    pub fn p256() -> Signer {
        use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
        let secret = p256::SecretKey::from_slice(&random32()).unwrap();
        let private = secret.to_pkcs8_der().unwrap();
        let public = secret.public_key().to_public_key_der().unwrap();
        Signer {
            algorithm: Algorithm::ES256,
            key: EncodingKey::from_ec_der(private.as_bytes()),
            public_pem: pem("PUBLIC KEY", public.as_bytes()),
            kid: None,
        }
    }

    pub fn rsa() -> Signer {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::EncodePublicKey;
        let secret = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
        let private = secret.to_pkcs1_der().unwrap();
        let public = secret.to_public_key().to_public_key_der().unwrap();
        Signer {
            algorithm: Algorithm::RS256,
            key: EncodingKey::from_rsa_der(private.as_bytes()),
            public_pem: pem("PUBLIC KEY", public.as_bytes()),
            kid: None,
        }
    }

    pub fn with_kid(mut self, kid: &str) -> Signer {
        self.kid = Some(kid.to_owned());
        self
    }

    /// The public key as a JWK, with this signer's `kid`.
    pub fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.algorithm).unwrap();
        jwk.common.key_id = self.kid.clone();
        jwk
    }

    /// A JWT of `claims` signed with this key.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

/// A JWKS document of `signers`' public keys.
pub fn jwks(signers: &[&Signer]) -> String {
    let set = JwkSet {
        keys: signers.iter().map(|s| s.jwk()).collect(),
    };
    serde_json::to_string(&set).unwrap()
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims granting `roles` on `namespaces`, valid for ten minutes.
pub fn claims(namespaces: &[&str], roles: &[&str]) -> Value {
    json!({
        "sub": "svc-test",
        "exp": now() + 600,
        "blobq_namespaces": namespaces,
        "blobq_roles": roles,
    })
}

/// Files a server's credentials are read from, removed with it.
pub struct Files {
    pub dir: tempfile::TempDir,
}

impl Files {
    pub fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        // Written aside and renamed, so a reload never reads half a file.
        let aside = self.dir.path().join(format!(".{name}.new"));
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(&aside, &path).unwrap();
        path
    }
}

/// A server with `TOKENS` in an `--auth-file` and `signer`'s key as the
/// JWT key, plus `extra` flags.
pub async fn start(files: &Files, signer: Option<&Signer>, extra: &[(&str, &str)]) -> TestServer {
    let mut options = common::options().arg(
        "--auth-file",
        files
            .write("tokens.toml", &token_file_text(&TOKENS))
            .display(),
    );
    if let Some(signer) = signer {
        options = options.arg(
            "--auth-jwt-key",
            files.write("jwt.pem", &signer.public_pem).display(),
        );
    }
    for (flag, value) in extra {
        options = options.arg(flag, value);
    }
    options.start().await
}

/// How a request carries its credential.
#[derive(Clone, Copy, Debug)]
pub enum Via {
    Bearer,
    ApiKey,
}

/// Sends `method path` with `credential` (none if `None`) and a small body
/// for POST and PUT.
pub async fn send(
    server: &TestServer,
    method: Method,
    path: &str,
    credential: Option<&str>,
    via: Via,
) -> reqwest::Response {
    let mut request = server.client.request(method.clone(), server.url(path));
    if method == Method::POST {
        request = request.body("payload");
    }
    if let Some(credential) = credential {
        request = match via {
            Via::Bearer => request.bearer_auth(credential),
            Via::ApiKey => request.header("x-api-key", credential),
        };
    }
    request.send().await.expect("request")
}

/// Checks a `401`: the challenge, with `error="invalid_token"` when a
/// credential was given, and a problem document.
pub async fn assert_401(r: reqwest::Response, credential_given: bool, what: &str) {
    let challenge = r
        .headers()
        .get("www-authenticate")
        .unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"))
        .to_str()
        .unwrap()
        .to_owned();
    let want = if credential_given {
        r#"Bearer realm="blobq", error="invalid_token""#
    } else {
        r#"Bearer realm="blobq""#
    };
    assert_eq!(challenge, want, "{what}");
    let doc = common::problem(r, 401).await;
    assert_eq!(doc["type"], "urn:blobq:problem:unauthenticated", "{what}");
}

/// The value of series `blobq_auth_failures_total{reason}`.
pub fn failures(metrics: &str, reason: &str) -> u64 {
    let prefix = format!(r#"blobq_auth_failures_total{{reason="{reason}"}} "#);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no auth failure series {reason} in\n{metrics}"))
}

/// `/metrics` as `root` sees it.
pub async fn metrics(server: &TestServer) -> String {
    let r = send(
        server,
        Method::GET,
        "/metrics",
        Some(token("root")),
        Via::Bearer,
    )
    .await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// Runs the `blobq` binary with `args`, for at most 20 s.
pub fn run_blobq(args: &[&str]) -> std::process::Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_blobq"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run blobq");
    let deadline = std::time::Instant::now() + common::STEP;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("blobq {args:?} did not exit");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Sends `signal` (`-HUP`, ...) to the server.
pub fn signal(server: &TestServer, signal: &str) {
    let pid = server.pid().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("kill");
    assert!(status.success());
}
