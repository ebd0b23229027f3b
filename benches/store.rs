//! Micro-benchmarks of the embedded engine alone, through the storage seam
//! (`blobq::backend::Backend`): no HTTP.
//!
//! `cargo bench --bench store`. Under `cargo test --all-targets` Criterion
//! runs each benchmark once, as a smoke test.

use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use blobq::backend::name::Name;
use blobq::backend::{Backend, IncomingBody, PopOptions, PushOptions};
use blobq::config::{Config, Settings};
use blobq::store::Store;

fn data(wait: Duration) -> PopOptions {
    PopOptions {
        with_data: true,
        lease: None,
        wait,
    }
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    store: Store,
    ns: Name,
    queue: Name,
    body: Bytes,
    _spill: tempfile::TempDir,
}

/// A store with the default configuration on a current-thread runtime.
fn fixture() -> Fixture {
    let spill = tempfile::tempdir().expect("spill dir");
    let config = Config::from_settings(Settings {
        spill_dir: Some(spill.path().to_owned()),
        ..Settings::default()
    })
    .expect("default config");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = runtime
        .block_on(async { Store::new(config.store()) })
        .expect("store");
    Fixture {
        runtime,
        store,
        ns: Name::parse("bench").expect("name"),
        queue: Name::parse("q").expect("name"),
        body: Bytes::from(vec![b'x'; 100]),
        _spill: spill,
    }
}

impl Fixture {
    fn push(&self) {
        let body = IncomingBody::from_bytes(self.body.clone());
        let opts = PushOptions {
            lifetime: 3600,
            ..PushOptions::default()
        };
        self.runtime
            .block_on(self.store.push(&self.ns, &self.queue, body, opts))
            .expect("push");
    }

    fn pop(&self) {
        let popped = self
            .runtime
            .block_on(self.store.pop(&self.ns, &self.queue, data(Duration::ZERO)))
            .expect("pop");
        assert!(popped.is_some(), "queue ran empty");
    }
}

fn small_elements(c: &mut Criterion) {
    let mut group = c.benchmark_group("store 100 B");
    group.throughput(Throughput::Elements(1));

    let f = fixture();
    group.bench_function("push", |b| b.iter(|| f.push()));
    drop(f);

    let f = fixture();
    // Criterion runs a batch's setups before its routines: each batch pushes
    // what it then pops, and only the pops are timed.
    group.bench_function("pop", |b| {
        b.iter_batched(|| f.push(), |()| f.pop(), BatchSize::SmallInput)
    });
    drop(f);

    let f = fixture();
    group.bench_function("push+pop", |b| {
        b.iter(|| {
            f.push();
            f.pop();
        })
    });
    drop(f);

    // A consumer already waiting when the push comes: the hand-off path.
    let f = fixture();
    group.bench_function("blocking hand-off", |b| {
        b.iter(|| {
            f.runtime.block_on(async {
                let store = f.store.clone();
                let (ns, q) = (f.ns.clone(), f.queue.clone());
                let waiter =
                    tokio::spawn(
                        async move { store.pop(&ns, &q, data(Duration::from_secs(10))).await },
                    );
                // Let the waiter register before pushing.
                tokio::task::yield_now().await;
                let body = IncomingBody::from_bytes(f.body.clone());
                let opts = PushOptions {
                    lifetime: 3600,
                    ..PushOptions::default()
                };
                f.store
                    .push(&f.ns, &f.queue, body, opts)
                    .await
                    .expect("push");
                let popped = waiter.await.expect("join").expect("pop");
                assert!(popped.is_some(), "the waiter timed out");
            })
        })
    });
    group.finish();
}

criterion_group!(benches, small_elements);
criterion_main!(benches);
