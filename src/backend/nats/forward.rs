//! Settling a lease through another node than the one that granted it.
//!
//! A lease lives in the table of the node that granted it (leases.rs), and
//! its receipt carries that node's tag in its first 32 bits (the rest is
//! random). A node asked to acknowledge, release or extend a lease it does
//! not hold forwards the request over core NATS to
//! `blobq._leases.{tag}`, where the granting node listens, and answers
//! with its reply. When no node listens there (it stopped or died), the
//! lease ended with it: `404`, and the element comes back within the ack
//! wait. `_leases` is no escaped name (names.rs), so no stream's subjects
//! take these messages.

use std::sync::Arc;
use std::time::Duration;

use async_nats::client::RequestErrorKind;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::connection::unavailable;
use super::Inner;
use crate::backend::name::Name;
use crate::backend::BackendError;

/// What a lease request asks.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Settle {
    Ack,
    Release,
    /// Restart the lease with this many milliseconds.
    Extend(u64),
}

#[derive(Serialize, Deserialize)]
struct Ask {
    settle: Settle,
    namespace: String,
    queue: String,
    receipt: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    /// Done; the seconds the lease now has, for an extension.
    Done(u64),
    NotFound,
    /// NATS failed the granting node; the words of its error.
    Failed(String),
}

/// Where node `tag` answers lease requests.
pub fn subject(tag: u32) -> String {
    format!("blobq._leases.{tag:08x}")
}

/// The tag of the node that granted `receipt`, if it is one.
pub fn node_of(receipt: &str) -> Option<u32> {
    uuid::Uuid::try_parse(receipt)
        .ok()
        .map(|u| (u.as_u128() >> 96) as u32)
}

impl Inner {
    /// Answers other nodes' requests about this node's leases, from the
    /// first connection until shutdown.
    pub(super) async fn serve_forwarded(self: Arc<Self>) {
        let client = tokio::select! {
            client = self.link.connected() => client,
            () = self.closing.cancelled() => return,
        };
        let mut requests = match client.subscribe(subject(self.leases.tag())).await {
            Ok(requests) => requests,
            Err(e) => {
                tracing::error!(error = %e, "cannot take lease requests from other nodes; their settlements of this node's leases will answer 404");
                return;
            }
        };
        loop {
            let request = tokio::select! {
                request = requests.next() => request,
                () = self.closing.cancelled() => return,
            };
            let Some(request) = request else { return };
            let Some(reply) = request.reply else { continue };
            let (inner, client) = (self.clone(), client.clone());
            tokio::spawn(async move {
                let answer = match serde_json::from_slice::<Ask>(&request.payload) {
                    Ok(ask) => inner.settle_asked(ask).await,
                    Err(_) => Answer::NotFound,
                };
                let json = serde_json::to_vec(&answer).unwrap_or_default();
                let _ = client.publish(reply, json.into()).await;
            });
        }
    }

    /// Settles a lease of this node as another node asked.
    async fn settle_asked(&self, ask: Ask) -> Answer {
        let (Ok(ns), Ok(queue)) = (Name::parse(&ask.namespace), Name::parse(&ask.queue)) else {
            return Answer::NotFound;
        };
        match self
            .settle_here(&ns, &queue, &ask.receipt, ask.settle)
            .await
        {
            Ok(seconds) => Answer::Done(seconds),
            Err(BackendError::LeaseNotFound { .. }) => Answer::NotFound,
            Err(e) => Answer::Failed(e.to_string()),
        }
    }

    /// Settles lease `receipt`: here if this node holds it, else through
    /// the node that granted it.
    pub(super) async fn settle(
        &self,
        ns: &Name,
        queue: &Name,
        receipt: &str,
        settle: Settle,
    ) -> Result<u64, BackendError> {
        let not_found = || BackendError::LeaseNotFound {
            namespace: ns.clone(),
            queue: queue.clone(),
            receipt: receipt.to_owned(),
        };
        let tag = node_of(receipt).ok_or_else(not_found)?;
        if tag == self.leases.tag() {
            return self.settle_here(ns, queue, receipt, settle).await;
        }
        let client = self
            .link
            .client()
            .ok_or_else(|| unavailable("not connected to NATS"))?;
        let ask = Ask {
            settle,
            namespace: ns.to_string(),
            queue: queue.to_string(),
            receipt: receipt.to_owned(),
        };
        let json = serde_json::to_vec(&ask).unwrap_or_default();
        let asked = tokio::time::timeout(
            self.config.request_timeout,
            client.request(subject(tag), json.into()),
        )
        .await;
        let reply = match asked {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) if e.kind() == RequestErrorKind::NoResponders => return Err(not_found()),
            Ok(Err(e)) => return Err(forward_failed(&e.to_string())),
            Err(_) => return Err(forward_failed("no answer in time")),
        };
        match serde_json::from_slice::<Answer>(&reply.payload) {
            Ok(Answer::Done(seconds)) => Ok(seconds),
            Ok(Answer::NotFound) => Err(not_found()),
            Ok(Answer::Failed(detail)) => Err(unavailable(&detail)),
            Err(_) => Err(forward_failed("an answer blobq cannot read")),
        }
    }
}

fn forward_failed(why: &str) -> BackendError {
    unavailable(&format!(
        "the node that granted the lease did not settle it ({why})"
    ))
}

/// How long a lease of `settle` asks for, if it is an extension.
pub fn extension(settle: Settle) -> Option<Duration> {
    match settle {
        Settle::Extend(ms) => Some(Duration::from_millis(ms)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_names_the_node_that_granted_it() {
        let u = uuid::Uuid::from_u128((0xdead_beef_u128 << 96) | 42);
        assert_eq!(node_of(&u.hyphenated().to_string()), Some(0xdead_beef));
        assert_eq!(node_of("not-a-receipt"), None);
        assert_eq!(subject(0xbeef), "blobq._leases.0000beef");
        let answer: Answer = serde_json::from_str(r#"{"done":7}"#).unwrap();
        assert!(matches!(answer, Answer::Done(7)));
    }
}
