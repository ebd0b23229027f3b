//! Closing HTTP/2 connections nobody uses.
//!
//! HTTP/1 closes an idle keep-alive connection when its header read timeout
//! runs out; hyper's HTTP/2 has no such timeout, so a client could park
//! connections, each holding a slot under the connection cap, for ever.
//! Here each HTTP/2 connection counts its requests, and one on which no
//! request started and none was in progress for a whole period is told to
//! go away (a graceful close: a response still streaming finishes).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower::Service;

/// The requests of one connection: started, and answered or abandoned.
#[derive(Debug, Default)]
struct Counts {
    started: AtomicU64,
    ended: AtomicU64,
}

/// Watches one connection's requests.
#[derive(Clone, Debug)]
pub(super) struct IdleWatch {
    counts: Arc<Counts>,
    period: Duration,
}

impl IdleWatch {
    pub fn new(period: Duration) -> IdleWatch {
        IdleWatch {
            counts: Arc::default(),
            period,
        }
    }

    /// `service`, counting its requests for this watch.
    pub fn count<S>(&self, service: S) -> Counted<S> {
        Counted {
            inner: service,
            counts: self.counts.clone(),
        }
    }

    /// Completes once a whole period passed with no request started or in
    /// progress.
    pub async fn idle(&self) {
        let mut seen = u64::MAX;
        loop {
            tokio::time::sleep(self.period).await;
            // `ended` first: a request counted there was counted in
            // `started` before, so equal counts mean none in progress.
            let ended = self.counts.ended.load(Ordering::Acquire);
            let started = self.counts.started.load(Ordering::Acquire);
            if started == ended && started == seen {
                return;
            }
            seen = started;
        }
    }
}

/// A service whose requests an [`IdleWatch`] counts.
#[derive(Clone)]
pub(super) struct Counted<S> {
    inner: S,
    counts: Arc<Counts>,
}

impl<S, R> Service<R> for Counted<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = CountedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.counts.started.fetch_add(1, Ordering::AcqRel);
        CountedFuture {
            inner: self.inner.call(request),
            _ended: Ended(self.counts.clone()),
        }
    }
}

/// Counts its request as ended when dropped: answered, or abandoned by a
/// client that reset the stream.
struct Ended(Arc<Counts>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.ended.fetch_add(1, Ordering::AcqRel);
    }
}

pin_project! {
    pub(super) struct CountedFuture<F> {
        #[pin]
        inner: F,
        _ended: Ended,
    }
}

impl<F: Future> Future for CountedFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use tower::{service_fn, ServiceExt};

    use super::*;

    /// Whether `watch` reports idleness within `within`.
    async fn goes_idle(watch: &IdleWatch, within: Duration) -> bool {
        tokio::time::timeout(within, watch.idle()).await.is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_with_no_requests_is_idle_after_a_period_or_two() {
        let watch = IdleWatch::new(Duration::from_secs(10));
        assert!(!goes_idle(&watch, Duration::from_secs(5)).await);
        assert!(goes_idle(&watch, Duration::from_secs(21)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_progress_keeps_the_connection_and_its_end_lets_it_go() {
        let watch = IdleWatch::new(Duration::from_secs(10));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let slow = service_fn(|released: tokio::sync::oneshot::Receiver<()>| async move {
            let _ = released.await;
            Ok::<_, std::convert::Infallible>(())
        });
        let request = tokio::spawn(watch.count(slow).oneshot(released));
        tokio::task::yield_now().await;
        assert!(!goes_idle(&watch, Duration::from_secs(100)).await);
        release.send(()).unwrap();
        request.await.unwrap().unwrap();
        assert!(goes_idle(&watch, Duration::from_secs(21)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_that_keep_coming_keep_the_connection() {
        let watch = IdleWatch::new(Duration::from_secs(10));
        let quick = watch.count(service_fn(|()| async { Ok::<_, ()>(()) }));
        let traffic = async {
            for _ in 0..10 {
                quick.clone().oneshot(()).await.unwrap();
                tokio::time::sleep(Duration::from_secs(6)).await;
            }
        };
        tokio::select! {
            () = watch.idle() => panic!("closed while requests kept coming"),
            () = traffic => {}
        }
    }
}
