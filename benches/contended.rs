//! Benchmark 2: throughput of 2, 8 and 32 threads hammering 1 or 2 locks with
//! short critical sections, profiled at the default capture (1 %) against the
//! raw `parking_lot` lock. Criterion reports the time per acquisition (all
//! threads together); lower is higher throughput.
//!
//! With 2 locks each thread alternates between them, like the 50-thread,
//! 2-lock loop the issue measured Python's profiler on.
//!
//! ```text
//! cargo bench --bench contended
//! ```

mod common;

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use crossbeam_utils::CachePadded;
use lockprof::ProfiledMutex;

/// Runs `threads` threads doing `iters` acquisitions in all, each through
/// `op(thread, i)`; returns the time from their common start to the last end.
fn run(threads: usize, iters: u64, op: &(dyn Fn(usize, u64) + Sync)) -> Duration {
    let per_thread = iters.div_ceil(threads as u64);
    let start = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let start = &start;
            s.spawn(move || {
                start.wait();
                for i in 0..per_thread {
                    op(t, i);
                }
            });
        }
        start.wait();
        let t0 = Instant::now();
        // Scope end joins every thread.
        t0
    })
    .elapsed()
}

/// The critical section: a little work on the protected data.
#[inline(always)]
fn work(v: &mut [u64; 4], i: u64) {
    v[(i % 4) as usize] = v[(i % 4) as usize].wrapping_mul(31).wrapping_add(i);
}

fn contended(c: &mut Criterion) {
    for locks in [1usize, 2] {
        for threads in [2usize, 8, 32] {
            let mut g = c.benchmark_group(format!("contended/{locks}_lock/{threads}_threads"));
            g.throughput(criterion::Throughput::Elements(1));
            // Each lock on cache lines of its own, in both arms: unpadded, the
            // two locks of a `Vec` share or straddle lines wherever the
            // allocator put them, and the lock types differ in size, so the
            // ratio measured the placement (see `examples/overhead.rs`).
            let pl: Vec<CachePadded<parking_lot::Mutex<[u64; 4]>>> = (0..locks)
                .map(|_| CachePadded::new(parking_lot::Mutex::new([0; 4])))
                .collect();
            g.bench_function("parking_lot", |b| {
                b.iter_custom(|iters| {
                    run(threads, iters, &|t, i| {
                        work(&mut black_box(&pl[(t + i as usize) % locks]).lock(), i)
                    })
                })
            });
            let lp: Vec<CachePadded<ProfiledMutex<[u64; 4]>>> = (0..locks)
                .map(|_| CachePadded::new(ProfiledMutex::new([0; 4])))
                .collect();
            let p = common::profiler(lockprof::DEFAULT_CAPTURE_PCT);
            g.bench_function("lockprof/capture_1", |b| {
                b.iter_custom(|iters| {
                    run(threads, iters, &|t, i| {
                        work(&mut black_box(&lp[(t + i as usize) % locks]).lock().unwrap(), i)
                    })
                })
            });
            common::stop(p, "capture_1");
            g.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = common::criterion().sample_size(15).measurement_time(Duration::from_secs(3));
    targets = contended
}
criterion_main!(benches);
