//! What a job costs in memory: the budget is 1 KiB a job besides
//! its bytes. Jobs are submitted straight into the engine on one thread,
//! and the heap that thread's allocations hold is measured by a counting
//! allocator that keeps one counter per thread, so the tests running at
//! the same time in other threads do not disturb the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use blobq::backend::jobs::{JobStore, SubmitOptions};
use blobq::backend::name::Name;
use blobq::backend::{IncomingBody, MetaInput};
use blobq::config::{Config, Settings};
use blobq::jobs::Jobs;

struct PerThread;

thread_local! {
    /// Bytes this thread has allocated and not freed (freeing memory
    /// another thread allocated counts here too, which a single-threaded
    /// measurement never does).
    static HELD: Cell<i64> = const { Cell::new(0) };
}

fn add(n: i64) {
    let _ = HELD.try_with(|held| held.set(held.get() + n));
}

// SAFETY: every call is passed to the system allocator unchanged; the
// counter only reads the sizes.
unsafe impl GlobalAlloc for PerThread {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as i64);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as i64));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as i64 - layout.size() as i64);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: PerThread = PerThread;

const JOBS: usize = 20_000;

/// Heap bytes per job held after submitting `JOBS` jobs of `input`.
fn bytes_per_job(input: &'static [u8]) -> usize {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::from_settings(Settings::default()).unwrap();
        let mut store = config.store();
        store.spill_dir = dir.path().to_owned();
        let store = Arc::new(blobq::store::Store::new(store).unwrap());
        let jobs = Jobs::new(store, config.jobs.clone());
        let (ns, q) = (Name::parse("acme").unwrap(), Name::parse("export").unwrap());
        // The first job makes the queue; count from the second on.
        let submit = || async {
            let opts = SubmitOptions {
                meta: MetaInput::default(),
                lifetime: 3600,
                max_attempts: 10,
                retention: 3600,
                idempotency_key: None,
                callback: None,
            };
            let body = IncomingBody::from_bytes(input);
            jobs.submit(&ns, &q, body, opts).await.unwrap();
        };
        submit().await;
        let before = HELD.with(Cell::get);
        for _ in 0..JOBS {
            submit().await;
        }
        let held = HELD.with(Cell::get) - before;
        usize::try_from(held).unwrap() / JOBS - input.len()
    })
}

#[test]
fn a_held_job_costs_less_than_a_kibibyte_besides_its_bytes() {
    let without_input = bytes_per_job(b"");
    assert!(without_input < 1024, "{without_input} bytes a job");
    // With an input, the blob that holds it adds its own bookkeeping.
    let with_input = bytes_per_job(b"0123456789abcdef");
    assert!(with_input < 1024, "{with_input} bytes a job");
}
