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
//! cache. `GET /kept` tells how many are held. It serves on blobq's own runtime and HTTP/1 settings
//! (`blobq::server::runtime` and `http1_builder` with the default
//! configuration) and allocator (jemalloc), with `TCP_NODELAY` like blobq,
//! so the gap between the two is the cost of blobq's routing, validation,
//! store and metrics.
//!
//! `make bench` starts it; by hand: `cargo run --release --example ceiling -- 127.0.0.1:8090`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use blobq::config::{Config, Settings};

/// The allocator blobq's binary uses, so the comparison is of the HTTP work.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The bodies `POST /keep` holds, oldest first.
static KEPT: Mutex<VecDeque<Bytes>> = Mutex::new(VecDeque::new());

fn kept() -> std::sync::MutexGuard<'static, VecDeque<Bytes>> {
    KEPT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
    let keep = req.uri().path() == "/keep";
    if req.method() == Method::DELETE && keep {
        kept().clear();
        return Ok(response);
    }
    if req.method() == Method::POST {
        let mut incoming = req.into_body();
        let mut copy = BytesMut::with_capacity(incoming.size_hint().exact().unwrap_or(0) as usize);
        while let Some(frame) = incoming.frame().await {
            let Ok(frame) = frame else { break };
            if let (true, Ok(data)) = (keep, frame.into_data()) {
                copy.extend_from_slice(&data);
            }
        }
        if keep {
            kept().push_back(copy.freeze());
        }
        *response.status_mut() = StatusCode::ACCEPTED;
        return Ok(response);
    }
    if keep {
        match kept().pop_front() {
            Some(oldest) => *response.body_mut() = Full::new(oldest),
            None => *response.status_mut() = StatusCode::NOT_FOUND,
        }
        return Ok(response);
    }
    if req.uri().path() == "/kept" {
        *response.body_mut() = Full::new(Bytes::from(kept().len().to_string()));
        return Ok(response);
    }
    let n = req
        .uri()
        .path()
        .rsplit('/')
        .next()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_BODY);
    *response.body_mut() = Full::new(body.slice(..n));
    Ok(response)
}
