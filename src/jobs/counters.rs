//! Job events counted since start, for `/metrics`: kept the same way by
//! every jobs engine (embedded and NATS).

use std::sync::atomic::{AtomicU64, Ordering};

use super::callback::Callbacks;
use crate::backend::jobs::JobTotals;

/// This node's counts of what happened to jobs.
#[derive(Default)]
pub struct JobCounters {
    pub submitted: AtomicU64,
    pub claims: AtomicU64,
    pub completions: AtomicU64,
    pub failures: AtomicU64,
    pub cancellations: AtomicU64,
}

impl JobCounters {
    /// The counts so far, with `callbacks`' deliveries if callbacks are sent.
    pub fn totals(&self, callbacks: Option<&Callbacks>) -> JobTotals {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut totals = JobTotals {
            submitted: read(&self.submitted),
            claims: read(&self.claims),
            completions: read(&self.completions),
            failures: read(&self.failures),
            cancellations: read(&self.cancellations),
            ..JobTotals::default()
        };
        if let Some(callbacks) = callbacks {
            let c = callbacks.counters();
            totals.callbacks_delivered = read(&c.delivered);
            totals.callback_failures = read(&c.failures);
            totals.callbacks_abandoned = read(&c.abandoned);
        }
        totals
    }
}
