//! `scale jetstream`: JetStream used directly, the yardstick of the NATS
//! backend's cases (`bench/nats.sh`): what blobq adds over a client that
//! publishes and fetches itself, on the same cluster with the same number
//! of operations in flight.
//!
//! ```text
//! cargo bench --bench scale -- jetstream ready --servers URL[,URL...]
//! cargo bench --bench scale -- jetstream drop --servers URL --prefix PREFIX
//! cargo bench --bench scale -- jetstream load --servers URL[,URL...] --size BYTES [--seconds 5] [--inflight 64] [--replicas 3] [--prefill-bytes N] [--stream NAME]
//! cargo bench --bench scale -- jetstream lead --servers URL --stream NAME [--consumer NAME]
//! ```
//!
//! `ready` waits until the cluster can make a replicated stream (its
//! JetStream has a leader), `drop` deletes the streams whose names start
//! with a prefix (blobq's `BLOBQ_` streams between cases), `lead` moves a
//! stream's leader (and its consumer's) to the server given. `load` makes a
//! stream as blobq makes a namespace's (work-queue retention, file storage,
//! per-message TTLs, `--replicas` copies) with one durable pull consumer
//! with explicit acknowledgements, both led from the first server, then
//! over one connection to each server
//! given, each with `--inflight` operations at once, for `--seconds` each:
//! - bare publishes (no headers), each waited for until JetStream
//!   acknowledges it: the "push ... bare" row;
//! - publishes as the issue's mapping has blobq publish an element: with a
//!   unique `Nats-Msg-Id` (de-duplication) and a `Nats-TTL` (its
//!   lifetime), waited for the same way: the "push" row, blobq's yardstick;
//! - then, with the stream topped up to twice what the pops could take at
//!   the publishes' rate, pops: a fetch of one message, then its
//!   acknowledgement waited for (double ack), as a blobq pop does.
//!
//! It prints a row for each (`cases.rs`'s format) and deletes the stream.
//! A pop that finds the stream empty stops the run with an error: the rate
//! would no longer be that of pops.

use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::jetstream::Context;
use futures_util::StreamExt as _;

use super::*;
use cases::row;

/// The subject the load publishes on, in its own stream.
const SUBJECT: &str = "scale.jetstream";
/// How long `ready` keeps trying.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// Longest wait for one publish's or acknowledgement's answer.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// The `Nats-TTL` of a published element: blobq's default lifetime.
const LIFETIME: &str = "3600";

/// How the load publishes.
#[derive(Clone, Copy)]
enum Publish {
    /// The payload alone.
    Bare,
    /// With the headers JetStream acts on for a blobq element: a unique
    /// message id to de-duplicate by, and a TTL.
    AsElement,
}

impl Publish {
    async fn send(self, js: &Context, body: Bytes) -> Result<()> {
        let ack = match self {
            Publish::Bare => js.publish(SUBJECT, body).await?,
            Publish::AsElement => {
                let mut h = async_nats::HeaderMap::new();
                let id = uuid::Uuid::new_v4().to_string();
                h.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
                h.insert(async_nats::header::NATS_MESSAGE_TTL, LIFETIME);
                js.publish_with_headers(SUBJECT, h, body).await?
            }
        };
        ack.await?;
        Ok(())
    }
}

pub(crate) async fn jetstream_command(args: &[String]) -> Result<()> {
    let flags = Flags::parse(args);
    let servers: Vec<String> = flags
        .get("servers")
        .ok_or("jetstream: --servers URL[,URL...]")?
        .split(',')
        .map(str::to_owned)
        .collect();
    match flags.positional.first().map(String::as_str) {
        Some("ready") => ready(&servers).await,
        Some("drop") => drop_streams(&servers[0], flags.get("prefix").unwrap_or("BLOBQ_")).await,
        Some("load") => load(&servers, &flags).await,
        Some("lead") => {
            let stream = flags.get("stream").ok_or("jetstream lead: --stream NAME")?;
            let js = connect(&servers[0]).await?;
            lead_from_here(&js, stream, flags.get("consumer")).await
        }
        _ => Err("usage: scale jetstream ready|drop|load|lead --servers URL[,URL...] ...".into()),
    }
}

/// A JetStream context on one connection to `url` alone.
async fn connect(url: &str) -> Result<Context> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await?;
    Ok(async_nats::jetstream::new(client))
}

/// The stream `load` uses, with blobq's settings for a namespace.
fn stream_config(name: &str, replicas: usize) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![SUBJECT.to_owned()],
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        num_replicas: replicas,
        allow_message_ttl: true,
        ..stream::Config::default()
    }
}

