//! Publishes handed to the NATS connection in bursts.
//!
//! Each push is its own HTTP request, in its own task, and a task that
//! hands a publish to `async-nats` wakes the connection's task, which the
//! runtime then runs next: left alone, the connection writes each publish
//! nearly as it comes, one write (and one read for JetStream) for a few
//! messages. Here the requests' tasks hand their publishes to one task
//! instead, which waits until the tasks ready to run have had their turn
//! and then passes everything handed in meanwhile to the connection at
//! once, as one client publishing in a loop would: the connection writes
//! them together. No publish waits for a timer: a lone one is passed on
//! after one turn.

use async_nats::jetstream::context::{Context, PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::HeaderMap;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

/// Where publishes are handed in; the task passing them on ends when this
/// is dropped.
#[derive(Debug)]
pub(super) struct Bursts {
    handed: mpsc::UnboundedSender<Publish>,
}

struct Publish {
    js: Context,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
    /// What the connection made of it: the acknowledgement to wait for.
    sent: oneshot::Sender<Result<PublishAckFuture, PublishError>>,
}

impl Bursts {
    /// Starts the task passing publishes on. Call inside a tokio runtime.
    pub fn start() -> Bursts {
        let (handed, taken) = mpsc::unbounded_channel();
        tokio::spawn(pass_on(taken));
        Bursts { handed }
    }

    /// Publishes through `js` with the burst it joins, answering with the
    /// acknowledgement to wait for, as `publish_with_headers` does.
    pub async fn publish(
        &self,
        js: &Context,
        subject: String,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<PublishAckFuture, PublishError> {
        let (sent, answer) = oneshot::channel();
        let publish = Publish {
            js: js.clone(),
            subject,
            headers,
            payload,
            sent,
        };
        if let Err(mpsc::error::SendError(alone)) = self.handed.send(publish) {
            // The runtime is stopping: publish alone.
            return (alone.js)
                .publish_with_headers(alone.subject, alone.headers, alone.payload)
                .await;
        }
        // Dropped unsent only as the runtime stops.
        answer
            .await
            .unwrap_or_else(|_| Err(PublishError::new(PublishErrorKind::Other)))
    }
}

/// Passes each burst on: the first publish handed in, then, after one turn
/// of the runtime, every other handed in by then.
async fn pass_on(mut taken: mpsc::UnboundedReceiver<Publish>) {
    let mut burst = Vec::new();
    while taken.recv_many(&mut burst, usize::MAX).await > 0 {
        tokio::task::yield_now().await;
        while let Ok(publish) = taken.try_recv() {
            burst.push(publish);
        }
        for publish in burst.drain(..) {
            let Publish {
                js,
                subject,
                headers,
                payload,
                sent,
            } = publish;
            // A request that went away still has its element published,
            // as one cut off after its publish would: unanswered, its
            // client cannot tell the two apart.
            let _ = sent.send(js.publish_with_headers(subject, headers, payload).await);
        }
    }
}
