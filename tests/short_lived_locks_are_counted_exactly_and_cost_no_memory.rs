//! Locks made per request: every acquisition of a lock that lives for
//! microseconds is counted exactly in the profile, at any capture, and a
//! program that makes millions of them keeps its memory.

mod common;

use common::{profile, profile_with, totals};
use lockprof::{ProfiledMutex, ProfiledRwLock, Profiler};
use std::thread;
use std::time::{Duration, Instant};

const NAMES: usize = 2_000;
const PER_LOCK: usize = 200;

/// `threads` threads each make the locks of names `t, t + threads, …`, lock
/// each one `PER_LOCK` times and drop it.
fn short_lived_named_locks(names: &[&'static str], threads: usize) {
    thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for name in names.iter().skip(t).step_by(threads) {
                    let m = ProfiledMutex::new(0u64).named(name);
                    for _ in 0..PER_LOCK {
                        *m.lock().unwrap() += 1;
                    }
                    // `m` goes out of scope: nothing of it is kept.
                }
            });
        }
    });
}

fn names(prefix: &str) -> Vec<&'static str> {
    (0..NAMES)
        .map(|i| &*Box::leak(format!("{prefix}-{i:07}").into_boxed_str()))
        .collect()
}

#[test]
fn every_short_lived_lock_is_counted_exactly_at_default_and_full_capture() {
    for pct in [1.0, 100.0] {
        let names = names(&format!("req{pct}"));
        let p = profile(pct, || short_lived_named_locks(&names, 4));
        // All the names were made on one line of this file.
        let labels: Vec<String> = p
            .lock_names()
            .into_iter()
            .filter(|n| n.contains(&format!(":req{pct}-")))
            .collect();
        assert_eq!(labels.len(), NAMES, "capture {pct}%: lock names in the profile");
        let wrong: Vec<(String, i64, i64)> = labels
            .iter()
            .map(|l| {
                let (acq, _, rel, _) = totals(&p, l);
                (l.clone(), acq, rel)
            })
            .filter(|&(_, acq, rel)| acq != PER_LOCK as i64 || rel != PER_LOCK as i64)
            .collect();
        assert!(
            wrong.is_empty(),
            "capture {pct}%: {} of {NAMES} names not counted {PER_LOCK} times, e.g. {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
    }
}

#[test]
fn counts_made_by_threads_that_exit_are_reported() {
    let lock = ProfiledRwLock::new(0u64).named("between_threads");
    let name = lock.site().label();
    let p = profile(1.0, || {
        // 200 short threads, each its own table.
        for _ in 0..200 {
            thread::scope(|s| {
                s.spawn(|| {
                    for _ in 0..10 {
                        *lock.write().unwrap() += 1;
                        let _ = *lock.read().unwrap();
                    }
                });
            });
        }
    });
    let (w, _, _, _) = common::totals_for_mode(&p, &name, "write");
    let (r, _, _, _) = common::totals_for_mode(&p, &name, "read");
    assert_eq!((w, r), (2_000, 2_000), "reads are counted exactly too");
}

/// Resident memory of this process, from /proc.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[test]
fn a_lock_per_request_keeps_memory_flat_and_counts_exact() {
    const THREADS: usize = 2;
    let made = std::sync::atomic::AtomicU64::new(0);
    let builder = Profiler::builder().capture_pct(1.0);
    let mut grew = 0;
    let p = profile_with(builder, || {
        let before = rss_bytes();
        let deadline = Instant::now() + Duration::from_secs(2);
        thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        for _ in 0..10_000 {
                            let m = ProfiledMutex::new(n);
                            for _ in 0..3 {
                                *m.lock().unwrap() += 1;
                            }
                            n += 1;
                        }
                    }
                    made.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                });
            }
        });
        grew = rss_bytes().saturating_sub(before);
    });
    let made = made.into_inner();
    assert!(made > 100_000, "only {made} locks made");
    // The old design kept ~184 bytes per dropped lock until the next flush.
    assert!(
        grew < 32 << 20,
        "RSS grew by {} MiB over {made} short-lived locks",
        grew >> 20
    );
    let churn: Vec<String> = p
        .lock_names()
        .into_iter()
        .filter(|n| n.starts_with("short_lived"))
        .collect();
    let acquired: i64 = churn.iter().map(|n| totals(&p, n).0).sum();
    assert_eq!(
        acquired,
        3 * made as i64,
        "every acquisition of {made} locks counted"
    );
}
