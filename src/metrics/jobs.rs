//! The jobs engine's part of the exposition: jobs by namespace, queue and
//! state, and the counters of job events, read from the engine on each
//! scrape.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::backend::jobs::{JobState, JobStore};

/// Reads the jobs engine's counts and counters on each scrape.
pub(super) struct JobsCollector(pub(super) Arc<dyn JobStore>);

impl std::fmt::Debug for JobsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobsCollector")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    namespace: String,
    queue: String,
    state: &'static str,
}

impl Collector for JobsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "jobs",
            "Jobs by namespace, queue and state",
            None,
            MetricType::Gauge,
        )?;
        for queue in self.0.job_counts() {
            for state in JobState::ALL {
                let labels = JobLabels {
                    namespace: queue.namespace.as_str().to_owned(),
                    queue: queue.queue.as_str().to_owned(),
                    state: state.as_str(),
                };
                ConstGauge::new(queue.counts[state.index()] as i64)
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        let t = self.0.job_totals();
        let counters: [(&str, &str, u64); 8] = [
            ("jobs_submitted", "Jobs submitted", t.submitted),
            ("job_claims", "Jobs claimed by a worker", t.claims),
            ("job_completions", "Jobs that succeeded", t.completions),
            (
                "job_failures",
                "Jobs that failed (worker failures, abandoned, expired)",
                t.failures,
            ),
            (
                "job_cancellations",
                "Jobs cancelled by a client",
                t.cancellations,
            ),
            (
                "job_callbacks_delivered",
                "Job callbacks a receiver accepted",
                t.callbacks_delivered,
            ),
            (
                "job_callback_failures",
                "Job callback attempts that failed (no connection, a timeout, an answer not 2xx)",
                t.callback_failures,
            ),
            (
                "job_callbacks_abandoned",
                "Job callbacks given up: retried for the whole retry period, dropped past the pending limit, or left at shutdown",
                t.callbacks_abandoned,
            ),
        ];
        for (name, help, value) in counters {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}
