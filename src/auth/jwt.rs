//! JWTs from an identity provider: the public keys (one PEM key, or a JWKS
//! file of several told apart by `kid`), and the checks of a token against
//! them (signature, `exp` and `nbf` with a leeway, `iss` and `aud` when
//! configured) by the `jsonwebtoken` crate. The claims `blobq_namespaces`
//! and `blobq_roles` become a [`Grant`].

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::failures::Failure;
use super::grant::{Caller, Grant};

/// Clock skew allowed on `exp` and `nbf`, in seconds (the contract's).
const LEEWAY_SECONDS: u64 = 30;

/// What a token is checked against besides its signature.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JwtRules {
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// One verification key and the one algorithm it is used with: the key's
/// type decides it, never the token's header.
struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// The keys of one key file.
pub struct JwtKeys {
    keys: Vec<Key>,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<_> = self.keys.iter().map(|k| (&k.kid, k.algorithm)).collect();
        f.debug_struct("JwtKeys").field("keys", &kids).finish()
    }
}

/// The claims blobq reads.
#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    #[serde(default)]
    blobq_namespaces: Vec<String>,
    #[serde(default)]
    blobq_roles: Vec<String>,
}

impl JwtKeys {
    /// The keys in `text`: a JWKS document (`{"keys": [...]}`) or a PEM
    /// public key (RSA, EC P-256 or Ed25519).
    pub fn parse(text: &[u8]) -> Result<JwtKeys, String> {
        let keys = if text.trim_ascii_start().starts_with(b"{") {
            from_jwks(text)?
        } else {
            vec![from_pem(text)?]
        };
        Ok(JwtKeys { keys })
    }

    /// The caller a token names, or why it is refused.
    pub fn verify(&self, token: &str, rules: &JwtRules) -> Result<Caller, Failure> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Failure::Malformed)?;
        // A key without a `kid` (a PEM file's) verifies whatever `kid` the
        // token names; otherwise the token's `kid` picks the key, and
        // without one only a lone key is tried.
        let key = match (&header.kid, self.keys.as_slice()) {
            (_, [only]) if only.kid.is_none() => Some(only),
            (None, [only]) => Some(only),
            (Some(kid), keys) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            (None, _) => None,
        }
        .ok_or(Failure::Unknown)?;
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        match &rules.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &rules.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map_err(|e| failure_of(e.kind()))?;
        let claims = data.claims;
        // Never refused for what it carries besides: roles and patterns
        // blobq does not know grant nothing.
        let grant = Grant::parse(&claims.blobq_namespaces, &claims.blobq_roles, true)
            .map_err(|_| Failure::Malformed)?;
        let name = format!("jwt:{}", claims.sub.as_deref().unwrap_or("-"));
        Ok(Caller {
            name: name.into(),
            grant: Arc::new(grant),
        })
    }
}

fn failure_of(kind: &ErrorKind) -> Failure {
    match kind {
        ErrorKind::ExpiredSignature => Failure::Expired,
        ErrorKind::ImmatureSignature => Failure::NotYetValid,
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => Failure::BadSignature,
        ErrorKind::InvalidIssuer => Failure::WrongIssuer,
        ErrorKind::InvalidAudience => Failure::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => Failure::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => Failure::WrongAudience,
        _ => Failure::Malformed,
    }
}

fn from_pem(text: &[u8]) -> Result<Key, String> {
    let (algorithm, key) = if let Ok(key) = DecodingKey::from_rsa_pem(text) {
        (Algorithm::RS256, key)
    } else if let Ok(key) = DecodingKey::from_ec_pem(text) {
        (Algorithm::ES256, key)
    } else if let Ok(key) = DecodingKey::from_ed_pem(text) {
        (Algorithm::EdDSA, key)
    } else {
        return Err("not a PEM public key of RSA, EC P-256 or Ed25519, nor a JWKS document".into());
    };
    Ok(Key {
        kid: None,
        algorithm,
        key,
    })
}

/// The signing keys of a JWKS document usable with RS256, ES256 or EdDSA;
/// keys for encryption or other algorithms are passed over.
fn from_jwks(text: &[u8]) -> Result<Vec<Key>, String> {
    let set: JwkSet = serde_json::from_slice(text).map_err(|e| format!("invalid JWKS: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let by_type = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                Some(Algorithm::ES256)
            }
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                Some(Algorithm::EdDSA)
            }
            _ => None,
        };
        let stated = jwk.common.key_algorithm.map(|alg| match alg {
            KeyAlgorithm::RS256 => Some(Algorithm::RS256),
            KeyAlgorithm::ES256 => Some(Algorithm::ES256),
            KeyAlgorithm::EdDSA => Some(Algorithm::EdDSA),
            _ => None,
        });
        let algorithm = match (by_type, stated) {
            (Some(alg), None) => alg,
            (Some(alg), Some(Some(stated))) if stated == alg => alg,
            _ => continue,
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("invalid JWK: {e}"))?;
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            algorithm,
            key,
        });
    }
    if keys.is_empty() {
        return Err("the JWKS has no RS256, ES256 or EdDSA signing key".into());
    }
    Ok(keys)
}
