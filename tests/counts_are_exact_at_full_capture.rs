//! At 100% capture every acquisition and its release are recorded: the
//! profile's counts equal the operations the test performed.

mod common;

use common::{profile, totals, totals_for_mode};
use lockprof::read::labels;
use lockprof::{named, ProfiledMutex, ProfiledReentrantMutex, ProfiledRwLock};
use std::sync::Arc;
use std::thread;

const THREADS: usize = 4;
const OPS: usize = 500;

#[test]
fn mutex_acquire_and_release_counts_equal_the_operations() {
    named!(let shared_counter = Arc::new(ProfiledMutex::new(0u64)));
    let name = shared_counter.site().label();
    let profile = profile(100.0, || {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let c = Arc::clone(&shared_counter);
                thread::spawn(move || {
                    for _ in 0..OPS {
                        *c.lock().unwrap() += 1;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    assert_eq!(*shared_counter.lock().unwrap(), (THREADS * OPS) as u64);
    let (acquires, _, releases, _) = totals(&profile, &name);
    assert_eq!(acquires, (THREADS * OPS) as i64);
    assert_eq!(releases, (THREADS * OPS) as i64);
    // One thread label per worker.
    let threads: std::collections::BTreeSet<i64> = profile
        .samples_of(&name)
        .filter_map(|s| s.label_num(labels::THREAD_ID))
        .collect();
    assert_eq!(threads.len(), THREADS);
}

#[test]
fn rwlock_reads_and_writes_are_counted_and_labelled_separately() {
    named!(let config = Arc::new(ProfiledRwLock::new(0u64)));
    let name = config.site().label();
    let profile = profile(100.0, || {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let c = Arc::clone(&config);
                thread::spawn(move || {
                    for op in 0..OPS {
                        if (op + i) % 5 == 0 {
                            *c.write().unwrap() += 1;
                        } else {
                            let _ = *c.read().unwrap();
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    let writes = (THREADS * OPS / 5) as i64;
    let reads = (THREADS * OPS) as i64 - writes;
    let (w_acq, _, w_rel, _) = totals_for_mode(&profile, &name, "write");
    let (r_acq, _, r_rel, _) = totals_for_mode(&profile, &name, "read");
    assert_eq!((w_acq, w_rel), (writes, writes));
    assert_eq!((r_acq, r_rel), (reads, reads));
    assert!(profile
        .samples_of(&name)
        .all(|s| s.label_str(labels::LOCK_MODE).is_some()));
}

#[test]
fn reentrant_mutex_records_only_the_outermost_acquisition() {
    named!(let attempts = ProfiledReentrantMutex::new(std::cell::Cell::new(0)));
    let name = attempts.site().label();
    let profile = profile(100.0, || {
        for _ in 0..OPS {
            let outer = attempts.lock();
            let inner = attempts.lock();
            inner.set(inner.get() + 1);
            drop(inner);
            std::thread::sleep(std::time::Duration::from_micros(20));
            drop(outer);
        }
    });
    let (acquires, _, releases, hold) = totals(&profile, &name);
    assert_eq!(acquires, OPS as i64);
    assert_eq!(releases, OPS as i64);
    // The hold is the outer guard's: at least the sleep, every time.
    assert!(hold >= (OPS as i64) * 20_000, "hold {hold} ns");
}

#[test]
fn capture_zero_records_nothing() {
    named!(let quiet = ProfiledMutex::new(0));
    let profile = profile(0.0, || {
        for _ in 0..1000 {
            *quiet.lock().unwrap() += 1;
        }
    });
    assert!(profile.samples.is_empty(), "{:?}", profile.samples);
}

#[test]
fn locks_used_without_a_profiler_record_nothing_and_work() {
    named!(let before = ProfiledMutex::new(0));
    for _ in 0..100 {
        *before.lock().unwrap() += 1;
    }
    // The lock created before the profiler is profiled once it runs.
    let profile = profile(100.0, || {
        *before.lock().unwrap() += 1;
    });
    let (acquires, _, releases, _) = totals(&profile, &before.site().label());
    assert_eq!((acquires, releases), (1, 1));
    // And works after it stopped.
    *before.lock().unwrap() += 1;
    assert_eq!(*before.lock().unwrap(), 102);
}
