//! Job callbacks: when a job with an `X-Job-Callback` finishes, its
//! document is POSTed to that URL, retried with exponential backoff (with
//! jitter) on a failed connection, a timeout or an answer that is not 2xx,
//! until the retry period has passed since the first attempt.
//!
//! Nothing waits for a receiver. A finishing job only puts its delivery in
//! the waiting set (a leaf lock, no I/O); one task takes the due ones and
//! starts each attempt as its own task, at most `concurrency` at once, each
//! bounded by `timeout`. Past `max_pending` waiting deliveries the oldest
//! is dropped with a log line, so a dead receiver costs bounded memory.
//! Waiting deliveries are kept in this process only; in durable mode the
//! engine records each delivery (through `OnDelivered`) and sends the
//! undelivered ones again after a restart.
//!
//! With a signing key every attempt carries the Standard Webhooks headers
//! (`sign.rs`); `webhook-id` is the job's id, the same on every attempt,
//! so a receiver can tell a retry from a new callback. `https://` URLs are
//! sent over rustls (`tls.rs`).

mod sign;
mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use sign::SigningKey;

use crate::backend::jobs::{document, JobId, JobView};
use crate::backend::name::Name;

/// Told of each delivered callback: the job's namespace, queue and id.
pub(in crate::jobs) type OnDelivered = Arc<dyn Fn(&Name, &Name, JobId) + Send + Sync>;

/// The first retry waits about this long; each later one twice the last.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The callback settings in force.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CallbackConfig {
    /// URL prefixes an `X-Job-Callback` may start with; none: refused.
    pub allow: Vec<String>,
    pub key: Option<SigningKey>,
    /// Certificate authorities trusted for `https://` callbacks besides
    /// the system's (`--job-callback-ca-file`).
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// How long after its first attempt a callback is still retried.
    pub retry_for: Duration,
    /// Most deliveries waiting for an attempt.
    pub max_pending: usize,
    /// Most attempts in flight at once.
    pub concurrency: usize,
}

impl CallbackConfig {
    /// Whether `url` starts with one of the allowed prefixes.
    pub fn allows(&self, url: &str) -> bool {
        self.allow
            .iter()
            .any(|prefix| url.starts_with(prefix.as_str()))
    }
}

/// One callback to deliver.
struct Delivery {
    url: reqwest::Url,
    /// `webhook-id`: the job's id.
    id: Box<str>,
    /// Where the job is, for `on_delivered`.
    job: (Name, Name, JobId),
    body: Bytes,
    first_attempt: Option<Instant>,
    attempts: u32,
    /// When its next attempt is due: its place in `Waiting::by_due`.
    due: Instant,
}

/// Deliveries waiting for their next attempt, by arrival (to drop the
/// oldest) and by when they are due.
#[derive(Default)]
struct Waiting {
    next: u64,
    by_arrival: BTreeMap<u64, Delivery>,
    by_due: BTreeSet<(Instant, u64)>,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct CallbackCounters {
    pub delivered: AtomicU64,
    pub failures: AtomicU64,
    pub abandoned: AtomicU64,
}

/// The delivery service: a cheap-to-clone handle.
#[derive(Clone)]
pub struct Callbacks {
    inner: Arc<Inner>,
}

struct Inner {
    config: CallbackConfig,
    client: tls::HttpClient,
    waiting: Mutex<Waiting>,
    /// Wakes the runner when a delivery due earlier than all others arrives.
    wake: Notify,
    slots: Arc<Semaphore>,
    closing: CancellationToken,
    counters: CallbackCounters,
    on_delivered: Option<OnDelivered>,
}

fn locked(m: &Mutex<Waiting>) -> std::sync::MutexGuard<'_, Waiting> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Callbacks {
    /// Starts the service's task; call inside a tokio runtime.
    pub fn start(config: CallbackConfig, on_delivered: Option<OnDelivered>) -> Callbacks {
        let client = tls::client(&config);
        let callbacks = Callbacks {
            inner: Arc::new(Inner {
                slots: Arc::new(Semaphore::new(config.concurrency)),
                config,
                client,
                waiting: Mutex::new(Waiting::default()),
                wake: Notify::new(),
                closing: CancellationToken::new(),
                counters: CallbackCounters::default(),
                on_delivered,
            }),
        };
        tokio::spawn(callbacks.clone().run());
        callbacks
    }

