//! lockprof beside `locktick`, `hotpath` and `tracing-mutex`, each in its
//! instrumented mode, on the work of lockprof's benchmarks 1 (uncontended
//! lock+unlock) and 2 (contended throughput), with the raw `parking_lot` lock
//! as the baseline in every group.
//!
//! What each records per acquisition:
//! - lockprof (capture 1 %): exact per-lock counts and contended wait; 1 % of
//!   acquisitions and their releases with a call stack, thread and hold time;
//!   pprof output.
//! - locktick: wait and hold time of every guard, per lock and call site
//!   (two clock reads and a global map update per guard); no stacks.
//! - hotpath (time sampling at 100 %, its default): wait and hold time of
//!   every acquisition sent to its per-thread queue; no stacks.
//! - tracing-mutex: no timing; the lock-order graph (deadlock detection).
//!
//! ```text
//! cd benches/peers && cargo bench
//! ```

use std::hint::black_box;
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use lockprof::{
    EncodedProfile, Export, ExportError, ProfiledMutex, ProfiledRwLock, Profiler, ProfilerHandle,
};

struct Discard;

impl Export for Discard {
    fn export(&mut self, _profile: &EncodedProfile) -> Result<(), ExportError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "discarded".into()
    }
}

fn lockprof_default() -> ProfilerHandle {
    Profiler::builder()
        .capture_pct(lockprof::DEFAULT_CAPTURE_PCT)
        .export(Discard)
        .start()
        .expect("one profiler at a time")
}

/// hotpath collects only while its guard lives; one guard per process, kept
/// for the whole run.
fn hotpath_on() {
    static GUARD: OnceLock<()> = OnceLock::new();
    GUARD.get_or_init(|| {
        hotpath::HotpathGuardBuilder::new("peers")
            .format(hotpath::Format::None)
            .build_with_shutdown(Duration::ZERO);
    });
}

fn uncontended(c: &mut Criterion) {
    hotpath_on();
    let mut g = c.benchmark_group("peers/uncontended/mutex");
    let pl = parking_lot::Mutex::new(0u64);
    g.bench_function("parking_lot", |b| b.iter(|| *black_box(&pl).lock() += 1));
    let lp = ProfiledMutex::new(0u64);
    let p = lockprof_default();
    g.bench_function("lockprof/capture_1", |b| {
        b.iter(|| *black_box(&lp).lock().unwrap() += 1)
    });
    drop(p);
    let lt = locktick::parking_lot::Mutex::new(0u64);
    g.bench_function("locktick", |b| b.iter(|| *black_box(&lt).lock() += 1));
    let hp = hotpath::mutex!(parking_lot::Mutex::new(0u64));
    g.bench_function("hotpath", |b| b.iter(|| *black_box(&hp).lock() += 1));
    let tm = tracing_mutex::parkinglot::tracing::Mutex::new(0u64);
    g.bench_function("tracing-mutex", |b| b.iter(|| *black_box(&tm).lock() += 1));
    g.finish();

    let mut g = c.benchmark_group("peers/uncontended/rwlock_read");
    let pl = parking_lot::RwLock::new(0u64);
    g.bench_function("parking_lot", |b| b.iter(|| *black_box(&pl).read()));
    let lp = ProfiledRwLock::new(0u64);
    let p = lockprof_default();
    g.bench_function("lockprof/capture_1", |b| {
        b.iter(|| *black_box(&lp).read().unwrap())
    });
    drop(p);
    let lt = locktick::parking_lot::RwLock::new(0u64);
    g.bench_function("locktick", |b| b.iter(|| *black_box(&lt).read()));
    let hp = hotpath::rw_lock!(parking_lot::RwLock::new(0u64));
    g.bench_function("hotpath", |b| b.iter(|| *black_box(&hp).read()));
    let tm = tracing_mutex::parkinglot::tracing::RwLock::new(0u64);
    g.bench_function("tracing-mutex", |b| b.iter(|| *black_box(&tm).read()));
    g.finish();
}

/// `threads` threads doing `iters` acquisitions in all; the time from their
/// common start to the last one's end.
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
        Instant::now()
    })
    .elapsed()
}

#[inline(always)]
fn work(v: &mut [u64; 4], i: u64) {
    v[(i % 4) as usize] = v[(i % 4) as usize].wrapping_mul(31).wrapping_add(i);
}

fn contended(c: &mut Criterion) {
    hotpath_on();
    for locks in [1usize, 2] {
        for threads in [2usize, 8, 32] {
            let mut g = c.benchmark_group(format!("peers/contended/{locks}_lock/{threads}_threads"));
            g.throughput(criterion::Throughput::Elements(1));
            macro_rules! bench {
                ($name:expr, $locks:expr, |$l:ident| $lock:expr) => {{
                    let all = $locks;
                    g.bench_function($name, |b| {
                        b.iter_custom(|iters| {
                            run(threads, iters, &|t, i| {
                                let $l = black_box(&all[(t + i as usize) % locks]);
                                work(&mut $lock, i)
                            })
                        })
                    });
                }};
            }
            bench!(
                "parking_lot",
                (0..locks)
                    .map(|_| parking_lot::Mutex::new([0u64; 4]))
                    .collect::<Vec<_>>(),
                |l| l.lock()
            );
            let p = lockprof_default();
            bench!(
                "lockprof/capture_1",
                (0..locks)
                    .map(|_| ProfiledMutex::new([0u64; 4]))
                    .collect::<Vec<_>>(),
                |l| l.lock().unwrap()
            );
            drop(p);
            bench!(
                "locktick",
                (0..locks)
                    .map(|_| locktick::parking_lot::Mutex::new([0u64; 4]))
                    .collect::<Vec<_>>(),
                |l| l.lock()
            );
            bench!(
                "hotpath",
                (0..locks)
                    .map(|_| hotpath::mutex!(parking_lot::Mutex::new([0u64; 4])))
                    .collect::<Vec<_>>(),
                |l| l.lock()
            );
            bench!(
                "tracing-mutex",
                (0..locks)
                    .map(|_| tracing_mutex::parkinglot::tracing::Mutex::new([0u64; 4]))
                    .collect::<Vec<_>>(),
                |l| l.lock()
            );
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
criterion_main!(benches);
