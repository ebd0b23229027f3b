//! Signing a callback in the Standard Webhooks scheme
//! (<https://www.standardwebhooks.com/>): `webhook-signature` is `v1,`
//! followed by the base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`,
//! keyed with the secret. The crates `hmac` and `sha2` compute it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The key callbacks are signed with.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Box<[u8]>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// The prefix Standard Webhooks gives secrets: the rest is the key in
/// base64.
const WHSEC: &str = "whsec_";

impl SigningKey {
    /// `whsec_<base64>` (the scheme's own spelling: the key is the decoded
    /// bytes), or any other text, whose bytes are the key.
    pub fn parse(secret: &str) -> Result<SigningKey, String> {
        let key = match secret.strip_prefix(WHSEC) {
            Some(encoded) => STANDARD.decode(encoded).map_err(|e| {
                format!("job-callback-secret: whsec_ followed by no valid base64 ({e})")
            })?,
            None => secret.as_bytes().to_vec(),
        };
        if key.is_empty() {
            return Err("job-callback-secret must not be empty".into());
        }
        Ok(SigningKey(key.into_boxed_slice()))
    }

    /// The `webhook-signature` value of message `id` sent at `timestamp`
    /// (seconds since the Unix epoch) with `body`.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_webhooks_example_verifies() {
        // The example of the Standard Webhooks specification's test suite.
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_raw_secret_is_its_own_bytes_and_an_empty_one_is_refused() {
        let raw = SigningKey::parse("hunter2").unwrap();
        assert_eq!(raw, SigningKey(b"hunter2".to_vec().into_boxed_slice()));
        assert!(SigningKey::parse("").is_err());
        assert!(SigningKey::parse("whsec_").is_err());
        assert!(SigningKey::parse("whsec_not base64!").is_err());
    }
}
