//! While a thread waits on a condvar its mutex is not held: the wait is not
//! hold time, and the re-acquisition after wake-up is an acquisition.

mod common;

use common::{profile, totals};
use lockprof::{named, ProfiledCondvar, ProfiledMutex};
use std::time::{Duration, Instant};

#[test]
fn time_spent_waiting_on_a_condvar_is_not_hold_time() {
    named!(let state = ProfiledMutex::new(0u32));
    let ready = ProfiledCondvar::new();
    let mut waited = Duration::ZERO;
    let profile = profile(100.0, || {
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(200));
                *state.lock().unwrap() = 1;
                ready.notify_all();
            });
            let start = Instant::now();
            let guard = ready.wait_while(state.lock().unwrap(), |v| *v == 0).unwrap();
            waited = start.elapsed();
            drop(guard);
        });
    });
    assert!(waited >= Duration::from_millis(200));
    let (acquires, _, releases, hold) = totals(&profile, &state.site().label());
    // Waiter: lock, (release for wait, re-acquire) once or more; notifier: one.
    assert!(acquires >= 3, "{acquires} acquisitions");
    assert_eq!(acquires, releases);
    assert!(
        hold < 100_000_000,
        "hold {hold} ns includes the 200 ms condvar wait"
    );
}
