//! Locks named at run time at one line (`req-0000001`, `req-0000002`, …: same
//! file, line, column and name length) are told apart by their text, each
//! with its exact count. Their keys used to collide in every hash table of a
//! flush, which made it quadratic in the number of names (16,000: 8 s; over
//! 20,000, `stop()` never returned). The flush's time is measured by
//! `examples/many_lock_names.rs`, not asserted here.

mod common;

use common::{label, profile};
use lockprof::ProfiledMutex;
use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

const NAMES: usize = 16_000;

#[test]
fn sixteen_thousand_same_length_names_keep_their_own_counts() {
    let (done_tx, done_rx) = mpsc::channel();
    // On a thread of its own so that a quadratic flush fails the test
    // instead of hanging the suite: about 3 s in a debug build, 80 s before
    // sites were hashed by their text.
    std::thread::spawn(move || {
        let mut line = 0;
        let profile = profile(10.0, || {
            line = line!() + 2;
            let locks: Vec<ProfiledMutex<u32>> = (0..NAMES)
                .map(|i| ProfiledMutex::new(0).named(Box::leak(format!("req-{i:07}").into_boxed_str())))
                .collect();
            for (i, lock) in locks.iter().enumerate() {
                for _ in 0..=i % 3 {
                    *lock.lock().unwrap() += 1;
                }
            }
        });
        let _ = done_tx.send((profile, line));
    });
    let (profile, line) = done_rx
        .recv_timeout(Duration::from_secs(40))
        .expect("profiling 16,000 names did not finish within 40 s");

    let mut acquires: HashMap<String, i64> = HashMap::new();
    for s in &profile.samples {
        if let Some(name) = &s.lock_name {
            *acquires.entry(name.clone()).or_default() += s.acquire;
        }
    }
    for i in 0..NAMES {
        let name = label(file!(), line, &format!("req-{i:07}"));
        assert_eq!(acquires.get(&name).copied(), Some((i % 3 + 1) as i64), "{name}");
    }
}
