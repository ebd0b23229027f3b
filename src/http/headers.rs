//! The names of blobq's own headers, made once as `HeaderName`s so that a
//! lookup or insert does not parse the name again.

use http::HeaderName;

/// Seconds an element or blob lives (in a push), or has left (in an answer).
pub const LIFETIME: HeaderName = HeaderName::from_static("x-queueserver-lifetime");
/// A content type that wins over `Content-Type` in a push.
pub const CONTENT_TYPE_OVERRIDE: HeaderName = HeaderName::from_static("x-queueserver-contenttype");
/// One `key=value` pair of custom metadata; repeatable.
pub const CUSTOM_DATA: HeaderName = HeaderName::from_static("x-custom-data");
/// The blob an element references, or a stored blob's id.
pub const BLOB_ID: HeaderName = HeaderName::from_static("x-blobstorage_id");
/// A pushed or popped element's id.
pub const ELEMENT_ID: HeaderName = HeaderName::from_static("x-queueserver-id");
/// A popped element's or read blob's size in bytes.
pub const SIZE: HeaderName = HeaderName::from_static("x-queueserver-size");
/// The receipt of a lease, to ack, release or extend it with.
pub const LEASE: HeaderName = HeaderName::from_static("x-queueserver-lease");
/// How many times a leased element has been handed out.
pub const DELIVERIES: HeaderName = HeaderName::from_static("x-queueserver-deliveries");
