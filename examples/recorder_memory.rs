//! Memory of the recorder over a long 100 %-capture run: threads lock a few
//! locks from a fixed set of call paths, every acquisition is sampled, and
//! the peak RSS is printed at each minute. Flat figures after the first
//! minute mean the recorder's memory follows distinct stacks, not events.
//!
//! ```text
//! cargo run --release --example recorder_memory -- 5   # minutes
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use lockprof::{ProfiledMutex, Profiler};

#[path = "common/discard.rs"]
mod discard;
use discard::Discard;

/// `(VmHWM, VmRSS)` in MiB, from /proc (Linux).
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

static LOCKS: [ProfiledMutex<u64>; 4] = [
    ProfiledMutex::new(0),
    ProfiledMutex::new(0),
    ProfiledMutex::new(0),
    ProfiledMutex::new(0),
];

/// Reaches the locks through `depth` more frames: 16 distinct call paths.
#[inline(never)]
fn path(depth: u64, i: u64) {
    if depth == 0 {
        *LOCKS[(i % 4) as usize].lock().unwrap() += 1;
        return;
    }
    path(depth - 1, i);
    black_box(());
}

fn main() {
    let minutes: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let profiler = Profiler::builder()
        .capture_pct(100.0)
        .flush_interval(Duration::from_secs(60))
        .export(Discard)
        .start()
        .expect("start the profiler");
    let stop = AtomicBool::new(false);
    let ops = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (stop, ops) = (&stop, &ops);
            s.spawn(move || {
                let mut i = t;
                while !stop.load(Relaxed) {
                    path(i % 16, i);
                    i += 1;
                    if i % 1024 == 0 {
                        ops.fetch_add(1024, Relaxed);
                    }
                }
            });
        }
        for minute in 1..=minutes {
            std::thread::sleep(
                Duration::from_secs(60)
                    .saturating_sub(start.elapsed() - Duration::from_secs(60 * (minute - 1))),
            );
            let (hwm, rss) = rss_mib();
            let stats = profiler.stats();
            println!(
                "minute {minute}: peak RSS {hwm:.1} MiB, RSS {rss:.1} MiB, {} lock ops, {} events recorded, {} dropped",
                ops.load(Relaxed),
                stats.events_recorded,
                stats.events_dropped
            );
        }
        stop.store(true, Relaxed);
    });
    let stats = profiler.stop();
    println!(
        "done: {} profiles, {} events recorded",
        stats.profiles_exported, stats.events_recorded
    );
}
