//! What the `JobStore` operations (store_impl.rs) share: storing a job's
//! body as a blob of the backend, and changing one job under its queue's
//! lock.

use std::sync::Arc;

use super::durable::JOB_MARK;
use super::queue::{JobQueue, Leftovers};
use super::Jobs;
use crate::backend::ids::BlobId;
use crate::backend::jobs::{BodyInfo, JobError, JobId};
use crate::backend::meta::{CustomPair, DEFAULT_CONTENT_TYPE};
use crate::backend::name::Name;
use crate::backend::{IncomingBody, MetaInput, PushOptions};
use crate::store::clock::Millis;

/// The lifetime given to a job's blobs in the backend: longer than any job
/// can last, since the engine deletes them itself when the job goes.
const HELD_BY_JOB: u64 = u32::MAX as u64;

impl Jobs {
    /// Stores a body as a blob of job `id`, marked as such (`JOB_MARK`);
    /// an empty one is kept as no blob.
    pub(super) async fn store_body(
        &self,
        ns: &Name,
        id: JobId,
        body: IncomingBody,
        content_type: Option<smol_str::SmolStr>,
    ) -> Result<(Option<BlobId>, BodyInfo), JobError> {
        let content_type_or_default = || {
            content_type
                .clone()
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into())
        };
        if body.announced == Some(0) {
            let info = BodyInfo {
                size: 0,
                content_type: content_type_or_default(),
            };
            return Ok((None, info));
        }
        let opts = PushOptions {
            meta: MetaInput {
                content_type: content_type.clone(),
                custom: vec![CustomPair {
                    key: JOB_MARK.into(),
                    value: id.to_string().into(),
                }],
            },
            lifetime: HELD_BY_JOB,
        };
        let stored = self.shared.blobs.store_blob(ns, body, opts).await?;
        let info = BodyInfo {
            size: stored.size,
            content_type: stored.meta.content_type.clone(),
        };
        if stored.size == 0 {
            self.delete_blobs(ns, vec![stored.id]).await;
            return Ok((None, info));
        }
        Ok((Some(stored.id), info))
    }

    /// Runs `f` on the job `id` names, under its queue's lock.
    pub(super) fn with_job<R>(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
        mut f: impl FnMut(
            &mut super::queue::QueueState,
            u64,
            Millis,
            &mut super::queue::Effects,
        ) -> Result<R, JobError>,
    ) -> Result<(Arc<JobQueue>, R, Leftovers), JobError> {
        let not_found = || JobError::JobNotFound {
            namespace: ns.clone(),
            queue: queue.clone(),
            id: id.to_owned(),
        };
        let (q, answer, leftovers) = self
            .change(ns, queue, false, |st, now, fx| {
                let seq = st.find(id)?;
                f(st, seq, now, fx)
            })
            .map_err(|e| match e {
                JobError::QueueNotFound { .. } => not_found(),
                e => e,
            })?;
        Ok((q, answer?, leftovers))
    }
}
