//! A lock can be dropped while the profiler thread is reading its totals: the
//! acquisitions it made just before are still counted, exactly once.

mod common;

use common::{merged, profiles_in, serial, totals};
use lockprof::{named, ProfiledMutex, Profiler};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

#[test]
fn short_lived_locks_are_counted_exactly_under_continuous_flushing() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let handle = Profiler::builder()
        // Nearly nothing sampled: the counts come from the exact totals.
        .capture_pct(0.001)
        .output_pprof(dir.path().join("churn"))
        .flush_interval(Duration::from_secs(3600))
        .start()
        .unwrap();
    let stop = AtomicBool::new(false);
    let site = std::sync::OnceLock::new();
    let made = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut locks = 0u64;
                    while !stop.load(Relaxed) {
                        named!(let short_lived = ProfiledMutex::new(0u32));
                        let _ = site.set(short_lived.site().label());
                        for _ in 0..3 {
                            *short_lived.lock().unwrap() += 1;
                        }
                        // The lock goes out of scope here, counted.
                        locks += 1;
                    }
                    locks
                })
            })
            .collect();
        let end = Instant::now() + Duration::from_secs(4);
        while Instant::now() < end {
            handle.flush();
        }
        stop.store(true, Relaxed);
        workers.into_iter().map(|w| w.join().unwrap()).sum::<u64>()
    });
    let stats = handle.stop();
    assert_eq!(stats.profiles_failed, 0);
    let profile = merged(&profiles_in(dir.path()));
    let (acquires, ..) = totals(&profile, site.get().unwrap());
    assert_eq!(
        acquires as u64,
        made * 3,
        "{made} locks made over {} profiles",
        stats.profiles_exported
    );
}
