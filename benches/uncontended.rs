//! Benchmark 1: one thread locking and unlocking a lock nobody else touches.
//!
//! `two_names_nested` takes two locks of different names, one inside the
//! other, each iteration.
//!
//! Every group has its baselines (`parking_lot`, `std`) beside lockprof with
//! no profiler, and with a profiler at capture 0, 1 (the default) and 100 %.
//!
//! ```text
//! cargo bench --bench uncontended
//! ./scripts/bench.sh uncontended      # the plain build, then with frame pointers
//! ```

mod common;

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use lockprof::{ProfiledMutex, ProfiledReentrantMutex, ProfiledRwLock};

const CAPTURES: [(&str, f64); 3] = [("capture_0", 0.0), ("capture_1", 1.0), ("capture_100", 100.0)];

/// Runs `bench` with no profiler, then under each capture level.
fn profiled(
    g: &mut BenchmarkGroup<'_, WallTime>,
    mut bench: impl FnMut(&mut BenchmarkGroup<'_, WallTime>, &str),
) {
    bench(g, "lockprof/off");
    for (name, pct) in CAPTURES {
        let p = common::profiler(pct);
        bench(g, &format!("lockprof/{name}"));
        common::stop(p, name);
    }
}

fn mutex(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended/mutex");
    let pl = parking_lot::Mutex::new(0u64);
    g.bench_function("parking_lot", |b| b.iter(|| *black_box(&pl).lock() += 1));
    let sm = std::sync::Mutex::new(0u64);
    g.bench_function("std", |b| b.iter(|| *black_box(&sm).lock().unwrap() += 1));
    let m = ProfiledMutex::new(0u64);
    profiled(&mut g, |g, name| {
        g.bench_function(name, |b| b.iter(|| *black_box(&m).lock().unwrap() += 1));
    });
    g.finish();
}

fn rwlock_read(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended/rwlock_read");
    let pl = parking_lot::RwLock::new(0u64);
    g.bench_function("parking_lot", |b| b.iter(|| *black_box(&pl).read()));
    let sl = std::sync::RwLock::new(0u64);
    g.bench_function("std", |b| b.iter(|| *black_box(&sl).read().unwrap()));
    let l = ProfiledRwLock::new(0u64);
    profiled(&mut g, |g, name| {
        g.bench_function(name, |b| b.iter(|| *black_box(&l).read().unwrap()));
    });
    g.finish();
}

fn rwlock_write(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended/rwlock_write");
    let pl = parking_lot::RwLock::new(0u64);
    g.bench_function("parking_lot", |b| b.iter(|| *black_box(&pl).write() += 1));
    let sl = std::sync::RwLock::new(0u64);
    g.bench_function("std", |b| b.iter(|| *black_box(&sl).write().unwrap() += 1));
    let l = ProfiledRwLock::new(0u64);
    profiled(&mut g, |g, name| {
        g.bench_function(name, |b| b.iter(|| *black_box(&l).write().unwrap() += 1));
    });
    g.finish();
}

fn reentrant(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended/reentrant");
    let pl = parking_lot::ReentrantMutex::new(std::cell::Cell::new(0u64));
    g.bench_function("parking_lot", |b| {
        b.iter(|| {
            let guard = black_box(&pl).lock();
            guard.set(guard.get() + 1);
        })
    });
    let l = ProfiledReentrantMutex::new(std::cell::Cell::new(0u64));
    profiled(&mut g, |g, name| {
        g.bench_function(name, |b| {
            b.iter(|| {
                let guard = black_box(&l).lock();
                guard.set(guard.get() + 1);
            })
        });
    });
    g.finish();
}

/// Runs `f` `depth` frames below the caller, as locks in a real server are
/// taken: what a sampled acquisition walks grows with the depth.
#[inline(never)]
fn at_depth(depth: usize, f: &mut dyn FnMut()) {
    if depth == 0 {
        return f();
    }
    at_depth(depth - 1, f);
    black_box(());
}

fn mutex_24_frames_deep(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended/mutex_24_frames_deep");
    let pl = parking_lot::Mutex::new(0u64);
    g.bench_function("parking_lot", |b| {
        at_depth(24, &mut || b.iter(|| *black_box(&pl).lock() += 1))
    });
    let m = ProfiledMutex::new(0u64);
    profiled(&mut g, |g, name| {
        g.bench_function(name, |b| {
            at_depth(24, &mut || b.iter(|| *black_box(&m).lock().unwrap() += 1))
        });
    });
    g.finish();
}

/// Two locks of different names taken in turn, each inside the other: every
/// acquisition counts a different name than the one before (the case where
/// the count's per-thread memory of the last counter does not help).
fn two_names_nested(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended/two_names_nested");
    let (pa, pb) = (parking_lot::Mutex::new(0u64), parking_lot::Mutex::new(0u64));
    g.bench_function("parking_lot", |b| {
        b.iter(|| {
            let mut a = black_box(&pa).lock();
            *black_box(&pb).lock() += 1;
            *a += 1;
        })
    });
    let a = ProfiledMutex::new(0u64).named("a");
    let b = ProfiledMutex::new(0u64).named("b");
    profiled(&mut g, |g, name| {
        g.bench_function(name, |bench| {
            bench.iter(|| {
                let mut a = black_box(&a).lock().unwrap();
                *black_box(&b).lock().unwrap() += 1;
                *a += 1;
            })
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = mutex, mutex_24_frames_deep, rwlock_read, rwlock_write, reentrant, two_names_nested
}
criterion_main!(benches);
