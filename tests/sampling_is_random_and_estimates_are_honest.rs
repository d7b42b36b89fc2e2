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

#[test]
fn estimated_wait_matches_the_wait_measured_by_the_test() {
    // Four threads take turns on one lock, each holding it for 200 us and then
    // sleeping 100 us, so most acquisitions wait. Only sampled acquisitions
    // are timed; the profile's total wait is their wait scaled to the exact
    // count, an unbiased estimate whose error depends on how uneven the waits
    // are. The test times every acquisition itself and allows four standard
    // errors of the estimate, computed from those waits.
    const THREADS: usize = 4;
    const OPS: usize = 300;
    const CAPTURE_PCT: f64 = 25.0;
    named!(let turns = Arc::new(ProfiledMutex::new(0u64)));
    let waits = Arc::new(std::sync::Mutex::new(Vec::new()));
    let profile = profile(CAPTURE_PCT, || {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (turns, waits) = (Arc::clone(&turns), Arc::clone(&waits));
                thread::spawn(move || {
                    let mut mine = Vec::with_capacity(OPS);
                    for _ in 0..OPS {
                        let t0 = std::time::Instant::now();
                        let mut g = turns.lock().unwrap();
                        mine.push(t0.elapsed().as_nanos() as f64);
                        let spin = std::time::Instant::now();
                        while spin.elapsed() < Duration::from_micros(200) {
                            std::hint::spin_loop();
                        }
                        *g += 1;
                        drop(g);
                        thread::sleep(Duration::from_micros(100));
                    }
                    waits.lock().unwrap().extend(mine);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    let waits = waits.lock().unwrap();
    let n = waits.len() as f64;
    let (acquires, estimated, ..) = totals(&profile, &turns.site().label());
    assert_eq!(acquires, n as i64);
    let measured: f64 = waits.iter().sum();
    let mean = measured / n;
    let variance = waits.iter().map(|w| (w - mean).powi(2)).sum::<f64>() / (n - 1.0);
    // Sampling each acquisition with probability p: the scaled total's
    // standard error is sqrt(n (1 - p) / p) times the waits' deviation.
    let p = CAPTURE_PCT / 100.0;
    let standard_error = (n * (1.0 - p) / p).sqrt() * variance.sqrt();
    let off = estimated as f64 - measured;
    eprintln!(
        "estimated wait {estimated} ns, measured {measured:.0} ns: off by {:.1} standard errors",
        off / standard_error
    );
    // The test's own timing also includes the profiler's work on sampled
    // acquisitions (microseconds in a debug build): a small allowance.
    assert!(
        off.abs() < 4.0 * standard_error + 0.05 * measured,
        "estimated wait {estimated} ns, measured {measured:.0} ns, standard error {standard_error:.0} ns"
    );
}
