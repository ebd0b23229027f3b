//! Telling every open connection that shutdown has begun.
//!
//! hyper-util's `GracefulShutdown` does it with one `watch` channel shared by
//! all connections, and a `watch` (or `Notify`) future that is still waiting
//! takes the channel's one lock each time it is polled: every poll of every
//! connection, on every worker thread, went through that lock. Here each
//! connection has a `oneshot` receiver of its own, whose poll is a load of
//! its own state, and shutdown drops the senders.

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
pub(super) type Stop = oneshot::Receiver<()>;

impl StopSignals {
    /// A stop signal for a new connection.
    pub fn register(&mut self) -> Stop {
        if self.senders.len() >= 2 * self.kept.max(16) {
            self.senders.retain(|s| !s.is_closed());
            self.kept = self.senders.len();
        }
        let (sender, stop) = oneshot::channel();
        self.senders.push(sender);
        stop
    }

    /// Signals every connection registered so far.
    pub fn stop_all(&mut self) {
        self.senders.clear();
        self.kept = 0;
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.senders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_all_resolves_every_registered_signal() {
        let mut signals = StopSignals::default();
        let mut stops: Vec<Stop> = (0..3).map(|_| signals.register()).collect();
        for stop in &mut stops {
            assert!(stop
                .try_recv()
                .is_err_and(|e| e == oneshot::error::TryRecvError::Empty));
        }
        signals.stop_all();
        for stop in stops {
            assert!(
                stop.await.is_err(),
                "a dropped sender resolves the receiver"
            );
        }
    }

    #[test]
    fn senders_of_ended_connections_are_pruned() {
        let mut signals = StopSignals::default();
        for _ in 0..10_000 {
            drop(signals.register()); // the connection ended
        }
        assert!(signals.held() <= 32, "held {}", signals.held());
        let open: Vec<Stop> = (0..100).map(|_| signals.register()).collect();
        for _ in 0..1000 {
            drop(signals.register());
        }
        assert!(signals.held() >= open.len() && signals.held() <= 2 * open.len() + 32);
    }
}
