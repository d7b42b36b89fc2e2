//! lockprof beside `locktick`, `hotpath` and `tracing-mutex`, each in its
//! instrumented mode, on the work of lockprof's benchmarks 1 (uncontended
//! lock+unlock) and 2 (contended throughput), with the raw `parking_lot` lock
//! as the baseline in every group. What each records per acquisition is in
//! the package's `src/lib.rs`.
//!
//! ```text
//! cd benches/peers && cargo bench -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! For one compact table with ratios to `parking_lot`, measured in
//! interleaved rounds, run `cargo run --release` instead.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, BenchmarkGroup, Criterion, Throughput};
use lockprof::{ProfiledMutex, ProfiledRwLock};
use lockprof_peers::{contended_op, locks, threaded, PeerMutex, PeerRwLock};

fn uncontended_mutex<L: PeerMutex<u64>>(g: &mut BenchmarkGroup<'_, WallTime>) {
    let l = L::new(0);
    g.bench_function(L::NAME, |b| b.iter(|| black_box(&l).with(|v| *v += 1)));
}

fn uncontended_read<L: PeerRwLock<u64>>(g: &mut BenchmarkGroup<'_, WallTime>) {
    let l = L::new(0);
    g.bench_function(L::NAME, |b| b.iter(|| black_box(&l).read_with(|v| black_box(*v))));
}

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("peers/uncontended/mutex");
    uncontended_mutex::<parking_lot::Mutex<u64>>(&mut g);
    uncontended_mutex::<ProfiledMutex<u64>>(&mut g);
    uncontended_mutex::<locktick::parking_lot::Mutex<u64>>(&mut g);
    uncontended_mutex::<hotpath::wrap::parking_lot::Mutex<u64>>(&mut g);
    uncontended_mutex::<tracing_mutex::parkinglot::tracing::Mutex<u64>>(&mut g);
    g.finish();

    let mut g = c.benchmark_group("peers/uncontended/rwlock_read");
    uncontended_read::<parking_lot::RwLock<u64>>(&mut g);
    uncontended_read::<ProfiledRwLock<u64>>(&mut g);
    uncontended_read::<locktick::parking_lot::RwLock<u64>>(&mut g);
    uncontended_read::<hotpath::wrap::parking_lot::RwLock<u64>>(&mut g);
    uncontended_read::<tracing_mutex::parkinglot::tracing::RwLock<u64>>(&mut g);
    g.finish();
}

fn contended_one<L: PeerMutex<[u64; 4]>>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    locks_n: usize,
    threads: usize,
) {
    let all = locks::<L>(locks_n);
    g.bench_function(L::NAME, |b| {
        b.iter_custom(|iters| {
            let (elapsed, done) = threaded(threads, iters, &|t, i| contended_op(black_box(&all), t, i));
            // Rounding up to whole threads did a few more than asked.
            elapsed.mul_f64(iters as f64 / done as f64)
        })
    });
}

fn contended(c: &mut Criterion) {
    for locks_n in [1usize, 2] {
        for threads in [2usize, 8, 32] {
            let name = format!("peers/contended/{locks_n}_lock/{threads}_threads");
            let mut g = c.benchmark_group(name);
            g.throughput(Throughput::Elements(1));
            contended_one::<parking_lot::Mutex<[u64; 4]>>(&mut g, locks_n, threads);
            contended_one::<ProfiledMutex<[u64; 4]>>(&mut g, locks_n, threads);
            contended_one::<locktick::parking_lot::Mutex<[u64; 4]>>(&mut g, locks_n, threads);
            contended_one::<hotpath::wrap::parking_lot::Mutex<[u64; 4]>>(&mut g, locks_n, threads);
            contended_one::<tracing_mutex::parkinglot::tracing::Mutex<[u64; 4]>>(&mut g, locks_n, threads);
            g.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = uncontended, contended
}

fn main() {
    // Before criterion or any lock starts a thread; kept for the whole run.
    let _profiler = lockprof_peers::instrument();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
