//! A failed `try_lock` or a timed-out acquisition records nothing, and a
//! release is recorded only if its acquisition was.

mod common;

use common::{profile, totals};
use lockprof::{named, ProfiledMutex, ProfiledReentrantMutex, ProfiledRwLock};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

#[test]
fn failed_try_lock_and_timeouts_are_not_recorded() {
    named!(let contested = ProfiledMutex::new(0));
    named!(let table = ProfiledRwLock::new(0));
    named!(let reentrant = ProfiledReentrantMutex::new(0));
    let profile = profile(100.0, || {
        thread::scope(|s| {
            let (held_tx, held_rx) = mpsc::channel();
            let (done_tx, done_rx) = mpsc::channel::<()>();
            let (c, t, r) = (&contested, &table, &reentrant);
            s.spawn(move || {
                let _a = c.lock().unwrap();
                let _b = t.write().unwrap();
                let _c = r.lock();
                held_tx.send(()).unwrap();
                done_rx.recv().unwrap();
            });
            held_rx.recv().unwrap();
            for _ in 0..50 {
                assert!(contested.try_lock().is_err());
                assert!(contested.try_lock_for(Duration::from_micros(50)).is_err());
                assert!(table.try_read().is_err());
                assert!(table.try_write_for(Duration::from_micros(50)).is_err());
                assert!(reentrant.try_lock().is_none());
                assert!(reentrant.try_lock_for(Duration::from_micros(50)).is_none());
            }
            done_tx.send(()).unwrap();
        });
    });
    // Only the holder thread's one acquisition of each lock is recorded.
    for name in [
        contested.site().label(),
        table.site().label(),
        reentrant.site().label(),
    ] {
        assert_eq!(totals(&profile, &name).0, 1, "{name}");
        assert_eq!(totals(&profile, &name).2, 1, "{name}");
    }
}

#[test]
fn a_guard_taken_before_the_profiler_started_records_no_release() {
    named!(let early = ProfiledMutex::new(0));
    let guard = early.lock().unwrap();
    let profile = profile(100.0, move || drop(guard));
    assert!(profile.samples_of(&early.site().label()).next().is_none());
}
