//! Prometheus metrics: request counts and latencies recorded by the HTTP
//! layer, and the store's gauges and counters read at scrape time.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::store::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
}

impl Metrics {
    pub fn new(store: Store) -> Metrics {
        let mut registry = Registry::with_prefix("blobq");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 50 µs to ~100 s: covers in-memory pops and long blocking waits.
            Histogram::new(exponential_buckets(0.00005, 4.0, 11))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response headers, by route",
            latency.clone(),
        );
        registry.register_collector(Box::new(StoreCollector(store)));
        Metrics {
            registry,
            requests,
            latency,
        }
    }

    /// Records one answered request under its route template.
    pub fn observe(
        &self,
        route: &'static str,
        method: &http::Method,
        status: u16,
        elapsed: Duration,
    ) {
        let method = match *method {
            http::Method::GET => "GET",
            http::Method::POST => "POST",
            http::Method::PUT => "PUT",
            http::Method::DELETE => "DELETE",
            http::Method::HEAD => "HEAD",
            _ => "OTHER",
        };
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "could not encode metrics");
        }
        out
    }
}

/// Reads the store's totals on each scrape, so the hot path only bumps atomics.
#[derive(Clone)]
struct StoreCollector(Store);

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
        let counters: [(&str, &str, u64); 3] = [
            ("pushes", "Elements pushed", t.pushes),
            ("pops", "Elements popped", t.pops),
            (
                "expirations",
                "Elements that expired unpopped",
                t.expirations,
            ),
        ];
        for (name, help, value) in counters {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}
