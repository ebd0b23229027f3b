//! What a namespace costs in memory: under 1.5 KB for a namespace holding
//! one small element (its bytes included), so that a flood of names within
//! `--max-namespaces` cannot take more than the operator planned for.
//! Elements are pushed straight into the engine on one thread, and the heap
//! that thread holds is counted by an allocator that keeps one counter per
//! thread (the other tests of this binary run in other threads). Each
//! allocation is counted at the size class jemalloc (the server's
//! allocator) would give it, so the figure is what the server's resident
//! memory grows by, not merely what was asked for.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use blobq::backend::name::Name;
use blobq::backend::{Backend, IncomingBody, PushOptions};
use blobq::config::{Config, Settings};

struct PerThread;

thread_local! {
    /// Bytes this thread holds, at jemalloc's size classes.
    static HELD: Cell<i64> = const { Cell::new(0) };
}

/// The size class jemalloc serves a request of `size` bytes from: 8, then
/// steps of 16 up to 128, then four classes per doubling.
fn size_class(size: usize) -> i64 {
    let class = if size <= 8 {
        8
    } else if size <= 128 {
        size.div_ceil(16) * 16
    } else {
        let spacing = size.next_power_of_two() / 8;
        size.div_ceil(spacing) * spacing
    };
    class as i64
}

fn add(n: i64) {
    let _ = HELD.try_with(|held| held.set(held.get() + n));
}

// SAFETY: every call is passed to the system allocator unchanged; the
// counter only reads the sizes.
unsafe impl GlobalAlloc for PerThread {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(size_class(layout.size()));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-size_class(layout.size()));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(size_class(new_size) - size_class(layout.size()));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: PerThread = PerThread;

const NAMESPACES: usize = 20_000;
const ELEMENT: [u8; 100] = [7; 100];

/// Heap bytes per namespace held after pushing one 100-byte element into
/// each of `NAMESPACES` namespaces, with the server's settings changed by
/// `adjust`.
fn bytes_per_namespace(adjust: impl FnOnce(&mut Settings, &std::path::Path)) -> i64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::default();
        adjust(&mut settings, dir.path());
        let config = Config::from_settings(settings).unwrap();
        let mut store = config.store();
        store.spill_dir = dir.path().join("spill");
        let store = blobq::store::Store::new(store).unwrap();
        let queue = Name::parse("jobs").unwrap();
        let names: Vec<Name> = (0..NAMESPACES)
            .map(|i| Name::parse(&format!("tenant-{i:06}")).unwrap())
            .collect();
        let opts = || PushOptions {
            lifetime: 3600,
            ..PushOptions::default()
        };
        let body = || IncomingBody::from_bytes(&ELEMENT[..]);
        // Warm up whatever is made once (the namespace map's first shards,
        // the log's buffers) before counting.
        let warm_up = Name::parse("warm-up").unwrap();
        Backend::push(&store, &warm_up, &queue, body(), opts())
            .await
            .unwrap();
        let before = HELD.with(Cell::get);
        for ns in &names {
            Backend::push(&store, ns, &queue, body(), opts())
                .await
                .unwrap();
        }
        let held = HELD.with(Cell::get) - before;
        tokio::time::sleep(Duration::from_millis(1)).await;
        store.purge();
        held / NAMESPACES as i64
    })
}

/// The budget for a namespace holding one small element.
const BUDGET: i64 = 1500;

#[test]
fn a_namespace_holding_one_small_element_costs_under_the_budget_in_memory_mode() {
    let bytes = bytes_per_namespace(|_, _| {});
    eprintln!("memory mode: {bytes} bytes a namespace");
    assert!(bytes < BUDGET, "{bytes} bytes a namespace");
}

#[test]
fn a_namespace_holding_one_small_element_costs_under_the_budget_in_durable_mode() {
    let bytes = bytes_per_namespace(|s, dir| {
        s.data_dir = Some(dir.join("data"));
    });
    eprintln!("durable mode: {bytes} bytes a namespace");
    assert!(bytes < BUDGET, "{bytes} bytes a namespace");
}
