//! Async holds last from acquisition to guard drop, across `.await`s and
//! threads; waits last from the first poll of `lock()` to the guard.
#![cfg(feature = "tokio")]

mod common;

use common::{profile, totals};
use lockprof::read::labels;
use lockprof::{named, with_task_name, ProfiledAsyncMutex};
use std::sync::Arc;
use std::time::Duration;

const MS: i64 = 1_000_000;

#[test]
fn a_guard_moved_to_another_thread_records_its_whole_hold_there() {
    named!(let moved = Arc::new(ProfiledAsyncMutex::new(0u32)));
    let m = Arc::clone(&moved);
    let profile = profile(100.0, move || {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let guard = rt.block_on(m.lock_owned());
        std::thread::Builder::new()
            .name("releaser".into())
            .spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                drop(guard);
            })
            .unwrap()
            .join()
            .unwrap();
    });
    let name = moved.site().label();
    let release: Vec<_> = profile.samples_of(&name).filter(|s| s.release > 0).collect();
    assert_eq!(release.len(), 1);
    assert_eq!(release[0].label_str(labels::THREAD_NAME), Some("releaser"));
    let held = release[0].release_hold_ns;
    assert!(
        (50 * MS..2000 * MS).contains(&held),
        "held {held} ns for a 50 ms sleep"
    );
    let acquire: Vec<_> = profile.samples_of(&name).filter(|s| s.acquire > 0).collect();
    assert_eq!(acquire.len(), 1);
    assert_ne!(acquire[0].label_str(labels::THREAD_NAME), Some("releaser"));
}

#[test]
fn hold_across_await_is_a_sleep_long_and_wait_starts_at_the_first_poll() {
    named!(let held = Arc::new(ProfiledAsyncMutex::new(())));
    let h = Arc::clone(&held);
    let profile = profile(100.0, move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async move {
            // Created while the lock is held, first polled once it is free:
            // no wait is recorded.
            let first = h.lock().await;
            let early = h.lock();
            tokio::time::sleep(Duration::from_millis(30)).await;
            drop(first);
            drop(early.await);

            let guard = h.lock().await;
            let started = Arc::new(tokio::sync::Notify::new());
            let s2 = Arc::clone(&started);
            let h2 = Arc::clone(&h);
            let waiter = tokio::spawn(with_task_name("waiter", async move {
                // Same poll as the first poll of `lock()`: the wait starts now.
                s2.notify_one();
                drop(h2.lock().await);
            }));
            started.notified().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(guard);
            waiter.await.unwrap();
        });
    });
    let name = held.site().label();
    let (acquired, waited, released, _) = totals(&profile, &name);
    assert_eq!((acquired, released), (4, 4));
    let longest = profile
        .samples_of(&name)
        .map(|s| s.release_hold_ns)
        .max()
        .unwrap();
    assert!(
        (100 * MS..2000 * MS).contains(&longest),
        "held {longest} ns across a 100 ms sleep"
    );
    assert!(
        (100 * MS..2000 * MS).contains(&waited),
        "waited {waited} ns for a lock held 100 ms after the wait began"
    );
    // The three acquisitions in the block_on future (no task id) did not
    // wait, though `early` was created 30 ms before the lock was free.
    let outside: (i64, i64) = profile
        .samples_of(&name)
        .filter(|s| s.acquire > 0 && s.label_num(labels::TASK_ID).is_none())
        .fold((0, 0), |t, s| (t.0 + s.acquire, t.1 + s.acquire_wait_ns));
    assert_eq!(outside, (3, 0));
    // The waiter's wait, under its task name and id.
    let named: Vec<_> = profile
        .samples_of(&name)
        .filter(|s| s.label_str(labels::TASK_NAME) == Some("waiter"))
        .collect();
    assert!(named.iter().all(|s| s.label_num(labels::TASK_ID).is_some()));
    let (a, w, r) = named.iter().fold((0, 0, 0), |t, s| {
        (t.0 + s.acquire, t.1 + s.acquire_wait_ns, t.2 + s.release)
    });
    assert_eq!((a, w, r), (1, waited, 1));
}
