//! What the client prints: an element's headers as `key: value` lines for
//! people or as a JSON object for scripts, bodies written as they stream
//! (to stdout or a file), and a progress bar for large transfers on a
//! terminal.

use std::io::IsTerminal;
use std::path::Path;

use base64::Engine as _;
use futures_util::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::header::HeaderMap;
use reqwest::{Body, RequestBuilder, Response};
use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt as _;
use tokio_util::io::ReaderStream;

use super::conn::ClientError;

/// Transfers at least this large get a progress bar on a terminal.
const PROGRESS_FROM_BYTES: u64 = 8 << 20;

/// What a pop's answer said about its element.
#[derive(Debug)]
pub struct Element {
    pub id: String,
    pub blob_id: Option<String>,
    pub content_type: String,
    pub size: u64,
    pub lifetime: u64,
    pub custom: Vec<(String, String)>,
    pub lease: Option<String>,
    pub deliveries: Option<u64>,
}

fn text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn number(headers: &HeaderMap, name: &str) -> Option<u64> {
    text(headers, name).and_then(|v| v.parse().ok())
}

impl Element {
    pub fn from_headers(headers: &HeaderMap) -> Element {
        Element {
            id: text(headers, "x-queueserver-id").unwrap_or_default(),
            blob_id: text(headers, "x-blobstorage_id"),
            content_type: text(headers, "content-type").unwrap_or_default(),
            size: number(headers, "x-queueserver-size").unwrap_or(0),
            lifetime: number(headers, "x-queueserver-lifetime").unwrap_or(0),
            custom: headers
                .get_all("x-custom-data")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            lease: text(headers, "x-queueserver-lease"),
            deliveries: number(headers, "x-queueserver-deliveries"),
        }
    }

    /// The element as JSON; with its body, as text when it is UTF-8 and in
    /// base64 otherwise, so that any bytes survive.
    pub fn to_json(&self, body: Option<&[u8]>) -> Value {
        let custom: Map<String, Value> = self
            .custom
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut out = json!({
            "id": self.id,
            "blob_id": self.blob_id,
            "content_type": self.content_type,
            "size": self.size,
            "lifetime": self.lifetime,
            "data": custom,
            "lease": self.lease,
            "deliveries": self.deliveries,
        });
        if let (Some(body), Some(map)) = (body, out.as_object_mut()) {
            map.extend(body_fields(body));
        }
        out
    }

    /// The element's headers as lines for people, on stderr.
    pub fn print_human(&self) {
        let mut lines = vec![format!("id: {}", self.id)];
        if let Some(blob) = &self.blob_id {
            lines.push(format!("blob: {blob}"));
        }
        lines.push(format!("content-type: {}", self.content_type));
        lines.push(format!("size: {}", self.size));
        lines.push(format!("lifetime: {} s", self.lifetime));
        for (k, v) in &self.custom {
            lines.push(format!("data: {k}={v}"));
        }
        if let Some(lease) = &self.lease {
            lines.push(format!("lease: {lease}"));
        }
        if let Some(n) = self.deliveries {
            lines.push(format!("deliveries: {n}"));
        }
        eprintln!("{}", lines.join("\n"));
    }
}

/// A body as a JSON field: `body` when it is UTF-8 text, else
/// `body_base64`, so that any bytes survive.
pub fn body_fields(body: &[u8]) -> Map<String, Value> {
    let mut map = Map::new();
    match std::str::from_utf8(body) {
        Ok(text) => map.insert("body".into(), Value::String(text.to_owned())),
        Err(_) => map.insert(
            "body_base64".into(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
        ),
    };
    map
}

/// Prints `value` as one line of JSON on stdout.
pub fn print_json(value: &Value) {
    println!("{value}");
}

/// A progress bar for a transfer of `len` bytes, hidden unless stderr is a
/// terminal and the transfer is large.
pub fn progress(len: Option<u64>, what: &str) -> ProgressBar {
    let show = std::io::stderr().is_terminal() && len.is_some_and(|l| l >= PROGRESS_FROM_BYTES);
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len.unwrap_or(0));
    let style = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}

/// Streams `response`'s body to `file` (or stdout), with a progress bar.
pub async fn write_body(response: Response, file: Option<&Path>) -> Result<u64, ClientError> {
    let what = file.map_or_else(|| "stdout".to_owned(), |p| p.display().to_string());
    let bar = progress(response.content_length(), &what);
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin> = match file {
        Some(path) => Box::new(
            tokio::fs::File::create(path)
                .await
                .map_err(|e| ClientError::io(format!("cannot create {what}"), e))?,
        ),
        None => Box::new(tokio::io::stdout()),
    };
    let mut written = 0;
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk =
            chunk.map_err(|e| ClientError::io("the body was cut off", std::io::Error::other(e)))?;
        out.write_all(&chunk)
            .await
            .map_err(|e| ClientError::io(format!("cannot write {what}"), e))?;
        written += chunk.len() as u64;
        bar.set_position(written);
    }
    out.flush()
        .await
        .map_err(|e| ClientError::io(format!("cannot write {what}"), e))?;
    bar.finish_and_clear();
    Ok(written)
}

/// `request` with the bytes of `file` as its body, streamed with a progress
/// bar, or of stdin when `file` is `-` or none.
/// The headers a push or a job submit sends with its body: its content
/// type, its custom `KEY=VALUE` pairs and its lifetime.
pub fn with_push_headers(
    mut request: RequestBuilder,
    content_type: Option<&str>,
    data: &[String],
    lifetime: Option<u64>,
) -> Result<RequestBuilder, ClientError> {
    if let Some(t) = content_type {
        request = request.header("content-type", t);
    }
    for pair in data {
        if !pair.contains('=') {
            return Err(ClientError::Usage(format!(
                "--data {pair:?} is not KEY=VALUE"
            )));
        }
        request = request.header("x-custom-data", pair);
    }
    if let Some(s) = lifetime {
        request = request.header("x-queueserver-lifetime", s);
    }
    Ok(request)
}

pub async fn with_body(
    request: RequestBuilder,
    file: Option<&Path>,
) -> Result<RequestBuilder, ClientError> {
    let Some(file) = file.filter(|f| f.as_os_str() != "-") else {
        return Ok(request.body(Body::wrap_stream(ReaderStream::new(tokio::io::stdin()))));
    };
    let what = file.display().to_string();
    let opened = tokio::fs::File::open(file)
        .await
        .map_err(|e| ClientError::io(format!("cannot open {what}"), e))?;
    let len = opened
        .metadata()
        .await
        .map_err(|e| ClientError::io(format!("cannot read {what}"), e))?
        .len();
    let bar = progress(Some(len), &what);
    let counted = ReaderStream::new(opened).inspect(move |chunk| {
        if let Ok(c) = chunk {
            bar.inc(c.len() as u64);
        }
    });
    Ok(request
        .header("content-length", len)
        .body(Body::wrap_stream(counted)))
}
