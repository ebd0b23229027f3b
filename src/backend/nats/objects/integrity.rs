//! What keeps an object body whole: its size and SHA-256, counted as it
//! comes in and checked as it streams out.

use std::io;
use std::sync::{Mutex, PoisonError};

use futures_util::{stream, StreamExt as _};
use sha2::{Digest as _, Sha256};

use super::ObjectRef;
use crate::backend::{BackendError, BodyStream};

/// Counts and hashes a body as it passes, and keeps why it stopped.
pub(super) struct Meter {
    pub(super) limit: u64,
    pub(super) size: u64,
    pub(super) sha256: Sha256,
    pub(super) failure: Option<BackendError>,
}

impl Meter {
    pub(super) fn pass(&mut self, chunk: &[u8]) -> Result<(), BackendError> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(BackendError::TooLarge { limit: self.limit });
        }
        self.sha256.update(chunk);
        Ok(())
    }

    pub(super) fn finish(&mut self, key: String) -> ObjectRef {
        let digest = std::mem::take(&mut self.sha256).finalize();
        ObjectRef {
            key,
            size: self.size,
            sha256: hex(&digest),
        }
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub(super) fn lock(meter: &Mutex<Meter>) -> std::sync::MutexGuard<'_, Meter> {
    meter.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `raw` checked as it passes: it fails, rather than ends, if it is not
/// `object`'s size or SHA-256, so a damaged body is never sent as whole.
pub(super) fn checked(raw: BodyStream<io::Error>, object: ObjectRef) -> BodyStream<io::Error> {
    let state = (raw, Sha256::new(), 0u64, object, false);
    Box::pin(stream::unfold(
        state,
        |(mut raw, mut sha, seen, object, done)| async move {
            if done {
                return None;
            }
            match raw.next().await {
                Some(Ok(chunk)) => {
                    sha.update(&chunk);
                    let seen = seen + chunk.len() as u64;
                    Some((Ok(chunk), (raw, sha, seen, object, false)))
                }
                Some(Err(e)) => Some((Err(e), (raw, sha, seen, object, true))),
                None => {
                    let digest = hex(&sha.clone().finalize());
                    if seen == object.size && digest == object.sha256 {
                        return None;
                    }
                    let e = io::Error::other(format!(
                        "object {} is damaged: {seen} bytes of SHA-256 {digest}, not {} of {}",
                        object.key, object.size, object.sha256
                    ));
                    Some((Err(e), (raw, sha, seen, object, true)))
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures_util::TryStreamExt as _;

    use super::*;

    fn body(parts: &[&'static [u8]]) -> BodyStream<io::Error> {
        let parts: Vec<_> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Box::pin(stream::iter(parts))
    }

    async fn read(stream: BodyStream<io::Error>) -> Result<Vec<u8>, io::Error> {
        let chunks: Vec<Bytes> = stream.try_collect().await?;
        Ok(chunks.concat())
    }

    #[tokio::test]
    async fn a_body_streams_out_only_if_its_size_and_hash_match() {
        let object = ObjectRef {
            key: "k".into(),
            size: 11,
            sha256: hex(&Sha256::digest(b"hello world")),
        };
        let whole = read(checked(body(&[b"hello", b" world"]), object.clone())).await;
        assert_eq!(whole.unwrap(), b"hello world");
        let damaged = read(checked(body(&[b"hello", b" wOrld"]), object.clone())).await;
        assert!(damaged.is_err());
        let short = read(checked(body(&[b"hello"]), object)).await;
        assert!(short.is_err());
    }

    #[test]
    fn the_meter_refuses_past_its_limit_and_hashes_what_passed() {
        let mut meter = Meter {
            limit: 5,
            size: 0,
            sha256: Sha256::new(),
            failure: None,
        };
        assert!(meter.pass(b"abc").is_ok());
        let object = meter.finish("k".into());
        assert_eq!(object.size, 3);
        assert_eq!(object.sha256, hex(&Sha256::digest(b"abc")));
        assert!(matches!(
            meter.pass(b"defg"),
            Err(BackendError::TooLarge { limit: 5 })
        ));
    }
}
