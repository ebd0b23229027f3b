//! Reading a `multipart/mixed` body (RFC 2046, section 5.1) part by part as
//! it arrives: each part's headers whole (at most `max_header_bytes`), its
//! body as a stream of chunks that ends at the next delimiter, so a part of
//! any size passes through in pieces and is never held whole.
//!
//! The body is scanned for the delimiter `CRLF--boundary` with `memchr`'s
//! `memmem`; a part's header lines are parsed by `httparse`, the parser
//! hyper itself uses for request heads. multer, the usual crate, reads only
//! `multipart/form-data` boundaries, caps a part at 32 header lines (a push
//! may carry 64 `X-Custom-Data` pairs and more) and buffers a part's
//! headers, or a preamble, with no bound but the whole body's; this reader
//! bounds both, and its property tests (`tests/batch/parsing.rs`) hold it
//! to multer's reading of the bodies multer reads correctly.

use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use memchr::memmem::Finder;

use crate::backend::{BodyError, BodyStream};

/// The limits a batch body is read under.
#[derive(Clone, Copy, Debug)]
pub struct PartLimits {
    /// Parts a batch may have; one more is refused as it begins.
    pub max_parts: usize,
    /// Bytes of one part's header lines, their line ends included.
    pub max_header_bytes: usize,
}

/// Why a batch body cannot be read. Parts are counted from 0.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    /// Not `multipart/mixed` with a usable boundary.
    #[error("{0}")]
    ContentType(String),
    /// The body breaks the format (a truncated part, a delimiter line that
    /// does not end, headers that do not parse).
    #[error("the batch is not well-formed multipart/mixed: {0}")]
    Malformed(String),
    #[error("the batch has more than the maximum of {limit} parts")]
    TooManyParts { limit: usize },
    #[error("the part's headers are longer than the maximum of {limit} bytes")]
    HeadersTooLarge { part: usize, limit: usize },
    /// The request body itself failed (the client broke off, or stalled).
    #[error(transparent)]
    Body(#[from] BodyError),
}

/// Where the reader is in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the first delimiter: the preamble, skipped.
    Preamble,
    /// Just past a delimiter: either `--` (the end) or a new part.
    AfterDelimiter,
    /// At a part's header lines, after its delimiter line's CRLF.
    Headers,
    /// In a part's body.
    Body,
    /// The body of a part has ended at its delimiter; the next part's head
    /// has not been read.
    BodyEnded,
    /// Past the close delimiter; the epilogue is read and dropped.
    Epilogue,
    Done,
    Failed,
}

/// The head of one part.
#[derive(Debug)]
pub struct PartHead {
    /// Counted from 0, in the order of the body.
    pub index: usize,
    pub headers: HeaderMap,
}

/// A `multipart/mixed` body being read.
pub struct MultipartReader {
    chunks: BodyStream,
    /// Bytes received and not yet handed out. Starts with a CRLF, so that a
    /// delimiter at the very start of the body is found like any other.
    buf: BytesMut,
    eof: bool,
    /// `CRLF--boundary`.
    delimiter: Finder<'static>,
    state: State,
    limits: PartLimits,
    /// Parts begun so far.
    parts: usize,
    /// The first error met, kept for whoever asks after a stream of the
    /// part's body failed with it.
    failure: Option<MultipartError>,
}

/// The boundary of a `multipart/mixed` content type.
pub fn boundary(content_type: Option<&HeaderValue>) -> Result<String, MultipartError> {
    let bad = |why: &str| MultipartError::ContentType(why.to_owned());
    let raw = content_type
        .ok_or_else(|| bad("a batch needs Content-Type: multipart/mixed; boundary=..."))?
        .to_str()
        .map_err(|_| bad("the Content-Type is not visible ASCII"))?;
    let mime: mime::Mime = raw
        .parse()
        .map_err(|_| bad("the Content-Type is not a media type"))?;
    if mime.type_() != mime::MULTIPART || mime.subtype() != "mixed" {
        return Err(bad("a batch's Content-Type must be multipart/mixed"));
    }
    let boundary = mime
        .get_param(mime::BOUNDARY)
        .ok_or_else(|| bad("the Content-Type has no boundary parameter"))?
        .as_str();
    // RFC 2046: 1 to 70 characters, not ending in a space.
    if boundary.is_empty() || boundary.len() > 70 || boundary.ends_with(' ') {
        return Err(bad(
            "the boundary must be 1 to 70 characters, not ending in a space",
        ));
    }
    Ok(boundary.to_owned())
}

