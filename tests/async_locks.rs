//! Profiled tokio locks, end to end: profiles written at full capture and
//! read back. Tests that start a profiler take `SERIAL`, as only one profiler
//! runs per process.
#![cfg(feature = "tokio")]

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use lockprof::read::{LockProfile, LockSample};
use lockprof::{named, with_task_name, ProfiledAsyncMutex, ProfiledAsyncRwLock, ProfiledSemaphore};

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `work` with a profiler at 100% capture and returns every sample of
/// every profile it wrote.
fn profile(work: impl FnOnce()) -> Vec<LockSample> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let profiler = lockprof::Profiler::builder()
        .capture_pct(100.0)
        .output_pprof(dir.path().join("async"))
        .start()
        .unwrap();
    work();
    let stats = profiler.stop();
    assert_eq!(stats.events_dropped, 0);
    read_all(dir.path())
}

fn read_all(dir: &Path) -> Vec<LockSample> {
    let mut samples = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        samples.extend(LockProfile::from_file(&path).unwrap().samples);
    }
    samples
}

fn of<'a>(samples: &'a [LockSample], lock_name: &str) -> Vec<&'a LockSample> {
    samples
        .iter()
        .filter(move |s| s.lock_name.as_deref() == Some(lock_name))
        .collect()
}

fn total(samples: &[&LockSample], value: impl Fn(&LockSample) -> i64) -> i64 {
    samples.iter().map(|s| value(s)).sum()
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// Polls `future` once, without a runtime.
fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    future.poll(&mut Context::from_waker(&waker))
}

// Named placements: a static, struct fields (nested too), a local binding
// through Arc, an expression.
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
fn async_locks_are_named_in_every_placement() {
    assert_eq!(GLOBAL_ASYNC_LOCK.site().name(), Some("GLOBAL_ASYNC_LOCK"));
    assert_eq!(GLOBAL_ASYNC_RW.site().name(), Some("GLOBAL_ASYNC_RW"));
    assert_eq!(GLOBAL_PERMITS.site().name(), Some("GLOBAL_PERMITS"));
    let service = Service::new();
    assert_eq!(service.sessions.site().name(), Some("sessions"));
    assert_eq!(service._queue.site().name(), Some("_queue"));
    assert_eq!(service.pool.connections.site().name(), Some("connections"));
    assert_eq!(service.pool.size, 4);
    named!(let request_lock = Arc::new(ProfiledAsyncMutex::new(0)));
    named!(let mut boxed_rw = Box::new(ProfiledAsyncRwLock::new(0)));
    let response_permits = named!(response_permits = ProfiledSemaphore::new(1));
    assert_eq!(request_lock.site().name(), Some("request_lock"));
    assert_eq!(boxed_rw.site().name(), Some("boxed_rw"));
    assert_eq!(response_permits.site().name(), Some("response_permits"));
    *boxed_rw.get_mut() += 1;
    // The creation line is the constructor call's.
    let line = line!() + 1;
    let unnamed = ProfiledAsyncMutex::new(());
    assert_eq!(unnamed.site().line(), line);
    assert_eq!(unnamed.site().label(), format!("async_locks.rs:{line}"));

    let label = GLOBAL_ASYNC_LOCK.site().label();
    let samples = profile(|| {
        current_thread().block_on(async {
            *GLOBAL_ASYNC_LOCK.lock().await += 1;
        })
    });
    assert!(label.ends_with(":GLOBAL_ASYNC_LOCK"), "{label}");
    assert_eq!(total(&of(&samples, &label), |s| s.acquire), 1);
}

#[inline(never)]
async fn bump(lock: &ProfiledAsyncMutex<u64>) {
    let mut guard = lock.lock().await;
    *guard += 1;
    tokio::task::yield_now().await;
}