    pub fn counters(&self) -> &CallbackCounters {
        &self.inner.counters
    }

    /// Queues the document of `job`, just finished, for `url`. Never waits.
    pub fn send(&self, url: &str, job: &JobView) {
        let Ok(url) = reqwest::Url::parse(url) else {
            // Checked at submit; a URL that no longer parses is not sent.
            tracing::warn!(job = %job.id, "a job callback URL did not parse; not sent");
            return;
        };
        let delivery = Delivery {
            url,
            id: job.id.to_string().into(),
            job: (job.namespace.clone(), job.queue.clone(), job.id),
            body: Bytes::from(document::to_json(job)),
            first_attempt: None,
            attempts: 0,
            due: Instant::now(),
        };
        self.inner.enqueue(delivery);
    }

    /// Stops delivering; what is still waiting is given up.
    pub fn close(&self) {
        self.inner.closing.cancel();
        let left = std::mem::take(&mut *locked(&self.inner.waiting))
            .by_arrival
            .len();
        if left > 0 {
            let c = &self.inner.counters;
            c.abandoned.fetch_add(left as u64, Ordering::Relaxed);
            tracing::info!(callbacks = left, "job callbacks not delivered at shutdown");
        }
    }

    /// Takes due deliveries and starts an attempt for each, as slots free.
    async fn run(self) {
        let inner = &self.inner;
        loop {
            let next = locked(&inner.waiting).by_due.first().map(|(at, _)| *at);
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                () = inner.closing.cancelled() => return,
                () = inner.wake.notified() => {}
                () = tokio::time::sleep_until(next.unwrap_or(far)) => {}
            }
            loop {
                let slot = tokio::select! {
                    () = inner.closing.cancelled() => return,
                    slot = inner.slots.clone().acquire_owned() => slot,
                };
                let Ok(slot) = slot else { return };
                let Some(delivery) = inner.take_due(Instant::now()) else {
                    break;
                };
                let inner = inner.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    let closing = inner.closing.clone();
                    tokio::select! {
                        () = closing.cancelled() => {}
                        () = inner.attempt(delivery) => {}
                    }
                });
            }
        }
    }
}

impl Inner {
    /// Adds a delivery, due at its `due`, dropping the oldest waiting one
    /// past the limit.
    fn enqueue(&self, delivery: Delivery) {
        let due = delivery.due;
        let mut waiting = locked(&self.waiting);
        while waiting.by_arrival.len() >= self.config.max_pending {
            let Some((seq, dropped)) = waiting.by_arrival.pop_first() else {
                break;
            };
            waiting.by_due.remove(&(dropped.due, seq));
            self.counters.abandoned.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                job = %dropped.id,
                limit = self.config.max_pending,
                "dropped the oldest waiting job callback: too many are waiting"
            );
        }
        let seq = waiting.next;
        waiting.next += 1;
        waiting.by_arrival.insert(seq, delivery);
        let earliest = waiting.by_due.first().is_none_or(|&(at, _)| due < at);
        waiting.by_due.insert((due, seq));
        drop(waiting);
        if earliest {
            self.wake.notify_one();
        }
    }

    fn take_due(&self, now: Instant) -> Option<Delivery> {
        let mut waiting = locked(&self.waiting);
        let &(at, seq) = waiting.by_due.first()?;
        if at > now {
            return None;
        }
        waiting.by_due.pop_first();
        waiting.by_arrival.remove(&seq)
    }

    /// One attempt; a failure is retried later or given up.
    async fn attempt(&self, mut delivery: Delivery) {
        let started = Instant::now();
        let first = *delivery.first_attempt.get_or_insert(started);
        delivery.attempts += 1;
        let why = match self.post(&delivery).await {
            Ok(()) => {
                self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                if let Some(told) = &self.on_delivered {
                    let (ns, queue, id) = &delivery.job;
                    told(ns, queue, *id);
                }
                return;
            }
            Err(why) => why,
        };
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        delivery.due = Instant::now() + backoff(delivery.attempts);
        if delivery.due > first + self.config.retry_for {
            self.counters.abandoned.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                job = %delivery.id,
                url = %delivery.url,
                attempts = delivery.attempts,
                error = %why,
                "gave up a job callback"
            );
            return;
        }
        tracing::debug!(job = %delivery.id, attempts = delivery.attempts, error = %why, "a job callback attempt failed");
        self.enqueue(delivery);
    }

    async fn post(&self, d: &Delivery) -> Result<(), String> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |t| t.as_secs());
        let uri: http::Uri = d.url.as_str().parse().map_err(|e| format!("{e}"))?;
        let mut request = http::Request::post(uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &*d.id)
            .header("webhook-timestamp", timestamp);
        if let Some(key) = &self.config.key {
            request = request.header("webhook-signature", key.sign(&d.id, timestamp, &d.body));
        }
        let request = request
            .body(http_body_util::Full::new(d.body.clone()))
            .map_err(|e| e.to_string())?;
        // A redirect is not followed: a callback goes where the job said.
        let answer = tokio::time::timeout(self.config.timeout, self.client.request(request))
            .await
            .map_err(|_| format!("no answer within {:?}", self.config.timeout))?
            .map_err(|e| format!("{e:#}"))?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {status}"))
        }
    }
}

