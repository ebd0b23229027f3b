//! Telling every open connection that shutdown has begun.
//!
//! hyper-util's `GracefulShutdown` does it with one `watch` channel shared by
//! all connections, whose waiting futures take the channel's lock each time
//! they are polled: every poll of every connection, on every worker thread,
//! would meet there. Here each connection has a `oneshot` receiver of its
//! own, and shutdown drops the senders: a poll touches only that
//! connection's channel.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

/// The senders of the open connections' stop signals. Only the accept loop
/// touches it, so it needs no lock; a connection that ended leaves a closed
/// sender behind, pruned as connections come.
#[derive(Debug, Default)]
pub(super) struct StopSignals {
    senders: Vec<oneshot::Sender<()>>,
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
    /// A stop signal for a new connection.
    pub fn register(&mut self) -> Stop {
        if self.senders.len() >= 2 * self.kept.max(16) {
            self.senders.retain(|s| !s.is_closed());
            self.kept = self.senders.len();
        }
        let (sender, receiver) = oneshot::channel();
        self.senders.push(sender);
        Stop { receiver }
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
        let tasks: Vec<_> = (0..3).map(|_| connection(signals.register())).collect();
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
        let mut stop = std::pin::pin!(signals.register());
        for _ in 0..3 {
            assert!(futures_util::poll!(stop.as_mut()).is_pending());
        }
        signals.stop_all();
        assert!(futures_util::poll!(stop.as_mut()).is_ready());
    }

    #[tokio::test]
    async fn dropping_the_signals_stops_the_connections_too() {
        let mut signals = StopSignals::default();
        let task = connection(signals.register());
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(signals);
        assert!(ends_soon(task).await, "a connection outlived its server");
    }

    #[test]
    fn senders_of_ended_connections_are_pruned() {
        let mut signals = StopSignals::default();
        for _ in 0..10_000 {
            drop(signals.register()); // the connection ended
        }
        assert!(
            signals.sender_count() <= 32,
            "kept {}",
            signals.sender_count()
        );
        let open: Vec<Stop> = (0..100).map(|_| signals.register()).collect();
        for _ in 0..1000 {
            drop(signals.register());
        }
        assert!(
            signals.sender_count() >= open.len() && signals.sender_count() <= 2 * open.len() + 32
        );
    }
}
