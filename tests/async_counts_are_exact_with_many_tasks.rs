//! At full capture, a profile counts every acquisition and release of async
//! locks taken by 100+ tasks on a multi-thread runtime, with task labels.
#![cfg(feature = "tokio")]

mod common;

use common::{profile, totals, totals_for_mode};
use lockprof::read::labels;
use lockprof::{named, ProfiledAsyncMutex, ProfiledAsyncRwLock, ProfiledSemaphore};
use std::sync::Arc;

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap()
}

async fn bump(lock: &ProfiledAsyncMutex<u64>) {
    let mut guard = lock.lock().await;
    *guard += 1;
    // Held across an await: other tasks queue up behind it.
    tokio::task::yield_now().await;
}

#[test]
fn mutex_acquisitions_and_releases_are_counted_exactly() {
    const TASKS: u64 = 128;
    const OPS: u64 = 40;
    named!(let counter = Arc::new(ProfiledAsyncMutex::new(0u64)));
    let c = Arc::clone(&counter);
    let profile = profile(100.0, move || {
        multi_thread().block_on(async move {
            let tasks: Vec<_> = (0..TASKS)
                .map(|_| {
                    let c = Arc::clone(&c);
                    tokio::spawn(async move {
                        for _ in 0..OPS {
                            bump(&c).await;
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
    });
    assert_eq!(*counter.try_lock().unwrap(), TASKS * OPS);
    let name = counter.site().label();
    let (acquired, waited, released, held) = totals(&profile, &name);
    assert_eq!(acquired, (TASKS * OPS) as i64);
    assert_eq!(released, (TASKS * OPS) as i64);
    assert!(waited > 0, "{TASKS} tasks on one lock never waited");
    assert!(held > 0);
    let mut task_ids = std::collections::BTreeSet::new();
    for s in profile.samples_of(&name) {
        let id = s.label_num(labels::TASK_ID).expect("a task id on every sample");
        task_ids.insert(id);
        assert_eq!(s.label_str(labels::THREAD_NAME), Some("tokio-rt-worker"));
        assert!(s.label_str(labels::TASK_NAME).is_none());
    }
    assert_eq!(task_ids.len() as u64, TASKS);
}

#[test]
fn write_and_permit_counts_are_exact_and_reads_are_labelled() {
    const TASKS: u64 = 100;
    const OPS: u64 = 20;
    named!(let table = Arc::new(ProfiledAsyncRwLock::new(0u64)));
    named!(let slots = Arc::new(ProfiledSemaphore::new(3)));
    let (t, p) = (Arc::clone(&table), Arc::clone(&slots));
    let profile = profile(100.0, move || {
        multi_thread().block_on(async move {
            let tasks: Vec<_> = (0..TASKS)
                .map(|i| {
                    let (t, p) = (Arc::clone(&t), Arc::clone(&p));
                    tokio::spawn(async move {
                        for j in 0..OPS {
                            let _permit = p.acquire().await.unwrap();
                            if (i + j) % 2 == 0 {
                                *t.write().await += 1;
                            } else {
                                let _ = *t.read().await;
                            }
                            tokio::task::yield_now().await;
                        }
                        let owned = Arc::clone(&p).acquire_many_owned(2).await.unwrap();
                        assert_eq!(owned.num_permits(), 2);
                        let mut w = Arc::clone(&t).write_owned().await;
                        *w += 1;
                        drop(w);
                        let _ = *Arc::clone(&t).read_owned().await;
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
    });
    let writes = *table.try_read().unwrap();
    assert_eq!(writes, TASKS * OPS / 2 + TASKS);
    let reads = TASKS * OPS - TASKS * OPS / 2 + TASKS;
    let name = table.site().label();
    let (w_acq, _, w_rel, _) = totals_for_mode(&profile, &name, "write");
    let (r_acq, _, r_rel, _) = totals_for_mode(&profile, &name, "read");
    assert_eq!((w_acq, w_rel), (writes as i64, writes as i64));
    // Reads are estimated from samples; at 100% capture that is exact too.
    assert_eq!((r_acq, r_rel), (reads as i64, reads as i64));
    assert_eq!(totals(&profile, &name).0, (writes + reads) as i64);
    let (p_acq, _, p_rel, _) = totals(&profile, &slots.site().label());
    assert_eq!(p_acq, (TASKS * (OPS + 1)) as i64);
    assert_eq!(p_rel, (TASKS * (OPS + 1)) as i64);
    assert_eq!(slots.available_permits(), 3);
}
