//! Exact counts at the default capture, whatever order a thread takes its
//! locks in. A thread remembers the counter it counted last, and an
//! acquisition of that same counter's lock is counted with a value read
//! before the lock's compare-and-swap: these are the cases where that
//! remembered counter is right, is the wrong one, or goes stale.

mod common;

use common::{profile, totals, totals_for_mode};
use lockprof::{named, ProfiledMutex, ProfiledReentrantMutex, ProfiledRwLock};
use std::sync::{Arc, Barrier};
use std::thread;

const OPS: usize = 20_000;

#[test]
fn one_lock_again_and_again_then_two_names_in_turn() {
    named!(let again = ProfiledMutex::new(0u64));
    named!(let left = ProfiledMutex::new(0u64));
    named!(let right = ProfiledMutex::new(0u64));
    let profile = profile(1.0, || {
        for _ in 0..OPS {
            *again.lock().unwrap() += 1;
        }
        for i in 0..OPS {
            // Nested, so that every acquisition counts another name than
            // the one before it.
            let mut l = left.lock().unwrap();
            *right.lock().unwrap() += 1;
            *l += i as u64 % 2;
        }
    });
    assert_eq!(totals(&profile, &again.site().label()).0, OPS as i64);
    assert_eq!(totals(&profile, &left.site().label()).0, OPS as i64);
    assert_eq!(totals(&profile, &right.site().label()).0, OPS as i64);
}

#[test]
fn new_names_between_acquisitions_of_one_lock_grow_the_table_under_it() {
    // Each new name grows this thread's table, which moves the remembered
    // counter of `steady` to a new table.
    named!(let steady = ProfiledMutex::new(0u64));
    const NEW_NAMES: usize = 300;
    let mut fresh_labels = Vec::new();
    let profile = profile(1.0, || {
        for i in 0..NEW_NAMES {
            *steady.lock().unwrap() += 1;
            let fresh = ProfiledMutex::new(()).named(Box::leak(format!("fresh-{i:03}").into_boxed_str()));
            fresh_labels.push(fresh.site().label());
            drop(fresh.lock().unwrap());
            *steady.lock().unwrap() += 1;
            *steady.lock().unwrap() += 1;
        }
    });
    assert_eq!(totals(&profile, &steady.site().label()).0, 3 * NEW_NAMES as i64);
    for label in &fresh_labels {
        assert_eq!(totals(&profile, label).0, 1, "{label}");
    }
}

#[test]
fn contended_acquisitions_of_a_lock_new_to_the_waiting_thread() {
    // The waiter meets `contended` first while it is held: its slow path
    // makes the lock's slot (the table grows) between reading the
    // remembered counter and counting.
    named!(let contended = Arc::new(ProfiledMutex::new(0u64)));
    named!(let own = Arc::new(ProfiledMutex::new(0u64)));
    const THREADS: usize = 2;
    let profile = profile(1.0, || {
        let held = contended.lock().unwrap();
        let start = Arc::new(Barrier::new(THREADS + 1));
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let (contended, own, start) = (Arc::clone(&contended), Arc::clone(&own), Arc::clone(&start));
                thread::spawn(move || {
                    for _ in 0..100 {
                        *own.lock().unwrap() += 1;
                    }
                    start.wait();
                    for _ in 0..OPS {
                        *contended.lock().unwrap() += 1;
                        *own.lock().unwrap() += 1;
                    }
                })
            })
            .collect();
        start.wait();
        thread::sleep(std::time::Duration::from_millis(20));
        drop(held);
        for w in workers {
            w.join().unwrap();
        }
    });
    let (acquired, waited, ..) = totals(&profile, &contended.site().label());
    assert_eq!(acquired, (THREADS * OPS + 1) as i64);
    assert!(waited > 0, "the workers waited for the held lock");
    assert_eq!(
        totals(&profile, &own.site().label()).0,
        (THREADS * (OPS + 100)) as i64
    );
}

#[test]
fn write_and_read_of_one_lock_in_turn_keep_their_modes_apart() {
    named!(let table = ProfiledRwLock::new(0u64));
    named!(let nested = ProfiledReentrantMutex::new(()));
    let profile = profile(1.0, || {
        for i in 0..OPS {
            *table.write().unwrap() += 1;
            if i % 2 == 0 {
                let _ = *table.read().unwrap();
            }
            let _outer = nested.lock();
            let _inner = nested.lock();
        }
    });
    let name = table.site().label();
    assert_eq!(totals_for_mode(&profile, &name, "write").0, OPS as i64);
    assert_eq!(totals_for_mode(&profile, &name, "read").0, (OPS / 2) as i64);
    assert_eq!(totals(&profile, &nested.site().label()).0, OPS as i64);
}
