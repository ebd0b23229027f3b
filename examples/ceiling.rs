//! The benchmark ceiling: a hyper server with no queue behind it.
//!
//! It answers `202` to a `POST` after reading the whole body, and `200` to a
//! `GET /{anything}/{n}` with `n` bytes sliced from one preallocated buffer
//! (no copy). A `POST /keep` also keeps a copy of the body, in one buffer of
//! its own, until a `DELETE /keep`: the least any in-memory queue must do
//! with a body it accepts, so the cost of holding the bytes shows apart from
//! the cost of the HTTP stack. `GET /keep` answers with the oldest body kept
//! and lets it go (`404` when none is left): the least a FIFO queue must do
//! to serve bodies it received long ago, which are no longer in the CPU's
//! cache. `GET /kept` tells how many are held. `POST /shaped` and
//! `GET /shaped` keep and pop like `/keep`, but answer in the shape the
//! contract asks of blobq: a push answer with a fresh blob id and element id
//! in headers and in a JSON body, a pop answer with the ids, the size and
//! the lifetime left in headers (`GET /shaped/kept` counts them). The bytes
//! of a conforming answer with no queue logic behind them: the least any
//! server that meets the contract must do. It serves on blobq's own runtime
//! and HTTP/1 settings (`blobq::server::runtime`, and `http1_builder` with
//! the default configuration) and allocator (jemalloc), with `TCP_NODELAY`
//! like blobq, so the gap between the two is the cost of blobq's routing,
//! validation, store and metrics.
//!
//! `make bench` starts it; by hand: `cargo run --release --example ceiling -- 127.0.0.1:8090`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use uuid::Uuid;

use blobq::config::{Config, Settings};
use blobq::http::headers::{BLOB_ID, ELEMENT_ID, LIFETIME, SIZE};

/// The allocator blobq's binary uses, so the comparison is of the HTTP work.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The bodies `POST /keep` holds, oldest first.
static KEPT: Mutex<VecDeque<Bytes>> = Mutex::new(VecDeque::new());

/// The bodies `POST /shaped` holds, oldest first, with the blob id and
/// element id its answer gave them.
static SHAPED: Mutex<VecDeque<(Bytes, Uuid, Uuid)>> = Mutex::new(VecDeque::new());

fn locked<T>(held: &'static Mutex<VecDeque<T>>) -> std::sync::MutexGuard<'static, VecDeque<T>> {
    held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Largest GET body the ceiling can answer.
const MAX_BODY: usize = 1 << 20;

fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".to_owned())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let config = Config::from_settings(Settings::default())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let builder = blobq::server::http1_builder(&config);
    let body = Bytes::from(vec![b'x'; MAX_BODY]);
    blobq::server::runtime()?.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        eprintln!("ceiling listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            let service = service_fn(move |req| answer(req, body.clone()));
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    })
}

async fn answer(req: Request<Incoming>, body: Bytes) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::new()));
    let path = req.uri().path();
    let (keep, shaped) = (path == "/keep", path == "/shaped");
    if req.method() == Method::DELETE && (keep || shaped) {
        locked(&KEPT).clear();
        locked(&SHAPED).clear();
        return Ok(response);
    }
    if req.method() == Method::POST {
        let mut incoming = req.into_body();
        let mut copy = BytesMut::with_capacity(incoming.size_hint().exact().unwrap_or(0) as usize);
        while let Some(frame) = incoming.frame().await {
            let Ok(frame) = frame else { break };
            if let (true, Ok(data)) = (keep || shaped, frame.into_data()) {
                copy.extend_from_slice(&data);
            }
        }
        if keep {
            locked(&KEPT).push_back(copy.freeze());
        } else if shaped {
            let (blob, element) = (Uuid::new_v4(), Uuid::new_v4());
            let json = push_answer(response.headers_mut(), blob, element, copy.len());
            *response.body_mut() = Full::new(json);
            locked(&SHAPED).push_back((copy.freeze(), blob, element));
        }
        *response.status_mut() = StatusCode::ACCEPTED;
        return Ok(response);
    }
    if keep {
        match locked(&KEPT).pop_front() {
            Some(oldest) => *response.body_mut() = Full::new(oldest),
            None => *response.status_mut() = StatusCode::NOT_FOUND,
        }
        return Ok(response);
    }
    if shaped {
        let oldest = locked(&SHAPED).pop_front();
        match oldest {
            Some((oldest, blob, element)) => {
                pop_answer(response.headers_mut(), blob, element, oldest.len());
                *response.body_mut() = Full::new(oldest);
            }
            None => *response.status_mut() = StatusCode::NOT_FOUND,
        }
        return Ok(response);
    }
    if path == "/kept" {
        *response.body_mut() = Full::new(Bytes::from(locked(&KEPT).len().to_string()));
        return Ok(response);
    }
    if path == "/shaped/kept" {
        *response.body_mut() = Full::new(Bytes::from(locked(&SHAPED).len().to_string()));
        return Ok(response);
    }
    let n = path
        .rsplit('/')
        .next()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_BODY);
    *response.body_mut() = Full::new(body.slice(..n));
    Ok(response)
}

/// An id as blobq writes it in a header.
fn id_value(id: Uuid) -> HeaderValue {
    let mut buffer = Uuid::encode_buffer();
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buffer))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The JSON body of blobq's push answer, field for field.
#[derive(serde::Serialize)]
struct PushAnswer {
    id: Uuid,
    blob_id: Uuid,
    namespace: &'static str,
    queue: &'static str,
    size: usize,
    lifetime: u64,
}

/// blobq's push answer: ids in headers and in the JSON body.
fn push_answer(headers: &mut HeaderMap, blob: Uuid, element: Uuid, size: usize) -> Bytes {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(ELEMENT_ID, id_value(element));
    headers.insert(BLOB_ID, id_value(blob));
    let answer = PushAnswer {
        id: element,
        blob_id: blob,
        namespace: "bench",
        queue: "q",
        size,
        lifetime: 3600,
    };
    serde_json::to_vec(&answer)
        .map(Bytes::from)
        .unwrap_or_default()
}

/// blobq's pop answer headers (Content-Length is hyper's).
fn pop_answer(headers: &mut HeaderMap, blob: Uuid, element: Uuid, size: usize) {
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(BLOB_ID, id_value(blob));
    headers.insert(SIZE, HeaderValue::from(size));
    headers.insert(LIFETIME, HeaderValue::from(3600u32));
    headers.insert(ELEMENT_ID, id_value(element));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shaped_answers_carry_what_the_contract_asks_of_blobq() {
        let (blob, element) = (Uuid::new_v4(), Uuid::new_v4());
        let mut headers = HeaderMap::new();
        let json = push_answer(&mut headers, blob, element, 100);
        let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(json["id"], element.to_string());
        assert_eq!(json["blob_id"], blob.to_string());
        assert_eq!(json["size"], 100);
        for key in ["namespace", "queue", "lifetime"] {
            assert!(json.get(key).is_some(), "no {key} in {json}");
        }
        assert_eq!(headers[ELEMENT_ID], element.to_string());
        assert_eq!(headers[BLOB_ID], blob.to_string());
        assert_eq!(headers[CONTENT_TYPE], "application/json");

        let mut headers = HeaderMap::new();
        pop_answer(&mut headers, blob, element, 100);
        assert_eq!(headers[ELEMENT_ID], element.to_string());
        assert_eq!(headers[BLOB_ID], blob.to_string());
        assert_eq!(headers[SIZE], "100");
        assert_eq!(headers[LIFETIME], "3600");
        assert_eq!(headers[CONTENT_TYPE], "application/octet-stream");
    }
}
