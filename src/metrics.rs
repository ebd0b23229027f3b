//! Prometheus metrics: request counts and latencies recorded by the HTTP
//! layer, and the store's gauges and counters read at scrape time.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// How many series each thread keeps at hand (`RECENT`).
const RECENT_SERIES: usize = 16;

/// One request series' handles: clones share the family's values.
struct Series {
    labels: RequestLabels,
    requests: Counter,
    latency: Histogram,
}

/// The series this thread recorded lately, for the `Metrics` numbered
/// `owner`: finding one is a few compares, where the families cost two
/// SipHash lookups under their locks on every request.
struct Recent {
    owner: u64,
    series: Vec<Series>,
}

thread_local! {
    static RECENT: RefCell<Recent> = const {
        RefCell::new(Recent {
            owner: 0,
            series: Vec::new(),
        })
    };
}

/// Numbers `Metrics` instances (from 1), so a thread's `RECENT` is never
/// used for another server of the same process (as in tests).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub struct Metrics {
    id: u64,
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
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
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
        let labels = RequestLabels {
            route,
            method,
            status,
        };
        RECENT.with_borrow_mut(|recent| {
            if recent.owner != self.id {
                recent.owner = self.id;
                recent.series.clear();
            }
            let found = recent.series.iter().find(|s| s.labels == labels);
            let series = match found {
                Some(series) => series,
                None => {
                    if recent.series.len() == RECENT_SERIES {
                        recent.series.clear();
                    }
                    recent.series.push(Series {
                        requests: self.requests.get_or_create(&labels).clone(),
                        latency: self.latency.get_or_create(&RouteLabels { route }).clone(),
                        labels,
                    });
                    &recent.series[recent.series.len() - 1]
                }
            };
            series.requests.inc();
            series.latency.observe(elapsed.as_secs_f64());
        });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Settings};

    fn metrics(dir: &std::path::Path) -> Metrics {
        let config = Config::from_settings(Settings::default()).unwrap();
        let mut store = config.store();
        store.spill_dir = dir.to_owned();
        Metrics::new(Store::new(store).unwrap())
    }

    /// The request count of series `route`, `status` in the exposition.
    fn requests(text: &str, route: &str, status: u16) -> f64 {
        let series = format!(r#"route="{route}",method="GET",status="{status}"}}"#);
        text.lines()
            .find(|l| l.starts_with("blobq_http_requests_total{") && l.contains(&series))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    }

    #[tokio::test]
    async fn each_request_counts_once_in_its_series_and_its_own_server() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (metrics(dir.path()), metrics(dir.path()));
        // More series than a thread keeps at hand, interleaved between two
        // servers on one thread.
        let statuses = 200..(200 + 3 * RECENT_SERIES as u16);
        for round in 0..3u16 {
            for status in statuses.clone() {
                a.observe(
                    "/qs/{ns}/{queue}",
                    &http::Method::GET,
                    status,
                    Duration::ZERO,
                );
                if status % 2 == round % 2 {
                    b.observe(
                        "/qs/{ns}/{queue}",
                        &http::Method::GET,
                        status,
                        Duration::ZERO,
                    );
                }
            }
        }
        let (text_a, text_b) = (a.render(), b.render());
        for status in statuses {
            assert_eq!(requests(&text_a, "/qs/{ns}/{queue}", status), 3.0);
            let expected = if status % 2 == 0 { 2.0 } else { 1.0 };
            assert_eq!(requests(&text_b, "/qs/{ns}/{queue}", status), expected);
        }
        assert!(
            text_a.contains(
                r#"blobq_http_request_duration_seconds_count{route="/qs/{ns}/{queue}"} 144"#
            ),
            "{text_a}"
        );
    }
}
