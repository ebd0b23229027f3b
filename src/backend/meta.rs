//! Element and blob metadata, and the rules a client's metadata must follow.
//!
//! The HTTP layer hands raw header strings to the constructors here; whatever
//! they accept is safe to store and to send back as a header.

use std::ops::Deref;
use std::sync::{Arc, LazyLock};

use regex::Regex;
use smol_str::SmolStr;

/// The type a blob gets when the client names none.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// Longest key of an `X-Custom-Data` pair.
pub const MAX_CUSTOM_KEY_LEN: usize = 64;
/// Longest value of an `X-Custom-Data` pair.
pub const MAX_CUSTOM_VALUE_LEN: usize = 1024;
/// Longest content type accepted.
pub const MAX_CONTENT_TYPE_LEN: usize = 255;

/// `type/subtype` made of RFC 9110 token characters, optionally followed by
/// parameters of visible ASCII.
static CONTENT_TYPE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+/[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*;[\x20-\x7e]*)?$")
        .expect("static regex")
});

/// What a client may have got wrong in its metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("content type {0:?} is not of the form type/subtype (at most {MAX_CONTENT_TYPE_LEN} characters)")]
    ContentType(String),
    #[error("X-Custom-Data {0:?} has no '=' between key and value")]
    CustomNoEquals(String),
    #[error("X-Custom-Data key {0:?} must be 1 to {MAX_CUSTOM_KEY_LEN} characters of 0-9, a-z, A-Z, '_', '.', '-'")]
    CustomKey(String),
    #[error("X-Custom-Data value for key {0:?} must be at most {MAX_CUSTOM_VALUE_LEN} visible ASCII characters or spaces")]
    CustomValue(String),
    #[error("at most {0} X-Custom-Data pairs are allowed")]
    TooManyPairs(usize),
}

/// One `X-Custom-Data: key=value` pair, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomPair {
    pub key: Box<str>,
    pub value: Box<str>,
}

impl CustomPair {
    /// Parses a header value `key=value`, splitting at the first `=`.
    pub fn parse(raw: &str) -> Result<CustomPair, MetaError> {
        let (key, value) = raw
            .split_once('=')
            .ok_or_else(|| MetaError::CustomNoEquals(raw.to_owned()))?;
        let key_ok = !key.is_empty()
            && key.len() <= MAX_CUSTOM_KEY_LEN
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !key_ok {
            return Err(MetaError::CustomKey(key.to_owned()));
        }
        if value.len() > MAX_CUSTOM_VALUE_LEN || !value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        {
            return Err(MetaError::CustomValue(key.to_owned()));
        }
        Ok(CustomPair {
            key: key.into(),
            value: value.into(),
        })
    }
}

/// [`DEFAULT_CONTENT_TYPE`] as stored: static text, no allocation.
pub fn default_content_type() -> SmolStr {
    SmolStr::new_static(DEFAULT_CONTENT_TYPE)
}

/// Checks a content type and returns it as stored: a `SmolStr`, so that the
/// default type and any of up to 23 bytes (`image/png`, `application/json`)
/// cost a push no allocation.
pub fn parse_content_type(raw: &str) -> Result<SmolStr, MetaError> {
    // The most common value, plainly valid: no need for the regex.
    if raw == DEFAULT_CONTENT_TYPE {
        Ok(default_content_type())
    } else if raw.len() <= MAX_CONTENT_TYPE_LEN && CONTENT_TYPE.is_match(raw) {
        Ok(SmolStr::new(raw))
    } else {
        Err(MetaError::ContentType(raw.to_owned()))
    }
}

/// Metadata of an element or blob. Shared behind an `Arc`: an element pushed
/// with data and its blob hold the same record, and so do the references a
/// fan-out creates when they do not override it.
#[derive(Debug, PartialEq, Eq)]
pub struct Metadata {
    pub content_type: SmolStr,
    pub custom: Box<[CustomPair]>,
}

/// The metadata of an element pushed with none (most pushes carry none).
static PLAIN: LazyLock<Metadata> = LazyLock::new(|| Metadata {
    content_type: default_content_type(),
    custom: Box::new([]),
});

/// Metadata as elements and blobs hold it: an `Arc` shared by an element, its
/// blob and the fan-out references to it, except for the plain record,
/// which is not counted at all. When it was one shared `Arc`, every push and
/// pop on every thread changed its one reference count, and that cache line
/// travelled between the CPUs on each of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedMeta(Option<Arc<Metadata>>);

impl SharedMeta {
    pub fn new(meta: Metadata) -> SharedMeta {
        SharedMeta(Some(Arc::new(meta)))
    }
}

