//! Header values the server spells out itself (ids, sizes, seconds), written
//! one after another into a single buffer: an answer then makes one
//! allocation for all of them, where a `HeaderValue` each was one apiece.

use std::ops::Range;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use uuid::Uuid;

/// Text up to this long is written into an array on the stack and moved
/// into the one allocation its `Bytes` share (`Bytes::from_owner`), which
/// also holds their reference count. Text in a `Vec` took two: the `Vec`,
/// and the count once the first value was sliced from it. A push answer with
/// two short names is about 150 bytes, a pop's values at most 158.
const INLINE_TEXT: usize = 256;

/// Most values one answer spells out (a leased pop: blob id, size,
/// lifetime, element id, receipt, deliveries).
const MAX_VALUES: usize = 6;

/// Text being written, and which header each spelled value is for.
pub struct Spelled {
    text: Text,
    values: [Option<(HeaderName, Range<usize>)>; MAX_VALUES],
    count: usize,
}

/// The text: inline while it fits, then in a `Vec`. Each piece written is a
/// bounds-checked copy that the compiler turns into a few moves for the
/// literals of an answer, where a growable buffer's append was a call per
/// piece (a push answer is written in a dozen of them).
#[allow(clippy::large_enum_variant)] // on purpose: the inline text is the point
enum Text {
    Inline {
        bytes: [u8; INLINE_TEXT],
        len: usize,
    },
    Spilled(Vec<u8>),
}

impl Text {
    fn len(&self) -> usize {
        match self {
            Text::Inline { len, .. } => *len,
            Text::Spilled(v) => v.len(),
        }
    }

    #[inline]
    fn put(&mut self, piece: &[u8]) {
        match self {
            Text::Inline { bytes, len } => match bytes.get_mut(*len..*len + piece.len()) {
                Some(room) => {
                    room.copy_from_slice(piece);
                    *len += piece.len();
                }
                None => self.spill(piece),
            },
            Text::Spilled(v) => v.extend_from_slice(piece),
        }
    }

    /// Moves the text to a `Vec`, `piece` last: it outgrew the inline room.
    #[cold]
    fn spill(&mut self, piece: &[u8]) {
        if let Text::Inline { bytes, len } = self {
            let mut v = Vec::with_capacity(2 * INLINE_TEXT + piece.len());
            v.extend_from_slice(&bytes[..*len]);
            v.extend_from_slice(piece);
            *self = Text::Spilled(v);
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Text::Inline { bytes, len } => Bytes::from_owner(InlineText { bytes, len }),
            Text::Spilled(v) => Bytes::from(v),
        }
    }
}

/// Inline text as the owner of its `Bytes`.
struct InlineText {
    bytes: [u8; INLINE_TEXT],
    len: usize,
}

impl AsRef<[u8]> for InlineText {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Spelled {
    /// Room for `bytes` of text before the buffer grows: on the stack up to
    /// [`INLINE_TEXT`].
    pub fn with_capacity(bytes: usize) -> Spelled {
        let text = if bytes <= INLINE_TEXT {
            Text::Inline {
                bytes: [0; INLINE_TEXT],
                len: 0,
            }
        } else {
            Text::Spilled(Vec::with_capacity(bytes))
        };
        Spelled {
            text,
            values: Default::default(),
            count: 0,
        }
    }

    /// Appends text that is no header's value (the punctuation of a JSON
    /// body written into the same buffer).
    #[inline]
    pub fn text(&mut self, text: &[u8]) {
        self.text.put(text);
    }

    /// Appends `id` hyphenated, as header `name`'s value.
    pub fn id(&mut self, name: HeaderName, id: Uuid) {
        let mut buffer = Uuid::encode_buffer();
        self.value(name, id.hyphenated().encode_lower(&mut buffer).as_bytes());
    }

    /// Appends `n` in decimal, as header `name`'s value.
    pub fn number(&mut self, name: HeaderName, n: u64) {
        self.value(name, itoa::Buffer::new().format(n).as_bytes());
    }

    fn value(&mut self, name: HeaderName, text: &[u8]) {
        let start = self.text.len();
        self.text.put(text);
        let at = start..self.text.len();
        // Only an answer spelling more than MAX_VALUES would find no slot:
        // the value still stands in the text but gets no header, which that
        // answer's tests would show.
        if let Some(slot) = self.values.get_mut(self.count) {
            *slot = Some((name, at));
            self.count += 1;
        }
    }

    /// Inserts every value into `headers`, each a slice of the one buffer,
    /// and returns the whole text.
    pub fn insert_into(self, headers: &mut HeaderMap) -> Bytes {
        let text = self.text.into_bytes();
        for (name, at) in self.values.into_iter().flatten() {
            // Ids and decimal digits are always valid header text.
            if let Ok(value) = HeaderValue::from_maybe_shared(text.slice(at)) {
                headers.insert(name, value);
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_its_header_and_the_text_keeps_everything() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let mut spelled = Spelled::with_capacity(16);
        spelled.text(b"{\"id\":\"");
        spelled.id(HeaderName::from_static("x-id"), id);
        spelled.text(b"\",\"n\":");
        spelled.number(HeaderName::from_static("x-n"), 18_446_744_073_709_551_615);
        spelled.number(HeaderName::from_static("x-zero"), 0);
        assert!(
            matches!(spelled.text, Text::Inline { .. }),
            "an answer's text is written on the stack"
        );
        let mut headers = HeaderMap::new();
        let text = spelled.insert_into(&mut headers);
        assert_eq!(headers["x-id"], "01234567-89ab-cdef-0123-456789abcdef");
        assert_eq!(headers["x-n"], "18446744073709551615");
        assert_eq!(headers["x-zero"], "0");
        assert_eq!(
            &text[..],
            b"{\"id\":\"01234567-89ab-cdef-0123-456789abcdef\",\"n\":184467440737095516150"
        );
    }

    #[test]
    fn text_asked_for_beyond_the_inline_room_starts_on_the_heap() {
        let id = Uuid::from_u128(7);
        let mut spelled = Spelled::with_capacity(INLINE_TEXT + 1);
        assert!(matches!(spelled.text, Text::Spilled(_)));
        spelled.text(b"[");
        spelled.id(HeaderName::from_static("x-id"), id);
        spelled.text(b"]");
        let mut headers = HeaderMap::new();
        let text = spelled.insert_into(&mut headers);
        assert_eq!(headers["x-id"], id.hyphenated().to_string());
        assert_eq!(text, format!("[{}]", id.hyphenated()));
    }

    #[test]
    fn text_longer_than_the_inline_room_is_kept_whole() {
        let mut spelled = Spelled::with_capacity(16);
        let long = vec![b'n'; 3 * INLINE_TEXT];
        spelled.text(&long);
        spelled.number(HeaderName::from_static("x-n"), 42);
        let mut headers = HeaderMap::new();
        let text = spelled.insert_into(&mut headers);
        assert_eq!(headers["x-n"], "42");
        assert_eq!(text.len(), long.len() + 2);
        assert_eq!(&text[..long.len()], &long[..]);
    }
}
