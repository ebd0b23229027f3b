//! When an object (objects.rs) goes: it lives while something holds it.
//!
//! Each element or blob whose data is an object holds it through a marker,
//! an empty message of the namespace's stream on
//! `blobq.{ns}._o.{object}.{holder}` (`e{element id}` or `b{blob id}`),
//! with a per-message TTL of the holder's lifetime and a little more (the
//! marker is published before its holder, within a few request timeouts). Removing a holder (an acknowledged pop,
//! a deleted blob) purges its marker and deletes the object if no other
//! marker is left. A holder whose lifetime ends takes its marker with it,
//! and every `--blob-sweep-interval` each node deletes the objects that no
//! marker holds any more and that were stored more than a grace ago (two
//! sweep intervals, and at least three request timeouts: an object is
//! stored before its first marker is published).
//! `_o` is no escaped name (names.rs), so no queue shares these subjects,
//! and no consumer takes them.

use std::sync::Arc;

use async_nats::HeaderMap;
use futures_util::{StreamExt as _, TryStreamExt as _};

use super::message::{self, ObjectRef};
use super::queues::{nats_error, PUBLISH_TIMEOUTS};
use super::{names, Inner};
use crate::backend::ids::{BlobId, ElementId};
use crate::backend::name::Name;
use crate::backend::{BackendError, BodyStream};

/// What holds an object.
#[derive(Debug, Clone, Copy)]
pub enum Holder {
    Element(ElementId),
    Blob(BlobId),
}

impl Holder {
    fn token(self) -> String {
        match self {
            Holder::Element(id) => format!("e{}", id.uuid().simple()),
            Holder::Blob(id) => format!("b{}", id.uuid().simple()),
        }
    }
}

/// `blobq.{ns}.` (the namespace's subjects less their wildcard).
fn namespace_prefix(ns: &Name) -> String {
    names::stream_subjects(ns).trim_end_matches('>').to_owned()
}

fn marker_subject(ns: &Name, key: &str, holder: Holder) -> String {
    format!("{}_o.{key}.{}", namespace_prefix(ns), holder.token())
}

fn markers_of(ns: &Name, key: &str) -> String {
    format!("{}_o.{key}.>", namespace_prefix(ns))
}

impl Inner {
    /// Makes `holder` hold object `key` for `seconds`.
    pub(super) async fn hold(
        &self,
        ns: &Name,
        key: &str,
        holder: Holder,
        seconds: u64,
    ) -> Result<(), BackendError> {
        let mut headers = HeaderMap::new();
        let slack = (self.config.request_timeout * PUBLISH_TIMEOUTS).as_secs();
        let ttl = seconds.max(1).saturating_add(slack);
        headers.insert(
            async_nats::header::NATS_MESSAGE_TTL,
            ttl.to_string().as_str(),
        );
        let subject = marker_subject(ns, key, holder);
        self.publish(ns, &subject, headers, bytes::Bytes::new())
            .await
    }

    /// `holder` lets go of object `key`, which is deleted if nothing else
    /// holds it. Failures are logged: the sweep finishes the work.
    pub(super) async fn let_go(&self, ns: &Name, key: &str, holder: Holder) {
        if let Err(e) = self.try_let_go(ns, key, holder).await {
            tracing::debug!(namespace = %ns, object = key, error = %e, "could not let go of an object; the sweep will");
        }
    }

    /// The element of a message with `headers` has been acknowledged: it
    /// lets go of its object, if it has one.
    pub(super) async fn element_gone(&self, ns: &Name, headers: Option<&HeaderMap>) {
        if let Some(d) = message::describe(headers, 0) {
            if let Some(object) = d.object {
                self.let_go(ns, &object.key, Holder::Element(d.id)).await;
            }
        }
    }

    async fn try_let_go(&self, ns: &Name, key: &str, holder: Holder) -> Result<(), BackendError> {
        let Some(stream) = self.find_stream(ns).await? else {
            return Ok(());
        };
        stream
            .purge()
            .filter(marker_subject(ns, key, holder))
            .await
            .map_err(|e| nats_error("letting go of an object", e))?;
        if !self.is_held(ns, key).await? {
            self.delete_object(ns, key).await?;
        }
        Ok(())
    }

    /// Whether any marker holds object `key`.
    async fn is_held(&self, ns: &Name, key: &str) -> Result<bool, BackendError> {
        let Some(stream) = self.find_stream(ns).await? else {
            return Ok(false);
        };
        let failed = |e| nats_error("looking up an object's holders", e);
        let mut held = stream
            .info_with_subjects(markers_of(ns, key))
            .await
            .map_err(failed)?;
        Ok(held.try_next().await.map_err(failed)?.is_some())
    }

    /// Deletes the objects of every namespace that nothing holds, every
    /// `--blob-sweep-interval`, until shutdown.
    pub(super) async fn sweep_objects(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(self.config.sweep_interval);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = self.closing.cancelled() => return,
            }
            if self.link.js().is_err() {
                continue;
            }
            match self.sweep_once().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(objects = n, "deleted objects no element or blob holds"),
                Err(e) => tracing::warn!(error = %e, "could not sweep the object store"),
            }
        }
    }

    /// One sweep; how many objects it deleted.
    pub(super) async fn sweep_once(&self) -> Result<u64, BackendError> {
        let js = self.link.js()?;
        let failed = |e| nats_error("listing the namespaces", e);
        let streams: Vec<String> = js.stream_names().try_collect().await.map_err(failed)?;
        let grace =
            (self.config.sweep_interval * 2).max(self.config.request_timeout * PUBLISH_TIMEOUTS);
        let cutoff = message::now_ms().saturating_sub(grace.as_millis() as u64);
        let mut deleted = 0;
        for ns in streams.iter().filter_map(|s| names::namespace_of(s)) {
            for (key, stored_ms) in self.list_objects(&ns).await? {
                if stored_ms > cutoff || self.is_held(&ns, &key).await? {
                    continue;
                }
                self.delete_object(&ns, &key).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Runs `let_go` of `holder` on `object` in a task of its own.
    pub(super) fn let_go_later(
        self: &Arc<Self>,
        ns: &Name,
        object: &ObjectRef,
        holder: Holder,
    ) -> impl FnOnce() + Send + 'static {
        let (inner, ns, key) = (self.clone(), ns.clone(), object.key.clone());
        move || {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { inner.let_go(&ns, &key, holder).await });
            }
        }
    }
}

/// `stream`, with `on_end` run once it has been read or its reader has
/// gone (an object let go of once the pop that removed its element has
/// sent it).
pub fn with_end(
    stream: BodyStream<std::io::Error>,
    on_end: impl FnOnce() + Send + 'static,
) -> BodyStream<std::io::Error> {
    let guard = OnEnd(Some(Box::new(on_end)));
    Box::pin(futures_util::stream::unfold(
        (stream, guard),
        |(mut stream, guard)| async move {
            let next = stream.next().await?;
            Some((next, (stream, guard)))
        },
    ))
}

/// Runs its action when dropped.
struct OnEnd(Option<Box<dyn FnOnce() + Send>>);

impl Drop for OnEnd {
    fn drop(&mut self) {
        if let Some(action) = self.0.take() {
            action();
        }
    }
}