impl Deref for SharedMeta {
    type Target = Metadata;

    fn deref(&self) -> &Metadata {
        match &self.0 {
            Some(meta) => meta,
            None => &PLAIN,
        }
    }
}

impl Metadata {
    /// The default content type and no custom pairs.
    pub fn plain() -> SharedMeta {
        SharedMeta(None)
    }

    /// Metadata from already-validated parts, with the default type where
    /// none was given.
    pub fn with_default_type(content_type: Option<SmolStr>, custom: Vec<CustomPair>) -> Metadata {
        Metadata {
            content_type: content_type.unwrap_or_else(default_content_type),
            custom: custom.into_boxed_slice(),
        }
    }

    /// Builds shared metadata from already-validated parts, refusing more
    /// than `max_pairs` custom pairs.
    pub fn shared(
        content_type: Option<SmolStr>,
        custom: Vec<CustomPair>,
        max_pairs: usize,
    ) -> Result<SharedMeta, MetaError> {
        if custom.len() > max_pairs {
            return Err(MetaError::TooManyPairs(max_pairs));
        }
        Ok(SharedMeta::new(Metadata::with_default_type(
            content_type,
            custom,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_metadata_reads_as_the_default_and_equals_it_spelled_out() {
        let plain = Metadata::plain();
        assert_eq!(&*plain.content_type, DEFAULT_CONTENT_TYPE);
        assert!(plain.custom.is_empty());
        let spelled_out =
            Metadata::shared(Some(DEFAULT_CONTENT_TYPE.into()), Vec::new(), 4).unwrap();
        assert_eq!(*plain, *spelled_out);
        let custom = Metadata::shared(Some("text/plain".into()), Vec::new(), 4).unwrap();
        assert_ne!(*plain, *custom);
        assert_eq!(&*custom.clone().content_type, "text/plain");
    }

    #[test]
    fn custom_pairs_split_at_the_first_equals() {
        let p = CustomPair::parse("k=a=b c").unwrap();
        assert_eq!((&*p.key, &*p.value), ("k", "a=b c"));
        let empty = CustomPair::parse("k=").unwrap();
        assert_eq!(&*empty.value, "");
    }

    #[test]
    fn custom_pairs_refuse_bad_keys_and_values() {
        assert!(matches!(
            CustomPair::parse("novalue"),
            Err(MetaError::CustomNoEquals(_))
        ));
        assert!(matches!(
            CustomPair::parse("=v"),
            Err(MetaError::CustomKey(_))
        ));
        assert!(matches!(
            CustomPair::parse("a b=v"),
            Err(MetaError::CustomKey(_))
        ));
        let long_key = format!("{}=v", "k".repeat(65));
        assert!(matches!(
            CustomPair::parse(&long_key),
            Err(MetaError::CustomKey(_))
        ));
        assert!(CustomPair::parse(&format!("{}=v", "k".repeat(64))).is_ok());
        assert!(matches!(
            CustomPair::parse("k=tab\there"),
            Err(MetaError::CustomValue(_))
        ));
        let long_value = format!("k={}", "v".repeat(1025));
        assert!(matches!(
            CustomPair::parse(&long_value),
            Err(MetaError::CustomValue(_))
        ));
        assert!(CustomPair::parse(&format!("k={}", "v".repeat(1024))).is_ok());
    }

    #[test]
    fn content_types_need_type_and_subtype() {
        for ok in [
            "image/png",
            "application/json; charset=utf-8",
            "application/vnd.a+json",
        ] {
            assert_eq!(&*parse_content_type(ok).unwrap(), ok);
        }
        for bad in [
            "",
            "png",
            "image/",
            "/png",
            "image/png/x",
            "a b/c",
            &format!("a/{}", "b".repeat(300)),
        ] {
            assert!(parse_content_type(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn common_content_types_are_kept_without_an_allocation() {
        for common in [DEFAULT_CONTENT_TYPE, "image/png", "application/json"] {
            let kept = parse_content_type(common).unwrap();
            assert_eq!(&*kept, common);
            assert!(!kept.is_heap_allocated(), "{common:?}");
        }
        let long = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
        assert_eq!(&*parse_content_type(long).unwrap(), long);
    }

    #[test]
    fn metadata_defaults_its_type_and_caps_pairs() {
        let m = Metadata::shared(None, vec![], 64).unwrap();
        assert_eq!(&*m.content_type, DEFAULT_CONTENT_TYPE);
        let pairs = vec![CustomPair::parse("a=1").unwrap(); 3];
        assert_eq!(
            Metadata::shared(None, pairs, 2),
            Err(MetaError::TooManyPairs(2))
        );
    }
}
