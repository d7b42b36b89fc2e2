//! Benchmark 3: what a sampled event costs, and what a flush costs.
//!
//! - `sampled_event/*`: stack capture and hand-off to the recorder for one
//!   event 30 frames deep, by frame pointers, by the eh_frame unwinder and by
//!   `backtrace`, and the raw
//!   unwinders alone for comparison.
//! - `sampled_lock/30_frames`: a lock+unlock at 100 % capture 30 frames deep
//!   (two events: the acquisition and the release), beside `parking_lot`.
//! - `flush/10k_stacks`: weighing, symbolization (warm cache), pprof
//!   encoding and gzip of a period with 10,000 distinct 30-frame stacks.
//!
//! ```text
//! cargo bench --bench sampled
//! ```

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use lockprof::{ProfiledMutex, Profiler, Unwinder};

const DEPTH: usize = 30;

fn sampled_event(c: &mut Criterion) {
    let mut g = c.benchmark_group("sampled_event/30_frames");
    g.bench_function("backtrace::trace alone", |b| {
        common::at_depth(DEPTH, &mut || {
            b.iter(|| {
                let mut n = 0;
                backtrace::trace(|_| {
                    n += 1;
                    true
                });
                black_box(n)
            })
        })
    });
    for (name, unwinder) in [
        ("frame_pointers", Unwinder::FramePointers),
        ("eh_frame", Unwinder::EhFrame),
        ("backtrace", Unwinder::Backtrace),
    ] {
        let p = Profiler::builder()
            .capture_pct(100.0)
            .queue_capacity(1 << 16)
            .unwinder(unwinder)
            .export(common::Discard)
            .start()
            .expect("one profiler at a time");
        g.bench_function(name, |b| {
            common::at_depth(DEPTH, &mut || b.iter(lockprof::__bench::sampled_event))
        });
        common::stop(p, name);
    }
    g.finish();
}

fn sampled_lock(c: &mut Criterion) {
    let mut g = c.benchmark_group("sampled_lock/30_frames");
    let pl = parking_lot::Mutex::new(0u64);
    g.bench_function("parking_lot", |b| {
        common::at_depth(DEPTH, &mut || b.iter(|| *black_box(&pl).lock() += 1))
    });
    let m = ProfiledMutex::new(0u64);
    let p = common::profiler(100.0);
    g.bench_function("lockprof/capture_100", |b| {
        common::at_depth(DEPTH, &mut || b.iter(|| *black_box(&m).lock().unwrap() += 1))
    });
    common::stop(p, "capture_100");
    g.finish();
}

fn flush(c: &mut Criterion) {
    let mut g = c.benchmark_group("flush");
    g.sample_size(10);
    let mut fixture = lockprof::__bench::FlushFixture::new(10_000, DEPTH);
    let batch = fixture.batch();
    g.bench_function("10k_stacks", |b| {
        b.iter_batched(
            || batch.clone(),
            |batch| fixture.flush(batch),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = sampled_event, sampled_lock, flush
}
criterion_main!(benches);
