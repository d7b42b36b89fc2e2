//! Async locks are named like the sync ones: statics, struct fields (nested
//! too), local bindings through `Arc`/`Box`, expressions, and unnamed by
//! creation line.
#![cfg(feature = "tokio")]

mod common;

use common::{label, profile, totals};
use lockprof::{named, ProfiledAsyncMutex, ProfiledAsyncRwLock, ProfiledSemaphore};
use std::sync::Arc;

const STATIC_LINE: u32 = line!() + 2;
named!(
    static GLOBAL_ASYNC_LOCK: ProfiledAsyncMutex<u32> = ProfiledAsyncMutex::new(0);
);
named!(
    static GLOBAL_ASYNC_RW: ProfiledAsyncRwLock<u32> = ProfiledAsyncRwLock::const_new(0);
);
named!(
    static GLOBAL_PERMITS: ProfiledSemaphore = ProfiledSemaphore::const_new(3);
);

struct Pool {
    connections: ProfiledSemaphore,
    size: usize,
}

struct Service {
    sessions: ProfiledAsyncRwLock<Vec<u32>>,
    _queue: ProfiledAsyncMutex<()>,
    pool: Pool,
}

impl Service {
    const SESSIONS_LINE: u32 = line!() + 3;
    fn new() -> Self {
        named!(Self {
            sessions: ProfiledAsyncRwLock::new(Vec::new()),
            _queue: ProfiledAsyncMutex::new(()),
            pool: named!(Pool {
                connections: ProfiledSemaphore::new(4),
                size: 4,
            }),
        })
    }
}

#[test]
fn every_placement_and_the_unnamed_case_have_exact_labels() {
    let file = file!();
    assert_eq!(GLOBAL_ASYNC_LOCK.site().name(), Some("GLOBAL_ASYNC_LOCK"));
    assert_eq!(GLOBAL_ASYNC_RW.site().name(), Some("GLOBAL_ASYNC_RW"));
    assert_eq!(GLOBAL_PERMITS.site().name(), Some("GLOBAL_PERMITS"));
    let service = Service::new();
    assert_eq!(service._queue.site().name(), Some("_queue"));
    assert_eq!(service.pool.connections.site().name(), Some("connections"));
    assert_eq!(service.pool.size, 4);

    let local_line = line!() + 1;
    named!(let request_lock = Arc::new(ProfiledAsyncMutex::new(0)));
    named!(let mut boxed_rw = Box::new(ProfiledAsyncRwLock::new(0)));
    let response_permits = named!(response_permits = ProfiledSemaphore::new(1));
    let unnamed_line = line!() + 1;
    let unnamed = ProfiledAsyncMutex::new(());
    assert_eq!(boxed_rw.site().name(), Some("boxed_rw"));
    assert_eq!(response_permits.site().name(), Some("response_permits"));
    *boxed_rw.get_mut() += 1;

    let profile = profile(100.0, || {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            *GLOBAL_ASYNC_LOCK.lock().await += 1;
            let _ = *GLOBAL_ASYNC_RW.read().await;
            drop(GLOBAL_PERMITS.acquire().await.unwrap());
            service.sessions.write().await.push(1);
            drop(service.pool.connections.acquire().await.unwrap());
            *request_lock.lock().await += 1;
            let _ = *boxed_rw.read().await;
            drop(response_permits.try_acquire().unwrap());
            drop(unnamed.lock().await);
        });
    });
    for (name, line) in [
        ("GLOBAL_ASYNC_LOCK", STATIC_LINE),
        ("sessions", Service::SESSIONS_LINE),
        ("connections", Service::SESSIONS_LINE + 3),
        ("request_lock", local_line),
        ("boxed_rw", local_line + 1),
        ("response_permits", local_line + 2),
        ("", unnamed_line),
    ] {
        let label = label(file, line, name);
        assert_eq!(
            totals(&profile, &label).0,
            1,
            "{label} in {:?}",
            profile.lock_names()
        );
    }
    assert_eq!(totals(&profile, &GLOBAL_ASYNC_RW.site().label()).0, 1);
    assert_eq!(totals(&profile, &GLOBAL_PERMITS.site().label()).0, 1);
}
