//! The profiler never loses events silently and never breaks the user's lock
//! operations: a full queue drops and counts, a panic while a sampled guard
//! is held poisons exactly as std and still records the release.

mod common;

use common::{profile, profile_with, totals};
use lockprof::{named, ProfiledMutex, Profiler};
use std::sync::Arc;

#[test]
fn a_full_queue_drops_and_counts_and_totals_stay_exact() {
    named!(let busy = Arc::new(ProfiledMutex::new(0u64)));
    let profile = profile_with(Profiler::builder().capture_pct(100.0).queue_capacity(4), || {
        std::thread::scope(|s| {
            for _ in 0..4 {
                let busy = Arc::clone(&busy);
                s.spawn(move || {
                    for _ in 0..5000 {
                        *busy.lock().unwrap() += 1;
                    }
                });
            }
        });
    });
    let comment = profile
        .comments
        .iter()
        .find(|c| c.contains("dropped"))
        .expect("drop comment");
    let n: u64 = comment
        .rsplit(": ")
        .next()
        .unwrap()
        .parse()
        .expect("dropped count");
    assert!(
        n > 0,
        "a 4-event queue under 20k events dropped nothing: {comment}"
    );
    // The exact count is kept beside the samples, so totals survive drops.
    let (acquires, ..) = totals(&profile, &busy.site().label());
    assert_eq!(acquires, 20_000);
}

#[test]
fn a_panic_while_holding_a_sampled_guard_poisons_and_records_the_release() {
    named!(let fragile = Arc::new(ProfiledMutex::new(0)));
    let profile = profile(100.0, || {
        let f = Arc::clone(&fragile);
        let r = std::thread::spawn(move || {
            let _g = f.lock().unwrap();
            panic!("boom");
        })
        .join();
        assert!(r.is_err());
        assert!(fragile.is_poisoned());
        let g = fragile.lock().unwrap_err().into_inner();
        drop(g);
    });
    let (acquires, _, releases, _) = totals(&profile, &fragile.site().label());
    assert_eq!((acquires, releases), (2, 2));
}

/// Panics while holding a guard of each lock type, profiled and std side by
/// side: the same poisoning (write guards poison, read guards and re-entrant
/// guards do not), and the profiler records every release.
#[test]
fn a_panic_under_any_lock_type_poisons_as_std_and_records_the_release() {
    use lockprof::{ProfiledCondvar, ProfiledReentrantMutex, ProfiledRwLock};
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::time::Duration;

    named!(let rw_read = ProfiledRwLock::new(0));
    named!(let rw_write = ProfiledRwLock::new(0));
    named!(let reentrant = ProfiledReentrantMutex::new(0));
    named!(let cv_mutex = ProfiledMutex::new(0));
    let cv = ProfiledCondvar::new();
    let std_read = std::sync::RwLock::new(0);
    let std_write = std::sync::RwLock::new(0);
    let std_cv_mutex = std::sync::Mutex::new(0);
    let std_cv = std::sync::Condvar::new();

    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let profile = profile(100.0, || {
        let boom = |f: &dyn Fn()| assert!(catch_unwind(AssertUnwindSafe(f)).is_err());
        boom(&|| {
            let _g = rw_read.read().unwrap();
            panic!("under a read guard");
        });
        boom(&|| {
            let _g = std_read.read().unwrap();
            panic!("under a read guard");
        });
        boom(&|| {
            let _g = rw_write.write().unwrap();
            panic!("under a write guard");
        });
        boom(&|| {
            let _g = std_write.write().unwrap();
            panic!("under a write guard");
        });
        boom(&|| {
            let outer = reentrant.lock();
            let _inner = reentrant.lock();
            drop(outer);
            panic!("under a re-entrant guard");
        });
        boom(&|| {
            let g = cv_mutex.lock().unwrap();
            let (_g, _) = cv.wait_timeout(g, Duration::from_millis(1)).unwrap();
            panic!("under a guard returned by a condvar");
        });
        boom(&|| {
            let g = std_cv_mutex.lock().unwrap();
            let (_g, _) = std_cv.wait_timeout(g, Duration::from_millis(1)).unwrap();
            panic!("under a guard returned by a condvar");
        });
        assert_eq!(rw_read.is_poisoned(), std_read.is_poisoned());
        assert_eq!(rw_write.is_poisoned(), std_write.is_poisoned());
        assert_eq!(cv_mutex.is_poisoned(), std_cv_mutex.is_poisoned());
        assert_eq!(
            rw_write.read().map(|_| ()).is_err(),
            std_write.read().map(|_| ()).is_err()
        );
        assert_eq!(
            cv_mutex.lock().map(|_| ()).is_err(),
            std_cv_mutex.lock().map(|_| ()).is_err()
        );
        // Still usable: the profiler kept no lock held.
        drop(reentrant.lock());
        let _ = rw_read.write().unwrap();
    });
    std::panic::set_hook(quiet);

    let count = |name: &str, mode: Option<&str>| {
        let (acq, _, rel, hold) = match mode {
            Some(m) => common::totals_for_mode(&profile, name, m),
            None => totals(&profile, name),
        };
        assert_eq!(acq, rel, "{name} {mode:?}: every acquisition released");
        assert!(hold > 0, "{name} {mode:?}: the hold was measured");
        acq
    };
    assert_eq!(count(&rw_read.site().label(), Some("read")), 1);
    assert_eq!(count(&rw_read.site().label(), Some("write")), 1);
    assert_eq!(count(&rw_write.site().label(), Some("write")), 1);
    assert_eq!(count(&rw_write.site().label(), Some("read")), 1);
    assert_eq!(count(&reentrant.site().label(), None), 2);
    // Lock, re-lock on waking, then once more after the panic.
    assert_eq!(count(&cv_mutex.site().label(), None), 3);
}

