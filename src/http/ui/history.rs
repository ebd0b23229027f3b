//! The recent past of the server-wide totals, for the dashboard's charts
//! to draw minutes of rates the moment the page opens: a ring of samples
//! taken by one background task at a fixed interval. A request only copies
//! the ring; no sample is taken on behalf of a request.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::time::MissedTickBehavior;

use super::UiConfig;
use crate::backend::stats::TotalsSnapshot;
use crate::http::App;

/// The totals at one moment. Counters are cumulative: the page derives
/// rates from two successive samples.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Sample {
    /// When it was taken, in milliseconds since the Unix epoch.
    pub t: u64,
    #[serde(flatten)]
    pub totals: TotalsSnapshot,
    /// The jobs engine's counters, where the server serves jobs.
    pub jobs: Option<JobSample>,
}

/// The jobs counters a chart shows.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct JobSample {
    pub submitted: u64,
    pub completions: u64,
    pub failures: u64,
}

/// A bounded ring of samples, oldest first.
pub struct History {
    config: UiConfig,
    samples: Mutex<VecDeque<Sample>>,
}

/// `GET /ui/history`.
#[derive(Serialize)]
pub struct HistoryDoc {
    /// The server's clock when answering (ms since the epoch), so that a
    /// page can place the samples on its own clock.
    pub now: u64,
    pub interval_ms: u64,
    /// The most samples kept.
    pub capacity: usize,
    pub samples: Vec<Sample>,
}

impl History {
    pub fn new(config: UiConfig) -> History {
        History {
            config,
            // Allocated once, up to a size that costs little if unused.
            samples: Mutex::new(VecDeque::with_capacity(config.history_samples.min(1024))),
        }
    }

    /// Adds `sample`, dropping the oldest past the capacity.
    pub fn record(&self, sample: Sample) {
        if self.config.history_samples == 0 {
            return;
        }
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        while samples.len() >= self.config.history_samples {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// The samples kept, as the history endpoint answers them.
    pub fn document(&self) -> HistoryDoc {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        HistoryDoc {
            now: now_ms(),
            interval_ms: self.config.history_interval.as_millis() as u64,
            capacity: self.config.history_samples,
            samples: samples.iter().copied().collect(),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The totals of `app` now.
fn sample(app: &App) -> Sample {
    let jobs = app.jobs.as_ref().map(|jobs| {
        let t = jobs.store.job_totals();
        JobSample {
            submitted: t.submitted,
            completions: t.completions,
            failures: t.failures,
        }
    });
    Sample {
        t: now_ms(),
        totals: app.backend.totals(),
        jobs,
    }
}

/// Samples `app`'s totals into its history at the configured interval, on
/// a task that ends once the app is gone. Call inside a tokio runtime.
pub fn sample_in_background(app: &Arc<App>) {
    let config = app.dashboard.config();
    if config.history_samples == 0 {
        return;
    }
    let app: Weak<App> = Arc::downgrade(app);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(config.history_interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(app) = app.upgrade() else { return };
            app.dashboard.history.record(sample(&app));
        }
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(t: u64) -> Sample {
        Sample {
            t,
            totals: TotalsSnapshot::default(),
            jobs: None,
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_samples_up_to_its_capacity() {
        let history = History::new(UiConfig {
            history_interval: Duration::from_millis(10),
            history_samples: 3,
        });
        for t in 1..=5 {
            history.record(at(t));
        }
        let doc = history.document();
        let kept: Vec<u64> = doc.samples.iter().map(|s| s.t).collect();
        assert_eq!(kept, [3, 4, 5]);
        assert_eq!((doc.capacity, doc.interval_ms), (3, 10));
    }

    #[test]
    fn a_capacity_of_zero_keeps_nothing() {
        let history = History::new(UiConfig {
            history_interval: Duration::from_millis(10),
            history_samples: 0,
        });
        history.record(at(1));
        assert!(history.document().samples.is_empty());
    }

    #[test]
    fn a_sample_serializes_flat_with_its_jobs() {
        let mut s = at(7);
        s.totals.pushes = 2;
        s.jobs = Some(JobSample {
            submitted: 1,
            completions: 0,
            failures: 0,
        });
        let v = serde_json::to_value(s).unwrap();
        assert_eq!(v["t"], 7);
        assert_eq!(v["pushes"], 2);
        assert_eq!(v["jobs"]["submitted"], 1);
        assert!(v.get("damaged_blobs").is_none());
    }
}
