//! Threads that exit with a sampled lock held or with events still queued,
//! profilers stopped and started again, and a second profiler refused.

mod common;

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use common::{profile, serial, totals};
use lockprof::{named, ProfiledMutex, ProfiledMutexGuard, Profiler, StartError};

#[test]
fn a_thread_exiting_with_its_events_still_queued_loses_none() {
    named!(let queued = Arc::new(ProfiledMutex::new(0u64)));
    let profile = profile(100.0, || {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let q = Arc::clone(&queued);
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        *q.lock().unwrap() += 1;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        // Stopped at once: the events of the exited threads are still queued.
    });
    let (acquires, _, releases, _) = totals(&profile, &queued.site().label());
    assert_eq!((acquires, releases), (8000, 8000));
    // Every acquisition and release arrived as a sampled event.
    let (recorded, dropped) = profile
        .comments
        .iter()
        .filter_map(|c| c.strip_prefix("events recorded: "))
        .filter_map(|c| {
            let (r, d) = c.split_once(", dropped (queue full): ")?;
            Some((r.parse::<u64>().ok()?, d.parse::<u64>().ok()?))
        })
        .fold((0, 0), |t, (r, d)| (t.0 + r, t.1 + d));
    assert_eq!((recorded, dropped), (16_000, 0), "{:?}", profile.comments);
}

thread_local! {
    static HELD: RefCell<Option<ProfiledMutexGuard<'static, u64>>> = const { RefCell::new(None) };
}

#[test]
fn a_guard_released_by_a_thread_local_destructor_is_recorded() {
    named!(static LEFT_HELD: ProfiledMutex<u64> = ProfiledMutex::new(0));
    let profile = profile(100.0, || {
        std::thread::spawn(|| {
            // The guard lives in a thread-local set before the thread's first
            // sampled event: it is released during thread teardown, after the
            // profiler's own thread-locals may be gone.
            HELD.with(|h| {
                let mut g = LEFT_HELD.lock().unwrap();
                *g += 1;
                *h.borrow_mut() = Some(g);
            });
            std::thread::sleep(Duration::from_millis(5));
        })
        .join()
        .unwrap();
        // Released, and so free for this thread.
        *LEFT_HELD.try_lock().expect("released at thread exit") += 1;
    });
    let (acquires, _, releases, hold) = totals(&profile, &LEFT_HELD.site().label());
    assert_eq!((acquires, releases), (2, 2));
    assert!(hold >= 5_000_000, "the teardown release kept its hold: {hold} ns");
}

#[test]
fn a_profiler_stopped_and_started_again_profiles_again() {
    named!(let again = ProfiledMutex::new(0));
    for round in 1..=3 {
        let profile = profile(100.0, || {
            for _ in 0..round * 10 {
                *again.lock().unwrap() += 1;
            }
        });
        let (acquires, ..) = totals(&profile, &again.site().label());
        assert_eq!(acquires, round * 10, "round {round}");
    }
    // Between sessions, nothing is recorded and nothing breaks. (Holding the
    // turn: a session of another test must not see this acquisition.)
    let _turn = serial();
    *again.lock().unwrap() += 1;
}

#[test]
fn a_second_profiler_is_refused_while_one_runs() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let first = Profiler::builder()
        .output_pprof(dir.path().join("first"))
        .start()
        .unwrap();
    let second = Profiler::builder()
        .output_pprof(dir.path().join("second"))
        .start();
    match second {
        Err(e @ StartError::AlreadyRunning) => {
            assert!(e.to_string().contains("already running"), "{e}");
        }
        other => panic!("expected AlreadyRunning, got {other:?}"),
    }
    // Racing starts: exactly one wins.
    drop(first);
    let winners: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let p = dir.path().join(format!("race{i}"));
                s.spawn(move || Profiler::builder().output_pprof(p).start())
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let started = winners.iter().filter(|r| r.is_ok()).count();
    assert_eq!(started, 1, "{winners:?}");
    assert!(winners
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, StartError::AlreadyRunning)));
    drop(winners);
    // All stopped: a new one starts.
    Profiler::builder()
        .output_pprof(dir.path().join("after"))
        .start()
        .unwrap()
        .stop();
}
