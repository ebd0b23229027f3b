//! hyper's header-read timer, one per connection, kept across its requests.
//!
//! hyper arms a timer each time it starts reading a request head and drops
//! it once the head is in: with tokio's timer that is a new `Sleep` per
//! request, registered in the runtime's timer wheel when first polled and
//! taken out again under the wheel's lock, and a reference to the runtime
//! taken and given back. A connection instead keeps one `Sleep` and moves
//! its deadline on for each head: tokio moves a later deadline with one
//! atomic update, and the entry stays in the wheel until it fires or the
//! connection ends. When it fires while no head is being read (a long
//! blocking pop), the connection's task is woken once for nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

type Shared = Arc<Mutex<Pin<Box<tokio::time::Sleep>>>>;

/// The timer of one connection: give each connection its own.
#[derive(Clone)]
pub struct ConnectionTimer {
    sleep: Shared,
}

impl ConnectionTimer {
    /// Call inside a tokio runtime with its timer enabled.
    pub fn new() -> ConnectionTimer {
        ConnectionTimer {
            sleep: Arc::new(Mutex::new(Box::pin(tokio::time::sleep(Duration::ZERO)))),
        }
    }
}

impl Timer for ConnectionTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        lock(&self.sleep).as_mut().reset(deadline.into());
        Box::pin(HeaderSleep(self.sleep.clone()))
    }
}

fn lock(sleep: &Shared) -> std::sync::MutexGuard<'_, Pin<Box<tokio::time::Sleep>>> {
    sleep.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What hyper holds while it reads one head: the connection's `Sleep`.
struct HeaderSleep(Shared);

impl Future for HeaderSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        lock(&self.0).as_mut().poll(cx)
    }
}

impl Sleep for HeaderSleep {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits for `sleep`, at most `limit`; the time it took.
    async fn elapsed(sleep: Pin<Box<dyn Sleep>>, limit: Duration) -> Duration {
        let started = Instant::now();
        tokio::time::timeout(limit, sleep)
            .await
            .expect("the sleep ends in time");
        started.elapsed()
    }

    #[tokio::test]
    async fn each_head_gets_its_own_deadline_from_the_one_sleep() {
        let timer = ConnectionTimer::new();
        let limit = Duration::from_secs(5);
        // A head read in time: its sleep is dropped before the deadline,
        // and the next head's later deadline replaces it.
        let first = timer.sleep(Duration::from_millis(100));
        drop(first);
        let second = timer.sleep(Duration::from_millis(300));
        let took = elapsed(second, limit).await;
        assert!(took >= Duration::from_millis(290), "fired after {took:?}");
        // Once fired, the sleep is armed again for the next head.
        let third = timer.sleep_until(Instant::now() + Duration::from_millis(50));
        let took = elapsed(third, limit).await;
        assert!(took >= Duration::from_millis(45), "fired after {took:?}");
        // An earlier deadline than the one pending is kept too.
        let later = timer.sleep(Duration::from_secs(60));
        drop(later);
        let sooner = timer.sleep(Duration::from_millis(50));
        let took = elapsed(sooner, limit).await;
        assert!(took < Duration::from_secs(4), "fired after {took:?}");
    }

    #[tokio::test]
    async fn two_connections_time_out_apart() {
        let (a, b) = (ConnectionTimer::new(), ConnectionTimer::new());
        let short = a.sleep(Duration::from_millis(50));
        let long = b.sleep(Duration::from_secs(60));
        elapsed(short, Duration::from_secs(5)).await;
        let pending = tokio::time::timeout(Duration::from_millis(100), long).await;
        assert!(pending.is_err(), "the other connection's sleep fired");
    }
}
