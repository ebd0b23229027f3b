//! The load client: keep-alive HTTP/1 connections sending one job over and
//! over, with its latencies, and the queue filler built on it.

use super::*;

/// A request body of `remaining` bytes, sent as clones of one chunk, with an
/// exact size so the request carries `Content-Length`.
pub(crate) struct Repeat {
    pub(crate) chunk: Bytes,
    pub(crate) remaining: u64,
}

impl Repeat {
    pub(crate) fn new(size: u64) -> Repeat {
        Repeat {
            chunk: Bytes::from(vec![b'x'; size.min(MIB) as usize]),
            remaining: size,
        }
    }

    pub(crate) fn bytes(b: Bytes) -> Repeat {
        Repeat {
            remaining: b.len() as u64,
            chunk: b,
        }
    }
}

impl hyper::body::Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64);
        self.remaining -= n;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n as usize)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// One keep-alive HTTP/1 connection.
pub(crate) struct Conn {
    pub(crate) sender: SendRequest<Repeat>,
    pub(crate) host: String,
}

impl Conn {
    pub(crate) async fn open(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            sender,
            host: addr.to_string(),
        })
    }

    /// Sends a request and reads the whole answer: status, body size and
    /// the first bytes of the body.
    pub(crate) async fn send(
        &mut self,
        method: &Method,
        path: &str,
        headers: &[(String, String)],
        body: Repeat,
    ) -> Result<Answer> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.host);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        self.sender.ready().await?;
        let response = self.sender.send_request(req.body(body)?).await?;
        let status = response.status();
        let mut body = response.into_body();
        let mut answer = Answer {
            status,
            size: 0,
            head: Vec::new(),
        };
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                if answer.head.len() < 64 {
                    let take = (64 - answer.head.len()).min(data.len());
                    answer.head.extend_from_slice(&data[..take]);
                }
                answer.size += data.len() as u64;
            }
        }
        Ok(answer)
    }

    pub(crate) async fn get(&mut self, path: &str) -> Result<Answer> {
        self.send(&Method::GET, path, &[], Repeat::new(0)).await
    }
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) size: u64,
    pub(crate) head: Vec<u8>,
}

impl Answer {
    pub(crate) fn expect(self, status: u16, what: &str) -> Result<Answer> {
        if self.status.as_u16() != status {
            return Err(format!(
                "{what}: expected {status}, got {} ({})",
                self.status,
                String::from_utf8_lossy(&self.head)
            )
            .into());
        }
        Ok(self)
    }
}

/// One number from a JSON answer.
pub(crate) async fn json_number(conn: &mut Conn, path: &str, field: &str) -> Result<u64> {
    let mut req = Request::builder()
        .uri(path)
        .header(http::header::HOST, &conn.host);
    req = req.method(Method::GET);
    conn.sender.ready().await?;
    let response = conn.sender.send_request(req.body(Repeat::new(0))?).await?;
    let body = response.into_body().collect().await?.to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&body)?;
    value[field]
        .as_u64()
        .ok_or_else(|| format!("{path}: no number {field} in {value}").into())
}

// ---------------------------------------------------------------- fill

/// What a filler or load sends, over and over.
#[derive(Clone)]
pub(crate) struct Job {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) size: u64,
    pub(crate) expect: u16,
    /// Longest wait for one answer ([`REQUEST_TIMEOUT`] unless told).
    pub(crate) timeout: Duration,
}

/// What [`run_count`] measured.
pub(crate) struct Run {
    /// Requests per second.
    pub(crate) rate: f64,
    /// Each request's latency in microseconds, from sending it to its answer.
    pub(crate) latencies: Histogram<u64>,
}

/// Sends `job` `count` times over [`CONNECTIONS`] connections.
pub(crate) async fn run_count(addr: SocketAddr, job: Job, count: u64) -> Result<Run> {
    let left = Arc::new(AtomicU64::new(count));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS.min(count.max(1) as usize) {
        let (job, left) = (job.clone(), left.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Histogram::<u64>::new(3)?;
            let mut conn = Conn::open(addr).await?;
            let chunk = Repeat::new(job.size).chunk;
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                let sent = Instant::now();
                // A connection the server drops (webdis does, under load)
                // or stops reading (webdis did, once, filling 10 KiB
                // values: the run hung for good) is opened again and the
                // request retried, a few times.
                let mut tries = 0;
                let answer = loop {
                    let body = Repeat {
                        chunk: chunk.clone(),
                        remaining: job.size,
                    };
                    let sending = conn.send(&job.method, &job.path, &job.headers, body);
                    let answer = tokio::time::timeout(job.timeout, sending)
                        .await
                        .unwrap_or_else(|_| {
                            Err(format!(
                                "no answer to {} {} within {:?}",
                                job.method, job.path, job.timeout
                            )
                            .into())
                        });
                    match answer {
                        Ok(answer) => break answer,
                        Err(e) if tries < 3 => {
                            tries += 1;
                            eprintln!("scale: {e}; reconnecting");
                            conn = Conn::open(addr).await?;
                        }
                        Err(e) => return Err(e),
                    }
                };
                answer.expect(job.expect, &job.path)?;
                latencies.record(sent.elapsed().as_micros() as u64)?;
            }
            Ok::<_, Error>(latencies)
        }));
    }
    let mut latencies = Histogram::<u64>::new(3)?;
    for t in tasks {
        latencies.add(t.await??)?;
    }
    Ok(Run {
        rate: count as f64 / started.elapsed().as_secs_f64(),
        latencies,
    })
}

pub(crate) fn parse_url(url: &str) -> Result<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr = host.parse()?;
    Ok((addr, if path.is_empty() { "/" } else { path }.to_owned()))
}

pub(crate) async fn fill_command(args: &[String]) -> Result<()> {
    let flags = Flags::parse(args);
    let url = flags.positional.first().ok_or("fill: which URL?")?;
    let (addr, path) = parse_url(url)?;
    let headers = flags
        .named
        .get("header")
        .into_iter()
        .flatten()
        .map(|h| {
            let (k, v) = h.split_once(':').unwrap_or((h, ""));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let job = Job {
        method: flags.get("method").unwrap_or("POST").parse()?,
        path,
        headers,
        size: flags.num("size", 100)?,
        expect: flags.num("expect", 202)? as u16,
        timeout: Duration::from_secs(flags.num("timeout", REQUEST_TIMEOUT.as_secs())?),
    };
    let count = flags.num("count", 1000)?;
    let rate = run_count(addr, job, count).await?.rate;
    eprintln!(
        "filled {count} in {:.1} s ({rate:.0} req/s)",
        count as f64 / rate
    );
    Ok(())
}