/// Moves the leader of `stream` (and of its `consumer`, if given) to the
/// server `js` is connected to, by asking the current one to step down
/// in its favour until it leads. JetStream elects a new stream's leader
/// among its replicas at random, and a publish to a leader on another
/// server takes one more hop: blobq's streams and the yardstick's are
/// both led from the server their clients talk to, so that a case
/// compares the work done, not where an election fell.
async fn lead_from_here(js: &Context, stream: &str, consumer: Option<&str>) -> Result<()> {
    let here = js.client().server_info().server_name;
    let preferred = serde_json::json!({ "placement": { "preferred": here } });
    let started = Instant::now();
    loop {
        let mut info = js.get_stream(stream).await?;
        let stream_leader = info
            .info()
            .await?
            .cluster
            .as_ref()
            .and_then(|c| c.leader.clone());
        let consumer_leader = match consumer {
            Some(name) => {
                let mut c: PullConsumer = info.get_consumer(name).await?;
                c.info()
                    .await?
                    .cluster
                    .as_ref()
                    .and_then(|c| c.leader.clone())
            }
            None => Some(here.clone()),
        };
        // A server alone (no cluster) leads everything.
        let stream_here = stream_leader.as_deref().is_none_or(|l| l == here);
        let consumer_here = consumer_leader.as_deref().is_none_or(|l| l == here);
        if stream_here && consumer_here {
            return Ok(());
        }
        if started.elapsed() > READY_WITHIN {
            return Err(format!("jetstream: {stream} is still led by {stream_leader:?} (consumer {consumer_leader:?}), not {here}").into());
        }
        let subject = match (stream_here, consumer) {
            (false, _) => format!("STREAM.LEADER.STEPDOWN.{stream}"),
            (true, Some(name)) => format!("CONSUMER.LEADER.STEPDOWN.{stream}.{name}"),
            (true, None) => unreachable!("the stream leads here"),
        };
        // The answer may be an error while an election runs: asked again.
        let _: std::result::Result<serde_json::Value, _> = js.request(subject, &preferred).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Tries to make (and then deletes) a stream of three replicas until the
/// cluster manages it.
async fn ready(servers: &[String]) -> Result<()> {
    let started = Instant::now();
    let name = "SCALE_READY";
    loop {
        let attempt = async {
            let js = connect(&servers[0]).await?;
            js.get_or_create_stream(stream_config(name, servers.len().min(3)))
                .await?;
            js.delete_stream(name).await?;
            Ok::<_, Error>(())
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) if started.elapsed() > READY_WITHIN => {
                return Err(format!("jetstream: the cluster never made a stream: {e}").into())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

async fn drop_streams(server: &str, prefix: &str) -> Result<()> {
    let js = connect(server).await?;
    let mut names = js.stream_names();
    let mut doomed = Vec::new();
    while let Some(name) = names.next().await {
        let name = name?;
        if name.starts_with(prefix) {
            doomed.push(name);
        }
    }
    for name in doomed {
        js.delete_stream(&name).await?;
    }
    Ok(())
}

/// What one phase of the load measured.
struct Phase {
    rate: f64,
    latencies: Histogram<u64>,
}

impl Phase {
    fn print(&self, case: &str, note: &str) {
        let ms = |q: f64| Some(self.latencies.value_at_quantile(q) as f64 / 1000.0);
        row(case, Some(self.rate), ms(0.5), ms(0.99), note);
    }
}

async fn load(servers: &[String], flags: &Flags) -> Result<()> {
    let size = flags.num("size", 100)?;
    let seconds = Duration::from_secs(flags.num("seconds", 5)?);
    let inflight = flags.num("inflight", CONNECTIONS as u64)? as usize;
    let replicas = flags.num("replicas", 3)? as usize;
    let budget = flags.num("prefill-bytes", 2 << 30)?;
    let name = flags.get("stream").unwrap_or("SCALE_DIRECT").to_owned();
    let mut links = Vec::new();
    for url in servers {
        links.push(connect(url).await?);
    }
    let stream = links[0]
        .get_or_create_stream(stream_config(&name, replicas))
        .await?;
    let consumer_config = pull::Config {
        durable_name: Some("pop".to_owned()),
        ack_policy: AckPolicy::Explicit,
        ..pull::Config::default()
    };
    stream
        .get_or_create_consumer("pop", consumer_config)
        .await?;
    lead_from_here(&links[0], &name, Some("pop")).await?;
    let body = Bytes::from(vec![b'x'; size as usize]);
    let label = if size % 1024 == 0 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    };
    let result = async {
        let note = match links.len() {
            1 => format!("1 connection, {inflight} in flight"),
            n => format!("{n} connections, {inflight} in flight each"),
        };
        let bare = publishes(&links, &body, Publish::Bare, inflight, Some(seconds), None).await?;
        bare.print(&format!("push {label} bare"), &note);
        let push = publishes(
            &links,
            &body,
            Publish::AsElement,
            inflight,
            Some(seconds),
            None,
        )
        .await?;
        push.print(
            &format!("push {label}"),
            &format!("{note}; message id and TTL"),
        );
        // Topped up to twice what pops at the publishes' rate would take.
        let want = ((2.0 * push.rate * seconds.as_secs_f64()) as u64).min(budget / size.max(1));
        let have = queued(&links[0], &name).await?;
        if want > have {
            publishes(
                &links,
                &body,
                Publish::Bare,
                inflight,
                None,
                Some(want - have),
            )
            .await?;
        }
        let mut consumers = Vec::new();
        for js in &links {
            consumers.push(
                js.get_consumer_from_stream::<pull::Config, _, _>("pop", &name)
                    .await?,
            );
        }
        let pop = pops(&consumers, inflight, seconds).await?;
        pop.print(
            &format!("pop {label}"),
            &format!("{note}; fetch of one, double ack"),
        );
        Ok::<_, Error>(())
    }
    .await;
    links[0].delete_stream(&name).await?;
    result
}

/// Messages in stream `name`.
async fn queued(js: &Context, name: &str) -> Result<u64> {
    Ok(js.get_stream(name).await?.info().await?.state.messages)
}

/// Publishes of `body`, `inflight` at a time on each connection, each
/// waited for until acknowledged: for `time`, or `count` in all.
async fn publishes(
    links: &[Context],
    body: &Bytes,
    how: Publish,
    inflight: usize,
    time: Option<Duration>,
    count: Option<u64>,
) -> Result<Phase> {
    let left = Arc::new(AtomicU64::new(count.unwrap_or(u64::MAX)));
    let started = Instant::now();
    let until = time.map(|t| started + t);
    let mut tasks = Vec::new();
    for js in links {
        for _ in 0..inflight {
            let (js, body, left) = (js.clone(), body.clone(), left.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Histogram::<u64>::new(3)?;
                while until.is_none_or(|u| Instant::now() < u)
                    && left
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok()
                {
                    let sent = Instant::now();
                    tokio::time::timeout(OPERATION_TIMEOUT, how.send(&js, body.clone()))
                        .await
                        .map_err(|_| "jetstream: no publish acknowledgement in time")??;
                    latencies.record(sent.elapsed().as_micros() as u64)?;
                }
                Ok::<_, Error>(latencies)
            }));
        }
    }
    finish(tasks, started).await
}

/// Pops, `inflight` at a time on each connection, for `time`: a fetch of
/// one message and its acknowledgement, waited for.
async fn pops(consumers: &[PullConsumer], inflight: usize, time: Duration) -> Result<Phase> {
    let started = Instant::now();
    let until = started + time;
    let mut tasks = Vec::new();
    for consumer in consumers {
        for _ in 0..inflight {
            let consumer = consumer.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Histogram::<u64>::new(3)?;
                while Instant::now() < until {
                    let sent = Instant::now();
                    let pop = async {
                        let mut batch = consumer.fetch().max_messages(1).messages().await?;
                        match batch.next().await {
                            Some(msg) => {
                                msg?.double_ack().await?;
                                Ok::<_, Error>(true)
                            }
                            None => Ok(false),
                        }
                    };
                    let popped = tokio::time::timeout(OPERATION_TIMEOUT, pop)
                        .await
                        .map_err(|_| "jetstream: no fetch or acknowledgement in time")??;
                    if !popped {
                        return Err(
                            "jetstream: a pop found the stream empty (prefill too small)".into(),
                        );
                    }
                    latencies.record(sent.elapsed().as_micros() as u64)?;
                }
                Ok::<_, Error>(latencies)
            }));
        }
    }
    finish(tasks, started).await
}

/// Every task's latencies together, and the operations per second over
/// the time until the last task ended.
async fn finish(
    tasks: Vec<tokio::task::JoinHandle<Result<Histogram<u64>>>>,
    started: Instant,
) -> Result<Phase> {
    let mut latencies = Histogram::<u64>::new(3)?;
    for t in tasks {
        latencies.add(t.await??)?;
    }
    Ok(Phase {
        rate: latencies.len() as f64 / started.elapsed().as_secs_f64(),
        latencies,
    })
}
