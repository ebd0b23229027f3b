//! The client's side of the connection: the server's base URL, the token
//! sent with every request, and answers that are not what a subcommand
//! asked for turned into a [`ClientError`] (a problem document's type and
//! detail when the server sent one).

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};

use super::ClientArgs;

/// Why a client subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The command line asks for something that cannot be done.
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached, or the connection failed.
    #[error("{server}: {error}")]
    Transport {
        server: String,
        #[source]
        error: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("{status} {problem}: {detail}")]
    Refused {
        status: StatusCode,
        /// The problem type without its `urn:blobq:problem:` prefix.
        problem: String,
        detail: String,
    },
    /// A job ended without succeeding (failed or cancelled).
    #[error("{0}")]
    JobDidNotSucceed(String),
    /// A local file or stream could not be read or written.
    #[error("{what}: {error}")]
    Io {
        what: String,
        #[source]
        error: std::io::Error,
    },
}

impl ClientError {
    /// `2` for a usage error (as clap's own), `1` for anything else.
    pub fn exit_status(&self) -> u8 {
        match self {
            ClientError::Usage(_) => 2,
            _ => 1,
        }
    }

    pub fn io(what: impl Into<String>, error: std::io::Error) -> ClientError {
        ClientError::Io {
            what: what.into(),
            error,
        }
    }
}

/// A connection to one server.
pub struct Conn {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
    pub json: bool,
    request_timeout: Duration,
}

impl Conn {
    pub fn new(args: &ClientArgs) -> Result<Conn, ClientError> {
        let base = args.server.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Usage(format!(
                "--server {base:?} must be an http:// or https:// URL"
            )));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(args.request_timeout))
            .build()
            .map_err(|error| ClientError::Transport {
                server: base.clone(),
                error,
            })?;
        Ok(Conn {
            client,
            base,
            token: args.token.clone(),
            json: args.json,
            request_timeout: Duration::from_secs(args.request_timeout),
        })
    }

    /// A request to `path` (with its query), with the token, that may take
    /// `extra` longer than the usual timeout (a blocking pop's wait).
    pub fn request(&self, method: Method, path: &str, extra: Duration) -> RequestBuilder {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .timeout(self.request_timeout + extra);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    /// Sends `request`; an answer whose status is not one of `expected` is
    /// the error its problem document describes.
    pub async fn send(
        &self,
        request: RequestBuilder,
        expected: &[StatusCode],
    ) -> Result<Response, ClientError> {
        let response = request
            .send()
            .await
            .map_err(|error| ClientError::Transport {
                server: self.base.clone(),
                error,
            })?;
        if expected.contains(&response.status()) {
            return Ok(response);
        }
        Err(refused(response).await)
    }
}

/// The JSON document of an answer (`what` names it in an error).
pub async fn json_of(response: Response, what: &str) -> Result<serde_json::Value, ClientError> {
    response
        .json()
        .await
        .map_err(|e| ClientError::io(what, std::io::Error::other(e)))
}

/// The error an unexpected answer stands for.
async fn refused(response: Response) -> ClientError {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let text = |key: &str| problem.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    ClientError::Refused {
        status,
        problem: text("type")
            .map(|t| t.trim_start_matches("urn:blobq:problem:").to_owned())
            .unwrap_or_else(|| "error".to_owned()),
        detail: text("detail")
            .or_else(|| text("title"))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned()),
    }
}
