//! Static tokens: the entries of `[[auth.tokens]]`, kept as SHA-256 digests
//! and looked up in constant time, and the minting of new tokens for
//! `blobq token new`.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::grant::{Caller, Grant};

/// Random bytes in a minted token: 256 bits, beyond guessing.
const TOKEN_BYTES: usize = 32;

/// One `[[auth.tokens]]` entry as written in a file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Shown in logs, never the token.
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    pub namespaces: Vec<String>,
    pub roles: Vec<String>,
}

/// A checked entry: its digest and what it grants.
#[derive(Debug)]
pub struct StaticToken {
    digest: [u8; 32],
    caller: Caller,
}

impl StaticToken {
    pub fn from_entry(entry: &TokenEntry) -> Result<StaticToken, String> {
        let digest = parse_hex_digest(&entry.sha256).ok_or_else(|| {
            format!(
                "token {:?}: sha256 must be 64 hexadecimal digits",
                entry.name
            )
        })?;
        let grant = Grant::parse(&entry.namespaces, &entry.roles, false)
            .map_err(|e| format!("token {:?}: {e}", entry.name))?;
        Ok(StaticToken {
            digest,
            caller: Caller {
                name: entry.name.as_str().into(),
                grant: Arc::new(grant),
            },
        })
    }
}

/// The caller whose token is `presented`, if any. Every entry is compared,
/// each in constant time, so the time taken says nothing of which entry
/// (or how much of one) matched.
pub fn find<'a>(tokens: &'a [StaticToken], presented: &str) -> Option<&'a Caller> {
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut found = None;
    for token in tokens {
        if bool::from(token.digest.ct_eq(&digest)) {
            found = Some(&token.caller);
        }
    }
    found
}

/// The lowercase hex SHA-256 of `token`, as an entry's `sha256` holds it.
pub fn digest_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_hex_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(digest)
}

/// A fresh token: random bytes from the OS, URL-safe base64 without
/// padding (no character that needs quoting in a header or a shell).
pub fn mint() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The `[[auth.tokens]]` entry for `token`, ready to paste into a file.
pub fn entry_toml(name: &str, token: &str, namespaces: &[String], roles: &[String]) -> String {
    let quoted = |v: &[String]| {
        let items: Vec<String> = v.iter().map(|s| toml_string(s)).collect();
        format!("[{}]", items.join(", "))
    };
    format!(
        "[[auth.tokens]]\nname = {}\nsha256 = \"{}\"\nnamespaces = {}\nroles = {}\n",
        toml_string(name),
        digest_hex(token),
        quoted(namespaces),
        quoted(roles),
    )
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, token: &str) -> TokenEntry {
        TokenEntry {
            name: name.into(),
            sha256: digest_hex(token),
            namespaces: vec!["media-*".into()],
            roles: vec!["producer".into()],
        }
    }

    #[test]
    fn a_token_is_found_by_its_digest_and_only_by_it() {
        let tokens: Vec<StaticToken> = [entry("a", "alpha"), entry("b", "beta")]
            .iter()
            .map(|e| StaticToken::from_entry(e).unwrap())
            .collect();
        assert_eq!(&*find(&tokens, "beta").unwrap().name, "b");
        assert_eq!(&*find(&tokens, "alpha").unwrap().name, "a");
        assert!(find(&tokens, "gamma").is_none());
        assert!(find(&tokens, "").is_none());
    }

    #[test]
    fn the_digest_is_the_usual_sha256_hex() {
        assert_eq!(
            digest_hex("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn bad_entries_say_which_and_why() {
        let mut e = entry("thumbs", "x");
        e.sha256 = "abc".into();
        assert!(StaticToken::from_entry(&e).unwrap_err().contains("thumbs"));
        let mut e = entry("thumbs", "x");
        e.roles = vec!["root".into()];
        assert!(StaticToken::from_entry(&e).unwrap_err().contains("root"));
    }

    #[test]
    fn minted_tokens_are_fresh_and_their_entry_parses_back() {
        let (a, b) = (mint().unwrap(), mint().unwrap());
        assert_ne!(a, b);
        assert!(a.len() >= 43, "{a}");
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        let text = entry_toml("x\"y", &a, &["m*".into()], &["consumer".into()]);
        #[derive(Deserialize)]
        struct File {
            auth: Tokens,
        }
        #[derive(Deserialize)]
        struct Tokens {
            tokens: Vec<TokenEntry>,
        }
        let parsed: File = toml::from_str(&text).unwrap();
        let token = StaticToken::from_entry(&parsed.auth.tokens[0]).unwrap();
        assert_eq!(&*find(&[token], &a).unwrap().name, "x\"y");
    }
}