/// The wait before attempt `attempts + 1`: doubling from `FIRST_BACKOFF`
/// up to `MAX_BACKOFF`, of which a random half is kept (so receivers that
/// came back are not met by every retry at once).
fn backoff(attempts: u32) -> Duration {
    let doubled = FIRST_BACKOFF.saturating_mul(1 << attempts.saturating_sub(1).min(16));
    let full = doubled.min(MAX_BACKOFF);
    let half = full / 2;
    let random = getrandom::u64().unwrap_or(0) % (half.as_millis() as u64 + 1);
    half + Duration::from_millis(random)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap() {
        for attempts in 1..40 {
            let full = FIRST_BACKOFF
                .saturating_mul(1 << (attempts - 1).min(16))
                .min(MAX_BACKOFF);
            let wait = backoff(attempts);
            assert!(wait >= full / 2 && wait <= full, "{attempts}: {wait:?}");
        }
    }

    fn config(max_pending: usize) -> CallbackConfig {
        CallbackConfig {
            allow: vec!["http://hooks.example.com/jobs/".into()],
            key: None,
            extra_roots: Vec::new(),
            timeout: Duration::from_secs(1),
            retry_for: Duration::from_secs(1),
            max_pending,
            concurrency: 1,
        }
    }

    #[tokio::test]
    async fn past_the_pending_limit_the_oldest_delivery_is_dropped() {
        let callbacks = Callbacks::start(config(2), None);
        let later = Instant::now() + Duration::from_secs(3600);
        for id in ["a", "b", "c"] {
            callbacks.inner.enqueue(Delivery {
                url: reqwest::Url::parse("http://hooks.example.com/jobs/x").unwrap(),
                id: id.into(),
                job: (
                    Name::parse("ns").unwrap(),
                    Name::parse("q").unwrap(),
                    JobId(0),
                ),
                body: Bytes::new(),
                first_attempt: None,
                attempts: 0,
                due: later,
            });
        }
        let waiting = locked(&callbacks.inner.waiting);
        let ids: Vec<&str> = waiting.by_arrival.values().map(|d| &*d.id).collect();
        assert_eq!(ids, ["b", "c"]);
        assert_eq!(waiting.by_due.len(), 2);
        drop(waiting);
        assert_eq!(callbacks.counters().abandoned.load(Ordering::Relaxed), 1);
        callbacks.close();
        assert_eq!(callbacks.counters().abandoned.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_prefix_allows_the_urls_it_begins() {
        let config = config(1);
        assert!(config.allows("http://hooks.example.com/jobs/done?x=1"));
        assert!(!config.allows("http://hooks.example.com/other"));
        assert!(!config.allows("http://hooks.example.com.evil.org/jobs/"));
    }
}
