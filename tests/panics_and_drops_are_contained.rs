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
