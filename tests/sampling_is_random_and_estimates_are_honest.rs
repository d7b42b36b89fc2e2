//! Sampling is a random draw per thread (not every N-th acquisition), and the
//! scaled totals in the profile match exact counts kept by the test.

mod common;

use common::{profile, totals, totals_for_mode};
use lockprof::{named, ProfiledMutex, ProfiledRwLock};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

#[test]
fn a_loop_alternating_two_locks_sees_both_sampled() {
    named!(let left = ProfiledMutex::new(0u64));
    named!(let right = ProfiledMutex::new(0u64));
    // At 50% an every-second-acquisition counter would only ever pick one.
    let profile = profile(50.0, || {
        for _ in 0..2000 {
            *left.lock().unwrap() += 1;
            *right.lock().unwrap() += 1;
        }
    });
    for lock in [&left, &right] {
        let sampled_stacks = profile
            .samples_of(&lock.site().label())
            .filter(|s| s.acquire > 0 && s.frames.iter().all(|f| f.function != "<unsampled>"))
            .count();
        assert!(sampled_stacks > 0, "{} never sampled", lock.site());
        // Counts are exact whatever was sampled.
        assert_eq!(totals(&profile, &lock.site().label()).0, 2000);
    }
}

#[test]
fn totals_match_exact_counts_kept_by_the_test() {
    const THREADS: usize = 4;
    const OPS: usize = 5000;
    named!(let hot = Arc::new(ProfiledMutex::new(0u64)));
    named!(let table = Arc::new(ProfiledRwLock::new(0u64)));
    let profile = profile(10.0, || {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (hot, table) = (Arc::clone(&hot), Arc::clone(&table));
                thread::spawn(move || {
                    for i in 0..OPS {
                        let mut g = hot.lock().unwrap();
                        *g += 1;
                        if i % 100 == 0 {
                            thread::sleep(Duration::from_micros(100));
                        }
                        drop(g);
                        let _ = *table.read().unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    let n = (THREADS * OPS) as i64;
    // Mutex acquisitions are counted exactly; the stacks' shares are scaled
    // to that count.
    let (acquires, _, releases, hold) = totals(&profile, &hot.site().label());
    assert_eq!(acquires, n);
    assert_eq!(releases, n);
    // Hold is estimated from samples: 200 sleeps of >= 100 us happened.
    let slept = (THREADS * OPS / 100) as i64 * 100_000;
    assert!(
        hold >= slept / 2,
        "estimated hold {hold} ns, slept at least {slept} ns"
    );
    // Reads are not counted exactly: each sample stands for 10 reads.
    let (reads, ..) = totals_for_mode(&profile, &table.site().label(), "read");
    let err = (reads - n).abs() as f64 / n as f64;
    assert!(
        err < 0.15,
        "estimated {reads} reads for {n} ({:.1}% off)",
        err * 100.0
    );
}
