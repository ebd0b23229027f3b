//! Telling every open connection that shutdown has begun, or one idle
//! connection that it must make room for a new client.
//!
//! hyper-util's `GracefulShutdown` does it with one `watch` channel shared by
//! all connections, whose waiting futures take the channel's lock each time
//! they are polled: every poll of every connection, on every worker thread,
//! would meet there. Here each connection has a `oneshot` receiver of its
//! own, and shutdown drops the senders: a poll touches only that
//! connection's channel. Dropping one sender closes that connection alone,
//! as gracefully: at the connection cap, the accept loop does so to the
//! connection idle the longest (its [`Activity`] says which).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::Arc;

use tokio::sync::oneshot;

use super::idle::Activity;

/// The senders of the open connections' stop signals, each with its
/// connection's activity. Only the accept loop touches it, so it needs no
/// lock; a connection that ended leaves a closed sender behind, pruned as
/// connections come.
#[derive(Debug, Default)]
pub(super) struct StopSignals {
    senders: Vec<(oneshot::Sender<()>, Arc<Activity>)>,
    /// Senders left after the last pruning: the next one waits until there
    /// are twice as many, so pruning costs O(1) per connection.
    kept: usize,
}

/// Resolves when shutdown begins (or the `StopSignals` is dropped).
#[derive(Debug)]
pub(super) struct Stop {
    receiver: oneshot::Receiver<()>,
}

impl StopSignals {
    /// A stop signal for a new connection, whose requests `activity` counts.
    pub fn register(&mut self, activity: Arc<Activity>) -> Stop {
        if self.senders.len() >= 2 * self.kept.max(16) {
            self.senders.retain(|(s, _)| !s.is_closed());
            self.kept = self.senders.len();
        }
        let (sender, receiver) = oneshot::channel();
        self.senders.push((sender, activity));
        Stop { receiver }
    }

    /// Signals the open connection that has been idle the longest, if one
    /// is: it closes at once (or after a response still streaming), and
    /// its slot under the cap goes to a new client. False if every open
    /// connection is busy. A pass over the connections, made only at the
    /// cap and only when a client is waiting.
    pub fn close_oldest_idle(&mut self) -> bool {
        let oldest = self
            .senders
            .iter()
            .enumerate()
            .filter(|(_, (sender, _))| !sender.is_closed())
            .filter_map(|(i, (_, activity))| activity.idle_since().map(|since| (since, i)))
            .min();
        match oldest {
            Some((_, i)) => {
                self.senders.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Signals every connection registered so far.
    pub fn stop_all(&mut self) {
        self.senders.clear();
        self.kept = 0;
    }

    #[cfg(test)]
    fn sender_count(&self) -> usize {
        self.senders.len()
    }
}

impl Future for Stop {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // A dropped sender is the signal: Err(RecvError) means "stop".
        Pin::new(&mut self.receiver).poll(cx).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A connection's task: waits for its stop signal or for ever.
    fn connection(stop: Stop) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            tokio::select! {
                () = stop => {}
                () = std::future::pending::<()>() => {}
            }
        })
    }

    async fn ends_soon(task: tokio::task::JoinHandle<()>) -> bool {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .is_ok_and(|ended| ended.is_ok())
    }

    #[tokio::test]
    async fn stop_all_wakes_every_registered_signal() {
        let mut signals = StopSignals::default();
        let tasks: Vec<_> = (0..3)
            .map(|_| connection(signals.register(Activity::new())))
            .collect();
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(tasks.iter().all(|t| !t.is_finished()), "stopped too early");
        signals.stop_all();
        for task in tasks {
            assert!(ends_soon(task).await, "a connection was never told to stop");
        }
    }

    #[tokio::test]
    async fn a_signal_is_pending_until_stop_all_even_when_polled_again() {
        let mut signals = StopSignals::default();
        let mut stop = std::pin::pin!(signals.register(Activity::new()));
        for _ in 0..3 {
            assert!(futures_util::poll!(stop.as_mut()).is_pending());
        }
        signals.stop_all();
        assert!(futures_util::poll!(stop.as_mut()).is_ready());
    }

    #[tokio::test]
    async fn dropping_the_signals_stops_the_connections_too() {
        let mut signals = StopSignals::default();
        let task = connection(signals.register(Activity::new()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(signals);
        assert!(ends_soon(task).await, "a connection outlived its server");
    }

    #[tokio::test]
    async fn the_connection_idle_the_longest_is_closed_first_and_busy_ones_never() {
        use tower::ServiceExt;
        let mut signals = StopSignals::default();
        let oldest = Activity::new();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (newer, busy) = (Activity::new(), Activity::new());
        // A request that never ends keeps `busy` busy.
        let never = tower::service_fn(|()| std::future::pending::<Result<(), ()>>());
        let held = tokio::spawn(busy.count(never).oneshot(()));
        let mut stop_newer = std::pin::pin!(signals.register(newer.clone()));
        let mut stop_busy = std::pin::pin!(signals.register(busy.clone()));
        let mut stop_oldest = std::pin::pin!(signals.register(oldest.clone()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        // `oldest` was made first, though registered last.
        assert!(oldest.idle_since() < newer.idle_since());
        assert!(signals.close_oldest_idle());
        assert!(futures_util::poll!(stop_oldest.as_mut()).is_ready());
        assert!(futures_util::poll!(stop_newer.as_mut()).is_pending());
        assert!(signals.close_oldest_idle());
        assert!(futures_util::poll!(stop_newer.as_mut()).is_ready());
        assert!(!signals.close_oldest_idle(), "the busy one stays");
        assert!(futures_util::poll!(stop_busy.as_mut()).is_pending());
        held.abort();
    }

    #[test]
    fn senders_of_ended_connections_are_pruned() {
        let mut signals = StopSignals::default();
        for _ in 0..10_000 {
            drop(signals.register(Activity::new())); // the connection ended
        }
        assert!(
            signals.sender_count() <= 32,
            "kept {}",
            signals.sender_count()
        );
        let open: Vec<Stop> = (0..100)
            .map(|_| signals.register(Activity::new()))
            .collect();
        for _ in 0..1000 {
            drop(signals.register(Activity::new()));
        }
        assert!(
            signals.sender_count() >= open.len() && signals.sender_count() <= 2 * open.len() + 32
        );
    }
}