#[test]
fn mutex_counts_are_exact_with_many_tasks_on_a_multi_thread_runtime() {
    const TASKS: u64 = 128;
    const OPS: u64 = 40;
    named!(let counter = Arc::new(ProfiledAsyncMutex::new(0u64)));
    let label = counter.site().label();
    let c = Arc::clone(&counter);
    let samples = profile(move || {
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
    assert_eq!(counter.try_lock().map(|g| *g).unwrap(), TASKS * OPS);
    let samples = of(&samples, &label);
    assert_eq!(total(&samples, |s| s.acquire), (TASKS * OPS) as i64);
    assert_eq!(total(&samples, |s| s.release), (TASKS * OPS) as i64);
    assert!(
        total(&samples, |s| s.acquire_wait_ns) > 0,
        "128 tasks on one lock never waited"
    );
    // Every sample comes from a task: it has a task id, and the stack is
    // the task's async fns over one `<tokio runtime>` frame.
    for s in &samples {
        assert!(s.label_num("task id").is_some_and(|id| id > 0), "{:?}", s.labels);
        assert_eq!(s.label_str("thread name"), Some("tokio-rt-worker"));
        assert_eq!(
            s.frames.last().map(|f| f.function.as_str()),
            Some("<tokio runtime>")
        );
    }
    let acquire = samples.iter().find(|s| s.acquire > 0).unwrap();
    let functions: Vec<&str> = acquire.frames.iter().map(|f| f.function.as_str()).collect();
    assert!(functions[0].starts_with("async_locks::bump"), "{functions:#?}");
    assert!(
        functions[1].starts_with("async_locks::mutex_counts_are_exact"),
        "{functions:#?}"
    );
    assert_eq!(functions.len(), 3, "{functions:#?}");
}

#[test]
fn write_and_permit_counts_are_exact_and_reads_are_labelled() {
    const TASKS: u64 = 100;
    const OPS: u64 = 20;
    named!(let table = Arc::new(ProfiledAsyncRwLock::new(0u64)));
    named!(let slots = Arc::new(ProfiledSemaphore::new(3)));
    let (t, p) = (Arc::clone(&table), Arc::clone(&slots));
    let samples = profile(move || {
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
                        let owned = p.acquire_many_owned(2).await.unwrap();
                        assert_eq!(owned.num_permits(), 2);
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
    });
    let writes = *table.try_read().unwrap();
    assert_eq!(writes, TASKS * OPS / 2);
    let rw = of(&samples, &table.site().label());
    let mode = |m: &'static str| move |s: &&LockSample| s.label_str("lock mode") == Some(m);
    let w: Vec<_> = rw.iter().copied().filter(mode("write")).collect();
    let r: Vec<_> = rw.iter().copied().filter(mode("read")).collect();
    assert_eq!(w.len() + r.len(), rw.len(), "every sample has a lock mode");
    assert_eq!(total(&w, |s| s.acquire), writes as i64);
    assert_eq!(total(&w, |s| s.release), writes as i64);
    // At 100% capture every read is sampled, so the estimate is exact too.
    assert_eq!(total(&r, |s| s.acquire), (TASKS * OPS - writes) as i64);
    let sem = of(&samples, &slots.site().label());
    assert_eq!(total(&sem, |s| s.acquire), (TASKS * (OPS + 1)) as i64);
    assert_eq!(total(&sem, |s| s.release), (TASKS * (OPS + 1)) as i64);
    assert_eq!(slots.available_permits(), 3);
}

#[test]
fn a_guard_moved_to_another_thread_records_its_whole_hold() {
    named!(let moved = Arc::new(ProfiledAsyncMutex::new(0u32)));
    let label = moved.site().label();
    let m = Arc::clone(&moved);
    let samples = profile(move || {
        let guard = current_thread().block_on(m.lock_owned());
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
    let samples = of(&samples, &label);
    let release: Vec<_> = samples.iter().copied().filter(|s| s.release > 0).collect();
    assert_eq!(release.len(), 1);
    assert_eq!(release[0].label_str("thread name"), Some("releaser"));
    let held = release[0].release_hold_ns;
    assert!(
        (50_000_000..2_000_000_000).contains(&held),
        "held {held} ns for a 50 ms sleep"
    );
    let acquire: Vec<_> = samples.iter().copied().filter(|s| s.acquire > 0).collect();
    assert_eq!(acquire.len(), 1);
    assert_ne!(acquire[0].label_str("thread name"), Some("releaser"));
}

#[test]
fn hold_across_await_is_measured_and_wait_starts_at_the_first_poll() {
    named!(let held = Arc::new(ProfiledAsyncMutex::new(())));
    let label = held.site().label();
    let h = Arc::clone(&held);
    let samples = profile(move || {
        multi_thread().block_on(async move {
            // Created while the lock is held, first polled once it is free:
            // no wait is recorded.
            let first = h.lock().await;
            let early = h.lock();
            tokio::time::sleep(Duration::from_millis(30)).await;
            drop(first);
            drop(early.await);

            let guard = h.lock().await;
            let h2 = Arc::clone(&h);
            let started = Arc::new(tokio::sync::Notify::new());
            let s2 = Arc::clone(&started);
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
    let samples = of(&samples, &label);
    let holds: Vec<i64> = samples
        .iter()
        .filter(|s| s.release > 0)
        .map(|s| s.release_hold_ns)
        .collect();
    assert_eq!(total(&samples, |s| s.release), 4);
    let longest = *holds.iter().max().unwrap();
    assert!(
        (100_000_000..2_000_000_000).contains(&longest),
        "held {longest} ns across a 100 ms sleep"
    );
    let waited = total(&samples, |s| s.acquire_wait_ns);
    assert!(
        (100_000_000..2_000_000_000).contains(&waited),
        "waited {waited} ns for a lock held 100 ms"
    );
    // The three acquisitions of the block_on future (no task id) did not
    // wait, though `early` was created 30 ms before the lock was free.
    let outside: Vec<_> = samples
        .iter()
        .copied()
        .filter(|s| s.acquire > 0 && s.label_num("task id").is_none())
        .collect();
    assert_eq!(total(&outside, |s| s.acquire), 3);
    assert_eq!(total(&outside, |s| s.acquire_wait_ns), 0);
    let named: Vec<_> = samples
        .iter()
        .copied()
        .filter(|s| s.label_str("task name") == Some("waiter"))
        .collect();
    assert_eq!(total(&named, |s| s.acquire), 1);
    assert_eq!(total(&named, |s| s.release), 1);
    assert!(named
        .iter()
        .all(|s| s.acquire_wait_ns == waited || s.acquire == 0));
    // The named task's stack: its async block, then the runtime (the
    // `with_task_name` wrapper's frames are dropped with it).
    let acquire = named.iter().find(|s| s.acquire > 0).unwrap();
    let functions: Vec<&str> = acquire.frames.iter().map(|f| f.function.as_str()).collect();
    assert_eq!(functions.len(), 2, "{functions:#?}");
    assert!(
        functions[0].starts_with("async_locks::hold_across_await"),
        "{functions:#?}"
    );
    assert_eq!(functions[1], "<tokio runtime>");
}

#[test]
fn cancelled_acquisitions_record_nothing() {
    named!(let contested = Arc::new(ProfiledAsyncMutex::new(())));
    named!(let rw = ProfiledAsyncRwLock::new(()));
    named!(let closed = ProfiledSemaphore::new(0));
    let label = contested.site().label();
    let c = Arc::clone(&contested);
    let samples = profile(|| {
        let guard = c.try_lock().unwrap();
        {
            // Polled (so decided and sampled at 100%), then dropped.
            let mut waiting = pin!(c.lock());
            assert!(poll_once(waiting.as_mut()).is_pending());
            let mut owned = pin!(Arc::clone(&c).lock_owned());
            assert!(poll_once(owned.as_mut()).is_pending());
        }
        assert!(c.try_lock().is_err());
        current_thread().block_on(async {
            let r = tokio::time::timeout(Duration::from_millis(10), c.lock()).await;
            assert!(r.is_err());
        });
        drop(guard);

        let writer = rw.try_write().unwrap();
        {
            let mut reading = pin!(rw.read());
            assert!(poll_once(reading.as_mut()).is_pending());
        }
        drop(writer);

        let mut acquiring = pin!(closed.acquire());
        assert!(poll_once(acquiring.as_mut()).is_pending());
        closed.close();
        assert!(matches!(poll_once(acquiring.as_mut()), Poll::Ready(Err(_))));
    });
    let samples_of_lock = of(&samples, &label);
    assert_eq!(total(&samples_of_lock, |s| s.acquire), 1);
    assert_eq!(total(&samples_of_lock, |s| s.release), 1);
    assert_eq!(total(&samples_of_lock, |s| s.acquire_wait_ns), 0);
    let rw_samples = of(&samples, &rw.site().label());
    assert_eq!(total(&rw_samples, |s| s.acquire), 1);
    assert!(rw_samples
        .iter()
        .all(|s| s.label_str("lock mode") == Some("write")));
    assert!(of(&samples, &closed.site().label()).is_empty());
}

#[test]
fn blocking_lock_and_try_lock_work_outside_a_runtime() {
    named!(let m = ProfiledAsyncMutex::new(1));
    named!(let rw = ProfiledAsyncRwLock::new(1));
    let samples = profile(|| {
        *m.blocking_lock() += 1;
        assert!(m.try_lock().is_ok());
        *rw.blocking_write() += 1;
        assert_eq!(*rw.blocking_read(), 2);
    });
    let ms = of(&samples, &m.site().label());
    assert_eq!(total(&ms, |s| s.acquire), 2);
    // Outside a task there is no task id, and the stack is not cut.
    assert!(ms.iter().all(|s| s.label_num("task id").is_none()));
    assert!(ms
        .iter()
        .all(|s| s.frames.iter().all(|f| f.function != "<tokio runtime>")));
    assert_eq!(*m.try_lock().unwrap(), 2);
    assert!(format!("{m:?}").contains("data: 2"), "{m:?}");
}
