//! lockprof's benchmarks 1 and 2 for every contender in one command, about
//! two minutes, one line per (benchmark, contender):
//!
//! ```text
//! cd benches/peers && cargo run --release [-- FILTER]
//! ```
//!
//! With FILTER, only the benchmarks whose name contains it run (`mutex`,
//! `read`, `contended`, `32 threads`, ...).
//!
//! As in the crate's `examples/overhead.rs`, every contender runs in the same
//! process in interleaved rounds (parking_lot batch, lockprof batch, locktick
//! batch, ..., then again), and each line gives the median over the rounds
//! and its ratio to parking_lot's median: the ratios hold on a shared machine
//! where absolute figures drift. Uncontended: time per lock+unlock, lower is
//! better. Contended: throughput relative to parking_lot, higher is better.

use std::hint::black_box;
use std::time::Instant;

use lockprof::{ProfiledMutex, ProfiledRwLock};
use lockprof_peers::{contended_op, locks, threaded, PeerMutex, PeerRwLock};

/// Uncontended acquisitions per batch.
const N: u64 = 1_000_000;
/// Contended acquisitions per batch, all threads together.
const TOTAL: u64 = 400_000;

/// A contender's name and a batch that returns its ns per acquisition.
type Batch = (&'static str, Box<dyn FnMut() -> f64>);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs every batch once untimed, then `rounds` times each in turn, the
/// starting one rotating so that no contender always follows the same other;
/// returns each one's median.
fn interleaved(rounds: usize, batches: &mut [Batch]) -> Vec<f64> {
    for (_, batch) in batches.iter_mut() {
        batch();
    }
    let mut times = vec![Vec::with_capacity(rounds); batches.len()];
    for round in 0..rounds {
        for k in 0..batches.len() {
            let k = (round + k) % batches.len();
            times[k].push((batches[k].1)());
        }
    }
    times.into_iter().map(median).collect()
}

fn uncontended_mutex<L: PeerMutex<u64> + 'static>() -> Batch {
    let l = L::new(0);
    let batch = move || {
        let t0 = Instant::now();
        for _ in 0..N {
            black_box(&l).with(|v| *v += 1);
        }
        t0.elapsed().as_nanos() as f64 / N as f64
    };
    (L::NAME, Box::new(batch))
}

fn uncontended_read<L: PeerRwLock<u64> + 'static>() -> Batch {
    let l = L::new(0);
    let batch = move || {
        let t0 = Instant::now();
        for _ in 0..N {
            black_box(&l).read_with(|v| black_box(*v));
        }
        t0.elapsed().as_nanos() as f64 / N as f64
    };
    (L::NAME, Box::new(batch))
}

fn contended<L: PeerMutex<[u64; 4]> + 'static>(locks_n: usize, threads: usize) -> Batch {
    let all = locks::<L>(locks_n);
    let batch = move || {
        let (elapsed, done) = threaded(threads, TOTAL, &|t, i| contended_op(black_box(&all), t, i));
        elapsed.as_nanos() as f64 / done as f64
    };
    (L::NAME, Box::new(batch))
}

/// Prints one line per contender; the first batch is parking_lot's.
fn report(what: &str, batches: &[Batch], ns: &[f64], throughput: bool) {
    for ((name, _), &t) in batches.iter().zip(ns) {
        let (ratio, of) = if throughput {
            (ns[0] / t, "parking_lot's throughput")
        } else {
            (t / ns[0], "parking_lot's time")
        };
        println!("{what:<33} {name:<14} {t:>9.1} ns/op {ratio:>7.2}x {of}");
    }
}

/// The most memory the process has held, from Linux's `/proc`.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn main() {
    let profiler = lockprof_peers::instrument();
    let filter = std::env::args().nth(1).unwrap_or_default();
    let wanted = |what: &str| what.contains(filter.as_str());

    if wanted("1 uncontended mutex") {
        let mut batches = vec![
            uncontended_mutex::<parking_lot::Mutex<u64>>(),
            uncontended_mutex::<ProfiledMutex<u64>>(),
            uncontended_mutex::<locktick::parking_lot::Mutex<u64>>(),
            uncontended_mutex::<hotpath::wrap::parking_lot::Mutex<u64>>(),
            uncontended_mutex::<tracing_mutex::parkinglot::tracing::Mutex<u64>>(),
        ];
        let ns = interleaved(11, &mut batches);
        report("1 uncontended mutex", &batches, &ns, false);
    }

    if wanted("1 uncontended rwlock read") {
        let mut batches = vec![
            uncontended_read::<parking_lot::RwLock<u64>>(),
            uncontended_read::<ProfiledRwLock<u64>>(),
            uncontended_read::<locktick::parking_lot::RwLock<u64>>(),
            uncontended_read::<hotpath::wrap::parking_lot::RwLock<u64>>(),
            uncontended_read::<tracing_mutex::parkinglot::tracing::RwLock<u64>>(),
        ];
        let ns = interleaved(11, &mut batches);
        report("1 uncontended rwlock read", &batches, &ns, false);
    }

    for locks_n in [1usize, 2] {
        for threads in [2usize, 8, 32] {
            let what = format!("2 contended {locks_n} lock(s) {threads} threads");
            if !wanted(&what) {
                continue;
            }
            let mut batches = vec![
                contended::<parking_lot::Mutex<[u64; 4]>>(locks_n, threads),
                contended::<ProfiledMutex<[u64; 4]>>(locks_n, threads),
                contended::<locktick::parking_lot::Mutex<[u64; 4]>>(locks_n, threads),
                contended::<hotpath::wrap::parking_lot::Mutex<[u64; 4]>>(locks_n, threads),
                contended::<tracing_mutex::parkinglot::tracing::Mutex<[u64; 4]>>(locks_n, threads),
            ];
            let ns = interleaved(7, &mut batches);
            report(&what, &batches, &ns, true);
        }
    }

    let stats = profiler.stop();
    println!(
        "lockprof: {} sampled events recorded, {} dropped; peak RSS {} MiB",
        stats.events_recorded,
        stats.events_dropped,
        peak_rss_mib().map_or("?".into(), |m| m.to_string())
    );
}
