//! Profiled tokio locks, end to end: profiles written at full capture and
//! read back. Tests that start a profiler take `SERIAL`, as only one profiler
//! runs per process.
#![cfg(feature = "tokio")]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockprof::read::{LockProfile, LockSample};
use lockprof::{named, ProfiledAsyncMutex};

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
    profiler.stop();
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

fn of<'a>(samples: &'a [LockSample], lock_name: &'a str) -> impl Iterator<Item = &'a LockSample> + 'a {
    samples
        .iter()
        .filter(move |s| s.lock_name.as_deref() == Some(lock_name))
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap()
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
    const OPS: u64 = 50;
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
    let acquired: i64 = of(&samples, &label).map(|s| s.acquire).sum();
    let released: i64 = of(&samples, &label).map(|s| s.release).sum();
    assert_eq!(acquired, (TASKS * OPS) as i64);
    assert_eq!(released, (TASKS * OPS) as i64);
    for s in of(&samples, &label).take(3) {
        eprintln!("{:?}", s.labels);
        for f in &s.frames {
            eprintln!("   {} {}:{}", f.function, f.file, f.line);
        }
    }
}
