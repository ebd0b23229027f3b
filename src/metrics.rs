//! Prometheus metrics: request counts and latencies recorded by the HTTP
//! layer, refused credentials by reason, and the store's and the jobs
//! engine's gauges and counters read at scrape time.

mod jobs;
mod store;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::auth::Failure;
use crate::backend::jobs::JobStore;
use crate::backend::Backend;
use jobs::JobsCollector;
use store::StoreCollector;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

/// Upper bounds of the latency buckets, in seconds: 50 µs to about 52 s (4×
/// apart), covering in-memory pops and long blocking waits. A last bucket,
/// `+Inf`, takes the rest.
const LATENCY_BOUNDS: [f64; 11] = {
    let mut bounds = [0.00005; 11];
    let mut i = 1;
    while i < bounds.len() {
        bounds[i] = bounds[i - 1] * 4.0;
        i += 1;
    }
    bounds
};

/// One request series as one thread recorded it.
#[derive(Clone, Copy, Debug)]
struct Series {
    labels: RequestLabels,
    requests: u64,
    latency_sum: f64,
    /// Requests by latency bucket (not cumulative); the last is `+Inf`.
    latency_buckets: [u64; LATENCY_BOUNDS.len() + 1],
}

impl Series {
    fn new(labels: RequestLabels) -> Series {
        Series {
            labels,
            requests: 0,
            latency_sum: 0.0,
            latency_buckets: [0; LATENCY_BOUNDS.len() + 1],
        }
    }

    fn observe(&mut self, seconds: f64) {
        self.requests += 1;
        self.latency_sum += seconds;
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.latency_buckets[bucket] += 1;
    }
}

/// The series one thread recorded for one `Metrics`. Only that thread
/// writes it; a scrape reads it. Shared counters and histograms had every
/// request on every worker write the same cache lines (and take the
/// histogram's lock), which then bounced between cores.
type Shard = Mutex<Vec<Series>>;

/// Every thread's shard of one `Metrics`, summed on a scrape.
type Shards = Mutex<Vec<Arc<Shard>>>;

/// A metric lock whose holder panicked still holds whole counts.
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How many `Metrics` (servers) a thread keeps the shard of at hand; a
/// thread serves one outside tests.
const SHARDS_AT_HAND: usize = 4;

thread_local! {
    /// This thread's shards, by the number of their `Metrics`.
    static MINE: RefCell<Vec<(u64, Arc<Shard>)>> = const { RefCell::new(Vec::new()) };
}

/// Numbers `Metrics` instances (from 1), so a thread's shard is never used
/// for another server of the same process (as in tests).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub struct Metrics {
    id: u64,
    registry: Registry,
    shards: Arc<Shards>,
    auth_failures: Arc<AuthFailures>,
}

/// Refused requests by [`Failure`], in the order of `Failure::ALL`. Only
/// refusals touch them, so plain shared atomics do.
type AuthFailures = [AtomicU64; Failure::ALL.len()];

impl Metrics {
    pub fn new(backend: Arc<dyn Backend>) -> Metrics {
        let mut registry = Registry::with_prefix("blobq");
        let shards = Arc::new(Shards::default());
        registry.register_collector(Box::new(RequestCollector(shards.clone())));
        registry.register_collector(Box::new(StoreCollector(backend)));
        let auth_failures = Arc::new(AuthFailures::default());
        registry.register_collector(Box::new(AuthCollector(auth_failures.clone())));
        Metrics {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            registry,
            shards,
            auth_failures,
        }
    }

