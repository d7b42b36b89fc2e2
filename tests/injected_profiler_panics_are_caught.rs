//! A panic inside the profiler's own code on a user thread (injected with the
//! test-only `fault-injection` feature) is caught and counted, and the user's
//! lock operation completes normally, for every lock type.
#![cfg(feature = "fault-injection")]

mod common;

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use common::{profile, totals, totals_for_mode};
use lockprof::{
    inject_profiler_panics, named, ProfiledCondvar, ProfiledMutex, ProfiledReentrantMutex, ProfiledRwLock,
};

#[test]
fn injected_panics_are_caught_counted_and_locking_goes_on() {
    named!(let m = Arc::new(ProfiledMutex::new(0u64)));
    named!(let rw = Arc::new(ProfiledRwLock::new(0u64)));
    named!(let re = Arc::new(ProfiledReentrantMutex::new(Cell::new(0u64))));
    let cv = Arc::new(ProfiledCondvar::new());
    const OPS: u64 = 200;

    // Injected panics print through the panic hook: keep the output readable.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let profile = profile(100.0, || {
        inject_profiler_panics(true);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (m, rw, re, cv) = (Arc::clone(&m), Arc::clone(&rw), Arc::clone(&re), Arc::clone(&cv));
                std::thread::spawn(move || {
                    for _ in 0..OPS {
                        *m.lock().unwrap() += 1;
                        *m.try_lock().unwrap_or_else(|_| m.lock().unwrap()) += 1;
                        let _ = *rw.read().unwrap();
                        *rw.write().unwrap() += 1;
                        let g = re.lock();
                        g.set(g.get() + 1);
                        drop(g);
                        let g = m.lock().unwrap();
                        let (mut g, _) = cv.wait_timeout(g, Duration::from_micros(10)).unwrap();
                        *g += 1;
                        cv.notify_all();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a user thread saw the profiler's panic");
        }
        inject_profiler_panics(false);
    });
    std::panic::set_hook(hook);

    // The user's operations all happened, and nothing is poisoned.
    assert_eq!(*m.lock().unwrap(), 2 * OPS * 3);
    assert_eq!(*rw.read().unwrap(), 2 * OPS);
    assert_eq!(re.lock().get(), 2 * OPS);
    assert!(!m.is_poisoned() && !rw.is_poisoned());

    // Caught and counted.
    let caught: u64 = profile
        .comments
        .iter()
        .filter_map(|c| c.strip_prefix("internal panics caught: "))
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    assert!(caught >= 2 * OPS * 5, "caught {caught}: {:?}", profile.comments);

    // The exact totals are kept outside the faulty path: still exact.
    assert_eq!(totals(&profile, &m.site().label()).0 as u64, 2 * OPS * 4);
    assert_eq!(
        totals_for_mode(&profile, &rw.site().label(), "write").0 as u64,
        2 * OPS
    );
    assert_eq!(totals(&profile, &re.site().label()).0 as u64, 2 * OPS);
}
