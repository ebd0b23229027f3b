//! The credentials in force: the static tokens of the settings file and of
//! `--auth-file`, and the JWT keys, read together into one snapshot that a
//! reload replaces whole (or not at all).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::jwt::JwtKeys;
use super::settings::AuthConfig;
use super::token::{StaticToken, TokenEntry};

/// Why credentials could not be loaded; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read credential file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid credential file {path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
    #[error("invalid [[auth.tokens]] entry: {0}")]
    Entry(String),
}

/// One snapshot of every credential.
#[derive(Debug)]
pub struct Credentials {
    pub tokens: Vec<StaticToken>,
    pub jwt: Option<JwtKeys>,
}

/// A token file: `[[auth.tokens]]` entries and nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    auth: TokenTable,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TokenTable {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

/// The `[auth]` table of the settings file, of which only the tokens are
/// read again on a reload (the other settings take a restart).
#[derive(Deserialize)]
struct SettingsFile {
    #[serde(default)]
    auth: Option<SettingsAuth>,
}

#[derive(Deserialize)]
struct SettingsAuth {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

impl Credentials {
    /// Reads every credential at start-up: the settings file's tokens were
    /// parsed with the other settings.
    pub fn load(config: &AuthConfig) -> Result<Credentials, AuthError> {
        Credentials::read(config, &config.tokens)
    }

    /// Reads every credential again, the settings file's tokens included.
    pub fn reload(config: &AuthConfig) -> Result<Credentials, AuthError> {
        let inline = match &config.config_file {
            Some(path) => {
                let file: SettingsFile = parse_toml(path)?;
                file.auth.map(|a| a.tokens).unwrap_or_default()
            }
            None => config.tokens.clone(),
        };
        Credentials::read(config, &inline)
    }

    fn read(config: &AuthConfig, inline: &[TokenEntry]) -> Result<Credentials, AuthError> {
        let mut tokens = Vec::new();
        for entry in inline {
            let token =
                StaticToken::from_entry(entry).map_err(|detail| match &config.config_file {
                    Some(path) => AuthError::Invalid {
                        path: path.clone(),
                        detail,
                    },
                    None => AuthError::Entry(detail),
                })?;
            tokens.push(token);
        }
        if let Some(path) = &config.file {
            let file: TokenFile = parse_toml(path)?;
            for entry in &file.auth.tokens {
                let token =
                    StaticToken::from_entry(entry).map_err(|detail| invalid(path, detail))?;
                tokens.push(token);
            }
        }
        let jwt = match &config.jwt_key {
            Some(path) => Some(JwtKeys::parse(&read(path)?).map_err(|d| invalid(path, d))?),
            None => None,
        };
        Ok(Credentials { tokens, jwt })
    }
}

fn invalid(path: &Path, detail: String) -> AuthError {
    AuthError::Invalid {
        path: path.to_owned(),
        detail,
    }
}

fn read(path: &Path) -> Result<Vec<u8>, AuthError> {
    std::fs::read(path).map_err(|source| AuthError::Read {
        path: path.to_owned(),
        source,
    })
}

fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, AuthError> {
    let bytes = read(path)?;
    let text = String::from_utf8(bytes).map_err(|e| invalid(path, e.to_string()))?;
    toml::from_str(&text).map_err(|e| invalid(path, e.to_string()))
}