/// The smallest queue and the shallowest stacks under every lock type:
/// events are dropped and counted, and no operation ever waits on the
/// profiler.
#[test]
fn tiny_recorder_limits_drop_and_count_but_never_block() {
    use lockprof::{ProfiledReentrantMutex, ProfiledRwLock};
    use std::time::{Duration, Instant};

    named!(let m = Arc::new(ProfiledMutex::new(0u64)));
    named!(let rw = Arc::new(ProfiledRwLock::new(0u64)));
    named!(let re = Arc::new(ProfiledReentrantMutex::new(())));
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    let profile = profile_with(
        Profiler::builder()
            .capture_pct(100.0)
            .queue_capacity(1)
            .max_frames(1),
        || {
            let per_thread: Vec<Duration> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..4)
                    .map(|_| {
                        let (m, rw, re) = (Arc::clone(&m), Arc::clone(&rw), Arc::clone(&re));
                        s.spawn(move || {
                            let mut slowest = Duration::ZERO;
                            for _ in 0..5000 {
                                let t = Instant::now();
                                *m.lock().unwrap() += 1;
                                let _ = *rw.read().unwrap();
                                *rw.write().unwrap() += 1;
                                drop(re.lock());
                                slowest = slowest.max(t.elapsed());
                            }
                            slowest
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            slowest = per_thread.into_iter().max().unwrap_or_default();
        },
    );
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "took {:?}",
        start.elapsed()
    );
    // Nothing waits on the recorder: no single round of four operations
    // comes near a flush or a scheduler quantum storm.
    assert!(slowest < Duration::from_secs(2), "slowest round {slowest:?}");
    let dropped: u64 = profile
        .comments
        .iter()
        .filter_map(|c| c.strip_prefix("events recorded: "))
        .filter_map(|c| c.rsplit(": ").next()?.parse::<u64>().ok())
        .sum();
    assert!(dropped > 0, "{:?}", profile.comments);
    assert_eq!(totals(&profile, &m.site().label()).0, 20_000);
    assert_eq!(
        common::totals_for_mode(&profile, &rw.site().label(), "write").0,
        20_000
    );
    assert_eq!(totals(&profile, &re.site().label()).0, 20_000);
}