impl MultipartReader {
    pub fn new(chunks: BodyStream, boundary: &str, limits: PartLimits) -> MultipartReader {
        let delimiter = format!("\r\n--{boundary}").into_bytes();
        let mut buf = BytesMut::with_capacity(8 * 1024);
        buf.extend_from_slice(b"\r\n");
        MultipartReader {
            chunks,
            buf,
            eof: false,
            delimiter: Finder::new(&delimiter).into_owned(),
            state: State::Preamble,
            limits,
            parts: 0,
            failure: None,
        }
    }

    /// The error that stopped the reader, if one did.
    pub fn failure(&self) -> Option<&MultipartError> {
        self.failure.as_ref()
    }

    fn fail(&mut self, e: MultipartError) -> MultipartError {
        self.state = State::Failed;
        self.failure.get_or_insert(e).clone()
    }

    fn malformed(&mut self, why: String) -> MultipartError {
        self.fail(MultipartError::Malformed(why))
    }

    /// Reads one more chunk of the request into the buffer.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), MultipartError>> {
        match ready!(self.chunks.as_mut().poll_next(cx)) {
            Some(Ok(chunk)) => {
                self.buf.extend_from_slice(&chunk);
                Poll::Ready(Ok(()))
            }
            Some(Err(e)) => Poll::Ready(Err(self.fail(MultipartError::Body(e)))),
            None => {
                self.eof = true;
                Poll::Ready(Ok(()))
            }
        }
    }

    /// Reads on until the next part's head, skipping what is left of the
    /// current part's body; `None` past the last part.
    pub fn poll_next_part(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<PartHead>, MultipartError>> {
        loop {
            match self.state {
                State::Failed => {
                    let e = self.failure.clone();
                    return Poll::Ready(Err(e.unwrap_or_else(|| {
                        MultipartError::Malformed("the batch could not be read".into())
                    })));
                }
                State::Done => return Poll::Ready(Ok(None)),
                State::Body => {
                    // Skips the rest of a body nobody read.
                    while ready!(self.poll_chunk(cx)).transpose()?.is_some() {}
                }
                State::BodyEnded => self.state = State::AfterDelimiter,
                State::Preamble => ready!(self.poll_preamble(cx))?,
                State::AfterDelimiter => ready!(self.poll_after_delimiter(cx))?,
                State::Headers => return self.poll_headers(cx).map(|r| r.map(Some)),
                State::Epilogue => {
                    self.buf.clear();
                    if self.eof {
                        self.state = State::Done;
                    } else {
                        ready!(self.poll_fill(cx))?;
                    }
                }
            }
        }
    }

    /// Skips the preamble up to the first delimiter.
    fn poll_preamble(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), MultipartError>> {
        loop {
            let needle = self.delimiter.needle().len();
            if let Some(at) = self.delimiter.find(&self.buf) {
                self.buf.advance(at + needle);
                self.state = State::AfterDelimiter;
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Err(self.malformed("no delimiter line in the body".into())));
            }
            // Only a delimiter's worth of the preamble is kept.
            let drop = self.buf.len().saturating_sub(needle - 1);
            self.buf.advance(drop);
            ready!(self.poll_fill(cx))?;
        }
    }

    /// Past a delimiter: `--` closes the batch; otherwise optional spaces
    /// and tabs, then the CRLF that begins the next part's head.
    fn poll_after_delimiter(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), MultipartError>> {
        loop {
            if self.buf.starts_with(b"--") {
                self.state = State::Epilogue;
                return Poll::Ready(Ok(()));
            }
            let padding = self
                .buf
                .iter()
                .take_while(|b| **b == b' ' || **b == b'\t')
                .count();
            let rest = &self.buf[padding..];
            if rest.len() >= 2 {
                if !rest.starts_with(b"\r\n") {
                    let part = self.parts;
                    return Poll::Ready(Err(self.malformed(format!(
                        "the delimiter line before part {part} does not end with CRLF"
                    ))));
                }
                self.buf.advance(padding);
                self.parts += 1;
                if self.parts > self.limits.max_parts {
                    let limit = self.limits.max_parts;
                    return Poll::Ready(Err(self.fail(MultipartError::TooManyParts { limit })));
                }
                self.state = State::Headers;
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Err(
                    self.malformed("the body ends in a delimiter line".into())
                ));
            }
            ready!(self.poll_fill(cx))?;
        }
    }

    /// A part's header lines, up to the empty line that ends them. The
    /// buffer starts with the CRLF of the delimiter line, so an empty head
    /// is found as the same `CRLF CRLF`.
    fn poll_headers(&mut self, cx: &mut Context<'_>) -> Poll<Result<PartHead, MultipartError>> {
        let index = self.parts - 1;
        let limit = self.limits.max_header_bytes;
        loop {
            // The leading CRLF and the trailing empty line are not counted.
            let window = &self.buf[..self.buf.len().min(limit + 4)];
            if let Some(end) = memchr::memmem::find(window, b"\r\n\r\n") {
                let head = self.buf.split_to(end + 4);
                self.state = State::Body;
                // What follows the head begins the body; the delimiter that
                // ends it carries its own CRLF, so the body starts here.
                return Poll::Ready(self.parse_head(index, &head[2..]));
            }
            if self.buf.len() >= limit + 4 {
                return Poll::Ready(Err(
                    self.fail(MultipartError::HeadersTooLarge { part: index, limit })
                ));
            }
            if self.eof {
                return Poll::Ready(Err(
                    self.malformed(format!("the body ends in part {index}'s headers"))
                ));
            }
            ready!(self.poll_fill(cx))?;
        }
    }

    /// Header lines (each ending in CRLF, then an empty line) as a map.
    fn parse_head(&mut self, index: usize, lines: &[u8]) -> Result<PartHead, MultipartError> {
        let count = memchr::memmem::find_iter(lines, b"\r\n").count();
        let mut parsed = vec![httparse::EMPTY_HEADER; count];
        let bad = |why: String| MultipartError::Malformed(format!("part {index}'s headers: {why}"));
        let found = match httparse::parse_headers(lines, &mut parsed) {
            Ok(httparse::Status::Complete((_, found))) => found,
            Ok(httparse::Status::Partial) => return Err(self.fail(bad("incomplete".into()))),
            Err(e) => return Err(self.fail(bad(e.to_string()))),
        };
        let mut headers = HeaderMap::with_capacity(found.len());
        for h in found.iter() {
            let name = HeaderName::from_bytes(h.name.as_bytes());
            let value = HeaderValue::from_bytes(h.value);
            match (name, value) {
                (Ok(name), Ok(value)) => {
                    headers.append(name, value);
                }
                _ => return Err(self.fail(bad(format!("the header {:?}", h.name)))),
            }
        }
        Ok(PartHead { index, headers })
    }

    /// The next piece of the current part's body; `None` once it has ended.
    pub fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, MultipartError>>> {
        loop {
            match self.state {
                State::Body => {}
                State::Failed => {
                    let e = self.failure.clone();
                    return Poll::Ready(e.map(Err));
                }
                _ => return Poll::Ready(None),
            }
            if let Some(at) = self.delimiter.find(&self.buf) {
                let data = self.buf.split_to(at).freeze();
                self.buf.advance(self.delimiter.needle().len());
                self.state = State::BodyEnded;
                if data.is_empty() {
                    return Poll::Ready(None);
                }
                return Poll::Ready(Some(Ok(data)));
            }
            // All but what could be the start of a delimiter is body.
            let keep = self.delimiter.needle().len() - 1;
            if self.buf.len() > keep {
                let data = self.buf.split_to(self.buf.len() - keep).freeze();
                return Poll::Ready(Some(Ok(data)));
            }
            if self.eof {
                let part = self.parts - 1;
                let e = self.malformed(format!("the body ends inside part {part}"));
                return Poll::Ready(Some(Err(e)));
            }
            if let Err(e) = ready!(self.poll_fill(cx)) {
                return Poll::Ready(Some(Err(e)));
            }
        }
    }

    /// [`MultipartReader::poll_next_part`] as a future.
    pub async fn next_part(&mut self) -> Result<Option<PartHead>, MultipartError> {
        std::future::poll_fn(|cx| self.poll_next_part(cx)).await
    }

    /// [`MultipartReader::poll_chunk`] as a future.
    pub async fn next_chunk(&mut self) -> Option<Result<Bytes, MultipartError>> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }
}