    /// Counts one request refused for `failure`.
    pub fn auth_failure(&self, failure: Failure) {
        self.auth_failures[failure.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Adds the jobs engine's counts and counters to the exposition.
    pub fn add_jobs(&mut self, jobs: Arc<dyn JobStore>) {
        self.registry
            .register_collector(Box::new(JobsCollector(jobs)));
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
        MINE.with_borrow_mut(|mine| {
            let at = match mine.iter().position(|(id, _)| *id == self.id) {
                Some(at) => at,
                None => self.add_shard(mine),
            };
            let mut series = locked(&mine[at].1);
            let index = match series.iter().position(|s| s.labels == labels) {
                Some(index) => index,
                None => {
                    series.push(Series::new(labels));
                    series.len() - 1
                }
            };
            series[index].observe(elapsed.as_secs_f64());
        });
    }

    /// Makes and registers this thread's shard, on its first request;
    /// returns where it is in `mine`.
    fn add_shard(&self, mine: &mut Vec<(u64, Arc<Shard>)>) -> usize {
        let shard = Arc::new(Shard::default());
        locked(&self.shards).push(shard.clone());
        if mine.len() == SHARDS_AT_HAND {
            mine.remove(0);
        }
        mine.push((self.id, shard));
        mine.len() - 1
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

/// A histogram summed from the shards at scrape time.
#[derive(Debug)]
struct SummedHistogram {
    sum: f64,
    count: u64,
    /// `(upper bound, requests)`, not cumulative, `f64::MAX` for `+Inf`.
    buckets: Vec<(f64, u64)>,
}

impl EncodeMetric for SummedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Sums the threads' shards into the request counter and latency families.
#[derive(Debug)]
struct RequestCollector(Arc<Shards>);

impl Collector for RequestCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut requests: HashMap<RequestLabels, u64> = HashMap::new();
        let mut latency: HashMap<RouteLabels, SummedHistogram> = HashMap::new();
        let shards = locked(&self.0).clone();
        for shard in shards {
            for series in locked(&shard).iter() {
                *requests.entry(series.labels).or_default() += series.requests;
                let route = RouteLabels {
                    route: series.labels.route,
                };
                let summed = latency.entry(route).or_insert_with(|| SummedHistogram {
                    sum: 0.0,
                    count: 0,
                    buckets: LATENCY_BOUNDS
                        .iter()
                        .copied()
                        .chain([f64::MAX])
                        .map(|bound| (bound, 0))
                        .collect(),
                });
                summed.sum += series.latency_sum;
                summed.count += series.requests;
                for (total, n) in summed.buckets.iter_mut().zip(series.latency_buckets) {
                    total.1 += n;
                }
            }
        }
        // Series in a stable order, as the families printed them.
        let mut requests: Vec<_> = requests.into_iter().collect();
        requests.sort_by_key(|(l, _)| (l.route, l.method, l.status));
        let mut family = encoder.encode_descriptor(
            "http_requests",
            "HTTP requests by route, method and status",
            None,
            MetricType::Counter,
        )?;
        for (labels, n) in requests {
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        let mut latency: Vec<_> = latency.into_iter().collect();
        latency.sort_by_key(|(l, _)| l.route);
        let mut family = encoder.encode_descriptor(
            "http_request_duration_seconds",
            "Time from request to response headers, by route",
            None,
            MetricType::Histogram,
        )?;
        for (labels, histogram) in latency {
            histogram.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// `blobq_auth_failures_total{reason}`, every reason listed, zero or not.
#[derive(Debug)]
struct AuthCollector(Arc<AuthFailures>);

impl Collector for AuthCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "auth_failures",
            "Requests refused with 401 or 403, by reason",
            None,
            MetricType::Counter,
        )?;
        for failure in Failure::ALL {
            let n = self.0[failure.index()].load(Ordering::Relaxed);
            let labels = ReasonLabels {
                reason: failure.reason(),
            };
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
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
        Metrics::new(Arc::new(crate::store::Store::new(store).unwrap()))
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
        // Many series, interleaved between two servers on one thread.
        let statuses = 200..248;
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

    #[tokio::test]
    async fn the_exposition_sums_every_thread_and_buckets_each_latency() {
        let dir = tempfile::tempdir().unwrap();
        let m = Arc::new(metrics(dir.path()));
        let push = |m: &Metrics, micros: u64| {
            m.observe(
                "/qs/{ns}/{queue}",
                &http::Method::POST,
                202,
                Duration::from_micros(micros),
            )
        };
        // Three threads, and the first bound, a value between two bounds and
        // one above the last.
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for micros in [50, 100, 200_000_000] {
                        push(&m, micros);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = m.render();
        let line = |wanted: &str| {
            assert!(
                text.lines().any(|l| l == wanted),
                "no `{wanted}` in\n{text}"
            );
        };
        line(r#"blobq_http_requests_total{route="/qs/{ns}/{queue}",method="POST",status="202"} 9"#);
        line("# TYPE blobq_http_request_duration_seconds histogram");
        line(r#"blobq_http_request_duration_seconds_count{route="/qs/{ns}/{queue}"} 9"#);
        line(r#"blobq_http_request_duration_seconds_sum{route="/qs/{ns}/{queue}"} 600.00045"#);
        line(
            r#"blobq_http_request_duration_seconds_bucket{le="0.00005",route="/qs/{ns}/{queue}"} 3"#,
        );
        line(
            r#"blobq_http_request_duration_seconds_bucket{le="0.0002",route="/qs/{ns}/{queue}"} 6"#,
        );
        line(
            r#"blobq_http_request_duration_seconds_bucket{le="52.4288",route="/qs/{ns}/{queue}"} 6"#,
        );
        line(r#"blobq_http_request_duration_seconds_bucket{le="+Inf",route="/qs/{ns}/{queue}"} 9"#);
    }

    #[tokio::test]
    async fn refusals_are_counted_by_reason_every_reason_shown() {
        let dir = tempfile::tempdir().unwrap();
        let m = metrics(dir.path());
        m.auth_failure(Failure::Expired);
        m.auth_failure(Failure::Expired);
        m.auth_failure(Failure::Forbidden);
        let text = m.render();
        for (reason, n) in [("expired", 2), ("forbidden", 1), ("missing", 0)] {
            let line = format!(r#"blobq_auth_failures_total{{reason="{reason}"}} {n}"#);
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }

    #[tokio::test]
    async fn a_thread_serving_more_servers_than_it_keeps_at_hand_counts_each_right() {
        let dir = tempfile::tempdir().unwrap();
        let servers: Vec<Metrics> = (0..2 * SHARDS_AT_HAND)
            .map(|_| metrics(dir.path()))
            .collect();
        for round in 0..3 {
            for (i, m) in servers.iter().enumerate() {
                for _ in 0..=i + round {
                    m.observe("/healthz", &http::Method::GET, 200, Duration::ZERO);
                }
            }
        }
        for (i, m) in servers.iter().enumerate() {
            assert_eq!(requests(&m.render(), "/healthz", 200), (3 * i + 6) as f64);
        }
    }
}
