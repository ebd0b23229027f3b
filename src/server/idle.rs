//! Which connections are idle: each counts its requests ([`Activity`]),
//! so that the accept loop can close the connection idle the longest when
//! a new client arrives at the cap, and HTTP/2 connections nobody uses are
//! closed ([`IdleWatch`]).
//!
//! HTTP/1 closes an idle keep-alive connection when its header read timeout
//! runs out; hyper's HTTP/2 has no such timeout, so a client could park
//! connections, each holding a slot under the connection cap, for ever.
//! An HTTP/2 connection on which no request started and none was in
//! progress for a whole period is told to go away (a graceful close: a
//! response still streaming finishes).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;
use tower::Service;

/// What `Activity::idle_since` counts from.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn millis_since_epoch() -> u64 {
    u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The requests of one connection: started, and answered or abandoned,
/// and since when it has had none in progress.
#[derive(Debug)]
pub(super) struct Activity {
    started: AtomicU64,
    ended: AtomicU64,
    /// Milliseconds from `EPOCH` to the last request's end, or to the
    /// connection's start before its first request.
    idle_since: AtomicU64,
}

impl Activity {
    /// A new connection's: idle since now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            started: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            idle_since: AtomicU64::new(millis_since_epoch()),
        })
    }

    /// Since when no request has been in progress, `None` while one is. A
    /// response's body may still be streaming: a graceful close lets it
    /// finish.
    pub fn idle_since(&self) -> Option<u64> {
        // `ended` first: a request counted there was counted in `started`
        // before, so equal counts mean none in progress.
        let since = self.idle_since.load(Ordering::Acquire);
        let ended = self.ended.load(Ordering::Acquire);
        let started = self.started.load(Ordering::Acquire);
        (started == ended).then_some(since)
    }

    /// `service`, counting its requests here.
    pub fn count<S>(self: &Arc<Self>, service: S) -> Counted<S> {
        Counted {
            inner: service,
            activity: self.clone(),
        }
    }
}

/// Watches one HTTP/2 connection's requests.
#[derive(Clone, Debug)]
pub(super) struct IdleWatch {
    activity: Arc<Activity>,
    period: Duration,
}

impl IdleWatch {
    pub fn new(activity: Arc<Activity>, period: Duration) -> IdleWatch {
        IdleWatch { activity, period }
    }

    /// Completes once a whole period passed with no request started or in
    /// progress.
    pub async fn idle(&self) {
        let mut seen = u64::MAX;
        loop {
            tokio::time::sleep(self.period).await;
            let started = self.activity.started.load(Ordering::Acquire);
            if self.activity.idle_since().is_some() && started == seen {
                return;
            }
            seen = started;
        }
    }
}

/// A service whose requests an [`Activity`] counts.
#[derive(Clone)]
pub(super) struct Counted<S> {
    inner: S,
    activity: Arc<Activity>,
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
        self.activity.started.fetch_add(1, Ordering::AcqRel);
        CountedFuture {
            inner: self.inner.call(request),
            _ended: Ended(self.activity.clone()),
        }
    }
}

/// Counts its request as ended when dropped: answered, or abandoned by a
/// client that reset the stream.
struct Ended(Arc<Activity>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0
            .idle_since
            .store(millis_since_epoch(), Ordering::Release);
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
        let watch = IdleWatch::new(Activity::new(), Duration::from_secs(10));
        assert!(!goes_idle(&watch, Duration::from_secs(5)).await);
        assert!(goes_idle(&watch, Duration::from_secs(21)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_progress_keeps_the_connection_and_its_end_lets_it_go() {
        let watch = IdleWatch::new(Activity::new(), Duration::from_secs(10));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let slow = service_fn(|released: tokio::sync::oneshot::Receiver<()>| async move {
            let _ = released.await;
            Ok::<_, std::convert::Infallible>(())
        });
        let request = tokio::spawn(watch.activity.count(slow).oneshot(released));
        tokio::task::yield_now().await;
        assert!(!goes_idle(&watch, Duration::from_secs(100)).await);
        release.send(()).unwrap();
        request.await.unwrap().unwrap();
        assert!(goes_idle(&watch, Duration::from_secs(21)).await);
    }

    #[tokio::test]
    async fn a_connection_is_idle_between_requests_since_the_last_one_ended() {
        let activity = Activity::new();
        let opened = activity.idle_since().expect("idle before any request");
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let slow = service_fn(|released: tokio::sync::oneshot::Receiver<()>| async move {
            let _ = released.await;
            Ok::<_, std::convert::Infallible>(())
        });
        let request = tokio::spawn(activity.count(slow).oneshot(released));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(activity.idle_since(), None, "busy while a request runs");
        release.send(()).unwrap();
        request.await.unwrap().unwrap();
        let since = activity.idle_since().expect("idle again");
        assert!(since >= opened + 10, "idle since the request ended");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_that_keep_coming_keep_the_connection() {
        let watch = IdleWatch::new(Activity::new(), Duration::from_secs(10));
        let quick = watch
            .activity
            .count(service_fn(|()| async { Ok::<_, ()>(()) }));
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
