//! The store's part of the exposition: its gauges and counters, read from
//! the engine's totals on each scrape.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::backend::Backend;

/// Reads the store's totals on each scrape, so the hot path only bumps atomics.
#[derive(Clone)]
pub(super) struct StoreCollector(pub(super) Arc<dyn Backend>);

impl std::fmt::Debug for StoreCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreCollector")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StorageLabels {
    storage: &'static str,
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let t = self.0.totals();
        let gauges: [(&str, &str, u64); 3] = [
            ("queued_elements", "Elements waiting in queues", t.elements),
            (
                "leased_elements",
                "Elements out under a lease, not yet acknowledged",
                t.leased,
            ),
            ("waiting_consumers", "Consumers blocked in a pop", t.waiting),
        ];
        for (name, help, value) in gauges {
            let g = ConstGauge::new(value as i64);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let bytes = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "stored_bytes",
            "Bytes of blobs held, in memory or in spill files",
            None,
            bytes.metric_type(),
        )?;
        for (storage, value) in [("memory", t.memory_bytes), ("disk", t.disk_bytes)] {
            ConstGauge::new(value as i64)
                .encode(family.encode_family(&StorageLabels { storage })?)?;
        }
        let counters: [(&str, &str, u64); 4] = [
            ("pushes", "Elements pushed", t.pushes),
            ("pops", "Elements popped", t.pops),
            (
                "expirations",
                "Elements that expired unpopped",
                t.expirations,
            ),
            (
                "damaged_blobs",
                "Stored bodies found damaged when read back (their elements moved to the dead-letter queue)",
                t.damaged_blobs,
            ),
        ];
        for (name, help, value) in counters {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}
